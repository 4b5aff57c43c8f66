"""pynomaly for Python: the service's client, its typed models, and scikit-learn detectors
running on the service's Rust core.

- :mod:`pynomaly.client`: :class:`~pynomaly.client.PynomalyClient` and
  :class:`~pynomaly.client.AsyncPynomalyClient`, over the HTTP API.
- :mod:`pynomaly.models`: pydantic models of every request and response.
- :mod:`pynomaly.server`: :class:`~pynomaly.server.HealthCheck`, the service's dependency
  checks.
- :class:`IsolationForest`, :class:`LocalOutlierFactor`: scikit-learn estimators.
- :class:`ECOD`, :class:`COPOD`, :class:`HBOS`, :class:`KNN`, :class:`PCA`, :class:`GMM`,
  :class:`MCD`, :class:`CBLOF`, :class:`INNE`: PyOD's detectors with PyOD's interface, and :class:`DBSCAN`,
  scikit-learn's clustering that also scores outliers (:mod:`pynomaly.pyod_estimators`).

The estimators need scikit-learn: ``pip install "pynomaly[sklearn]"``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pynomaly._core import __version__

if TYPE_CHECKING:
    from pynomaly.estimators import IsolationForest, LocalOutlierFactor
    from pynomaly.pyod_estimators import (
        CBLOF,
        COPOD,
        DBSCAN,
        ECOD,
        GMM,
        HBOS,
        INNE,
        KNN,
        MCD,
        PCA,
    )

# Where each estimator lives.
_ESTIMATORS = {
    "IsolationForest": "estimators",
    "LocalOutlierFactor": "estimators",
    "ECOD": "pyod_estimators",
    "COPOD": "pyod_estimators",
    "HBOS": "pyod_estimators",
    "KNN": "pyod_estimators",
    "PCA": "pyod_estimators",
    "GMM": "pyod_estimators",
    "MCD": "pyod_estimators",
    "CBLOF": "pyod_estimators",
    "INNE": "pyod_estimators",
    "DBSCAN": "pyod_estimators",
}

__all__ = [
    "CBLOF",
    "COPOD",
    "DBSCAN",
    "ECOD",
    "GMM",
    "HBOS",
    "INNE",
    "KNN",
    "MCD",
    "PCA",
    "IsolationForest",
    "LocalOutlierFactor",
    "__version__",
]


def __getattr__(name: str) -> Any:
    # The estimators import scikit-learn, which the client does not need: loaded on first use.
    module = _ESTIMATORS.get(name)
    if module is None:
        raise AttributeError(f"module 'pynomaly' has no attribute {name!r}")
    import importlib

    try:
        loaded = importlib.import_module(f"pynomaly.{module}")
    except ImportError as e:
        raise ImportError(
            f"pynomaly.{name} needs scikit-learn: pip install 'pynomaly[sklearn]' ({e})"
        ) from e
    return getattr(loaded, name)
