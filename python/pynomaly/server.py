"""What the ML-engineer guide's installation check prints::

    from pynomaly.server import HealthCheck
    print('Production components:', HealthCheck().check_dependencies())

:meth:`HealthCheck.check_dependencies` asks a running service (``GET /health``) how its
dependencies are: the metadata database, the job queue, the artifact store and the job
workers, with the service's version and overall status. It never raises: a service that
cannot be reached is reported as ``"unreachable"`` with the reason.
"""

from __future__ import annotations

import os
from typing import Any, Optional

import httpx

from pynomaly import __version__

__all__ = ["HealthCheck"]


class HealthCheck:
    """The dependency checks of a pynomaly service.

    Parameters
    ----------
    base_url : str, optional
        The service's URL (default ``PYNOMALY_URL``, else ``http://localhost:8000``).
    api_key : str, optional
        Sent when given (default ``PYNOMALY_API_KEY``); ``/health`` needs none.
    timeout : float, default=5.0
        Seconds to wait for the answer.
    """

    def __init__(
        self, base_url: Optional[str] = None, api_key: Optional[str] = None, timeout: float = 5.0
    ) -> None:
        self.base_url = (base_url or os.environ.get("PYNOMALY_URL") or "http://localhost:8000").rstrip("/")
        self.api_key = api_key if api_key is not None else os.environ.get("PYNOMALY_API_KEY")
        self.timeout = timeout

    def check_dependencies(self) -> dict[str, Any]:
        """The service's health as a dict.

        Returns
        -------
        dict
            ``{"url", "client_version", "status", "version", "reasons", "checks":
            {"database", "queue", "artifact_store", "workers"}}`` as the service reports
            them (``status`` ``healthy``, ``degraded`` or ``unhealthy``), or
            ``{"url", "client_version", "status": "unreachable", "error"}``.
        """
        headers = {"User-Agent": f"pynomaly-python/{__version__}"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        report: dict[str, Any] = {"url": self.base_url, "client_version": __version__}
        try:
            response = httpx.get(f"{self.base_url}/health", headers=headers, timeout=self.timeout)
            body = response.json()
        except (httpx.HTTPError, ValueError) as e:
            return {**report, "status": "unreachable", "error": f"{type(e).__name__}: {e}"}
        if not isinstance(body, dict) or "checks" not in body:
            return {**report, "status": "unreachable", "error": f"HTTP {response.status_code}: not a pynomaly health answer"}
        return {**report, **body}
