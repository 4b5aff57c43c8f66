"""Errors the client raises.

Every error the server answers has one shape (``docs/api.md``, Errors): a ``code``, a
``message``, ``details`` and the ``request_id`` its logs record. :class:`APIError` carries
all four and the HTTP status; one subclass per code lets callers catch what they can
handle (``except NotFoundError``). Failures to reach the server at all, after retries, are
:class:`PynomalyConnectionError`.
"""

from __future__ import annotations

from typing import Any, Optional

__all__ = [
    "APIError",
    "AuthenticationError",
    "BadRequestError",
    "ConflictError",
    "InvalidInputError",
    "JobFailedError",
    "MethodNotAllowedError",
    "NotFoundError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "PynomalyConnectionError",
    "PynomalyError",
    "PynomalyTimeoutError",
    "RateLimitError",
    "ServerError",
    "ServiceUnavailableError",
]


class PynomalyError(Exception):
    """Base of every error this package raises."""


class PynomalyConnectionError(PynomalyError):
    """The server could not be reached (or the connection broke) after every retry."""


class PynomalyTimeoutError(PynomalyError):
    """A wait (``wait_for_job``) ran out of time."""


class APIError(PynomalyError):
    """An error answer from the server.

    Attributes
    ----------
    status_code : int
        The HTTP status.
    code : str
        The server's error code (``invalid_input``, ``not_found``, …).
    message : str
        What was wrong, in words.
    details : dict
        Machine-readable specifics (the row and column, the parameter, …).
    request_id : str or None
        The request's id in the server's logs and audit rows.
    retry_after : float or None
        Seconds the server asked to wait (429, some 503s).
    """

    def __init__(
        self,
        status_code: int,
        code: str,
        message: str,
        details: Optional[dict[str, Any]] = None,
        request_id: Optional[str] = None,
        retry_after: Optional[float] = None,
    ) -> None:
        self.status_code = status_code
        self.code = code
        self.message = message
        self.details = details or {}
        self.request_id = request_id
        self.retry_after = retry_after
        super().__init__(f"{status_code} {code}: {message} (request_id={request_id})")


class BadRequestError(APIError):
    """400 ``malformed_json``: the body was not JSON."""


class AuthenticationError(APIError):
    """401 ``unauthorized``: missing, unknown, revoked or expired credentials."""


class PermissionDeniedError(APIError):
    """403 ``forbidden``: the credential lacks the route's scope."""


class NotFoundError(APIError):
    """404 ``not_found``: no such model, version, job, key or user (or another tenant's)."""


class MethodNotAllowedError(APIError):
    """405 ``method_not_allowed``."""


class ConflictError(APIError):
    """409 ``conflict``: e.g. a job's result before it succeeded, a stage it already has."""


class PayloadTooLargeError(APIError):
    """413 ``payload_too_large``: ``details["limit_bytes"]`` is the server's limit."""


class InvalidInputError(APIError):
    """422 ``invalid_input``: data, fields or parameters; ``details`` names which."""


class RateLimitError(APIError):
    """429 ``rate_limited``, still refused after the retries; see ``retry_after``."""


class ServerError(APIError):
    """500 ``internal`` (and other 5xx answers without the server's error shape)."""


class ServiceUnavailableError(APIError):
    """503 ``unavailable``: timed out, queue unreachable, not ready."""


class JobFailedError(PynomalyError):
    """A job waited for ended ``failed`` or ``cancelled``; ``job`` is its last status."""

    def __init__(self, job: Any) -> None:
        self.job = job
        super().__init__(f"job {job.job_id} {job.status}: {job.error}")


BY_STATUS: dict[int, type[APIError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    405: MethodNotAllowedError,
    409: ConflictError,
    413: PayloadTooLargeError,
    422: InvalidInputError,
    429: RateLimitError,
    503: ServiceUnavailableError,
}


def error_for(
    status_code: int, body: Any, request_id: Optional[str], retry_after: Optional[float]
) -> APIError:
    """The exception for an error answer; a body without the server's shape (a proxy's
    502 page) still gives one, with code ``http_<status>``."""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        code = str(error.get("code", f"http_{status_code}"))
        message = str(error.get("message", ""))
        details = error.get("details") if isinstance(error.get("details"), dict) else {}
        request_id = body.get("request_id") or request_id
    else:
        code, message, details = f"http_{status_code}", f"HTTP {status_code}", {}
    cls = BY_STATUS.get(status_code, ServerError if status_code >= 500 else APIError)
    return cls(status_code, code, message, details, request_id, retry_after)
