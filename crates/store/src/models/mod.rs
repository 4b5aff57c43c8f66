//! Model versions: the [`ModelStore`] trait, and its one implementation for both SQL
//! dialects. Registering a version is what differs ([`ModelDialect`]: how numbering is made
//! atomic against concurrent trainings), in `sqlite.rs` and `postgres.rs` beside this file,
//! both with the statements shared here.

use std::future::Future;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{Executor, Pool};

use crate::StoreError;
use crate::sql::{
    Arg, Count, Dialect, Reads, Record, SqlStore, Statement, fetch, required_json,
    required_timestamp,
};
use crate::types::{
    ARCHIVED, ModelSchedule, ModelSummary, ModelVersion, NewModelVersion, NewStage, PRODUCTION,
    Page, STAGING, StageChange, StageEvent,
};

mod postgres;
mod sqlite;

/// Models and their versions, scoped by tenant.
#[async_trait]
pub trait ModelStore: Send + Sync {
    /// Registers the next version of a model: numbered `max + 1` for its (tenant, name),
    /// `production` when it is the first, else `staging`. With a `job_id` that already registered a
    /// version, returns that version unchanged (its `artifact_path` tells the caller that
    /// its own artifact is not the one registered).
    async fn create_model_version(
        &self,
        version: NewModelVersion,
    ) -> Result<ModelVersion, StoreError>;
    /// The tenant's models, by name, with their total count.
    async fn list_models(
        &self,
        tenant: &str,
        page: Page,
    ) -> Result<(Vec<ModelSummary>, i64), StoreError>;
    /// Every version of a model, oldest first (empty: no such model).
    async fn model_versions(
        &self,
        tenant: &str,
        name: &str,
    ) -> Result<Vec<ModelVersion>, StoreError>;
    /// One version of a model.
    async fn model_version(
        &self,
        tenant: &str,
        name: &str,
        version: i64,
    ) -> Result<Option<ModelVersion>, StoreError>;
    /// The version in `production` (else the latest).
    async fn production_version(
        &self,
        tenant: &str,
        name: &str,
    ) -> Result<Option<ModelVersion>, StoreError>;
    /// Deletes every version of a model and returns them, oldest first (so their artifacts
    /// can go too).
    async fn delete_model(&self, tenant: &str, name: &str)
    -> Result<Vec<ModelVersion>, StoreError>;
    /// Moves a version to `change.to`, recording it in its stage history. Promoting to
    /// production archives the production version it replaces, in the same transaction.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] without such a version; [`StoreError::Conflict`] when it is
    /// already in that stage, or when archiving the production version (another must be
    /// promoted first).
    async fn change_stage(
        &self,
        tenant: &str,
        name: &str,
        version: i64,
        change: NewStage,
    ) -> Result<StageChange, StoreError>;
    /// The model's canary or shadow rollout policy, if one runs.
    async fn rollout(&self, tenant: &str, name: &str) -> Result<Option<Value>, StoreError>;
    /// Starts (or replaces) the model's rollout policy.
    async fn set_rollout(&self, tenant: &str, name: &str, policy: &Value)
    -> Result<(), StoreError>;
    /// Ends the model's rollout; returns the policy it had, if one ran.
    async fn end_rollout(&self, tenant: &str, name: &str) -> Result<Option<Value>, StoreError>;
    /// Sets (or replaces) a model's retraining schedule, its next slot at `next_run_at`.
    async fn set_schedule(
        &self,
        tenant: &str,
        name: &str,
        schedule: &Value,
        next_run_at: DateTime<Utc>,
    ) -> Result<ModelSchedule, StoreError>;
    /// A model's schedule.
    async fn schedule(&self, tenant: &str, name: &str)
    -> Result<Option<ModelSchedule>, StoreError>;
    /// Removes a model's schedule; whether there was one.
    async fn delete_schedule(&self, tenant: &str, name: &str) -> Result<bool, StoreError>;
    /// Schedules whose next slot is at or before `now`, every tenant's, oldest first.
    async fn due_schedules(
        &self,
        now: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<ModelSchedule>, StoreError>;
    /// Moves a schedule from the slot `due` to `next`, recording the slot's job — only if
    /// its next slot still is `due` (false: another instance did it first).
    async fn advance_schedule(
        &self,
        schedule: &ModelSchedule,
        next: DateTime<Utc>,
        job_id: &str,
    ) -> Result<bool, StoreError>;
}

impl Record for ModelSchedule {
    fn from_row<DB: Dialect>(row: &DB::Row) -> Result<Self, StoreError> {
        Ok(ModelSchedule {
            tenant: row.read("tenant")?,
            model_name: row.read("model_name")?,
            schedule: required_json::<DB>(row, "model_schedules.schedule")?,
            next_run_at: required_timestamp::<DB>(row, "model_schedules.next_run_at")?,
            last_run_at: DB::read_timestamp(row, "model_schedules.last_run_at")?,
            last_job_id: row.read("last_job_id")?,
        })
    }
}

/// A rollout policy row.
struct Policy(Value);

impl Record for Policy {
    fn from_row<DB: Dialect>(row: &DB::Row) -> Result<Self, StoreError> {
        required_json::<DB>(row, "model_rollouts.policy").map(Policy)
    }
}

/// How a dialect registers a version.
pub trait ModelDialect: Dialect {
    /// [`ModelStore::create_model_version`], with [`version_of_job`] and
    /// [`insert_version`].
    fn create_model_version(
        pool: &Pool<Self>,
        version: NewModelVersion,
    ) -> impl Future<Output = Result<ModelVersion, StoreError>> + Send;

    /// [`ModelStore::change_stage`], in a transaction running [`apply_stage_change`].
    fn change_stage(
        pool: &Pool<Self>,
        tenant: &str,
        name: &str,
        version: i64,
        change: NewStage,
    ) -> impl Future<Output = Result<StageChange, StoreError>> + Send;
}

impl Record for ModelVersion {
    fn from_row<DB: Dialect>(row: &DB::Row) -> Result<Self, StoreError> {
        let feature_names = DB::read_json(row, "model_versions.feature_names")?
            .map(serde_json::from_value)
            .transpose()
            .map_err(|e| StoreError::Corrupt {
                column: "model_versions.feature_names",
                reason: e.to_string(),
            })?;
        let stage_history = required_json::<DB>(row, "model_versions.stage_history")?;
        let stage_history =
            serde_json::from_value(stage_history).map_err(|e| StoreError::Corrupt {
                column: "model_versions.stage_history",
                reason: e.to_string(),
            })?;
        Ok(ModelVersion {
            tenant: row.read("tenant")?,
            model_name: row.read("model_name")?,
            version: row.read("version")?,
            algorithm: row.read("algorithm")?,
            parameters: required_json::<DB>(row, "model_versions.parameters")?,
            contamination: required_json::<DB>(row, "model_versions.contamination")?,
            threshold: row.read("threshold")?,
            n_features: row.read("n_features")?,
            n_samples: row.read("n_samples")?,
            feature_names,
            stage: row.read("stage")?,
            stage_history,
            metrics: DB::read_json(row, "model_versions.metrics")?,
            lineage: DB::read_json(row, "model_versions.lineage")?,
            artifact_path: row.read("artifact_path")?,
            artifact_bytes: row.read("artifact_bytes")?,
            created_at: required_timestamp::<DB>(row, "model_versions.created_at")?,
            training_time_ms: row.read("training_time_ms")?,
        })
    }
}

impl Record for ModelSummary {
    fn from_row<DB: Dialect>(row: &DB::Row) -> Result<Self, StoreError> {
        Ok(ModelSummary {
            model_name: row.read("model_name")?,
            algorithm: row.read("algorithm")?,
            latest_version: row.read("latest_version")?,
            production_version: row.read("production_version")?,
            version_count: row.read("version_count")?,
            created_at: required_timestamp::<DB>(row, "model_versions.created_at")?,
            updated_at: required_timestamp::<DB>(row, "model_versions.updated_at")?,
        })
    }
}

/// The version a training job registered, if it did (a job re-run after a crash finds it
/// instead of adding a second one).
pub async fn version_of_job<'c, DB: Dialect>(
    db: impl Executor<'c, Database = DB>,
    tenant: &str,
    job_id: &str,
) -> Result<Option<ModelVersion>, StoreError> {
    let statement = sqlx::query("SELECT * FROM model_versions WHERE tenant = $1 AND job_id = $2")
        .arg(tenant)
        .arg(job_id);
    fetch(db, statement).await
}

/// `sql`, whose `$1` and `$2` are a model's tenant and name, bound to them.
fn of_model<'q, DB: Dialect>(
    sql: &'static str,
    tenant: &'q str,
    name: &'q str,
) -> Statement<'q, DB> {
    sqlx::query(sql).arg(tenant).arg(name)
}

/// The stage history of a version just registered in `stage`.
fn registered(v: &NewModelVersion, stage: &str) -> Result<Value, StoreError> {
    let by = v
        .lineage
        .as_ref()
        .and_then(|l| l.get("trained_by"))
        .and_then(Value::as_str)
        .unwrap_or("pynomaly");
    let event = StageEvent {
        from: None,
        to: stage.to_string(),
        at: chrono::Utc::now(),
        by: by.to_string(),
        reason: "registered".into(),
        note: None,
    };
    serde_json::to_value([event]).map_err(|e| StoreError::Corrupt {
        column: "model_versions.stage_history",
        reason: e.to_string(),
    })
}

/// Inserts the next version of a model in one statement: numbered `max + 1` for its
/// (tenant, name), `production` when it is the first.
pub async fn insert_version<'c, DB: Dialect>(
    db: impl Executor<'c, Database = DB>,
    v: &NewModelVersion,
) -> Result<ModelVersion, StoreError> {
    let feature_names = v.feature_names.as_ref().map(|f| Value::from(f.clone()));
    let (as_production, as_staging) = (registered(v, PRODUCTION)?, registered(v, STAGING)?);
    let statement = sqlx::query(
        "INSERT INTO model_versions (tenant, model_name, version, algorithm, parameters, \
         contamination, threshold, n_features, n_samples, feature_names, stage, \
         artifact_path, artifact_bytes, created_at, training_time_ms, job_id, \
         stage_history, metrics, lineage) \
         SELECT $1, $2, COALESCE(MAX(version), 0) + 1, $3, $4, $5, $6, $7, $8, $9, \
         CASE WHEN COUNT(*) = 0 THEN 'production' ELSE 'staging' END, $10, $11, $12, $13, $14, \
         CASE WHEN COUNT(*) = 0 THEN $15 ELSE $16 END, $17, $18 \
         FROM model_versions WHERE tenant = $1 AND model_name = $2 \
         RETURNING *",
    )
    .arg(v.tenant.as_str())
    .arg(v.model_name.as_str())
    .arg(v.algorithm.as_str())
    .arg(DB::json(Some(&v.parameters)))
    .arg(DB::json(Some(&v.contamination)))
    .arg(v.threshold)
    .arg(v.n_features)
    .arg(v.n_samples)
    .arg(DB::json(feature_names.as_ref()))
    .arg(v.artifact_path.as_str())
    .arg(v.artifact_bytes)
    .arg(DB::now())
    .arg(v.training_time_ms)
    .arg(v.job_id.as_deref())
    .arg(DB::json(Some(&as_production)))
    .arg(DB::json(Some(&as_staging)))
    .arg(DB::json(v.metrics.as_ref()))
    .arg(DB::json(v.lineage.as_ref()));
    fetch(db, statement).await
}

/// Sets a version's stage and stage history.
async fn set_stage<'c, DB: Dialect>(
    db: impl Executor<'c, Database = DB>,
    current: &ModelVersion,
    event: StageEvent,
) -> Result<ModelVersion, StoreError> {
    let to = event.to.clone();
    let mut history = current.stage_history.clone();
    history.push(event);
    let history = serde_json::to_value(history).map_err(|e| StoreError::Corrupt {
        column: "model_versions.stage_history",
        reason: e.to_string(),
    })?;
    let statement = sqlx::query(
        "UPDATE model_versions SET stage = $1, stage_history = $2 \
         WHERE tenant = $3 AND model_name = $4 AND version = $5 RETURNING *",
    )
    .arg(to.as_str())
    .arg(DB::json(Some(&history)))
    .arg(current.tenant.as_str())
    .arg(current.model_name.as_str())
    .arg(current.version);
    fetch(db, statement).await
}

/// [`ModelStore::change_stage`] on one connection, inside the caller's transaction.
///
/// # Errors
/// As [`ModelStore::change_stage`].
pub async fn apply_stage_change<DB>(
    conn: &mut DB::Connection,
    tenant: &str,
    name: &str,
    version: i64,
    change: NewStage,
) -> Result<StageChange, StoreError>
where
    DB: Dialect,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
{
    let select = of_model(
        "SELECT * FROM model_versions WHERE tenant = $1 AND model_name = $2 ORDER BY version",
        tenant,
        name,
    );
    let versions: Vec<ModelVersion> = fetch(&mut *conn, select).await?;
    let target = versions
        .iter()
        .find(|v| v.version == version)
        .ok_or_else(|| StoreError::NotFound(format!("model '{name}' has no version {version}")))?;
    if target.stage == change.to {
        return Err(StoreError::Conflict(format!(
            "version {version} of model '{name}' is already {}",
            change.to
        )));
    }
    if target.stage == PRODUCTION {
        return Err(StoreError::Conflict(format!(
            "version {version} of model '{name}' is in production: promote another version or \
             roll back first"
        )));
    }
    let at = chrono::Utc::now();
    let event = |from: &str, to: &str, reason: &str, note: Option<String>| StageEvent {
        from: Some(from.to_string()),
        to: to.to_string(),
        at,
        by: change.by.clone(),
        reason: reason.to_string(),
        note,
    };
    let mut replaced = None;
    if change.to == PRODUCTION
        && let Some(current) = versions.iter().find(|v| v.stage == PRODUCTION)
    {
        // A rolled-back version is not what a later rollback goes back to.
        let reason = if change.reason == "rollback" || change.reason == "guard" {
            "rolled_back"
        } else {
            "replaced"
        };
        let note = Some(format!("replaced by version {version}"));
        set_stage(
            &mut *conn,
            current,
            event(PRODUCTION, ARCHIVED, reason, note),
        )
        .await?;
        replaced = Some(current.version);
    }
    let from = target.stage.clone();
    let updated = set_stage(
        &mut *conn,
        target,
        event(&from, &change.to, &change.reason, change.note.clone()),
    )
    .await?;
    Ok(StageChange {
        version: updated,
        from,
        replaced,
    })
}

#[async_trait]
impl<S> ModelStore for S
where
    S: SqlStore,
    S::Db: ModelDialect,
{
    async fn create_model_version(&self, v: NewModelVersion) -> Result<ModelVersion, StoreError> {
        S::Db::create_model_version(self.pool(), v).await
    }

    async fn change_stage(
        &self,
        tenant: &str,
        name: &str,
        version: i64,
        change: NewStage,
    ) -> Result<StageChange, StoreError> {
        S::Db::change_stage(self.pool(), tenant, name, version, change).await
    }

    async fn rollout(&self, tenant: &str, name: &str) -> Result<Option<Value>, StoreError> {
        let statement = of_model(
            "SELECT policy FROM model_rollouts WHERE tenant = $1 AND model_name = $2",
            tenant,
            name,
        );
        let found: Option<Policy> = fetch(self.db(), statement).await?;
        Ok(found.map(|p| p.0))
    }

    async fn set_rollout(
        &self,
        tenant: &str,
        name: &str,
        policy: &Value,
    ) -> Result<(), StoreError> {
        let statement = of_model(
            "INSERT INTO model_rollouts (tenant, model_name, policy) VALUES ($1, $2, $3) \
             ON CONFLICT (tenant, model_name) DO UPDATE SET policy = excluded.policy",
            tenant,
            name,
        )
        .arg(S::Db::json(Some(policy)));
        statement.execute(self.db()).await?;
        Ok(())
    }

    async fn set_schedule(
        &self,
        tenant: &str,
        name: &str,
        schedule: &Value,
        next_run_at: DateTime<Utc>,
    ) -> Result<ModelSchedule, StoreError> {
        let statement = of_model(
            "INSERT INTO model_schedules (tenant, model_name, schedule, next_run_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (tenant, model_name) DO UPDATE \
             SET schedule = excluded.schedule, next_run_at = excluded.next_run_at RETURNING *",
            tenant,
            name,
        )
        .arg(S::Db::json(Some(schedule)))
        .arg(S::Db::timestamp(Some(next_run_at)));
        fetch(self.db(), statement).await
    }

    async fn schedule(
        &self,
        tenant: &str,
        name: &str,
    ) -> Result<Option<ModelSchedule>, StoreError> {
        let statement = of_model(
            "SELECT * FROM model_schedules WHERE tenant = $1 AND model_name = $2",
            tenant,
            name,
        );
        fetch(self.db(), statement).await
    }

    async fn delete_schedule(&self, tenant: &str, name: &str) -> Result<bool, StoreError> {
        let statement = of_model(
            "DELETE FROM model_schedules WHERE tenant = $1 AND model_name = $2",
            tenant,
            name,
        );
        let done = statement.execute(self.db()).await?;
        Ok(S::Db::rows_affected(&done) > 0)
    }

    async fn due_schedules(
        &self,
        now: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<ModelSchedule>, StoreError> {
        let statement = sqlx::query(
            "SELECT * FROM model_schedules WHERE next_run_at <= $1 ORDER BY next_run_at LIMIT $2",
        )
        .arg(S::Db::timestamp(Some(now)))
        .arg(limit);
        fetch(self.db(), statement).await
    }

    async fn advance_schedule(
        &self,
        schedule: &ModelSchedule,
        next: DateTime<Utc>,
        job_id: &str,
    ) -> Result<bool, StoreError> {
        let statement = sqlx::query(
            "UPDATE model_schedules SET next_run_at = $1, last_run_at = $2, last_job_id = $3 \
             WHERE tenant = $4 AND model_name = $5 AND next_run_at = $6",
        )
        .arg(S::Db::timestamp(Some(next)))
        .arg(S::Db::now())
        .arg(job_id)
        .arg(schedule.tenant.as_str())
        .arg(schedule.model_name.as_str())
        .arg(S::Db::timestamp(Some(schedule.next_run_at)));
        let done = statement.execute(self.db()).await?;
        Ok(S::Db::rows_affected(&done) == 1)
    }

    async fn end_rollout(&self, tenant: &str, name: &str) -> Result<Option<Value>, StoreError> {
        let statement = of_model(
            "DELETE FROM model_rollouts WHERE tenant = $1 AND model_name = $2 RETURNING policy",
            tenant,
            name,
        );
        let ended: Option<Policy> = fetch(self.db(), statement).await?;
        Ok(ended.map(|p| p.0))
    }

    async fn list_models(
        &self,
        tenant: &str,
        page: Page,
    ) -> Result<(Vec<ModelSummary>, i64), StoreError> {
        let statement = sqlx::query(
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
        .arg(tenant)
        .arg(i64::from(page.limit))
        .arg(i64::from(page.offset));
        let models = fetch(self.db(), statement).await?;
        let count = sqlx::query(
            "SELECT COUNT(DISTINCT model_name) AS n FROM model_versions WHERE tenant = $1",
        )
        .arg(tenant);
        let Count(total) = fetch(self.db(), count).await?;
        Ok((models, total))
    }

    async fn model_versions(
        &self,
        tenant: &str,
        name: &str,
    ) -> Result<Vec<ModelVersion>, StoreError> {
        let statement = of_model(
            "SELECT * FROM model_versions WHERE tenant = $1 AND model_name = $2 ORDER BY version",
            tenant,
            name,
        );
        fetch(self.db(), statement).await
    }

    async fn model_version(
        &self,
        tenant: &str,
        name: &str,
        version: i64,
    ) -> Result<Option<ModelVersion>, StoreError> {
        let statement = of_model(
            "SELECT * FROM model_versions WHERE tenant = $1 AND model_name = $2 AND version = $3",
            tenant,
            name,
        )
        .arg(version);
        fetch(self.db(), statement).await
    }

    async fn production_version(
        &self,
        tenant: &str,
        name: &str,
    ) -> Result<Option<ModelVersion>, StoreError> {
        let statement = of_model(
            "SELECT * FROM model_versions WHERE tenant = $1 AND model_name = $2 \
             ORDER BY (stage = 'production') DESC, version DESC LIMIT 1",
            tenant,
            name,
        );
        fetch(self.db(), statement).await
    }

    async fn delete_model(
        &self,
        tenant: &str,
        name: &str,
    ) -> Result<Vec<ModelVersion>, StoreError> {
        let statement = of_model(
            "DELETE FROM model_versions WHERE tenant = $1 AND model_name = $2 RETURNING *",
            tenant,
            name,
        );
        // The order of `RETURNING` rows is unspecified.
        let mut versions: Vec<ModelVersion> = fetch(self.db(), statement).await?;
        versions.sort_by_key(|v| v.version);
        Ok(versions)
    }
}
