//! Jobs in Postgres, written by several instances at once: a submission inserts with
//! `ON CONFLICT DO NOTHING` on the idempotency key's unique index (one of two instances
//! receiving one retried submission creates the job), claimers skip the rows others have
//! locked, and interrupted jobs are requeued in one transaction.

use sqlx::{PgPool, Postgres};

use super::{CANCEL_INTERRUPTED, JobDialect, REQUEUE_INTERRUPTED, job_by_idempotency_key, new_job};
use crate::StoreError;
use crate::sql::{Arg, Dialect, fetch};
use crate::types::{Job, NewJob};

impl JobDialect for Postgres {
    const CLAIM_NEXT: &'static str = "UPDATE jobs SET status = 'running', \
        started_at = COALESCE(started_at, $1), attempts = attempts + 1, worker_id = $2 \
        WHERE id = (SELECT id FROM jobs WHERE status = 'queued' ORDER BY created_at, id LIMIT 1 \
        FOR UPDATE SKIP LOCKED) AND status = 'queued' RETURNING *";
    const CLAIM: &'static str = "UPDATE jobs SET status = 'running', \
        started_at = COALESCE(started_at, $3), attempts = attempts + 1, worker_id = $2 \
        WHERE id = $1 AND (status = 'queued' \
        OR ($4 AND status = 'running' AND worker_id IS DISTINCT FROM $2)) RETURNING *";
    /// `available_at` is set when a job is created.
    const QUEUED_BEFORE: &'static str = "SELECT id FROM jobs WHERE status = 'queued' \
        AND available_at < $1 ORDER BY created_at, id LIMIT $2";

    async fn create_job(pool: &PgPool, job: NewJob) -> Result<(Job, bool), StoreError> {
        let id = uuid::Uuid::now_v7().to_string();
        let insert = sqlx::query(
            "INSERT INTO jobs (id, tenant, kind, status, spec, progress, idempotency_key, \
             created_at, available_at) VALUES ($1, $2, $3, 'queued', $4, $5, $6, $7, $7) \
             ON CONFLICT (tenant, idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING \
             RETURNING *",
        );
        if let Some(created) = fetch(pool, new_job(insert, &id, &job)).await? {
            return Ok((created, true));
        }
        let key = job.idempotency_key.as_deref().unwrap_or_default();
        match job_by_idempotency_key(pool, &job.tenant, key).await? {
            Some(existing) => Ok((existing, false)),
            None => Err(StoreError::Conflict("idempotency key".into())),
        }
    }

    async fn requeue_interrupted_jobs(pool: &PgPool) -> Result<u64, StoreError> {
        let mut tx = pool.begin().await?;
        sqlx::query(CANCEL_INTERRUPTED)
            .arg(Postgres::now())
            .execute(&mut *tx)
            .await?;
        let requeued = sqlx::query(REQUEUE_INTERRUPTED).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(requeued.rows_affected())
    }
}
