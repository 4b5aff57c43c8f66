"""Clients of the pynomaly HTTP API: :class:`PynomalyClient` (blocking) and
:class:`AsyncPynomalyClient` (asyncio), on httpx, with the ML-engineer guide's method names.

Both take the same arguments and have the same methods; the async one's are coroutines::

    from pynomaly.client import PynomalyClient
    from pynomaly.models import DetectionRequest

    with PynomalyClient("http://localhost:8000", api_key="pk_…") as client:
        result = client.detect_anomalies(DetectionRequest(data=rows, contamination=0.1))
        print(result.anomaly_count, result.scores[:5])

Credentials: an API key (``api_key``, or ``PYNOMALY_API_KEY``), a JWT (``token``), or a
username and password, exchanged for a JWT at the first call and again when it expires.
The base URL defaults to ``PYNOMALY_URL``, else ``http://localhost:8000``.

Retries (``max_retries``, default 3) wait with jittered exponential backoff
(``backoff`` × 2^attempt, at most ``max_backoff``, drawn uniformly below that: "full
jitter"), or exactly the server's ``Retry-After`` when it sends one. What is retried:

- a connection that could not be opened, and a 429 (the server refuses those before doing
  anything), for every call;
- 502, 503, 504 and a connection that broke mid-request, only for calls that are safe to
  repeat: reads, ``detect`` and ``predict`` (they change nothing), and submissions that
  carry an ``Idempotency-Key`` (``batch_detect`` and training from a data source, which
  get one generated when the caller gives none, so a repeat returns the first job).
  Training from inline rows and the stage changes (promote, archive, rollback) are never
  repeated after the server may have acted.

Errors are raised as :mod:`pynomaly.exceptions` classes carrying the server's ``code``,
``message``, ``details`` and ``request_id``.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import random
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, TypeVar, Union
from urllib.parse import quote

import httpx
from pydantic import BaseModel

from pynomaly import __version__
from pynomaly.exceptions import (
    APIError,
    AuthenticationError,
    JobFailedError,
    PynomalyConnectionError,
    PynomalyTimeoutError,
    error_for,
)
from pynomaly.models import (
    BatchDetectionRequest,
    DetectionRequest,
    DetectionResult,
    HealthStatus,
    JobAccepted,
    JobList,
    JobResultRow,
    JobStatus,
    ModelInfo,
    ModelList,
    ModelVersions,
    PredictionRequest,
    PromoteRequest,
    StageChangeRequest,
    StageChangeResult,
    Token,
    TrainingRequest,
    TrainingResult,
)

__all__ = ["AsyncPynomalyClient", "PynomalyClient", "RetryPolicy"]

M = TypeVar("M", bound=BaseModel)

DEFAULT_URL = "http://localhost:8000"
RETRY_STATUSES = frozenset({502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    """When and how long to wait before trying a call again.

    Parameters
    ----------
    max_retries : int
        Retries after the first attempt (0: none).
    backoff : float
        Base delay in seconds; attempt ``n`` waits up to ``backoff * 2**n``.
    max_backoff : float
        Upper bound of one computed delay (not of a server's ``Retry-After``).
    """

    max_retries: int = 3
    backoff: float = 0.5
    max_backoff: float = 30.0

    def delay(self, attempt: int, retry_after: Optional[float] = None) -> float:
        """Seconds to wait before retry number ``attempt`` (0-based)."""
        if retry_after is not None:
            return max(0.0, retry_after)
        return random.uniform(0.0, min(self.max_backoff, self.backoff * 2.0**attempt))


@dataclass
class _Call:
    """One API call: what to send, and whether repeating it is safe."""

    method: str
    path: str
    json: Optional[dict[str, Any]] = None
    params: Optional[dict[str, Any]] = None
    headers: dict[str, str] = field(default_factory=dict)
    # Repeating the call after the server may have acted on it changes nothing.
    idempotent: bool = True
    # Statuses answered with a body this call parses rather than raises on.
    accept: frozenset[int] = frozenset()
    authenticated: bool = True
    # A raw body (sent instead of ``json``).
    content: Optional[bytes] = None


def _retry_after(response: httpx.Response) -> Optional[float]:
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None  # an HTTP date: fall back to the computed backoff


def _raise_for(response: httpx.Response, call: _Call) -> None:
    if response.status_code < 400 or response.status_code in call.accept:
        return
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    raise error_for(
        response.status_code,
        body,
        response.headers.get("X-Request-Id"),
        _retry_after(response),
    )


def _is_connect_error(e: httpx.TransportError) -> bool:
    """The request never reached the server: safe to send again, whatever it is."""
    return isinstance(e, (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout))


def _path(*parts: Union[str, int]) -> str:
    return "/".join(quote(str(p), safe="") for p in parts)


def _request_model(model: type[M], value: Any, fields: dict[str, Any]) -> M:
    """``value`` if it is already ``model``, else ``model`` built from the fields."""
    if isinstance(value, model):
        if fields:
            return model.model_validate({**value.model_dump(by_alias=True), **fields})
        return value
    return model.model_validate(fields)


def _parse_rows(content_type: str, text: str) -> list[JobResultRow]:
    if "csv" in content_type:
        reader = csv.DictReader(io.StringIO(text))
        return [
            JobResultRow(row=int(r["row"]), prediction=int(r["prediction"]), score=float(r["score"]))
            for r in reader
        ]
    return [JobResultRow.model_validate(r) for r in json.loads(text)]


class _Base:
    """Configuration and the description of every call, shared by both clients."""

    def __init__(
        self,
        base_url: Optional[str] = None,
        api_key: Optional[str] = None,
        timeout: float = 30.0,
        *,
        token: Optional[str] = None,
        username: Optional[str] = None,
        password: Optional[str] = None,
        max_retries: int = 3,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        headers: Optional[dict[str, str]] = None,
    ) -> None:
        self.base_url = (base_url or os.environ.get("PYNOMALY_URL") or DEFAULT_URL).rstrip("/")
        self.api_key = api_key if api_key is not None else os.environ.get("PYNOMALY_API_KEY")
        self.timeout = timeout
        self.retry = RetryPolicy(max_retries, backoff, max_backoff)
        self._token = token
        self._username = username
        self._password = password
        self._headers = {"User-Agent": f"pynomaly-python/{__version__}", **(headers or {})}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r})"

    # --- credentials ------------------------------------------------------------------

    def _credential(self) -> Optional[str]:
        return self._token or self.api_key

    def _needs_login(self, call: _Call) -> bool:
        return (
            call.authenticated
            and self._token is None
            and self.api_key is None
            and self._username is not None
            and self._password is not None
        )

    def _login_call(self) -> _Call:
        return _Call(
            "POST",
            "/api/v1/auth/token",
            json={"username": self._username, "password": self._password},
            authenticated=False,
        )

    def _headers_for(self, call: _Call) -> dict[str, str]:
        headers = dict(call.headers)
        credential = self._credential()
        if call.authenticated and credential:
            headers["Authorization"] = f"Bearer {credential}"
        return headers

    def _can_relogin(self, call: _Call, error: APIError) -> bool:
        """A JWT obtained by logging in expired: log in again, once."""
        return (
            isinstance(error, AuthenticationError)
            and call.authenticated
            and self.api_key is None
            and self._username is not None
            and self._token is not None
        )

    # --- the calls ----------------------------------------------------------------------

    @staticmethod
    def _detect(request: Any, fields: dict[str, Any]) -> tuple[_Call, type[DetectionResult]]:
        if request is not None and not isinstance(request, DetectionRequest):
            fields = {"data": request, **fields}
            request = None
        body = _request_model(DetectionRequest, request, fields).body()
        return _Call("POST", "/api/v1/detect", json=body), DetectionResult

    @staticmethod
    def _batch(
        request: Any, idempotency_key: Optional[str], fields: dict[str, Any]
    ) -> tuple[_Call, type[JobAccepted]]:
        if isinstance(request, str):
            fields = {"data_source": request, **fields}
            request = None
        elif isinstance(request, (list, tuple)):
            fields = {"data_sources": list(request), **fields}
            request = None
        body = _request_model(BatchDetectionRequest, request, fields).body()
        key = idempotency_key or str(uuid.uuid4())
        return (
            _Call("POST", "/api/v1/batch", json=body, headers={"Idempotency-Key": key}),
            JobAccepted,
        )

    @staticmethod
    def _train(
        request: Any,
        algorithm: Optional[str],
        model_name: Optional[str],
        idempotency_key: Optional[str],
        fields: dict[str, Any],
    ) -> _Call:
        if isinstance(request, str):  # the guide's train_model(training_data, algorithm, name)
            fields = {"training_data": request, **fields}
            request = None
        if algorithm is not None:
            fields["algorithm"] = algorithm
        if model_name is not None:
            fields["model_name"] = model_name
        model = _request_model(TrainingRequest, request, fields)
        if model.training_data is not None:
            key = idempotency_key or str(uuid.uuid4())
            return _Call("POST", "/api/v1/models", json=model.body(), headers={"Idempotency-Key": key})
        # Inline training has no idempotency key on the server: never repeated once sent.
        return _Call("POST", "/api/v1/models", json=model.body(), idempotent=False)

    @staticmethod
    def _train_result(body: Any) -> Union[TrainingResult, JobAccepted]:
        if isinstance(body, dict) and "job_id" in body:
            return JobAccepted.model_validate(body)
        return TrainingResult.model_validate(body)

    @staticmethod
    def _predict(
        model_name: str, data: Any, version: Optional[int], routing_key: Optional[str] = None
    ) -> tuple[_Call, type[DetectionResult]]:
        body = PredictionRequest(data=data, version=version, routing_key=routing_key).body()
        return _Call("POST", f"/api/v1/models/{_path(model_name)}/predict", json=body), DetectionResult

    @staticmethod
    def _upload(model_name: str, model: Any, promote: str) -> tuple[_Call, type[TrainingResult]]:
        raw = model if isinstance(model, (bytes, bytearray)) else model.to_bytes()
        call = _Call(
            "POST",
            f"/api/v1/models/{_path(model_name, 'versions')}",
            params={"promote": promote},
            headers={"Content-Type": "application/octet-stream"},
            content=bytes(raw),
            idempotent=False,
        )
        return call, TrainingResult

    @staticmethod
    def _stage_change(path: str, reason: Optional[str]) -> tuple[_Call, type[StageChangeResult]]:
        body = StageChangeRequest(reason=reason).body()
        return _Call("POST", path, json=body, idempotent=False), StageChangeResult

    @staticmethod
    def _promote(
        path: str, reason: Optional[str], bake_seconds: Optional[int]
    ) -> tuple[_Call, type[StageChangeResult]]:
        body = PromoteRequest(reason=reason, bake_seconds=bake_seconds).body()
        return _Call("POST", path, json=body, idempotent=False), StageChangeResult

    @staticmethod
    def _wait_done(job: JobStatus, raise_on_failure: bool) -> bool:
        if not job.finished:
            return False
        if raise_on_failure and job.status != "succeeded":
            raise JobFailedError(job)
        return True


class PynomalyClient(_Base):
    """Blocking client of the pynomaly HTTP API.

    Parameters
    ----------
    base_url : str, optional
        The service's URL (default ``PYNOMALY_URL``, else ``http://localhost:8000``).
    api_key : str, optional
        An API key (default ``PYNOMALY_API_KEY``).
    timeout : float, default=30.0
        Seconds for each HTTP request.
    token : str, optional
        A JWT instead of a key.
    username, password : str, optional
        Log in for a JWT at the first call (and again when it expires).
    max_retries, backoff, max_backoff
        The :class:`RetryPolicy`.
    headers : dict, optional
        Extra headers on every request.
    transport : httpx.BaseTransport, optional
        httpx's transport (tests, proxies).
    """

    def __init__(
        self,
        base_url: Optional[str] = None,
        api_key: Optional[str] = None,
        timeout: float = 30.0,
        *,
        token: Optional[str] = None,
        username: Optional[str] = None,
        password: Optional[str] = None,
        max_retries: int = 3,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        headers: Optional[dict[str, str]] = None,
        transport: Optional[httpx.BaseTransport] = None,
    ) -> None:
        super().__init__(
            base_url,
            api_key,
            timeout,
            token=token,
            username=username,
            password=password,
            max_retries=max_retries,
            backoff=backoff,
            max_backoff=max_backoff,
            headers=headers,
        )
        self._http = httpx.Client(
            base_url=self.base_url, timeout=timeout, headers=self._headers, transport=transport
        )

    def __enter__(self) -> PynomalyClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    # --- transport ----------------------------------------------------------------------

    def _send(self, call: _Call, stream: bool = False) -> httpx.Response:
        """Sends ``call`` with the retry policy; the answer has a success status (or one
        ``call`` accepts). A streamed answer must be closed by the caller."""
        if self._needs_login(call):
            self.login(str(self._username), str(self._password))
        relogged = False
        attempt = 0
        while True:
            request = self._http.build_request(
                call.method,
                call.path,
                json=call.json,
                content=call.content,
                params=call.params,
                headers=self._headers_for(call),
            )
            try:
                response = self._http.send(request, stream=stream)
            except httpx.TransportError as e:
                if attempt < self.retry.max_retries and (call.idempotent or _is_connect_error(e)):
                    time.sleep(self.retry.delay(attempt))
                    attempt += 1
                    continue
                raise PynomalyConnectionError(f"{call.method} {call.path}: {e!r}") from e
            status = response.status_code
            retryable = status == 429 or (status in RETRY_STATUSES and call.idempotent)
            if retryable and status not in call.accept and attempt < self.retry.max_retries:
                response.close()
                time.sleep(self.retry.delay(attempt, _retry_after(response)))
                attempt += 1
                continue
            try:
                if stream and response.status_code >= 400:
                    response.read()
                _raise_for(response, call)
            except APIError as e:
                response.close()
                if not relogged and self._can_relogin(call, e):
                    relogged = True
                    self.login(str(self._username), str(self._password))
                    continue
                raise
            return response

    def _json(self, call: _Call) -> Any:
        return self._send(call).json()

    def _model(self, call: _Call, model: type[M]) -> M:
        return model.model_validate(self._json(call))

    # --- the API -------------------------------------------------------------------------

    def login(self, username: str, password: str) -> Token:
        """Log in (``POST /api/v1/auth/token``); later calls carry the JWT."""
        self._username, self._password = username, password
        token = self._model(self._login_call(), Token)
        self._token = token.access_token
        return token

    def health(self) -> HealthStatus:
        """``GET /health``: the service's dependencies (also when it answers 503)."""
        return self._model(_Call("GET", "/health", accept=frozenset({503}), authenticated=False), HealthStatus)

    health_check = health

    def detect_anomalies(self, request: Any = None, /, **fields: Any) -> DetectionResult:
        """Fit a detector on rows and label them (``POST /api/v1/detect``).

        Parameters
        ----------
        request : DetectionRequest or rows, optional
            The request, or its ``data`` (lists, NumPy array, DataFrame).
        **fields
            Request fields and algorithm parameters (``algorithm="lof"``, ``n_neighbors=10``).

        Returns
        -------
        DetectionResult
            Scores (higher = more anomalous), labels (-1 anomaly) and the threshold.
        """
        return self._model(*self._detect(request, fields))

    def batch_detect(
        self, request: Any = None, /, *, idempotency_key: Optional[str] = None, **fields: Any
    ) -> JobAccepted:
        """Score data sources in the background (``POST /api/v1/batch``).

        Parameters
        ----------
        request : BatchDetectionRequest, str or list of str, optional
            The request, or its source(s).
        idempotency_key : str, optional
            Makes a repeated submission return the first job (one is generated otherwise,
            so retries are safe).
        **fields
            Request fields and algorithm parameters.

        Returns
        -------
        JobAccepted
            The queued job; see :meth:`wait_for_job`.
        """
        return self._model(*self._batch(request, idempotency_key, fields))

    def train_model(
        self,
        request: Any = None,
        algorithm: Optional[str] = None,
        model_name: Optional[str] = None,
        /,
        *,
        idempotency_key: Optional[str] = None,
        **fields: Any,
    ) -> Union[TrainingResult, JobAccepted]:
        """Train a model version (``POST /api/v1/models``).

        Parameters
        ----------
        request : TrainingRequest or str, optional
            The request, or a data source (the guide's ``train_model(training_data,
            algorithm, model_name)``).
        algorithm, model_name : str, optional
            As in the guide.
        idempotency_key : str, optional
            For training from a data source (generated when not given).
        **fields
            Request fields: ``data`` (rows: trains now), ``training_data``, parameters, …

        Returns
        -------
        TrainingResult or JobAccepted
            The new version (inline rows, 201) or the training job (a data source, 202).
        """
        return self._train_result(self._json(self._train(request, algorithm, model_name, idempotency_key, fields)))

    def predict(
        self, model_name: str, data: Any, version: Optional[int] = None, routing_key: Optional[str] = None
    ) -> DetectionResult:
        """Score rows with a trained version (production by default; with a canary
        rollout, the version its ``routing_key`` is routed to)."""
        return self._model(*self._predict(model_name, data, version, routing_key))

    predict_with_model = predict

    def list_models(self, limit: int = 50, offset: int = 0) -> ModelList:
        """The tenant's models by name."""
        return self._model(_Call("GET", "/api/v1/models", params={"limit": limit, "offset": offset}), ModelList)

    def get_model(self, model_name: str) -> ModelVersions:
        """A model's versions."""
        return self._model(_Call("GET", f"/api/v1/models/{_path(model_name)}"), ModelVersions)

    def get_model_version(self, model_name: str, version: int) -> ModelInfo:
        """One version."""
        return self._model(_Call("GET", f"/api/v1/models/{_path(model_name, 'versions', version)}"), ModelInfo)

    def delete_model(self, model_name: str) -> dict[str, Any]:
        """Delete a model and all its versions."""
        result: dict[str, Any] = self._json(_Call("DELETE", f"/api/v1/models/{_path(model_name)}"))
        return result

    def promote_model(
        self, model_name: str, version: int, reason: Optional[str] = None, bake_seconds: Optional[int] = None
    ) -> StageChangeResult:
        """Put a version in production (the current one is archived); with ``bake_seconds``
        the server watches it that long and rolls it back if its guards catch it."""
        path = f"/api/v1/models/{_path(model_name, 'versions', version, 'promote')}"
        return self._model(*self._promote(path, reason, bake_seconds))

    def archive_model_version(self, model_name: str, version: int, reason: Optional[str] = None) -> StageChangeResult:
        """Archive a version that is not in production."""
        return self._model(*self._stage_change(f"/api/v1/models/{_path(model_name, 'versions', version, 'archive')}", reason))

    def rollback_model(self, model_name: str, reason: Optional[str] = None) -> StageChangeResult:
        """Put the previous production version back."""
        return self._model(*self._stage_change(f"/api/v1/models/{_path(model_name, 'rollback')}", reason))

    def upload_model(self, model_name: str, model: Any, promote: str = "always") -> TrainingResult:
        """Register a fitted estimator of this package (:class:`pynomaly.IsolationForest`,
        :class:`pynomaly.LocalOutlierFactor`, :class:`pynomaly.ECOD`, ...), or its
        ``to_bytes()``, as the model's next version; the service scores it exactly as it
        scores here. ``promote``: ``always`` (production at once) or ``manual`` (staging)."""
        return self._model(*self._upload(model_name, model, promote))

    def get_drift(self, model_name: str, version: Optional[int] = None) -> dict[str, Any]:
        """Drift and data-quality report of a version."""
        params = {"version": version} if version is not None else None
        result: dict[str, Any] = self._json(_Call("GET", f"/api/v1/models/{_path(model_name)}/drift", params=params))
        return result

    def list_algorithms(self) -> dict[str, Any]:
        """Algorithms with their parameters, types, defaults and ranges."""
        result: dict[str, Any] = self._json(_Call("GET", "/api/v1/algorithms"))
        return result

    def get_job_status(self, job_id: str) -> JobStatus:
        """A job's state, progress and result."""
        return self._model(_Call("GET", f"/api/v1/jobs/{_path(job_id)}"), JobStatus)

    def list_jobs(self, limit: int = 50, offset: int = 0) -> JobList:
        """The tenant's jobs, newest first."""
        return self._model(_Call("GET", "/api/v1/jobs", params={"limit": limit, "offset": offset}), JobList)

    def cancel_job(self, job_id: str) -> JobStatus:
        """Cancel a job that has not finished."""
        return self._model(_Call("DELETE", f"/api/v1/jobs/{_path(job_id)}"), JobStatus)

    def wait_for_job(
        self,
        job_id: str,
        timeout: float = 300.0,
        poll_interval: float = 0.25,
        max_interval: float = 5.0,
        raise_on_failure: bool = True,
    ) -> JobStatus:
        """Poll a job until it finishes, the interval growing by half each time.

        Raises
        ------
        JobFailedError
            It ended ``failed`` or ``cancelled`` (with ``raise_on_failure``).
        PynomalyTimeoutError
            It had not finished after ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        interval = poll_interval
        while True:
            job = self.get_job_status(job_id)
            if self._wait_done(job, raise_on_failure):
                return job
            left = deadline - time.monotonic()
            if left <= 0:
                raise PynomalyTimeoutError(f"job {job_id} still {job.status} after {timeout} s")
            time.sleep(min(interval, left))
            interval = min(max_interval, interval * 1.5)

    def iter_job_result_bytes(self, job_id: str, output: int = 0) -> Iterator[bytes]:
        """A succeeded batch job's output ``output``, streamed as it arrives."""
        response = self._send(_Call("GET", f"/api/v1/jobs/{_path(job_id)}/result", params={"output": output}), stream=True)
        try:
            yield from response.iter_bytes()
        finally:
            response.close()

    def download_job_result(self, job_id: str, path: Union[str, Path], output: int = 0) -> int:
        """Stream a job's output to a file; returns the bytes written."""
        written = 0
        with open(path, "wb") as f:
            for chunk in self.iter_job_result_bytes(job_id, output):
                written += f.write(chunk)
        return written

    def get_job_result(self, job_id: str, output: int = 0) -> list[JobResultRow]:
        """A succeeded batch job's output as rows (``row``, ``prediction``, ``score``),
        CSV or JSON alike."""
        response = self._send(_Call("GET", f"/api/v1/jobs/{_path(job_id)}/result", params={"output": output}), stream=True)
        try:
            text = b"".join(response.iter_bytes()).decode()
        finally:
            response.close()
        return _parse_rows(response.headers.get("Content-Type", ""), text)


class AsyncPynomalyClient(_Base):
    """asyncio client of the pynomaly HTTP API: :class:`PynomalyClient`'s arguments and
    methods, as coroutines (``transport`` is an ``httpx.AsyncBaseTransport``)."""

    def __init__(
        self,
        base_url: Optional[str] = None,
        api_key: Optional[str] = None,
        timeout: float = 30.0,
        *,
        token: Optional[str] = None,
        username: Optional[str] = None,
        password: Optional[str] = None,
        max_retries: int = 3,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        headers: Optional[dict[str, str]] = None,
        transport: Optional[httpx.AsyncBaseTransport] = None,
    ) -> None:
        super().__init__(
            base_url,
            api_key,
            timeout,
            token=token,
            username=username,
            password=password,
            max_retries=max_retries,
            backoff=backoff,
            max_backoff=max_backoff,
            headers=headers,
        )
        self._http = httpx.AsyncClient(
            base_url=self.base_url, timeout=timeout, headers=self._headers, transport=transport
        )

    async def __aenter__(self) -> AsyncPynomalyClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def _send(self, call: _Call, stream: bool = False) -> httpx.Response:
        if self._needs_login(call):
            await self.login(str(self._username), str(self._password))
        relogged = False
        attempt = 0
        while True:
            request = self._http.build_request(
                call.method,
                call.path,
                json=call.json,
                content=call.content,
                params=call.params,
                headers=self._headers_for(call),
            )
            try:
                response = await self._http.send(request, stream=stream)
            except httpx.TransportError as e:
                if attempt < self.retry.max_retries and (call.idempotent or _is_connect_error(e)):
                    await asyncio.sleep(self.retry.delay(attempt))
                    attempt += 1
                    continue
                raise PynomalyConnectionError(f"{call.method} {call.path}: {e!r}") from e
            status = response.status_code
            retryable = status == 429 or (status in RETRY_STATUSES and call.idempotent)
            if retryable and status not in call.accept and attempt < self.retry.max_retries:
                await response.aclose()
                await asyncio.sleep(self.retry.delay(attempt, _retry_after(response)))
                attempt += 1
                continue
            try:
                if stream and response.status_code >= 400:
                    await response.aread()
                _raise_for(response, call)
            except APIError as e:
                await response.aclose()
                if not relogged and self._can_relogin(call, e):
                    relogged = True
                    await self.login(str(self._username), str(self._password))
                    continue
                raise
            return response

    async def _json(self, call: _Call) -> Any:
        return (await self._send(call)).json()

    async def _model(self, call: _Call, model: type[M]) -> M:
        return model.model_validate(await self._json(call))

    async def login(self, username: str, password: str) -> Token:
        """Log in (``POST /api/v1/auth/token``); later calls carry the JWT."""
        self._username, self._password = username, password
        token = await self._model(self._login_call(), Token)
        self._token = token.access_token
        return token

    async def health(self) -> HealthStatus:
        """``GET /health``: the service's dependencies (also when it answers 503)."""
        return await self._model(_Call("GET", "/health", accept=frozenset({503}), authenticated=False), HealthStatus)

    health_check = health

    async def detect_anomalies(self, request: Any = None, /, **fields: Any) -> DetectionResult:
        """See :meth:`PynomalyClient.detect_anomalies`."""
        return await self._model(*self._detect(request, fields))

    async def batch_detect(
        self, request: Any = None, /, *, idempotency_key: Optional[str] = None, **fields: Any
    ) -> JobAccepted:
        """See :meth:`PynomalyClient.batch_detect`."""
        return await self._model(*self._batch(request, idempotency_key, fields))

    async def train_model(
        self,
        request: Any = None,
        algorithm: Optional[str] = None,
        model_name: Optional[str] = None,
        /,
        *,
        idempotency_key: Optional[str] = None,
        **fields: Any,
    ) -> Union[TrainingResult, JobAccepted]:
        """See :meth:`PynomalyClient.train_model`."""
        return self._train_result(await self._json(self._train(request, algorithm, model_name, idempotency_key, fields)))

    async def predict(
        self, model_name: str, data: Any, version: Optional[int] = None, routing_key: Optional[str] = None
    ) -> DetectionResult:
        """See :meth:`PynomalyClient.predict`."""
        return await self._model(*self._predict(model_name, data, version, routing_key))

    predict_with_model = predict

    async def list_models(self, limit: int = 50, offset: int = 0) -> ModelList:
        """The tenant's models by name."""
        return await self._model(_Call("GET", "/api/v1/models", params={"limit": limit, "offset": offset}), ModelList)

    async def get_model(self, model_name: str) -> ModelVersions:
        """A model's versions."""
        return await self._model(_Call("GET", f"/api/v1/models/{_path(model_name)}"), ModelVersions)

    async def get_model_version(self, model_name: str, version: int) -> ModelInfo:
        """One version."""
        return await self._model(_Call("GET", f"/api/v1/models/{_path(model_name, 'versions', version)}"), ModelInfo)

    async def delete_model(self, model_name: str) -> dict[str, Any]:
        """Delete a model and all its versions."""
        result: dict[str, Any] = await self._json(_Call("DELETE", f"/api/v1/models/{_path(model_name)}"))
        return result

    async def promote_model(
        self, model_name: str, version: int, reason: Optional[str] = None, bake_seconds: Optional[int] = None
    ) -> StageChangeResult:
        """Put a version in production (the current one is archived); with ``bake_seconds``
        the server watches it that long and rolls it back if its guards catch it."""
        path = f"/api/v1/models/{_path(model_name, 'versions', version, 'promote')}"
        return await self._model(*self._promote(path, reason, bake_seconds))

    async def archive_model_version(self, model_name: str, version: int, reason: Optional[str] = None) -> StageChangeResult:
        """Archive a version that is not in production."""
        return await self._model(*self._stage_change(f"/api/v1/models/{_path(model_name, 'versions', version, 'archive')}", reason))

    async def rollback_model(self, model_name: str, reason: Optional[str] = None) -> StageChangeResult:
        """Put the previous production version back."""
        return await self._model(*self._stage_change(f"/api/v1/models/{_path(model_name, 'rollback')}", reason))

    async def upload_model(self, model_name: str, model: Any, promote: str = "always") -> TrainingResult:
        """Register a fitted estimator (or its ``to_bytes()``) as the model's next version
        (see :meth:`PynomalyClient.upload_model`)."""
        return await self._model(*self._upload(model_name, model, promote))

    async def get_drift(self, model_name: str, version: Optional[int] = None) -> dict[str, Any]:
        """Drift and data-quality report of a version."""
        params = {"version": version} if version is not None else None
        result: dict[str, Any] = await self._json(_Call("GET", f"/api/v1/models/{_path(model_name)}/drift", params=params))
        return result

    async def list_algorithms(self) -> dict[str, Any]:
        """Algorithms with their parameters, types, defaults and ranges."""
        result: dict[str, Any] = await self._json(_Call("GET", "/api/v1/algorithms"))
        return result

    async def get_job_status(self, job_id: str) -> JobStatus:
        """A job's state, progress and result."""
        return await self._model(_Call("GET", f"/api/v1/jobs/{_path(job_id)}"), JobStatus)

    async def list_jobs(self, limit: int = 50, offset: int = 0) -> JobList:
        """The tenant's jobs, newest first."""
        return await self._model(_Call("GET", "/api/v1/jobs", params={"limit": limit, "offset": offset}), JobList)

    async def cancel_job(self, job_id: str) -> JobStatus:
        """Cancel a job that has not finished."""
        return await self._model(_Call("DELETE", f"/api/v1/jobs/{_path(job_id)}"), JobStatus)

    async def wait_for_job(
        self,
        job_id: str,
        timeout: float = 300.0,
        poll_interval: float = 0.25,
        max_interval: float = 5.0,
        raise_on_failure: bool = True,
    ) -> JobStatus:
        """See :meth:`PynomalyClient.wait_for_job`."""
        deadline = time.monotonic() + timeout
        interval = poll_interval
        while True:
            job = await self.get_job_status(job_id)
            if self._wait_done(job, raise_on_failure):
                return job
            left = deadline - time.monotonic()
            if left <= 0:
                raise PynomalyTimeoutError(f"job {job_id} still {job.status} after {timeout} s")
            await asyncio.sleep(min(interval, left))
            interval = min(max_interval, interval * 1.5)

    async def iter_job_result_bytes(self, job_id: str, output: int = 0) -> AsyncIterator[bytes]:
        """A succeeded batch job's output ``output``, streamed as it arrives."""
        response = await self._send(_Call("GET", f"/api/v1/jobs/{_path(job_id)}/result", params={"output": output}), stream=True)
        try:
            async for chunk in response.aiter_bytes():
                yield chunk
        finally:
            await response.aclose()

    async def download_job_result(self, job_id: str, path: Union[str, Path], output: int = 0) -> int:
        """Stream a job's output to a file; returns the bytes written."""
        written = 0
        with open(path, "wb") as f:
            async for chunk in self.iter_job_result_bytes(job_id, output):
                written += f.write(chunk)
        return written

    async def get_job_result(self, job_id: str, output: int = 0) -> list[JobResultRow]:
        """See :meth:`PynomalyClient.get_job_result`."""
        response = await self._send(_Call("GET", f"/api/v1/jobs/{_path(job_id)}/result", params={"output": output}), stream=True)
        try:
            text = b"".join([chunk async for chunk in response.aiter_bytes()]).decode()
        finally:
            await response.aclose()
        return _parse_rows(response.headers.get("Content-Type", ""), text)

