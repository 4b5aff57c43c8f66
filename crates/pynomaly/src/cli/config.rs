//! `pynomaly config check [--env-file FILE]… [--process P]`: validates a deployment's
//! environment as the process would at start-up, without starting anything, so the
//! deployment files (compose, Helm) are checked against the code that reads them.
//!
//! Every setting is read and validated exactly as `serve`, `worker`, `migrate` and
//! `stream` read it (one list of every bad variable), `PYNOMALY_*` names that no setting
//! reads are reported (a misspelt setting would otherwise fall back to its default without
//! a word), the process's own needs are checked (a worker needs `REDIS_URL`, `migrate`
//! needs `DATABASE_URL`), and TLS files, when named, are loaded. Nothing connects to a
//! database, Redis or S3.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Context;
use pynomaly_runtime::{Settings, unknown_variables};

use crate::cli::InputError;

/// Arguments of `pynomaly config`.
#[derive(Debug, clap::Args)]
pub struct ConfigArgs {
    #[command(subcommand)]
    pub command: ConfigCommand,
}

/// The `config` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum ConfigCommand {
    /// Check an environment: every setting valid, no unknown PYNOMALY_* name, what the
    /// process needs present. Exit status 0 when it would start, 2 listing every problem
    Check(CheckArgs),
}

/// Arguments of `pynomaly config check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Read the variables from this env file (KEY=VALUE lines, `#` comments, quotes, as
    /// Docker Compose reads an env_file) instead of the process environment; repeat it to
    /// layer files, later ones winning
    #[arg(long, value_name = "FILE")]
    pub env_file: Vec<PathBuf>,
    /// The process the environment is for
    #[arg(long, value_enum, default_value_t = Process::Serve)]
    pub process: Process,
}

/// The long-running and one-shot processes a deployment runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Process {
    /// `pynomaly serve`
    Serve,
    /// `pynomaly worker`: needs REDIS_URL and DATABASE_URL
    Worker,
    /// `pynomaly migrate`: needs DATABASE_URL
    Migrate,
    /// `pynomaly stream`
    Stream,
}

/// Runs `pynomaly config …`.
///
/// # Errors
/// An env file cannot be read (exit status 2), or the environment has problems (2).
pub fn run(args: &ConfigArgs) -> anyhow::Result<()> {
    match &args.command {
        ConfigCommand::Check(check) => run_check(check),
    }
}

fn run_check(args: &CheckArgs) -> anyhow::Result<()> {
    let (vars, source) = if args.env_file.is_empty() {
        (
            std::env::vars().collect(),
            "the process environment".to_string(),
        )
    } else {
        let mut vars = BTreeMap::new();
        for path in &args.env_file {
            vars.extend(read_env_file(path)?);
        }
        let names: Vec<String> = args
            .env_file
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        (vars, names.join(", "))
    };
    let report = check(&vars, args.process);
    for warning in &report.warnings {
        eprintln!("warning: {warning}");
    }
    if report.problems.is_empty() {
        println!(
            "ok: {source} is valid for `pynomaly {}` ({})",
            process_name(args.process),
            report.summary
        );
        Ok(())
    } else {
        let mut message = format!(
            "{source} is not valid for `pynomaly {}`: {} problem(s)",
            process_name(args.process),
            report.problems.len()
        );
        for p in &report.problems {
            message.push_str("\n  ");
            message.push_str(p);
        }
        Err(InputError(message).into())
    }
}

/// What checking an environment found.
#[derive(Debug, Default)]
pub struct Report {
    /// Each reason the process would not start, or would silently ignore a setting.
    pub problems: Vec<String>,
    /// What works but is probably not meant (e.g. instances that cannot share keys).
    pub warnings: Vec<String>,
    /// What the settings amount to, when they are valid (never a secret).
    pub summary: String,
}

/// Checks the variables `vars` for `process`.
pub fn check(vars: &BTreeMap<String, String>, process: Process) -> Report {
    let mut report = Report::default();
    for unknown in unknown_variables(vars.keys().map(String::as_str)) {
        report.problems.push(unknown.to_string());
    }
    let settings = match Settings::from_lookup(|name| vars.get(name).cloned()) {
        Ok(settings) => settings,
        Err(e) => {
            report
                .problems
                .extend(e.problems().iter().map(ToString::to_string));
            return report;
        }
    };
    let has_db = settings.database.url.is_some();
    let has_redis = settings.queue.redis_url.is_some();
    match process {
        Process::Worker if !has_redis => report.problems.push(
            "REDIS_URL is not set: `pynomaly worker` runs jobs from the Redis queue (with \
             DATABASE_URL for job state)"
                .into(),
        ),
        Process::Migrate if !has_db => report.problems.push(
            "DATABASE_URL is not set: `pynomaly migrate` applies the Postgres migrations".into(),
        ),
        _ => {}
    }
    if let Some(files) = &settings.server.tls
        && let Err(e) = pynomaly_api::Tls::load(files)
    {
        report.problems.push(e.to_string());
    }
    if has_redis && settings.security.secret_key.is_none() {
        report.warnings.push(
            "PYNOMALY_SECRET_KEY is not set: each process makes its own secret.key in its \
             data directory, so an API key or token issued by one instance is refused by \
             another; give every process the same PYNOMALY_SECRET_KEY (openssl rand -hex 32)"
                .into(),
        );
    }
    let artifacts = &settings.storage.artifacts_url;
    if has_redis && !artifacts.starts_with("s3://") {
        report.warnings.push(format!(
            "PYNOMALY_STORAGE_URL is a local path ({artifacts}) while jobs go through Redis: \
             every instance and worker must see the same directory (a shared volume), or use \
             s3://bucket/prefix"
        ));
    }
    report.summary = format!(
        "listening on {}://{}{}; metadata in {}; queue {}; artifacts in {}; {} variable(s) read",
        if settings.server.tls.is_some() {
            "https"
        } else {
            "http"
        },
        settings.server.bind,
        settings
            .server
            .metrics_bind
            .map(|m| format!(", metrics on {m}"))
            .unwrap_or_default(),
        settings.database.kind(),
        if has_redis { "redis" } else { "in process" },
        if artifacts.starts_with("s3://") {
            artifacts.as_str()
        } else {
            "a local directory"
        },
        vars.len(),
    );
    report
}

fn process_name(process: Process) -> &'static str {
    match process {
        Process::Serve => "serve",
        Process::Worker => "worker",
        Process::Migrate => "migrate",
        Process::Stream => "stream",
    }
}

/// The variables of an env file, as Docker Compose reads one.
fn read_env_file(path: &std::path::Path) -> anyhow::Result<BTreeMap<String, String>> {
    let entries = dotenvy::from_path_iter(path)
        .map_err(|e| InputError(format!("cannot read the env file {}: {e}", path.display())))?;
    let mut vars = BTreeMap::new();
    for entry in entries {
        let (name, value) = entry
            .map_err(|e| InputError(format!("{}: {e}", path.display())))
            .with_context(|| format!("reading the env file {}", path.display()))?;
        vars.insert(name, value);
    }
    Ok(vars)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const SCALE_OUT: &[(&str, &str)] = &[
        (
            "DATABASE_URL",
            "postgres://pynomaly:hunter2@postgres:5432/pynomaly",
        ),
        ("REDIS_URL", "redis://redis:6379"),
        ("PYNOMALY_STORAGE_URL", "s3://models/pynomaly"),
        (
            "PYNOMALY_SECRET_KEY",
            "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
        ),
        ("PYNOMALY_BIND", "0.0.0.0:8000"),
        ("AWS_ENDPOINT_URL", "http://minio:9000"),
        ("HOSTNAME", "api-1"),
    ];

    #[test]
    fn a_scale_out_environment_passes_for_every_process() {
        for process in [
            Process::Serve,
            Process::Worker,
            Process::Migrate,
            Process::Stream,
        ] {
            let report = check(&vars(SCALE_OUT), process);
            assert!(report.problems.is_empty(), "{process:?}: {report:?}");
            assert!(report.warnings.is_empty(), "{process:?}: {report:?}");
            assert!(!report.summary.contains("hunter2"), "{}", report.summary);
            assert!(
                report.summary.contains("0.0.0.0:8000"),
                "{}",
                report.summary
            );
        }
    }

    #[test]
    fn a_misspelt_setting_and_a_bad_value_are_both_reported() {
        let mut env = vars(SCALE_OUT);
        env.insert("PYNOMALY_MAX_BODY_BYTE".into(), "1048576".into());
        env.insert("PYNOMALY_JOB_LEASE_S".into(), "soon".into());
        let report = check(&env, Process::Serve);
        assert_eq!(report.problems.len(), 2, "{report:?}");
        assert!(
            report.problems[0].contains("did you mean PYNOMALY_MAX_BODY_BYTES"),
            "{report:?}"
        );
        assert!(
            report.problems[1].starts_with("PYNOMALY_JOB_LEASE_S"),
            "{report:?}"
        );
    }

    #[test]
    fn what_each_process_needs_is_checked() {
        let report = check(&vars(&[]), Process::Worker);
        assert!(report.problems[0].contains("REDIS_URL"), "{report:?}");
        let report = check(&vars(&[]), Process::Migrate);
        assert!(report.problems[0].contains("DATABASE_URL"), "{report:?}");
        assert!(check(&vars(&[]), Process::Serve).problems.is_empty());
    }

    #[test]
    fn instances_that_cannot_share_keys_or_files_are_warned_of() {
        let env: Vec<_> = SCALE_OUT
            .iter()
            .copied()
            .filter(|(k, _)| *k != "PYNOMALY_SECRET_KEY" && *k != "PYNOMALY_STORAGE_URL")
            .collect();
        let report = check(&vars(&env), Process::Serve);
        assert!(report.problems.is_empty(), "{report:?}");
        assert_eq!(report.warnings.len(), 2, "{report:?}");
        assert!(report.warnings[0].contains("PYNOMALY_SECRET_KEY"));
        assert!(report.warnings[1].contains("PYNOMALY_STORAGE_URL"));
    }

    #[test]
    fn tls_files_that_do_not_exist_are_a_problem() {
        let report = check(
            &vars(&[
                ("PYNOMALY_TLS_CERT", "/nonexistent/tls.crt"),
                ("PYNOMALY_TLS_KEY", "/nonexistent/tls.key"),
            ]),
            Process::Serve,
        );
        assert_eq!(report.problems.len(), 1, "{report:?}");
        assert!(
            report.problems[0].contains("/nonexistent/tls.crt"),
            "{report:?}"
        );
    }

    #[test]
    fn env_files_are_read_as_compose_reads_them() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(".env");
        std::fs::write(
            &path,
            "# a comment\nPYNOMALY_BIND=0.0.0.0:8000\nLOG_LEVEL=\"warn\"\n\nexport WORKER_CONCURRENCY=4\n",
        )
        .unwrap();
        let read = read_env_file(&path).unwrap();
        assert_eq!(read["PYNOMALY_BIND"], "0.0.0.0:8000");
        assert_eq!(read["LOG_LEVEL"], "warn");
        assert_eq!(read["WORKER_CONCURRENCY"], "4");
        let e = read_env_file(&dir.path().join("missing.env")).unwrap_err();
        assert!(e.to_string().contains("missing.env"), "{e}");
    }
}
