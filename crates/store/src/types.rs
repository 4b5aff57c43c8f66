//! The records the stores keep, in the user's words.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The tenant of everything until tenants are managed.
pub const DEFAULT_TENANT: &str = "default";

/// What an API key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Every GET, `detect` and `predict`.
    Read,
    /// Train, batch, delete.
    Write,
    /// Keys, users, audit log. Implies `read` and `write`.
    Admin,
}

impl Scope {
    /// Every scope, in order.
    pub const ALL: [Scope; 3] = [Scope::Read, Scope::Write, Scope::Admin];

    /// The scope's name as the API and the command line spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Read => "read",
            Scope::Write => "write",
            Scope::Admin => "admin",
        }
    }

    /// Parses `read`, `write` or `admin`.
    pub fn parse(s: &str) -> Option<Scope> {
        match s.trim() {
            "read" => Some(Scope::Read),
            "write" => Some(Scope::Write),
            "admin" => Some(Scope::Admin),
            _ => None,
        }
    }
}

/// A stored API key (never the key itself: only its keyed hash is stored).
#[derive(Debug, Clone, PartialEq)]
pub struct ApiKey {
    pub id: String,
    pub tenant: String,
    pub name: String,
    pub scopes: Vec<Scope>,
    pub rate_limit_per_minute: Option<i64>,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl ApiKey {
    /// Whether the key may be used at `now`.
    pub fn is_active(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|e| e > now)
    }
}

/// A key to store.
#[derive(Debug, Clone)]
pub struct NewApiKey {
    pub tenant: String,
    pub name: String,
    /// Keyed hash of the key, hex.
    pub key_hash: String,
    pub scopes: Vec<Scope>,
    pub rate_limit_per_minute: Option<i64>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// One trained version of a named model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelVersion {
    #[serde(skip)]
    pub tenant: String,
    pub model_name: String,
    pub version: i64,
    pub algorithm: String,
    pub parameters: Value,
    pub contamination: Value,
    pub threshold: f64,
    pub n_features: i64,
    pub n_samples: i64,
    pub feature_names: Option<Vec<String>>,
    /// [`STAGING`], [`PRODUCTION`] (at most one version of a name) or [`ARCHIVED`]; a new
    /// version is `production` when it is the first of its name, else `staging` until
    /// promoted.
    pub stage: String,
    /// Every stage the version has been in, oldest first.
    pub stage_history: Vec<StageEvent>,
    /// Figures measured on validation data at training (`validation`), with the
    /// production version's on the same data (`production`), when the training named some.
    pub metrics: Option<Value>,
    /// Where the version comes from: data, parameters, seed, who trained it, from which
    /// version, by which job and pynomaly version.
    pub lineage: Option<Value>,
    #[serde(skip)]
    pub artifact_path: String,
    #[serde(skip)]
    pub artifact_bytes: i64,
    pub created_at: DateTime<Utc>,
    pub training_time_ms: f64,
}

/// The stage of the one version of a model that predictions use by default.
pub const PRODUCTION: &str = "production";
/// The stage of a new version that is not (yet) production.
pub const STAGING: &str = "staging";
/// The stage of a version taken out of use (replaced, rolled back or archived by hand).
pub const ARCHIVED: &str = "archived";

/// One change of a version's stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageEvent {
    /// The stage before (`None` when the version was registered).
    pub from: Option<String>,
    pub to: String,
    pub at: DateTime<Utc>,
    /// Who changed it: `key:<id>`, `user:<name>`, or `pynomaly` for the service's own
    /// decisions (a training's promotion policy, a guard's rollback).
    pub by: String,
    /// Why, in one word: `registered`, `promote`, `training`, `rollback`, `archive`,
    /// `replaced`, `guard`.
    pub reason: String,
    /// The caller's or the service's explanation, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// A model's retraining schedule, as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelSchedule {
    #[serde(skip)]
    pub tenant: String,
    pub model_name: String,
    /// The cron expression and the training job's specification (the jobs crate's).
    pub schedule: Value,
    pub next_run_at: DateTime<Utc>,
    pub last_run_at: Option<DateTime<Utc>>,
    pub last_job_id: Option<String>,
}

/// A stage change to make: the stage, who asks and why (see [`StageEvent`]).
#[derive(Debug, Clone)]
pub struct NewStage {
    pub to: String,
    pub by: String,
    pub reason: String,
    pub note: Option<String>,
}

/// What a stage change did: the version as it is now, and the production version it
/// replaced (archived), if any.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StageChange {
    pub version: ModelVersion,
    pub from: String,
    pub replaced: Option<i64>,
}

/// A model version to register; the store numbers it and sets its stage.
#[derive(Debug, Clone)]
pub struct NewModelVersion {
    pub tenant: String,
    pub model_name: String,
    pub algorithm: String,
    pub parameters: Value,
    pub contamination: Value,
    pub threshold: f64,
    pub n_features: i64,
    pub n_samples: i64,
    pub feature_names: Option<Vec<String>>,
    pub artifact_path: String,
    pub artifact_bytes: i64,
    pub training_time_ms: f64,
    /// The training job registering it, if any: registering again for the same job returns
    /// the version registered the first time (a job re-run after a crash).
    pub job_id: Option<String>,
    /// See [`ModelVersion::metrics`].
    pub metrics: Option<Value>,
    /// See [`ModelVersion::lineage`]; its `trained_by` also names who registered it in the
    /// stage history.
    pub lineage: Option<Value>,
}

/// One named model in a listing.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelSummary {
    pub model_name: String,
    pub algorithm: String,
    pub latest_version: i64,
    pub production_version: Option<i64>,
    pub version_count: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// What a job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobKind {
    /// Score data sources (with a model, or fitting on each source).
    Batch,
    /// Train a model version from a data source.
    Train,
}

impl JobKind {
    /// The kind as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            JobKind::Batch => "batch",
            JobKind::Train => "train",
        }
    }

    pub(crate) fn parse(s: &str) -> Option<Self> {
        match s {
            "batch" => Some(JobKind::Batch),
            "train" => Some(JobKind::Train),
            _ => None,
        }
    }
}

/// Where a job is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobStatus {
    /// The status as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Queued => "queued",
            JobStatus::Running => "running",
            JobStatus::Succeeded => "succeeded",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
        }
    }

    /// Parses a stored status.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "queued" => Some(JobStatus::Queued),
            "running" => Some(JobStatus::Running),
            "succeeded" => Some(JobStatus::Succeeded),
            "failed" => Some(JobStatus::Failed),
            "cancelled" => Some(JobStatus::Cancelled),
            _ => None,
        }
    }

    /// Whether the job has finished (one way or another).
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobStatus::Succeeded | JobStatus::Failed | JobStatus::Cancelled
        )
    }
}

/// A background job and everything the API reports about it.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub id: String,
    pub tenant: String,
    pub kind: JobKind,
    pub status: JobStatus,
    /// What to do: the validated request, as the job runner reads it.
    pub spec: Value,
    pub progress: Value,
    pub result: Option<Value>,
    pub error: Option<String>,
    pub idempotency_key: Option<String>,
    pub cancel_requested: bool,
    pub attempts: i64,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
}

/// A job to enqueue.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub tenant: String,
    pub kind: JobKind,
    pub spec: Value,
    pub progress: Value,
    pub idempotency_key: Option<String>,
}

/// What asking to cancel a job did.
#[derive(Debug, Clone, PartialEq)]
pub enum CancelOutcome {
    /// The job was still queued: it is now `cancelled` and will never run.
    Cancelled(Job),
    /// The job is running: its worker will stop it at the next chunk.
    Requested(Job),
    /// The job had already finished; nothing changed.
    AlreadyFinished(Job),
    /// No such job for this tenant.
    NotFound,
}

/// A page of a listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Page {
    pub limit: u32,
    pub offset: u32,
}

impl Default for Page {
    fn default() -> Self {
        Self {
            limit: 50,
            offset: 0,
        }
    }
}

/// A person who logs in with a password (`POST /api/v1/auth/token`) and calls the API with
/// the JWT it gets. Only the argon2id hash of the password is stored.
#[derive(Clone, PartialEq, derive_more::Debug)]
pub struct User {
    pub id: String,
    pub tenant: String,
    /// Unique across tenants (login names no tenant).
    pub username: String,
    /// argon2id PHC string.
    #[debug(skip)]
    pub password_hash: String,
    pub scopes: Vec<Scope>,
    #[debug(skip)]
    pub created_at: DateTime<Utc>,
    /// Set when an admin disabled the user: its tokens stop working at once.
    pub disabled_at: Option<DateTime<Utc>>,
}

impl User {
    /// Whether the user may log in and use its tokens.
    pub fn is_active(&self) -> bool {
        self.disabled_at.is_none()
    }
}

/// A user to store.
#[derive(Clone, derive_more::Debug)]
pub struct NewUser {
    pub tenant: String,
    pub username: String,
    /// argon2id PHC string.
    #[debug(skip)]
    pub password_hash: String,
    #[debug(skip)]
    pub scopes: Vec<Scope>,
}

/// One row of the audit log: who did what, to which resource, with what outcome.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AuditEntry {
    pub id: i64,
    pub tenant: String,
    /// `key:<id>`, `user:<username>`, or `anonymous`.
    pub actor: String,
    /// `METHOD /route/template`, e.g. `POST /api/v1/models`.
    pub action: String,
    /// The path the request named, e.g. `/api/v1/models/sensors`.
    pub resource: String,
    /// The HTTP status answered.
    pub outcome: i64,
    pub request_id: String,
    pub client_addr: Option<String>,
    pub created_at: DateTime<Utc>,
    /// What changed, for changes a request's outcome does not describe alone (a model
    /// version's stage: `from`, `to`, `reason`, `note`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<Value>,
}

/// An audit row to append.
#[derive(Debug, Clone)]
pub struct NewAuditEntry {
    pub tenant: String,
    pub actor: String,
    pub action: String,
    pub resource: String,
    pub outcome: i64,
    pub request_id: String,
    pub client_addr: Option<String>,
    pub created_at: DateTime<Utc>,
    /// See [`AuditEntry::detail`].
    pub detail: Option<Value>,
}

/// Which audit rows a listing returns (every filter optional, all combined with AND).
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub actor: Option<String>,
    pub action: Option<String>,
    pub outcome: Option<i64>,
    /// Rows at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Rows before this time.
    pub until: Option<DateTime<Utc>>,
}

/// A connection pool's use at one moment (database or Redis), for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStats {
    /// Connections open (idle and in use).
    pub open: u32,
    /// Open connections not in use.
    pub idle: u32,
    /// Most connections the pool opens.
    pub max: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_debug_leaves_the_password_hash_out() {
        let hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA";
        let new = NewUser {
            tenant: "t".into(),
            username: "ann".into(),
            password_hash: hash.into(),
            scopes: vec![Scope::Read],
        };
        assert_eq!(
            format!("{new:?}"),
            r#"NewUser { tenant: "t", username: "ann", .. }"#
        );
        let user = User {
            id: "u1".into(),
            tenant: "t".into(),
            username: "ann".into(),
            password_hash: hash.into(),
            scopes: vec![Scope::Read],
            created_at: Utc::now(),
            disabled_at: None,
        };
        let shown = format!("{user:?}");
        assert_eq!(
            shown,
            r#"User { id: "u1", tenant: "t", username: "ann", scopes: [Read], disabled_at: None, .. }"#
        );
        assert!(!format!("{user:#?}").contains("argon2id"));
    }
}
