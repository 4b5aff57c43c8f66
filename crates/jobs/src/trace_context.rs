//! A job's trace context: how one trace follows a job from the request that submitted it
//! to the worker that runs it.
//!
//! At submission the API stores the request span's W3C trace context (`traceparent`,
//! and `tracestate` when there is one) in the job's specification under
//! [`TRACE_CONTEXT_KEY`] — the specification is already stored as JSON with the job, so
//! this needs no schema change, and it travels wherever the job does (the in-process
//! queue, or Postgres + Redis to a `pynomaly worker`). The worker's `job` span then takes
//! that context as its parent, and the job's steps (`parse`, `fit`, `score`, `store`) are
//! its children. With traces off nothing is stored and the job span has no parent.

use std::collections::HashMap;

use opentelemetry::trace::TraceContextExt as _;
use pynomaly_store::Job;
use serde_json::{Map, Value};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// The key of the trace context in a job's stored specification.
pub const TRACE_CONTEXT_KEY: &str = "trace_context";

/// Stores the current span's trace context in `spec` (a JSON object) under
/// [`TRACE_CONTEXT_KEY`]; does nothing when traces are off or there is no span. The span
/// is the current `tracing` span when it has a trace context, else the current
/// OpenTelemetry context's (where the API attaches its request spans, which are made
/// with the SDK directly, not as `tracing` spans).
pub fn attach_trace_context(spec: &mut Value) {
    let mut cx = tracing::Span::current().context();
    if !cx.span().span_context().is_valid() {
        cx = opentelemetry::Context::current();
        if !cx.span().span_context().is_valid() {
            return;
        }
    }
    let mut carrier: HashMap<String, String> = HashMap::new();
    opentelemetry::global::get_text_map_propagator(|p| p.inject_context(&cx, &mut carrier));
    if carrier.is_empty() {
        return;
    }
    if let Some(obj) = spec.as_object_mut() {
        let map: Map<String, Value> = carrier
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect();
        obj.insert(TRACE_CONTEXT_KEY.into(), Value::Object(map));
    }
}

/// The span a job runs in: a consumer span continuing the submitting request's trace
/// when the job carries one.
pub(crate) fn job_span(job: &Job, worker: &str) -> tracing::Span {
    let span = tracing::info_span!(
        "job",
        otel.name = %format_args!("job {}", job.kind.as_str()),
        otel.kind = "consumer",
        otel.status_code = tracing::field::Empty,
        job_id = %job.id,
        kind = job.kind.as_str(),
        worker = %worker,
        job.attempt = job.attempts,
        job.status = tracing::field::Empty,
        error.message = tracing::field::Empty,
    );
    if let Some(stored) = job.spec.get(TRACE_CONTEXT_KEY).and_then(Value::as_object) {
        let carrier: HashMap<String, String> = stored
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
            .collect();
        let parent = opentelemetry::global::get_text_map_propagator(|p| p.extract(&carrier));
        if parent.span().span_context().is_valid() {
            let _ = span.set_parent(parent);
        }
    }
    span
}

/// Records how a job ended on its span.
pub(crate) fn record_job_end(span: &tracing::Span, status: &str, error: Option<&str>) {
    span.record("job.status", status);
    if let Some(e) = error {
        span.record("otel.status_code", "ERROR");
        span.record("error.message", e);
    }
}
