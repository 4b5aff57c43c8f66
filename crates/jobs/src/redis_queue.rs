//! The scale-out queue: job state in the metadata store (Postgres), delivery through a
//! Redis stream read by a consumer group, so every API instance submits and every worker
//! process runs.
//!
//! ## Guarantees, and what gives each
//! - **One worker at a time per job.** A delivery (stream entry) goes to one consumer; the
//!   worker then claims the job in the database (`queued → running`, fenced by its worker
//!   id), so a duplicate delivery finds it taken and is acknowledged without running.
//! - **A dead worker's job is run again.** While a job runs, its worker renews its lease
//!   every `heartbeat` (re-claiming its own pending entry, which resets the entry's idle
//!   time — only while it still owns it, in one Lua script). An entry idle past `lease` is
//!   taken by another worker with `XAUTOCLAIM`, which takes the job over in the database;
//!   the old worker's later writes are refused by the fencing, and it stops when its next
//!   renewal finds the entry another worker's (or gone with the job ended). An entry gone
//!   while the job still runs means Redis lost its data: the worker carries on.
//! - **Retries with backoff, never silently dropped.** A failure of the job's surroundings
//!   (storage, database) puts the job back to `queued` with the reason and a due time
//!   `backoff × 2^(attempt-1)` later (a sorted set that workers promote into the stream);
//!   after `max_attempts` attempts — a worker dying counts as one — the job is `failed`
//!   with the last reason. Failures of the data itself (a bad value on line 12) fail at
//!   once: another attempt would give the same answer.
//! - **Cancel.** `DELETE` cancels a queued job in the database at once (its delivery is
//!   then acknowledged unrun); for a running job it sets `cancel_requested`, which the
//!   job's worker reads on every renewal and stops at the next chunk.
//! - **Idempotency across instances** rests on the database's unique index: the instance
//!   that loses the race returns the first job and adds no delivery.
//! - **One result.** Outputs go to paths fixed by the job id and source index (a re-run
//!   overwrites them), and finishing is fenced by the worker id, so a job re-run after a
//!   crash reports one result.
//! - **Nothing lost between the database and Redis.** A submission that stopped between
//!   the insert and the `XADD` leaves a `queued` row; workers re-send jobs queued for longer
//!   than `redeliver_after` (a duplicate delivery is harmless, see above). A job `running`
//!   for a worker with no heartbeat is handed back too, in case Redis lost its delivery.
//!
//! Redis keys, all under the configured prefix `<p>` made a hash tag (`{<p>}`, see
//! [`pynomaly_redis::slot_tag`]): `{<p>}:jobs` (stream, group `workers`), `{<p>}:delayed`
//! (sorted set of job ids by due time), `{<p>}:workers` (sorted set of worker processes by
//! last heartbeat, which `/health` counts). On a Redis Cluster the tag puts all three in one
//! slot, so the promotion script (delayed set and stream) and the lease script run where
//! their keys are; on one server it changes nothing but the names.
//!
//! redis-rs times out a response after 500 ms by default: commands use a pool with a longer
//! timeout, and blocking reads (`XREADGROUP … BLOCK`) their own pool whose timeout exceeds
//! the block ([`RedisQueue::connect`] builds both; a process that builds its pools itself
//! passes them to [`RedisQueue::with_pools`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use deadpool_redis::redis::streams::{StreamAutoClaimReply, StreamId, StreamReadReply};
use deadpool_redis::redis::{self, Script};
use pynomaly_redis::{RedisPool, RedisTarget};
use pynomaly_store::{CancelOutcome, DynMetadataStore, Job, JobStatus, NewJob};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::queue::{ExecutionOutcome, JobQueue, QueueError, RunningJobs};
use crate::runner::{JobControl, JobRunner, RunOutcome};

const GROUP: &str = "workers";

/// Moves due job ids from the delayed set into the stream, atomically. KEYS: the delayed
/// set and the stream, which share the prefix's hash tag (one cluster slot).
const PROMOTE: &str = r"
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
for _, id in ipairs(due) do
  redis.call('XADD', KEYS[2], '*', 'job', id)
  redis.call('ZREM', KEYS[1], id)
end
return #due
";

/// Renews a lease: resets the entry's idle time, only if this consumer still owns it.
/// Returns 1 (renewed), 0 (another consumer owns the entry) or -1 (no such pending entry:
/// Redis lost it, or another consumer took it over and has finished). KEYS: the stream
/// alone.
const RENEW: &str = r"
local p = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)
if #p == 0 then return -1 end
if p[1][2] ~= ARGV[2] then return 0 end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'JUSTID')
return 1
";

/// Jobs sent again at most per reconciliation pass (the regular sweep sends the rest).
const RECONCILE_BATCH: i64 = 10_000;

/// How long a finished job's outcome is retried while the metadata store is away, before
/// the delivery is left for a takeover (which runs the job again).
const RECORD_RETRY_FOR: Duration = Duration::from_secs(600);

/// Tuning of the Redis queue.
#[derive(Debug, Clone)]
pub struct RedisQueueConfig {
    /// Prefix of every key (one per deployment; tests use one each).
    pub prefix: String,
    /// A running job whose worker has not renewed its lease for this long is taken over.
    pub lease: Duration,
    /// How often a running job's lease is renewed and its cancellation checked.
    pub heartbeat: Duration,
    /// Attempts before a job is `failed` (a worker dying counts as one).
    pub max_attempts: i64,
    /// Wait before the second attempt; doubled for each further one (capped at 5 minutes).
    pub backoff: Duration,
    /// How long a worker's read waits for a delivery.
    pub block: Duration,
    /// Jobs `queued` in the database for longer than this are sent again.
    pub redeliver_after: Duration,
    /// After Redis lost the queue's state, how old a `queued` job must be to be sent again
    /// at once (a younger one may be mid-submission, its send still to come); the others,
    /// and jobs left `running` by workers that are gone, are handled this long after the
    /// loss was noticed (see [`RedisQueue::reconcile`]).
    pub reconcile_grace: Duration,
}

impl Default for RedisQueueConfig {
    fn default() -> Self {
        Self {
            prefix: "pynomaly".into(),
            lease: Duration::from_secs(30),
            heartbeat: Duration::from_secs(2),
            max_attempts: 3,
            backoff: Duration::from_secs(2),
            block: Duration::from_secs(2),
            redeliver_after: Duration::from_secs(300),
            reconcile_grace: Duration::from_secs(5),
        }
    }
}

/// A delivery taken from the stream: the entry and the job it names.
#[derive(Debug, Clone)]
pub struct Delivery {
    entry_id: String,
    job_id: String,
    take_over: bool,
}

/// A job this worker claimed (delivered and `running` for it), not yet run.
#[derive(Debug)]
pub struct ClaimedDelivery {
    delivery: Delivery,
    job: Job,
}

impl ClaimedDelivery {
    /// The claimed job.
    pub fn job(&self) -> &Job {
        &self.job
    }
}

/// Jobs delivered through Redis, state in the metadata store.
pub struct RedisQueue {
    meta: DynMetadataStore,
    runner: Arc<JobRunner>,
    pool: RedisPool,
    blocking: RedisPool,
    config: RedisQueueConfig,
    stream: String,
    delayed: String,
    workers_key: String,
    /// Present while Redis holds the queue's state (see [`RedisQueue::reconcile`]).
    epoch_key: String,
    worker_id: String,
    promote: Script,
    renew: Script,
    running: RunningJobs,
    shutdown: CancellationToken,
    workers: AtomicUsize,
    busy: AtomicUsize,
    /// Reconciler passes that failed here, and the last pass's error while it fails.
    reconcile_failed: std::sync::atomic::AtomicU64,
    reconcile_error: std::sync::Mutex<Option<String>>,
}

impl std::fmt::Debug for RedisQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The pools and scripts say nothing useful, and the pools know the Redis URL.
        f.debug_struct("RedisQueue")
            .field("config", &self.config)
            .field("worker_id", &self.worker_id)
            .finish_non_exhaustive()
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl RedisQueue {
    /// Connects to the Redis (one server or a cluster, see [`RedisTarget::parse`]) at
    /// `url` with pools of its own, and creates the consumer group if needed.
    ///
    /// # Errors
    /// The URL is invalid or Redis cannot be reached.
    pub async fn connect(
        url: &str,
        config: RedisQueueConfig,
        meta: DynMetadataStore,
        runner: Arc<JobRunner>,
    ) -> Result<Arc<Self>, QueueError> {
        let target = RedisTarget::parse(url, false)
            .map_err(|e| QueueError::Backend(format!("REDIS_URL: {e}")))?;
        let (commands, blocking) = Self::pools(&target, &config)?;
        Self::with_pools(commands, blocking, config, meta, runner).await
    }

    /// The two pools a queue needs on `target`: commands (answered within 5 s) and
    /// blocking reads (answered within the block and 5 s more).
    ///
    /// # Errors
    /// The client rejects the target.
    pub fn pools(
        target: &RedisTarget,
        config: &RedisQueueConfig,
    ) -> Result<(RedisPool, RedisPool), QueueError> {
        let pool = |timeout, max| {
            target
                .pool(timeout, max)
                .map_err(|e| QueueError::Backend(e.to_string()))
        };
        Ok((
            pool(Duration::from_secs(5), 32)?,
            pool(config.block + Duration::from_secs(5), 64)?,
        ))
    }

    /// A queue over these pools ([`RedisQueue::pools`]: `blocking` answers within more
    /// than `config.block`); creates the consumer group if needed.
    ///
    /// # Errors
    /// Redis cannot be reached.
    pub async fn with_pools(
        pool: RedisPool,
        blocking: RedisPool,
        config: RedisQueueConfig,
        meta: DynMetadataStore,
        runner: Arc<JobRunner>,
    ) -> Result<Arc<Self>, QueueError> {
        let p = pynomaly_redis::slot_tag(&config.prefix);
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "worker".into());
        let queue = Self {
            meta,
            runner,
            pool,
            blocking,
            stream: format!("{p}:jobs"),
            delayed: format!("{p}:delayed"),
            workers_key: format!("{p}:workers"),
            epoch_key: format!("{p}:epoch"),
            worker_id: format!(
                "{host}-{}-{}",
                std::process::id(),
                &uuid::Uuid::new_v4().simple().to_string()[..8]
            ),
            promote: Script::new(PROMOTE),
            renew: Script::new(RENEW),
            running: RunningJobs::default(),
            shutdown: CancellationToken::new(),
            workers: AtomicUsize::new(0),
            busy: AtomicUsize::new(0),
            reconcile_failed: std::sync::atomic::AtomicU64::new(0),
            reconcile_error: std::sync::Mutex::new(None),
            config,
        };
        queue.ensure_group().await?;
        Ok(Arc::new(queue))
    }

    /// Creates the stream and its consumer group unless they exist.
    async fn ensure_group(&self) -> Result<(), QueueError> {
        let mut conn = self.pool.get().await?;
        let created: Result<(), redis::RedisError> = redis::cmd("XGROUP")
            .arg("CREATE")
            .arg(&self.stream)
            .arg(GROUP)
            .arg("0")
            .arg("MKSTREAM")
            .query_async(&mut conn)
            .await;
        match created {
            Ok(()) => Ok(()),
            Err(e) if e.code() == Some("BUSYGROUP") => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Notices when Redis holds none of the queue's state — a first start, or Redis lost
    /// its data (a restart without persistence, a failover that dropped recent writes, a
    /// `FLUSHALL`) — and rebuilds it from the metadata store, which is the record of every
    /// job: recreates the consumer group and sends again the jobs `queued` for longer than
    /// `reconcile_grace`. One process does it per loss: the one whose `SET NX` of the epoch
    /// key wins. Returns when the loss was noticed (`None`: Redis had the state), for
    /// [`RedisQueue::reconcile_after_grace`] to finish the job once the grace has passed.
    ///
    /// A job sent twice runs once: its claim in the metadata store is fenced.
    ///
    /// # Errors
    /// The store or Redis failed.
    pub async fn reconcile(&self) -> Result<Option<chrono::DateTime<chrono::Utc>>, QueueError> {
        let won: Option<String> = {
            let mut conn = self.pool.get().await?;
            redis::cmd("SET")
                .arg(&self.epoch_key)
                .arg(&self.worker_id)
                .arg("NX")
                .query_async(&mut conn)
                .await?
        };
        if won.is_none() {
            return Ok(None);
        }
        let noticed = chrono::Utc::now();
        self.ensure_group().await?;
        let grace = chrono::Duration::from_std(self.config.reconcile_grace)
            .unwrap_or_else(|_| chrono::Duration::seconds(5));
        let sent = self.send_queued_before(noticed - grace).await?;
        tracing::warn!(
            jobs_sent_again = sent,
            "Redis holds none of the job queue's state (a first start, or Redis lost its \
             data): rebuilt it from the metadata store"
        );
        Ok(Some(noticed))
    }

    /// The second half of [`RedisQueue::reconcile`], `reconcile_grace` after the loss was
    /// `noticed`: sends again the jobs queued before then that are still queued (their send
    /// may have been lost with Redis), and hands back the jobs left `running` by workers
    /// that have not come back (live workers have re-registered their heartbeats by then).
    /// Returns how many jobs were sent again.
    ///
    /// # Errors
    /// The store or Redis failed.
    pub async fn reconcile_after_grace(
        &self,
        noticed: chrono::DateTime<chrono::Utc>,
    ) -> Result<usize, QueueError> {
        let queued = self.send_queued_before(noticed).await?;
        let running = self.recover_orphans().await?;
        Ok(queued + running)
    }

    /// Sends every job queued in the metadata store before `before`.
    async fn send_queued_before(
        &self,
        before: chrono::DateTime<chrono::Utc>,
    ) -> Result<usize, QueueError> {
        let ids = self.meta.queued_job_ids(before, RECONCILE_BATCH).await?;
        for id in &ids {
            self.send(id).await?;
        }
        Ok(ids.len())
    }

    /// The configuration.
    pub fn config(&self) -> &RedisQueueConfig {
        &self.config
    }

    async fn send(&self, job_id: &str) -> Result<(), QueueError> {
        let mut conn = self.pool.get().await?;
        let _: String = redis::cmd("XADD")
            .arg(&self.stream)
            .arg("*")
            .arg("job")
            .arg(job_id)
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    async fn ack(&self, entry_id: &str) -> Result<(), QueueError> {
        let mut conn = self.pool.get().await?;
        let _: (i64, i64) = redis::pipe()
            .cmd("XACK")
            .arg(&self.stream)
            .arg(GROUP)
            .arg(entry_id)
            .cmd("XDEL")
            .arg(&self.stream)
            .arg(entry_id)
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    /// Moves retries whose backoff has passed into the stream. Returns how many.
    ///
    /// # Errors
    /// Redis failed.
    pub async fn promote_due(&self) -> Result<u64, QueueError> {
        let mut conn = self.pool.get().await?;
        let n: u64 = self
            .promote
            .key(&self.delayed)
            .key(&self.stream)
            .arg(now_ms())
            .arg(100)
            .invoke_async(&mut conn)
            .await?;
        Ok(n)
    }

    /// Sends again the jobs queued in the database for longer than `redeliver_after` (a
    /// submission that stopped between the insert and the send). Returns how many.
    ///
    /// # Errors
    /// The store or Redis failed.
    pub async fn redeliver_overdue(&self) -> Result<usize, QueueError> {
        let horizon = chrono::Duration::from_std(self.config.redeliver_after)
            .unwrap_or_else(|_| chrono::Duration::seconds(300));
        let ids = self
            .meta
            .queued_job_ids(chrono::Utc::now() - horizon, 100)
            .await?;
        for id in &ids {
            self.send(id).await?;
        }
        if !ids.is_empty() {
            tracing::warn!(jobs = ids.len(), "re-sent jobs queued without a delivery");
        }
        Ok(ids.len())
    }

    /// Hands back jobs `running` for a worker that is no longer alive (no heartbeat within
    /// the lease) when the queue holds no trace of them — Redis lost its data, say. Jobs
    /// whose delivery is still pending are taken over by `XAUTOCLAIM` anyway; handing
    /// them back as well is harmless (the claim is fenced). Returns how many were sent
    /// again.
    ///
    /// # Errors
    /// The store or Redis failed.
    pub async fn recover_orphans(&self) -> Result<usize, QueueError> {
        let window = self.config.lease.max(3 * self.config.heartbeat);
        let since = now_ms().saturating_sub(ms(window));
        let live: Vec<String> = {
            let mut conn = self.pool.get().await?;
            redis::cmd("ZRANGEBYSCORE")
                .arg(&self.workers_key)
                .arg(since)
                .arg("+inf")
                .query_async(&mut conn)
                .await?
        };
        let mut sent = 0;
        for (id, worker) in self.meta.running_jobs(500).await? {
            let Some(worker) = worker else { continue };
            if worker == self.worker_id || live.contains(&worker) || self.running.contains(&id) {
                continue;
            }
            let reason = format!("its worker {worker} stopped; the job was sent again");
            let released = self
                .meta
                .release_claimed_job(&id, &worker, Some(&reason), chrono::Utc::now())
                .await?;
            if released.is_some_and(|j| j.status == JobStatus::Queued) {
                self.send(&id).await?;
                sent += 1;
                tracing::warn!(job_id = %id, %worker, "re-sent a job whose worker vanished");
            }
        }
        Ok(sent)
    }

    fn parse_entry(entry: &StreamId, take_over: bool) -> Option<Delivery> {
        let job_id: Option<String> = entry.get("job");
        match job_id {
            Some(job_id) => Some(Delivery {
                entry_id: entry.id.clone(),
                job_id,
                take_over,
            }),
            None => {
                tracing::warn!(entry = %entry.id, "stream entry without a job id");
                None
            }
        }
    }

    /// Takes the next delivery: first an entry whose worker's lease expired, else a new
    /// one, waiting at most `block` for it (`None`: do not wait).
    ///
    /// # Errors
    /// Redis failed.
    pub async fn receive(&self, block: Option<Duration>) -> Result<Option<Delivery>, QueueError> {
        self.promote_due().await?;
        let mut conn = self.pool.get().await?;
        let reclaimed: Result<StreamAutoClaimReply, redis::RedisError> = redis::cmd("XAUTOCLAIM")
            .arg(&self.stream)
            .arg(GROUP)
            .arg(&self.worker_id)
            .arg(ms(self.config.lease))
            .arg("0-0")
            .arg("COUNT")
            .arg(1)
            .query_async(&mut conn)
            .await;
        drop(conn);
        let reclaimed = match reclaimed {
            Ok(r) => r,
            // Redis lost the group (its data went): recreate it; the reconciler sends the
            // jobs again.
            Err(e) if e.code() == Some("NOGROUP") => {
                tracing::warn!("the job stream's consumer group is gone: recreating it");
                self.ensure_group().await?;
                return Ok(None);
            }
            Err(e) => return Err(e.into()),
        };
        if let Some(entry) = reclaimed.claimed.first() {
            match Self::parse_entry(entry, true) {
                Some(d) => {
                    tracing::warn!(job_id = %d.job_id, "taking over a job whose worker stopped renewing its lease");
                    return Ok(Some(d));
                }
                None => self.ack(&entry.id).await?,
            }
        }
        let mut read = redis::cmd("XREADGROUP");
        read.arg("GROUP")
            .arg(GROUP)
            .arg(&self.worker_id)
            .arg("COUNT")
            .arg(1);
        let reply: Option<StreamReadReply> = match block {
            Some(wait) => {
                read.arg("BLOCK").arg(ms(wait).max(1));
                read.arg("STREAMS").arg(&self.stream).arg(">");
                let mut conn = self.blocking.get().await?;
                read.query_async(&mut conn).await?
            }
            None => {
                read.arg("STREAMS").arg(&self.stream).arg(">");
                let mut conn = self.pool.get().await?;
                read.query_async(&mut conn).await?
            }
        };
        let entry = reply
            .as_ref()
            .and_then(|r| r.keys.first())
            .and_then(|k| k.ids.first());
        match entry {
            Some(entry) => match Self::parse_entry(entry, false) {
                Some(d) => Ok(Some(d)),
                None => {
                    self.ack(&entry.id).await?;
                    Ok(None)
                }
            },
            None => Ok(None),
        }
    }

    /// Claims a delivered job in the database. `None` when there is nothing to run: the
    /// job finished, was cancelled, or runs elsewhere (the delivery is then acknowledged),
    /// or it already runs here. A job past its attempts is failed here.
    ///
    /// # Errors
    /// The store or Redis failed.
    pub async fn claim(&self, d: Delivery) -> Result<Option<ClaimedDelivery>, QueueError> {
        if self.running.contains(&d.job_id) {
            // Our own entry came back to us after a slow renewal: it is still running here.
            return Ok(None);
        }
        let Some(job) = self
            .meta
            .claim_job(&d.job_id, &self.worker_id, d.take_over)
            .await?
        else {
            self.ack(&d.entry_id).await?;
            return Ok(None);
        };
        if job.attempts > self.config.max_attempts {
            let reason = format!(
                "gave up after {} attempts: the job's worker stopped (no heartbeat within the \
                 {} s lease) {} times{}",
                self.config.max_attempts,
                self.config.lease.as_secs(),
                job.attempts - 1,
                job.error
                    .as_deref()
                    .map(|e| format!("; last error: {e}"))
                    .unwrap_or_default()
            );
            self.meta
                .finish_claimed_job(
                    &job.id,
                    &self.worker_id,
                    JobStatus::Failed,
                    None,
                    Some(&reason),
                )
                .await?;
            self.ack(&d.entry_id).await?;
            tracing::error!(job_id = %job.id, "{reason}");
            return Ok(None);
        }
        Ok(Some(ClaimedDelivery { delivery: d, job }))
    }

    /// Renews the lease of a running job and checks whether it was cancelled, every
    /// heartbeat, until the job ends (this future never completes by itself).
    async fn keep_alive(&self, d: &Delivery, cancel: &CancellationToken, lost: &CancellationToken) {
        let mut tick = tokio::time::interval(self.config.heartbeat);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        let mut delivery_gone_said = false;
        loop {
            tick.tick().await;
            let lease = self.renew_lease(&d.entry_id).await;
            let job = self.meta.job_by_id(&d.job_id).await;
            match lease {
                Ok(1) => {}
                Ok(0) => {
                    tracing::warn!(job_id = %d.job_id, "lost the job's lease to another worker: stopping it");
                    lost.cancel();
                }
                Ok(_) => match &job {
                    // The delivery is gone yet the job still runs: Redis lost its data (a
                    // takeover leaves the entry pending for the new worker, answered 0).
                    // Stopping would leave the job `running` with nobody to run it, for
                    // good: this worker is alive, so nothing hands it back. Carry on; the
                    // store's claim fences the result should another worker run it too.
                    Ok(Some(j)) if j.status == JobStatus::Running => {
                        if !delivery_gone_said {
                            delivery_gone_said = true;
                            tracing::warn!(job_id = %d.job_id, "the job's delivery is gone from Redis (it lost its data): carrying on with the job");
                        }
                    }
                    Ok(_) => {
                        tracing::warn!(job_id = %d.job_id, "the job ended elsewhere: stopping it");
                        lost.cancel();
                    }
                    Err(_) => {}
                },
                Err(e) => tracing::warn!(error = %e, "could not renew a job's lease"),
            }
            match job {
                Ok(Some(job)) if job.cancel_requested => cancel.cancel(),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "could not check a job's cancellation"),
            }
        }
    }

    /// 1: renewed; 0: another worker owns the delivery; -1: the delivery is gone (see
    /// [`RENEW`]).
    async fn renew_lease(&self, entry_id: &str) -> Result<i64, QueueError> {
        let mut conn = self.pool.get().await?;
        let renewed: i64 = self
            .renew
            .key(&self.stream)
            .arg(GROUP)
            .arg(&self.worker_id)
            .arg(entry_id)
            .invoke_async(&mut conn)
            .await?;
        Ok(renewed)
    }

    fn backoff(&self, attempt: i64) -> Duration {
        let exp = u32::try_from(attempt.clamp(1, 20) - 1).unwrap_or(0);
        self.config
            .backoff
            .saturating_mul(2u32.saturating_pow(exp))
            .min(Duration::from_secs(300))
    }

    /// Runs a claimed job to its end, renewing its lease meanwhile, and records the outcome.
    ///
    /// # Errors
    /// The store or Redis failed while recording the outcome (the delivery then stays
    /// pending and is taken over after the lease).
    pub async fn execute(&self, claimed: ClaimedDelivery) -> Result<ExecutionOutcome, QueueError> {
        let ClaimedDelivery { delivery: d, job } = claimed;
        let cancel = CancellationToken::new();
        let lost = self.shutdown.child_token();
        // A cancel asked between the claim and now is seen before the first chunk.
        if job.cancel_requested
            || self
                .meta
                .job_by_id(&job.id)
                .await?
                .is_some_and(|j| j.cancel_requested)
        {
            cancel.cancel();
        }
        self.running.insert(&job.id, &cancel);
        self.busy.fetch_add(1, Ordering::Relaxed);
        let control = JobControl::new(cancel.clone(), lost.clone(), Arc::clone(&self.meta));
        let span = crate::trace_context::job_span(&job, &self.worker_id);
        span.in_scope(|| tracing::info!(attempt = job.attempts, "job started"));
        let run = tracing::Instrument::instrument(self.runner.run(&job, &control), span.clone());
        let outcome = tokio::select! {
            outcome = run => outcome,
            () = self.keep_alive(&d, &cancel, &lost) => unreachable!("keep_alive never ends"),
        };
        self.busy.fetch_sub(1, Ordering::Relaxed);
        // The lease is kept while the outcome waits for the store, so nobody runs it again.
        let recorded = tokio::select! {
            recorded = self.record_when_reachable(&d, &job, outcome, &lost) => recorded,
            () = self.keep_alive(&d, &cancel, &lost) => unreachable!("keep_alive never ends"),
        };
        self.running.remove(&job.id);
        let status = recorded?;
        span.in_scope(|| tracing::info!(status = status.as_str(), "job finished"));
        Ok(ExecutionOutcome::JobDone {
            job_id: job.id,
            status,
        })
    }

    /// [`Self::record`], retried with backoff while the metadata store cannot be reached
    /// (for at most [`RECORD_RETRY_FOR`], and not past shutdown or a lost lease): a job that
    /// finished during a database outage is recorded once it ends, not run again after its
    /// lease. Each way of recording writes the store first, so a failed write changed
    /// nothing and is safe to repeat; Redis failing after it leaves the delivery to the
    /// reconciler, as before.
    async fn record_when_reachable(
        &self,
        d: &Delivery,
        job: &Job,
        outcome: RunOutcome,
        lost: &CancellationToken,
    ) -> Result<JobStatus, QueueError> {
        let started = std::time::Instant::now();
        let mut wait = Duration::from_millis(200);
        loop {
            let e = match self.record(d, job, outcome.clone(), lost).await {
                Err(e) if e.store_unreachable() => e,
                recorded => return recorded,
            };
            if self.shutdown.is_cancelled()
                || lost.is_cancelled()
                || started.elapsed() + wait > RECORD_RETRY_FOR
            {
                return Err(e);
            }
            tracing::warn!(job_id = %job.id, error = %e, retry_in_s = wait.as_secs_f64(), "cannot record the job's outcome yet; retrying");
            tokio::select! {
                () = tokio::time::sleep(wait) => {}
                () = self.shutdown.cancelled() => {}
            }
            wait = (wait * 2).min(Duration::from_secs(5));
        }
    }

    async fn record(
        &self,
        d: &Delivery,
        job: &Job,
        outcome: RunOutcome,
        lost: &CancellationToken,
    ) -> Result<JobStatus, QueueError> {
        let me = &self.worker_id;
        let finish = |status, result, error| async move {
            let fenced = self
                .meta
                .finish_claimed_job(&job.id, me, status, result, error)
                .await?;
            if !fenced {
                tracing::warn!(job_id = %job.id, "another worker took the job over; this run's outcome is discarded");
            }
            self.ack(&d.entry_id).await?;
            Ok::<_, QueueError>(status)
        };
        match outcome {
            RunOutcome::Succeeded(result) => {
                finish(JobStatus::Succeeded, Some(&result), None).await
            }
            RunOutcome::Failed(reason) => finish(JobStatus::Failed, None, Some(&reason)).await,
            RunOutcome::Cancelled => finish(JobStatus::Cancelled, None, Some("cancelled")).await,
            RunOutcome::Retryable(reason) if job.attempts >= self.config.max_attempts => {
                let reason = format!("failed after {} attempts: {reason}", job.attempts);
                finish(JobStatus::Failed, None, Some(&reason)).await
            }
            RunOutcome::Retryable(reason) => {
                let wait = self.backoff(job.attempts);
                let due = chrono::Utc::now()
                    + chrono::Duration::from_std(wait).unwrap_or_else(|_| chrono::Duration::zero());
                let released = self
                    .meta
                    .release_claimed_job(&job.id, me, Some(&reason), due)
                    .await?;
                if released
                    .as_ref()
                    .is_some_and(|j| j.status == JobStatus::Queued)
                {
                    let mut conn = self.pool.get().await?;
                    let _: i64 = redis::cmd("ZADD")
                        .arg(&self.delayed)
                        .arg(now_ms() + ms(wait))
                        .arg(&job.id)
                        .query_async(&mut conn)
                        .await?;
                    tracing::warn!(job_id = %job.id, attempt = job.attempts, retry_in_s = wait.as_secs_f64(), %reason, "job attempt failed; retrying");
                }
                self.ack(&d.entry_id).await?;
                Ok(released.map_or(JobStatus::Queued, |j| j.status))
            }
            RunOutcome::Interrupted if lost.is_cancelled() && !self.shutdown.is_cancelled() => {
                // The lease went to another worker, which runs the job now: leave its
                // delivery alone.
                Ok(JobStatus::Running)
            }
            RunOutcome::Interrupted => {
                // Shutting down: hand the job back at once rather than after the lease.
                let released = self
                    .meta
                    .release_claimed_job(&job.id, me, None, chrono::Utc::now())
                    .await?;
                if released
                    .as_ref()
                    .is_some_and(|j| j.status == JobStatus::Queued)
                {
                    self.send(&job.id).await?;
                }
                self.ack(&d.entry_id).await?;
                Ok(released.map_or(JobStatus::Queued, |j| j.status))
            }
        }
    }

    async fn worker_loop(self: Arc<Self>, index: usize) {
        self.workers.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(worker = index, "job worker started");
        while !self.shutdown.is_cancelled() {
            let step = tokio::select! {
                step = self.step(Some(self.config.block)) => step,
                () = self.shutdown.cancelled() => break,
            };
            if let Err(e) = step {
                tracing::error!(error = %e, error.chain = ?e, "job worker step failed");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                    () = self.shutdown.cancelled() => {}
                }
            }
        }
        self.workers.fetch_sub(1, Ordering::Relaxed);
    }

    /// Records how a reconciler pass went (for `/health` and the metrics).
    fn record_reconcile(&self, outcome: Result<(), String>) {
        let mut last = self
            .reconcile_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match outcome {
            Ok(()) => *last = None,
            Err(e) => {
                self.reconcile_failed.fetch_add(1, Ordering::Relaxed);
                *last = Some(e);
            }
        }
    }

    async fn heartbeat_loop(self: Arc<Self>) {
        let mut tick = tokio::time::interval(self.config.heartbeat);
        let mut last_sweep = std::time::Instant::now();
        // A loss of Redis's state noticed, and when to finish reconciling it.
        let mut reconciling: Option<(chrono::DateTime<chrono::Utc>, std::time::Instant)> = None;
        // Whether the last heartbeat could not reach Redis.
        let mut redis_away = false;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = self.shutdown.cancelled() => break,
            }
            match self.register_heartbeat().await {
                Ok(()) if redis_away => {
                    // Redis is back: submissions made while it was away are queued in the
                    // metadata store without a delivery; send them now rather than at the
                    // next sweep.
                    redis_away = false;
                    let now = chrono::Utc::now();
                    tracing::info!("Redis answers again: sending the jobs queued meanwhile");
                    reconciling = Some((now, std::time::Instant::now()));
                }
                Ok(()) => {}
                Err(e) => {
                    redis_away = true;
                    tracing::warn!(error = %e, "could not record the worker heartbeat");
                }
            }
            let checked = match self.reconcile().await {
                Ok(Some(noticed)) => {
                    let due = std::time::Instant::now() + self.config.reconcile_grace;
                    reconciling = Some((noticed, due));
                    Ok(())
                }
                Ok(None) => Ok(()),
                Err(e) => {
                    tracing::warn!(error = %e, "could not check the job queue's state in Redis");
                    Err(format!("cannot check the queue's state in Redis: {e}"))
                }
            };
            let finished = match reconciling {
                Some((noticed, due)) if checked.is_ok() && std::time::Instant::now() >= due => {
                    match self.reconcile_after_grace(noticed).await {
                        Ok(n) => {
                            reconciling = None;
                            tracing::info!(
                                jobs_sent_again = n,
                                "job queue reconciled with the metadata store"
                            );
                            Ok(())
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "could not finish reconciling the job queue");
                            Err(format!("cannot re-send the jobs Redis lost: {e}"))
                        }
                    }
                }
                _ => Ok(()),
            };
            self.record_reconcile(checked.and(finished));
            if last_sweep.elapsed() >= self.config.redeliver_after / 2 {
                last_sweep = std::time::Instant::now();
                if let Err(e) = self.redeliver_overdue().await {
                    tracing::warn!(error = %e, "could not re-send overdue jobs");
                }
                if let Err(e) = self.recover_orphans().await {
                    tracing::warn!(error = %e, "could not recover jobs of vanished workers");
                }
            }
        }
        if let Err(e) = self.unregister().await {
            tracing::warn!(error = %e, "could not remove the worker heartbeat");
        }
    }

    /// Records that this worker process is alive now.
    ///
    /// # Errors
    /// Redis failed.
    pub async fn register_heartbeat(&self) -> Result<(), QueueError> {
        let now = now_ms();
        let stale = now.saturating_sub(10 * ms(self.config.heartbeat).max(1000));
        let mut conn = self.pool.get().await?;
        let _: (i64, i64) = redis::pipe()
            .cmd("ZADD")
            .arg(&self.workers_key)
            .arg(now)
            .arg(&self.worker_id)
            .cmd("ZREMRANGEBYSCORE")
            .arg(&self.workers_key)
            .arg("-inf")
            .arg(stale)
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    async fn unregister(&self) -> Result<(), QueueError> {
        let mut conn = self.pool.get().await?;
        let _: i64 = redis::cmd("ZREM")
            .arg(&self.workers_key)
            .arg(&self.worker_id)
            .query_async(&mut conn)
            .await?;
        Ok(())
    }

    /// One step of a worker: receive, claim, run. `QueueEmpty` when nothing was run.
    async fn step(&self, block: Option<Duration>) -> Result<ExecutionOutcome, QueueError> {
        loop {
            let Some(delivery) = self.receive(block).await? else {
                return Ok(ExecutionOutcome::QueueEmpty);
            };
            if let Some(claimed) = self.claim(delivery).await? {
                return self.execute(claimed).await;
            }
            if block.is_some() {
                return Ok(ExecutionOutcome::QueueEmpty);
            }
        }
    }
}

impl From<redis::RedisError> for QueueError {
    fn from(e: redis::RedisError) -> Self {
        QueueError::Unavailable {
            backend: "redis",
            source: Box::new(e),
        }
    }
}

impl From<deadpool_redis::PoolError> for QueueError {
    fn from(e: deadpool_redis::PoolError) -> Self {
        QueueError::Unavailable {
            backend: "redis",
            source: Box::new(e),
        }
    }
}

#[async_trait]
impl JobQueue for RedisQueue {
    async fn submit(&self, job: NewJob) -> Result<(Job, bool), QueueError> {
        // Redis unreachable: refuse (503 + Retry-After) so the client retries with its
        // idempotency key, as with any broker down, rather than accept a job no worker can
        // be told about until Redis returns.
        self.ping().await?;
        let (job, created) = self.meta.create_job(job).await?;
        if created && let Err(e) = self.send(&job.id).await {
            // Redis went away between the check and the send. The job is safe in the
            // database: workers re-send what was never delivered.
            tracing::error!(job_id = %job.id, error = %e, "could not deliver a job; it will be re-sent");
        }
        Ok((job, created))
    }

    async fn cancel(&self, tenant: &str, id: &str) -> Result<CancelOutcome, QueueError> {
        let outcome = self.meta.request_job_cancel(tenant, id).await?;
        self.running.cancel_requested(&outcome);
        Ok(outcome)
    }

    async fn try_execute_job(&self) -> Result<ExecutionOutcome, QueueError> {
        self.step(None).await
    }

    fn workers(&self) -> usize {
        self.workers.load(Ordering::Relaxed)
    }

    fn busy(&self) -> usize {
        self.busy.load(Ordering::Relaxed)
    }

    fn kind(&self) -> &'static str {
        "redis"
    }

    fn pool_stats(&self) -> Vec<(&'static str, pynomaly_store::PoolStats)> {
        let stats = |pool: &RedisPool| {
            let s = pool.status();
            let n = |v: usize| u32::try_from(v).unwrap_or(u32::MAX);
            pynomaly_store::PoolStats {
                open: n(s.size),
                idle: n(s.available),
                max: n(s.max_size),
            }
        };
        vec![
            ("commands", stats(&self.pool)),
            ("blocking", stats(&self.blocking)),
        ]
    }

    /// Also starts this process's heartbeat (what `/health` counts as a live worker).
    fn start_workers(self: Arc<Self>, n: usize) -> Vec<JoinHandle<()>> {
        let mut handles: Vec<JoinHandle<()>> = (0..n)
            .map(|i| {
                let queue = Arc::clone(&self);
                tokio::spawn(async move { queue.worker_loop(i).await })
            })
            .collect();
        if n > 0 {
            handles.push(tokio::spawn(async move { self.heartbeat_loop().await }));
        }
        handles
    }

    fn shutdown(&self) {
        self.shutdown.cancel();
    }

    fn worker_id(&self) -> &str {
        &self.worker_id
    }

    fn reconcile_failures(&self) -> (u64, Option<String>) {
        let last = self
            .reconcile_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        (self.reconcile_failed.load(Ordering::Relaxed), last)
    }

    async fn ping(&self) -> Result<(), QueueError> {
        let mut conn = self.pool.get().await?;
        let _: String = redis::cmd("PING").query_async(&mut conn).await?;
        Ok(())
    }

    async fn live_workers(&self) -> Result<usize, QueueError> {
        let since = now_ms().saturating_sub(3 * ms(self.config.heartbeat).max(1000));
        let mut conn = self.pool.get().await?;
        let n: usize = redis::cmd("ZCOUNT")
            .arg(&self.workers_key)
            .arg(since)
            .arg("+inf")
            .query_async(&mut conn)
            .await?;
        Ok(n)
    }
}
