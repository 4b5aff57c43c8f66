"""scikit-learn anomaly detectors running on pynomaly's Rust core (detect-core).

:class:`IsolationForest` and :class:`LocalOutlierFactor` take scikit-learn's parameters
with scikit-learn's defaults and answer scikit-learn's methods (``fit``, ``predict``,
``fit_predict``, ``score_samples``, ``decision_function``, ``offset_``, and ``novelty``
for LOF), so they drop into pipelines, grid searches and ``clone``. The numbers come from
the same code that ``pynomaly serve`` runs:

- LOF's scores are scikit-learn's (``negative_outlier_factor_`` and novelty
  ``score_samples`` agree to rounding).
- The isolation forest is scikit-learn's algorithm with its own random stream: the same
  ``random_state`` gives the same forest here, in the HTTP service and on the command
  line, but not the forest scikit-learn would grow from that seed.

Differences from scikit-learn, all deliberate:

- ``n_jobs=None`` uses every core (scikit-learn: one); results never depend on the number
  of threads.
- ``IsolationForest`` takes no ``sample_weight`` and no ``warm_start=True``; it has no
  ``estimators_`` (the trees live in Rust).
- ``LocalOutlierFactor`` supports the ``euclidean``, ``manhattan`` and ``minkowski``
  (``p >= 1``) metrics; ``algorithm`` and ``leaf_size`` are accepted and checked but do not
  change the (exact) result: the core picks a k-d tree or blocked brute force itself.
- Sparse input is refused.

A fitted estimator pickles through the service's model format (``PNMY`` bytes), and
:meth:`IsolationForest.to_bytes` / :meth:`IsolationForest.from_bytes` give those bytes
directly.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import warnings
from typing import Any, Callable, Optional, TypeVar, Union

import numpy as np
import numpy.typing as npt
from sklearn.base import BaseEstimator, OutlierMixin
from sklearn.utils import check_random_state
from sklearn.utils.metaestimators import available_if
from sklearn.utils.validation import check_is_fitted, validate_data

from pynomaly._core import Model

__all__ = ["IsolationForest", "LocalOutlierFactor"]

F = TypeVar("F", bound=Callable[..., Any])
FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
Contamination = Union[str, float]


def _n_threads(n_jobs: Optional[int]) -> Optional[int]:
    """Threads for ``n_jobs``, joblib's way; ``None`` is every core (the global pool)."""
    if n_jobs is None:
        return None
    if not isinstance(n_jobs, numbers.Integral) or isinstance(n_jobs, bool) or n_jobs == 0:
        raise ValueError(f"n_jobs must be None or a non-zero integer, got {n_jobs!r}")
    cores = os.cpu_count() or 1
    n = int(n_jobs)
    return n if n > 0 else max(1, cores + 1 + n)


def _json_value(name: str, value: Any) -> Any:
    """``value`` as plain JSON (NumPy scalars included), refusing what JSON cannot say."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        f = float(value)
        if not math.isfinite(f):
            raise ValueError(f"invalid value for '{name}': got {f}")
        return f
    raise ValueError(f"invalid value for '{name}': got {value!r}")


def _seed(random_state: Any) -> int:
    """The forest's seed: an integer ``random_state`` itself (so the service, given the
    same number, grows the same forest), else a 32-bit draw from the generator
    scikit-learn's ``check_random_state`` gives (NumPy's global one for ``None``)."""
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        if random_state < 0:
            raise ValueError(f"random_state must be >= 0, got {random_state}")
        return int(random_state)
    rng = check_random_state(random_state)
    return int(rng.randint(0, 2**32, dtype=np.int64))


def _fit(
    algorithm: str,
    params: dict[str, Any],
    contamination: Any,
    X: FloatArray,
    n_jobs: Optional[int],
    training_scores: bool,
) -> tuple[Model, Optional[FloatArray]]:
    model, scores, messages = Model.fit(
        algorithm,
        json.dumps({k: _json_value(k, v) for k, v in params.items()}),
        json.dumps(_json_value("contamination", contamination)),
        X,
        _n_threads(n_jobs),
        training_scores,
    )
    for message in messages:
        warnings.warn(message, UserWarning, stacklevel=3)
    return model, scores


def _available_if(check: Callable[[Any], bool]) -> Callable[[F], F]:
    """scikit-learn's ``available_if``, typed: the method exists only where ``check``
    passes (it raises ``AttributeError`` otherwise)."""
    decorator: Callable[[F], F] = available_if(check)
    return decorator


def _labels(below: npt.NDArray[np.bool_]) -> IntArray:
    """scikit-learn's labels: -1 where ``below`` (an outlier), else 1."""
    labels = np.ones(below.shape[0], dtype=np.int64)
    labels[below] = -1
    return labels


class _CoreModel(BaseEstimator):  # type: ignore[misc]
    """What every estimator on the core shares: the Rust model, its bytes, validation of
    new rows."""

    _model: Model
    n_jobs: Optional[int]
    n_features_in_: int

    def _rows(self, X: Any) -> FloatArray:
        check_is_fitted(self)
        if (
            type(X) is np.ndarray
            and X.dtype == np.float64
            and X.ndim == 2
            and X.shape[0] > 0
            and X.shape[1] == self.n_features_in_
            and not hasattr(self, "feature_names_in_")
        ):
            # Already what the core reads (it rejects NaN and infinity itself, naming the
            # cell): scikit-learn's validation would cost more than scoring a few rows.
            return X
        rows: FloatArray = validate_data(self, X, dtype=np.float64, reset=False)
        return rows

    def _anomaly_scores(self, X: Any) -> FloatArray:
        """Scores of new rows in the service's convention (higher = more anomalous)."""
        rows = self._rows(X)
        scores: FloatArray = self._model.score(rows, _n_threads(self.n_jobs))
        return scores

    def to_bytes(self) -> bytes:
        """The fitted model in the service's format (``PNMY``, version, postcard body).

        Returns
        -------
        bytes
            What :meth:`from_bytes` reads back; pickling stores the same bytes.
        """
        check_is_fitted(self)
        return self._model.to_bytes()


class _PynomalyDetector(OutlierMixin, _CoreModel):  # type: ignore[misc]
    """What both scikit-learn detectors share beyond the model: ``offset_`` and the
    service's threshold."""

    offset_: float

    @property
    def threshold_(self) -> float:
        """The service's threshold: a row is an anomaly when ``-score_samples`` exceeds it
        (always ``-offset_``)."""
        check_is_fitted(self)
        return self._model.threshold


class IsolationForest(_PynomalyDetector):
    """Isolation forest (Liu, Ting & Zhou, 2008) with scikit-learn's interface.

    Parameters
    ----------
    n_estimators : int, default=100
        Number of trees.
    max_samples : "auto", int or float, default="auto"
        Rows each tree is grown on: ``"auto"`` is ``min(256, n_samples)``, an int a count
        (more than ``n_samples`` is clamped, with a warning), a float a fraction in (0, 1].
    contamination : "auto" or float, default="auto"
        ``"auto"`` puts ``offset_`` at -0.5 (the original paper's); a float in (0, 0.5]
        puts it at that quantile of the training scores.
    max_features : int or float, default=1.0
        Features each tree draws from: a count, or a fraction in (0, 1].
    bootstrap : bool, default=False
        Draw each tree's rows with replacement.
    n_jobs : int, default=None
        Threads for fitting and scoring: ``None`` every core, ``-1`` every core, ``n`` n.
    random_state : int, RandomState instance or None, default=None
        An int is the forest's seed, as in the service; otherwise a seed is drawn from the
        generator (NumPy's global one for ``None``) and kept in ``seed_``.
    verbose : int, default=0
        Accepted for compatibility; nothing is printed.
    warm_start : bool, default=False
        Only ``False``: adding trees to a fitted forest is not supported.

    Attributes
    ----------
    offset_ : float
        ``decision_function = score_samples - offset_``.
    max_samples_ : int
        Rows each tree was grown on.
    seed_ : int
        The seed the forest was grown with.
    n_features_in_ : int
        Number of features seen during ``fit``.
    feature_names_in_ : ndarray of str
        Column names, when ``X`` was a DataFrame with string column names.

    Examples
    --------
    >>> import numpy as np
    >>> from pynomaly import IsolationForest
    >>> X = np.array([[0.0, 0.1], [0.1, 0.0], [0.05, 0.05], [0.1, 0.1], [8.0, 9.0]])
    >>> IsolationForest(n_estimators=50, random_state=7).fit(X).predict(X)
    array([ 1,  1,  1,  1, -1])
    """

    def __init__(
        self,
        *,
        n_estimators: int = 100,
        max_samples: Union[str, int, float] = "auto",
        contamination: Contamination = "auto",
        max_features: Union[int, float] = 1.0,
        bootstrap: bool = False,
        n_jobs: Optional[int] = None,
        random_state: Any = None,
        verbose: int = 0,
        warm_start: bool = False,
    ) -> None:
        self.n_estimators = n_estimators
        self.max_samples = max_samples
        self.contamination = contamination
        self.max_features = max_features
        self.bootstrap = bootstrap
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.verbose = verbose
        self.warm_start = warm_start

    def fit(self, X: Any, y: Any = None) -> IsolationForest:
        """Grow the forest on ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training rows, finite numbers; at least 2 rows.
        y : Ignored
            Not used, present for API consistency.

        Returns
        -------
        self : IsolationForest
            The fitted estimator.
        """
        X = validate_data(self, X, dtype=np.float64, ensure_min_samples=2)
        if self.warm_start:
            raise ValueError("warm_start=True is not supported: fit a new forest instead")
        seed = _seed(self.random_state)
        params = {
            "n_estimators": self.n_estimators,
            "max_samples": self.max_samples,
            "max_features": self.max_features,
            "bootstrap": self.bootstrap,
            "random_state": seed,
        }
        # Contamination "auto" needs no training scores: the forest is only grown.
        self._model, _ = _fit(
            "isolation_forest", params, self.contamination, X, self.n_jobs, training_scores=False
        )
        n = X.shape[0]
        ms = self.max_samples
        if isinstance(ms, str):
            self.max_samples_ = min(256, n)
        elif isinstance(ms, numbers.Integral):
            self.max_samples_ = min(int(ms), n)
        else:
            self.max_samples_ = max(1, int(float(ms) * n))
        self.seed_ = seed
        self.offset_ = -self._model.threshold
        return self

    def score_samples(self, X: Any) -> FloatArray:
        """Opposite of the anomaly score of the original paper: lower is more abnormal.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Rows to score.

        Returns
        -------
        ndarray of shape (n_samples,)
            ``-2 ** (-E[h(x)] / c(max_samples))``, in [-1, 0).
        """
        return -self._anomaly_scores(X)

    def decision_function(self, X: Any) -> FloatArray:
        """``score_samples(X) - offset_``: negative for outliers.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Rows to score.

        Returns
        -------
        ndarray of shape (n_samples,)
            Shifted scores; below 0 is an outlier.
        """
        return self.score_samples(X) - self.offset_

    def predict(self, X: Any) -> IntArray:
        """Label rows: -1 for outliers, 1 for inliers.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Rows to label.

        Returns
        -------
        ndarray of shape (n_samples,)
            -1 or 1 per row.
        """
        return _labels(self.decision_function(X) < 0)

    @classmethod
    def from_bytes(cls, data: bytes) -> IsolationForest:
        """An estimator around a model in the service's format.

        Parameters
        ----------
        data : bytes
            An isolation forest from :meth:`to_bytes` or the service's artifact store.

        Returns
        -------
        IsolationForest
            Fitted; its parameters are the model's.
        """
        model = Model.from_bytes(data)
        if model.algorithm != "isolation_forest":
            raise ValueError(f"the model is a {model.algorithm} model, not an isolation forest")
        config = json.loads(model.config_json)
        p = config["parameters"]
        est = cls(
            n_estimators=p["n_estimators"],
            max_samples=p["max_samples"],
            contamination=config["contamination"],
            max_features=p["max_features"],
            bootstrap=p["bootstrap"],
            random_state=p["random_state"],
        )
        est._model = model
        est.n_features_in_ = model.n_features
        est.seed_ = p["random_state"]
        n = model.n_samples
        ms = p["max_samples"]
        est.max_samples_ = (
            min(256, n) if ms == "auto" else min(ms, n) if isinstance(ms, int) else max(1, int(ms * n))
        )
        est.offset_ = -model.threshold
        return est


_LOF_ALGORITHMS = ("auto", "ball_tree", "kd_tree", "brute")
_METRIC_ALIASES = {
    "euclidean": "euclidean",
    "l2": "euclidean",
    "manhattan": "manhattan",
    "cityblock": "manhattan",
    "l1": "manhattan",
    "minkowski": "minkowski",
}


def _check_neighbor_search(algorithm: Any, leaf_size: Any) -> None:
    """scikit-learn's ``algorithm`` and ``leaf_size``, checked: neither changes the exact
    neighbours the core finds."""
    if algorithm not in _LOF_ALGORITHMS:
        raise ValueError(
            f"algorithm must be one of {', '.join(_LOF_ALGORITHMS)}, got {algorithm!r}"
        )
    if not isinstance(leaf_size, numbers.Integral) or isinstance(leaf_size, bool) or leaf_size < 1:
        raise ValueError(f"leaf_size must be an integer >= 1, got {leaf_size!r}")


def _metric_params(metric: Any, p: Any, metric_params: Optional[dict[str, Any]]) -> dict[str, Any]:
    """The core's ``metric`` (and ``p`` for Minkowski) from scikit-learn's ``metric``,
    ``p`` (``None`` is 2) and ``metric_params``."""
    if not isinstance(metric, str) or metric not in _METRIC_ALIASES:
        raise ValueError(f"metric must be one of {', '.join(_METRIC_ALIASES)}, got {metric!r}")
    if metric_params:
        extra = set(metric_params) - {"p"}
        if extra:
            raise ValueError(f"metric_params may only hold 'p', got {sorted(extra)}")
        p = metric_params.get("p", p)
    params: dict[str, Any] = {"metric": _METRIC_ALIASES[metric]}
    if params["metric"] == "minkowski":
        params["p"] = 2.0 if p is None else p
    return params


class LocalOutlierFactor(_PynomalyDetector):
    """Local outlier factor (Breunig et al., 2000) with scikit-learn's interface and scores.

    Parameters
    ----------
    n_neighbors : int, default=20
        Neighbours per row; above ``n_samples - 1`` it is clamped (with a warning when
        above ``n_samples``).
    algorithm : {"auto", "ball_tree", "kd_tree", "brute"}, default="auto"
        Accepted and checked; the search is exact either way and the core chooses it.
    leaf_size : int, default=30
        Accepted and checked (>= 1); does not change the result.
    metric : {"minkowski", "euclidean", "manhattan", "l1", "l2", "cityblock"}, default="minkowski"
        Distance between rows.
    p : float, default=2
        Minkowski exponent, >= 1 (2 is Euclidean, 1 Manhattan).
    metric_params : dict, default=None
        Only ``{"p": value}`` (scikit-learn's alternative spelling of ``p``).
    contamination : "auto" or float, default="auto"
        ``"auto"`` puts ``offset_`` at -1.5; a float in (0, 0.5] at that quantile of
        ``negative_outlier_factor_``.
    novelty : bool, default=False
        ``False``: outlier detection on the training rows (``fit_predict``,
        ``negative_outlier_factor_``). ``True``: novelty detection, with ``predict``,
        ``decision_function`` and ``score_samples`` for new rows.
    n_jobs : int, default=None
        Threads: ``None`` every core, ``-1`` every core, ``n`` n.

    Attributes
    ----------
    negative_outlier_factor_ : ndarray of shape (n_samples,)
        Opposite of each training row's LOF, its neighbours excluding itself.
    n_neighbors_ : int
        Neighbours actually used.
    offset_ : float
        Labels: ``-1`` where the (negative) factor is below it.
    effective_metric_ : str
        The metric used (``minkowski`` with p=2 is ``euclidean``).
    n_samples_fit_ : int
        Number of training rows.
    n_features_in_ : int
        Number of features seen during ``fit``.

    Examples
    --------
    >>> import numpy as np
    >>> from pynomaly import LocalOutlierFactor
    >>> X = np.array([[0.0], [0.1], [0.25], [0.3], [9.0]])
    >>> LocalOutlierFactor(n_neighbors=2).fit_predict(X)
    array([ 1,  1,  1,  1, -1])
    """

    def __init__(
        self,
        n_neighbors: int = 20,
        *,
        algorithm: str = "auto",
        leaf_size: int = 30,
        metric: str = "minkowski",
        p: float = 2,
        metric_params: Optional[dict[str, Any]] = None,
        contamination: Contamination = "auto",
        novelty: bool = False,
        n_jobs: Optional[int] = None,
    ) -> None:
        self.n_neighbors = n_neighbors
        self.algorithm = algorithm
        self.leaf_size = leaf_size
        self.metric = metric
        self.p = p
        self.metric_params = metric_params
        self.contamination = contamination
        self.novelty = novelty
        self.n_jobs = n_jobs

    def _core_params(self) -> dict[str, Any]:
        _check_neighbor_search(self.algorithm, self.leaf_size)
        return {
            "n_neighbors": self.n_neighbors,
            **_metric_params(self.metric, self.p, self.metric_params),
        }

    def fit(self, X: Any, y: Any = None) -> LocalOutlierFactor:
        """Find each training row's neighbours and local outlier factor.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training rows, finite numbers; at least 2 rows.
        y : Ignored
            Not used, present for API consistency.

        Returns
        -------
        self : LocalOutlierFactor
            The fitted estimator.
        """
        X = validate_data(self, X, dtype=np.float64, ensure_min_samples=2)
        params = self._core_params()
        self._model, scores = _fit(
            "lof", params, self.contamination, X, self.n_jobs, training_scores=True
        )
        assert scores is not None
        n = X.shape[0]
        self.negative_outlier_factor_ = -scores
        self.n_neighbors_ = max(1, min(int(self.n_neighbors), n - 1))
        self.n_samples_fit_ = n
        self.effective_metric_ = json.loads(self._model.config_json)["parameters"]["metric"]
        self.offset_ = -self._model.threshold
        return self

    def _check_novelty_fit_predict(self) -> bool:
        if self.novelty:
            raise AttributeError(
                "fit_predict is not available when novelty=True: use novelty=False to "
                "label the training rows, or fit then predict for new rows"
            )
        return True

    def _check_novelty(self) -> bool:
        if not self.novelty:
            raise AttributeError(
                "predict, decision_function and score_samples are not available when "
                "novelty=False (outlier detection): use fit_predict, or set novelty=True "
                "to score new rows"
            )
        return True

    @_available_if(_check_novelty_fit_predict)
    def fit_predict(self, X: Any, y: Any = None) -> IntArray:
        """Fit and label the training rows: -1 for outliers, 1 for inliers.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training rows.
        y : Ignored
            Not used, present for API consistency.

        Returns
        -------
        ndarray of shape (n_samples,)
            -1 or 1 per row.
        """
        self.fit(X)
        return _labels(self.negative_outlier_factor_ < self.offset_)

    @_available_if(_check_novelty)
    def score_samples(self, X: Any) -> FloatArray:
        """Opposite of the LOF of new rows, their neighbours among the training rows.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Rows to score (``novelty=True`` only).

        Returns
        -------
        ndarray of shape (n_samples,)
            About -1 for inliers, lower for outliers.
        """
        return -self._anomaly_scores(X)

    @_available_if(_check_novelty)
    def decision_function(self, X: Any) -> FloatArray:
        """``score_samples(X) - offset_``: negative for outliers (``novelty=True`` only).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Rows to score.

        Returns
        -------
        ndarray of shape (n_samples,)
            Shifted scores; below 0 is an outlier.
        """
        return self.score_samples(X) - self.offset_

    @_available_if(_check_novelty)
    def predict(self, X: Any) -> IntArray:
        """Label new rows: -1 for outliers, 1 for inliers (``novelty=True`` only).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Rows to label.

        Returns
        -------
        ndarray of shape (n_samples,)
            -1 or 1 per row.
        """
        return _labels(self.decision_function(X) < 0)
