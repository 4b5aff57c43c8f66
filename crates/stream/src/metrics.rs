//! The stream process's metrics and its small HTTP endpoint (`--metrics-bind`):
//! `GET /metrics` (Prometheus text) and `GET /health`.
//!
//! - `pynomaly_stream_events_in_total`: events read from the source
//! - `pynomaly_stream_alerts_out_total`: alerts written to the sink
//! - `pynomaly_stream_anomalies_total`: events scored as anomalies
//! - `pynomaly_stream_dead_letters_total`: events sent to the dead letters
//! - `pynomaly_stream_refits_total`: online refits completed
//! - `pynomaly_stream_lag`: events in the source not yet processed by the group
//!   (Redis: undelivered plus pending; Kafka: high watermark minus committed position,
//!   summed over this process's partitions), sampled every few seconds
//! - `pynomaly_stream_model_version`: the version scoring now
//! - `pynomaly_stream_event_latency_seconds`: from reading an event to its alert (or dead
//!   letter) being written, histogram
//!
//! `/health` answers 200 `{"status":"ok",...}` while the brokers answer, 503
//! `{"status":"unavailable","error":...}` after a broker error until the next success.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus::{Encoder, Histogram, HistogramOpts, IntCounter, IntGauge, Registry, TextEncoder};
use serde_json::json;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::StreamError;

/// Counters and gauges of one stream process.
#[derive(Debug, Clone)]
pub struct StreamMetrics {
    registry: Registry,
    pub events_in: IntCounter,
    pub alerts_out: IntCounter,
    pub anomalies: IntCounter,
    pub dead_letters: IntCounter,
    pub refits: IntCounter,
    pub lag: IntGauge,
    pub model_version: IntGauge,
    pub latency: Histogram,
    status: Arc<Mutex<Option<String>>>,
}

impl Default for StreamMetrics {
    fn default() -> Self {
        Self::new()
    }
}

fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("valid metric name");
    registry
        .register(Box::new(c.clone()))
        .expect("distinct metric names");
    c
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("valid metric name");
    registry
        .register(Box::new(g.clone()))
        .expect("distinct metric names");
    g
}

impl StreamMetrics {
    /// A fresh set of metrics in its own registry.
    ///
    /// # Panics
    /// Never in practice: the names are constants known to be valid and distinct.
    pub fn new() -> Self {
        let registry = Registry::new();
        let latency = Histogram::with_opts(
            HistogramOpts::new(
                "pynomaly_stream_event_latency_seconds",
                "Time from reading an event to writing its alert",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
            ]),
        )
        .expect("valid metric");
        registry
            .register(Box::new(latency.clone()))
            .expect("distinct metric names");
        Self {
            events_in: counter(
                &registry,
                "pynomaly_stream_events_in_total",
                "Events read from the source",
            ),
            alerts_out: counter(
                &registry,
                "pynomaly_stream_alerts_out_total",
                "Alerts written to the sink",
            ),
            anomalies: counter(
                &registry,
                "pynomaly_stream_anomalies_total",
                "Events scored as anomalies",
            ),
            dead_letters: counter(
                &registry,
                "pynomaly_stream_dead_letters_total",
                "Events sent to the dead letters",
            ),
            refits: counter(
                &registry,
                "pynomaly_stream_refits_total",
                "Online refits completed",
            ),
            lag: gauge(
                &registry,
                "pynomaly_stream_lag",
                "Events in the source not yet processed by the group",
            ),
            model_version: gauge(
                &registry,
                "pynomaly_stream_model_version",
                "Model version scoring now",
            ),
            latency,
            registry,
            status: Arc::new(Mutex::new(None)),
        }
    }

    /// Records a broker error (health turns 503) or, with `None`, a success.
    pub fn set_error(&self, error: Option<String>) {
        *self.status.lock().unwrap_or_else(|e| e.into_inner()) = error;
    }

    fn error(&self) -> Option<String> {
        self.status
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

#[derive(Clone)]
struct HttpState {
    metrics: StreamMetrics,
    about: Arc<serde_json::Value>,
}

async fn metrics_text(State(s): State<HttpState>) -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        s.metrics.render(),
    )
}

async fn health(State(s): State<HttpState>) -> impl IntoResponse {
    let m = &s.metrics;
    let body = |status: &str, error: Option<String>| {
        json!({
            "status": status,
            "error": error,
            "stream": s.about.as_ref(),
            "model_version": m.model_version.get(),
            "events_in": m.events_in.get(),
            "alerts_out": m.alerts_out.get(),
            "dead_letters": m.dead_letters.get(),
            "lag": m.lag.get(),
        })
    };
    match m.error() {
        None => (StatusCode::OK, Json(body("ok", None))),
        Some(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(body("unavailable", Some(e))),
        ),
    }
}

/// Serves `/metrics` and `/health` on `addr` until `stop`; returns the bound address.
///
/// # Errors
/// The address cannot be bound.
pub async fn serve(
    addr: SocketAddr,
    metrics: StreamMetrics,
    about: serde_json::Value,
    stop: CancellationToken,
) -> Result<(SocketAddr, JoinHandle<()>), StreamError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| StreamError::Bind { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| StreamError::Bind { addr, source })?;
    let app = Router::new()
        .route("/metrics", get(metrics_text))
        .route("/health", get(health))
        .with_state(HttpState {
            metrics,
            about: Arc::new(about),
        });
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
        if let Err(e) = served {
            tracing::warn!(error = %e, "metrics endpoint stopped");
        }
    });
    Ok((bound, task))
}
