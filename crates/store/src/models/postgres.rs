//! Registering a model version in Postgres, where instances write concurrently: the
//! numbering runs under a transaction-scoped advisory lock on (tenant, name), so two
//! instances training one name at once get versions `n` and `n + 1`, never a conflict.

use sqlx::{PgPool, Postgres};

use super::{ModelDialect, insert_version, version_of_job};
use crate::StoreError;
use crate::types::{ModelVersion, NewModelVersion};

impl ModelDialect for Postgres {
    async fn create_model_version(
        pool: &PgPool,
        v: NewModelVersion,
    ) -> Result<ModelVersion, StoreError> {
        let mut tx = pool.begin().await?;
        // Numbering reads MAX(version): serialize the writers of one (tenant, name) so two
        // concurrent trainings get consecutive versions instead of a key conflict.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1 || '/' || $2, 0))")
            .bind(&v.tenant)
            .bind(&v.model_name)
            .execute(&mut *tx)
            .await?;
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
}
