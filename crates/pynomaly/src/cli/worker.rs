//! `pynomaly worker [--concurrency N]`: runs jobs from the Redis queue (`REDIS_URL`, with
//! job state in `DATABASE_URL`'s Postgres) until SIGTERM or Ctrl-C, then hands its running
//! jobs back to the queue and exits. Reads the same settings as `serve` (sources
//! directory, storage URL, chunk size).
//!
//! A worker reports itself alive every heartbeat (what `/health` counts as
//! `workers.active`). On SIGTERM its running jobs stop at their next chunk and go straight
//! back to the queue for another worker; a worker killed outright loses its lease instead,
//! and its jobs are taken over once the lease expires.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use pynomaly_api::{Metrics, MetricsPort};
use pynomaly_jobs::{BatchObserver, JobQueue};
use pynomaly_runtime::{Settings, StartupError, open_jobs, shutdown_signal};
use pynomaly_store::DynMetadataStore;
use tokio_util::sync::CancellationToken;

/// Arguments of `pynomaly worker`.
#[derive(Debug, clap::Args)]
pub struct WorkerArgs {
    /// Jobs run at once [env: WORKER_CONCURRENCY; default 2]
    #[arg(long, value_name = "N")]
    pub concurrency: Option<usize>,
}

/// Runs the worker until a shutdown signal.
///
/// # Errors
/// Invalid settings or no `REDIS_URL` (exit status 2), or a dependency cannot be reached.
pub fn run(args: &WorkerArgs) -> anyhow::Result<()> {
    let settings = crate::cli::serve::settings(None)?;
    if settings.queue.redis_url.is_none() {
        return Err(crate::cli::InputError(
            "REDIS_URL is not set: `pynomaly worker` runs jobs from the Redis queue \
             (with DATABASE_URL for job state); the embedded server runs its own jobs"
                .into(),
        )
        .into());
    }
    if args.concurrency == Some(0) {
        return Err(crate::cli::InputError("--concurrency must be at least 1".into()).into());
    }
    let concurrency = args
        .concurrency
        .unwrap_or(settings.queue.worker_concurrency)
        .max(1);
    // Dropped after the runtime: the exporter flushes the last spans.
    let (_telemetry, runtime) =
        crate::cli::start_process(&settings, "pynomaly-worker", "pynomaly-worker-async")?;
    runtime.block_on(async {
        let worker = WorkerProcess::build(&settings, concurrency)
            .await
            .context("cannot start the worker")?;
        println!(
            "pynomaly worker {} running up to {concurrency} jobs at once",
            worker.queue.worker_id()
        );
        if let Some(addr) = worker.metrics_addr() {
            let scheme = if settings.server.tls.is_some() {
                "https"
            } else {
                "http"
            };
            println!("pynomaly worker metrics on {scheme}://{addr}/metrics");
        }
        worker.run_until(shutdown_signal()).await;
        Ok(())
    })
}

/// A process that runs jobs delivered through Redis, and serves nothing but its metrics.
#[derive(Debug)]
pub struct WorkerProcess {
    queue: Arc<dyn JobQueue>,
    metrics_port: Option<MetricsPort>,
    meta: DynMetadataStore,
    background: CancellationToken,
    concurrency: usize,
    drain: Duration,
}

impl WorkerProcess {
    /// Opens the stores and connects to Redis; `concurrency` jobs run at once.
    ///
    /// # Errors
    /// `REDIS_URL` is unset, or a dependency cannot be reached.
    pub async fn build(settings: &Settings, concurrency: usize) -> Result<Self, StartupError> {
        if settings.queue.redis_url.is_none() {
            return Err(StartupError::NeedsRedis);
        }
        // Jobs run here count into this process's metrics, served on PYNOMALY_METRICS_BIND.
        let metrics = Arc::new(Metrics::new());
        let parts = open_jobs(
            settings,
            Some(Arc::clone(&metrics) as Arc<dyn BatchObserver>),
        )
        .await?;
        let metrics_port = MetricsPort::bind(settings, "worker", metrics, &parts).await?;
        Ok(Self {
            queue: parts.queue,
            metrics_port,
            meta: parts.meta,
            background: parts.background,
            concurrency: concurrency.max(1),
            drain: settings.server.shutdown_timeout,
        })
    }

    /// The metrics port's address, when `PYNOMALY_METRICS_BIND` opened one.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_port.as_ref().map(MetricsPort::addr)
    }

    /// Runs jobs until `shutdown` completes, then hands running jobs back and stops.
    pub async fn run_until(mut self, shutdown: impl Future<Output = ()> + Send + 'static) {
        let metrics_task = self
            .metrics_port
            .take()
            .map(|p| p.spawn(self.background.clone()));
        let handles = Arc::clone(&self.queue).start_workers(self.concurrency);
        tracing::info!(
            worker = self.queue.worker_id(),
            concurrency = self.concurrency,
            "pynomaly worker is running jobs"
        );
        shutdown.await;
        tracing::info!("shutting down: handing running jobs back to the queue");
        self.queue.shutdown();
        for h in handles {
            if tokio::time::timeout(self.drain, h).await.is_err() {
                tracing::warn!("a job worker did not stop within the drain timeout");
            }
        }
        self.background.cancel();
        if let Some(task) = metrics_task {
            let _ = tokio::time::timeout(self.drain, task).await;
        }
        self.meta.close().await;
        tracing::info!("worker stopped");
    }
}
