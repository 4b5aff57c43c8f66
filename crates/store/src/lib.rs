//! # pynomaly-store: where the service keeps what it knows
//!
//! Two stores, each a trait with an embedded implementation and room for a production one:
//!
//! - [`MetadataStore`]: API keys, users, the audit log, model versions and jobs, one trait
//!   per aggregate ([`KeyStore`], [`UserStore`], [`AuditStore`], [`ModelStore`],
//!   [`JobStore`], [`JobDeliveryStore`]) combined. [`SqliteStore`] keeps them in a SQLite
//!   file in the data directory, with the migrations of `migrations/sqlite/` (at the
//!   repository root) embedded at compile time and applied at start-up. [`PostgresStore`]
//!   (`DATABASE_URL`, `migrations/postgres/`) satisfies the same traits for several API
//!   instances and workers; one test suite (`tests/metadata/`) runs against both. No SQL
//!   lives outside this crate.
//! - [`ArtifactStore`]: serialized models and job outputs, over the `object_store` crate, so
//!   moving from local files to S3 changes a URL, not the code.
//!
//! Invariants every implementation keeps:
//! - every row carries a `tenant` ([`DEFAULT_TENANT`] until tenants are managed), and every
//!   lookup by name or id is scoped by it, so another tenant's resource is simply absent;
//! - model versions are numbered 1, 2, … per (tenant, name) by the store itself, atomically,
//!   and the first version of a name is the `production` one;
//! - a job moves `queued → running → succeeded | failed | cancelled` and is finished once:
//!   [`JobStore::finish_job`] only moves a `running` job.
//!
//! The SQL is laid out by aggregate: `keys/`, `users/`, `audit/`, `models/` and `jobs/` each
//! hold their trait, their statements and how their rows are read back, written once for
//! both databases; a `sqlite.rs` or `postgres.rs` beside them holds only what differs in
//! that dialect. `sql.rs` holds what they share, and `sqlite.rs` / `postgres.rs` at the top
//! the connections and how each database stores timestamps, JSON and scopes.

mod artifacts;
mod audit;
pub mod crypto;
mod error;
mod jobs;
mod keys;
mod metadata;
mod models;
mod postgres;
mod s3_uploads;
mod sql;
mod sqlite;
mod types;
mod users;

pub use artifacts::{ArtifactStore, ArtifactWriter, S3Options, s3_bucket, s3_bucket_with};
pub use audit::AuditStore;
pub use error::StoreError;
pub use jobs::{JobDeliveryStore, JobStore};
pub use keys::KeyStore;
pub use metadata::{DynMetadataStore, MetadataStore};
pub use models::ModelStore;
pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;
pub use types::{
    ARCHIVED, ApiKey, AuditEntry, AuditFilter, CancelOutcome, DEFAULT_TENANT, Job, JobKind,
    JobStatus, ModelSchedule, ModelSummary, ModelVersion, NewApiKey, NewAuditEntry, NewJob,
    NewModelVersion, NewStage, NewUser, PRODUCTION, Page, PoolStats, STAGING, Scope, StageChange,
    StageEvent, User,
};
pub use users::UserStore;
