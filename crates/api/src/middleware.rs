//! The one middleware every route runs through: request id, timeout, metrics, access log.
//!
//! Applied with `Router::layer` after the routes and the fallback are added, so it wraps
//! each route and sees the matched route template (`/api/v1/models/{name}/predict`), which
//! is what metrics and logs name, never the raw path. The request id (the client's
//! `x-request-id` when it sent a sane one, else, with traces on, one from the request's
//! span, else a new UUID) is put in a task-local so that error bodies built anywhere in
//! the handler carry it.
//!
//! With traces on (see [`crate::telemetry`]) each request runs in a server span named
//! `METHOD /route/{template}` with `http.method`, `http.route`, `http.status_code` and, on
//! failure, `error.type` (the contract's code) and `error.message`; it continues the
//! caller's trace when the request carries a W3C `traceparent`. A request without its own
//! `x-request-id` then gets the span's trace id as its id (`<trace id>-<span id>` when it
//! continues a caller's trace), so the id in a response or a log line is what Jaeger finds
//! the trace by; a client's own id is kept and recorded on the span as `request_id`. The
//! span is an OpenTelemetry span made by [`crate::telemetry::RequestTrace`], not a `tracing`
//! span: the handler runs with its context attached while polled, which is where step
//! spans, errors, job submissions and log lines find it. A predict of a few rows records
//! its `ml.*` attributes on this span instead of a child step span (see
//! [`crate::telemetry::ml_inline`]). The access line is
//! logged with the span's context attached (so it carries its ids; when `LOG_LEVEL` logs
//! it) but is not an event of the span. With traces off no span is made.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use futures::future::Either;
use opentelemetry::context::FutureExt as _;

use crate::error::ApiError;
use crate::request_id::{REQUEST_ID_HEADER, with_request_id};
use crate::state::AppState;
use crate::telemetry::RequestTrace;

fn incoming_id(req: &Request) -> Option<Arc<str>> {
    let v = req.headers().get(REQUEST_ID_HEADER)?.to_str().ok()?;
    let sane = !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic());
    sane.then(|| Arc::from(v))
}

/// Request id, timeout, metrics and one JSON log line per request.
pub(crate) async fn observe(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let client_id = incoming_id(&req);
    let method = req.method().clone();
    let route = req.extensions().get::<MatchedPath>().cloned();
    let timeout = state.limits.request_timeout;
    let template = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    // None when traces are off.
    let trace = RequestTrace::start(&method, template, client_id.as_ref(), req.headers());
    let id = match (client_id, &trace) {
        (Some(id), _) => id,
        (None, Some(trace)) => trace.request_id(),
        (None, None) => Arc::from(uuid::Uuid::new_v4().to_string()),
    };
    let handler = match &trace {
        Some(trace) => Either::Left(next.run(req).with_context(trace.context().clone())),
        None => Either::Right(next.run(req)),
    };
    let run = with_request_id(Arc::clone(&id), handler);
    let mut response = match tokio::time::timeout(timeout, run).await {
        Ok(response) => response,
        Err(_) => {
            let unavailable = || {
                ApiError::Unavailable {
                    message: format!(
                        "the request did not complete within {} s; retry later or send less data",
                        timeout.as_secs()
                    ),
                    retry_after_s: Some(1),
                }
                .to_response(&id)
            };
            match &trace {
                Some(trace) => trace.in_scope(unavailable),
                None => unavailable(),
            }
        }
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
    let access_line = || {
        tracing::info!(
            target: crate::telemetry::ACCESS_LOG_TARGET,
            method = method.as_str(),
            route,
            status = status.as_u16(),
            duration_ms = elapsed.as_secs_f64() * 1e3,
            request_id = &*id,
            "request"
        );
    };
    match trace {
        Some(trace) => {
            // Attaching the span's context for a line that is not logged (LOG_LEVEL=warn)
            // would be work for nothing on every request.
            if tracing::enabled!(target: crate::telemetry::ACCESS_LOG_TARGET, tracing::Level::INFO)
            {
                trace.in_scope(access_line);
            }
            trace.end(status);
        }
        None => access_line(),
    }
    response
}

/// The audit middleware (see [`crate::audit::record`]).
pub(crate) async fn audit(State(state): State<AppState>, req: Request, next: Next) -> Response {
    crate::audit::record(&state.audit, &state.metrics, req, next).await
}
