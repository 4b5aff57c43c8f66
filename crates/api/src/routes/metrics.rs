//! `GET /metrics`: Prometheus text (no auth).

use axum::Router;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::get;

use crate::exposition::{MetricsSources, metrics_response};
use crate::state::AppState;

pub(crate) fn router() -> Router<AppState> {
    Router::new().route("/metrics", get(metrics))
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    metrics_response(&MetricsSources {
        metrics: std::sync::Arc::clone(&state.metrics),
        meta: std::sync::Arc::clone(&state.meta),
        queue: std::sync::Arc::clone(&state.queue),
        registry: std::sync::Arc::clone(&state.registry),
    })
    .await
}
