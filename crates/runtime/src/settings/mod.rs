//! Typed settings: defaults, then environment variables, read and validated once at
//! start-up, grouped by what they configure. A setting that cannot work fails the start;
//! every bad variable is named in the one error (values of URLs and secrets are not
//! repeated), rather than warned about and ignored. `docs/api.md` lists every variable.
//!
//! Shapes that work: nothing set (one process, embedded: SQLite, local files, the
//! in-process queue); `DATABASE_URL` alone (one instance on Postgres: it runs jobs in
//! process and requeues, at start-up, jobs left running — so never two such instances on
//! one database); `DATABASE_URL` and `REDIS_URL` (any number of instances and
//! `pynomaly worker` processes). `REDIS_URL` without `DATABASE_URL` is refused.

mod env;
mod known;
mod secret;
mod security;
mod traces;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use pynomaly_models::DriftConfig;
use pynomaly_redis::{RedisTarget, RedisUrlError};

pub(crate) use env::Env;
pub use env::{Problem, SettingsError};
pub use known::{UnknownVariable, VARIABLES, unknown_variables};
pub use secret::Secret;
pub use traces::{TraceSampler, TraceSettings};

/// Everything a pynomaly process is configured with.
#[derive(Debug, Clone)]
pub struct Settings {
    pub server: ServerSettings,
    pub storage: StorageSettings,
    pub database: DatabaseSettings,
    pub queue: QueueSettings,
    pub security: SecuritySettings,
    pub telemetry: TelemetrySettings,
    /// Drift monitoring (`PYNOMALY_DRIFT_MONITORING`, `true`/`false`, default on), its
    /// window length (`PYNOMALY_DRIFT_WINDOW_SECONDS`, default 300) and the rows a window
    /// needs before a verdict (`PYNOMALY_DRIFT_MIN_SAMPLES`, default 200).
    pub drift: DriftConfig,
}

/// The HTTP listeners and the limits of every request.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// Address to listen on (`PYNOMALY_BIND`, default `127.0.0.1:8000`; port 0 picks one).
    pub bind: SocketAddr,
    /// A second listener serving only `GET /metrics` (`PYNOMALY_METRICS_BIND`, e.g.
    /// `0.0.0.0:8001`): the metrics port of `pynomaly worker`, optional for `serve`.
    pub metrics_bind: Option<SocketAddr>,
    /// Largest request body (`PYNOMALY_MAX_BODY_BYTES`, default 32 MiB): 413 beyond.
    pub max_body_bytes: usize,
    /// Largest rows × features in one request (`PYNOMALY_MAX_CELLS`, default 5,000,000).
    pub max_cells: usize,
    /// A request taking longer gets 503 with `Retry-After` (`PYNOMALY_REQUEST_TIMEOUT_S`,
    /// default 30).
    pub request_timeout: Duration,
    /// How long a shutdown waits for in-flight requests and running jobs
    /// (`PYNOMALY_SHUTDOWN_TIMEOUT_S`, default 30).
    pub shutdown_timeout: Duration,
    /// Largest request head, request line and headers together (`PYNOMALY_MAX_HEADER_BYTES`,
    /// default 64 KiB): 431 beyond.
    pub max_header_bytes: usize,
    /// A client must send its whole request head within this time
    /// (`PYNOMALY_HEADER_READ_TIMEOUT_S`, default 10), or the connection is closed.
    pub header_read_timeout: Duration,
    /// Serve HTTPS on both listeners with this certificate chain and key
    /// (`PYNOMALY_TLS_CERT`, `PYNOMALY_TLS_KEY`, PEM files, set together); `None`: plain
    /// HTTP, as behind a proxy that terminates TLS.
    pub tls: Option<TlsFiles>,
}

/// A certificate chain and its private key, PEM files read at start-up and re-read when
/// they change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain, leaf first (`PYNOMALY_TLS_CERT`).
    pub cert: PathBuf,
    /// The private key: PKCS#8, PKCS#1 or SEC1 (`PYNOMALY_TLS_KEY`).
    pub key: PathBuf,
}

/// Where data lives: the data directory, data sources, artifacts and the model cache.
#[derive(Debug, Clone)]
pub struct StorageSettings {
    /// The SQLite metadata, the server secret and the admin key live here
    /// (`PYNOMALY_DATA_DIR`, default `./pynomaly-data`).
    pub data_dir: PathBuf,
    /// Data sources for training and batch (`PYNOMALY_SOURCES_DIR`, default
    /// `<data dir>/sources`).
    pub sources_dir: PathBuf,
    /// Artifacts: a local path, `file://` or `s3://bucket/prefix` URL
    /// (`PYNOMALY_STORAGE_URL`, default `<data dir>/storage`).
    pub artifacts_url: String,
    /// Serialized bytes of models kept in memory (`PYNOMALY_MODEL_CACHE_BYTES`, default
    /// 512 MiB).
    pub model_cache_bytes: u64,
    /// Encryption at rest of artifacts (`PYNOMALY_ENCRYPTION_KEY`, `_KEY_ID`, `_OLD_KEYS`,
    /// `_REQUIRED`); `None`: stored unencrypted (said once at start-up).
    pub encryption: Option<pynomaly_store::crypto::Keyring>,
}

/// The metadata database.
#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    /// Postgres (`DATABASE_URL`; unset: SQLite in the data directory).
    pub url: Option<Secret>,
    /// Connections per process to Postgres (`PYNOMALY_DATABASE_MAX_CONNECTIONS`, default 10).
    pub max_connections: u32,
}

impl DatabaseSettings {
    /// `postgres` or `sqlite`, for metrics and logs.
    pub fn kind(&self) -> &'static str {
        if self.url.is_some() {
            "postgres"
        } else {
            "sqlite"
        }
    }
}

/// The job queue and the workers that run jobs.
#[derive(Debug, Clone)]
pub struct QueueSettings {
    /// The Redis job queue, also carrying model changes and shared rate limits
    /// (`REDIS_URL`; unset: the in-process queue): `redis://host:6379` for one server,
    /// `redis+cluster://host1:7000,host2:7001` for a Redis Cluster named by some of its
    /// nodes.
    pub redis_url: Option<Secret>,
    /// Whether a `redis://` `REDIS_URL` names a Redis Cluster (`REDIS_CLUSTER`,
    /// `true`/`false`, default false; a `redis+cluster://` URL always does).
    pub redis_cluster: bool,
    /// Prefix of the Redis keys (`PYNOMALY_REDIS_PREFIX`, default `pynomaly`).
    pub redis_prefix: String,
    /// A running job whose worker stops renewing its lease for this long is taken over by
    /// another worker (`PYNOMALY_JOB_LEASE_S`, default 30).
    pub job_lease: Duration,
    /// Attempts before a job is `failed` (`PYNOMALY_JOB_MAX_ATTEMPTS`, default 3).
    pub job_max_attempts: i64,
    /// Job worker tasks in this process (`WORKER_CONCURRENCY`, default 2; 0 runs none,
    /// as tests do).
    pub worker_concurrency: usize,
    /// With Redis, whether `serve` also runs jobs (`serve --workers N`); by default only
    /// `pynomaly worker` processes do.
    pub serve_runs_jobs: bool,
    /// Rows per chunk in batch jobs (`PYNOMALY_BATCH_CHUNK_ROWS`, default 16384).
    pub batch_chunk_rows: usize,
}

impl QueueSettings {
    /// Where Redis is (`REDIS_URL`, `REDIS_CLUSTER`): one server or a cluster; `None`
    /// without Redis.
    ///
    /// # Errors
    /// The URL is unusable (settings read from the environment were checked already).
    pub fn redis_target(&self) -> Result<Option<RedisTarget>, RedisUrlError> {
        self.redis_url
            .as_ref()
            .map(|url| RedisTarget::parse(url.expose(), self.redis_cluster))
            .transpose()
    }
}

/// Credentials, limits and privacy.
#[derive(Debug, Clone)]
pub struct SecuritySettings {
    /// The key-hashing secret (`PYNOMALY_SECRET_KEY`, 64 hex digits, shared by every
    /// instance of a deployment; unset: `<data dir>/secret.key`, created on first start).
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
    /// PII masking of outputs and the privacy endpoints' defaults (`PYNOMALY_PII_FIELDS`,
    /// default `name,email,phone,address,ssn`; `PYNOMALY_PII_MODE`; `PYNOMALY_PII_HASH_KEY`).
    pub pii: pynomaly_privacy::PrivacyConfig,
}

/// Logs and traces.
#[derive(Debug, Clone)]
pub struct TelemetrySettings {
    /// `LOG_LEVEL` (a tracing filter, default `info`).
    pub log_level: String,
    /// Traces (the standard `OTEL_*` variables; off unless an OTLP endpoint is set).
    pub traces: TraceSettings,
}

impl Settings {
    /// The defaults, with everything under `data_dir`.
    pub fn with_data_dir(data_dir: impl Into<PathBuf>) -> Self {
        let data_dir = data_dir.into();
        Self {
            server: ServerSettings {
                bind: SocketAddr::from(([127, 0, 0, 1], 8000)),
                metrics_bind: None,
                max_body_bytes: 32 * 1024 * 1024,
                max_cells: 5_000_000,
                request_timeout: Duration::from_secs(30),
                shutdown_timeout: Duration::from_secs(30),
                max_header_bytes: 64 * 1024,
                header_read_timeout: Duration::from_secs(10),
                tls: None,
            },
            storage: StorageSettings {
                sources_dir: data_dir.join("sources"),
                artifacts_url: data_dir.join("storage").display().to_string(),
                data_dir,
                model_cache_bytes: 512 * 1024 * 1024,
                encryption: None,
            },
            database: DatabaseSettings {
                url: None,
                max_connections: 10,
            },
            queue: QueueSettings {
                redis_url: None,
                redis_cluster: false,
                redis_prefix: "pynomaly".into(),
                job_lease: Duration::from_secs(30),
                job_max_attempts: 3,
                worker_concurrency: 2,
                serve_runs_jobs: false,
                batch_chunk_rows: 16_384,
            },
            security: SecuritySettings {
                secret_key: None,
                rate_limit_per_minute: 6000,
                login_rate_limit_per_minute: 10,
                login_ip_rate_limit_per_minute: 60,
                jwt_ttl: Duration::from_secs(3600),
                trust_forwarded_for: false,
                pii: security::default_pii(),
            },
            telemetry: TelemetrySettings {
                log_level: "info".into(),
                traces: TraceSettings::default(),
            },
            drift: DriftConfig::default(),
        }
    }

    /// Settings from the process environment.
    ///
    /// # Errors
    /// Every variable that does not parse or cannot work, named.
    pub fn from_env() -> Result<Self, SettingsError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Settings from any lookup of variables (tests pass a map).
    ///
    /// # Errors
    /// As [`Settings::from_env`].
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let mut env = Env::new(&get);
        let data_dir = env
            .get("PYNOMALY_DATA_DIR")
            .unwrap_or_else(|| "./pynomaly-data".into());
        let mut s = Self::with_data_dir(PathBuf::from(data_dir));
        s.server.read(&mut env);
        s.storage.read(&mut env);
        s.database.read(&mut env);
        s.queue.read(&mut env, s.database.url.is_some());
        s.security.read(&mut env);
        s.telemetry.read(&mut env);
        read_drift(&mut s.drift, &mut env);
        env.finish(s)
    }
}

impl ServerSettings {
    fn read(&mut self, env: &mut Env<'_>) {
        if let Some(v) = env.parsed("PYNOMALY_BIND") {
            self.bind = v;
        }
        if let Some(v) = env.parsed("PYNOMALY_METRICS_BIND") {
            self.metrics_bind = Some(v);
        }
        if let Some(v) = env.int_in("PYNOMALY_MAX_BODY_BYTES", 1024, 1 << 34) {
            self.max_body_bytes = v;
        }
        if let Some(v) = env.int_in("PYNOMALY_MAX_CELLS", 1, 1 << 34) {
            self.max_cells = v;
        }
        if let Some(v) = env.seconds_in("PYNOMALY_REQUEST_TIMEOUT_S", 1, 86_400) {
            self.request_timeout = v;
        }
        if let Some(v) = env.seconds_in("PYNOMALY_SHUTDOWN_TIMEOUT_S", 0, 86_400) {
            self.shutdown_timeout = v;
        }
        if let Some(v) = env.int_in("PYNOMALY_MAX_HEADER_BYTES", 8192, 1 << 24) {
            self.max_header_bytes = v;
        }
        if let Some(v) = env.seconds_in("PYNOMALY_HEADER_READ_TIMEOUT_S", 1, 3600) {
            self.header_read_timeout = v;
        }
        match (env.get("PYNOMALY_TLS_CERT"), env.get("PYNOMALY_TLS_KEY")) {
            (Some(cert), Some(key)) => {
                self.tls = Some(TlsFiles {
                    cert: cert.into(),
                    key: key.into(),
                });
            }
            (Some(cert), None) => env.invalid(
                "PYNOMALY_TLS_CERT",
                &cert,
                "set PYNOMALY_TLS_KEY too (the certificate's private key), or neither",
            ),
            (None, Some(key)) => env.invalid(
                "PYNOMALY_TLS_KEY",
                &key,
                "set PYNOMALY_TLS_CERT too (the certificate chain), or neither",
            ),
            (None, None) => {}
        }
    }
}

impl StorageSettings {
    fn read(&mut self, env: &mut Env<'_>) {
        if let Some(v) = env.get("PYNOMALY_SOURCES_DIR") {
            self.sources_dir = PathBuf::from(v);
        }
        if let Some(v) = env.get("PYNOMALY_STORAGE_URL") {
            if v.contains("://") && !v.starts_with("file://") && !v.starts_with("s3://") {
                env.invalid(
                    "PYNOMALY_STORAGE_URL",
                    &v,
                    "expected s3://bucket/prefix, a file:// URL or a local path",
                );
            } else {
                self.artifacts_url = v;
            }
        }
        if let Some(v) = env.int_in("PYNOMALY_MODEL_CACHE_BYTES", 1024, 1 << 40) {
            self.model_cache_bytes = v as u64;
        }
        self.encryption = security::encryption(env);
    }
}

impl DatabaseSettings {
    fn read(&mut self, env: &mut Env<'_>) {
        if let Some(v) = env.get("DATABASE_URL") {
            if v.starts_with("postgres://") || v.starts_with("postgresql://") {
                self.url = Some(Secret::new(v));
            } else {
                env.invalid(
                    "DATABASE_URL",
                    &secret::redact(&v),
                    "expected a Postgres URL (postgres://user@host:5432/db); unset it to use \
                     the embedded SQLite store",
                );
            }
        }
        if let Some(v) = env.int_in("PYNOMALY_DATABASE_MAX_CONNECTIONS", 1, 1000) {
            self.max_connections = v as u32;
        }
    }
}

impl QueueSettings {
    fn read(&mut self, env: &mut Env<'_>, has_database: bool) {
        if let Some(v) = env.flag(
            "REDIS_CLUSTER",
            &["true", "1", "yes"],
            &["false", "0", "no"],
        ) {
            self.redis_cluster = v;
        }
        if let Some(v) = env.get("REDIS_URL") {
            if let Err(e) = RedisTarget::parse(&v, self.redis_cluster) {
                env.invalid(
                    "REDIS_URL",
                    &secret::redact(&v),
                    format!("{e}; unset it to use the in-process queue"),
                );
            } else if !has_database && env.get("DATABASE_URL").is_none() {
                env.invalid(
                    "REDIS_URL",
                    &secret::redact(&v),
                    "the Redis queue keeps job state in Postgres: set DATABASE_URL too (SQLite \
                     cannot be shared by several processes)",
                );
            } else {
                self.redis_url = Some(Secret::new(v));
            }
        }
        if let Some(v) = env.get("PYNOMALY_REDIS_PREFIX") {
            self.redis_prefix = v;
        }
        if let Some(v) = env.seconds_in("PYNOMALY_JOB_LEASE_S", 1, 86_400) {
            self.job_lease = v;
        }
        if let Some(v) = env.int_in("PYNOMALY_JOB_MAX_ATTEMPTS", 1, 100) {
            self.job_max_attempts = v as i64;
        }
        if let Some(v) = env.int_in("WORKER_CONCURRENCY", 0, 256) {
            self.worker_concurrency = v;
        }
        if let Some(v) = env.int_in("PYNOMALY_BATCH_CHUNK_ROWS", 1, 10_000_000) {
            self.batch_chunk_rows = v;
        }
    }
}

impl SecuritySettings {
    fn read(&mut self, env: &mut Env<'_>) {
        if let Some(v) = env.get("PYNOMALY_SECRET_KEY") {
            if hex::decode(v.trim()).is_ok_and(|b| b.len() == 32) {
                self.secret_key = Some(Secret::new(v.trim()));
            } else {
                env.invalid_secret("PYNOMALY_SECRET_KEY", security::RANDOM_32_BYTES);
            }
        }
        if let Some(v) = env.int_in("PYNOMALY_RATE_LIMIT_PER_MINUTE", 0, 100_000_000) {
            self.rate_limit_per_minute = v as u32;
        }
        if let Some(v) = env.int_in("PYNOMALY_LOGIN_RATE_LIMIT_PER_MINUTE", 1, 100_000) {
            self.login_rate_limit_per_minute = v as u32;
        }
        if let Some(v) = env.int_in("PYNOMALY_LOGIN_IP_RATE_LIMIT_PER_MINUTE", 1, 100_000) {
            self.login_ip_rate_limit_per_minute = v as u32;
        }
        if let Some(v) = env.seconds_in("PYNOMALY_JWT_TTL_S", 1, 86_400) {
            self.jwt_ttl = v;
        }
        if let Some(v) = env.flag(
            "PYNOMALY_TRUST_FORWARDED_FOR",
            &["true", "1", "yes"],
            &["false", "0", "no"],
        ) {
            self.trust_forwarded_for = v;
        }
        self.pii = security::pii(env);
    }
}

impl TelemetrySettings {
    fn read(&mut self, env: &mut Env<'_>) {
        if let Some(v) = env.get("LOG_LEVEL") {
            self.log_level = v;
        }
        self.traces = TraceSettings::read(env);
    }
}

fn read_drift(drift: &mut DriftConfig, env: &mut Env<'_>) {
    if let Some(v) = env.flag(
        "PYNOMALY_DRIFT_MONITORING",
        &["true", "1", "on", "yes"],
        &["false", "0", "off", "no"],
    ) {
        drift.enabled = v;
    }
    if let Some(v) = env.seconds_in("PYNOMALY_DRIFT_WINDOW_SECONDS", 10, 604_800) {
        drift.window = v;
    }
    if let Some(v) = env.int_in("PYNOMALY_DRIFT_MIN_SAMPLES", 30, 1_000_000_000) {
        drift.thresholds.min_samples = v as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use env::{assert_each_refused, pairs};

    fn from(vars: &[(&str, &str)]) -> Result<Settings, SettingsError> {
        Settings::from_lookup(pairs(vars))
    }

    #[test]
    fn defaults_follow_the_contract() {
        let s = from(&[]).unwrap();
        assert_eq!(s.server.bind.to_string(), "127.0.0.1:8000");
        assert_eq!(s.storage.data_dir, PathBuf::from("./pynomaly-data"));
        assert_eq!(
            s.storage.sources_dir,
            PathBuf::from("./pynomaly-data/sources")
        );
        assert_eq!(s.server.max_body_bytes, 32 * 1024 * 1024);
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
        assert_each_refused(
            from,
            &[
                ("PYNOMALY_DRIFT_MONITORING", "maybe"),
                ("PYNOMALY_DRIFT_WINDOW_SECONDS", "1"),
                ("PYNOMALY_DRIFT_MIN_SAMPLES", "5"),
            ],
        );
    }

    #[test]
    fn the_default_pii_fields_are_the_guides_and_can_be_replaced_or_emptied() {
        let fields = |vars: &[(&str, &str)]| from(vars).unwrap().security.pii.fields;
        assert_eq!(
            fields(&[]),
            ["name", "email", "phone", "address", "ssn"],
            "as with no settings at all"
        );
        assert_eq!(
            Settings::with_data_dir(".").security.pii.fields,
            fields(&[])
        );
        assert_eq!(
            fields(&[("PYNOMALY_PII_FIELDS", "owner, iban")]),
            ["owner", "iban"]
        );
        assert!(fields(&[("PYNOMALY_PII_FIELDS", "none")]).is_empty());
    }

    #[test]
    fn every_bad_variable_is_named_in_one_error() {
        let e = from(&[
            ("WORKER_CONCURRENCY", "many"),
            ("PYNOMALY_BIND", "nowhere"),
            ("PYNOMALY_SECRET_KEY", "hunter2"),
            ("PYNOMALY_DRIFT_MONITORING", "maybe"),
        ])
        .unwrap_err();
        let names: Vec<&str> = e.problems().iter().map(|p| p.name).collect();
        assert_eq!(
            names,
            [
                "PYNOMALY_BIND",
                "WORKER_CONCURRENCY",
                "PYNOMALY_SECRET_KEY",
                "PYNOMALY_DRIFT_MONITORING"
            ]
        );
        let text = e.to_string();
        assert!(text.starts_with("4 settings are invalid:"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
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
    fn tls_needs_a_certificate_and_a_key_together() {
        assert_eq!(from(&[]).unwrap().server.tls, None);
        let s = from(&[
            ("PYNOMALY_TLS_CERT", "/etc/pynomaly/tls.crt"),
            ("PYNOMALY_TLS_KEY", "/etc/pynomaly/tls.key"),
        ])
        .unwrap();
        assert_eq!(
            s.server.tls,
            Some(TlsFiles {
                cert: "/etc/pynomaly/tls.crt".into(),
                key: "/etc/pynomaly/tls.key".into(),
            })
        );
        let e = from(&[("PYNOMALY_TLS_CERT", "tls.crt")]).unwrap_err();
        assert_eq!(e.problems()[0].name, "PYNOMALY_TLS_CERT");
        assert!(e.to_string().contains("PYNOMALY_TLS_KEY"), "{e}");
        let e = from(&[("PYNOMALY_TLS_KEY", "tls.key")]).unwrap_err();
        assert_eq!(e.problems()[0].name, "PYNOMALY_TLS_KEY");
    }

    #[test]
    fn security_settings_are_read_and_bad_ones_named() {
        let s = from(&[]).unwrap();
        assert_eq!(s.security.rate_limit_per_minute, 6000);
        assert_eq!(s.security.jwt_ttl, Duration::from_secs(3600));
        assert!(!s.security.trust_forwarded_for);
        let s = from(&[
            ("PYNOMALY_RATE_LIMIT_PER_MINUTE", "0"),
            ("PYNOMALY_LOGIN_RATE_LIMIT_PER_MINUTE", "3"),
            ("PYNOMALY_LOGIN_IP_RATE_LIMIT_PER_MINUTE", "30"),
            ("PYNOMALY_JWT_TTL_S", "900"),
            ("PYNOMALY_TRUST_FORWARDED_FOR", "true"),
        ])
        .unwrap();
        assert_eq!(s.security.rate_limit_per_minute, 0, "0: no limit");
        assert_eq!(s.security.login_rate_limit_per_minute, 3);
        assert_eq!(s.security.login_ip_rate_limit_per_minute, 30);
        assert_eq!(s.security.jwt_ttl, Duration::from_secs(900));
        assert!(s.security.trust_forwarded_for);
        assert_each_refused(
            from,
            &[
                ("PYNOMALY_RATE_LIMIT_PER_MINUTE", "-1"),
                ("PYNOMALY_LOGIN_RATE_LIMIT_PER_MINUTE", "0"),
                ("PYNOMALY_JWT_TTL_S", "0"),
                ("PYNOMALY_TRUST_FORWARDED_FOR", "maybe"),
            ],
        );
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
            s.database.url.as_ref().unwrap().expose(),
            "postgres://u:hunter2@h/db"
        );
        assert_eq!(
            s.queue.redis_url.as_ref().unwrap().expose(),
            "redis://:hunter2@h:6379"
        );
        assert_eq!(s.queue.job_lease, Duration::from_secs(5));
        assert!(!format!("{s:?}").contains("hunter2"));
        assert!(!s.queue.redis_target().unwrap().unwrap().is_cluster());
    }

    #[test]
    fn a_redis_cluster_is_named_by_its_url_or_by_redis_cluster() {
        let db = ("DATABASE_URL", "postgres://h/db");
        let s = from(&[db, ("REDIS_URL", "redis+cluster://:pw@h1:7000,h2:7001")]).unwrap();
        assert_eq!(
            s.queue.redis_target().unwrap(),
            Some(RedisTarget::Cluster(vec![
                "redis://:pw@h1:7000".into(),
                "redis://:pw@h2:7001".into()
            ]))
        );
        let s = from(&[
            db,
            ("REDIS_URL", "redis://h1:7000"),
            ("REDIS_CLUSTER", "true"),
        ])
        .unwrap();
        assert!(s.queue.redis_cluster);
        assert!(s.queue.redis_target().unwrap().unwrap().is_cluster());
        let s = from(&[
            db,
            ("REDIS_URL", "redis://h1:7000"),
            ("REDIS_CLUSTER", "false"),
        ])
        .unwrap();
        assert!(!s.queue.redis_target().unwrap().unwrap().is_cluster());
        // Several hosts without saying cluster, an empty host, a bad flag: named, and the
        // password never repeated.
        for bad in [
            vec![db, ("REDIS_URL", "redis://:hunter2@h1:7000,h2:7001")],
            vec![
                db,
                ("REDIS_URL", "redis+cluster://:hunter2@h1:7000,,h2:7001"),
            ],
            vec![db, ("REDIS_URL", "http://h:6379")],
        ] {
            let e = from(&bad).unwrap_err();
            assert_eq!(e.problems()[0].name, "REDIS_URL", "{e}");
            assert!(!e.to_string().contains("hunter2"), "{e}");
        }
        let e = from(&[db, ("REDIS_URL", "redis://h:1"), ("REDIS_CLUSTER", "maybe")]).unwrap_err();
        assert_eq!(e.problems()[0].name, "REDIS_CLUSTER", "{e}");
    }

    #[test]
    fn encryption_keys_are_validated_and_never_printed() {
        let a = "a1".repeat(32);
        let b = "b2".repeat(32);
        assert!(from(&[]).unwrap().storage.encryption.is_none());
        let s = from(&[
            ("PYNOMALY_ENCRYPTION_KEY", &b),
            ("PYNOMALY_ENCRYPTION_KEY_ID", "2026-11"),
            ("PYNOMALY_ENCRYPTION_OLD_KEYS", &format!("2026-10:{a}")),
        ])
        .unwrap();
        let ring = s.storage.encryption.as_ref().unwrap();
        assert_eq!(ring.current_id(), Some("2026-11"));
        assert!(!format!("{s:?}").contains("a1a1"), "{s:?}");
        // The default id is the key's fingerprint.
        let s = from(&[("PYNOMALY_ENCRYPTION_KEY", &a)]).unwrap();
        assert!(
            s.storage
                .encryption
                .unwrap()
                .current_id()
                .unwrap()
                .starts_with('k')
        );
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
