//! Jobs in SQLite, which has one writer at a time: a submission looks its idempotency key
//! up before inserting (the unique index settles a race), and claiming needs no row locks.

use sqlx::{Sqlite, SqlitePool};

use super::{CANCEL_INTERRUPTED, JobDialect, REQUEUE_INTERRUPTED, job_by_idempotency_key, new_job};
use crate::StoreError;
use crate::sql::{Arg, Dialect, fetch, is_unique_violation};
use crate::types::{Job, NewJob};

impl JobDialect for Sqlite {
    const CLAIM_NEXT: &'static str = "UPDATE jobs SET status = 'running', \
        started_at = COALESCE(started_at, $1), attempts = attempts + 1, worker_id = $2 \
        WHERE id = (SELECT id FROM jobs WHERE status = 'queued' ORDER BY created_at, id LIMIT 1) \
        AND status = 'queued' RETURNING *";
    const CLAIM: &'static str = "UPDATE jobs SET status = 'running', \
        started_at = COALESCE(started_at, $3), attempts = attempts + 1, worker_id = $2 \
        WHERE id = $1 AND (status = 'queued' \
        OR ($4 AND status = 'running' AND COALESCE(worker_id, '') <> $2)) RETURNING *";
    /// `available_at` is NULL until a failed attempt's backoff sets it.
    const QUEUED_BEFORE: &'static str = "SELECT id FROM jobs WHERE status = 'queued' \
        AND COALESCE(available_at, created_at) < $1 ORDER BY created_at, id LIMIT $2";

    async fn create_job(pool: &SqlitePool, job: NewJob) -> Result<(Job, bool), StoreError> {
        if let Some(key) = &job.idempotency_key
            && let Some(existing) = job_by_idempotency_key(pool, &job.tenant, key).await?
        {
            return Ok((existing, false));
        }
        let id = uuid::Uuid::now_v7().to_string();
        let insert = sqlx::query(
            "INSERT INTO jobs (id, tenant, kind, status, spec, progress, idempotency_key, \
             created_at) VALUES ($1, $2, $3, 'queued', $4, $5, $6, $7) RETURNING *",
        );
        match fetch(pool, new_job(insert, &id, &job)).await {
            Ok(created) => Ok((created, true)),
            // Two submissions with one key raced: the first one wins.
            Err(StoreError::Database(e)) if is_unique_violation(&e) => {
                let key = job.idempotency_key.as_deref().unwrap_or_default();
                let existing = job_by_idempotency_key(pool, &job.tenant, key)
                    .await?
                    .ok_or_else(|| StoreError::Conflict("idempotency key".into()))?;
                Ok((existing, false))
            }
            Err(e) => Err(e),
        }
    }

    async fn requeue_interrupted_jobs(pool: &SqlitePool) -> Result<u64, StoreError> {
        sqlx::query(CANCEL_INTERRUPTED)
            .arg(Sqlite::now())
            .execute(pool)
            .await?;
        let requeued = sqlx::query(REQUEUE_INTERRUPTED).execute(pool).await?;
        Ok(requeued.rows_affected())
    }
}
