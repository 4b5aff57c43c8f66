//! The one middleware every route runs through: request id, timeout, metrics, access log.
//!
//! Applied with `Router::layer` after the routes and the fallback are added, so it wraps
//! each route and sees the matched route template (`/api/v1/models/{name}/predict`), which
//! is what metrics and logs name, never the raw path. The request id (the client's
//! `x-request-id` when it sent a sane one, else a new UUID) is put in a task-local so that
//! error bodies built anywhere in the handler carry it.
//!
//! With traces on (see [`crate::telemetry`]) each request runs in a server span named
//! `METHOD /route/{template}` with `http.method`, `http.route`, `http.status_code` and, on
//! failure, `error.type` (the contract's code) and `error.message`; it continues the
//! caller's trace when the request carries a W3C `traceparent`. A predict of a few rows
//! records its `ml.*` attributes on this span instead of a child step span (see
//! [`crate::telemetry::ml_inline`]). With traces off no span is made.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::error::ApiError;
use crate::state::AppState;

tokio::task_local! {
    static REQUEST_ID: Arc<str>;
}

/// The header carrying the request id, both ways.
pub(crate) const REQUEST_ID_HEADER: &str = "x-request-id";

/// The current request's id (inside a request), or `"unknown"`.
pub(crate) fn current_request_id() -> String {
    REQUEST_ID
        .try_with(|id| id.to_string())
        .unwrap_or_else(|_| "unknown".into())
}

fn incoming_id(req: &Request) -> Option<Arc<str>> {
    let v = req.headers().get(REQUEST_ID_HEADER)?.to_str().ok()?;
    let sane = !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic());
    sane.then(|| Arc::from(v))
}

/// Request id, timeout, metrics and one JSON log line per request.
pub(crate) async fn observe(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let id = incoming_id(&req).unwrap_or_else(|| Arc::from(uuid::Uuid::new_v4().to_string()));
    let method = req.method().clone();
    let route = req.extensions().get::<MatchedPath>().cloned();
    let timeout = state.limits.request_timeout;
    let span = if crate::telemetry::traces_on() {
        let template = route.as_ref().map_or("unmatched", MatchedPath::as_str);
        let span = tracing::info_span!(
            "request",
            otel.name = %format_args!("{method} {template}"),
            otel.kind = "server",
            otel.status_code = tracing::field::Empty,
            http.method = method.as_str(),
            http.route = template,
            http.status_code = tracing::field::Empty,
            error.type = tracing::field::Empty,
            error.message = tracing::field::Empty,
            request_id = &*id,
            ml.algorithm = tracing::field::Empty,
            ml.data_size = tracing::field::Empty,
            ml.data_rows = tracing::field::Empty,
            ml.anomalies_detected = tracing::field::Empty,
        );
        if let Some(parent) = crate::telemetry::remote_parent(req.headers()) {
            let _ = span.set_parent(parent);
        }
        span
    } else {
        tracing::Span::none()
    };
    let run = REQUEST_ID.scope(Arc::clone(&id), next.run(req).instrument(span.clone()));
    let mut response = match tokio::time::timeout(timeout, run).await {
        Ok(response) => response,
        Err(_) => span.in_scope(|| {
            ApiError::Unavailable {
                message: format!(
                    "the request did not complete within {} s; retry later or send less data",
                    timeout.as_secs()
                ),
                retry_after_s: Some(1),
            }
            .to_response(&id)
        }),
    };
    if let Ok(v) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID_HEADER, v);
    }
    let elapsed = start.elapsed();
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    let status = response.status();
    state
        .metrics
        .observe_request(method.as_str(), route, status.as_str(), elapsed);
    span.record("http.status_code", i64::from(status.as_u16()));
    if status.is_server_error() {
        span.record("otel.status_code", "ERROR");
    }
    let _entered = span.enter();
    tracing::info!(
        target: crate::telemetry::ACCESS_LOG_TARGET,
        method = method.as_str(),
        route,
        status = status.as_u16(),
        duration_ms = elapsed.as_secs_f64() * 1e3,
        request_id = &*id,
        "request"
    );
    response
}
