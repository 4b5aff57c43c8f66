"""The estimators against scikit-learn's, their pickling and their model bytes."""

from __future__ import annotations

import pickle
import threading
import time

import numpy as np
import pytest
from sklearn.ensemble import IsolationForest as SkIsolationForest
from sklearn.neighbors import LocalOutlierFactor as SkLocalOutlierFactor

import pynomaly
from pynomaly import IsolationForest, LocalOutlierFactor


def tie_free(n: int, d: int, seed: int) -> np.ndarray:
    """Continuous random rows with a few far outliers: no two distances tie."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    x[: n // 50] += rng.uniform(4.0, 8.0, size=(n // 50, d))
    return x


@pytest.mark.parametrize(
    ("n", "d", "kwargs"),
    [
        (1500, 3, {}),
        (800, 20, {"n_neighbors": 35}),  # above 16 dimensions: the brute-force search
        (600, 4, {"metric": "manhattan", "n_neighbors": 10}),
        (600, 4, {"metric": "minkowski", "p": 3.0}),
        (500, 2, {"contamination": 0.1}),
    ],
)
def test_lof_negative_outlier_factor_equals_scikit_learn(
    n: int, d: int, kwargs: dict[str, object]
) -> None:
    x = tie_free(n, d, seed=n + d)
    ours = LocalOutlierFactor(**kwargs).fit(x)  # type: ignore[arg-type]
    theirs = SkLocalOutlierFactor(**kwargs).fit(x)  # type: ignore[arg-type]
    np.testing.assert_allclose(
        ours.negative_outlier_factor_, theirs.negative_outlier_factor_, rtol=0, atol=1e-9
    )
    assert ours.offset_ == pytest.approx(theirs.offset_, abs=1e-9)
    assert ours.n_neighbors_ == theirs.n_neighbors_
    np.testing.assert_array_equal(
        LocalOutlierFactor(**kwargs).fit_predict(x),  # type: ignore[arg-type]
        SkLocalOutlierFactor(**kwargs).fit_predict(x),  # type: ignore[arg-type]
    )


def test_lof_novelty_scores_equal_scikit_learn() -> None:
    x = tie_free(1000, 5, seed=1)
    new = tie_free(300, 5, seed=2)
    ours = LocalOutlierFactor(novelty=True, contamination=0.05).fit(x)
    theirs = SkLocalOutlierFactor(novelty=True, contamination=0.05).fit(x)
    np.testing.assert_allclose(ours.score_samples(new), theirs.score_samples(new), atol=1e-9)
    np.testing.assert_allclose(
        ours.decision_function(new), theirs.decision_function(new), atol=1e-9
    )
    np.testing.assert_array_equal(ours.predict(new), theirs.predict(new))


def test_lof_methods_follow_novelty_as_scikit_learn() -> None:
    assert not hasattr(LocalOutlierFactor(), "predict")
    assert not hasattr(LocalOutlierFactor(), "score_samples")
    assert hasattr(LocalOutlierFactor(), "fit_predict")
    assert hasattr(LocalOutlierFactor(novelty=True), "predict")
    assert not hasattr(LocalOutlierFactor(novelty=True), "fit_predict")


def test_isolation_forest_is_scikit_learns_algorithm() -> None:
    """Not the same random stream, so not the same scores: the same ranking of outliers
    and the same scale."""
    x = tie_free(2000, 4, seed=3)
    ours = IsolationForest(random_state=0).fit(x).score_samples(x)
    theirs = SkIsolationForest(random_state=0).fit(x).score_samples(x)
    assert np.corrcoef(ours, theirs)[0, 1] > 0.95
    assert abs(ours.mean() - theirs.mean()) < 0.02
    outliers = np.arange(2000 // 50)
    assert set(np.argsort(ours)[:40]) & set(outliers) == set(np.argsort(theirs)[:40]) & set(
        outliers
    )


def test_isolation_forest_contamination_sets_the_offset_as_scikit_learn_does() -> None:
    x = tie_free(1000, 3, seed=4)
    est = IsolationForest(contamination=0.07, random_state=5).fit(x)
    scores = est.score_samples(x)
    assert est.offset_ == np.percentile(scores, 7.0)
    assert (est.predict(x) == -1).sum() == 70
    np.testing.assert_array_equal(est.decision_function(x), scores - est.offset_)
    assert IsolationForest().fit(x).offset_ == -0.5


def test_the_same_seed_gives_the_same_forest_on_any_thread_count() -> None:
    x = tie_free(5000, 6, seed=6)
    one = IsolationForest(random_state=9, n_jobs=1).fit(x).score_samples(x)
    all_cores = IsolationForest(random_state=9, n_jobs=-1).fit(x).score_samples(x)
    np.testing.assert_array_equal(one, all_cores)


@pytest.mark.parametrize(
    "estimator",
    [
        IsolationForest(random_state=3, contamination=0.1),
        LocalOutlierFactor(novelty=True, n_neighbors=7),
    ],
)
def test_pickling_round_trip_keeps_every_score(estimator: pynomaly.IsolationForest) -> None:
    x = tie_free(700, 4, seed=7)
    new = tie_free(100, 4, seed=8)
    estimator.fit(x)
    copy = pickle.loads(pickle.dumps(estimator))
    assert copy.get_params() == estimator.get_params()
    assert copy.offset_ == estimator.offset_
    np.testing.assert_array_equal(copy.score_samples(new), estimator.score_samples(new))
    np.testing.assert_array_equal(copy.predict(new), estimator.predict(new))
    # The pickle carries the service's model format.
    assert estimator.to_bytes()[:4] == b"PNMY"
    assert estimator.to_bytes() in pickle.dumps(estimator)


def test_model_bytes_give_back_an_estimator() -> None:
    x = tie_free(400, 3, seed=10)
    est = IsolationForest(n_estimators=30, max_samples=100, random_state=11).fit(x)
    back = IsolationForest.from_bytes(est.to_bytes())
    assert back.get_params()["random_state"] == 11
    assert back.max_samples_ == est.max_samples_ == 100
    np.testing.assert_array_equal(back.score_samples(x), est.score_samples(x))
    with pytest.raises(ValueError, match="bad magic bytes"):
        IsolationForest.from_bytes(b"not a model")
    lof = LocalOutlierFactor(novelty=True).fit(x)
    with pytest.raises(ValueError, match="lof model"):
        IsolationForest.from_bytes(lof.to_bytes())


def test_bad_parameters_and_data_are_value_errors_naming_them() -> None:
    x = tie_free(50, 2, seed=12)
    with pytest.raises(ValueError, match="n_estimators"):
        IsolationForest(n_estimators=0).fit(x)
    with pytest.raises(ValueError, match="contamination"):
        IsolationForest(contamination=0.7).fit(x)
    with pytest.raises(ValueError, match="max_features"):
        IsolationForest(max_features=5).fit(x)
    with pytest.raises(ValueError, match="'p'"):
        LocalOutlierFactor(p=0.5).fit(x)
    with pytest.raises(ValueError, match="metric"):
        LocalOutlierFactor(metric="cosine").fit(x)
    with pytest.raises(ValueError, match="NaN"):
        IsolationForest().fit(np.array([[1.0, np.nan], [2.0, 3.0]]))
    with pytest.raises(ValueError, match="3 features"):
        IsolationForest().fit(x).predict(np.zeros((2, 3)))


def test_warnings_are_scikit_learns() -> None:
    x = tie_free(10, 2, seed=13)
    with pytest.warns(UserWarning, match="n_neighbors will be set to"):
        LocalOutlierFactor().fit(x)
    with pytest.warns(UserWarning, match="max_samples will be set to"):
        IsolationForest(max_samples=50).fit(x)


def test_dataframes_are_accepted_and_their_columns_remembered() -> None:
    pd = pytest.importorskip("pandas")
    x = tie_free(300, 3, seed=14)
    frame = pd.DataFrame(x, columns=["a", "b", "c"])
    est = IsolationForest(random_state=1).fit(frame)
    assert list(est.feature_names_in_) == ["a", "b", "c"]
    plain = IsolationForest(random_state=1).fit(x)
    np.testing.assert_array_equal(est.score_samples(frame), plain.score_samples(x))


def test_the_gil_is_released_while_fitting() -> None:
    """Another Python thread keeps running while a large fit computes."""
    x = tie_free(40_000, 8, seed=15)
    ticks = 0
    done = threading.Event()

    def count() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            time.sleep(0.001)

    counter = threading.Thread(target=count)
    counter.start()
    start = time.perf_counter()
    LocalOutlierFactor(n_neighbors=20, n_jobs=1).fit(x)
    elapsed = time.perf_counter() - start
    done.set()
    counter.join()
    # With the GIL held, the counter could not tick at all during the fit.
    assert elapsed < 0.05 or ticks > 5, (elapsed, ticks)
