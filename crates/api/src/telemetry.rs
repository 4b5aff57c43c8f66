//! The HTTP side of traces: a request's server span, and the spans and attributes of the
//! ML steps a request runs.
//!
//! A request's server span is not a `tracing` span ([`RequestTrace`]): every request pays
//! for it, and going through the `tracing` registry and `tracing-opentelemetry` (a span
//! builder kept in the registry, fields converted to attributes, enter and exit on every
//! poll) was most of what tracing cost a small request. It is made by
//! `pynomaly_runtime::telemetry`'s request spans with the provider's sampler, ids, limits
//! and scope, and handed to the provider's batch processor. The middleware runs the
//! handler with the span's OpenTelemetry context attached while it is polled
//! (`opentelemetry::Context::current()` is the request's there), and whatever needs the
//! request's span reads it from there: the step spans below (a `tracing` span with no
//! `tracing` parent takes the current OpenTelemetry context as its parent),
//! [`record_error`], [`ml_inline`], a job's trace context, the log lines' ids, and the
//! events logged in the request, which become events of its span. The spans of a
//! request's steps (`fit`, `score`, `store`, see [`ml_span`]) are `tracing` spans,
//! exported by `tracing-opentelemetry`.
//!
//! Incoming W3C `traceparent`/`tracestate` headers are honoured (the request's span
//! continues the caller's trace), and a job submitted by a request carries the request's
//! trace context in its stored specification, so the worker that runs it continues the
//! same trace (`pynomaly_jobs::attach_trace_context`).

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;

use axum::http::{HeaderMap, Method, StatusCode};
use opentelemetry::propagation::Extractor;
use opentelemetry::trace::{Span as _, Status, TraceContextExt as _};
use opentelemetry::{Context as OtelContext, KeyValue};
pub(crate) use pynomaly_runtime::telemetry::{ACCESS_LOG_TARGET, traces_on};

/// The caller's trace context from W3C `traceparent`/`tracestate` headers (an empty
/// context, so a new trace, when they are absent or invalid).
pub(crate) fn remote_parent(headers: &HeaderMap) -> Option<OtelContext> {
    headers.contains_key("traceparent").then(|| {
        opentelemetry::global::get_text_map_propagator(|p| p.extract(&HeaderCarrier(headers)))
    })
}

struct HeaderCarrier<'a>(&'a HeaderMap);

impl Extractor for HeaderCarrier<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// A request's server span (see the module docs): named
/// `METHOD /route/{template}`, with `http.method`, `http.route` (and `request_id` when the
/// client sent its own `x-request-id`) from the start, `http.status_code` at the end, and
/// what the handler records on it ([`record_error`], [`ml_inline`]). It continues the
/// caller's trace when the request carries a W3C `traceparent`. When the sampler drops
/// the trace the span records nothing, but its context still has valid ids, so log lines
/// carry a trace id all the same.
///
/// A request without its own `x-request-id` takes its id from the span
/// ([`RequestTrace::request_id`]), so the id a client sees leads straight to the trace,
/// and the span needs no attribute to repeat it.
pub(crate) struct RequestTrace {
    cx: OtelContext,
    /// The span started a new trace (the request carried no valid `traceparent`).
    new_trace: bool,
}

impl RequestTrace {
    /// The span of a request to `route` (the matched template); none when traces are off.
    /// `client_id` is the request's own `x-request-id`, when it sent a usable one.
    pub(crate) fn start(
        method: &Method,
        route: &str,
        client_id: Option<&Arc<str>>,
        headers: &HeaderMap,
    ) -> Option<Self> {
        let spans = pynomaly_runtime::telemetry::request_spans()?;
        let parent = remote_parent(headers).unwrap_or_default();
        let new_trace = !parent.span().span_context().is_valid();
        let names = RequestNames::of(method, route);
        // The samplers here do not read attributes: they are set once the span is known
        // to record, so an unsampled request builds none.
        let mut span = spans.start(names.name, &parent);
        if span.is_recording() {
            span.set_attribute(KeyValue::new("http.method", names.method));
            span.set_attribute(KeyValue::new("http.route", names.route));
            if let Some(id) = client_id {
                span.set_attribute(KeyValue::new("request_id", Arc::clone(id)));
            }
        }
        Some(Self {
            cx: parent.with_span(span),
            new_trace,
        })
    }

    /// The id of a request that did not send its own: the span's trace id (32 hex
    /// digits) when the span started the trace, else — a request continuing a caller's
    /// trace, which other requests may share — `<trace id>-<span id>`. Unique either way,
    /// and what Jaeger or Tempo finds the trace by.
    pub(crate) fn request_id(&self) -> Arc<str> {
        let span = self.cx.span();
        let sc = span.span_context();
        // 32 hex digits, a dash and 16 more, written in place (one allocation, the id's).
        let mut id = [0_u8; 49];
        let (trace, rest) = id.split_at_mut(32);
        let _ = hex::encode_to_slice(sc.trace_id().to_bytes(), trace);
        let len = if self.new_trace {
            32
        } else {
            rest[0] = b'-';
            let _ = hex::encode_to_slice(sc.span_id().to_bytes(), &mut rest[1..]);
            49
        };
        Arc::from(std::str::from_utf8(&id[..len]).unwrap_or_default())
    }

    /// The span's context: what the handler runs with attached.
    pub(crate) fn context(&self) -> &OtelContext {
        &self.cx
    }

    /// Runs `f` with the span's context attached (logging and errors outside the handler).
    pub(crate) fn in_scope<T>(&self, f: impl FnOnce() -> T) -> T {
        let _attached = self.cx.clone().attach();
        f()
    }

    /// Records the response's status (a 5xx marks the span failed) and ends the span,
    /// which the batch processor then exports. Call it with the context detached.
    pub(crate) fn end(self, status: StatusCode) {
        let span = self.cx.span();
        span.set_attribute(KeyValue::new(
            "http.status_code",
            i64::from(status.as_u16()),
        ));
        if status.is_server_error() {
            span.set_status(Status::error(""));
        }
        span.end();
    }
}

/// The methods whose request spans get names made once ([`RequestNames`]).
const STANDARD_METHODS: [&str; 9] = [
    "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "CONNECT", "TRACE",
];

/// A request span's name (`METHOD /route`), `http.method` and `http.route`.
///
/// For the standard methods these are `&'static str`s made once per route template and
/// thread, so a request allocates none of them. That matters beyond the allocation: a
/// span's data is freed on the exporter's thread, and glibc returns memory freed on
/// another thread to the allocating thread's arena under its lock, where the request
/// threads' own allocations then contend with it and find their caches empty. The
/// templates are the router's (or `unmatched`) and the methods nine, so what is made
/// once is bounded; another method's names are made per request.
struct RequestNames {
    name: Cow<'static, str>,
    method: opentelemetry::Value,
    route: opentelemetry::Value,
}

/// Per route template: the template, and the span name per standard method.
type NameCache = HashMap<Box<str>, (&'static str, [Option<&'static str>; STANDARD_METHODS.len()])>;

thread_local! {
    static REQUEST_NAMES: RefCell<NameCache> = RefCell::new(HashMap::new());
}

impl RequestNames {
    fn of(method: &Method, route: &str) -> Self {
        let Some(m) = STANDARD_METHODS.iter().position(|m| *m == method.as_str()) else {
            return Self {
                name: Cow::Owned(format!("{method} {route}")),
                method: method.as_str().to_owned().into(),
                route: route.to_owned().into(),
            };
        };
        let (name, route) = REQUEST_NAMES.with_borrow_mut(|cache| {
            let (route_static, names) = match cache.get_mut(route) {
                Some(entry) => entry,
                None => cache
                    .entry(route.into())
                    .or_insert_with(|| (leak(route.to_owned()), [None; STANDARD_METHODS.len()])),
            };
            let route_static: &'static str = route_static;
            let name = *names[m]
                .get_or_insert_with(|| leak(format!("{} {route_static}", STANDARD_METHODS[m])));
            (name, route_static)
        });
        Self {
            name: Cow::Borrowed(name),
            method: STANDARD_METHODS[m].into(),
            route: route.into(),
        }
    }
}

/// A string kept for the life of the process (bounded uses only: see [`RequestNames`]).
fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

/// Marks the request's span as failed with `code` and the message the client gets
/// ("internal error" for a 5xx). Inside a request only (the span is found in the current
/// OpenTelemetry context); a no-op elsewhere.
pub(crate) fn record_error(code: &'static str, message: &dyn std::fmt::Display) {
    if !traces_on() {
        return;
    }
    opentelemetry::trace::get_active_span(|span| {
        if span.is_recording() {
            span.set_attribute(KeyValue::new("error.type", code));
            span.set_attribute(KeyValue::new("error.message", message.to_string()));
        }
    });
}

/// A span for an inline ML step of a request (`fit`, `score`, `store`) with
/// `ml.algorithm` and `ml.data_size` (and the row count); none when traces are off. A
/// child of the request's span (a `tracing` span without a `tracing` parent takes the
/// current OpenTelemetry context's span as its parent).
pub(crate) fn ml_span(step: &'static str, algorithm: &str, rows: usize) -> tracing::Span {
    if !traces_on() {
        return tracing::Span::none();
    }
    tracing::info_span!(
        "step",
        otel.name = step,
        step,
        ml.algorithm = algorithm,
        ml.data_size = pynomaly_jobs::size_class(rows),
        ml.data_rows = rows as i64,
        ml.anomalies_detected = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
        error.message = tracing::field::Empty,
    )
}

/// The span for an ML step too small for its own span — a predict of a few rows, scored
/// inline in microseconds: none (`Span::none()`), the step's `ml.algorithm` and
/// `ml.data_size` being recorded on the request's span instead, as are its anomalies
/// ([`record_anomalies`]). A child span there would double what tracing costs a small
/// request for a step of no duration worth showing. The exact row count (`ml.data_rows`
/// of step spans) is left out: an inline step has at most [`crate::cpu::INLINE_ROWS`]
/// rows, which `ml.data_size` (`small`) already says, and each attribute is work for the
/// exporter on every traced request.
pub(crate) fn ml_inline(algorithm: &'static str, rows: usize) -> tracing::Span {
    if traces_on() {
        opentelemetry::trace::get_active_span(|span| {
            if span.is_recording() {
                span.set_attributes([
                    KeyValue::new("ml.algorithm", algorithm),
                    KeyValue::new("ml.data_size", pynomaly_jobs::size_class(rows)),
                ]);
            }
        });
    }
    tracing::Span::none()
}

/// Records on the request's span which model version answered a predict and as what
/// (`ml.model_version`, `ml.variant`: `production`, `canary` or `requested`).
pub(crate) fn record_variant(version: i64, variant: &'static str) {
    if !traces_on() {
        return;
    }
    opentelemetry::trace::get_active_span(|span| {
        if span.is_recording() {
            span.set_attributes([
                KeyValue::new("ml.model_version", version),
                KeyValue::new("ml.variant", variant),
            ]);
        }
    });
}

/// Records the anomalies an ML step found on its span ([`ml_span`]), or, for an inline
/// step ([`ml_inline`], no span of its own), on the request's.
pub(crate) fn record_anomalies(step: &tracing::Span, anomalies: usize) {
    if !traces_on() {
        return;
    }
    if step.is_none() {
        opentelemetry::trace::get_active_span(|span| {
            span.set_attribute(KeyValue::new("ml.anomalies_detected", anomalies as i64));
        });
    } else {
        step.record("ml.anomalies_detected", anomalies as i64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_span_names_are_made_once_per_route_and_standard_method() {
        let route = "/api/v1/models/{name}/predict";
        let a = RequestNames::of(&Method::POST, route);
        // The same template in another string (as each request's `MatchedPath` is).
        let again = String::from(route);
        let b = RequestNames::of(&Method::POST, again.as_str());
        assert_eq!(a.name, "POST /api/v1/models/{name}/predict");
        assert!(
            matches!((&a.name, &b.name), (Cow::Borrowed(x), Cow::Borrowed(y)) if std::ptr::eq(*x, *y))
        );
        assert_eq!(a.method, "POST".into());
        assert_eq!(a.route, route.into());
        let get = RequestNames::of(&Method::GET, route);
        assert_eq!(get.name, "GET /api/v1/models/{name}/predict");
        // A method of the client's own making is not kept.
        let custom = Method::from_bytes(b"PURGE").unwrap();
        let c = RequestNames::of(&custom, route);
        assert!(matches!(&c.name, Cow::Owned(n) if n == "PURGE /api/v1/models/{name}/predict"));
        assert_eq!(c.method, "PURGE".into());
    }
}
