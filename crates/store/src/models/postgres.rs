//! Registering a model version in Postgres, where instances write concurrently: the
//! numbering runs under a transaction-scoped advisory lock on (tenant, name), so two
//! instances training one name at once get versions `n` and `n + 1`, never a conflict.

use sqlx::{PgPool, Postgres};

use super::{ModelDialect, apply_stage_change, insert_version, version_of_job};
use crate::StoreError;
use crate::types::{ModelVersion, NewModelVersion, NewStage, StageChange};

/// Takes the transaction-scoped lock that serializes the writers of one (tenant, name).
async fn lock_model(
    tx: &mut sqlx::Transaction<'_, Postgres>,
    tenant: &str,
    name: &str,
) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1 || '/' || $2, 0))")
        .bind(tenant)
        .bind(name)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

impl ModelDialect for Postgres {
    async fn create_model_version(
        pool: &PgPool,
        v: NewModelVersion,
    ) -> Result<ModelVersion, StoreError> {
        let mut tx = pool.begin().await?;
        // Numbering reads MAX(version): serialize the writers of one (tenant, name) so two
        // concurrent trainings get consecutive versions instead of a key conflict.
        lock_model(&mut tx, &v.tenant, &v.model_name).await?;
        if let Some(job_id) = &v.job_id
            && let Some(existing) = version_of_job(&mut *tx, &v.tenant, job_id).await?
        {
            tx.commit().await?;
            return Ok(existing);
        }
        let version = insert_version(&mut *tx, &v).await?;
        tx.commit().await?;
        Ok(version)
    }

    async fn change_stage(
        pool: &PgPool,
        tenant: &str,
        name: &str,
        version: i64,
        change: NewStage,
    ) -> Result<StageChange, StoreError> {
        let mut tx = pool.begin().await?;
        // Two changes of one model at once would both archive the same production version.
        lock_model(&mut tx, tenant, name).await?;
        let changed =
            apply_stage_change::<Postgres>(&mut tx, tenant, name, version, change).await?;
        tx.commit().await?;
        Ok(changed)
    }
}
