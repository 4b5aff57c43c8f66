"""scikit-learn's own estimator checks, run on the pynomaly estimators.

Every check applies and passes; none is listed as an expected failure. scikit-learn skips
its array-API checks unless ``SCIPY_ARRAY_API=1`` is set (the estimators take NumPy input).
"""

from __future__ import annotations

from typing import Any

from sklearn.utils.estimator_checks import parametrize_with_checks

from pynomaly import IsolationForest, LocalOutlierFactor

@parametrize_with_checks(
    [
        IsolationForest(),
        LocalOutlierFactor(),
        LocalOutlierFactor(novelty=True),
    ]
)
def test_sklearn_compatible_estimator(estimator: Any, check: Any) -> None:
    check(estimator)
