"""The PyOD detectors (and DBSCAN) against PyOD's and scikit-learn's numbers, which the
committed fixtures tests/fixtures/pyod.json and dbscan.json hold (written by
tests/fixtures/generate_pyod.py), so neither PyOD nor a live server is needed."""

from __future__ import annotations

import inspect
import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.base import clone

import pynomaly
from pynomaly import CBLOF, COPOD, DBSCAN, ECOD, GMM, HBOS, INNE, KNN, MCD, PCA
from pynomaly.pyod_estimators import ALGORITHMS, _PyODDetector

FIXTURES = Path(__file__).resolve().parents[2] / "tests" / "fixtures"
PYOD = json.loads((FIXTURES / "pyod.json").read_text())
CLUSTERS = json.loads((FIXTURES / "dbscan.json").read_text())
CLASSES: dict[str, type[_PyODDetector]] = {
    "ecod": ECOD,
    "copod": COPOD,
    "hbos": HBOS,
    "knn": KNN,
    "pca": PCA,
    "gmm": GMM,
    "mcd": MCD,
    "cblof": CBLOF,
    "inne": INNE,
    "dbscan": DBSCAN,
}
EVERY = [
    ECOD(),
    COPOD(),
    HBOS(),
    KNN(),
    PCA(),
    GMM(),
    MCD(random_state=1),
    CBLOF(random_state=1),
    INNE(random_state=1),
    DBSCAN(eps=1.5),
]
RTOL = 1e-9


def dataset(name: str) -> tuple[np.ndarray, np.ndarray]:
    d = PYOD["datasets"][name]
    return np.array(d["x"], dtype=np.float64), np.array(d["queries"], dtype=np.float64)


def blobs(n: int = 400, d: int = 4, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    x[: n // 40] += rng.uniform(5.0, 9.0, size=(n // 40, d))
    return x


CASES = PYOD["cases"]


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_scores_threshold_and_labels_equal_pyods(case: dict[str, Any]) -> None:
    x, queries = dataset(case["dataset"])
    est = CLASSES[case["algorithm"]](**case["params"]).fit(x)
    np.testing.assert_allclose(est.decision_scores_, case["scores"], rtol=RTOL, atol=0)
    assert est.threshold_ == pytest.approx(case["threshold"], rel=RTOL, abs=0)
    np.testing.assert_array_equal(est.labels_, case["labels"])
    assert est.labels_.dtype == np.int64
    # New rows: PyOD's decision_function (ECOD and COPOD: one row at a time in PyOD).
    novelty = est.decision_function(queries)
    np.testing.assert_allclose(novelty, case["novelty_scores"], rtol=RTOL, atol=0)
    np.testing.assert_array_equal(
        est.predict(queries), (np.array(case["novelty_scores"]) > case["threshold"]).astype(int)
    )
    assert est.n_features_in_ == x.shape[1]


@pytest.mark.parametrize("case", CLUSTERS["cases"], ids=[c["name"] for c in CLUSTERS["cases"]])
def test_dbscan_clusters_equal_scikit_learns_and_noise_scores_above_eps(
    case: dict[str, Any],
) -> None:
    x, queries = dataset(case["dataset"])
    est = DBSCAN(**case["params"]).fit(x)
    np.testing.assert_array_equal(est.labels_, case["labels"])
    np.testing.assert_array_equal(est.core_sample_indices_, np.flatnonzero(case["core"]))
    np.testing.assert_array_equal(est.components_, x[np.array(case["core"])])
    np.testing.assert_allclose(est.decision_scores_, case["scores"], rtol=RTOL, atol=1e-12)
    assert est.threshold_ == case["params"]["eps"]
    np.testing.assert_array_equal(est.decision_scores_ > est.threshold_, est.labels_ == -1)
    np.testing.assert_allclose(
        est.decision_function(queries), case["novelty_scores"], rtol=RTOL, atol=1e-12
    )
    np.testing.assert_array_equal(
        est.predict(queries), (np.array(case["novelty_scores"]) > case["params"]["eps"]).astype(int)
    )
    np.testing.assert_array_equal(DBSCAN(**case["params"]).fit_predict(x), case["labels"])


@pytest.mark.parametrize("cls", [ECOD, COPOD, HBOS, KNN, PCA, GMM, INNE])
@pytest.mark.parametrize("contamination", [0.02, 0.1, 0.25, 0.5])
def test_threshold_is_pyods_percentile(cls: type[_PyODDetector], contamination: float) -> None:
    x = blobs(seed=1)
    kwargs: dict[str, Any] = {"random_state": 0} if cls is INNE else {}
    est = cls(contamination=contamination, **kwargs).fit(x)
    scores = est.decision_scores_
    assert est.threshold_ == pytest.approx(
        np.percentile(scores, 100 * (1 - contamination)), rel=1e-12
    )
    np.testing.assert_array_equal(est.labels_, (scores > est.threshold_).astype(int))
    if cls in (HBOS, PCA, GMM):
        # A training row scored as a new row scores the same here (as in PyOD; ECOD,
        # COPOD, KNN and INNE score a training row as new differently, as PyOD does).
        np.testing.assert_array_equal(est.decision_function(x), scores)
        np.testing.assert_array_equal(est.predict(x), est.labels_)
    # At most the contamination's share is flagged; exactly that share (to rounding) where
    # the scores do not tie (HBOS's histograms and INNE's saturated scores do).
    assert est.labels_.sum() <= contamination * len(x) + 1
    if cls not in (HBOS, INNE):
        assert abs(est.labels_.sum() - contamination * len(x)) <= 1
    np.testing.assert_array_equal(clone(est).fit_predict(x), est.labels_)


def test_inne_is_seeded_and_finds_the_outliers() -> None:
    x = blobs(seed=2)
    a = INNE(random_state=5).fit(x)
    b = INNE(random_state=5, n_jobs=2).fit(x)
    np.testing.assert_array_equal(a.decision_scores_, b.decision_scores_)
    assert a.seed_ == 5
    assert not np.array_equal(INNE(random_state=6).fit(x).decision_scores_, a.decision_scores_)
    assert ((0.0 <= a.decision_scores_) & (a.decision_scores_ <= 1.0)).all()
    # The shifted rows (the first 10) are the most isolated.
    assert set(np.argsort(-a.decision_scores_)[:10]) == set(range(10))
    drawn = INNE(random_state=np.random.RandomState(3)).fit(x)
    assert isinstance(drawn.seed_, int)
    np.testing.assert_array_equal(
        INNE(random_state=drawn.seed_).fit(x).decision_scores_, drawn.decision_scores_
    )


def test_results_do_not_depend_on_threads() -> None:
    x = blobs(n=3000, d=5, seed=3)
    for cls in (ECOD, COPOD, KNN, HBOS):
        one = cls(n_jobs=1).fit(x)
        every = cls(n_jobs=-1).fit(x)
        np.testing.assert_array_equal(one.decision_scores_, every.decision_scores_)
        np.testing.assert_array_equal(one.decision_function(x), every.decision_function(x))


@pytest.mark.parametrize(
    ("est", "name"),
    [
        (HBOS(n_bins=0), "n_bins"),
        (HBOS(alpha=1.5), "alpha"),
        (HBOS(tol=-0.1), "tol"),
        (KNN(n_neighbors=0), "n_neighbors"),
        (KNN(method="max"), "method"),
        (KNN(metric="cosine"), "metric"),
        (KNN(p=0.5), "'p'"),
        (KNN(algorithm="octree"), "algorithm"),
        (KNN(leaf_size=0), "leaf_size"),
        (KNN(radius=-1.0), "radius"),
        (KNN(metric_params={"w": 1}), "metric_params"),
        (PCA(n_components=0), "n_components"),
        (PCA(n_components=9), "n_components"),
        (PCA(n_selected_components=9), "n_selected_components"),
        (PCA(svd_solver="randomized"), "svd_solver"),
        (PCA(whiten="yes"), "whiten"),  # type: ignore[arg-type]
        (GMM(n_components=2), "n_components"),
        (GMM(covariance_type="diag"), "covariance_type"),
        (GMM(reg_covar=-1.0), "reg_covar"),
        (GMM(max_iter=0), "max_iter"),
        (GMM(means_init=[[0.0, 0.0, 0.0, 0.0]]), "means_init"),
        (INNE(n_estimators=0), "n_estimators"),
        (INNE(max_samples=1), "max_samples"),
        (INNE(random_state=-1), "random_state"),
        (ECOD(contamination=0.7), "contamination"),
        (COPOD(contamination=0.0), "contamination"),
        (HBOS(contamination="auto"), "contamination"),  # type: ignore[arg-type]
        (ECOD(n_jobs=0), "n_jobs"),
        (DBSCAN(eps=0.0), "eps"),
        (DBSCAN(min_samples=0), "min_samples"),
        (DBSCAN(metric="chebyshev"), "metric"),
    ],
    ids=lambda v: v if isinstance(v, str) else type(v).__name__,
)
def test_bad_parameters_are_value_errors_naming_them(est: _PyODDetector, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        est.fit(blobs(n=60, seed=4))


@pytest.mark.parametrize("est", EVERY, ids=lambda e: type(e).__name__)
def test_nan_and_the_wrong_width_are_value_errors(est: _PyODDetector) -> None:
    x = blobs(n=80, seed=5)
    bad = x.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        clone(est).fit(bad)
    fitted = clone(est).fit(x)
    with pytest.raises(ValueError, match="NaN"):
        fitted.decision_function(bad[:5])
    with pytest.raises(ValueError, match="4 features"):
        fitted.predict(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="inf"):
        fitted.decision_function(np.full((2, 4), np.inf))


@pytest.mark.parametrize("est", EVERY, ids=lambda e: type(e).__name__)
def test_pickling_and_model_bytes_round_trip(est: _PyODDetector) -> None:
    x, new = blobs(n=300, seed=6), blobs(n=50, seed=7)
    est = clone(est).fit(x)
    copy = pickle.loads(pickle.dumps(est))
    assert copy.get_params() == est.get_params()
    assert copy.threshold_ == est.threshold_
    np.testing.assert_array_equal(copy.decision_scores_, est.decision_scores_)
    np.testing.assert_array_equal(copy.labels_, est.labels_)
    np.testing.assert_array_equal(copy.decision_function(new), est.decision_function(new))
    assert est.to_bytes()[:4] == b"PNMY"
    assert est.to_bytes() in pickle.dumps(est)
    back = type(est).from_bytes(est.to_bytes())
    assert back.threshold_ == est.threshold_
    assert back.n_features_in_ == 4
    np.testing.assert_array_equal(back.decision_function(new), est.decision_function(new))
    np.testing.assert_array_equal(back.predict(new), est.predict(new))
    # The parameters come back: refitting gives the same model.
    refit = clone(back).fit(x)
    np.testing.assert_array_equal(refit.decision_scores_, est.decision_scores_)
    other = ECOD if not isinstance(est, ECOD) else COPOD
    with pytest.raises(ValueError, match="not a"):
        other.from_bytes(est.to_bytes())


@pytest.mark.parametrize("est", EVERY, ids=lambda e: type(e).__name__)
def test_clone_and_params_are_scikit_learns(est: _PyODDetector) -> None:
    params = est.get_params()
    copy = clone(est)
    assert copy is not est and copy.get_params() == params
    assert not hasattr(copy, "decision_scores_")
    signature = inspect.signature(type(est).__init__).parameters
    assert set(params) == set(signature) - {"self"}
    if "contamination" in params:
        copy.set_params(contamination=0.2)
        assert copy.get_params()["contamination"] == 0.2


def test_defaults_are_pyods_and_the_tables() -> None:
    """Each parameter the core takes defaults to the core's default (PyOD's), and the
    documentation lists every constructor parameter with the table's ranges."""
    # PyOD's KNN spells the Euclidean default as minkowski with p=2; scikit-learn's DBSCAN
    # leaves p as None (2).
    same_meaning = {("knn", "metric"): "minkowski", ("knn", "p"): 2, ("dbscan", "p"): None}
    for name, cls in CLASSES.items():
        signature = inspect.signature(cls.__init__).parameters
        doc = cls.__doc__ or ""
        for p in ALGORITHMS[name]["parameters"]:
            default = signature[p["name"]].default
            expected = same_meaning.get((name, p["name"]), p["default"])
            assert default == expected, (name, p["name"], default, expected)
            if isinstance(p.get("range"), str) and p["name"] not in cls._docs:
                # As the table words it, wrapped.
                worded = p["range"][1:].replace("null", "None")
                assert worded in " ".join(doc.split()), (name, p["name"])
        for param in signature:
            if param != "self":
                assert f"\n{param} : " in doc, (name, param)
        if "contamination" in signature:
            assert signature["contamination"].default == 0.1


def test_exported_from_the_package() -> None:
    for name in CLASSES.values():
        assert name.__name__ in pynomaly.__all__
        assert getattr(pynomaly, name.__name__) is name
    with pytest.raises(AttributeError):
        pynomaly.OCSVM  # noqa: B018
