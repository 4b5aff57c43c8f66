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
//! Security: `PYNOMALY_RATE_LIMIT_PER_MINUTE` (default per-key and per-user limit; 0: none),
//! `PYNOMALY_LOGIN_RATE_LIMIT_PER_MINUTE` and `PYNOMALY_LOGIN_IP_RATE_LIMIT_PER_MINUTE`
//! (login attempts per username and per client address), `PYNOMALY_JWT_TTL_S`,
//! `PYNOMALY_TRUST_FORWARDED_FOR`.
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
    /// Requests per minute of a key created without `rate_limit_per_minute`, and of every
    /// user (JWT) caller (`PYNOMALY_RATE_LIMIT_PER_MINUTE`, default 6000; 0: no limit).
    pub rate_limit_per_minute: u32,
    /// Login attempts per minute for one username (`PYNOMALY_LOGIN_RATE_LIMIT_PER_MINUTE`,
    /// default 10).
    pub login_rate_limit_per_minute: u32,
    /// Login attempts per minute from one client address
    /// (`PYNOMALY_LOGIN_IP_RATE_LIMIT_PER_MINUTE`, default 60).
    pub login_ip_rate_limit_per_minute: u32,
    /// Lifetime of the JWTs `POST /api/v1/auth/token` issues (`PYNOMALY_JWT_TTL_S`,
    /// default 3600).
    pub jwt_ttl: Duration,
    /// Take the client address from the last `X-Forwarded-For` entry
    /// (`PYNOMALY_TRUST_FORWARDED_FOR=true`): only behind a proxy that sets it, as
    /// `nginx.conf` does; otherwise any client could pick its address.
    pub trust_forwarded_for: bool,
    /// Encryption at rest of artifacts (`PYNOMALY_ENCRYPTION_KEY`, `_KEY_ID`, `_OLD_KEYS`,
    /// `_REQUIRED`); `None`: stored unencrypted (said once at start-up).
    pub encryption: Option<pynomaly_store::crypto::Keyring>,
    /// PII masking of outputs and the privacy endpoints' defaults (`PYNOMALY_PII_FIELDS`,
    /// `PYNOMALY_PII_MODE`).
    pub pii: pynomaly_privacy::PrivacyConfig,
    /// Largest request head, request line and headers together (`PYNOMALY_MAX_HEADER_BYTES`,
    /// default 64 KiB): 431 beyond.
    pub max_header_bytes: usize,
    /// A client must send its whole request head within this time
    /// (`PYNOMALY_HEADER_READ_TIMEOUT_S`, default 10), or the connection is closed.
    pub header_read_timeout: Duration,
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
            rate_limit_per_minute: 6000,
            login_rate_limit_per_minute: 10,
            login_ip_rate_limit_per_minute: 60,
            jwt_ttl: Duration::from_secs(3600),
            trust_forwarded_for: false,
            encryption: None,
            pii: pynomaly_privacy::PrivacyConfig::default(),
            max_header_bytes: 64 * 1024,
            header_read_timeout: Duration::from_secs(10),
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
        if let Some(v) = get("PYNOMALY_RATE_LIMIT_PER_MINUTE") {
            s.rate_limit_per_minute =
                parse_in("PYNOMALY_RATE_LIMIT_PER_MINUTE", &v, 0, 100_000_000)? as u32;
        }
        if let Some(v) = get("PYNOMALY_LOGIN_RATE_LIMIT_PER_MINUTE") {
            s.login_rate_limit_per_minute =
                parse_in("PYNOMALY_LOGIN_RATE_LIMIT_PER_MINUTE", &v, 1, 100_000)? as u32;
        }
        if let Some(v) = get("PYNOMALY_LOGIN_IP_RATE_LIMIT_PER_MINUTE") {
            s.login_ip_rate_limit_per_minute =
                parse_in("PYNOMALY_LOGIN_IP_RATE_LIMIT_PER_MINUTE", &v, 1, 100_000)? as u32;
        }
        if let Some(v) = get("PYNOMALY_JWT_TTL_S") {
            s.jwt_ttl = Duration::from_secs(parse_in("PYNOMALY_JWT_TTL_S", &v, 1, 86_400)? as u64);
        }
        if let Some(v) = get("PYNOMALY_TRUST_FORWARDED_FOR") {
            s.trust_forwarded_for = match v.trim() {
                "true" | "1" | "yes" => true,
                "false" | "0" | "no" => false,
                _ => {
                    return Err(invalid(
                        "PYNOMALY_TRUST_FORWARDED_FOR",
                        &v,
                        "expected true or false",
                    ));
                }
            };
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
        s.encryption = encryption_from(&get)?;
        s.pii = pii_from(&get)?;
        if let Some(v) = get("PYNOMALY_MAX_HEADER_BYTES") {
            s.max_header_bytes = parse_in("PYNOMALY_MAX_HEADER_BYTES", &v, 8192, 1 << 24)?;
        }
        if let Some(v) = get("PYNOMALY_HEADER_READ_TIMEOUT_S") {
            s.header_read_timeout = Duration::from_secs(parse_in(
                "PYNOMALY_HEADER_READ_TIMEOUT_S",
                &v,
                1,
                3600,
            )? as u64);
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

/// `PYNOMALY_ENCRYPTION_KEY` (64 hex digits: new artifacts are sealed under it),
/// `PYNOMALY_ENCRYPTION_KEY_ID` (its id, stored in each object's header; default a
/// fingerprint of the key), `PYNOMALY_ENCRYPTION_OLD_KEYS` (`id:hex,...`: keys rotated out,
/// still opening what they sealed) and `PYNOMALY_ENCRYPTION_REQUIRED` (`true`: refuse to
/// read plaintext artifacts).
fn encryption_from(
    get: &impl Fn(&str) -> Option<String>,
) -> Result<Option<pynomaly_store::crypto::Keyring>, SettingsError> {
    use pynomaly_store::crypto::{Keyring, MasterKey};
    let secret_invalid = |name: &'static str, reason: String| SettingsError::Invalid {
        name,
        value: "…".into(),
        reason,
    };
    let key = get("PYNOMALY_ENCRYPTION_KEY");
    let old = get("PYNOMALY_ENCRYPTION_OLD_KEYS");
    let required = match get("PYNOMALY_ENCRYPTION_REQUIRED")
        .as_deref()
        .map(str::trim)
    {
        None | Some("false" | "0") => false,
        Some("true" | "1") => true,
        Some(v) => {
            return Err(invalid(
                "PYNOMALY_ENCRYPTION_REQUIRED",
                v,
                "expected true or false",
            ));
        }
    };
    if let Some(id) = get("PYNOMALY_ENCRYPTION_KEY_ID")
        && key.is_none()
    {
        return Err(invalid(
            "PYNOMALY_ENCRYPTION_KEY_ID",
            &id,
            "names a key, but PYNOMALY_ENCRYPTION_KEY is not set",
        ));
    }
    let mut ring = match &key {
        Some(hex_key) => {
            let master = MasterKey::from_hex(hex_key)
                .map_err(|e| secret_invalid("PYNOMALY_ENCRYPTION_KEY", e.to_string()))?;
            let id = get("PYNOMALY_ENCRYPTION_KEY_ID").unwrap_or_else(|| master.fingerprint());
            Keyring::new(id.trim(), master)
                .map_err(|e| invalid("PYNOMALY_ENCRYPTION_KEY_ID", &id, e))?
        }
        None if old.is_some() => Keyring::read_only(),
        None if required => {
            return Err(invalid(
                "PYNOMALY_ENCRYPTION_REQUIRED",
                "true",
                "requires PYNOMALY_ENCRYPTION_KEY",
            ));
        }
        None => return Ok(None),
    };
    for entry in old.iter().flat_map(|v| v.split(',')).map(str::trim) {
        if entry.is_empty() {
            continue;
        }
        let Some((id, hex_key)) = entry.split_once(':') else {
            return Err(secret_invalid(
                "PYNOMALY_ENCRYPTION_OLD_KEYS",
                "expected id:hexkey entries separated by commas".into(),
            ));
        };
        let master = MasterKey::from_hex(hex_key).map_err(|e| {
            secret_invalid("PYNOMALY_ENCRYPTION_OLD_KEYS", format!("key '{id}': {e}"))
        })?;
        ring = ring
            .with_old_key(id.trim(), master)
            .map_err(|e| secret_invalid("PYNOMALY_ENCRYPTION_OLD_KEYS", e.to_string()))?;
    }
    Ok(Some(ring.require_encrypted(required)))
}

/// `PYNOMALY_PII_FIELDS` (comma-separated field names masked or hashed wherever they
/// appear), `PYNOMALY_PII_MODE` (`mask`, the default, or `hash`), and the hash key
/// `PYNOMALY_PII_HASH_KEY` (64 hex digits; unset: derived from the server secret at
/// start-up, so every instance sharing `PYNOMALY_SECRET_KEY` hashes alike).
fn pii_from(
    get: &impl Fn(&str) -> Option<String>,
) -> Result<pynomaly_privacy::PrivacyConfig, SettingsError> {
    let mut config = pynomaly_privacy::PrivacyConfig::default();
    if let Some(v) = get("PYNOMALY_PII_FIELDS") {
        config.fields = v
            .split(',')
            .map(str::trim)
            .filter(|f| !f.is_empty())
            .map(str::to_string)
            .collect();
    }
    if let Some(v) = get("PYNOMALY_PII_MODE") {
        config.mode = v
            .trim()
            .parse()
            .map_err(|e| invalid("PYNOMALY_PII_MODE", &v, e))?;
    }
    if let Some(v) = get("PYNOMALY_PII_HASH_KEY") {
        let key: [u8; 32] = hex::decode(v.trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| SettingsError::Invalid {
                name: "PYNOMALY_PII_HASH_KEY",
                value: "…".into(),
                reason: "expected 64 hex digits (32 random bytes, e.g. `openssl rand -hex 32`)"
                    .into(),
            })?;
        config.hash_key = Some(key);
    }
    Ok(config)
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
    fn security_settings_are_read_and_bad_ones_named() {
        let s = from(&[]).unwrap();
        assert_eq!(s.rate_limit_per_minute, 6000);
        assert_eq!(s.jwt_ttl, Duration::from_secs(3600));
        assert!(!s.trust_forwarded_for);
        let s = from(&[
            ("PYNOMALY_RATE_LIMIT_PER_MINUTE", "0"),
            ("PYNOMALY_LOGIN_RATE_LIMIT_PER_MINUTE", "3"),
            ("PYNOMALY_LOGIN_IP_RATE_LIMIT_PER_MINUTE", "30"),
            ("PYNOMALY_JWT_TTL_S", "900"),
            ("PYNOMALY_TRUST_FORWARDED_FOR", "true"),
        ])
        .unwrap();
        assert_eq!(s.rate_limit_per_minute, 0, "0: no limit");
        assert_eq!(s.login_rate_limit_per_minute, 3);
        assert_eq!(s.login_ip_rate_limit_per_minute, 30);
        assert_eq!(s.jwt_ttl, Duration::from_secs(900));
        assert!(s.trust_forwarded_for);
        for (name, bad) in [
            ("PYNOMALY_RATE_LIMIT_PER_MINUTE", "-1"),
            ("PYNOMALY_LOGIN_RATE_LIMIT_PER_MINUTE", "0"),
            ("PYNOMALY_JWT_TTL_S", "0"),
            ("PYNOMALY_TRUST_FORWARDED_FOR", "maybe"),
        ] {
            let e = from(&[(name, bad)]).unwrap_err();
            assert!(e.to_string().contains(name), "{e}");
        }
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

    #[test]
    fn encryption_keys_are_validated_and_never_printed() {
        let a = "a1".repeat(32);
        let b = "b2".repeat(32);
        assert!(from(&[]).unwrap().encryption.is_none());
        let s = from(&[
            ("PYNOMALY_ENCRYPTION_KEY", &b),
            ("PYNOMALY_ENCRYPTION_KEY_ID", "2026-11"),
            ("PYNOMALY_ENCRYPTION_OLD_KEYS", &format!("2026-10:{a}")),
        ])
        .unwrap();
        let ring = s.encryption.as_ref().unwrap();
        assert_eq!(ring.current_id(), Some("2026-11"));
        assert!(!format!("{s:?}").contains("a1a1"), "{s:?}");
        // The default id is the key's fingerprint.
        let s = from(&[("PYNOMALY_ENCRYPTION_KEY", &a)]).unwrap();
        assert!(s.encryption.unwrap().current_id().unwrap().starts_with('k'));
        for bad in [
            vec![("PYNOMALY_ENCRYPTION_KEY", "abc")],
            vec![("PYNOMALY_ENCRYPTION_KEY_ID", "x")],
            vec![
                ("PYNOMALY_ENCRYPTION_KEY", &a),
                ("PYNOMALY_ENCRYPTION_KEY_ID", "bad id"),
            ],
            vec![
                ("PYNOMALY_ENCRYPTION_KEY", &a),
                ("PYNOMALY_ENCRYPTION_OLD_KEYS", "nocolon"),
            ],
            vec![
                ("PYNOMALY_ENCRYPTION_KEY", &a),
                ("PYNOMALY_ENCRYPTION_OLD_KEYS", "k:zz"),
            ],
            vec![("PYNOMALY_ENCRYPTION_REQUIRED", "true")],
            vec![("PYNOMALY_PII_MODE", "shred")],
            vec![("PYNOMALY_PII_HASH_KEY", "12")],
        ] {
            let e = from(&bad).unwrap_err().to_string();
            assert!(e.contains(bad.last().unwrap().0), "{e}");
            assert!(!e.contains("a1a1"), "{e}");
        }
    }
}
