//! `GET /metrics`: Prometheus text (no auth).

use axum::extract::State;
use axum::response::IntoResponse;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::exposition::{MetricsSources, metrics_response};
use crate::state::AppState;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(metrics))
}

/// Prometheus metrics
#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "metrics",
    tag = "meta",
    responses((status = 200, description = "Prometheus text exposition format", content_type = "text/plain", body = String)),
)]
async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    metrics_response(&MetricsSources {
        metrics: std::sync::Arc::clone(&state.metrics),
        meta: std::sync::Arc::clone(&state.meta),
        queue: std::sync::Arc::clone(&state.queue),
        registry: std::sync::Arc::clone(&state.registry),
        artifacts: state.artifacts.clone(),
        data_dir: Some(state.data_dir.clone()),
    })
    .await
}
