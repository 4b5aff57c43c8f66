"""Typed requests and responses of the pynomaly HTTP API (``docs/api.md``), as pydantic v2
models.

Requests accept NumPy arrays and pandas DataFrames wherever rows (``data``) go, and take
algorithm parameters either in ``parameters`` or as extra keyword arguments, which are
sent flat at the top level as the API allows (``DetectionRequest(data=x,
n_estimators=50)``). Nothing is checked here that the server checks better: the server
answers a bad value with a 422 naming it, raised as :class:`pynomaly.exceptions.InvalidInputError`.

Responses keep fields the server adds after this package was released (``extra="allow"``).
A test compares every model with the live server's ``/api/v1/openapi.json``, so the two
cannot drift apart.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "Algorithm",
    "BatchDetectionRequest",
    "Contamination",
    "DetectionRequest",
    "DetectionResult",
    "HealthStatus",
    "JobAccepted",
    "JobList",
    "JobProgress",
    "JobResultRow",
    "JobStatus",
    "Lineage",
    "ModelInfo",
    "ModelList",
    "ModelSummary",
    "ModelVersions",
    "PredictionRequest",
    "Promotion",
    "StageChangeRequest",
    "StageChangeResult",
    "StageEvent",
    "Token",
    "TrainingRequest",
    "TrainingResult",
    "ValidationData",
]

Algorithm = Literal[
    "isolation_forest", "lof", "ecod", "copod", "hbos", "knn", "pca", "gmm", "dbscan", "inne",
    "mcd", "cblof",
]
Contamination = Union[Literal["auto"], float]
Rows = list[list[float]]


def rows_from(value: Any) -> Any:
    """Rows as lists of floats from a NumPy array, a pandas DataFrame, or anything with
    ``tolist``; other values pass through for pydantic to check."""
    to_numpy = getattr(value, "to_numpy", None)
    if callable(to_numpy):  # pandas DataFrame
        value = to_numpy(dtype=float)
    tolist = getattr(value, "tolist", None)
    if callable(tolist):  # NumPy array
        return tolist()
    return value


class _Request(BaseModel):
    """Requests: unknown keyword arguments are algorithm parameters, sent flat."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)

    def body(self) -> dict[str, Any]:
        """The JSON body: fields left unset are left out, so the server's defaults apply."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class _Response(BaseModel):
    """Responses: fields a newer server adds are kept, not refused."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)


class ExplainOptions(_Request):
    """``explain`` as an object: each row's ``top_k`` features (1..n_features; default 3)."""

    model_config = ConfigDict(extra="forbid")

    top_k: Optional[int] = None


# ``explain`` of detect, predict and batch: True (each row's top 3 features), False, or
# ExplainOptions(top_k=N).
Explain = Union[bool, ExplainOptions]


class DetectionRequest(_Request):
    """``POST /api/v1/detect``: fit a detector on ``data`` and label the same rows."""

    data: Rows
    algorithm: Optional[Algorithm] = None
    contamination: Optional[Contamination] = None
    parameters: Optional[dict[str, Any]] = None
    explain: Optional[Explain] = None

    _rows = field_validator("data", mode="before")(rows_from)


class BatchDetectionRequest(_Request):
    """``POST /api/v1/batch``: score data sources in the background (a job).

    Either a trained model (``model_name``, ``version``) or a detector fitted per source
    (``algorithm``, ``contamination``, parameters)."""

    data_source: Optional[str] = None
    data_sources: Optional[list[str]] = None
    model_name: Optional[str] = None
    version: Optional[int] = None
    algorithm: Optional[str] = None
    contamination: Optional[Contamination] = None
    parameters: Optional[dict[str, Any]] = None
    output_format: Optional[Literal["json", "csv"]] = None
    label_column: Optional[str] = None
    # Each output row's top features ("explanation"; a CSV column of name:share pairs).
    explain: Optional[Explain] = None


class ValidationData(_Request):
    """Labelled rows (``labels``: 1 anomaly, 0 normal) for a training's promotion gate."""

    data: Rows
    labels: list[int]

    _rows = field_validator("data", mode="before")(rows_from)


class ValidationSource(_Request):
    """A data source of labelled rows for a training job's promotion gate: its features, and
    ``label_column`` (default: the training's) holding 1 for an anomaly, 0 otherwise."""

    source: str
    label_column: Optional[str] = None


class TrainingRequest(_Request):
    """``POST /api/v1/models``: train a model version from ``data`` (now) or
    ``training_data`` (a data source, as a job)."""

    model_name: str
    data: Optional[Rows] = None
    training_data: Optional[str] = None
    algorithm: Optional[str] = None
    contamination: Optional[Contamination] = None
    parameters: Optional[dict[str, Any]] = None
    feature_names: Optional[list[str]] = None
    label_column: Optional[str] = None
    promote: Optional[Literal["always", "manual", "if_better"]] = None
    gate_metric: Optional[Literal["roc_auc", "average_precision", "precision_at_contamination"]] = (
        None
    )
    min_improvement: Optional[float] = None
    # Seconds the new version is watched after replacing production (rolled back on a breach).
    bake_seconds: Optional[int] = None
    # Rows inline, or (with ``training_data``) a data source of them, by name or with its
    # label column.
    validation_data: Optional[Union[ValidationData, ValidationSource, str]] = None

    _rows = field_validator("data", mode="before")(rows_from)


class PredictionRequest(_Request):
    """``POST /api/v1/models/{name}/predict``: score rows with a trained version."""

    model_config = ConfigDict(extra="forbid")

    data: Rows
    version: Optional[int] = None
    # Decides which version a canary rollout gives this request (one key, one version).
    routing_key: Optional[str] = None
    explain: Optional[Explain] = None

    _rows = field_validator("data", mode="before")(rows_from)


class StageChangeRequest(_Request):
    """Body of promote, archive and rollback: an optional ``reason``."""

    model_config = ConfigDict(extra="forbid")

    reason: Optional[str] = None


class PromoteRequest(_Request):
    """Body of promote and canary promote: an optional ``reason``, and ``bake_seconds`` to
    watch the promoted version with ``guards`` and roll it back on a breach."""

    model_config = ConfigDict(extra="forbid")

    reason: Optional[str] = None
    bake_seconds: Optional[int] = None
    guards: Optional[dict[str, Any]] = None


class FeatureContribution(_Response):
    """One feature's share of a row's anomaly (a row's shares over all its features sum to
    1); ``feature`` is the model's feature name, or ``x0``, ``x1``, … without names."""

    feature: str
    contribution: float


class DetectionResult(_Response):
    """The answer of ``detect`` and ``predict``: scores (higher = more anomalous),
    scikit-learn labels (-1 anomaly, 1 normal) and the threshold between them."""

    predictions: list[int]
    scores: list[float]
    threshold: float
    anomaly_count: int
    algorithm: str
    parameters: dict[str, Any]
    contamination: Contamination
    n_samples: int
    n_features: int
    processing_time_ms: float
    warnings: list[str] = Field(default_factory=list)
    model_name: Optional[str] = None
    model_version: Optional[int] = None
    # predict only: which version answered (production, canary, or requested).
    variant: Optional[str] = None
    # With ``explain``: per row, its top features, most responsible first.
    explanations: Optional[list[list[FeatureContribution]]] = None


JobState = Literal["queued", "running", "succeeded", "failed", "cancelled"]


class JobAccepted(_Response):
    """A submitted job: queued (202), or the first job of a repeated ``Idempotency-Key``
    (200, in whatever state it has reached). Poll it with ``wait_for_job``."""

    job_id: str
    status: JobState
    status_url: Optional[str] = None
    model_name: Optional[str] = None


class JobProgress(_Response):
    """How far a job has got."""

    rows_processed: int = 0
    sources_done: int = 0
    sources_total: int = 0


class JobStatus(_Response):
    """``GET /api/v1/jobs/{job_id}``: a job's state, progress and result."""

    job_id: str
    kind: Literal["batch", "train"]
    status: JobState
    progress: JobProgress = Field(default_factory=JobProgress)
    created_at: datetime
    started_at: Optional[datetime] = None
    finished_at: Optional[datetime] = None
    result: Optional[dict[str, Any]] = None
    error: Optional[str] = None
    cancel_requested: bool = False
    attempts: int = 0
    status_url: Optional[str] = None
    result_url: Optional[str] = None
    model_name: Optional[str] = None

    @property
    def finished(self) -> bool:
        """``True`` once the job succeeded, failed or was cancelled."""
        return self.status in ("succeeded", "failed", "cancelled")


class JobList(_Response):
    """``GET /api/v1/jobs``: newest first."""

    jobs: list[JobStatus]
    total: int
    limit: int
    offset: int


class JobResultRow(_Response):
    """One row of a batch job's output."""

    row: int
    prediction: int
    score: float


class StageEvent(_Response):
    """One change of a version's stage."""

    from_: Optional[str] = Field(default=None, alias="from")
    to: str
    at: datetime
    by: Optional[str] = None
    reason: str
    note: Optional[str] = None


class Lineage(_Response):
    """Where a version came from."""

    training_data: Optional[str] = None
    rows: Optional[int] = None
    sha256: Optional[str] = None
    parent_version: Optional[int] = None
    random_state: Optional[int] = None
    trained_by: Optional[str] = None
    pynomaly_version: Optional[str] = None
    job_id: Optional[str] = None
    label_column: Optional[str] = None


class Promotion(_Response):
    """What a training's ``promote`` policy did."""

    policy: str
    promoted: bool
    reason: Optional[str] = None
    replaced: Optional[int] = None


class ModelInfo(_Response):
    """A model version (``GET /api/v1/models/{name}/versions/{v}``, a 201 training)."""

    model_name: str
    version: int
    algorithm: str
    parameters: dict[str, Any]
    contamination: Contamination
    threshold: float
    n_features: int
    n_samples: int
    feature_names: Optional[list[str]] = None
    stage: Literal["production", "staging", "archived"]
    stage_history: list[StageEvent] = Field(default_factory=list)
    metrics: Optional[dict[str, Any]] = None
    lineage: Optional[Lineage] = None
    promotion: Optional[Promotion] = None
    created_at: datetime
    training_time_ms: Optional[float] = None


class TrainingResult(ModelInfo):
    """A version trained from inline rows (201): the version, plus how many training rows
    were labelled -1 and any fit warnings."""

    anomaly_count: Optional[int] = None
    warnings: list[str] = Field(default_factory=list)


class StageChangeResult(ModelInfo):
    """The version after promote, archive or rollback."""

    previous_stage: Optional[str] = None
    replaced_version: Optional[int] = None


class ModelSummary(_Response):
    """One model name in ``GET /api/v1/models``."""

    model_name: str
    algorithm: str
    latest_version: int
    production_version: Optional[int] = None
    version_count: int
    created_at: datetime
    updated_at: datetime


class ModelList(_Response):
    """``GET /api/v1/models``: the tenant's models by name."""

    models: list[ModelSummary]
    total: int
    limit: int
    offset: int


class ModelVersions(_Response):
    """``GET /api/v1/models/{name}``: a model's versions."""

    model_name: str
    algorithm: str
    latest_version: int
    production_version: Optional[int] = None
    versions: list[ModelInfo]


class HealthStatus(_Response):
    """``GET /health``: the service's dependencies."""

    status: Literal["healthy", "degraded", "unhealthy"]
    reasons: list[str] = Field(default_factory=list)
    version: str
    uptime_s: float
    checks: dict[str, dict[str, Any]]


class Token(_Response):
    """``POST /api/v1/auth/token``: a JWT."""

    access_token: str
    token_type: str
    expires_in: int
