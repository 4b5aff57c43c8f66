//! Operational metrics beyond the request and model metrics of [`crate::metrics`] (served
//! with them by [`crate::exposition`]).
//!
//! - `pynomaly_build_info{version,role,queue,metadata}` 1 — `role` is `api` or `worker`.
//! - `pynomaly_job_queue_depth`, `pynomaly_jobs_running`: jobs `queued` / `running` in
//!   the whole deployment (read from the metadata store at scrape time, so every
//!   instance and worker reports the same number: aggregate with `max`, not `sum`).
//! - `pynomaly_job_duration_seconds{kind,status}` (histogram): job runs in this process
//!   by how they ended (`succeeded`, `failed`, `retrying` — an attempt that failed for a
//!   reason around the job, see `pynomaly_jobs::BatchObserver::job_finished` —
//!   `cancelled`, `interrupted`).
//! - `pynomaly_workers_active`: job workers alive in the deployment (`/health`'s
//!   `workers.active`: live `pynomaly worker` processes with Redis, this process's worker
//!   tasks in process); `pynomaly_worker_slots` and `pynomaly_worker_jobs_in_progress`:
//!   this process's worker tasks and the jobs they run now.
//! - `pynomaly_model_cache_hits_total`, `pynomaly_model_cache_misses_total`,
//!   `pynomaly_model_loads_total` (artifacts read and decoded), `pynomaly_model_cache_bytes`.
//! - `pynomaly_model_stage_changes_total{model,reason}`: stage changes of model versions
//!   made by this process (`promote`, `archive`, `rollback`, `training`: a training's
//!   promotion policy, `guard:<name>`: a rollout's guard).
//! - `pynomaly_model_rollbacks_total{model,guard}`: canary and shadow rollouts ended by
//!   their guards here (`anomaly_rate`, `error_rate`, `latency_p99`).
//! - `pynomaly_db_pool_connections{state="idle"|"in_use"}`, `pynomaly_db_pool_max_connections`;
//!   `pynomaly_redis_pool_connections{pool,state}`, `pynomaly_redis_pool_max_connections{pool}`
//!   (`pool` is `commands` or `blocking`; absent without Redis).
//! - `pynomaly_dependency_up{dependency}`: 1 when the dependency answered this process's
//!   last probe (`/health` or a scrape), 0 when it did not — `database` (the metadata
//!   store: Postgres or SQLite), `queue` (Redis; always 1 in process), `artifact_store`
//!   (S3 or the filesystem).
//! - `pynomaly_queue_reconcile_failures_total`: passes of the Redis queue's reconciler
//!   (which re-sends jobs Redis lost) in this process that failed (0 without Redis or
//!   without worker tasks here).
//! - `pynomaly_data_dir_free_bytes`, `pynomaly_data_dir_size_bytes`: free space (for
//!   unprivileged writers) and size of the filesystem of `PYNOMALY_DATA_DIR`.
//! - `pynomaly_metrics_source_errors_total{source}`: a scrape that could not read the
//!   metadata store or Redis (the other metrics are still served).
//!
//! Values that live elsewhere (the store, Redis, the registry's counters) are read when
//! Prometheus scrapes, not kept up to date on every request.

use std::time::Duration;

use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};
use pynomaly_jobs::JobQueue;
use pynomaly_models::ModelRegistry;
use pynomaly_store::{ArtifactStore, DynMetadataStore};

/// A scrape gives up on a dependency's probe after this long.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Whether `f` succeeds within [`PROBE_TIMEOUT`].
async fn probe<T, E>(f: impl Future<Output = Result<T, E>>) -> bool {
    matches!(tokio::time::timeout(PROBE_TIMEOUT, f).await, Ok(Ok(_)))
}

const JOB_BUCKETS: [f64; 15] = [
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
];

/// The metrics of this module (see the module docs for names and meanings).
#[derive(Debug, Clone)]
pub(crate) struct OpsMetrics {
    build_info: IntGaugeVec,
    queue_depth: IntGauge,
    jobs_running: IntGauge,
    job_duration: HistogramVec,
    workers_active: IntGauge,
    worker_slots: IntGauge,
    worker_busy: IntGauge,
    cache_hits: IntCounter,
    cache_misses: IntCounter,
    model_loads: IntCounter,
    cache_bytes: IntGauge,
    stage_changes: IntCounterVec,
    rollbacks: IntCounterVec,
    db_pool: IntGaugeVec,
    db_pool_max: IntGauge,
    redis_pool: IntGaugeVec,
    redis_pool_max: IntGaugeVec,
    source_errors: IntCounterVec,
    dependency_up: IntGaugeVec,
    reconcile_failures: IntCounter,
    data_dir_free: IntGauge,
    data_dir_size: IntGauge,
}

fn gauge(name: &str, help: &str) -> IntGauge {
    IntGauge::new(name, help).expect("valid metric")
}

fn counter(name: &str, help: &str) -> IntCounter {
    IntCounter::new(name, help).expect("valid metric")
}

fn gauge_vec(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric")
}

/// Brings a counter that mirrors a monotonic total kept elsewhere up to `total`.
fn catch_up(counter: &IntCounter, total: u64) {
    let seen = counter.get();
    if total > seen {
        counter.inc_by(total - seen);
    }
}

impl OpsMetrics {
    /// Registers the metrics in `registry`.
    ///
    /// # Panics
    /// Never in practice: names and labels are constants known to be valid and distinct.
    pub(crate) fn new(registry: &Registry) -> Self {
        let m = Self {
            build_info: gauge_vec(
                "pynomaly_build_info",
                "Always 1; the labels say what runs: version, role (api, worker), queue, metadata store",
                &["version", "role", "queue", "metadata"],
            ),
            queue_depth: gauge(
                "pynomaly_job_queue_depth",
                "Jobs queued in the deployment, not yet running",
            ),
            jobs_running: gauge("pynomaly_jobs_running", "Jobs running in the deployment"),
            job_duration: HistogramVec::new(
                HistogramOpts::new(
                    "pynomaly_job_duration_seconds",
                    "Job runs in this process, by kind and how they ended",
                )
                .buckets(JOB_BUCKETS.to_vec()),
                &["kind", "status"],
            )
            .expect("valid metric"),
            workers_active: gauge(
                "pynomaly_workers_active",
                "Job workers alive in the deployment",
            ),
            worker_slots: gauge("pynomaly_worker_slots", "Job worker tasks in this process"),
            worker_busy: gauge(
                "pynomaly_worker_jobs_in_progress",
                "Jobs running in this process now",
            ),
            cache_hits: counter(
                "pynomaly_model_cache_hits_total",
                "Model lookups answered from the in-memory cache",
            ),
            cache_misses: counter(
                "pynomaly_model_cache_misses_total",
                "Model lookups that did not find the model in memory",
            ),
            model_loads: counter(
                "pynomaly_model_loads_total",
                "Model artifacts read and decoded into the cache",
            ),
            cache_bytes: gauge(
                "pynomaly_model_cache_bytes",
                "Serialized bytes of the models in the in-memory cache",
            ),
            stage_changes: IntCounterVec::new(
                Opts::new(
                    "pynomaly_model_stage_changes_total",
                    "Stage changes of model versions made by this process, by model and reason",
                ),
                &["model", "reason"],
            )
            .expect("valid metric"),
            rollbacks: IntCounterVec::new(
                Opts::new(
                    "pynomaly_model_rollbacks_total",
                    "Canary and shadow rollouts ended by their guards on this process, by model and guard",
                ),
                &["model", "guard"],
            )
            .expect("valid metric"),
            db_pool: gauge_vec(
                "pynomaly_db_pool_connections",
                "Metadata-store pool connections by state (idle, in_use)",
                &["state"],
            ),
            db_pool_max: gauge(
                "pynomaly_db_pool_max_connections",
                "Most connections the metadata-store pool opens",
            ),
            redis_pool: gauge_vec(
                "pynomaly_redis_pool_connections",
                "Redis pool connections by pool and state (idle, in_use)",
                &["pool", "state"],
            ),
            redis_pool_max: gauge_vec(
                "pynomaly_redis_pool_max_connections",
                "Most connections each Redis pool opens",
                &["pool"],
            ),
            source_errors: IntCounterVec::new(
                Opts::new(
                    "pynomaly_metrics_source_errors_total",
                    "Scrapes that could not read a source of metrics (metadata, redis)",
                ),
                &["source"],
            )
            .expect("valid metric"),
            dependency_up: gauge_vec(
                "pynomaly_dependency_up",
                "1 when the dependency answered this process's last probe, 0 when not (database, queue, artifact_store)",
                &["dependency"],
            ),
            reconcile_failures: counter(
                "pynomaly_queue_reconcile_failures_total",
                "Passes of the job queue's reconciler in this process that failed",
            ),
            data_dir_free: gauge(
                "pynomaly_data_dir_free_bytes",
                "Free bytes of the filesystem of the data directory",
            ),
            data_dir_size: gauge(
                "pynomaly_data_dir_size_bytes",
                "Size in bytes of the filesystem of the data directory",
            ),
        };
        for c in [
            Box::new(m.build_info.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(m.queue_depth.clone()),
            Box::new(m.jobs_running.clone()),
            Box::new(m.job_duration.clone()),
            Box::new(m.workers_active.clone()),
            Box::new(m.worker_slots.clone()),
            Box::new(m.worker_busy.clone()),
            Box::new(m.cache_hits.clone()),
            Box::new(m.cache_misses.clone()),
            Box::new(m.model_loads.clone()),
            Box::new(m.cache_bytes.clone()),
            Box::new(m.stage_changes.clone()),
            Box::new(m.rollbacks.clone()),
            Box::new(m.db_pool.clone()),
            Box::new(m.db_pool_max.clone()),
            Box::new(m.redis_pool.clone()),
            Box::new(m.redis_pool_max.clone()),
            Box::new(m.source_errors.clone()),
            Box::new(m.dependency_up.clone()),
            Box::new(m.reconcile_failures.clone()),
            Box::new(m.data_dir_free.clone()),
            Box::new(m.data_dir_size.clone()),
        ] {
            registry.register(c).expect("metric registered once");
        }
        // Present (at zero) from the first scrape, so rates and alerts have a series.
        for source in ["metadata", "redis"] {
            m.source_errors.with_label_values(&[source]);
        }
        m
    }

    /// Sets `pynomaly_build_info` for this process.
    pub(crate) fn set_build_info(&self, role: &str, queue: &str, metadata: &str) {
        self.build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION"), role, queue, metadata])
            .set(1);
    }

    pub(crate) fn observe_job(&self, kind: &str, status: &str, elapsed: Duration) {
        self.job_duration
            .with_label_values(&[kind, status])
            .observe(elapsed.as_secs_f64());
    }

    /// Records whether `dependency` (`database`, `queue`, `artifact_store`) answered.
    pub(crate) fn set_dependency_up(&self, dependency: &str, up: bool) {
        self.dependency_up
            .with_label_values(&[dependency])
            .set(i64::from(up));
    }

    /// Records the free space of the data directory's filesystem.
    pub(crate) fn set_data_dir_space(&self, space: crate::disk::FreeSpace) {
        self.data_dir_free
            .set(i64::try_from(space.available).unwrap_or(i64::MAX));
        self.data_dir_size
            .set(i64::try_from(space.total).unwrap_or(i64::MAX));
    }

    /// Reads what lives elsewhere: job counts and pool sizes from the metadata store,
    /// workers from the queue, the registry's cache counters.
    pub(crate) async fn refresh(
        &self,
        meta: &DynMetadataStore,
        queue: &dyn JobQueue,
        registry: &ModelRegistry,
        artifacts: &ArtifactStore,
        data_dir: Option<&std::path::Path>,
    ) {
        let (db_up, queue_up, artifacts_up) = tokio::join!(
            probe(meta.ping()),
            probe(queue.ping()),
            probe(artifacts.ping())
        );
        self.set_dependency_up("database", db_up);
        self.set_dependency_up("queue", queue_up);
        self.set_dependency_up("artifact_store", artifacts_up);
        catch_up(&self.reconcile_failures, queue.reconcile_failures().0);
        if let Some(space) = data_dir.and_then(|d| crate::disk::free_bytes(d).ok()) {
            self.set_data_dir_space(space);
        }
        match meta.job_counts().await {
            Ok((queued, running)) => {
                self.queue_depth.set(queued);
                self.jobs_running.set(running);
            }
            Err(e) => {
                tracing::warn!(error = %e, "metrics: cannot count jobs");
                self.source_errors.with_label_values(&["metadata"]).inc();
            }
        }
        match queue.live_workers().await {
            Ok(n) => self.workers_active.set(n as i64),
            Err(e) => {
                tracing::warn!(error = %e, "metrics: cannot count live workers");
                self.source_errors.with_label_values(&["redis"]).inc();
            }
        }
        self.worker_slots.set(queue.workers() as i64);
        self.worker_busy.set(queue.busy() as i64);
        catch_up(&self.cache_hits, registry.cache_hits());
        catch_up(&self.cache_misses, registry.cache_misses());
        catch_up(&self.model_loads, registry.loads());
        self.cache_bytes
            .set(i64::try_from(registry.cache().bytes()).unwrap_or(i64::MAX));
        for ((model, reason), total) in registry.stage_changes() {
            catch_up(
                &self.stage_changes.with_label_values(&[&model, &reason]),
                total,
            );
        }
        for ((model, guard), total) in registry.rollbacks() {
            catch_up(&self.rollbacks.with_label_values(&[&model, &guard]), total);
        }
        if let Some(p) = meta.pool_stats() {
            self.db_pool
                .with_label_values(&["idle"])
                .set(i64::from(p.idle));
            self.db_pool
                .with_label_values(&["in_use"])
                .set(i64::from(p.open.saturating_sub(p.idle)));
            self.db_pool_max.set(i64::from(p.max));
        }
        for (pool, p) in queue.pool_stats() {
            self.redis_pool
                .with_label_values(&[pool, "idle"])
                .set(i64::from(p.idle));
            self.redis_pool
                .with_label_values(&[pool, "in_use"])
                .set(i64::from(p.open.saturating_sub(p.idle)));
            self.redis_pool_max
                .with_label_values(&[pool])
                .set(i64::from(p.max));
        }
    }
}
