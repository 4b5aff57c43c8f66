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

#[path = "../support/proc.rs"]
mod proc;
mod prometheus;
mod traces;

pub(crate) use proc::{Proc, free_port};

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;

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
            !proc.exited(),
            "the process exited before {url} answered:\n{}",
            proc.log_tail()
        );
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
