//! `pynomaly serve`: the HTTP service, configured from the environment (see
//! `pynomaly_runtime::Settings`), until SIGTERM or Ctrl-C: the embedded default (SQLite
//! metadata, local artifacts, in-process job workers), or with `DATABASE_URL` and
//! `REDIS_URL` one of several stateless instances (Postgres, Redis-delivered jobs run by
//! `pynomaly worker`).

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use pynomaly_api::Application;
use pynomaly_runtime::{Settings, shutdown_signal};

use crate::cli::InputError;

/// Arguments of `pynomaly serve`; each overrides its environment variable.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on [env: PYNOMALY_BIND; default 127.0.0.1:8000]
    #[arg(long, value_name = "ADDR")]
    pub bind: Option<SocketAddr>,
    /// Data directory: metadata, secret, admin key, storage [env: PYNOMALY_DATA_DIR;
    /// default ./pynomaly-data]
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Job worker tasks in this process [env: WORKER_CONCURRENCY; default 2]. With
    /// REDIS_URL the server runs no jobs (`pynomaly worker` does) unless this is given
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
}

/// Settings from the environment, with `--data-dir` taking the place of
/// `PYNOMALY_DATA_DIR` (so the directories derived from it follow).
pub(crate) fn settings(data_dir: Option<&PathBuf>) -> anyhow::Result<Settings> {
    Settings::from_lookup(|name| match (name, data_dir) {
        ("PYNOMALY_DATA_DIR", Some(dir)) => Some(dir.display().to_string()),
        _ => std::env::var(name).ok(),
    })
    .map_err(|e| InputError(e.to_string()).into())
}

/// Runs the service until a shutdown signal.
///
/// # Errors
/// Invalid settings (exit status 2), or the service cannot start or fails.
pub fn run(args: &ServeArgs) -> anyhow::Result<()> {
    let mut settings = settings(args.data_dir.as_ref())?;
    if let Some(bind) = args.bind {
        settings.server.bind = bind;
    }
    if let Some(n) = args.workers {
        settings.queue.worker_concurrency = n;
        // With Redis, jobs run in `pynomaly worker` processes unless asked here too.
        settings.queue.serve_runs_jobs = true;
    }
    // Dropped after the runtime: the exporter flushes the last spans.
    let (_telemetry, runtime) =
        crate::cli::start_process(&settings, "pynomaly-api", "pynomaly-async")?;
    runtime.block_on(async {
        let data_dir = settings.storage.data_dir.clone();
        let app = Application::build(settings)
            .await
            .context("cannot start the service")?;
        if let Some(key) = app.admin_key() {
            println!(
                "First start: created an admin API key (also in {}):\n\n    {key}\n",
                data_dir.join("admin.key").display()
            );
        }
        println!(
            "pynomaly serving on {}://{}",
            app.scheme(),
            app.local_addr()
        );
        if let Some(addr) = app.metrics_addr() {
            println!("pynomaly metrics on {}://{addr}/metrics", app.scheme());
        }
        app.run_until(shutdown_signal())
            .await
            .context("the service stopped with an error")
    })
}
