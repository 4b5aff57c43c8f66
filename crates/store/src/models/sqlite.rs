//! Registering a model version in SQLite, whose one writer at a time makes the numbering
//! statement atomic on its own.

use sqlx::{Sqlite, SqlitePool};

use super::{ModelDialect, apply_stage_change, insert_version, version_of_job};
use crate::StoreError;
use crate::types::{ModelVersion, NewModelVersion, NewStage, StageChange};

impl ModelDialect for Sqlite {
    async fn create_model_version(
        pool: &SqlitePool,
        v: NewModelVersion,
    ) -> Result<ModelVersion, StoreError> {
        if let Some(job_id) = &v.job_id
            && let Some(existing) = version_of_job(pool, &v.tenant, job_id).await?
        {
            return Ok(existing);
        }
        insert_version(pool, &v).await
    }

    async fn change_stage(
        pool: &SqlitePool,
        tenant: &str,
        name: &str,
        version: i64,
        change: NewStage,
    ) -> Result<StageChange, StoreError> {
        // IMMEDIATE: the transaction reads, then writes; a deferred one would fail with
        // "database is locked" when another connection writes in between (the audit
        // writer does), instead of waiting for the lock.
        let mut tx = pool.begin_with("BEGIN IMMEDIATE").await?;
        let changed = apply_stage_change::<Sqlite>(&mut tx, tenant, name, version, change).await?;
        tx.commit().await?;
        Ok(changed)
    }
}
