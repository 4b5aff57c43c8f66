"""Retries against a small scripted HTTP server on loopback: which answers are retried,
how long the client waits (its sleeps are recorded, not slept), and which calls are never
repeated."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

import pynomaly.client as client_module
from conftest import free_port
from pynomaly.client import AsyncPynomalyClient, PynomalyClient, RetryPolicy
from pynomaly.exceptions import (
    PynomalyConnectionError,
    RateLimitError,
    ServerError,
    ServiceUnavailableError,
)

MODELS = {"models": [], "total": 0, "limit": 50, "offset": 0}
ERROR_503 = {
    "error": {"code": "unavailable", "message": "request timed out", "details": {}},
    "request_id": "req-503",
}
ERROR_429 = {
    "error": {"code": "rate_limited", "message": "slow down", "details": {"retry_after_s": 2}},
    "request_id": "req-429",
}
JOB = {"job_id": "j1", "status": "queued", "status_url": "/api/v1/jobs/j1"}


class Scripted:
    """Answers each request with the next (status, headers, body) of the script; the last
    one repeats. Records the requests' methods, paths and headers."""

    def __init__(self) -> None:
        self.script: list[tuple[int, dict[str, str], Any]] = []
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        scripted = self

        class Handler(BaseHTTPRequestHandler):
            def answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                scripted.requests.append((self.command, self.path, dict(self.headers)))
                status, headers, body = (
                    scripted.script.pop(0) if len(scripted.script) > 1 else scripted.script[0]
                )
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = answer

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def scripted() -> Iterator[Scripted]:
    s = Scripted()
    yield s
    s.close()


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The client's waits, recorded instead of slept (sync and async)."""
    waited: list[float] = []

    async def async_sleep(seconds: float) -> None:
        waited.append(seconds)

    monkeypatch.setattr(client_module.time, "sleep", waited.append)
    monkeypatch.setattr(client_module.asyncio, "sleep", async_sleep)
    return waited


def test_429_waits_exactly_retry_after_then_succeeds(
    scripted: Scripted, sleeps: list[float]
) -> None:
    scripted.script = [(429, {"Retry-After": "2"}, ERROR_429), (200, {}, MODELS)]
    with PynomalyClient(scripted.url, "pk_test") as c:
        assert c.list_models().total == 0
    assert sleeps == [2.0]
    assert len(scripted.requests) == 2


def test_503_twice_then_200_backs_off_with_jitter(scripted: Scripted, sleeps: list[float]) -> None:
    scripted.script = [(503, {}, ERROR_503), (503, {}, ERROR_503), (200, {}, MODELS)]
    with PynomalyClient(scripted.url, "pk_test", backoff=0.5) as c:
        assert c.list_models().total == 0
    assert len(scripted.requests) == 3
    # Full jitter: attempt n waits uniformly in [0, backoff * 2**n].
    assert len(sleeps) == 2 and 0 <= sleeps[0] <= 0.5 and 0 <= sleeps[1] <= 1.0


def test_retries_give_up_with_the_servers_error(scripted: Scripted, sleeps: list[float]) -> None:
    scripted.script = [(503, {"Retry-After": "1"}, ERROR_503)]
    with PynomalyClient(scripted.url, "pk_test", max_retries=2) as c:
        with pytest.raises(ServiceUnavailableError) as e:
            c.list_models()
    assert (e.value.code, e.value.request_id, e.value.retry_after) == ("unavailable", "req-503", 1.0)
    assert sleeps == [1.0, 1.0] and len(scripted.requests) == 3
    scripted.requests.clear()
    scripted.script = [(429, {"Retry-After": "2"}, ERROR_429)]
    with PynomalyClient(scripted.url, "pk_test", max_retries=1) as c:
        with pytest.raises(RateLimitError) as limited:
            c.list_models()
    assert limited.value.details == {"retry_after_s": 2} and len(scripted.requests) == 2


def test_non_idempotent_calls_are_not_repeated_after_a_503(
    scripted: Scripted, sleeps: list[float]
) -> None:
    scripted.script = [(503, {}, ERROR_503), (201, {}, {})]
    with PynomalyClient(scripted.url, "pk_test") as c:
        with pytest.raises(ServiceUnavailableError):
            c.train_model(model_name="m", data=[[1.0], [2.0]])
        assert len(scripted.requests) == 1
        scripted.script = [(503, {}, ERROR_503), (200, {}, {})]
        with pytest.raises(ServiceUnavailableError):
            c.rollback_model("m")
        assert len(scripted.requests) == 2
        # A 429 is refused before anything is done: repeated even for these.
        scripted.script = [(429, {"Retry-After": "0"}, ERROR_429), (502, {}, "bad gateway")]
        with pytest.raises(ServerError) as e:
            c.promote_model("m", 1)
        assert (e.value.status_code, e.value.code) == (502, "http_502")
        assert len(scripted.requests) == 4
    assert sleeps == [0.0]


def test_batch_retries_carry_one_idempotency_key(scripted: Scripted, sleeps: list[float]) -> None:
    scripted.script = [(503, {}, ERROR_503), (504, {}, {}), (202, {}, JOB)]
    with PynomalyClient(scripted.url, "pk_test") as c:
        assert c.batch_detect("day1.csv").job_id == "j1"
    keys = {headers.get("Idempotency-Key") for _, _, headers in scripted.requests}
    assert len(scripted.requests) == 3 and len(keys) == 1 and None not in keys
    assert scripted.requests[0][2]["Authorization"] == "Bearer pk_test"


def test_an_unreachable_server_is_retried_then_a_connection_error(sleeps: list[float]) -> None:
    with PynomalyClient(f"http://127.0.0.1:{free_port()}", "pk", max_retries=2) as c:
        with pytest.raises(PynomalyConnectionError):
            c.train_model(model_name="m", data=[[1.0], [2.0]])  # never sent: safe to retry
    assert len(sleeps) == 2


def test_the_async_client_retries_the_same_way(scripted: Scripted, sleeps: list[float]) -> None:
    async def scenario() -> None:
        scripted.script = [(429, {"Retry-After": "3"}, ERROR_429), (503, {}, ERROR_503), (200, {}, MODELS)]
        async with AsyncPynomalyClient(scripted.url, "pk_test", backoff=0.25) as c:
            assert (await c.list_models()).total == 0
            assert len(scripted.requests) == 3
            scripted.script = [(503, {}, ERROR_503), (201, {}, {})]
            with pytest.raises(ServiceUnavailableError):
                await c.train_model(model_name="m", data=[[1.0], [2.0]])
            assert len(scripted.requests) == 4

    asyncio.run(scenario())
    assert sleeps[0] == 3.0 and 0 <= sleeps[1] <= 0.5 and len(sleeps) == 2


def test_backoff_is_capped_and_jittered() -> None:
    policy = RetryPolicy(max_retries=10, backoff=1.0, max_backoff=4.0)
    delays = [policy.delay(8) for _ in range(200)]
    assert max(delays) <= 4.0 and min(delays) >= 0.0 and len(set(delays)) > 100
    assert policy.delay(8, retry_after=30.0) == 30.0
