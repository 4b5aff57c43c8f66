//! Observability, against the real binary and real receivers:
//!
//! - `traces`: `pynomaly serve` (and `pynomaly worker`, with Redis and Postgres) export
//!   their spans over OTLP/HTTP to a receiver in the test that decodes the protobuf
//!   `ExportTraceServiceRequest`; the test checks span names, attributes, parent links,
//!   that a batch job's spans continue the submitting request's trace (also across
//!   processes), and that log lines carry the trace and span ids.
//! - `prometheus`: a real `prometheus` scrapes the service and a worker; every query of
//!   the Grafana dashboard and every alerting rule's expression must return data
//!   (ignored by default: `.ci/run` runs it, as it needs the `prometheus` binary).

mod prometheus;
mod traces;

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;

/// A child process stopped (SIGTERM, then SIGKILL) when dropped.
pub(crate) struct Proc {
    name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl Proc {
    pub(crate) fn spawn(name: &str, cmd: &mut Command, log: &Path) -> Proc {
        let file = std::fs::File::create(log).unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file.try_clone().unwrap())
            .stderr(file)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        Proc {
            name: name.to_string(),
            child: Some(child),
            log: log.to_path_buf(),
        }
    }

    /// SIGTERM and wait (a graceful stop flushes the trace exporter); SIGKILL after
    /// `grace`.
    pub(crate) fn stop(&mut self, grace: Duration) {
        let Some(mut c) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &c.id().to_string()])
            .status();
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = c.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("{} did not stop within {grace:?}: killing it", self.name);
        let _ = c.kill();
        let _ = c.wait();
    }

    pub(crate) fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub(crate) fn log_tail(&self) -> String {
        let text = self.log_text();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// `pynomaly ARGS` with exactly `env` (and PATH) in its environment.
pub(crate) fn pynomaly(
    name: &str,
    args: &[&str],
    env: &HashMap<String, String>,
    root: &Path,
) -> Proc {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pynomaly"));
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .envs(env);
    Proc::spawn(name, &mut cmd, &root.join(format!("{name}.log")))
}

pub(crate) async fn wait_ready(client: &reqwest::Client, url: &str, proc: &Proc) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = client.get(url).send().await
            && r.status() == StatusCode::OK
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{url} did not answer:\n{}",
            proc.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A JSON call with the admin key; extra headers as given.
pub(crate) async fn call(
    client: &reqwest::Client,
    key: &str,
    method: reqwest::Method,
    url: String,
    body: Option<Value>,
    headers: &[(&str, &str)],
) -> (StatusCode, Value) {
    let mut req = client.request(method, url).bearer_auth(key);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("the server answers");
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Value::Null))
}

/// Polls a job until it ends; its final JSON.
pub(crate) async fn wait_job(client: &reqwest::Client, key: &str, base: &str, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, job) = call(
            client,
            key,
            reqwest::Method::GET,
            format!("{base}/api/v1/jobs/{id}"),
            None,
            &[],
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{job}");
        if matches!(
            job["status"].as_str(),
            Some("succeeded" | "failed" | "cancelled")
        ) {
            return job;
        }
        assert!(Instant::now() < deadline, "job {id} did not end: {job}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `rows` rows of two features, with a header, and a far outlier every 50 rows.
pub(crate) fn csv_rows(rows: usize) -> String {
    let mut s = String::from("x,y\n");
    for i in 0..rows {
        let (x, y) = if i % 50 == 49 {
            (40.0, -40.0)
        } else {
            let t = i as f64 * 0.37;
            (t.sin(), (t * 1.3).cos())
        };
        s.push_str(&format!("{x},{y}\n"));
    }
    s
}
