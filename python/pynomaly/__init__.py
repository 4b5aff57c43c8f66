"""pynomaly for Python: the service's client, its typed models, and scikit-learn detectors
running on the service's Rust core.

- :mod:`pynomaly.client`: :class:`~pynomaly.client.PynomalyClient` and
  :class:`~pynomaly.client.AsyncPynomalyClient`, over the HTTP API.
- :mod:`pynomaly.models`: pydantic models of every request and response.
- :mod:`pynomaly.server`: :class:`~pynomaly.server.HealthCheck`, the service's dependency
  checks.
- :class:`IsolationForest`, :class:`LocalOutlierFactor`: scikit-learn estimators (they need
  scikit-learn: ``pip install "pynomaly[sklearn]"``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pynomaly._core import __version__

if TYPE_CHECKING:
    from pynomaly.estimators import IsolationForest, LocalOutlierFactor

__all__ = ["IsolationForest", "LocalOutlierFactor", "__version__"]


def __getattr__(name: str) -> Any:
    # The estimators import scikit-learn, which the client does not need: loaded on first use.
    if name in ("IsolationForest", "LocalOutlierFactor"):
        try:
            from pynomaly import estimators
        except ImportError as e:
            raise ImportError(
                f"pynomaly.{name} needs scikit-learn: pip install 'pynomaly[sklearn]' ({e})"
            ) from e
        return getattr(estimators, name)
    raise AttributeError(f"module 'pynomaly' has no attribute {name!r}")
