//! The command line: one [`Command`] variant and one module per subcommand.
//!
//! Exit status: 0 on success, 2 when the input or the request is wrong (a bad line in the
//! file, an unknown parameter, a usage error — clap's own convention), 1 for anything else
//! (for instance an output file that cannot be written). Errors go to stderr with their
//! whole chain of causes.
//!
//! To add a subcommand: a module with an `Args` struct (`#[derive(clap::Args)]`) and a
//! `run(&Args) -> anyhow::Result<()>`, a variant in [`Command`], an arm in [`run`].

use std::fmt;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod config;
pub mod detect;
pub mod healthcheck;
pub mod keys;
pub mod migrate;
pub mod serve;
pub mod stream;
pub mod worker;

/// pynomaly: anomaly detection with scikit-learn's isolation forest and LOF semantics.
#[derive(Debug, Parser)]
#[command(name = "pynomaly", version, about, long_about = None)]
pub struct Cli {
    /// Worker threads for fitting and scoring [default: all cores, or RAYON_NUM_THREADS]
    #[arg(long, global = true, value_name = "N")]
    pub threads: Option<usize>,

    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Fit a detector on a file and label every row (CSV, gzip CSV or JSON Lines)
    Detect(detect::DetectArgs),
    /// Run the HTTP service (embedded SQLite, local storage, in-process job workers)
    Serve(serve::ServeArgs),
    /// Manage API keys
    Keys(keys::KeysArgs),
    /// Run jobs from the Redis queue (REDIS_URL, DATABASE_URL) until SIGTERM
    Worker(worker::WorkerArgs),
    /// Apply the Postgres migrations (DATABASE_URL) and exit
    Migrate(migrate::MigrateArgs),
    /// Score events from a Redis stream or Kafka topic into an alerts stream or topic
    Stream(Box<stream::StreamArgs>),
    /// Check a deployment's settings without starting anything (`config check`)
    Config(config::ConfigArgs),
    /// Ask a running process whether it is alive (a container's health check)
    Healthcheck(healthcheck::HealthcheckArgs),
}

/// An error in what the user gave or asked for: exit status 2.
#[derive(Debug)]
pub struct InputError(pub String);

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InputError {}

/// Parses the command line, runs the command and turns its outcome into an exit status.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(exit_status(&e))
        }
    }
}

/// Runs a parsed command line.
///
/// # Errors
/// Whatever the command fails with; see [`exit_status`] for how errors are classified.
pub fn run(cli: &Cli) -> anyhow::Result<()> {
    init_thread_pool(cli.threads)?;
    match &cli.command {
        Command::Detect(args) => detect::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Keys(args) => keys::run(args),
        Command::Worker(args) => worker::run(args),
        Command::Migrate(args) => migrate::run(args),
        Command::Stream(args) => stream::run(args),
        Command::Config(args) => config::run(args),
        Command::Healthcheck(args) => healthcheck::run(args),
    }
}

/// 2 when the error (or one of its causes) is the user's input, 1 otherwise.
pub fn exit_status(e: &anyhow::Error) -> u8 {
    let is_input = e.chain().any(|cause| {
        cause.is::<InputError>()
            || cause.is::<pynomaly_api::TlsError>()
            || cause.is::<data_source::DataError>()
            || cause
                .downcast_ref::<detect_core::DetectError>()
                .is_some_and(detect_core::DetectError::is_input_error)
    });
    if is_input { 2 } else { 1 }
}

/// What a long-running command (`serve`, `worker`, `stream`) runs in: telemetry, set up
/// before the async runtime and to be dropped after it (the exporter then flushes the last
/// spans), naming the process `service` when `OTEL_SERVICE_NAME` does not; and a
/// multi-threaded async runtime whose threads are named `threads`.
///
/// # Errors
/// The trace exporter or the runtime cannot be set up.
pub(crate) fn start_process(
    settings: &pynomaly_runtime::Settings,
    service: &str,
    threads: &str,
) -> anyhow::Result<(pynomaly_runtime::TelemetryGuard, tokio::runtime::Runtime)> {
    use anyhow::Context as _;
    let telemetry = pynomaly_runtime::init_telemetry(
        &settings.telemetry.log_level,
        &settings.telemetry.traces,
        service,
    )
    .context("cannot start telemetry")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name(threads)
        .build()
        .context("cannot start the async runtime")?;
    Ok((telemetry, runtime))
}

/// The global rayon pool, with `threads` workers or (by default) one per core.
fn init_thread_pool(threads: Option<usize>) -> anyhow::Result<()> {
    if threads == Some(0) {
        return Err(InputError("--threads must be at least 1".into()).into());
    }
    // 0 lets rayon decide: RAYON_NUM_THREADS when set, else every core available.
    let built = rayon::ThreadPoolBuilder::new()
        .num_threads(threads.unwrap_or(0))
        .thread_name(|i| format!("pynomaly-worker-{i}"))
        .build_global();
    // Already built (a second `run` in the same process, as in tests): keep that pool.
    drop(built);
    Ok(())
}
