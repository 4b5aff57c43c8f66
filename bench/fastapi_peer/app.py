"""The FastAPI + scikit-learn service an ML engineer would write for this API: the peer that
bench/service_bench.sh measures pynomaly against (issue 3, "Speed").

Same routes and JSON shapes as ../../docs/api.md for the parts benchmarked:

    POST /api/v1/detect                    fit IsolationForest or LOF on the rows, label them
    POST /api/v1/models                    train on inline `data`, keep it in memory (versions 1, 2, ...)
    GET  /api/v1/models/{name}             the model's versions
    POST /api/v1/models/{name}/predict     score rows with a trained model
    GET  /health                           no auth

Score convention (the contract's): `scores` = -score_samples (isolation forest; the local
outlier factor for LOF), `threshold` = -offset_ (0.5 / 1.5 for contamination "auto"), and a
row is -1 exactly when its score > threshold. Scores are computed once per request and the
predictions derived from them (no second pass through `predict`): the peer's best case.

Auth is on (FastAPI's `HTTPBearer`): `Authorization: Bearer <PEER_API_KEY>`, compared
in constant time (hmac.compare_digest). Errors use the contract's shape.

Run (from the repository root):

    pip install -r bench/fastapi_peer/requirements.txt
    PEER_API_KEY=secret uvicorn app:app --app-dir bench/fastapi_peer \
        --host 127.0.0.1 --port 18081 --workers 2 --no-access-log

Models live in each worker process's memory. So that every worker can answer a predict,
each one trains the benchmark model `bench` at start-up, deterministically (bench_data.py:
RandomState(0) 10,000 x 10, IsolationForest(n_estimators=100, random_state=0)); set
PEER_BENCH_MODEL=0 to skip it. Models trained through POST /api/v1/models exist only in
the worker that trained them: use --workers 1 to rely on them.
"""
import hmac
import math
import os
import time
import uuid
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from typing import Any, Optional, Union

import numpy as np
import sklearn
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict
from sklearn.ensemble import IsolationForest
from sklearn.neighbors import LocalOutlierFactor

import bench_data

VERSION = "peer-0.1.0 (fastapi + scikit-learn " + sklearn.__version__ + ")"
API_KEY = os.environ.get("PEER_API_KEY", "")
STARTED = time.monotonic()

# --- algorithms: scikit-learn's names and defaults (the contract's subset) ---------------
ALGORITHMS = {
    "isolation_forest": {
        "n_estimators": 100,
        "max_samples": "auto",
        "max_features": 1.0,
        "bootstrap": False,
        "random_state": None,
    },
    "lof": {"n_neighbors": 20, "metric": "euclidean", "p": 2},
}
REQUEST_FIELDS = {"data", "algorithm", "contamination", "parameters", "model_name", "version",
                  "training_data"}

# name -> list of versions (dicts with the estimator under "_est")
MODELS: dict[str, list[dict[str, Any]]] = {}


# --- errors in the contract's shape --------------------------------------------------------
CODES = {400: "malformed_json", 401: "unauthorized", 403: "forbidden", 404: "not_found",
         409: "conflict", 413: "payload_too_large", 422: "invalid_input", 429: "rate_limited",
         503: "unavailable", 500: "internal"}


class ApiError(Exception):
    def __init__(self, status: int, message: str, details: Optional[dict] = None):
        self.status, self.message, self.details = status, message, details or {}


def error_response(request: Request, status: int, message: str, details=None, headers=None):
    rid = request.scope.get("request_id", "")
    body = {"error": {"code": CODES.get(status, "internal"), "message": message,
                      "details": details or {}}, "request_id": rid}
    return JSONResponse(body, status_code=status, headers=headers)


# --- request id: a plain ASGI middleware (cheaper than BaseHTTPMiddleware) ----------------
class RequestId:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        rid = None
        for k, v in scope["headers"]:
            if k == b"x-request-id":
                rid = v.decode("latin-1")
                break
        rid = rid or uuid.uuid4().hex
        scope["request_id"] = rid
        raw = rid.encode("latin-1")

        async def send_with_id(message):
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                message["headers"] = list(message["headers"]) + [(b"x-request-id", raw)]
            await send(message)

        await self.app(scope, receive, send_with_id)


@asynccontextmanager
async def lifespan(_app):
    if os.environ.get("PEER_BENCH_MODEL", "1") != "0":
        X = bench_data.training_matrix()
        body = {"algorithm": "isolation_forest", "contamination": "auto",
                "n_estimators": bench_data.N_ESTIMATORS, "random_state": bench_data.SEED}
        train(bench_data.MODEL_NAME, X, body)
    yield


app = FastAPI(title="pynomaly FastAPI peer", version=VERSION, lifespan=lifespan)
app.add_middleware(RequestId)
bearer = HTTPBearer(auto_error=False)


@app.exception_handler(ApiError)
async def _api_error(request: Request, exc: ApiError):
    return error_response(request, exc.status, exc.message, exc.details)


@app.exception_handler(HTTPException)
async def _http_error(request: Request, exc: HTTPException):
    return error_response(request, exc.status_code, str(exc.detail), headers=exc.headers)


@app.exception_handler(RequestValidationError)
async def _validation_error(request: Request, exc: RequestValidationError):
    errs = exc.errors()
    if any(e.get("type") == "json_invalid" for e in errs):
        return error_response(request, 400, "request body is not valid JSON")
    first = errs[0] if errs else {}
    loc = ".".join(str(p) for p in first.get("loc", ()) if p != "body") or "body"
    return error_response(request, 422, f"{loc}: {first.get('msg', 'invalid')}",
                          {"errors": [{"loc": list(e.get("loc", ())), "msg": e.get("msg")}
                                      for e in errs[:10]]})


def require_key(creds: Optional[HTTPAuthorizationCredentials] = Depends(bearer)):
    if creds is None or creds.scheme.lower() != "bearer":
        raise ApiError(401, "missing bearer token")
    if not API_KEY or not hmac.compare_digest(creds.credentials.encode(), API_KEY.encode()):
        raise ApiError(401, "invalid API key")


# --- request bodies (extra fields allowed: clients may send the parameters flat) ----------
class DetectRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    data: list[list[float]]
    algorithm: str = "isolation_forest"
    contamination: Union[float, str] = "auto"
    parameters: Optional[dict[str, Any]] = None


class TrainRequest(DetectRequest):
    model_name: str
    data: Optional[list[list[float]]] = None
    training_data: Optional[str] = None


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    data: list[list[float]]
    version: Optional[int] = None


# --- the work -----------------------------------------------------------------------------
def as_matrix(rows) -> np.ndarray:
    if not rows:
        raise ApiError(422, "data is empty")
    width = len(rows[0])
    if width == 0:
        raise ApiError(422, "row 0 has no values")
    for i, r in enumerate(rows):
        if len(r) != width:
            raise ApiError(422, f"row {i} has {len(r)} values, expected {width}",
                           {"row": i, "expected": width, "got": len(r)})
    X = np.asarray(rows, dtype=np.float64)
    if not np.isfinite(X).all():
        i, j = map(int, np.argwhere(~np.isfinite(X))[0])
        raise ApiError(422, f"row {i} column {j} is not a finite number", {"row": i, "column": j})
    return X


def resolve(body: dict) -> tuple[str, Union[str, float], dict]:
    """algorithm, contamination and the full parameter set (defaults filled in)."""
    algorithm = body.get("algorithm") or "isolation_forest"
    if algorithm not in ALGORITHMS:
        raise ApiError(422, f"unknown algorithm {algorithm!r}",
                       {"accepted": sorted(ALGORITHMS)})
    c = body.get("contamination", "auto")
    if c is None:
        c = "auto"
    if isinstance(c, str) and c != "auto":
        try:
            c = float(c)
        except ValueError:
            raise ApiError(422, "contamination must be \"auto\" or a number in (0, 0.5]")
    if not isinstance(c, str) and not (0.0 < float(c) <= 0.5 and math.isfinite(float(c))):
        raise ApiError(422, "contamination must be \"auto\" or a number in (0, 0.5]")
    flat = {k: v for k, v in body.items() if k not in REQUEST_FIELDS and v is not None}
    given = {**flat, **(body.get("parameters") or {})}
    defaults = ALGORITHMS[algorithm]
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ApiError(422, f"unknown parameter(s) {unknown} for {algorithm}",
                       {"accepted": sorted(defaults)})
    return algorithm, c, {**defaults, **given}


def estimator(algorithm, contamination, params, novelty):
    try:
        if algorithm == "isolation_forest":
            return IsolationForest(contamination=contamination, **params)
        return LocalOutlierFactor(contamination=contamination, novelty=novelty, **params)
    except (TypeError, ValueError) as e:
        raise ApiError(422, str(e))


def fit(est, X):
    try:
        est.fit(X)
    except ValueError as e:  # sklearn's InvalidParameterError is a ValueError
        raise ApiError(422, str(e))


def labelled(scores: np.ndarray, threshold: float) -> dict:
    predictions = np.where(scores > threshold, -1, 1)
    return {"predictions": predictions.tolist(), "scores": scores.tolist(),
            "threshold": threshold, "anomaly_count": int((predictions == -1).sum())}


def train(name: str, X: np.ndarray, body: dict) -> dict:
    algorithm, contamination, params = resolve(body)
    t0 = time.perf_counter()
    est = estimator(algorithm, contamination, params, novelty=True)
    fit(est, X)
    ms = (time.perf_counter() - t0) * 1000.0
    versions = MODELS.setdefault(name, [])
    v = {
        "model_name": name, "version": len(versions) + 1, "algorithm": algorithm,
        "parameters": params, "contamination": contamination,
        "threshold": float(-est.offset_), "n_features": int(X.shape[1]),
        "n_samples": int(X.shape[0]), "feature_names": None,
        "stage": "production" if not versions else "staging",
        "created_at": datetime.now(timezone.utc).isoformat(), "training_time_ms": ms,
        "_est": est,
    }
    versions.append(v)
    return v


def settings(req: DetectRequest) -> dict:
    """algorithm, contamination and parameters of a request (nested or flat), without data."""
    return {**(req.model_extra or {}), "algorithm": req.algorithm,
            "contamination": req.contamination, "parameters": req.parameters}


def public(v: dict) -> dict:
    return {k: val for k, val in v.items() if k != "_est"}


# --- routes -------------------------------------------------------------------------------
@app.get("/health")
def health():
    return {"status": "healthy", "version": VERSION,
            "uptime_s": round(time.monotonic() - STARTED, 3),
            "checks": {"models": {"status": "up", "count": len(MODELS)},
                       "workers": {"status": "up", "active": 1, "pid": os.getpid()}}}


@app.post("/api/v1/detect", dependencies=[Depends(require_key)])
def detect(req: DetectRequest):
    algorithm, contamination, params = resolve(settings(req))
    X = as_matrix(req.data)
    t0 = time.perf_counter()
    est = estimator(algorithm, contamination, params, novelty=False)
    fit(est, X)
    if algorithm == "isolation_forest":
        scores = -est.score_samples(X)
    else:
        scores = -est.negative_outlier_factor_
    out = labelled(scores, float(-est.offset_))
    out.update({"algorithm": algorithm, "parameters": params, "contamination": contamination,
                "n_samples": int(X.shape[0]), "n_features": int(X.shape[1]),
                "processing_time_ms": (time.perf_counter() - t0) * 1000.0})
    return JSONResponse(out)


@app.post("/api/v1/models", status_code=201, dependencies=[Depends(require_key)])
def create_model(req: TrainRequest):
    if req.data is None:
        raise ApiError(422, "this peer trains on inline `data` only (no `training_data` sources)")
    X = as_matrix(req.data)
    return JSONResponse(public(train(req.model_name, X, settings(req))), status_code=201)


@app.get("/api/v1/models/{name}", dependencies=[Depends(require_key)])
def get_model(name: str):
    if name not in MODELS:
        raise ApiError(404, f"model {name!r} not found")
    return {"model_name": name, "versions": [public(v) for v in MODELS[name]]}


@app.post("/api/v1/models/{name}/predict", dependencies=[Depends(require_key)])
def predict(name: str, req: PredictRequest):
    versions = MODELS.get(name)
    if not versions:
        raise ApiError(404, f"model {name!r} not found")
    if req.version is None:
        v = next((v for v in versions if v["stage"] == "production"), versions[-1])
    elif 1 <= req.version <= len(versions):
        v = versions[req.version - 1]
    else:
        raise ApiError(404, f"model {name!r} has no version {req.version}")
    X = as_matrix(req.data)
    if X.shape[1] != v["n_features"]:
        raise ApiError(422, f"model {name!r} expects {v['n_features']} features, got {X.shape[1]}",
                       {"expected": v["n_features"], "got": int(X.shape[1])})
    t0 = time.perf_counter()
    scores = -v["_est"].score_samples(X)
    out = labelled(scores, v["threshold"])
    out.update({"algorithm": v["algorithm"], "parameters": v["parameters"],
                "contamination": v["contamination"], "n_samples": int(X.shape[0]),
                "n_features": int(X.shape[1]),
                "processing_time_ms": (time.perf_counter() - t0) * 1000.0,
                "model_name": name, "model_version": v["version"]})
    return JSONResponse(out)
