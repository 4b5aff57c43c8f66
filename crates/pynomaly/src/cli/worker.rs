//! `pynomaly worker [--concurrency N]`: runs jobs from the Redis queue (`REDIS_URL`, with
//! job state in `DATABASE_URL`'s Postgres) until SIGTERM or Ctrl-C, then hands its running
//! jobs back to the queue and exits. Reads the same settings as `serve` (sources
//! directory, storage URL, chunk size).

use anyhow::Context;
use pynomaly_api::{WorkerProcess, init_telemetry, shutdown_signal};

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
    if settings.redis_url.is_none() {
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
        .unwrap_or(settings.worker_concurrency)
        .max(1);
    // Before the runtime, and dropped after it: the exporter flushes the last spans.
    let _telemetry = init_telemetry(&settings.log_level, &settings.traces, "pynomaly-worker")
        .context("cannot start telemetry")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("pynomaly-worker-async")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let worker = WorkerProcess::build(&settings, concurrency)
            .await
            .context("cannot start the worker")?;
        println!(
            "pynomaly worker {} running up to {concurrency} jobs at once",
            worker.worker_id()
        );
        if let Some(addr) = worker.metrics_addr() {
            println!("pynomaly worker metrics on http://{addr}/metrics");
        }
        worker.run_until(shutdown_signal()).await;
        Ok(())
    })
}
