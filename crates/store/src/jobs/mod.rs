//! Jobs: the [`JobStore`] trait (submitting, running and finishing jobs) and the
//! [`JobDeliveryStore`] trait (the bookkeeping of jobs delivered by an external queue),
//! with their one implementation for both SQL dialects. What differs per dialect
//! ([`JobDialect`]: how a submission is deduplicated, how claimers avoid each other, how
//! interrupted jobs are requeued) lives in `sqlite.rs` and `postgres.rs` beside this file.
//!
//! A job moves `queued → running → succeeded | failed | cancelled` and is finished once:
//! every write of a running job checks that it is still running (and, for delivered jobs,
//! still running for the worker writing).

use std::future::Future;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::{Executor, Pool};

use crate::StoreError;
use crate::sql::{
    Arg, Count, Dialect, Reads, Record, SqlStore, Statement, execute_changed, fetch, required_json,
    required_timestamp,
};
use crate::types::{CancelOutcome, Job, JobKind, JobStatus, NewJob, Page};

mod postgres;
mod sqlite;

/// Jobs, scoped by tenant, claimed by workers serving every tenant.
#[async_trait]
pub trait JobStore: Send + Sync {
    /// Enqueues a job. With an idempotency key already used by this tenant, returns that
    /// first job and `false` instead of creating a second.
    async fn create_job(&self, job: NewJob) -> Result<(Job, bool), StoreError>;
    /// A job of this tenant.
    async fn job(&self, tenant: &str, id: &str) -> Result<Option<Job>, StoreError>;
    /// A job by id alone (for workers, which serve every tenant).
    async fn job_by_id(&self, id: &str) -> Result<Option<Job>, StoreError>;
    /// The tenant's jobs, newest first, with their total count.
    async fn list_jobs(&self, tenant: &str, page: Page) -> Result<(Vec<Job>, i64), StoreError>;
    /// Atomically takes the oldest queued job and marks it `running` for `worker_id`.
    async fn claim_next_job(&self, worker_id: &str) -> Result<Option<Job>, StoreError>;
    /// Records a running job's progress.
    async fn update_job_progress(&self, id: &str, progress: &Value) -> Result<(), StoreError>;
    /// Moves a `running` job to a terminal status; `false` if it was not running (so no
    /// job is reported done twice).
    async fn finish_job(
        &self,
        id: &str,
        status: JobStatus,
        result: Option<&Value>,
        error: Option<&str>,
    ) -> Result<bool, StoreError>;
    /// Puts a `running` job back to `queued` (its worker is shutting down); `false` if it
    /// was not running.
    async fn release_job(&self, id: &str) -> Result<bool, StoreError>;
    /// Cancels a queued job at once, or asks a running one to stop.
    async fn request_job_cancel(&self, tenant: &str, id: &str)
    -> Result<CancelOutcome, StoreError>;
    /// At start-up of a single-process deployment: jobs left `running` by a previous
    /// process go back to `queued` (or to `cancelled` if that had been asked). Returns how
    /// many were requeued.
    async fn requeue_interrupted_jobs(&self) -> Result<u64, StoreError>;
    /// Counts jobs by status, for health and metrics: (queued, running).
    async fn job_counts(&self) -> Result<(i64, i64), StoreError>;
}

/// Jobs delivered by an external queue (scale-out): claims and writes fenced by the
/// worker, and what the queue needs to re-send lost deliveries.
#[async_trait]
pub trait JobDeliveryStore: Send + Sync {
    /// Takes one job for `worker_id`, the way a delivered queue message asks: a `queued`
    /// job becomes `running` (one more attempt). With `take_over`, a job still `running`
    /// for another worker is taken too (the queue found that worker's lease expired). Every
    /// later write of the job is fenced by `worker_id`. `None`: the job is finished,
    /// cancelled, gone, or running elsewhere and not taken over.
    async fn claim_job(
        &self,
        id: &str,
        worker_id: &str,
        take_over: bool,
    ) -> Result<Option<Job>, StoreError>;
    /// [`JobStore::finish_job`] fenced by the worker: `false` if the job is not `running`
    /// for `worker_id` (another worker took it over, or it is done).
    async fn finish_claimed_job(
        &self,
        id: &str,
        worker_id: &str,
        status: JobStatus,
        result: Option<&Value>,
        error: Option<&str>,
    ) -> Result<bool, StoreError>;
    /// Puts a job `running` for `worker_id` back to `queued` (to be retried or resumed),
    /// not to be delivered before `available_at`, recording `error` (why the attempt
    /// ended) when given; a job whose cancellation was asked ends `cancelled` instead.
    /// Returns the job as it is now; `None` if it was not running for this worker.
    async fn release_claimed_job(
        &self,
        id: &str,
        worker_id: &str,
        error: Option<&str>,
        available_at: DateTime<Utc>,
    ) -> Result<Option<Job>, StoreError>;
    /// Ids of jobs `queued` and deliverable since before `before`, oldest first (at most
    /// `limit`): a queue that delivers through another system re-sends these, in case a
    /// submission stopped between the insert and the send.
    async fn queued_job_ids(
        &self,
        before: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<String>, StoreError>;
    /// Running jobs and the worker running each, oldest first (at most `limit`): a queue
    /// compares them with its live workers to find jobs whose worker vanished without a
    /// trace in the queue itself.
    async fn running_jobs(&self, limit: i64) -> Result<Vec<(String, Option<String>)>, StoreError>;
}

/// The job statements and steps that differ per dialect.
pub trait JobDialect: Dialect {
    /// Marks the oldest queued job `running` (`$1` now, `$2` worker id), returning it.
    const CLAIM_NEXT: &'static str;
    /// Marks job `$1` `running` for worker `$2` (`$3` now) if it is queued, or if `$4` and
    /// it is running for another worker; returning it.
    const CLAIM: &'static str;
    /// Ids of the queued jobs deliverable before `$1`, oldest first, at most `$2`.
    const QUEUED_BEFORE: &'static str;

    /// [`JobStore::create_job`].
    fn create_job(
        pool: &Pool<Self>,
        job: NewJob,
    ) -> impl Future<Output = Result<(Job, bool), StoreError>> + Send;
    /// [`JobStore::requeue_interrupted_jobs`], with [`CANCEL_INTERRUPTED`] and
    /// [`REQUEUE_INTERRUPTED`].
    fn requeue_interrupted_jobs(
        pool: &Pool<Self>,
    ) -> impl Future<Output = Result<u64, StoreError>> + Send;
}

/// Ends `cancelled` the running jobs whose cancellation was asked (`$1` now).
pub const CANCEL_INTERRUPTED: &str = "UPDATE jobs SET status = 'cancelled', finished_at = $1, \
     worker_id = NULL WHERE status = 'running' AND cancel_requested";
/// Puts the other running jobs back to `queued`.
pub const REQUEUE_INTERRUPTED: &str =
    "UPDATE jobs SET status = 'queued', worker_id = NULL WHERE status = 'running'";

impl Record for Job {
    fn from_row<DB: Dialect>(row: &DB::Row) -> Result<Self, StoreError> {
        let corrupt = |column, v: &str| StoreError::Corrupt {
            column,
            reason: format!("unknown value '{v}'"),
        };
        let kind: String = row.read("kind")?;
        let status: String = row.read("status")?;
        Ok(Job {
            id: row.read("id")?,
            tenant: row.read("tenant")?,
            kind: JobKind::parse(&kind).ok_or_else(|| corrupt("jobs.kind", &kind))?,
            status: JobStatus::parse(&status).ok_or_else(|| corrupt("jobs.status", &status))?,
            spec: required_json::<DB>(row, "jobs.spec")?,
            progress: required_json::<DB>(row, "jobs.progress")?,
            result: DB::read_json(row, "jobs.result")?,
            error: row.read("error")?,
            idempotency_key: row.read("idempotency_key")?,
            cancel_requested: row.read("cancel_requested")?,
            attempts: row.read("attempts")?,
            created_at: required_timestamp::<DB>(row, "jobs.created_at")?,
            started_at: DB::read_timestamp(row, "jobs.started_at")?,
            finished_at: DB::read_timestamp(row, "jobs.finished_at")?,
        })
    }
}

/// Binds a new job's `$1` id, `$2` tenant, `$3` kind, `$4` spec, `$5` progress, `$6`
/// idempotency key and `$7` creation time (now) to the dialect's insert.
pub fn new_job<'q, DB: Dialect>(
    insert: Statement<'q, DB>,
    id: &str,
    job: &NewJob,
) -> Statement<'q, DB> {
    insert
        .arg(id)
        .arg(job.tenant.as_str())
        .arg(job.kind.as_str())
        .arg(DB::json(Some(&job.spec)))
        .arg(DB::json(Some(&job.progress)))
        .arg(job.idempotency_key.as_deref())
        .arg(DB::now())
}

/// Binds the terminal `status`, `result`, `error` and finishing time (now) of a job, after
/// the parameters that pick the job.
fn finishing<'q, DB: Dialect>(
    update: Statement<'q, DB>,
    status: JobStatus,
    result: Option<&Value>,
    error: Option<&str>,
) -> Statement<'q, DB> {
    update
        .arg(status.as_str())
        .arg(DB::json(result))
        .arg(error)
        .arg(DB::now())
}

/// The tenant's job submitted with this idempotency key.
pub async fn job_by_idempotency_key<'c, DB: Dialect>(
    db: impl Executor<'c, Database = DB>,
    tenant: &str,
    key: &str,
) -> Result<Option<Job>, StoreError> {
    let statement = sqlx::query("SELECT * FROM jobs WHERE tenant = $1 AND idempotency_key = $2")
        .arg(tenant)
        .arg(key);
    fetch(db, statement).await
}

#[async_trait]
impl<S> JobStore for S
where
    S: SqlStore,
    S::Db: JobDialect,
{
    async fn create_job(&self, job: NewJob) -> Result<(Job, bool), StoreError> {
        S::Db::create_job(self.pool(), job).await
    }

    async fn job(&self, tenant: &str, id: &str) -> Result<Option<Job>, StoreError> {
        let statement = sqlx::query("SELECT * FROM jobs WHERE tenant = $1 AND id = $2")
            .arg(tenant)
            .arg(id);
        fetch(self.db(), statement).await
    }

    async fn job_by_id(&self, id: &str) -> Result<Option<Job>, StoreError> {
        fetch(
            self.db(),
            sqlx::query("SELECT * FROM jobs WHERE id = $1").arg(id),
        )
        .await
    }

    async fn list_jobs(&self, tenant: &str, page: Page) -> Result<(Vec<Job>, i64), StoreError> {
        let statement = sqlx::query(
            "SELECT * FROM jobs WHERE tenant = $1 ORDER BY created_at DESC, id DESC \
             LIMIT $2 OFFSET $3",
        )
        .arg(tenant)
        .arg(i64::from(page.limit))
        .arg(i64::from(page.offset));
        let jobs = fetch(self.db(), statement).await?;
        let count = sqlx::query("SELECT COUNT(*) AS n FROM jobs WHERE tenant = $1").arg(tenant);
        let Count(total) = fetch(self.db(), count).await?;
        Ok((jobs, total))
    }

    async fn claim_next_job(&self, worker_id: &str) -> Result<Option<Job>, StoreError> {
        let statement = sqlx::query(S::Db::CLAIM_NEXT)
            .arg(S::Db::now())
            .arg(worker_id);
        fetch(self.db(), statement).await
    }

    async fn update_job_progress(&self, id: &str, progress: &Value) -> Result<(), StoreError> {
        sqlx::query("UPDATE jobs SET progress = $2 WHERE id = $1 AND status = 'running'")
            .arg(id)
            .arg(S::Db::json(Some(progress)))
            .execute(self.db())
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
        let finish = sqlx::query(
            "UPDATE jobs SET status = $2, result = $3, error = $4, finished_at = $5, \
             worker_id = NULL WHERE id = $1 AND status = 'running'",
        )
        .arg(id);
        execute_changed(self.db(), finishing(finish, status, result, error)).await
    }

    async fn release_job(&self, id: &str) -> Result<bool, StoreError> {
        let statement = sqlx::query(
            "UPDATE jobs SET status = CASE WHEN cancel_requested THEN 'cancelled' ELSE 'queued' END, \
             finished_at = CASE WHEN cancel_requested THEN $2 END, worker_id = NULL \
             WHERE id = $1 AND status = 'running'",
        )
        .arg(id)
        .arg(S::Db::now());
        execute_changed(self.db(), statement).await
    }

    async fn request_job_cancel(
        &self,
        tenant: &str,
        id: &str,
    ) -> Result<CancelOutcome, StoreError> {
        let cancel_queued = sqlx::query(
            "UPDATE jobs SET status = 'cancelled', cancel_requested = TRUE, finished_at = $3 \
             WHERE tenant = $1 AND id = $2 AND status = 'queued' RETURNING *",
        )
        .arg(tenant)
        .arg(id)
        .arg(S::Db::now());
        if let Some(job) = fetch(self.db(), cancel_queued).await? {
            return Ok(CancelOutcome::Cancelled(job));
        }
        let ask_running = sqlx::query(
            "UPDATE jobs SET cancel_requested = TRUE \
             WHERE tenant = $1 AND id = $2 AND status = 'running' RETURNING *",
        )
        .arg(tenant)
        .arg(id);
        if let Some(job) = fetch(self.db(), ask_running).await? {
            return Ok(CancelOutcome::Requested(job));
        }
        Ok(match self.job(tenant, id).await? {
            Some(job) => CancelOutcome::AlreadyFinished(job),
            None => CancelOutcome::NotFound,
        })
    }

    async fn requeue_interrupted_jobs(&self) -> Result<u64, StoreError> {
        S::Db::requeue_interrupted_jobs(self.pool()).await
    }

    async fn job_counts(&self) -> Result<(i64, i64), StoreError> {
        let row = sqlx::query::<S::Db>(
            "SELECT COUNT(*) FILTER (WHERE status = 'queued') AS queued, \
             COUNT(*) FILTER (WHERE status = 'running') AS running FROM jobs \
             WHERE status IN ('queued', 'running')",
        )
        .fetch_one(self.db())
        .await?;
        Ok((row.read("queued")?, row.read("running")?))
    }
}

#[async_trait]
impl<S> JobDeliveryStore for S
where
    S: SqlStore,
    S::Db: JobDialect,
{
    async fn claim_job(
        &self,
        id: &str,
        worker_id: &str,
        take_over: bool,
    ) -> Result<Option<Job>, StoreError> {
        let statement = sqlx::query(S::Db::CLAIM)
            .arg(id)
            .arg(worker_id)
            .arg(S::Db::now())
            .arg(take_over);
        fetch(self.db(), statement).await
    }

    async fn finish_claimed_job(
        &self,
        id: &str,
        worker_id: &str,
        status: JobStatus,
        result: Option<&Value>,
        error: Option<&str>,
    ) -> Result<bool, StoreError> {
        let finish = sqlx::query(
            "UPDATE jobs SET status = $3, result = $4, error = $5, finished_at = $6, \
             worker_id = NULL WHERE id = $1 AND status = 'running' AND worker_id = $2",
        )
        .arg(id)
        .arg(worker_id);
        execute_changed(self.db(), finishing(finish, status, result, error)).await
    }

    async fn release_claimed_job(
        &self,
        id: &str,
        worker_id: &str,
        error: Option<&str>,
        available_at: DateTime<Utc>,
    ) -> Result<Option<Job>, StoreError> {
        let statement = sqlx::query(
            "UPDATE jobs SET \
               status = CASE WHEN cancel_requested THEN 'cancelled' ELSE 'queued' END, \
               finished_at = CASE WHEN cancel_requested THEN $3 END, \
               error = COALESCE($4, error), available_at = $5, worker_id = NULL \
             WHERE id = $1 AND status = 'running' AND worker_id = $2 RETURNING *",
        )
        .arg(id)
        .arg(worker_id)
        .arg(S::Db::now())
        .arg(error)
        .arg(S::Db::timestamp(Some(available_at)));
        fetch(self.db(), statement).await
    }

    async fn queued_job_ids(
        &self,
        before: DateTime<Utc>,
        limit: i64,
    ) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query(S::Db::QUEUED_BEFORE)
            .arg(S::Db::timestamp(Some(before)))
            .arg(limit)
            .fetch_all(self.db())
            .await?;
        Ok(rows
            .iter()
            .map(|r| r.read("id"))
            .collect::<Result<_, _>>()?)
    }

    async fn running_jobs(&self, limit: i64) -> Result<Vec<(String, Option<String>)>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, worker_id FROM jobs WHERE status = 'running' ORDER BY created_at, id LIMIT $1",
        )
        .arg(limit)
        .fetch_all(self.db())
        .await?;
        Ok(rows
            .iter()
            .map(|r| Ok((r.read("id")?, r.read("worker_id")?)))
            .collect::<Result<_, sqlx::Error>>()?)
    }
}
