//! The scale-out metadata store: Postgres, shared by every API instance and worker.
//!
//! Same behaviour as [`SqliteStore`](crate::SqliteStore) (one test suite runs against
//! both), in Postgres's own types (`TIMESTAMPTZ`, `JSONB`, `TEXT[]`). What differs is how
//! atomicity is had when several processes write at once:
//! - version numbering takes a transaction-scoped advisory lock on (tenant, name), so two
//!   instances training one name at once get versions `n` and `n + 1`, never a conflict;
//! - claiming the next job uses `FOR UPDATE SKIP LOCKED`, so claimers never wait on each
//!   other;
//! - `Idempotency-Key` deduplication rests on a unique index and `ON CONFLICT DO NOTHING`,
//!   so two instances receiving one retried submission create one job.
//!
//! Migrations (`migrations/postgres/`, embedded at compile time) run at start-up under a
//! session advisory lock ([`PostgresStore::migrate`]), so instances starting together apply
//! them once; `pynomaly migrate` runs the same function ahead of a deployment.

use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::{Connection, FromRow, Row};

use crate::StoreError;
use crate::metadata::MetadataStore;
use crate::types::{
    ApiKey, AuditEntry, AuditFilter, CancelOutcome, Job, JobKind, JobStatus, ModelSummary,
    ModelVersion, NewApiKey, NewAuditEntry, NewJob, NewModelVersion, NewUser, Page, Scope, User,
};

/// Key of the session advisory lock that serializes migrations across instances
/// (`pg_advisory_lock` takes a bigint: "pynomaly" in ASCII).
const MIGRATION_LOCK: i64 = 0x7079_6e6f_6d61_6c79;

/// Metadata in Postgres (chosen by `DATABASE_URL`).
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Connects (a pool of at most `max_connections`) and applies pending migrations.
    ///
    /// # Errors
    /// The URL is invalid, the database cannot be reached, or a migration fails.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        let store = Self::connect_without_migrating(url, max_connections).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// Connects without touching the schema (for `pynomaly migrate`, and for processes
    /// that must not migrate).
    ///
    /// # Errors
    /// The URL is invalid or the database cannot be reached.
    pub async fn connect_without_migrating(
        url: &str,
        max_connections: u32,
    ) -> Result<Self, StoreError> {
        let options: PgConnectOptions = url.parse()?;
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await?;
        Ok(Self { pool })
    }

    /// Applies the pending migrations under a session advisory lock, so that instances
    /// starting together wait for each other and each migration runs once. Returns how
    /// many were applied.
    ///
    /// # Errors
    /// A migration fails, or the lock or database cannot be reached.
    pub async fn migrate(&self) -> Result<usize, StoreError> {
        let migrator = sqlx::migrate!("../../migrations/postgres");
        let mut conn = self.pool.acquire().await?;
        sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(MIGRATION_LOCK)
            .execute(&mut *conn)
            .await?;
        // On a first run the migrations table does not exist yet: nothing applied.
        let applied_before: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations WHERE success")
                .fetch_one(&mut *conn)
                .await
                .unwrap_or_default();
        let ran = migrator.run(&mut *conn).await;
        let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(MIGRATION_LOCK)
            .execute(&mut *conn)
            .await;
        ran?;
        if unlocked.is_err() {
            // A session lock dies with its connection: do not return this one to the pool.
            let _ = conn.detach().close().await;
        }
        let total = migrator.iter().count();
        Ok(total.saturating_sub(usize::try_from(applied_before).unwrap_or(0)))
    }

    /// The pool (tests and tools).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

fn corrupt(column: &'static str, v: &str) -> StoreError {
    StoreError::Corrupt {
        column,
        reason: format!("unknown value '{v}'"),
    }
}

#[derive(FromRow)]
struct ApiKeyRow {
    id: String,
    tenant: String,
    name: String,
    scopes: Vec<String>,
    rate_limit_per_minute: Option<i64>,
    created_at: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
    revoked_at: Option<DateTime<Utc>>,
}

impl From<ApiKeyRow> for ApiKey {
    fn from(r: ApiKeyRow) -> Self {
        ApiKey {
            scopes: r.scopes.iter().filter_map(|s| Scope::parse(s)).collect(),
            id: r.id,
            tenant: r.tenant,
            name: r.name,
            rate_limit_per_minute: r.rate_limit_per_minute,
            created_at: r.created_at,
            expires_at: r.expires_at,
            revoked_at: r.revoked_at,
        }
    }
}

#[derive(FromRow)]
struct UserRow {
    id: String,
    tenant: String,
    username: String,
    password_hash: String,
    scopes: Vec<String>,
    created_at: DateTime<Utc>,
    disabled_at: Option<DateTime<Utc>>,
}

impl From<UserRow> for User {
    fn from(r: UserRow) -> Self {
        User {
            scopes: r.scopes.iter().filter_map(|s| Scope::parse(s)).collect(),
            id: r.id,
            tenant: r.tenant,
            username: r.username,
            password_hash: r.password_hash,
            created_at: r.created_at,
            disabled_at: r.disabled_at,
        }
    }
}

#[derive(FromRow)]
struct AuditRow {
    id: i64,
    tenant: String,
    actor: String,
    action: String,
    resource: String,
    outcome: i64,
    request_id: String,
    client_addr: Option<String>,
    created_at: DateTime<Utc>,
}

impl From<AuditRow> for AuditEntry {
    fn from(r: AuditRow) -> Self {
        AuditEntry {
            id: r.id,
            tenant: r.tenant,
            actor: r.actor,
            action: r.action,
            resource: r.resource,
            outcome: r.outcome,
            request_id: r.request_id,
            client_addr: r.client_addr,
            created_at: r.created_at,
        }
    }
}

/// Rows appended per statement (Postgres allows 65,535 bound values; 8 per row).
const AUDIT_ROWS_PER_STATEMENT: usize = 1024;

#[derive(FromRow)]
struct ModelRow {
    tenant: String,
    model_name: String,
    version: i64,
    algorithm: String,
    parameters: Value,
    contamination: Value,
    threshold: f64,
    n_features: i64,
    n_samples: i64,
    feature_names: Option<Value>,
    stage: String,
    artifact_path: String,
    artifact_bytes: i64,
    created_at: DateTime<Utc>,
    training_time_ms: f64,
}

impl TryFrom<ModelRow> for ModelVersion {
    type Error = StoreError;
    fn try_from(r: ModelRow) -> Result<Self, StoreError> {
        let feature_names = r
            .feature_names
            .map(serde_json::from_value)
            .transpose()
            .map_err(|e| StoreError::Corrupt {
                column: "model_versions.feature_names",
                reason: e.to_string(),
            })?;
        Ok(ModelVersion {
            feature_names,
            tenant: r.tenant,
            model_name: r.model_name,
            version: r.version,
            algorithm: r.algorithm,
            parameters: r.parameters,
            contamination: r.contamination,
            threshold: r.threshold,
            n_features: r.n_features,
            n_samples: r.n_samples,
            stage: r.stage,
            artifact_path: r.artifact_path,
            artifact_bytes: r.artifact_bytes,
            created_at: r.created_at,
            training_time_ms: r.training_time_ms,
        })
    }
}

#[derive(FromRow)]
struct JobRow {
    id: String,
    tenant: String,
    kind: String,
    status: String,
    spec: Value,
    progress: Value,
    result: Option<Value>,
    error: Option<String>,
    idempotency_key: Option<String>,
    cancel_requested: bool,
    attempts: i64,
    created_at: DateTime<Utc>,
    started_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
}

impl TryFrom<JobRow> for Job {
    type Error = StoreError;
    fn try_from(r: JobRow) -> Result<Self, StoreError> {
        Ok(Job {
            kind: JobKind::parse(&r.kind).ok_or_else(|| corrupt("jobs.kind", &r.kind))?,
            status: JobStatus::parse(&r.status).ok_or_else(|| corrupt("jobs.status", &r.status))?,
            id: r.id,
            tenant: r.tenant,
            spec: r.spec,
            progress: r.progress,
            result: r.result,
            error: r.error,
            idempotency_key: r.idempotency_key,
            cancel_requested: r.cancel_requested,
            attempts: r.attempts,
            created_at: r.created_at,
            started_at: r.started_at,
            finished_at: r.finished_at,
        })
    }
}

/// Postgres keeps microseconds; rounding here makes a value read back equal the one
/// written (as SQLite's fixed-width text does).
fn now() -> DateTime<Utc> {
    micros(Utc::now())
}

fn micros(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap_or(t)
}

const KEY_COLUMNS: &str =
    "id, tenant, name, scopes, rate_limit_per_minute, created_at, expires_at, revoked_at";

#[async_trait]
impl MetadataStore for PostgresStore {
    async fn ping(&self) -> Result<Duration, StoreError> {
        let start = Instant::now();
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(start.elapsed())
    }

    async fn create_api_key(&self, key: NewApiKey) -> Result<ApiKey, StoreError> {
        let id = uuid::Uuid::now_v7().to_string();
        let scopes: Vec<String> = key.scopes.iter().map(|s| s.as_str().to_string()).collect();
        let row: ApiKeyRow = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "INSERT INTO api_keys (id, tenant, name, key_hash, scopes, rate_limit_per_minute, \
             created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             RETURNING {KEY_COLUMNS}"
        )))
        .bind(&id)
        .bind(&key.tenant)
        .bind(&key.name)
        .bind(&key.key_hash)
        .bind(&scopes)
        .bind(key.rate_limit_per_minute)
        .bind(now())
        .bind(key.expires_at.map(micros))
        .fetch_one(&self.pool)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::Conflict("an API key with this hash exists".into())
            } else {
                e.into()
            }
        })?;
        Ok(row.into())
    }

    async fn find_api_key_by_hash(&self, key_hash: &str) -> Result<Option<ApiKey>, StoreError> {
        let row: Option<ApiKeyRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE key_hash = $1"
        )))
        .bind(key_hash)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(Into::into))
    }

    async fn list_api_keys(&self, tenant: &str) -> Result<Vec<ApiKey>, StoreError> {
        let rows: Vec<ApiKeyRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE tenant = $1 ORDER BY created_at DESC, id DESC"
        )))
        .bind(tenant)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn revoke_api_key(&self, tenant: &str, id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $3) WHERE tenant = $1 AND id = $2",
        )
        .bind(tenant)
        .bind(id)
        .bind(now())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn count_api_keys(&self) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar("SELECT COUNT(*) FROM api_keys")
            .fetch_one(&self.pool)
            .await?)
    }

    async fn create_user(&self, user: NewUser) -> Result<User, StoreError> {
        let id = uuid::Uuid::now_v7().to_string();
        let scopes: Vec<String> = user.scopes.iter().map(|s| s.as_str().to_string()).collect();
        let row: UserRow = sqlx::query_as(
            "INSERT INTO users (id, tenant, username, password_hash, scopes, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING *",
        )
        .bind(&id)
        .bind(&user.tenant)
        .bind(&user.username)
        .bind(&user.password_hash)
        .bind(&scopes)
        .bind(now())
        .fetch_one(&self.pool)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::Conflict(format!("the username '{}' is taken", user.username))
            } else {
                e.into()
            }
        })?;
        Ok(row.into())
    }

    async fn find_user_by_username(&self, username: &str) -> Result<Option<User>, StoreError> {
        let row: Option<UserRow> = sqlx::query_as("SELECT * FROM users WHERE username = $1")
            .bind(username)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(Into::into))
    }

    async fn user_by_id(&self, id: &str) -> Result<Option<User>, StoreError> {
        let row: Option<UserRow> = sqlx::query_as("SELECT * FROM users WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(Into::into))
    }

    async fn list_users(&self, tenant: &str) -> Result<Vec<User>, StoreError> {
        let rows: Vec<UserRow> = sqlx::query_as(
            "SELECT * FROM users WHERE tenant = $1 ORDER BY created_at DESC, id DESC",
        )
        .bind(tenant)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn disable_user(&self, tenant: &str, id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE users SET disabled_at = COALESCE(disabled_at, $3) WHERE tenant = $1 AND id = $2",
        )
        .bind(tenant)
        .bind(id)
        .bind(now())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn append_audit(&self, entries: &[NewAuditEntry]) -> Result<(), StoreError> {
        for chunk in entries.chunks(AUDIT_ROWS_PER_STATEMENT) {
            let mut q = sqlx::QueryBuilder::<sqlx::Postgres>::new(
                "INSERT INTO audit_log (tenant, actor, action, resource, outcome, request_id, \
                 client_addr, created_at) ",
            );
            q.push_values(chunk, |mut b, e| {
                b.push_bind(e.tenant.clone())
                    .push_bind(e.actor.clone())
                    .push_bind(e.action.clone())
                    .push_bind(e.resource.clone())
                    .push_bind(e.outcome)
                    .push_bind(e.request_id.clone())
                    .push_bind(e.client_addr.clone())
                    .push_bind(micros(e.created_at));
            });
            q.build().execute(&self.pool).await?;
        }
        Ok(())
    }

    async fn list_audit(
        &self,
        tenant: &str,
        filter: &AuditFilter,
        page: Page,
    ) -> Result<(Vec<AuditEntry>, i64), StoreError> {
        // One fixed statement; absent filters are bound as NULL and match everything.
        const WHERE: &str = "WHERE tenant = $1 AND ($2::TEXT IS NULL OR actor = $2) \
             AND ($3::TEXT IS NULL OR action = $3) AND ($4::BIGINT IS NULL OR outcome = $4) \
             AND ($5::TIMESTAMPTZ IS NULL OR created_at >= $5) \
             AND ($6::TIMESTAMPTZ IS NULL OR created_at < $6)";
        let rows: Vec<AuditRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT * FROM audit_log {WHERE} ORDER BY created_at DESC, id DESC LIMIT $7 OFFSET $8"
        )))
        .bind(tenant)
        .bind(&filter.actor)
        .bind(&filter.action)
        .bind(filter.outcome)
        .bind(filter.since)
        .bind(filter.until)
        .bind(i64::from(page.limit))
        .bind(i64::from(page.offset))
        .fetch_all(&self.pool)
        .await?;
        let total: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT COUNT(*) FROM audit_log {WHERE}"
        )))
        .bind(tenant)
        .bind(&filter.actor)
        .bind(&filter.action)
        .bind(filter.outcome)
        .bind(filter.since)
        .bind(filter.until)
        .fetch_one(&self.pool)
        .await?;
        Ok((rows.into_iter().map(Into::into).collect(), total))
    }

    async fn create_model_version(&self, v: NewModelVersion) -> Result<ModelVersion, StoreError> {
        let feature_names = v.feature_names.as_ref().map(|f| Value::from(f.clone()));
        let mut tx = self.pool.begin().await?;
        // Numbering reads MAX(version): serialize the writers of one (tenant, name) so two
        // concurrent trainings get consecutive versions instead of a key conflict.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1 || '/' || $2, 0))")
            .bind(&v.tenant)
            .bind(&v.model_name)
            .execute(&mut *tx)
            .await?;
        if let Some(job_id) = &v.job_id {
            let existing: Option<ModelRow> =
                sqlx::query_as("SELECT * FROM model_versions WHERE tenant = $1 AND job_id = $2")
                    .bind(&v.tenant)
                    .bind(job_id)
                    .fetch_optional(&mut *tx)
                    .await?;
            if let Some(row) = existing {
                tx.commit().await?;
                return row.try_into();
            }
        }
        let row: ModelRow = sqlx::query_as(
            "INSERT INTO model_versions (tenant, model_name, version, algorithm, parameters, \
             contamination, threshold, n_features, n_samples, feature_names, stage, \
             artifact_path, artifact_bytes, created_at, training_time_ms, job_id) \
             SELECT $1, $2, COALESCE(MAX(version), 0) + 1, $3, $4, $5, $6, $7, $8, $9, \
             CASE WHEN COUNT(*) = 0 THEN 'production' ELSE 'staging' END, $10, $11, $12, $13, $14 \
             FROM model_versions WHERE tenant = $1 AND model_name = $2 \
             RETURNING *",
        )
        .bind(&v.tenant)
        .bind(&v.model_name)
        .bind(&v.algorithm)
        .bind(&v.parameters)
        .bind(&v.contamination)
        .bind(v.threshold)
        .bind(v.n_features)
        .bind(v.n_samples)
        .bind(feature_names)
        .bind(&v.artifact_path)
        .bind(v.artifact_bytes)
        .bind(now())
        .bind(v.training_time_ms)
        .bind(&v.job_id)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        row.try_into()
    }

    async fn list_models(
        &self,
        tenant: &str,
        page: Page,
    ) -> Result<(Vec<ModelSummary>, i64), StoreError> {
        let rows = sqlx::query(
            "SELECT model_name, \
               (SELECT algorithm FROM model_versions l WHERE l.tenant = m.tenant \
                  AND l.model_name = m.model_name ORDER BY version DESC LIMIT 1) AS algorithm, \
               MAX(version) AS latest_version, \
               MIN(CASE WHEN stage = 'production' THEN version END) AS production_version, \
               COUNT(*) AS version_count, MIN(created_at) AS created_at, \
               MAX(created_at) AS updated_at \
             FROM model_versions m WHERE tenant = $1 GROUP BY tenant, model_name \
             ORDER BY model_name LIMIT $2 OFFSET $3",
        )
        .bind(tenant)
        .bind(i64::from(page.limit))
        .bind(i64::from(page.offset))
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            out.push(ModelSummary {
                model_name: r.try_get("model_name")?,
                algorithm: r.try_get("algorithm")?,
                latest_version: r.try_get("latest_version")?,
                production_version: r.try_get("production_version")?,
                version_count: r.try_get("version_count")?,
                created_at: r.try_get("created_at")?,
                updated_at: r.try_get("updated_at")?,
            });
        }
        let total: i64 = sqlx::query_scalar(
            "SELECT COUNT(DISTINCT model_name) FROM model_versions WHERE tenant = $1",
        )
        .bind(tenant)
        .fetch_one(&self.pool)
        .await?;
        Ok((out, total))
    }

    async fn model_versions(
        &self,
        tenant: &str,
        name: &str,
    ) -> Result<Vec<ModelVersion>, StoreError> {
        let rows: Vec<ModelRow> = sqlx::query_as(
            "SELECT * FROM model_versions WHERE tenant = $1 AND model_name = $2 ORDER BY version",
        )
        .bind(tenant)
        .bind(name)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    async fn model_version(
        &self,
        tenant: &str,
        name: &str,
        version: i64,
    ) -> Result<Option<ModelVersion>, StoreError> {
        let row: Option<ModelRow> = sqlx::query_as(
            "SELECT * FROM model_versions WHERE tenant = $1 AND model_name = $2 AND version = $3",
        )
        .bind(tenant)
        .bind(name)
        .bind(version)
        .fetch_optional(&self.pool)
        .await?;
        row.map(TryInto::try_into).transpose()
    }

    async fn production_version(
        &self,
        tenant: &str,
        name: &str,
    ) -> Result<Option<ModelVersion>, StoreError> {
        let row: Option<ModelRow> = sqlx::query_as(
            "SELECT * FROM model_versions WHERE tenant = $1 AND model_name = $2 \
             ORDER BY (stage = 'production') DESC, version DESC LIMIT 1",
        )
        .bind(tenant)
        .bind(name)
        .fetch_optional(&self.pool)
        .await?;
        row.map(TryInto::try_into).transpose()
    }

    async fn delete_model(
        &self,
        tenant: &str,
        name: &str,
    ) -> Result<Vec<ModelVersion>, StoreError> {
        let rows: Vec<ModelRow> = sqlx::query_as(
            "DELETE FROM model_versions WHERE tenant = $1 AND model_name = $2 RETURNING *",
        )
        .bind(tenant)
        .bind(name)
        .fetch_all(&self.pool)
        .await?;
        let mut versions: Vec<ModelVersion> = rows
            .into_iter()
            .map(TryInto::try_into)
            .collect::<Result<_, _>>()?;
        versions.sort_by_key(|v| v.version);
        Ok(versions)
    }

    async fn create_job(&self, job: NewJob) -> Result<(Job, bool), StoreError> {
        let id = uuid::Uuid::now_v7().to_string();
        let created_at = now();
        // The unique index on (tenant, idempotency_key) decides between concurrent
        // submissions on different instances: one inserts, the others read its job.
        let inserted: Option<JobRow> = sqlx::query_as(
            "INSERT INTO jobs (id, tenant, kind, status, spec, progress, idempotency_key, \
             created_at, available_at) VALUES ($1, $2, $3, 'queued', $4, $5, $6, $7, $7) \
             ON CONFLICT (tenant, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING \
             RETURNING *",
        )
        .bind(&id)
        .bind(&job.tenant)
        .bind(job.kind.as_str())
        .bind(&job.spec)
        .bind(&job.progress)
        .bind(&job.idempotency_key)
        .bind(created_at)
        .fetch_optional(&self.pool)
        .await?;
        if let Some(row) = inserted {
            return Ok((row.try_into()?, true));
        }
        let key = job.idempotency_key.as_deref().unwrap_or_default();
        let existing: Option<JobRow> =
            sqlx::query_as("SELECT * FROM jobs WHERE tenant = $1 AND idempotency_key = $2")
                .bind(&job.tenant)
                .bind(key)
                .fetch_optional(&self.pool)
                .await?;
        match existing {
            Some(row) => Ok((row.try_into()?, false)),
            None => Err(StoreError::Conflict("idempotency key".into())),
        }
    }

    async fn job(&self, tenant: &str, id: &str) -> Result<Option<Job>, StoreError> {
        let row: Option<JobRow> =
            sqlx::query_as("SELECT * FROM jobs WHERE tenant = $1 AND id = $2")
                .bind(tenant)
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
        row.map(TryInto::try_into).transpose()
    }

    async fn job_by_id(&self, id: &str) -> Result<Option<Job>, StoreError> {
        let row: Option<JobRow> = sqlx::query_as("SELECT * FROM jobs WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(TryInto::try_into).transpose()
    }

    async fn list_jobs(&self, tenant: &str, page: Page) -> Result<(Vec<Job>, i64), StoreError> {
        let rows: Vec<JobRow> = sqlx::query_as(
            "SELECT * FROM jobs WHERE tenant = $1 ORDER BY created_at DESC, id DESC \
             LIMIT $2 OFFSET $3",
        )
        .bind(tenant)
        .bind(i64::from(page.limit))
        .bind(i64::from(page.offset))
        .fetch_all(&self.pool)
        .await?;
        let total: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM jobs WHERE tenant = $1")
            .bind(tenant)
            .fetch_one(&self.pool)
            .await?;
        let jobs = rows
            .into_iter()
            .map(TryInto::try_into)
            .collect::<Result<_, _>>()?;
        Ok((jobs, total))
    }

    async fn claim_next_job(&self, worker_id: &str) -> Result<Option<Job>, StoreError> {
        let row: Option<JobRow> = sqlx::query_as(
            "UPDATE jobs SET status = 'running', started_at = COALESCE(started_at, $1), \
             attempts = attempts + 1, worker_id = $2 \
             WHERE id = (SELECT id FROM jobs WHERE status = 'queued' \
                         ORDER BY created_at, id LIMIT 1 FOR UPDATE SKIP LOCKED) \
               AND status = 'queued' \
             RETURNING *",
        )
        .bind(now())
        .bind(worker_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(TryInto::try_into).transpose()
    }

    async fn update_job_progress(&self, id: &str, progress: &Value) -> Result<(), StoreError> {
        sqlx::query("UPDATE jobs SET progress = $2 WHERE id = $1 AND status = 'running'")
            .bind(id)
            .bind(progress)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn finish_job(
        &self,
        id: &str,
        status: JobStatus,
        result: Option<&Value>,
        error: Option<&str>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE jobs SET status = $2, result = $3, error = $4, finished_at = $5, \
             worker_id = NULL WHERE id = $1 AND status = 'running'",
        )
        .bind(id)
        .bind(status.as_str())
        .bind(result)
        .bind(error)
        .bind(now())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn release_job(&self, id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE jobs SET status = CASE WHEN cancel_requested THEN 'cancelled' ELSE 'queued' END, \
             finished_at = CASE WHEN cancel_requested THEN $2 END, worker_id = NULL \
             WHERE id = $1 AND status = 'running'",
        )
        .bind(id)
        .bind(now())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn request_job_cancel(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<CancelOutcome, StoreError> {
        let cancelled: Option<JobRow> = sqlx::query_as(
            "UPDATE jobs SET status = 'cancelled', cancel_requested = TRUE, finished_at = $3 \
             WHERE tenant = $1 AND id = $2 AND status = 'queued' RETURNING *",
        )
        .bind(tenant)
        .bind(id)
        .bind(now())
        .fetch_optional(&self.pool)
        .await?;
        if let Some(row) = cancelled {
            return Ok(CancelOutcome::Cancelled(row.try_into()?));
        }
        let requested: Option<JobRow> = sqlx::query_as(
            "UPDATE jobs SET cancel_requested = TRUE \
             WHERE tenant = $1 AND id = $2 AND status = 'running' RETURNING *",
        )
        .bind(tenant)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        if let Some(row) = requested {
            return Ok(CancelOutcome::Requested(row.try_into()?));
        }
        Ok(match self.job(tenant, id).await? {
            Some(job) => CancelOutcome::AlreadyFinished(job),
            None => CancelOutcome::NotFound,
        })
    }

    async fn requeue_interrupted_jobs(&self) -> Result<u64, StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE jobs SET status = 'cancelled', finished_at = $1, worker_id = NULL \
             WHERE status = 'running' AND cancel_requested",
        )
        .bind(now())
        .execute(&mut *tx)
        .await?;
        let done = sqlx::query(
            "UPDATE jobs SET status = 'queued', worker_id = NULL WHERE status = 'running'",
        )
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }

    async fn job_counts(&self) -> Result<(i64, i64), StoreError> {
        let row = sqlx::query(
            "SELECT COUNT(*) FILTER (WHERE status = 'queued') AS queued, \
             COUNT(*) FILTER (WHERE status = 'running') AS running FROM jobs \
             WHERE status IN ('queued', 'running')",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok((row.try_get("queued")?, row.try_get("running")?))
    }

    async fn claim_job(
        &self,
        id: &str,
        worker_id: &str,
        take_over: bool,
    ) -> Result<Option<Job>, StoreError> {
        let row: Option<JobRow> = sqlx::query_as(
            "UPDATE jobs SET status = 'running', started_at = COALESCE(started_at, $3), \
             attempts = attempts + 1, worker_id = $2 \
             WHERE id = $1 AND (status = 'queued' \
               OR ($4 AND status = 'running' AND worker_id IS DISTINCT FROM $2)) \
             RETURNING *",
        )
        .bind(id)
        .bind(worker_id)
        .bind(now())
        .bind(take_over)
        .fetch_optional(&self.pool)
        .await?;
        row.map(TryInto::try_into).transpose()
    }

    async fn finish_claimed_job(
        &self,
        id: &str,
        worker_id: &str,
        status: JobStatus,
        result: Option<&Value>,
        error: Option<&str>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE jobs SET status = $3, result = $4, error = $5, finished_at = $6, \
             worker_id = NULL WHERE id = $1 AND status = 'running' AND worker_id = $2",
        )
        .bind(id)
        .bind(worker_id)
        .bind(status.as_str())
        .bind(result)
        .bind(error)
        .bind(now())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn release_claimed_job(
        &self,
        id: &str,
        worker_id: &str,
        error: Option<&str>,
        available_at: DateTime<Utc>,
    ) -> Result<Option<Job>, StoreError> {
        let row: Option<JobRow> = sqlx::query_as(
            "UPDATE jobs SET \
               status = CASE WHEN cancel_requested THEN 'cancelled' ELSE 'queued' END, \
               finished_at = CASE WHEN cancel_requested THEN $3 END, \
               error = COALESCE($4, error), available_at = $5, worker_id = NULL \
             WHERE id = $1 AND status = 'running' AND worker_id = $2 RETURNING *",
        )
        .bind(id)
        .bind(worker_id)
        .bind(now())
        .bind(error)
        .bind(micros(available_at))
        .fetch_optional(&self.pool)
        .await?;
        row.map(TryInto::try_into).transpose()
    }

    async fn queued_job_ids(
        &self,
        before: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM jobs WHERE status = 'queued' AND available_at < $1 \
             ORDER BY created_at, id LIMIT $2",
        )
        .bind(before)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?)
    }

    async fn running_jobs(&self, limit: i64) -> Result<Vec<(String, Option<String>)>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, worker_id FROM jobs WHERE status = 'running' ORDER BY created_at, id LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("id")?, r.try_get("worker_id")?)))
            .collect()
    }

    async fn close(&self) {
        self.pool.close().await;
    }

    fn pool_stats(&self) -> Option<crate::PoolStats> {
        let idle = u32::try_from(self.pool.num_idle()).unwrap_or(u32::MAX);
        Some(crate::PoolStats {
            open: self.pool.size(),
            idle,
            max: self.pool.options().get_max_connections(),
        })
    }
}
