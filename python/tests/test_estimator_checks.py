"""scikit-learn's own estimator checks, run on the pynomaly estimators.

Every check applies and passes; none is listed as an expected failure. PyOD's detectors
are plain estimators to scikit-learn (as PyOD's are: not outlier detectors, whose labels
are -1/1). DBSCAN gets an ``eps`` that makes core rows of the checks' small data sets: the
core refuses data without one (scikit-learn would call every row noise). scikit-learn skips
its array-API checks unless ``SCIPY_ARRAY_API=1`` is set (the estimators take NumPy input).
"""

from __future__ import annotations

from typing import Any

from sklearn.utils.estimator_checks import parametrize_with_checks

from pynomaly import (
    COPOD,
    DBSCAN,
    ECOD,
    GMM,
    HBOS,
    INNE,
    KNN,
    PCA,
    IsolationForest,
    LocalOutlierFactor,
)


@parametrize_with_checks(
    [
        IsolationForest(),
        LocalOutlierFactor(),
        LocalOutlierFactor(novelty=True),
        ECOD(),
        COPOD(),
        HBOS(),
        KNN(),
        PCA(),
        GMM(),
        INNE(random_state=0),
        DBSCAN(eps=10.0, min_samples=2),
    ]
)
def test_sklearn_compatible_estimator(estimator: Any, check: Any) -> None:
    check(estimator)
