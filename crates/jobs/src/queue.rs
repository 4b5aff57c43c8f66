//! The job queue: a trait, and the in-process implementation of the embedded default.
//!
//! The metadata store is the queue's memory: submitting inserts a `queued` row, a worker
//! claims the oldest one atomically (`running`), and finishing moves it to a terminal status
//! exactly once. Nothing lives only in process memory except the wake-up signal and the
//! cancellation tokens of jobs running here, so a restart loses nothing:
//! [`InProcessQueue::recover`] puts jobs left `running` back in the queue.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use pynomaly_store::{CancelOutcome, DynMetadataStore, Job, JobStatus, NewJob, StoreError};
use thiserror::Error;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::runner::{JobControl, JobRunner, RunOutcome};

/// An error from the queue itself (not from a job, whose failure is its status).
#[derive(Debug, Error)]
pub enum QueueError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The queue's backend answered with an error or could not be reached (worth
    /// retrying shortly).
    #[error("job queue backend ({backend}) unavailable")]
    Unavailable {
        backend: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The queue's backend could not be set up.
    #[error("job queue backend: {0}")]
    Backend(String),
}

impl QueueError {
    /// Whether the metadata store cannot be reached now (worth trying again shortly),
    /// rather than that it refused the request.
    pub fn store_unreachable(&self) -> bool {
        matches!(self, QueueError::Store(e) if e.database_unreachable())
    }
}

/// What one step of a worker did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecutionOutcome {
    /// A job ran to a terminal status (or was released by a shutdown: `Queued`).
    JobDone { job_id: String, status: JobStatus },
    /// There was nothing to do.
    QueueEmpty,
}

/// Delivers jobs to workers. Implemented in process here, over Redis for scale-out.
#[async_trait]
pub trait JobQueue: Send + Sync + std::fmt::Debug {
    /// Enqueues a job; with an idempotency key already used, returns the first job and
    /// `false`.
    async fn submit(&self, job: NewJob) -> Result<(Job, bool), QueueError>;
    /// Cancels a queued job, or asks a running one to stop between chunks.
    async fn cancel(&self, tenant: &str, id: &str) -> Result<CancelOutcome, QueueError>;
    /// Claims and runs the oldest queued job, if any, on the calling task.
    async fn try_execute_job(&self) -> Result<ExecutionOutcome, QueueError>;
    /// Worker tasks alive in this process.
    fn workers(&self) -> usize;
    /// Jobs running in this process now.
    fn busy(&self) -> usize;
    /// What carries deliveries, for `/health`: `in_process` or `redis`.
    fn kind(&self) -> &'static str {
        "in_process"
    }
    /// Checks that the queue's backend answers (for health checks).
    async fn ping(&self) -> Result<(), QueueError> {
        Ok(())
    }
    /// Job workers alive anywhere in the deployment (`/health`'s `workers.active`): this
    /// process's worker tasks for the in-process queue, live worker processes for Redis.
    async fn live_workers(&self) -> Result<usize, QueueError> {
        Ok(self.workers())
    }
    /// The queue's connection pools by name, for metrics (none in process).
    fn pool_stats(&self) -> Vec<(&'static str, pynomaly_store::PoolStats)> {
        Vec::new()
    }
    /// Passes of the queue's reconciler (see `RedisQueue::reconcile`) in this process
    /// that failed, and the error of the last pass if it failed (`None` once one
    /// succeeds, and always for a queue without a reconciler).
    fn reconcile_failures(&self) -> (u64, Option<String>) {
        (0, None)
    }
    /// Starts `n` worker tasks in this process (and whatever the backend needs beside
    /// them, such as a heartbeat); each runs jobs until [`JobQueue::shutdown`].
    fn start_workers(self: Arc<Self>, n: usize) -> Vec<JoinHandle<()>>;
    /// Stops this process's workers: running jobs stop at their next chunk and go back
    /// to the queue (to another worker, or to the next start).
    fn shutdown(&self);
    /// This process's worker id (in logs, and in the jobs it runs).
    fn worker_id(&self) -> &str;
}

/// The jobs running in this process, by id, with the tokens that stop them: a
/// cancellation asked through this process stops its job at once (others notice the
/// stored request between chunks).
#[derive(Debug, Default)]
pub(crate) struct RunningJobs(Mutex<HashMap<String, CancellationToken>>);

impl RunningJobs {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, CancellationToken>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn insert(&self, id: &str, cancel: &CancellationToken) {
        self.lock().insert(id.to_string(), cancel.clone());
    }

    pub(crate) fn remove(&self, id: &str) {
        self.lock().remove(id);
    }

    pub(crate) fn contains(&self, id: &str) -> bool {
        self.lock().contains_key(id)
    }

    /// Stops the job a cancellation was just requested for, when it runs here.
    pub(crate) fn cancel_requested(&self, outcome: &CancelOutcome) {
        if let CancelOutcome::Requested(job) = outcome
            && let Some(token) = self.lock().get(&job.id)
        {
            token.cancel();
        }
    }
}

/// A job claimed by this process, not yet run.
#[derive(Debug)]
pub struct ClaimedJob {
    job: Job,
    cancel: CancellationToken,
}

impl ClaimedJob {
    /// The job's id.
    pub fn id(&self) -> &str {
        &self.job.id
    }
}

/// The embedded queue: worker tasks in this process, state in the metadata store.
#[derive(Debug)]
pub struct InProcessQueue {
    meta: DynMetadataStore,
    runner: Arc<JobRunner>,
    wake: Notify,
    running: RunningJobs,
    shutdown: CancellationToken,
    worker_id: String,
    workers: AtomicUsize,
    busy: AtomicUsize,
    poll: Duration,
}

impl InProcessQueue {
    /// A queue over `meta`, running jobs with `runner`. No worker runs until
    /// [`JobQueue::start_workers`]; tests drive it with
    /// [`JobQueue::try_execute_job`].
    pub fn new(meta: DynMetadataStore, runner: Arc<JobRunner>) -> Arc<Self> {
        Arc::new(Self {
            meta,
            runner,
            wake: Notify::new(),
            running: RunningJobs::default(),
            shutdown: CancellationToken::new(),
            worker_id: format!("inproc-{}", uuid::Uuid::new_v4()),
            workers: AtomicUsize::new(0),
            busy: AtomicUsize::new(0),
            poll: Duration::from_secs(1),
        })
    }

    /// At start-up: jobs a previous process left `running` go back to `queued`.
    ///
    /// # Errors
    /// The store failed.
    pub async fn recover(&self) -> Result<u64, QueueError> {
        let n = self.meta.requeue_interrupted_jobs().await?;
        if n > 0 {
            tracing::info!(
                jobs = n,
                "requeued jobs interrupted by the previous shutdown"
            );
        }
        Ok(n)
    }

    async fn worker_loop(self: Arc<Self>, index: usize) {
        self.workers.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(worker = index, "job worker started");
        while !self.shutdown.is_cancelled() {
            match self.try_execute_job().await {
                Ok(ExecutionOutcome::JobDone { .. }) => {}
                Ok(ExecutionOutcome::QueueEmpty) => {
                    tokio::select! {
                        () = self.wake.notified() => {}
                        () = tokio::time::sleep(self.poll) => {}
                        () = self.shutdown.cancelled() => {}
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, error.chain = ?e, "job worker step failed");
                    tokio::select! {
                        () = tokio::time::sleep(self.poll) => {}
                        () = self.shutdown.cancelled() => {}
                    }
                }
            }
        }
        self.workers.fetch_sub(1, Ordering::Relaxed);
    }

    /// Claims the oldest queued job for this process without running it (tests use this
    /// to act on a job while it is `running`).
    ///
    /// # Errors
    /// The store failed.
    pub async fn claim_next(&self) -> Result<Option<ClaimedJob>, QueueError> {
        let Some(job) = self.meta.claim_next_job(&self.worker_id).await? else {
            return Ok(None);
        };
        let cancel = CancellationToken::new();
        if job.cancel_requested {
            cancel.cancel();
        }
        self.running.insert(&job.id, &cancel);
        Ok(Some(ClaimedJob { job, cancel }))
    }

    /// Runs a claimed job to its end and records the outcome.
    ///
    /// # Errors
    /// The store failed while recording the outcome.
    pub async fn execute(&self, claimed: ClaimedJob) -> Result<ExecutionOutcome, QueueError> {
        self.busy.fetch_add(1, Ordering::Relaxed);
        let ClaimedJob { job, cancel } = claimed;
        let control = JobControl::new(cancel, self.shutdown.clone(), Arc::clone(&self.meta));
        let span = crate::trace_context::job_span(&job, &self.worker_id);
        let outcome = {
            let _entered = span.enter();
            tracing::info!(attempt = job.attempts, "job started");
            drop(_entered);
            tracing::Instrument::instrument(self.runner.run(&job, &control), span.clone()).await
        };
        self.running.remove(&job.id);
        self.busy.fetch_sub(1, Ordering::Relaxed);
        let status = match outcome {
            RunOutcome::Succeeded(result) => {
                self.meta
                    .finish_job(&job.id, JobStatus::Succeeded, Some(&result), None)
                    .await?;
                JobStatus::Succeeded
            }
            RunOutcome::Failed(reason) | RunOutcome::Retryable(reason) => {
                self.meta
                    .finish_job(&job.id, JobStatus::Failed, None, Some(&reason))
                    .await?;
                JobStatus::Failed
            }
            RunOutcome::Cancelled => {
                self.meta
                    .finish_job(&job.id, JobStatus::Cancelled, None, Some("cancelled"))
                    .await?;
                JobStatus::Cancelled
            }
            RunOutcome::Interrupted => {
                self.meta.release_job(&job.id).await?;
                JobStatus::Queued
            }
        };
        let _entered = span.enter();
        tracing::info!(status = status.as_str(), "job finished");
        Ok(ExecutionOutcome::JobDone {
            job_id: job.id,
            status,
        })
    }
}

#[async_trait]
impl JobQueue for InProcessQueue {
    async fn submit(&self, job: NewJob) -> Result<(Job, bool), QueueError> {
        let (job, created) = self.meta.create_job(job).await?;
        if created {
            self.wake.notify_one();
        }
        Ok((job, created))
    }

    async fn cancel(&self, tenant: &str, id: &str) -> Result<CancelOutcome, QueueError> {
        let outcome = self.meta.request_job_cancel(tenant, id).await?;
        self.running.cancel_requested(&outcome);
        Ok(outcome)
    }

    async fn try_execute_job(&self) -> Result<ExecutionOutcome, QueueError> {
        match self.claim_next().await? {
            Some(claimed) => self.execute(claimed).await,
            None => Ok(ExecutionOutcome::QueueEmpty),
        }
    }

    fn workers(&self) -> usize {
        self.workers.load(Ordering::Relaxed)
    }

    fn busy(&self) -> usize {
        self.busy.load(Ordering::Relaxed)
    }

    fn start_workers(self: Arc<Self>, n: usize) -> Vec<JoinHandle<()>> {
        (0..n)
            .map(|i| {
                let queue = Arc::clone(&self);
                tokio::spawn(async move { queue.worker_loop(i).await })
            })
            .collect()
    }

    fn shutdown(&self) {
        self.shutdown.cancel();
    }

    fn worker_id(&self) -> &str {
        &self.worker_id
    }
}
