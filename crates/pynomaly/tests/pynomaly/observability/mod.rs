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

use std::path::Path;

use testkit::data::{csv, wave};
use testkit::{Api, Proc, free_port, wait_ready};

use crate::{Env, pynomaly};

/// An API instance and a worker of one deployment (Postgres and Redis), both live.
struct Deployment {
    api_proc: Proc,
    worker: Proc,
    /// Calls to the instance with the admin key it created.
    api: Api,
    api_port: u16,
    worker_metrics_port: u16,
}

/// Starts `pynomaly serve` on `api_env` and `pynomaly worker --concurrency N` on `env`,
/// each on a free port with its data under `root/api` and `root/worker`, the worker's
/// metrics on a port of their own; waits until both answer.
async fn deploy(root: &Path, env: &Env, api_env: Env, concurrency: &str) -> Deployment {
    let (api_port, worker_metrics_port) = (free_port(), free_port());
    let api_env = api_env
        .set("PYNOMALY_BIND", format!("127.0.0.1:{api_port}"))
        .set("PYNOMALY_DATA_DIR", root.join("api"));
    let api_proc = pynomaly("api", &["serve"], &api_env, root);
    let worker_env = env
        .clone()
        .set("PYNOMALY_DATA_DIR", root.join("worker"))
        .set(
            "PYNOMALY_METRICS_BIND",
            format!("127.0.0.1:{worker_metrics_port}"),
        );
    let worker_args = ["worker", "--concurrency", concurrency];
    let worker = pynomaly("worker", &worker_args, &worker_env, root);
    let base = format!("http://127.0.0.1:{api_port}");
    wait_ready(&format!("{base}/health/ready"), &api_proc).await;
    let worker_metrics = format!("http://127.0.0.1:{worker_metrics_port}/metrics");
    wait_ready(&worker_metrics, &worker).await;
    let key = std::fs::read_to_string(root.join("api/admin.key")).unwrap();
    Deployment {
        api_proc,
        worker,
        api: Api::new(base, key.trim()),
        api_port,
        worker_metrics_port,
    }
}

/// `rows` rows of two features ([`wave`]), with a header, and a far outlier every 50 rows.
fn csv_with_outliers(rows: usize) -> String {
    let row = |i: usize| {
        if i % 50 == 49 { [40.0, -40.0] } else { wave(i) }
    };
    csv(&["x", "y"], (0..rows).map(row))
}
