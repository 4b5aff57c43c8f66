//! The embedded metadata store: one SQLite file in the data directory.
//!
//! WAL journal so reads never wait for the writer, a busy timeout so concurrent writers
//! queue instead of failing, and every multi-step change written as one statement
//! (`INSERT … SELECT`, `UPDATE … WHERE id = (SELECT …) RETURNING`) so it is atomic without
//! an explicit transaction. Timestamps are stored as RFC 3339 text in UTC with a fixed
//! width, so they sort as text.

use std::path::Path;
use std::str::FromStr;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use sqlx::{FromRow, Row};

use crate::StoreError;
use crate::metadata::MetadataStore;
use crate::types::{
    ApiKey, AuditEntry, AuditFilter, CancelOutcome, Job, JobKind, JobStatus, ModelSummary,
    ModelVersion, NewApiKey, NewAuditEntry, NewJob, NewModelVersion, NewUser, Page, Scope, User,
};

/// Metadata in a SQLite database (the embedded default).
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if needed) `metadata.db` in `data_dir` and applies the migrations.
    ///
    /// # Errors
    /// The directory cannot be created, the database cannot be opened, or a migration fails.
    pub async fn open(data_dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir)?;
        let options = SqliteConnectOptions::new()
            .filename(data_dir.join("metadata.db"))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        Self::connect(options, 8).await
    }

    /// An in-memory database on one connection (for unit tests).
    ///
    /// # Errors
    /// As [`SqliteStore::open`].
    pub async fn in_memory() -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str("sqlite::memory:")?;
        // One connection: each connection to `:memory:` is its own database.
        Self::connect(options, 1).await
    }

    async fn connect(options: SqliteConnectOptions, max: u32) -> Result<Self, StoreError> {
        let pool = SqlitePoolOptions::new()
            .max_connections(max)
            .min_connections(1)
            .connect_with(options)
            .await?;
        sqlx::migrate!("../../migrations/sqlite").run(&pool).await?;
        Ok(Self { pool })
    }

    /// Closes the pool, waiting for connections to be returned.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn now() -> String {
    ts(Utc::now())
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

fn parse_ts(column: &'static str, s: &str) -> Result<DateTime<Utc>, StoreError> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| StoreError::Corrupt {
            column,
            reason: e.to_string(),
        })
}

fn parse_opt_ts(
    column: &'static str,
    s: Option<String>,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    s.map(|s| parse_ts(column, &s)).transpose()
}

fn parse_json(column: &'static str, s: &str) -> Result<Value, StoreError> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt {
        column,
        reason: e.to_string(),
    })
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

#[derive(FromRow)]
struct ApiKeyRow {
    id: String,
    tenant: String,
    name: String,
    scopes: String,
    rate_limit_per_minute: Option<i64>,
    created_at: String,
    expires_at: Option<String>,
    revoked_at: Option<String>,
}

impl TryFrom<ApiKeyRow> for ApiKey {
    type Error = StoreError;
    fn try_from(r: ApiKeyRow) -> Result<Self, StoreError> {
        Ok(ApiKey {
            scopes: r.scopes.split(',').filter_map(Scope::parse).collect(),
            created_at: parse_ts("api_keys.created_at", &r.created_at)?,
            expires_at: parse_opt_ts("api_keys.expires_at", r.expires_at)?,
            revoked_at: parse_opt_ts("api_keys.revoked_at", r.revoked_at)?,
            id: r.id,
            tenant: r.tenant,
            name: r.name,
            rate_limit_per_minute: r.rate_limit_per_minute,
        })
    }
}

#[derive(FromRow)]
struct UserRow {
    id: String,
    tenant: String,
    username: String,
    password_hash: String,
    scopes: String,
    created_at: String,
    disabled_at: Option<String>,
}

impl TryFrom<UserRow> for User {
    type Error = StoreError;
    fn try_from(r: UserRow) -> Result<Self, StoreError> {
        Ok(User {
            scopes: r.scopes.split(',').filter_map(Scope::parse).collect(),
            created_at: parse_ts("users.created_at", &r.created_at)?,
            disabled_at: parse_opt_ts("users.disabled_at", r.disabled_at)?,
            id: r.id,
            tenant: r.tenant,
            username: r.username,
            password_hash: r.password_hash,
        })
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
    created_at: String,
}

impl TryFrom<AuditRow> for AuditEntry {
    type Error = StoreError;
    fn try_from(r: AuditRow) -> Result<Self, StoreError> {
        Ok(AuditEntry {
            created_at: parse_ts("audit_log.created_at", &r.created_at)?,
            id: r.id,
            tenant: r.tenant,
            actor: r.actor,
            action: r.action,
            resource: r.resource,
            outcome: r.outcome,
            request_id: r.request_id,
            client_addr: r.client_addr,
        })
    }
}

/// Rows appended per statement (SQLite allows 32,766 bound values; 8 per row).
const AUDIT_ROWS_PER_STATEMENT: usize = 512;

#[derive(FromRow)]
struct ModelRow {
    tenant: String,
    model_name: String,
    version: i64,
    algorithm: String,
    parameters: String,
    contamination: String,
    threshold: f64,
    n_features: i64,
    n_samples: i64,
    feature_names: Option<String>,
    stage: String,
    artifact_path: String,
    artifact_bytes: i64,
    created_at: String,
    training_time_ms: f64,
}

impl TryFrom<ModelRow> for ModelVersion {
    type Error = StoreError;
    fn try_from(r: ModelRow) -> Result<Self, StoreError> {
        let feature_names = match r.feature_names {
            Some(s) => Some(serde_json::from_str(&s).map_err(|e| StoreError::Corrupt {
                column: "model_versions.feature_names",
                reason: e.to_string(),
            })?),
            None => None,
        };
        Ok(ModelVersion {
            parameters: parse_json("model_versions.parameters", &r.parameters)?,
            contamination: parse_json("model_versions.contamination", &r.contamination)?,
            created_at: parse_ts("model_versions.created_at", &r.created_at)?,
            feature_names,
            tenant: r.tenant,
            model_name: r.model_name,
            version: r.version,
            algorithm: r.algorithm,
            threshold: r.threshold,
            n_features: r.n_features,
            n_samples: r.n_samples,
            stage: r.stage,
            artifact_path: r.artifact_path,
            artifact_bytes: r.artifact_bytes,
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
    spec: String,
    progress: String,
    result: Option<String>,
    error: Option<String>,
    idempotency_key: Option<String>,
    cancel_requested: i64,
    attempts: i64,
    created_at: String,
    started_at: Option<String>,
    finished_at: Option<String>,
}

impl TryFrom<JobRow> for Job {
    type Error = StoreError;
    fn try_from(r: JobRow) -> Result<Self, StoreError> {
        let corrupt = |column, v: &str| StoreError::Corrupt {
            column,
            reason: format!("unknown value '{v}'"),
        };
        Ok(Job {
            kind: JobKind::parse(&r.kind).ok_or_else(|| corrupt("jobs.kind", &r.kind))?,
            status: JobStatus::parse(&r.status).ok_or_else(|| corrupt("jobs.status", &r.status))?,
            spec: parse_json("jobs.spec", &r.spec)?,
            progress: parse_json("jobs.progress", &r.progress)?,
            result: r
                .result
                .as_deref()
                .map(|s| parse_json("jobs.result", s))
                .transpose()?,
            created_at: parse_ts("jobs.created_at", &r.created_at)?,
            started_at: parse_opt_ts("jobs.started_at", r.started_at)?,
            finished_at: parse_opt_ts("jobs.finished_at", r.finished_at)?,
            id: r.id,
            tenant: r.tenant,
            error: r.error,
            idempotency_key: r.idempotency_key,
            cancel_requested: r.cancel_requested != 0,
            attempts: r.attempts,
        })
    }
}

#[async_trait]
impl MetadataStore for SqliteStore {
    async fn ping(&self) -> Result<Duration, StoreError> {
        let start = Instant::now();
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(start.elapsed())
    }

    async fn create_api_key(&self, key: NewApiKey) -> Result<ApiKey, StoreError> {
        let id = uuid::Uuid::now_v7().to_string();
        let scopes: Vec<&str> = key.scopes.iter().map(|s| s.as_str()).collect();
        let row: ApiKeyRow = sqlx::query_as(
            "INSERT INTO api_keys (id, tenant, name, key_hash, scopes, rate_limit_per_minute, \
             created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             RETURNING id, tenant, name, scopes, rate_limit_per_minute, created_at, expires_at, revoked_at",
        )
        .bind(&id)
        .bind(&key.tenant)
        .bind(&key.name)
        .bind(&key.key_hash)
        .bind(scopes.join(","))
        .bind(key.rate_limit_per_minute)
        .bind(now())
        .bind(key.expires_at.map(ts))
        .fetch_one(&self.pool)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::Conflict("an API key with this hash exists".into())
            } else {
                e.into()
            }
        })?;
        row.try_into()
    }

    async fn find_api_key_by_hash(&self, key_hash: &str) -> Result<Option<ApiKey>, StoreError> {
        let row: Option<ApiKeyRow> = sqlx::query_as(
            "SELECT id, tenant, name, scopes, rate_limit_per_minute, created_at, expires_at, revoked_at \
             FROM api_keys WHERE key_hash = $1",
        )
        .bind(key_hash)
        .fetch_optional(&self.pool)
        .await?;
        row.map(TryInto::try_into).transpose()
    }

    async fn list_api_keys(&self, tenant: &str) -> Result<Vec<ApiKey>, StoreError> {
        let rows: Vec<ApiKeyRow> = sqlx::query_as(
            "SELECT id, tenant, name, scopes, rate_limit_per_minute, created_at, expires_at, revoked_at \
             FROM api_keys WHERE tenant = $1 ORDER BY created_at DESC, id DESC",
        )
        .bind(tenant)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(TryInto::try_into).collect()
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
        let row = sqlx::query("SELECT COUNT(*) AS n FROM api_keys")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("n")?)
    }

    async fn create_user(&self, user: NewUser) -> Result<User, StoreError> {
        let id = uuid::Uuid::now_v7().to_string();
        let scopes: Vec<&str> = user.scopes.iter().map(|s| s.as_str()).collect();
        let row: UserRow = sqlx::query_as(
            "INSERT INTO users (id, tenant, username, password_hash, scopes, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING *",
        )
        .bind(&id)
        .bind(&user.tenant)
        .bind(&user.username)
        .bind(&user.password_hash)
        .bind(scopes.join(","))
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
        row.try_into()
    }

    async fn find_user_by_username(&self, username: &str) -> Result<Option<User>, StoreError> {
        let row: Option<UserRow> = sqlx::query_as("SELECT * FROM users WHERE username = $1")
            .bind(username)
            .fetch_optional(&self.pool)
            .await?;
        row.map(TryInto::try_into).transpose()
    }

    async fn user_by_id(&self, id: &str) -> Result<Option<User>, StoreError> {
        let row: Option<UserRow> = sqlx::query_as("SELECT * FROM users WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(TryInto::try_into).transpose()
    }

    async fn list_users(&self, tenant: &str) -> Result<Vec<User>, StoreError> {
        let rows: Vec<UserRow> = sqlx::query_as(
            "SELECT * FROM users WHERE tenant = $1 ORDER BY created_at DESC, id DESC",
        )
        .bind(tenant)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(TryInto::try_into).collect()
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
            let mut q = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
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
                    .push_bind(ts(e.created_at));
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
        const WHERE: &str = "WHERE tenant = $1 AND ($2 IS NULL OR actor = $2) \
             AND ($3 IS NULL OR action = $3) AND ($4 IS NULL OR outcome = $4) \
             AND ($5 IS NULL OR created_at >= $5) AND ($6 IS NULL OR created_at < $6)";
        let rows: Vec<AuditRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT * FROM audit_log {WHERE} ORDER BY created_at DESC, id DESC LIMIT $7 OFFSET $8"
        )))
        .bind(tenant)
        .bind(&filter.actor)
        .bind(&filter.action)
        .bind(filter.outcome)
        .bind(filter.since.map(ts))
        .bind(filter.until.map(ts))
        .bind(i64::from(page.limit))
        .bind(i64::from(page.offset))
        .fetch_all(&self.pool)
        .await?;
        let total: i64 = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT COUNT(*) AS n FROM audit_log {WHERE}"
        )))
        .bind(tenant)
        .bind(&filter.actor)
        .bind(&filter.action)
        .bind(filter.outcome)
        .bind(filter.since.map(ts))
        .bind(filter.until.map(ts))
        .fetch_one(&self.pool)
        .await?
        .try_get("n")?;
        let entries = rows
            .into_iter()
            .map(TryInto::try_into)
            .collect::<Result<_, _>>()?;
        Ok((entries, total))
    }

    async fn create_model_version(&self, v: NewModelVersion) -> Result<ModelVersion, StoreError> {
        if let Some(job_id) = &v.job_id
            && let Some(existing) = self.version_of_job(&v.tenant, job_id).await?
        {
            return Ok(existing);
        }
        let feature_names = v
            .feature_names
            .as_ref()
            .map(|f| serde_json::Value::from(f.clone()).to_string());
        // One statement: numbering and staging are atomic against concurrent trainings.
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
        .bind(v.parameters.to_string())
        .bind(v.contamination.to_string())
        .bind(v.threshold)
        .bind(v.n_features)
        .bind(v.n_samples)
        .bind(feature_names)
        .bind(&v.artifact_path)
        .bind(v.artifact_bytes)
        .bind(now())
        .bind(v.training_time_ms)
        .bind(&v.job_id)
        .fetch_one(&self.pool)
        .await?;
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
             FROM model_versions m WHERE tenant = $1 GROUP BY model_name \
             ORDER BY model_name LIMIT $2 OFFSET $3",
        )
        .bind(tenant)
        .bind(i64::from(page.limit))
        .bind(i64::from(page.offset))
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let created: String = r.try_get("created_at")?;
            let updated: String = r.try_get("updated_at")?;
            out.push(ModelSummary {
                model_name: r.try_get("model_name")?,
                algorithm: r.try_get("algorithm")?,
                latest_version: r.try_get("latest_version")?,
                production_version: r.try_get("production_version")?,
                version_count: r.try_get("version_count")?,
                created_at: parse_ts("model_versions.created_at", &created)?,
                updated_at: parse_ts("model_versions.created_at", &updated)?,
            });
        }
        let total = sqlx::query(
            "SELECT COUNT(DISTINCT model_name) AS n FROM model_versions WHERE tenant = $1",
        )
        .bind(tenant)
        .fetch_one(&self.pool)
        .await?
        .try_get("n")?;
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
        rows.into_iter().map(TryInto::try_into).collect()
    }

    async fn create_job(&self, job: NewJob) -> Result<(Job, bool), StoreError> {
        if let Some(key) = &job.idempotency_key
            && let Some(existing) = self.job_by_idempotency_key(&job.tenant, key).await?
        {
            return Ok((existing, false));
        }
        let id = uuid::Uuid::now_v7().to_string();
        let inserted: Result<JobRow, sqlx::Error> = sqlx::query_as(
            "INSERT INTO jobs (id, tenant, kind, status, spec, progress, idempotency_key, created_at) \
             VALUES ($1, $2, $3, 'queued', $4, $5, $6, $7) RETURNING *",
        )
        .bind(&id)
        .bind(&job.tenant)
        .bind(job.kind.as_str())
        .bind(job.spec.to_string())
        .bind(job.progress.to_string())
        .bind(&job.idempotency_key)
        .bind(now())
        .fetch_one(&self.pool)
        .await;
        match inserted {
            Ok(row) => Ok((row.try_into()?, true)),
            // Two submissions with one key raced: the first one wins.
            Err(e) if is_unique_violation(&e) => {
                let key = job.idempotency_key.as_deref().unwrap_or_default();
                let existing = self
                    .job_by_idempotency_key(&job.tenant, key)
                    .await?
                    .ok_or_else(|| StoreError::Conflict("idempotency key".into()))?;
                Ok((existing, false))
            }
            Err(e) => Err(e.into()),
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
        let total = sqlx::query("SELECT COUNT(*) AS n FROM jobs WHERE tenant = $1")
            .bind(tenant)
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?;
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
                         ORDER BY created_at, id LIMIT 1) \
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
            .bind(progress.to_string())
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
        .bind(result.map(Value::to_string))
        .bind(error)
        .bind(now())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn release_job(&self, id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE jobs SET status = CASE WHEN cancel_requested = 1 THEN 'cancelled' ELSE 'queued' END, \
             finished_at = CASE WHEN cancel_requested = 1 THEN $2 END, worker_id = NULL \
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
            "UPDATE jobs SET status = 'cancelled', cancel_requested = 1, finished_at = $3 \
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
            "UPDATE jobs SET cancel_requested = 1 \
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
        sqlx::query(
            "UPDATE jobs SET status = 'cancelled', finished_at = $1, worker_id = NULL \
             WHERE status = 'running' AND cancel_requested = 1",
        )
        .bind(now())
        .execute(&self.pool)
        .await?;
        let done = sqlx::query(
            "UPDATE jobs SET status = 'queued', worker_id = NULL WHERE status = 'running'",
        )
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected())
    }

    async fn job_counts(&self) -> Result<(i64, i64), StoreError> {
        let row = sqlx::query(
            "SELECT COALESCE(SUM(status = 'queued'), 0) AS queued, \
             COALESCE(SUM(status = 'running'), 0) AS running FROM jobs \
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
               OR ($4 AND status = 'running' AND COALESCE(worker_id, '') <> $2)) \
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
        .bind(result.map(Value::to_string))
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
               status = CASE WHEN cancel_requested = 1 THEN 'cancelled' ELSE 'queued' END, \
               finished_at = CASE WHEN cancel_requested = 1 THEN $3 END, \
               error = COALESCE($4, error), available_at = $5, worker_id = NULL \
             WHERE id = $1 AND status = 'running' AND worker_id = $2 RETURNING *",
        )
        .bind(id)
        .bind(worker_id)
        .bind(now())
        .bind(error)
        .bind(ts(available_at))
        .fetch_optional(&self.pool)
        .await?;
        row.map(TryInto::try_into).transpose()
    }

    async fn queued_job_ids(
        &self,
        before: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(
            "SELECT id FROM jobs WHERE status = 'queued' \
             AND COALESCE(available_at, created_at) < $1 ORDER BY created_at, id LIMIT $2",
        )
        .bind(ts(before))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| r.try_get("id").map_err(StoreError::from))
            .collect()
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

impl SqliteStore {
    async fn version_of_job(
        &self,
        tenant: &str,
        job_id: &str,
    ) -> Result<Option<ModelVersion>, StoreError> {
        let row: Option<ModelRow> =
            sqlx::query_as("SELECT * FROM model_versions WHERE tenant = $1 AND job_id = $2")
                .bind(tenant)
                .bind(job_id)
                .fetch_optional(&self.pool)
                .await?;
        row.map(TryInto::try_into).transpose()
    }

    async fn job_by_idempotency_key(
        &self,
        tenant: &str,
        key: &str,
    ) -> Result<Option<Job>, StoreError> {
        let row: Option<JobRow> =
            sqlx::query_as("SELECT * FROM jobs WHERE tenant = $1 AND idempotency_key = $2")
                .bind(tenant)
                .bind(key)
                .fetch_optional(&self.pool)
                .await?;
        row.map(TryInto::try_into).transpose()
    }
}
