//! Processes, models and events shared by the stream tests.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pynomaly_models::{ModelRegistry, Registration};
use pynomaly_store::{ArtifactStore, SqliteStore};
use serde_json::{Value, json};

/// A running `pynomaly stream`; SIGKILLed when dropped so a failing test leaves nothing.
pub struct StreamProcess {
    child: Option<Child>,
    pub metrics_addr: Option<String>,
    pub log: PathBuf,
    /// Everything it printed on stdout (its logs go there too).
    stdout: Arc<std::sync::Mutex<String>>,
}

impl StreamProcess {
    /// Starts `pynomaly stream ARGS` with its data directory at `data_dir`, and waits
    /// until it reports that it is consuming.
    pub fn start(data_dir: &Path, args: &[&str]) -> StreamProcess {
        let log = data_dir.join(format!("stream-{}.log", uuid::Uuid::new_v4()));
        let mut child = Command::new(env!("CARGO_BIN_EXE_pynomaly"))
            .arg("stream")
            .args(args)
            .args(["--metrics-bind", "127.0.0.1:0"])
            .env("PYNOMALY_DATA_DIR", data_dir)
            .env_remove("DATABASE_URL")
            .env_remove("REDIS_URL")
            .env_remove("PYNOMALY_STORAGE_URL")
            .env("LOG_LEVEL", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("start pynomaly stream");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        let printed = Arc::new(std::sync::Mutex::new(String::new()));
        let sink = Arc::clone(&printed);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Ok(mut s) = sink.lock() {
                    s.push_str(&line);
                    s.push('\n');
                }
                let _ = tx.send(line);
            }
        });
        let mut process = StreamProcess {
            child: Some(child),
            metrics_addr: None,
            log,
            stdout: printed,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.starts_with("metrics on http://") => {
                    let addr = line["metrics on http://".len()..]
                        .split('/')
                        .next()
                        .unwrap_or_default()
                        .to_string();
                    process.metrics_addr = Some(addr);
                }
                Ok(line) if line.starts_with("pynomaly stream:") => return process,
                Ok(_) => {}
                Err(_) => panic!("pynomaly stream did not start:\n{}", process.log_text()),
            }
        }
    }

    #[allow(dead_code)]
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// What it printed: stdout (logs included), then stderr.
    pub fn log_text(&self) -> String {
        let out = self.stdout.lock().map(|s| s.clone()).unwrap_or_default();
        out + &std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGKILL: no drain, no checkpoint, no commit.
    pub fn kill_hard(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, and the exit status once it has drained.
    pub fn terminate(&mut self) -> ExitStatus {
        let mut c = self.child.take().expect("running");
        let sent = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status()
            .expect("kill -TERM");
        assert!(sent.success());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = c.try_wait().expect("wait") {
                return status;
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                panic!(
                    "pynomaly stream did not stop on SIGTERM:\n{}",
                    self.log_text()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `GET path` on the metrics port: (status code, body).
    pub fn http_get(&self, path: &str) -> (u16, String) {
        let addr = self.metrics_addr.as_deref().expect("metrics address");
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

impl Drop for StreamProcess {
    fn drop(&mut self) {
        self.kill_hard();
    }
}

/// Polls `check` until it holds, or panics with `what` after `timeout`.
pub fn wait_until(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
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
    let meta = Arc::new(SqliteStore::open(data_dir).await.expect("sqlite"));
    let artifacts = ArtifactStore::from_url(&data_dir.join("storage").display().to_string())
        .expect("artifacts");
    let registry = ModelRegistry::new(meta, artifacts, 1 << 26);
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
                tenant: "default".into(),
                model_name: name.into(),
                feature_names: None,
                training_time_ms: 1.0,
                job_id: None,
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
