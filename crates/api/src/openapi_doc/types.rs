//! The shapes of responses (and of the fixed-shape request bodies) as the document gives
//! them, for the answers the handlers build from store and registry types (which live in
//! crates without schema derives) or as JSON. Each type is the wire shape of one answer;
//! the API tests validate real answers of every route against these schemas
//! (`the_answers_of_every_route_match_the_document`), so a field that changes in a handler
//! and not here fails a test.
//!
//! None of these types is built: they exist to derive schemas.
#![allow(dead_code)]

use std::collections::BTreeMap;

use serde_json::Value;
use utoipa::ToSchema;

use super::Contamination;

/// The error body every failure answers with.
#[derive(ToSchema)]
pub(crate) struct Error {
    pub(crate) error: ErrorDetail,
    /// The request's id, as the `X-Request-Id` header gives it.
    pub(crate) request_id: String,
}

/// What went wrong.
#[derive(ToSchema)]
pub(crate) struct ErrorDetail {
    pub(crate) code: ErrorCode,
    /// Says precisely what was wrong (row, column, field, parameter, accepted values).
    pub(crate) message: String,
    /// Machine-readable specifics: `field`, `row`/`column`, `parameter`, `accepted`,
    /// `limit`, `retry_after_s`, … (empty when there are none).
    #[schema(value_type = Object)]
    pub(crate) details: Value,
}

/// The error codes, one per HTTP status.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub(crate) enum ErrorCode {
    InvalidInput,
    MalformedJson,
    Unauthorized,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    Conflict,
    PayloadTooLarge,
    RateLimited,
    Unavailable,
    InsufficientStorage,
    Internal,
}

/// Labels and scores: the answer of detect and of a model's predict.
#[derive(ToSchema)]
pub(crate) struct Detection {
    /// One per row: -1 anomaly, 1 normal.
    #[schema(value_type = Vec<i8>)]
    pub(crate) predictions: Vec<i8>,
    /// One per row; higher = more anomalous.
    pub(crate) scores: Vec<f64>,
    /// A row is -1 exactly when its score is greater.
    pub(crate) threshold: f64,
    #[schema(minimum = 0)]
    pub(crate) anomaly_count: u64,
    pub(crate) algorithm: String,
    /// Every parameter of the algorithm as used (defaults filled in).
    #[schema(value_type = Object)]
    pub(crate) parameters: Value,
    /// `"auto"` or the fraction.
    #[schema(value_type = Contamination)]
    pub(crate) contamination: Value,
    pub(crate) n_samples: u64,
    pub(crate) n_features: u64,
    pub(crate) processing_time_ms: f64,
    /// predict only: the model.
    pub(crate) model_name: Option<String>,
    /// predict only: the version that answered.
    pub(crate) model_version: Option<i64>,
    /// predict only: which version answered.
    pub(crate) variant: Option<Variant>,
    /// Things the caller should know (e.g. duplicate rows); absent when none.
    pub(crate) warnings: Option<Vec<String>>,
    /// With `explain`: one array per row, its top features, most responsible first.
    pub(crate) explanations: Option<Vec<Vec<FeatureContribution>>>,
}

/// One feature's share of a row's anomaly.
#[derive(ToSchema)]
pub(crate) struct FeatureContribution {
    /// The feature's name: the model's feature names when it has them, else `x0`, `x1`, ….
    pub(crate) feature: String,
    /// Its share of the row's anomaly, in [0, 1]; a row's shares over all its features sum
    /// to 1.
    #[schema(minimum = 0.0, maximum = 1.0)]
    pub(crate) contribution: f64,
}

/// Which version answered a predict.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub(crate) enum Variant {
    Production,
    Canary,
    Requested,
}

/// One event of a version's stage history.
#[derive(ToSchema)]
pub(crate) struct StageEvent {
    /// The stage before (null when the version was registered).
    pub(crate) from: Option<Stage>,
    pub(crate) to: Stage,
    #[schema(format = DateTime)]
    pub(crate) at: String,
    /// `key:<id>`, `user:<name>`, or `pynomaly` for the service's own decisions.
    pub(crate) by: String,
    /// `registered`, `promote`, `training`, `rollback`, `archive`, `replaced`, `guard`.
    pub(crate) reason: String,
    pub(crate) note: Option<String>,
}

/// A version's stage.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub(crate) enum Stage {
    Production,
    Staging,
    Archived,
}

/// Where a version comes from.
#[derive(ToSchema)]
pub(crate) struct Lineage {
    /// `inline`, `uploaded`, or the data source.
    pub(crate) training_data: Option<String>,
    pub(crate) rows: Option<u64>,
    /// Of the training matrix as read (shape, then f64 values row by row), or of the
    /// uploaded file.
    pub(crate) sha256: Option<String>,
    pub(crate) parent_version: Option<i64>,
    /// The seed the version was fitted with (randomized algorithms).
    pub(crate) random_state: Option<u64>,
    pub(crate) trained_by: Option<String>,
    pub(crate) pynomaly_version: Option<String>,
    pub(crate) job_id: Option<String>,
    pub(crate) label_column: Option<String>,
}

/// On a training's answer: what its promotion policy did.
#[derive(ToSchema)]
pub(crate) struct Promotion {
    pub(crate) policy: PromotePolicy,
    pub(crate) promoted: bool,
    pub(crate) reason: String,
    /// The production version it replaced.
    pub(crate) replaced: Option<i64>,
}

/// What happens to a new version.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub(crate) enum PromotePolicy {
    Always,
    Manual,
    IfBetter,
}

/// One version of a model.
#[derive(ToSchema)]
pub(crate) struct ModelVersion {
    pub(crate) model_name: String,
    pub(crate) version: i64,
    pub(crate) algorithm: String,
    #[schema(value_type = Object)]
    pub(crate) parameters: Value,
    #[schema(value_type = Contamination)]
    pub(crate) contamination: Value,
    pub(crate) threshold: f64,
    pub(crate) n_features: i64,
    pub(crate) n_samples: i64,
    pub(crate) feature_names: Option<Vec<String>>,
    pub(crate) stage: Stage,
    pub(crate) stage_history: Vec<StageEvent>,
    /// Figures on the training's validation_data: `validation` (this version) and
    /// `production` (the production version on the same rows).
    #[schema(value_type = Option<Object>)]
    pub(crate) metrics: Option<Value>,
    pub(crate) lineage: Option<Lineage>,
    #[schema(format = DateTime)]
    pub(crate) created_at: String,
    pub(crate) training_time_ms: f64,
    /// On a registration's answer: what its promotion policy did.
    pub(crate) promotion: Option<Promotion>,
}

/// A version after a stage change.
#[derive(ToSchema)]
pub(crate) struct StageChange {
    #[schema(inline)]
    #[serde(flatten)]
    pub(crate) version: ModelVersion,
    pub(crate) previous_stage: Stage,
    pub(crate) replaced_version: Option<i64>,
}

/// A model's versions.
#[derive(ToSchema)]
pub(crate) struct ModelVersions {
    pub(crate) model_name: String,
    pub(crate) algorithm: String,
    pub(crate) latest_version: i64,
    pub(crate) production_version: Option<i64>,
    pub(crate) versions: Vec<ModelVersion>,
}

/// A model in the listing.
#[derive(ToSchema)]
pub(crate) struct ModelSummary {
    pub(crate) model_name: String,
    pub(crate) algorithm: String,
    pub(crate) latest_version: i64,
    pub(crate) production_version: Option<i64>,
    pub(crate) version_count: i64,
    #[schema(format = DateTime)]
    pub(crate) created_at: String,
    #[schema(format = DateTime)]
    pub(crate) updated_at: String,
}

/// A page of models, by name.
#[derive(ToSchema)]
pub(crate) struct ModelList {
    pub(crate) models: Vec<ModelSummary>,
    pub(crate) total: i64,
    pub(crate) limit: u32,
    pub(crate) offset: u32,
}

/// A deleted model.
#[derive(ToSchema)]
pub(crate) struct ModelDeleted {
    pub(crate) model_name: String,
    pub(crate) deleted: bool,
    pub(crate) deleted_versions: Vec<i64>,
}

/// A job accepted (or, for a repeated `Idempotency-Key`, the first one).
#[derive(ToSchema)]
pub(crate) struct JobAccepted {
    pub(crate) job_id: String,
    pub(crate) status: JobStatus,
    /// `GET` it for the job's progress and result.
    pub(crate) status_url: String,
    /// Training jobs: the model trained.
    pub(crate) model_name: Option<String>,
}

/// A job's state.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub(crate) enum JobStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

/// A job's kind.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub(crate) enum JobKind {
    Batch,
    Train,
}

/// How far a job is.
#[derive(ToSchema)]
pub(crate) struct JobProgress {
    pub(crate) rows_processed: Option<u64>,
    pub(crate) sources_done: Option<u64>,
    pub(crate) sources_total: Option<u64>,
}

/// A job's status, progress and result.
#[derive(ToSchema)]
pub(crate) struct Job {
    pub(crate) job_id: String,
    pub(crate) kind: JobKind,
    pub(crate) status: JobStatus,
    pub(crate) progress: JobProgress,
    #[schema(format = DateTime)]
    pub(crate) created_at: String,
    #[schema(format = DateTime)]
    pub(crate) started_at: Option<String>,
    #[schema(format = DateTime)]
    pub(crate) finished_at: Option<String>,
    /// A batch: rows, anomalies and one output per source; a training: the version.
    #[schema(value_type = Option<crate::openapi_doc::JobResult>)]
    pub(crate) result: Option<Value>,
    pub(crate) error: Option<String>,
    pub(crate) cancel_requested: bool,
    pub(crate) attempts: i64,
    pub(crate) status_url: String,
    /// A succeeded batch job: its output.
    pub(crate) result_url: Option<String>,
    /// A training job: the model.
    pub(crate) model_name: Option<String>,
}

/// What a succeeded batch job scored.
#[derive(ToSchema)]
pub(crate) struct BatchResult {
    /// Rows scored, over every source.
    #[schema(minimum = 0)]
    pub(crate) n_samples: u64,
    /// Rows labelled -1, over every source.
    #[schema(minimum = 0)]
    pub(crate) anomaly_count: u64,
    /// One output per source, in the order given.
    pub(crate) outputs: Vec<BatchOutput>,
}

/// A batch job's output for one source.
#[derive(ToSchema)]
pub(crate) struct BatchOutput {
    /// The source as named in the request.
    pub(crate) source: String,
    /// Where the output is stored (`file://…` or `s3://…`).
    pub(crate) uri: String,
    /// The output's path in the artifact store.
    pub(crate) path: String,
    #[schema(value_type = OutputFormat)]
    pub(crate) format: String,
    #[schema(minimum = 0)]
    pub(crate) n_samples: u64,
    #[schema(minimum = 0)]
    pub(crate) anomaly_count: u64,
}

/// A batch job's output format.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub(crate) enum OutputFormat {
    Csv,
    Json,
}

/// A page of jobs, newest first.
#[derive(ToSchema)]
pub(crate) struct JobList {
    pub(crate) jobs: Vec<Job>,
    pub(crate) total: i64,
    pub(crate) limit: u32,
    pub(crate) offset: u32,
}

/// One row of a batch job's JSON output.
#[derive(ToSchema)]
pub(crate) struct ResultRow {
    /// The input row's index.
    pub(crate) row: u64,
    #[schema(value_type = i8)]
    pub(crate) prediction: i8,
    pub(crate) score: f64,
}

/// Every algorithm with its parameters.
#[derive(ToSchema)]
pub(crate) struct Algorithms {
    pub(crate) algorithms: Vec<AlgorithmInfo>,
}

/// One algorithm.
#[derive(ToSchema)]
pub(crate) struct AlgorithmInfo {
    pub(crate) name: String,
    pub(crate) description: String,
    pub(crate) supports_novelty: bool,
    pub(crate) contamination: AlgorithmContamination,
    pub(crate) parameters: Vec<ParameterInfo>,
}

/// What `contamination` accepts for an algorithm.
#[derive(ToSchema)]
pub(crate) struct AlgorithmContamination {
    #[schema(value_type = Value)]
    pub(crate) default: Value,
    pub(crate) accepted: String,
}

/// One parameter: its JSON type, default and range.
#[derive(ToSchema)]
pub(crate) struct ParameterInfo {
    pub(crate) name: String,
    /// e.g. `integer`, `"auto" | integer | number`, `integer | null`.
    #[schema(rename = "type")]
    pub(crate) type_: String,
    #[schema(value_type = Value)]
    pub(crate) default: Value,
    /// `[min, max]` for a bounded integer, else what is accepted in words.
    #[schema(value_type = Value, required = false)]
    pub(crate) range: Option<Value>,
    /// The names a choice accepts.
    pub(crate) accepted: Option<Vec<String>>,
}

/// A scope of an API key or user.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub(crate) enum Scope {
    Read,
    Write,
    Admin,
}

/// A new API key (the key itself is shown only here).
#[derive(ToSchema)]
pub(crate) struct KeyCreated {
    pub(crate) id: String,
    /// `pk_…`: send as `Authorization: Bearer <key>`.
    pub(crate) key: String,
    pub(crate) name: String,
    pub(crate) scopes: Vec<Scope>,
    pub(crate) tenant: String,
    pub(crate) rate_limit_per_minute: Option<i64>,
    #[schema(format = DateTime)]
    pub(crate) expires_at: Option<String>,
}

/// An API key as listed (never the key).
#[derive(ToSchema)]
pub(crate) struct KeyInfo {
    pub(crate) id: String,
    pub(crate) tenant: String,
    pub(crate) name: String,
    pub(crate) scopes: Vec<Scope>,
    pub(crate) rate_limit_per_minute: Option<i64>,
    #[schema(format = DateTime)]
    pub(crate) created_at: String,
    #[schema(format = DateTime)]
    pub(crate) expires_at: Option<String>,
    #[schema(format = DateTime)]
    pub(crate) revoked_at: Option<String>,
}

/// A tenant's keys.
#[derive(ToSchema)]
pub(crate) struct KeyList {
    pub(crate) keys: Vec<KeyInfo>,
}

/// A revoked key.
#[derive(ToSchema)]
pub(crate) struct KeyRevoked {
    pub(crate) id: String,
    pub(crate) revoked: bool,
    pub(crate) tenant: String,
}

/// A user (never the password or its hash).
#[derive(ToSchema)]
pub(crate) struct User {
    pub(crate) id: String,
    pub(crate) username: String,
    pub(crate) tenant: String,
    pub(crate) scopes: Vec<Scope>,
    #[schema(format = DateTime)]
    pub(crate) created_at: String,
    #[schema(format = DateTime)]
    pub(crate) disabled_at: Option<String>,
    pub(crate) disabled: bool,
}

/// The tenant's users.
#[derive(ToSchema)]
pub(crate) struct UserList {
    pub(crate) users: Vec<User>,
}

/// A disabled user.
#[derive(ToSchema)]
pub(crate) struct UserDisabled {
    pub(crate) id: String,
    pub(crate) disabled: bool,
}

/// A JWT for a user.
#[derive(ToSchema)]
pub(crate) struct Token {
    /// JWT (HS256): send as `Authorization: Bearer <token>`.
    pub(crate) access_token: String,
    pub(crate) token_type: TokenType,
    /// Seconds.
    pub(crate) expires_in: u64,
}

/// Always `bearer`.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub(crate) enum TokenType {
    Bearer,
}

/// One audit row.
#[derive(ToSchema)]
pub(crate) struct AuditEntry {
    pub(crate) id: i64,
    pub(crate) tenant: String,
    /// `key:<id>`, `user:<username>` or `anonymous`.
    pub(crate) actor: String,
    /// `METHOD /route/template`.
    pub(crate) action: String,
    /// The path requested.
    pub(crate) resource: String,
    /// The HTTP status.
    pub(crate) outcome: i64,
    pub(crate) request_id: String,
    pub(crate) client_addr: Option<String>,
    #[schema(format = DateTime)]
    pub(crate) created_at: String,
}

/// A page of the audit log, newest first.
#[derive(ToSchema)]
pub(crate) struct AuditList {
    pub(crate) entries: Vec<AuditEntry>,
    pub(crate) total: i64,
    pub(crate) limit: u32,
    pub(crate) offset: u32,
}

/// A dependency's health.
#[derive(ToSchema)]
pub(crate) struct Probe {
    pub(crate) status: ProbeStatus,
    pub(crate) latency_ms: Option<f64>,
    pub(crate) error: Option<String>,
}

/// `up` or `down`.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub(crate) enum ProbeStatus {
    Up,
    Down,
}

/// The service's health and its dependencies'.
#[derive(ToSchema)]
pub(crate) struct Health {
    pub(crate) status: HealthStatus,
    /// What is wrong, in words (empty when healthy).
    pub(crate) reasons: Vec<String>,
    pub(crate) version: String,
    pub(crate) uptime_s: f64,
    /// `database`, `queue`, `artifact_store`, `workers`, … each with its status.
    #[schema(value_type = BTreeMap<String, Object>)]
    pub(crate) checks: BTreeMap<String, Value>,
}

/// `healthy`, `degraded` or `unhealthy`.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub(crate) enum HealthStatus {
    Healthy,
    Degraded,
    Unhealthy,
}

/// A probe's answer.
#[derive(ToSchema)]
pub(crate) struct Status {
    pub(crate) status: String,
}

/// Where personal data is (values are never echoed).
#[derive(ToSchema)]
pub(crate) struct PrivacyScan {
    pub(crate) pii_found: bool,
    pub(crate) total: u64,
    /// Count per kind.
    pub(crate) summary: BTreeMap<String, u64>,
    pub(crate) findings: Vec<PrivacyFinding>,
}

/// Personal data at one place.
#[derive(ToSchema)]
pub(crate) struct PrivacyFinding {
    /// JSON Pointer to the value.
    pub(crate) path: String,
    #[schema(rename = "type")]
    pub(crate) kind: PiiKind,
    pub(crate) count: u64,
}

/// A kind of personal data.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub(crate) enum PiiKind {
    Email,
    Phone,
    Ssn,
    CreditCard,
    Field,
}

/// The anonymized document.
#[derive(ToSchema)]
pub(crate) struct PrivacyAnonymized {
    /// The document, with personal data masked or hashed.
    #[schema(value_type = Value)]
    pub(crate) data: Value,
    pub(crate) replacements: u64,
    pub(crate) mode: PrivacyMode,
}

/// `mask` (labels) or `hash` (keyed HMAC tokens).
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub(crate) enum PrivacyMode {
    Mask,
    Hash,
}

/// A model's retraining schedule.
#[derive(ToSchema)]
pub(crate) struct Schedule {
    pub(crate) model_name: String,
    /// 5 fields, UTC.
    pub(crate) cron: String,
    /// The training job each slot submits.
    #[schema(value_type = Object)]
    pub(crate) spec: Value,
    pub(crate) created_by: String,
    #[schema(format = DateTime)]
    pub(crate) next_run_at: String,
    #[schema(format = DateTime)]
    pub(crate) last_run_at: Option<String>,
    pub(crate) last_job_id: Option<String>,
}

/// A removed schedule.
#[derive(ToSchema)]
pub(crate) struct ScheduleDeleted {
    pub(crate) model_name: String,
    pub(crate) deleted: bool,
}

/// A canary, shadow or bake and this instance's comparison.
#[derive(ToSchema)]
pub(crate) struct Canary {
    pub(crate) version: i64,
    pub(crate) traffic_percent: f64,
    pub(crate) mode: RolloutKind,
    pub(crate) guards: Guards,
    #[schema(format = DateTime)]
    pub(crate) started_at: Option<String>,
    pub(crate) started_by: Option<String>,
    /// A canary or shadow: the bake its promotion starts (absent: none).
    #[schema(minimum = 0)]
    pub(crate) bake_seconds: Option<u64>,
    /// A bake: when it ends.
    #[schema(format = DateTime)]
    pub(crate) bake_until: Option<String>,
    /// A bake: the production version a breach puts back.
    pub(crate) replaced: Option<i64>,
    /// A bake: the share of the version's training rows labelled anomalous.
    pub(crate) training_anomaly_rate: Option<f64>,
    #[schema(value_type = Option<Object>)]
    pub(crate) comparison: Option<Value>,
}

/// What a rollout is: `canary`, `shadow`, or `bake` (the watch after a promotion).
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub(crate) enum RolloutKind {
    Canary,
    Shadow,
    Bake,
}

/// An ended rollout.
#[derive(ToSchema)]
pub(crate) struct CanaryEnded {
    pub(crate) model_name: String,
    pub(crate) ended: bool,
    #[schema(value_type = Object)]
    pub(crate) canary: Value,
}

/// `canary` (the candidate answers a share of predicts) or `shadow` (it scores them too,
/// its answers discarded).
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub(crate) enum RolloutMode {
    Canary,
    Shadow,
}

/// When a rollout ends itself (rolls back). Each member may be left out (its default);
/// none may be `null`, and no other member is accepted (as the server reads it).
#[derive(ToSchema, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[schema(default)]
pub(crate) struct Guards {
    /// Rows each side must have scored in the window before the rate guards judge.
    #[schema(minimum = 0, default = 200, nullable = false)]
    pub(crate) min_rows: Option<u64>,
    /// The sliding window the rate guards judge, in seconds.
    #[schema(minimum = 10, maximum = 86400, default = 300, nullable = false)]
    pub(crate) window_seconds: Option<u64>,
    #[schema(minimum = 1, maximum = 1000000, default = 2.0, nullable = false)]
    pub(crate) max_anomaly_rate_ratio: Option<f64>,
    #[schema(minimum = 0, maximum = 1, default = 0.2, nullable = false)]
    pub(crate) max_anomaly_rate: Option<f64>,
    #[schema(minimum = 0, maximum = 1, default = 0.05, nullable = false)]
    pub(crate) max_error_rate: Option<f64>,
    #[schema(minimum = 1, maximum = 1000000, default = 5.0, nullable = false)]
    pub(crate) max_latency_ratio: Option<f64>,
    /// End the rollout when the candidate's drift verdict is `drift`.
    #[schema(default = false, nullable = false)]
    pub(crate) drift: Option<bool>,
}

impl Default for Guards {
    fn default() -> Self {
        Guards {
            min_rows: Some(200),
            window_seconds: Some(300),
            max_anomaly_rate_ratio: Some(2.0),
            max_anomaly_rate: Some(0.2),
            max_error_rate: Some(0.05),
            max_latency_ratio: Some(5.0),
            drift: Some(false),
        }
    }
}

/// Drift of a model version.
#[derive(ToSchema)]
pub(crate) struct DriftReport {
    pub(crate) model_name: String,
    pub(crate) model_version: i64,
    pub(crate) algorithm: Option<String>,
    /// As trained.
    #[schema(value_type = Option<Contamination>)]
    pub(crate) contamination: Option<Value>,
    pub(crate) monitoring: Monitoring,
    /// Why there is no report (monitoring other than active).
    pub(crate) message: Option<String>,
    /// The worst feature verdict; `insufficient_data` below min_samples rows.
    pub(crate) verdict: Option<DriftVerdict>,
    #[schema(value_type = Option<Object>)]
    pub(crate) window: Option<Value>,
    pub(crate) reference_n_samples: Option<u64>,
    pub(crate) anomaly_rate: Option<f64>,
    pub(crate) training_anomaly_rate: Option<f64>,
    pub(crate) anomaly_rate_verdict: Option<String>,
    /// Share of window cells finite and inside the training range, in [0, 1].
    pub(crate) data_quality: Option<f64>,
    #[schema(value_type = Option<Vec<Object>>)]
    pub(crate) features: Option<Vec<Value>>,
    #[schema(value_type = Option<Object>)]
    pub(crate) thresholds: Option<Value>,
}

/// Whether drift is monitored for the version.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub(crate) enum Monitoring {
    Active,
    NoReference,
    Disabled,
}

/// A drift verdict.
#[derive(ToSchema)]
#[schema(rename_all = "snake_case")]
pub(crate) enum DriftVerdict {
    InsufficientData,
    Stable,
    ModerateDrift,
    Drift,
}
