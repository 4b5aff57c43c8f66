//! The Prometheus exposition: every metric of this process ([`crate::metrics`],
//! [`crate::ops_metrics`], the drift gauges), refreshed at scrape time, served on the API's
//! `/metrics` and on the metrics port.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use pynomaly_jobs::JobQueue;
use pynomaly_models::ModelRegistry;
use pynomaly_store::{ArtifactStore, DynMetadataStore};

use crate::metrics::Metrics;

/// What a `/metrics` answer reads: the process's metrics and the parts it reports on.
#[derive(Debug, Clone)]
pub(crate) struct MetricsSources {
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) meta: DynMetadataStore,
    pub(crate) queue: Arc<dyn JobQueue>,
    pub(crate) registry: Arc<ModelRegistry>,
    pub(crate) artifacts: ArtifactStore,
    /// The data directory, whose filesystem's free space is reported (none where the
    /// process keeps nothing on disk of its own).
    pub(crate) data_dir: Option<std::path::PathBuf>,
}

/// The Prometheus text exposition of every metric of this process.
pub(crate) async fn exposition(sources: &MetricsSources) -> String {
    sources
        .metrics
        .ops()
        .refresh(
            &sources.meta,
            sources.queue.as_ref(),
            &sources.registry,
            &sources.artifacts,
            sources.data_dir.as_deref(),
        )
        .await;
    // Drift and data quality of the models this process scored (a worker's batch jobs
    // feed its own windows).
    crate::routes::drift::export_metrics(&sources.registry, &sources.metrics);
    sources.metrics.render(sources.registry.cache().len())
}

/// The `/metrics` response.
pub(crate) async fn metrics_response(sources: &MetricsSources) -> impl IntoResponse + use<> {
    let body = exposition(sources).await;
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        body,
    )
}

/// A router serving only `GET /metrics`: the metrics port (`PYNOMALY_METRICS_BIND`) of a
/// worker, or of an instance beside its API port.
pub(crate) fn metrics_router(sources: MetricsSources) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(|State(s): State<MetricsSources>| async move { metrics_response(&s).await }),
        )
        .with_state(sources)
}
