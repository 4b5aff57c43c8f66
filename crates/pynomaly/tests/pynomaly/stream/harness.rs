//! The stream tests' process, models and events, whatever the broker.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::ExitStatus;
use std::sync::Arc;
use std::time::Duration;

use pynomaly_models::{ModelRegistry, Registration};
use pynomaly_store::{ArtifactStore, SqliteStore};
use serde_json::{Value, json};
use testkit::Proc;
use testkit::wait::wait;

use crate::{Env, pynomaly};

/// A running `pynomaly stream`; SIGKILLed when dropped so a failing test leaves nothing.
pub struct StreamProcess {
    proc: Proc,
    metrics_addr: String,
}

impl StreamProcess {
    /// Starts `pynomaly stream ARGS` with its data directory at `data_dir`, and waits
    /// until it reports that it is consuming.
    pub fn start(data_dir: &Path, args: &[&str]) -> StreamProcess {
        Self::start_with_env(data_dir, args, &[])
    }

    /// [`StreamProcess::start`] with these variables set too (`DATABASE_URL`, `REDIS_URL`).
    pub fn start_with_env(data_dir: &Path, args: &[&str], vars: &[(&str, &str)]) -> StreamProcess {
        let name = format!("stream-{}", uuid::Uuid::new_v4().simple());
        let mut env = Env::default()
            .set("PYNOMALY_DATA_DIR", data_dir)
            .set("LOG_LEVEL", "info");
        for (k, v) in vars {
            env = env.set(k, v);
        }
        let args: Vec<&str> = ["stream"]
            .into_iter()
            .chain(args.iter().copied())
            .chain(["--metrics-bind", "127.0.0.1:0"])
            .collect();
        let proc = pynomaly(&name, &args, &env, data_dir);
        // It prints where its metrics are, then that it consumes.
        let metrics_addr = wait("pynomaly stream starts consuming", Duration::from_secs(60))
            .until_blocking(|| {
                proc.assert_running("it to start consuming");
                let log = proc.log_text();
                let addr = log.lines().find_map(|l| {
                    let rest = l.strip_prefix("metrics on http://")?;
                    rest.split('/').next().map(str::to_string)
                });
                match addr {
                    Some(addr) if log.lines().any(|l| l.starts_with("pynomaly stream:")) => {
                        Ok(addr)
                    }
                    _ => Err(proc.log_tail()),
                }
            });
        StreamProcess { proc, metrics_addr }
    }

    /// What it has printed (its logs included).
    pub fn log_text(&self) -> String {
        self.proc.log_text()
    }

    /// SIGKILL: no drain, no checkpoint, no commit.
    pub fn kill_hard(&mut self) {
        self.proc.kill_hard();
    }

    /// SIGTERM, and the exit status once it has drained.
    pub fn terminate(&mut self) -> ExitStatus {
        self.proc.terminate(Duration::from_secs(30))
    }

    /// `GET path` on the metrics port: (status code, body).
    pub fn http_get(&self, path: &str) -> (u16, String) {
        let addr = &self.metrics_addr;
        let mut s = TcpStream::connect(addr).expect("connect to the metrics port");
        write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").expect("request");
        let mut text = String::new();
        s.read_to_string(&mut text).expect("response");
        let status = text
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let body = text
            .split_once("\r\n\r\n")
            .map_or("", |(_, b)| b)
            .to_string();
        (status, body)
    }

    /// The value of an unlabelled metric.
    pub fn metric(&self, name: &str) -> f64 {
        let (_, body) = self.http_get("/metrics");
        body.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(' ')))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no metric {name} in:\n{body}"))
    }
}

/// Starts a stream process with `args` given as owned strings.
pub fn start(data_dir: &Path, args: &[String]) -> StreamProcess {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    StreamProcess::start(data_dir, &args)
}

/// A small deterministic generator (xorshift) for test data.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Roughly normal around `mean` (sum of uniforms).
    pub fn around(&mut self, mean: f64, spread: f64) -> f64 {
        let s: f64 = (0..4).map(|_| self.uniform()).sum::<f64>() - 2.0;
        mean + spread * s
    }
}

/// A normal sensor event with nested fields: features (sorted keys) are
/// `meta.a`, `meta.rpm`, `temp`.
pub fn sensor_event(id: &str, rng: &mut Rng) -> Value {
    json!({
        "id": id,
        "timestamp": "2026-11-26T10:00:00Z",
        "temp": rng.around(20.0, 1.0),
        "ok": true,
        "site": "plant-3",
        "meta": {"rpm": rng.around(1000.0, 10.0), "a": rng.around(1.0, 0.1), "tags": [1, 2]},
    })
}

/// Normal sensor events with the ids `ev-{i}` for `i` in `ids`.
pub fn sensor_events(ids: std::ops::Range<usize>, rng: &mut Rng) -> Vec<Value> {
    ids.map(|i| sensor_event(&format!("ev-{i}"), rng)).collect()
}

/// An event far from the normal ones.
pub fn outlier_event(id: &str) -> Value {
    json!({
        "id": id,
        "timestamp": "2026-11-26T10:00:00Z",
        "temp": 90.0, "ok": false, "site": "plant-3",
        "meta": {"rpm": 5000.0, "a": 40.0},
    })
}

/// Trains an isolation forest over (meta.a, meta.rpm, temp) and registers it as `name` in
/// the registry of `data_dir` (what `pynomaly serve` with that data directory uses).
pub async fn register_model(data_dir: &Path, name: &str, seed: u64, scale: f64) -> i64 {
    register_model_named(data_dir, name, seed, scale, None).await
}

/// [`register_model`], the version carrying `feature_names` (as a model trained from a
/// file with a header does).
pub async fn register_model_named(
    data_dir: &Path,
    name: &str,
    seed: u64,
    scale: f64,
    feature_names: Option<Vec<String>>,
) -> i64 {
    let meta = Arc::new(SqliteStore::open(data_dir).await.expect("sqlite"));
    let registry = ModelRegistry::new(meta, artifacts_in(data_dir), 1 << 26);
    register_in(&registry, name, seed, scale, feature_names).await
}

/// The artifact store of `data_dir` (where `pynomaly stream` with that data directory
/// and no `PYNOMALY_STORAGE_URL` reads models).
pub fn artifacts_in(data_dir: &Path) -> ArtifactStore {
    ArtifactStore::from_url(&data_dir.join("storage").display().to_string()).expect("artifacts")
}

/// [`register_model_named`] in `registry`.
pub async fn register_in(
    registry: &ModelRegistry,
    name: &str,
    seed: u64,
    scale: f64,
    feature_names: Option<Vec<String>>,
) -> i64 {
    let mut rng = Rng::new(seed);
    let rows: Vec<[f64; 3]> = (0..512)
        .map(|_| {
            [
                rng.around(1.0, 0.1 * scale),
                rng.around(1000.0, 10.0 * scale),
                rng.around(20.0, scale),
            ]
        })
        .collect();
    let x = detect_core::validate::matrix_from_rows(&rows).expect("rows");
    let config = detect_core::DetectorConfig::from_json(
        "isolation_forest",
        json!({"random_state": seed}).as_object().expect("object"),
        &json!("auto"),
    )
    .expect("config");
    let fitted = detect_core::fit(&config, x.view()).expect("fit").model;
    let loaded = registry
        .register(
            fitted,
            Registration {
                feature_names,
                ..Registration::new("default", name)
            },
        )
        .await
        .expect("register");
    loaded.version.version
}

/// An alert or dead letter as read back: (broker key, parsed JSON).
pub type Message = (Option<String>, Value);

/// Alerts by the event id they answer (several when delivered more than once).
pub fn by_id(alerts: &[Message]) -> HashMap<String, Vec<Value>> {
    let mut map: HashMap<String, Vec<Value>> = HashMap::new();
    for (key, alert) in alerts {
        let id = alert["original_data"]["id"]
            .as_str()
            .expect("id")
            .to_string();
        assert_eq!(
            key.as_deref(),
            Some(id.as_str()),
            "alert keyed by the event id"
        );
        map.entry(id).or_default().push(alert.clone());
    }
    map
}
