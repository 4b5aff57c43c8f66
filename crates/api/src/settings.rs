//! Typed settings: defaults, then environment variables, validated at start-up.
//!
//! Names are the contract's (`PYNOMALY_BIND`, `PYNOMALY_DATA_DIR`, `PYNOMALY_SOURCES_DIR`,
//! `PYNOMALY_STORAGE_URL`, `WORKER_CONCURRENCY`, `LOG_LEVEL`) plus the limits
//! (`PYNOMALY_MAX_BODY_BYTES`, `PYNOMALY_MAX_CELLS`, `PYNOMALY_REQUEST_TIMEOUT_S`,
//! `PYNOMALY_SHUTDOWN_TIMEOUT_S`, `PYNOMALY_MODEL_CACHE_BYTES`, `PYNOMALY_BATCH_CHUNK_ROWS`).
//! A setting that cannot work fails the start with a message naming it, rather than
//! being warned about and ignored.
//!
//! Scale-out: `DATABASE_URL` (Postgres metadata, pool size `PYNOMALY_DATABASE_MAX_CONNECTIONS`),
//! `REDIS_URL` (the Redis job queue: `PYNOMALY_REDIS_PREFIX`, `PYNOMALY_JOB_LEASE_S`,
//! `PYNOMALY_JOB_MAX_ATTEMPTS`), `PYNOMALY_SECRET_KEY` (the key-hashing secret, 64 hex
//! digits, so that several instances accept the same API keys without sharing a data
//! directory). URLs and the secret never appear in `Debug` output or error messages.
//!
//! Observability: `PYNOMALY_METRICS_BIND` (a second listener serving only `/metrics`: a
//! worker's metrics port), and traces through the standard `OTEL_*` variables, read and
//! checked by [`crate::telemetry::TraceSettings`].
//!
//! Shapes that work: nothing set (one process, embedded); `DATABASE_URL` alone (one
//! instance on Postgres: it runs jobs in process and requeues, at start-up, jobs left
//! running — so never two such instances on one database); `DATABASE_URL` and `REDIS_URL`
//! (any number of instances and `pynomaly worker` processes). `REDIS_URL` without
//! `DATABASE_URL` is refused.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use thiserror::Error;

/// A setting that cannot be used.
#[derive(Debug, Error)]
pub enum SettingsError {
    #[error("{name}={value:?} is invalid: {reason}")]
    Invalid {
        name: &'static str,
        value: String,
        reason: String,
    },
}

/// Everything the service is configured with.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Address to listen on (`PYNOMALY_BIND`, default `127.0.0.1:8000`; port 0 picks one).
    pub bind: SocketAddr,
    /// Metadata database, secret and admin key live here (`PYNOMALY_DATA_DIR`).
    pub data_dir: PathBuf,
    /// Data sources for training and batch (`PYNOMALY_SOURCES_DIR`, default
    /// `<data dir>/sources`).
    pub sources_dir: PathBuf,
    /// Artifacts (`PYNOMALY_STORAGE_URL`, default `<data dir>/storage`).
    pub storage_url: String,
    /// Job worker tasks in this process (`WORKER_CONCURRENCY`, default 2; 0 runs none,
    /// as tests do).
    pub worker_concurrency: usize,
    /// `LOG_LEVEL` (a tracing filter, default `info`).
    pub log_level: String,
    /// Largest request body (`PYNOMALY_MAX_BODY_BYTES`, default 32 MiB): 413 beyond.
    pub max_body_bytes: usize,
    /// Largest rows × features in one request (`PYNOMALY_MAX_CELLS`, default 5,000,000).
    pub max_cells: usize,
    /// A request taking longer gets 503 with `Retry-After` (`PYNOMALY_REQUEST_TIMEOUT_S`,
    /// default 30).
    pub request_timeout: Duration,
    /// How long a shutdown waits for in-flight requests (`PYNOMALY_SHUTDOWN_TIMEOUT_S`,
    /// default 30).
    pub shutdown_timeout: Duration,
    /// Serialized bytes of models kept in memory (`PYNOMALY_MODEL_CACHE_BYTES`, default
    /// 512 MiB).
    pub model_cache_bytes: u64,
    /// Rows per chunk in batch jobs (`PYNOMALY_BATCH_CHUNK_ROWS`, default 16384).
    pub batch_chunk_rows: usize,
    /// Postgres metadata store (`DATABASE_URL`; unset: SQLite in the data directory).
    pub database_url: Option<Secret>,
    /// Connections per process to Postgres (`PYNOMALY_DATABASE_MAX_CONNECTIONS`, default 10).
    pub database_max_connections: u32,
    /// Redis job queue (`REDIS_URL`; unset: the in-process queue).
    pub redis_url: Option<Secret>,
    /// Prefix of the Redis keys (`PYNOMALY_REDIS_PREFIX`, default `pynomaly`).
    pub redis_prefix: String,
    /// A running job whose worker stops renewing its lease for this long is taken over by
    /// another worker (`PYNOMALY_JOB_LEASE_S`, default 30).
    pub job_lease: Duration,
    /// Attempts before a job is `failed` (`PYNOMALY_JOB_MAX_ATTEMPTS`, default 3).
    pub job_max_attempts: i64,
    /// With Redis, whether `serve` also runs jobs (`serve --workers N`); by default only
    /// `pynomaly worker` processes do.
    pub serve_runs_jobs: bool,
    /// The key-hashing secret (`PYNOMALY_SECRET_KEY`, 64 hex digits; unset: `<data
    /// dir>/secret.key`, created on first start).
    pub secret_key: Option<Secret>,
    /// A second listener serving only `GET /metrics` (`PYNOMALY_METRICS_BIND`, e.g.
    /// `0.0.0.0:8001`): the metrics port of `pynomaly worker`, optional for `serve`.
    pub metrics_bind: Option<SocketAddr>,
    /// Traces (the standard `OTEL_*` variables; off unless an OTLP endpoint is set).
    pub traces: crate::telemetry::TraceSettings,
    /// Drift monitoring (`PYNOMALY_DRIFT_MONITORING`, `true`/`false`, default on),
    /// its window length (`PYNOMALY_DRIFT_WINDOW_SECONDS`, default 300) and the rows a
    /// window needs before a verdict (`PYNOMALY_DRIFT_MIN_SAMPLES`, default 200).
    pub drift: pynomaly_jobs::DriftConfig,
}

/// A setting that must not be printed (URLs with passwords, secrets).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value itself, for the code that connects with it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&redact(&self.0))
    }
}

impl Settings {
    /// The defaults, with everything under `data_dir`.
    pub fn with_data_dir(data_dir: impl Into<PathBuf>) -> Self {
        let data_dir = data_dir.into();
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 8000)),
            sources_dir: data_dir.join("sources"),
            storage_url: data_dir.join("storage").display().to_string(),
            data_dir,
            worker_concurrency: 2,
            log_level: "info".into(),
            max_body_bytes: 32 * 1024 * 1024,
            max_cells: 5_000_000,
            request_timeout: Duration::from_secs(30),
            shutdown_timeout: Duration::from_secs(30),
            model_cache_bytes: 512 * 1024 * 1024,
            batch_chunk_rows: 16_384,
            database_url: None,
            database_max_connections: 10,
            redis_url: None,
            redis_prefix: "pynomaly".into(),
            job_lease: Duration::from_secs(30),
            job_max_attempts: 3,
            serve_runs_jobs: false,
            secret_key: None,
            metrics_bind: None,
            traces: crate::telemetry::TraceSettings::default(),
            drift: pynomaly_jobs::DriftConfig::default(),
        }
    }

    /// Settings from the process environment.
    ///
    /// # Errors
    /// A variable that does not parse or cannot work, named.
    pub fn from_env() -> Result<Self, SettingsError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Settings from any lookup of variables (tests pass a map).
    ///
    /// # Errors
    /// As [`Settings::from_env`].
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let get = |name: &str| get(name).filter(|v| !v.trim().is_empty());
        let data_dir = get("PYNOMALY_DATA_DIR").unwrap_or_else(|| "./pynomaly-data".into());
        let mut s = Self::with_data_dir(PathBuf::from(data_dir));
        if let Some(v) = get("DATABASE_URL") {
            if !(v.starts_with("postgres://") || v.starts_with("postgresql://")) {
                return Err(SettingsError::Invalid {
                    name: "DATABASE_URL",
                    value: redact(&v),
                    reason: "expected a Postgres URL (postgres://user@host:5432/db); unset it \
                             to use the embedded SQLite store"
                        .into(),
                });
            }
            s.database_url = Some(Secret::new(v));
        }
        if let Some(v) = get("REDIS_URL") {
            if !(v.starts_with("redis://") || v.starts_with("rediss://")) {
                return Err(SettingsError::Invalid {
                    name: "REDIS_URL",
                    value: redact(&v),
                    reason: "expected a Redis URL (redis://host:6379); unset it to use the \
                             in-process queue"
                        .into(),
                });
            }
            if s.database_url.is_none() {
                return Err(SettingsError::Invalid {
                    name: "REDIS_URL",
                    value: redact(&v),
                    reason: "the Redis queue keeps job state in Postgres: set DATABASE_URL too \
                             (SQLite cannot be shared by several processes)"
                        .into(),
                });
            }
            s.redis_url = Some(Secret::new(v));
        }
        if let Some(v) = get("PYNOMALY_DATABASE_MAX_CONNECTIONS") {
            s.database_max_connections =
                parse_in("PYNOMALY_DATABASE_MAX_CONNECTIONS", &v, 1, 1000)? as u32;
        }
        if let Some(v) = get("PYNOMALY_REDIS_PREFIX") {
            s.redis_prefix = v;
        }
        if let Some(v) = get("PYNOMALY_JOB_LEASE_S") {
            s.job_lease =
                Duration::from_secs(parse_in("PYNOMALY_JOB_LEASE_S", &v, 1, 86_400)? as u64);
        }
        if let Some(v) = get("PYNOMALY_JOB_MAX_ATTEMPTS") {
            s.job_max_attempts = parse_in("PYNOMALY_JOB_MAX_ATTEMPTS", &v, 1, 100)? as i64;
        }
        if let Some(v) = get("PYNOMALY_SECRET_KEY") {
            if hex::decode(v.trim()).map_or(true, |b| b.len() != 32) {
                return Err(SettingsError::Invalid {
                    name: "PYNOMALY_SECRET_KEY",
                    value: "…".into(),
                    reason: "expected 64 hex digits (32 random bytes, e.g. `openssl rand -hex 32`)"
                        .into(),
                });
            }
            s.secret_key = Some(Secret::new(v.trim()));
        }
        if let Some(v) = get("PYNOMALY_BIND") {
            s.bind = v.parse().map_err(|e| invalid("PYNOMALY_BIND", &v, e))?;
        }
        if let Some(v) = get("PYNOMALY_METRICS_BIND") {
            s.metrics_bind = Some(
                v.parse()
                    .map_err(|e| invalid("PYNOMALY_METRICS_BIND", &v, e))?,
            );
        }
        s.traces = crate::telemetry::TraceSettings::from_lookup(&get)?;
        if let Some(v) = get("PYNOMALY_SOURCES_DIR") {
            s.sources_dir = PathBuf::from(v);
        }
        if let Some(v) = get("PYNOMALY_STORAGE_URL") {
            if v.contains("://") && !v.starts_with("file://") && !v.starts_with("s3://") {
                return Err(SettingsError::Invalid {
                    name: "PYNOMALY_STORAGE_URL",
                    value: v,
                    reason: "expected s3://bucket/prefix, a file:// URL or a local path".into(),
                });
            }
            s.storage_url = v;
        }
        if let Some(v) = get("WORKER_CONCURRENCY") {
            s.worker_concurrency = parse_in("WORKER_CONCURRENCY", &v, 0, 256)?;
        }
        if let Some(v) = get("LOG_LEVEL") {
            s.log_level = v;
        }
        if let Some(v) = get("PYNOMALY_MAX_BODY_BYTES") {
            s.max_body_bytes = parse_in("PYNOMALY_MAX_BODY_BYTES", &v, 1024, 1 << 34)?;
        }
        if let Some(v) = get("PYNOMALY_MAX_CELLS") {
            s.max_cells = parse_in("PYNOMALY_MAX_CELLS", &v, 1, 1 << 34)?;
        }
        if let Some(v) = get("PYNOMALY_REQUEST_TIMEOUT_S") {
            s.request_timeout =
                Duration::from_secs(parse_in("PYNOMALY_REQUEST_TIMEOUT_S", &v, 1, 86_400)? as u64);
        }
        if let Some(v) = get("PYNOMALY_SHUTDOWN_TIMEOUT_S") {
            s.shutdown_timeout =
                Duration::from_secs(parse_in("PYNOMALY_SHUTDOWN_TIMEOUT_S", &v, 0, 86_400)? as u64);
        }
        if let Some(v) = get("PYNOMALY_MODEL_CACHE_BYTES") {
            s.model_cache_bytes = parse_in("PYNOMALY_MODEL_CACHE_BYTES", &v, 1024, 1 << 40)? as u64;
        }
        if let Some(v) = get("PYNOMALY_BATCH_CHUNK_ROWS") {
            s.batch_chunk_rows = parse_in("PYNOMALY_BATCH_CHUNK_ROWS", &v, 1, 10_000_000)?;
        }
        if let Some(v) = get("PYNOMALY_DRIFT_MONITORING") {
            s.drift.enabled = match v.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "on" | "yes" => true,
                "false" | "0" | "off" | "no" => false,
                _ => {
                    return Err(invalid(
                        "PYNOMALY_DRIFT_MONITORING",
                        &v,
                        "expected true or false",
                    ));
                }
            };
        }
        if let Some(v) = get("PYNOMALY_DRIFT_WINDOW_SECONDS") {
            s.drift.window =
                Duration::from_secs(
                    parse_in("PYNOMALY_DRIFT_WINDOW_SECONDS", &v, 10, 604_800)? as u64
                );
        }
        if let Some(v) = get("PYNOMALY_DRIFT_MIN_SAMPLES") {
            s.drift.thresholds.min_samples =
                parse_in("PYNOMALY_DRIFT_MIN_SAMPLES", &v, 30, 1_000_000_000)? as u64;
        }
        Ok(s)
    }
}

fn redact(v: &str) -> String {
    // URLs may carry passwords.
    match v.split_once("://") {
        Some((scheme, _)) => format!("{scheme}://…"),
        None => "…".into(),
    }
}

fn invalid(name: &'static str, value: &str, e: impl std::fmt::Display) -> SettingsError {
    SettingsError::Invalid {
        name,
        value: value.to_string(),
        reason: e.to_string(),
    }
}

fn parse_in(name: &'static str, v: &str, min: usize, max: usize) -> Result<usize, SettingsError> {
    match v.trim().parse::<usize>() {
        Ok(n) if (min..=max).contains(&n) => Ok(n),
        _ => Err(invalid(
            name,
            v,
            format!("expected an integer in [{min}, {max}]"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn from(pairs: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_follow_the_contract() {
        let s = from(&[]).unwrap();
        assert_eq!(s.bind.to_string(), "127.0.0.1:8000");
        assert_eq!(s.data_dir, PathBuf::from("./pynomaly-data"));
        assert_eq!(s.sources_dir, PathBuf::from("./pynomaly-data/sources"));
        assert_eq!(s.max_body_bytes, 32 * 1024 * 1024);
    }

    #[test]
    fn drift_settings_are_read_and_checked() {
        let s = from(&[
            ("PYNOMALY_DRIFT_MONITORING", "off"),
            ("PYNOMALY_DRIFT_WINDOW_SECONDS", "60"),
            ("PYNOMALY_DRIFT_MIN_SAMPLES", "500"),
        ])
        .unwrap();
        assert!(!s.drift.enabled);
        assert_eq!(s.drift.window, Duration::from_secs(60));
        assert_eq!(s.drift.thresholds.min_samples, 500);
        assert!(from(&[]).unwrap().drift.enabled);
        for (name, bad) in [
            ("PYNOMALY_DRIFT_MONITORING", "maybe"),
            ("PYNOMALY_DRIFT_WINDOW_SECONDS", "1"),
            ("PYNOMALY_DRIFT_MIN_SAMPLES", "5"),
        ] {
            let e = from(&[(name, bad)]).unwrap_err();
            assert!(e.to_string().contains(name), "{e}");
        }
    }

    #[test]
    fn impossible_settings_fail_the_start_with_their_name() {
        let e = from(&[("WORKER_CONCURRENCY", "many")]).unwrap_err();
        assert!(e.to_string().contains("WORKER_CONCURRENCY"));
        let e = from(&[("DATABASE_URL", "mysql://u:secret@h/db")]).unwrap_err();
        assert!(!e.to_string().contains("secret"), "{e}");
        let e = from(&[("REDIS_URL", "redis://h:6379")]).unwrap_err();
        assert!(e.to_string().contains("DATABASE_URL"), "{e}");
        assert!(from(&[("PYNOMALY_SECRET_KEY", "abc")]).is_err());
        assert!(from(&[("PYNOMALY_STORAGE_URL", "gs://bucket/x")]).is_err());
        assert!(from(&[("PYNOMALY_STORAGE_URL", "s3://bucket/x")]).is_ok());
    }

    #[test]
    fn scale_out_urls_are_read_and_never_printed() {
        let s = from(&[
            ("DATABASE_URL", "postgres://u:hunter2@h/db"),
            ("REDIS_URL", "redis://:hunter2@h:6379"),
            ("PYNOMALY_JOB_LEASE_S", "5"),
        ])
        .unwrap();
        assert_eq!(
            s.database_url.as_ref().unwrap().expose(),
            "postgres://u:hunter2@h/db"
        );
        assert_eq!(
            s.redis_url.as_ref().unwrap().expose(),
            "redis://:hunter2@h:6379"
        );
        assert_eq!(s.job_lease, Duration::from_secs(5));
        assert!(!format!("{s:?}").contains("hunter2"));
    }
}
