"""PyOD's detectors on pynomaly's Rust core (detect-core), with PyOD's interface.

:class:`ECOD`, :class:`COPOD`, :class:`HBOS`, :class:`KNN`, :class:`PCA`, :class:`GMM`,
:class:`MCD`, :class:`CBLOF` and :class:`INNE` take the constructor parameters of PyOD's
classes of the same names, with
PyOD's defaults, and answer PyOD's ``BaseDetector`` interface: ``fit(X)``,
``decision_function(X)`` (higher = more anomalous), ``predict(X)`` (1 = outlier, 0 =
inlier), ``fit_predict``, and the fitted ``decision_scores_``, ``threshold_`` (the
``100 * (1 - contamination)`` percentile of ``decision_scores_``) and ``labels_``.
The numbers come from the code ``pynomaly serve`` runs:

- ECOD, COPOD, HBOS, KNN, PCA and GMM give PyOD's ``decision_scores_`` (to rounding; the
  tests compare them with PyOD's on committed fixtures to 1e-9 relative).
- ECOD and COPOD score each new row against the training rows alone: what PyOD gives one
  row at a time (PyOD scores a batch of new rows together with the training rows, so its
  scores of a batch depend on the batch).
- MCD is scikit-learn's FastMCD step by step (``MinCovDet``) and CBLOF scikit-learn's
  ``KMeans``, both drawing from ``np.random.RandomState(random_state)`` as scikit-learn
  does: an integer ``random_state`` gives PyOD's model, up to rounding (see
  ``BENCHMARKS.md`` for data whose best supports are singular).
- INNE is PyOD's algorithm with the service's random stream: the same ``random_state``
  gives the same model here, in the service and on the command line, not PyOD's.

:class:`DBSCAN` is scikit-learn's ``DBSCAN`` (its parameters, ``labels_`` with -1 for
noise, ``core_sample_indices_``, ``components_``) that also scores rows: a row's score is
its distance to the nearest core row (0 for a core row), so the noise rows are exactly the
training rows scoring above ``eps`` and ``decision_function`` scores new rows the same
way.

Every parameter the core takes is checked by the core, with its messages (a
``ValueError`` naming the parameter); the PyOD parameters that select an implementation
(``algorithm``, ``leaf_size``, ``svd_solver``, ...) are accepted and checked where they
do not change the result, and refused with a ``ValueError`` where they would. The
parameter lists in each class's documentation are read from the core's parameter table.
Fitted estimators pickle through the service's model format (``PNMY`` bytes, as
:meth:`to_bytes` gives them; :meth:`from_bytes` reads them back).
"""

from __future__ import annotations

import inspect
import json
import numbers
import textwrap
from typing import Any, Callable, ClassVar, Optional, Union

import numpy as np
from sklearn.utils.validation import validate_data

from pynomaly import _core
from pynomaly._core import Model
from pynomaly.estimators import (
    FloatArray,
    IntArray,
    _CoreModel,
    _fit,
    _json_value,
    _metric_params,
    _n_threads,
    _seed,
    _check_neighbor_search,
)

__all__ = ["CBLOF", "COPOD", "DBSCAN", "ECOD", "GMM", "HBOS", "INNE", "KNN", "MCD", "PCA"]

#: The core's parameter table: algorithm name -> its entry of ``GET /api/v1/algorithms``.
ALGORITHMS: dict[str, dict[str, Any]] = {a["name"]: a for a in json.loads(_core.algorithms())}

Check = Callable[[str, Any], None]


def _one_of(*allowed: Any) -> Check:
    """A check that ``value`` is one of ``allowed``."""

    def check(name: str, value: Any) -> None:
        if isinstance(value, bool) and not any(isinstance(a, bool) for a in allowed):
            raise ValueError(f"{name} must be one of {allowed!r}, got {value!r}")
        if not any(value == a and type(value) is type(a) for a in allowed):
            raise ValueError(f"{name} must be one of {allowed!r}, got {value!r}")

    return check


def _only(value: Any, why: str) -> Check:
    """A check refusing every value but ``value`` (``why`` says why)."""

    def check(name: str, got: Any) -> None:
        if got is value or (value is not None and got == value and type(got) is type(value)):
            return
        raise ValueError(f"{name}={got!r} is not supported: {why}")

    return check


def _integer_at_least(low: int) -> Check:
    def check(name: str, value: Any) -> None:
        if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")

    return check


def _number_at_least(low: float) -> Check:
    def check(name: str, value: Any) -> None:
        if (
            not isinstance(value, numbers.Real)
            or isinstance(value, bool)
            or not np.isfinite(float(value))
            or value < low
        ):
            raise ValueError(f"{name} must be a number >= {low}, got {value!r}")

    return check


def _boolean(name: str, value: Any) -> None:
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {value!r}")


def _anything(name: str, value: Any) -> None:
    """Accepted as it is: the parameter does not enter the computation."""


def _random_state(name: str, value: Any) -> None:
    if value is None or isinstance(value, np.random.RandomState):
        return
    _integer_at_least(0)(name, value)


# What each parameter that the core does not take means here, for the documentation.
_SHARED_DOCS = {
    "contamination": (
        "float, default=0.1",
        "Share of outliers in the training rows, in (0, 0.5]: ``threshold_`` is the "
        "``100 * (1 - contamination)`` percentile of ``decision_scores_``.",
    ),
    "n_jobs": (
        "int or None",
        "Threads for fitting and scoring: ``n`` n, ``-1`` every core, ``None`` every core. "
        "Results never depend on it.",
    ),
    "algorithm": (
        'str, default="auto"',
        '"auto", "ball_tree", "kd_tree" or "brute": accepted and checked; the search is '
        "exact either way and the core chooses it.",
    ),
    "leaf_size": ("int, default=30", "Accepted and checked (>= 1); does not change the result."),
    "metric_params": (
        "dict, default=None",
        "Only ``{\"p\": value}`` (scikit-learn's other spelling of ``p``).",
    ),
}


_JSON_TYPES = {"integer": "int", "number": "float", "boolean": "bool", "string": "str"}


def _wrap(text: str) -> list[str]:
    """A parameter's description as numpydoc's indented lines (words kept whole, so
    "scikit-learn's" is never split at its hyphen)."""
    return textwrap.wrap(
        text, 84, initial_indent="    ", subsequent_indent="    ", break_on_hyphens=False
    )


def _table_doc(entry: dict[str, Any]) -> tuple[str, str]:
    """A parameter's type and description from its entry in the core's table."""
    kinds = [k.strip().strip('"') for k in entry["type"].split("|")]
    kind = " or ".join(_JSON_TYPES.get(k, f'"{k}"') for k in kinds if k != "null")
    if "null" in kinds:
        kind += " or None"
    accepted = entry.get("range")
    if isinstance(accepted, list):
        accepted = f"an integer in [{accepted[0]}, {accepted[1]}]"
    elif "accepted" in entry:
        accepted = "one of " + ", ".join(f'"{a}"' for a in entry["accepted"])
    elif accepted is None:
        accepted = "``True`` or ``False``"
    accepted = accepted.replace("null", "None")
    return kind, accepted[0].upper() + accepted[1:] + "."


class _PyODDetector(_CoreModel):
    """What PyOD's detectors share here: ``fit`` on the core, PyOD's attributes and
    methods, the model bytes, and the documentation read from the core's table.

    A subclass names the core's algorithm (``_algorithm``) and writes PyOD's constructor
    (explicit keyword parameters, stored as they are: scikit-learn's ``get_params`` and
    ``clone`` read the signature). Constructor parameters that the core's table lists go
    to the core as they are; the others need an entry in ``_checks`` (accepted and checked,
    or refused) and in ``_docs``.
    """

    _algorithm: ClassVar[str]
    #: Parameters the core does not take: how each is checked.
    _checks: ClassVar[dict[str, Check]] = {}
    #: Parameters the core does not take: (type and default, what it does).
    _docs: ClassVar[dict[str, tuple[str, str]]] = {}
    #: Fitted attributes beyond PyOD's: (name and type, what it holds).
    _attributes: ClassVar[tuple[tuple[str, str], ...]] = ()

    contamination: Any
    n_jobs: Optional[int]
    decision_scores_: FloatArray
    threshold_: float
    labels_: IntArray

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "_algorithm" in cls.__dict__:
            cls.__doc__ = inspect.cleandoc(cls.__doc__ or "") + "\n\n" + cls._parameter_docs()

    @classmethod
    def _table(cls) -> dict[str, dict[str, Any]]:
        """The core's parameters of this algorithm, by name."""
        return {p["name"]: p for p in ALGORITHMS[cls._algorithm]["parameters"]}

    @classmethod
    def _parameter_docs(cls) -> str:
        """numpydoc ``Parameters``: the core's parameters as its table describes them
        (unless ``_docs`` words them for scikit-learn's spellings), the others as ``_docs``
        does, in the constructor's order."""
        table = cls._table()
        lines = ["Parameters", "----------"]
        for name, param in inspect.signature(cls.__init__).parameters.items():
            if name == "self":
                continue
            if name in table and name not in cls._docs:
                kind, text = _table_doc(table[name])
            else:
                kind, text = cls._docs.get(name) or _SHARED_DOCS[name]
            if "default=" not in kind:
                kind = f"{kind}, default={param.default!r}"
            lines.append(f"{name} : {kind}")
            lines += _wrap(text)
        lines += [
            "",
            "Attributes",
            "----------",
            "decision_scores_ : ndarray of shape (n_samples,)",
            "    The training rows' outlier scores, higher = more anomalous.",
            "threshold_ : float",
            "    Rows scoring above it are outliers.",
            "labels_ : ndarray of shape (n_samples,)",
            "    "
            + (
                "Cluster of each training row, -1 for noise."
                if cls._algorithm == "dbscan"
                else "1 for the training rows scoring above ``threshold_``, else 0."
            ),
            "n_features_in_ : int",
            "    Number of features seen during ``fit``.",
        ]
        attributes = list(cls._attributes)
        if "random_state" in table:
            attributes.append(("seed_ : int", "The seed the model was drawn with."))
        for attribute, text in attributes:
            lines.append(attribute)
            lines += _wrap(text)
        return "\n".join(lines)

    # -- parameters -------------------------------------------------------------------

    def _contamination(self) -> Any:
        c = self.contamination
        if not isinstance(c, numbers.Real) or isinstance(c, bool) or not 0.0 < float(c) <= 0.5:
            raise ValueError(f"contamination must be a number in (0, 0.5], got {c!r}")
        return float(c)

    def _core_params(self) -> dict[str, Any]:
        """The parameters the core takes, checking the others on the way."""
        table = self._table()
        params: dict[str, Any] = {}
        for name, value in self.get_params(deep=False).items():
            if name == "random_state" and name in table:
                # A randomized detector: an integer is the seed, as in the service.
                params[name] = _seed(value)
            elif name in table:
                params[name] = value
            elif name in self._checks:
                self._checks[name](name, value)
            elif name not in ("contamination", "n_jobs"):
                raise TypeError(f"{type(self).__name__}: no rule for the parameter {name!r}")
        return params

    # -- fitting and scoring ----------------------------------------------------------

    def fit(self, X: Any, y: Any = None) -> Any:
        """Fit the detector on ``X`` and score its rows.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training rows, finite numbers; at least 2 rows.
        y : Ignored
            Not used, present for API consistency.

        Returns
        -------
        self
            The fitted estimator.
        """
        rows: FloatArray = validate_data(self, X, dtype=np.float64, ensure_min_samples=2)
        params = self._core_params()
        contamination = self._contamination()
        self._model, scores = _fit(
            self._algorithm, params, contamination, rows, self.n_jobs, training_scores=True
        )
        assert scores is not None
        self.decision_scores_ = scores
        self.threshold_ = self._model.threshold
        self.labels_ = (scores > self.threshold_).astype(np.int64)
        self._fitted_from_model(json.loads(self._model.config_json))
        self._fitted(rows)
        return self

    def _fitted(self, X: FloatArray) -> None:
        """What a subclass adds after fitting (its own fitted attributes)."""

    def decision_function(self, X: Any) -> FloatArray:
        """Outlier scores of rows against the fitted model, higher = more anomalous.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Rows to score, with the training rows' width.

        Returns
        -------
        ndarray of shape (n_samples,)
            One score per row, on the scale of ``decision_scores_``.
        """
        return self._anomaly_scores(X)

    def predict(self, X: Any) -> IntArray:
        """Label rows: 1 for outliers (scoring above ``threshold_``), 0 for inliers.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Rows to label.

        Returns
        -------
        ndarray of shape (n_samples,)
            0 or 1 per row.
        """
        result: IntArray = (self.decision_function(X) > self.threshold_).astype(np.int64)
        return result

    def fit_predict(self, X: Any, y: Any = None) -> IntArray:
        """Fit on ``X`` and return ``labels_``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training rows.
        y : Ignored
            Not used, present for API consistency.

        Returns
        -------
        ndarray of shape (n_samples,)
            ``labels_``.
        """
        self.fit(X)
        return self.labels_

    @classmethod
    def from_bytes(cls, data: bytes) -> Any:
        """An estimator around a model in the service's format.

        The model file keeps no training scores: the estimator scores and labels new rows
        (``decision_function``, ``predict``, ``threshold_``), but has no
        ``decision_scores_`` or ``labels_``.

        Parameters
        ----------
        data : bytes
            A model of this class's algorithm, from :meth:`to_bytes` or the service.

        Returns
        -------
        estimator
            Fitted; its parameters are the model's.
        """
        model = Model.from_bytes(data)
        if model.algorithm != cls._algorithm:
            raise ValueError(
                f"the model is a {model.algorithm} model, not a {cls._algorithm} model"
            )
        config = json.loads(model.config_json)
        est = cls()
        known = est.get_params(deep=False)
        params = {k: v for k, v in config["parameters"].items() if k in known}
        contamination = config["contamination"]
        if "contamination" in known and isinstance(contamination, (int, float)):
            params["contamination"] = contamination
        est.set_params(**est._params_from_model(params))
        est._model = model
        est.n_features_in_ = model.n_features
        est.threshold_ = model.threshold
        est._fitted_from_model(config)
        return est

    def _params_from_model(self, params: dict[str, Any]) -> dict[str, Any]:
        """Constructor parameters for the core's parameters ``params`` of a model."""
        return params

    def _fitted_from_model(self, config: dict[str, Any]) -> None:
        """Fitted attributes read from the model's configuration (on ``fit`` and
        :meth:`from_bytes`): the seed of a randomized detector."""
        if "random_state" in self._table():
            self.seed_ = config["parameters"]["random_state"]


class _MetricDetector(_PyODDetector):
    """A detector taking scikit-learn's neighbour-search parameters (``metric``, ``p``,
    ``metric_params``, ``algorithm``, ``leaf_size``)."""

    # Checked with the metric, in `_core_params`.
    _checks: ClassVar[dict[str, Check]] = {
        "algorithm": _anything,
        "leaf_size": _anything,
        "metric_params": _anything,
    }
    _attributes: ClassVar[tuple[tuple[str, str], ...]] = (
        ("effective_metric_ : str", "The metric used (minkowski with p=2 is euclidean)."),
    )
    metric: str
    p: Any
    metric_params: Optional[dict[str, Any]]
    algorithm: str
    leaf_size: int

    def _core_params(self) -> dict[str, Any]:
        params = super()._core_params()
        _check_neighbor_search(self.algorithm, self.leaf_size)
        params.pop("p", None)
        params.update(_metric_params(self.metric, self.p, self.metric_params))
        return params

    def _params_from_model(self, params: dict[str, Any]) -> dict[str, Any]:
        if params.get("metric") != "minkowski":
            params.pop("p", None)
        return params

    def _fitted_from_model(self, config: dict[str, Any]) -> None:
        super()._fitted_from_model(config)
        self.effective_metric_ = config["parameters"]["metric"]


class ECOD(_PyODDetector):
    """Unsupervised outlier detection using empirical cumulative distribution functions
    (Li et al., 2022), PyOD's ``ECOD``.

    Deterministic; ``decision_scores_`` are PyOD's. A new row is scored against the
    training rows' distributions alone (PyOD scores a batch of new rows together with the
    training rows).
    """

    _algorithm = "ecod"

    def __init__(self, contamination: float = 0.1, n_jobs: Optional[int] = 1) -> None:
        self.contamination = contamination
        self.n_jobs = n_jobs


class COPOD(_PyODDetector):
    """Copula-based outlier detection (Li et al., 2020), PyOD's ``COPOD``.

    Deterministic; ``decision_scores_`` are PyOD's. A new row is scored against the
    training rows' distributions alone (PyOD scores a batch of new rows together with the
    training rows).
    """

    _algorithm = "copod"

    def __init__(self, contamination: float = 0.1, n_jobs: Optional[int] = 1) -> None:
        self.contamination = contamination
        self.n_jobs = n_jobs


class HBOS(_PyODDetector):
    """Histogram-based outlier score (Goldstein & Dengel, 2012), PyOD's ``HBOS``.

    Deterministic; ``decision_scores_`` are PyOD's. ``n_jobs`` is pynomaly's (PyOD's HBOS
    has none).
    """

    _algorithm = "hbos"

    def __init__(
        self,
        n_bins: Union[int, str] = 10,
        alpha: float = 0.1,
        tol: float = 0.5,
        contamination: float = 0.1,
        n_jobs: Optional[int] = None,
    ) -> None:
        self.n_bins = n_bins
        self.alpha = alpha
        self.tol = tol
        self.contamination = contamination
        self.n_jobs = n_jobs


class KNN(_MetricDetector):
    """k-nearest-neighbour outlier detection (Ramaswamy et al., 2000), PyOD's ``KNN``.

    Exact neighbours; ``decision_scores_`` are PyOD's. Metrics: ``minkowski`` (``p >=
    1``), ``euclidean``/``l2``, ``manhattan``/``l1``/``cityblock``.
    """

    _algorithm = "knn"
    _checks = {**_MetricDetector._checks, "radius": _number_at_least(0.0)}
    _docs = {
        "radius": (
            "float, default=1.0",
            "Accepted and checked (>= 0); PyOD's KNN does not use it for scoring.",
        ),
        "metric": (
            'str, default="minkowski"',
            '"minkowski", "euclidean", "manhattan", "l1", "l2" or "cityblock".',
        ),
        "p": ("float, default=2", "Minkowski exponent, >= 1 (2 is Euclidean, 1 Manhattan)."),
    }

    def __init__(
        self,
        contamination: float = 0.1,
        n_neighbors: int = 5,
        method: str = "largest",
        radius: float = 1.0,
        algorithm: str = "auto",
        leaf_size: int = 30,
        metric: str = "minkowski",
        p: float = 2,
        metric_params: Optional[dict[str, Any]] = None,
        n_jobs: Optional[int] = 1,
    ) -> None:
        self.contamination = contamination
        self.n_neighbors = n_neighbors
        self.method = method
        self.radius = radius
        self.algorithm = algorithm
        self.leaf_size = leaf_size
        self.metric = metric
        self.p = p
        self.metric_params = metric_params
        self.n_jobs = n_jobs


_EXACT_SOLVERS = ("auto", "full", "covariance_eigh")


class PCA(_PyODDetector):
    """Principal-component outlier detection (Shyu et al., 2003), PyOD's ``PCA``.

    An exact (full) decomposition; ``decision_scores_`` are PyOD's wherever scikit-learn's
    PCA is exact too (``svd_solver`` "full" or "covariance_eigh", and "auto" where it
    picks one of those: below 500 rows or columns, or with ten times more rows than
    columns). ``n_jobs`` is pynomaly's (PyOD's PCA has none).
    """

    _algorithm = "pca"
    _checks = {
        "copy": _boolean,
        "whiten": _boolean,
        "svd_solver": _one_of(*_EXACT_SOLVERS),
        "tol": _number_at_least(0.0),
        "iterated_power": lambda name, v: (
            None if v == "auto" and isinstance(v, str) else _integer_at_least(0)(name, v)
        ),
        "random_state": _random_state,
    }
    _docs = {
        "copy": ("bool, default=True", "Accepted and checked; the input is never changed."),
        "whiten": (
            "bool, default=False",
            "Accepted and checked; PyOD's scores do not depend on it.",
        ),
        "svd_solver": (
            'str, default="auto"',
            '"auto", "full" or "covariance_eigh": the decomposition is exact ("arpack" and '
            '"randomized", approximations, are refused).',
        ),
        "tol": ("float, default=0.0", "Accepted and checked (>= 0); for arpack only."),
        "iterated_power": (
            'int or "auto", default="auto"',
            "Accepted and checked; for the randomized solver only.",
        ),
        "random_state": (
            "int, RandomState instance or None, default=None",
            "Accepted and checked; the exact decomposition draws nothing.",
        ),
    }

    def __init__(
        self,
        n_components: Optional[int] = None,
        n_selected_components: Optional[int] = None,
        contamination: float = 0.1,
        copy: bool = True,
        whiten: bool = False,
        svd_solver: str = "auto",
        tol: float = 0.0,
        iterated_power: Union[int, str] = "auto",
        random_state: Any = None,
        weighted: bool = True,
        standardization: bool = True,
        n_jobs: Optional[int] = None,
    ) -> None:
        self.n_components = n_components
        self.n_selected_components = n_selected_components
        self.contamination = contamination
        self.copy = copy
        self.whiten = whiten
        self.svd_solver = svd_solver
        self.tol = tol
        self.iterated_power = iterated_power
        self.random_state = random_state
        self.weighted = weighted
        self.standardization = standardization
        self.n_jobs = n_jobs


_ONE_COMPONENT = "the core fits one Gaussian component"


class GMM(_PyODDetector):
    """Gaussian mixture outlier detection with one full-covariance component, PyOD's
    ``GMM`` with its default ``n_components=1``.

    ``decision_scores_`` (the negative log-likelihood) are PyOD's. With one component the
    EM iterations end where they start, so ``tol``, ``max_iter``, ``n_init``,
    ``init_params``, ``random_state`` and ``warm_start`` are accepted and checked but do
    not change the result. ``n_jobs`` is pynomaly's (PyOD's GMM has none).
    """

    _algorithm = "gmm"
    _checks = {
        "n_components": _only(1, _ONE_COMPONENT),
        "covariance_type": _only("full", _ONE_COMPONENT + " with a full covariance"),
        "tol": _number_at_least(0.0),
        "max_iter": _integer_at_least(1),
        "n_init": _integer_at_least(1),
        "init_params": _one_of("kmeans", "k-means++", "random", "random_from_data"),
        "weights_init": _only(None, "one component has weight 1"),
        "means_init": _only(None, "the mean is the training rows' mean"),
        "precisions_init": _only(None, "the covariance is the training rows' covariance"),
        "random_state": _random_state,
        "warm_start": _boolean,
    }
    _docs = {
        "n_components": ("int, default=1", "Only 1."),
        "covariance_type": ('str, default="full"', 'Only "full".'),
        "tol": ("float, default=0.001", "Accepted and checked (>= 0)."),
        "max_iter": ("int, default=100", "Accepted and checked (>= 1)."),
        "n_init": ("int, default=1", "Accepted and checked (>= 1)."),
        "init_params": (
            'str, default="kmeans"',
            '"kmeans", "k-means++", "random" or "random_from_data": accepted and checked.',
        ),
        "weights_init": ("None", "Only None."),
        "means_init": ("None", "Only None."),
        "precisions_init": ("None", "Only None."),
        "random_state": (
            "int, RandomState instance or None, default=None",
            "Accepted and checked; one component draws nothing.",
        ),
        "warm_start": ("bool, default=False", "Accepted and checked."),
    }

    def __init__(
        self,
        n_components: int = 1,
        covariance_type: str = "full",
        tol: float = 1e-3,
        reg_covar: float = 1e-6,
        max_iter: int = 100,
        n_init: int = 1,
        init_params: str = "kmeans",
        weights_init: Any = None,
        means_init: Any = None,
        precisions_init: Any = None,
        random_state: Any = None,
        warm_start: bool = False,
        contamination: float = 0.1,
        n_jobs: Optional[int] = None,
    ) -> None:
        self.n_components = n_components
        self.covariance_type = covariance_type
        self.tol = tol
        self.reg_covar = reg_covar
        self.max_iter = max_iter
        self.n_init = n_init
        self.init_params = init_params
        self.weights_init = weights_init
        self.means_init = means_init
        self.precisions_init = precisions_init
        self.random_state = random_state
        self.warm_start = warm_start
        self.contamination = contamination
        self.n_jobs = n_jobs


class MCD(_PyODDetector):
    """Minimum covariance determinant outlier detection (Rousseeuw & Van Driessen, 1999),
    PyOD's ``MCD``: scikit-learn's ``MinCovDet`` (FastMCD, its consistency correction and
    reweighting), and each row's Mahalanobis distance to the robust location as its score.

    An integer ``random_state`` is the model's seed, as in the service, and draws FastMCD's
    random subsets as scikit-learn does from ``np.random.RandomState(random_state)``. Other
    ``random_state`` values draw a seed from the generator, kept in ``seed_``. ``n_jobs``
    is pynomaly's (PyOD's MCD has none).
    """

    _algorithm = "mcd"
    _checks = {"store_precision": _boolean}
    _docs = {
        "store_precision": (
            "bool, default=True",
            "Accepted and checked; the precision matrix is always kept (scoring needs it).",
        ),
    }

    def __init__(
        self,
        contamination: float = 0.1,
        store_precision: bool = True,
        assume_centered: bool = False,
        support_fraction: Optional[float] = None,
        random_state: Any = None,
        n_jobs: Optional[int] = None,
    ) -> None:
        self.contamination = contamination
        self.store_precision = store_precision
        self.assume_centered = assume_centered
        self.support_fraction = support_fraction
        self.random_state = random_state
        self.n_jobs = n_jobs


class CBLOF(_PyODDetector):
    """Clustering-based local outlier factor (He, Xu & Deng, 2003), PyOD's ``CBLOF``: k-means
    with scikit-learn's ``KMeans`` defaults (k-means++, Lloyd, one initialisation), the
    clusters split into large and small by ``alpha`` and ``beta``, and each row scored by
    its distance to its own large cluster's centre or the nearest large one (times the
    cluster's size with ``use_weights``).

    ``random_state`` seeds k-means++ as scikit-learn does (see :class:`MCD`).
    Where no split satisfies ``alpha`` or ``beta`` — PyOD raises "Could not form valid
    cluster separation" — every cluster counts as large (each row scores by the distance
    to its own centre) and the fit warns. ``n_jobs`` is pynomaly's threads.
    """

    _algorithm = "cblof"
    _checks = {
        "clustering_estimator": _only(
            None, "the core clusters with its own k-means (scikit-learn's KMeans defaults)"
        ),
        "check_estimator": _boolean,
    }
    _docs = {
        "clustering_estimator": ("None", "Only None: the core's k-means."),
        "check_estimator": ("bool, default=False", "Accepted and checked."),
    }

    def __init__(
        self,
        n_clusters: int = 8,
        contamination: float = 0.1,
        clustering_estimator: Any = None,
        alpha: float = 0.9,
        beta: float = 5,
        use_weights: bool = False,
        check_estimator: bool = False,
        random_state: Any = None,
        n_jobs: Optional[int] = 1,
    ) -> None:
        self.n_clusters = n_clusters
        self.contamination = contamination
        self.clustering_estimator = clustering_estimator
        self.alpha = alpha
        self.beta = beta
        self.use_weights = use_weights
        self.check_estimator = check_estimator
        self.random_state = random_state
        self.n_jobs = n_jobs


class INNE(_PyODDetector):
    """Isolation using nearest-neighbour ensembles (Bandaragoda et al., 2018), PyOD's
    ``INNE``.

    PyOD's algorithm with the service's random stream: an integer ``random_state`` is the
    model's seed, as in the service (the same number gives the same model there), but not
    the model PyOD would draw from it. Other ``random_state`` values draw a seed from the
    generator (NumPy's global one for ``None``), kept in ``seed_``. ``n_jobs`` is
    pynomaly's (PyOD's INNE has none).
    """

    _algorithm = "inne"

    def __init__(
        self,
        n_estimators: int = 200,
        max_samples: Union[str, int, float] = "auto",
        contamination: float = 0.1,
        random_state: Any = None,
        n_jobs: Optional[int] = None,
    ) -> None:
        self.n_estimators = n_estimators
        self.max_samples = max_samples
        self.contamination = contamination
        self.random_state = random_state
        self.n_jobs = n_jobs



class DBSCAN(_MetricDetector):
    """DBSCAN (Ester et al., 1996): scikit-learn's ``DBSCAN`` clusters, and outlier scores.

    ``labels_``, ``core_sample_indices_`` and ``components_`` are scikit-learn's (``labels_``
    is each row's cluster, -1 for noise, and ``fit_predict`` returns it). Each row also
    gets a score, its distance to the nearest core row (0 for a core row): noise rows
    score above ``eps``, which is ``threshold_``. ``decision_function`` scores new rows the
    same way and ``predict`` labels them as the other detectors do (1 where the score is
    above ``eps``: no cluster reaches the row, else 0). Data in which no row is a core row
    is refused with a ``ValueError`` naming ``eps`` (scikit-learn would call every row
    noise; no row would have a score).
    """

    _algorithm = "dbscan"
    _docs = {
        "metric": (
            'str, default="euclidean"',
            '"euclidean", "manhattan", "minkowski", "l1", "l2" or "cityblock".',
        ),
        "p": ("float, default=None", "Minkowski exponent, >= 1; None is 2."),
    }
    _attributes = (
        *_MetricDetector._attributes,
        ("core_sample_indices_ : ndarray of shape (n_core_samples,)", "Indices of the core rows."),
        (
            "components_ : ndarray of shape (n_core_samples, n_features)",
            "The core rows, which new rows are scored against.",
        ),
    )
    eps: float
    min_samples: int

    def __init__(
        self,
        eps: float = 0.5,
        *,
        min_samples: int = 5,
        metric: str = "euclidean",
        metric_params: Optional[dict[str, Any]] = None,
        algorithm: str = "auto",
        leaf_size: int = 30,
        p: Optional[float] = None,
        n_jobs: Optional[int] = None,
    ) -> None:
        self.eps = eps
        self.min_samples = min_samples
        self.metric = metric
        self.metric_params = metric_params
        self.algorithm = algorithm
        self.leaf_size = leaf_size
        self.p = p
        self.n_jobs = n_jobs

    def _contamination(self) -> Any:
        # The noise rows are the outliers: the threshold is eps.
        return "auto"

    def _fitted(self, X: FloatArray) -> None:
        labels, core = _core.dbscan_clusters(
            json.dumps({k: _json_value(k, v) for k, v in self._core_params().items()}),
            X,
            _n_threads(self.n_jobs),
        )
        self.labels_ = labels
        self.core_sample_indices_ = np.flatnonzero(core)
        self.components_ = X[core].copy()

    def fit_predict(self, X: Any, y: Any = None) -> IntArray:
        """Fit on ``X`` and return each row's cluster, -1 for noise (``labels_``).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training rows.
        y : Ignored
            Not used, present for API consistency.

        Returns
        -------
        ndarray of shape (n_samples,)
            Cluster labels, -1 for noise.
        """
        return super().fit_predict(X, y)

