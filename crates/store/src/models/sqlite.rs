//! Registering a model version in SQLite, whose one writer at a time makes the numbering
//! statement atomic on its own.

use sqlx::{Sqlite, SqlitePool};

use super::{ModelDialect, insert_version, version_of_job};
use crate::StoreError;
use crate::types::{ModelVersion, NewModelVersion};

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
}
