//! Typed settings: defaults, then environment variables, validated at start-up.
//!
//! Names are the contract's (`PYNOMALY_BIND`, `PYNOMALY_DATA_DIR`, `PYNOMALY_SOURCES_DIR`,
//! `PYNOMALY_STORAGE_URL`, `WORKER_CONCURRENCY`, `LOG_LEVEL`) plus the limits
//! (`PYNOMALY_MAX_BODY_BYTES`, `PYNOMALY_MAX_CELLS`, `PYNOMALY_REQUEST_TIMEOUT_S`,
//! `PYNOMALY_SHUTDOWN_TIMEOUT_S`, `PYNOMALY_MODEL_CACHE_BYTES`, `PYNOMALY_BATCH_CHUNK_ROWS`).
//! A setting that cannot work fails the start with a message naming it, rather than
//! being warned about and ignored; `DATABASE_URL` and `REDIS_URL` are refused until the
//! scale-out issue implements them, so nobody believes they are in use.

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
        for (name, what) in [
            ("DATABASE_URL", "the Postgres store"),
            ("REDIS_URL", "the Redis job queue"),
        ] {
            if let Some(v) = get(name) {
                return Err(SettingsError::Invalid {
                    name: if name == "DATABASE_URL" {
                        "DATABASE_URL"
                    } else {
                        "REDIS_URL"
                    },
                    value: redact(&v),
                    reason: format!(
                        "{what} is not available in this build; unset it to use the embedded default"
                    ),
                });
            }
        }
        if let Some(v) = get("PYNOMALY_BIND") {
            s.bind = v.parse().map_err(|e| invalid("PYNOMALY_BIND", &v, e))?;
        }
        if let Some(v) = get("PYNOMALY_SOURCES_DIR") {
            s.sources_dir = PathBuf::from(v);
        }
        if let Some(v) = get("PYNOMALY_STORAGE_URL") {
            if v.contains("://") && !v.starts_with("file://") {
                return Err(SettingsError::Invalid {
                    name: "PYNOMALY_STORAGE_URL",
                    value: v,
                    reason: "only file:// URLs and local paths are supported by this build".into(),
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
    fn impossible_settings_fail_the_start_with_their_name() {
        let e = from(&[("WORKER_CONCURRENCY", "many")]).unwrap_err();
        assert!(e.to_string().contains("WORKER_CONCURRENCY"));
        let e = from(&[("DATABASE_URL", "postgres://u:secret@h/db")]).unwrap_err();
        assert!(!e.to_string().contains("secret"), "{e}");
        assert!(from(&[("PYNOMALY_STORAGE_URL", "s3://bucket/x")]).is_err());
    }
}
