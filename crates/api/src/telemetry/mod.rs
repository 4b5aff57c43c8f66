//! Logs and traces.
//!
//! **Logs** are JSON lines on stdout (`timestamp`, `level`, the event's fields, `target`),
//! level from `LOG_LEVEL`. When traces are on, every line logged inside a span also
//! carries that span's `trace_id` and `span_id` (W3C hex), so a log line leads to its
//! trace in Jaeger or Tempo, and a trace to its log lines.
//!
//! **Traces** are off by default and cost nothing then: no span is made per request.
//! They are switched on by the standard OpenTelemetry variables —
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) — and exported
//! over OTLP/HTTP with protobuf (Jaeger and the OpenTelemetry Collector take it on port
//! 4318; `https://` endpoints over rustls, verified against the system's trust store or
//! `SSL_CERT_FILE`) by the SDK's batch processor on its own thread, so a slow or absent collector
//! never blocks a request (spans beyond its queue are dropped). The exporter also honours
//! `OTEL_EXPORTER_OTLP_HEADERS` and `OTEL_EXPORTER_OTLP_TIMEOUT`, the processor the
//! `OTEL_BSP_*` variables, the resource `OTEL_RESOURCE_ATTRIBUTES`. [`TraceSettings`]
//! reads and checks the rest at start-up (`OTEL_SERVICE_NAME`, `OTEL_TRACES_SAMPLER` and
//! `OTEL_TRACES_SAMPLER_ARG`, `OTEL_SDK_DISABLED`, `OTEL_TRACES_EXPORTER`, the protocol):
//! a value this build cannot honour fails the start with its name, where the SDK alone
//! would warn and fall back.
//!
//! Incoming W3C `traceparent`/`tracestate` headers are honoured (the request's span
//! continues the caller's trace), and a job submitted by a request carries the request's
//! trace context in its stored specification, so the worker that runs it — in this
//! process or a `pynomaly worker` elsewhere — continues the same trace
//! (`pynomaly_jobs::attach_trace_context`).
//!
//! **Two kinds of span.** A request's server span is not a `tracing` span
//! ([`RequestTrace`]): every request pays for it, and going through the `tracing`
//! registry and `tracing-opentelemetry` (a span builder kept in the registry, fields
//! converted to attributes, enter and exit on every poll) was most of what tracing cost a
//! small request. Nor is it the SDK's `Span`: it is made by [`request_span`] with the
//! provider's sampler, ids, limits and scope and handed to the provider's batch processor
//! as the SDK's span data, without the SDK span's per-span costs on the request threads
//! (see that module). The middleware runs the handler with the span's
//! OpenTelemetry context attached while it is polled (`opentelemetry::Context::current()`
//! is the request's there), and whatever needs the request's span reads it from there:
//! the step spans below (a `tracing` span with no `tracing` parent takes the current
//! OpenTelemetry context as its parent), [`record_error`], [`ml_inline`], a job's trace
//! context, the log lines' ids, and the events logged in the request, which become events
//! of its span. The spans of a request's steps (`fit`, `score`, `store`, see [`ml_span`])
//! and of jobs are `tracing` spans, exported by `tracing-opentelemetry`.

use std::borrow::Cow;
use std::cell::RefCell;
use std::collections::HashMap;
use std::io::Write as _;
use std::sync::{Arc, OnceLock};

use axum::http::{HeaderMap, Method, StatusCode};
use opentelemetry::propagation::Extractor;
use opentelemetry::trace::{Span as _, Status, TraceContextExt as _, TracerProvider as _};
use opentelemetry::{Context as OtelContext, KeyValue};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Dispatch, Event, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{LevelFilter, Targets, filter_fn};
use tracing_subscriber::layer::{Context, SubscriberExt as _};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;

use crate::settings::SettingsError;

mod request_span;

use request_span::RequestSpans;

/// The target of the one access log line per request (`crate::middleware`).
pub(crate) const ACCESS_LOG_TARGET: &str = "pynomaly_api::access";

/// What request spans are made with, set once by [`init_telemetry`] when it exports traces.
static REQUEST_SPANS: OnceLock<RequestSpans> = OnceLock::new();

/// The instrumentation scope of every span the service makes.
const TRACER_NAME: &str = "pynomaly";

/// Whether spans are exported: the middleware makes no request span otherwise.
pub(crate) fn traces_on() -> bool {
    REQUEST_SPANS.get().is_some()
}

/// Which traces are kept (`OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG`).
#[derive(Debug, Clone, PartialEq)]
pub enum TraceSampler {
    AlwaysOn,
    AlwaysOff,
    /// A fraction of the traces, by trace id.
    Ratio(f64),
    /// The caller's decision when the request continues a trace, else the inner sampler.
    ParentBased(Box<TraceSampler>),
}

impl TraceSampler {
    fn to_sdk(&self) -> Sampler {
        match self {
            TraceSampler::AlwaysOn => Sampler::AlwaysOn,
            TraceSampler::AlwaysOff => Sampler::AlwaysOff,
            TraceSampler::Ratio(r) => Sampler::TraceIdRatioBased(*r),
            TraceSampler::ParentBased(inner) => Sampler::ParentBased(Box::new(inner.to_sdk())),
        }
    }
}

/// The trace settings read from the standard `OTEL_*` variables.
#[derive(Debug, Clone, PartialEq)]
pub struct TraceSettings {
    /// An OTLP endpoint is configured and traces are not disabled.
    pub enabled: bool,
    /// `OTEL_SERVICE_NAME`; unset: `pynomaly-api` for `serve`, `pynomaly-worker` for workers.
    pub service_name: Option<String>,
    /// Default: the specification's `parentbased_always_on`.
    pub sampler: TraceSampler,
}

impl Default for TraceSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            service_name: None,
            sampler: TraceSampler::ParentBased(Box::new(TraceSampler::AlwaysOn)),
        }
    }
}

fn invalid(name: &'static str, value: &str, reason: impl Into<String>) -> SettingsError {
    SettingsError::Invalid {
        name,
        value: value.to_string(),
        reason: reason.into(),
    }
}

impl TraceSettings {
    /// Reads the `OTEL_*` variables through `get` (empty values count as unset).
    ///
    /// # Errors
    /// A sampler, ratio, exporter or protocol this build does not support, named.
    pub fn from_lookup(get: &impl Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let mut s = Self::default();
        let endpoint = get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .or_else(|| get("OTEL_EXPORTER_OTLP_ENDPOINT"));
        let disabled = match get("OTEL_SDK_DISABLED") {
            None => false,
            Some(v) => match v.trim().to_ascii_lowercase().as_str() {
                "true" => true,
                "false" => false,
                _ => return Err(invalid("OTEL_SDK_DISABLED", &v, "expected true or false")),
            },
        };
        let exporter_none = match get("OTEL_TRACES_EXPORTER") {
            None => false,
            Some(v) => match v.trim() {
                "otlp" => false,
                "none" => true,
                _ => {
                    return Err(invalid(
                        "OTEL_TRACES_EXPORTER",
                        &v,
                        "this build exports traces over OTLP only: use otlp (Jaeger ingests \
                         OTLP on port 4318) or none",
                    ));
                }
            },
        };
        for name in [
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ] {
            if let Some(v) = get(name)
                && v.trim() != "http/protobuf"
            {
                return Err(invalid(
                    name,
                    &v,
                    "this build exports http/protobuf only (OTLP over HTTP, port 4318)",
                ));
            }
        }
        if let Some(e) = &endpoint
            && !(e.starts_with("http://") || e.starts_with("https://"))
        {
            let name = if get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_some() {
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
            } else {
                "OTEL_EXPORTER_OTLP_ENDPOINT"
            };
            return Err(invalid(
                name,
                e,
                "expected an http:// or https:// URL (e.g. http://jaeger:4318)",
            ));
        }
        s.enabled = endpoint.is_some() && !disabled && !exporter_none;
        s.service_name = get("OTEL_SERVICE_NAME").map(|v| v.trim().to_string());
        let ratio = match get("OTEL_TRACES_SAMPLER_ARG") {
            None => 1.0,
            Some(v) => match v.trim().parse::<f64>() {
                Ok(r) if (0.0..=1.0).contains(&r) => r,
                _ => {
                    return Err(invalid(
                        "OTEL_TRACES_SAMPLER_ARG",
                        &v,
                        "expected a fraction in [0, 1]",
                    ));
                }
            },
        };
        if let Some(v) = get("OTEL_TRACES_SAMPLER") {
            let parent = |inner| TraceSampler::ParentBased(Box::new(inner));
            s.sampler = match v.trim() {
                "always_on" => TraceSampler::AlwaysOn,
                "always_off" => TraceSampler::AlwaysOff,
                "traceidratio" => TraceSampler::Ratio(ratio),
                "parentbased_always_on" => parent(TraceSampler::AlwaysOn),
                "parentbased_always_off" => parent(TraceSampler::AlwaysOff),
                "parentbased_traceidratio" => parent(TraceSampler::Ratio(ratio)),
                _ => {
                    return Err(invalid(
                        "OTEL_TRACES_SAMPLER",
                        &v,
                        "accepted: always_on, always_off, traceidratio, parentbased_always_on, \
                         parentbased_always_off, parentbased_traceidratio",
                    ));
                }
            };
        }
        Ok(s)
    }
}

/// Why telemetry could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot set up the OTLP trace exporter")]
pub struct TelemetryError(#[source] opentelemetry_otlp::ExporterBuildError);

/// Flushes and stops the trace exporter when dropped: keep it alive until the process
/// ends (after the async runtime, whose last spans it then sends).
#[derive(Debug)]
#[must_use = "dropping the guard stops trace export"]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(e) = provider.shutdown()
        {
            eprintln!("could not flush the last traces: {e}");
        }
    }
}

/// Installs the global subscriber: JSON-line logs at `level` (`info`, or per target as
/// in `pynomaly_api=debug,info`; unparsable: `info`) and, when `traces.enabled`, the OTLP exporter.
/// `default_service` names the service when `OTEL_SERVICE_NAME` does not. Call it
/// outside the async runtime (the exporter's blocking HTTP client must not be made on
/// it). A second call installs nothing.
///
/// # Errors
/// The exporter cannot be built (an endpoint that is not a URL, for instance).
pub fn init_telemetry(
    level: &str,
    traces: &TraceSettings,
    default_service: &str,
) -> Result<TelemetryGuard, TelemetryError> {
    let targets: Targets = level
        .parse()
        .unwrap_or_else(|_| Targets::new().with_default(LevelFilter::INFO));
    let mut request_spans = None;
    let provider = if traces.enabled {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .build()
            .map_err(TelemetryError)?;
        let name = traces
            .service_name
            .clone()
            .unwrap_or_else(|| default_service.to_string());
        let resource = opentelemetry_sdk::Resource::builder()
            .with_service_name(name)
            .with_attribute(opentelemetry::KeyValue::new(
                "service.version",
                env!("CARGO_PKG_VERSION"),
            ))
            .build();
        // One batch processor for the provider's spans and the request spans, which
        // reach it directly (see `request_span`).
        let (processor, spans) = RequestSpans::with_exporter(
            exporter,
            &resource,
            traces.sampler.to_sdk(),
            // The provider's limits: the defaults, or the `OTEL_SPAN_*` variables.
            opentelemetry_sdk::trace::Config::default().span_limits,
            TRACER_NAME,
        );
        request_spans = Some(spans);
        let provider = SdkTracerProvider::builder()
            .with_span_processor(processor)
            .with_sampler(traces.sampler.to_sdk())
            .with_resource(resource)
            .build();
        Some(provider)
    } else {
        None
    };
    let traces_on = provider.is_some();
    let tracer = provider.as_ref().map(|p| p.tracer(TRACER_NAME));
    let otel_layer = tracer.as_ref().map(|tracer| {
        tracing_opentelemetry::layer()
            .with_tracer(tracer.clone())
            .with_location(false)
            .with_threads(false)
            .with_target(false)
            .with_level(false)
            // A step span finds its parent through tracing, or, with no tracing parent,
            // in OpenTelemetry's current context (the request's, attached by the
            // middleware). Nothing reads a step's own context from there, so steps are
            // not attached to it; and busy/idle times are not worth two clock reads per
            // poll: both off, for the cost per request.
            .with_context_activation(false)
            .with_tracked_inactivity(false)
            // The access line repeats the request span's own attributes: as a span event
            // it would only add to every request's export.
            .with_filter(filter_fn(|meta| {
                !(meta.is_event() && meta.target() == ACCESS_LOG_TARGET)
            }))
    });
    // Events logged in a request outside any step span: events of the request's span.
    let request_events = traces_on.then_some(RequestSpanEvents);
    // One filter for all layers: LOG_LEVEL decides which events are logged (and become
    // span events); with traces on, info spans (jobs, steps) are kept whatever LOG_LEVEL
    // says, so LOG_LEVEL=warn quiets the logs, not the traces (request spans are not
    // `tracing` spans and are always made).
    let filter = filter_fn(move |meta| {
        (traces_on && meta.is_span() && *meta.level() <= tracing::Level::INFO)
            || targets.would_enable(meta.target(), meta.level())
    });
    let installed = tracing_subscriber::registry()
        .with(filter)
        .with(otel_layer)
        .with(request_events)
        .with(JsonLines::new(traces_on))
        .try_init()
        .is_ok();
    if installed && let (Some(p), Some(spans)) = (&provider, request_spans) {
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        opentelemetry::global::set_tracer_provider(p.clone());
        let _ = REQUEST_SPANS.set(spans);
    }
    Ok(TelemetryGuard {
        provider: provider.filter(|_| installed),
    })
}

/// Installs JSON-line logs at `level` with traces off (tests, tools).
pub fn init_tracing(level: &str) {
    let _guard = init_telemetry(level, &TraceSettings::default(), "pynomaly");
}

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

/// A request's server span ([`request_span::RequestSpan`], see the module docs): named
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
        let spans = REQUEST_SPANS.get()?;
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

/// A span for an inline ML step of a request (`fit`, `score`, `store`) with the seed's
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

/// The W3C hex trace and span ids of a context's span, when it has a valid one.
fn span_ids(cx: &OtelContext) -> Option<(String, String)> {
    let span = cx.span();
    let sc = span.span_context();
    sc.is_valid()
        .then(|| (sc.trace_id().to_string(), sc.span_id().to_string()))
}

/// Events logged in a request outside any `tracing` span (the request's span is not
/// one): events of the request's span, as `tracing-opentelemetry` makes them of a
/// `tracing` span's — named by their message, with their other fields, `level` and
/// `target` as attributes. The access line is left out (it repeats the span's attributes).
struct RequestSpanEvents;

impl<S> Layer<S> for RequestSpanEvents
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let meta = event.metadata();
        // The SDK's own events could come from inside a call holding the span's lock.
        if meta.target() == ACCESS_LOG_TARGET
            || meta.target().starts_with("opentelemetry")
            || ctx.event_span(event).is_some()
        {
            return;
        }
        OtelContext::map_current(|cx| {
            let span = cx.span();
            if !span.is_recording() {
                return;
            }
            let mut fields = EventAttributes {
                name: None,
                attributes: vec![
                    KeyValue::new("level", meta.level().as_str()),
                    KeyValue::new("target", meta.target()),
                ],
            };
            event.record(&mut fields);
            let name = fields.name.unwrap_or(Cow::Borrowed(meta.name()));
            span.add_event(name, fields.attributes);
        });
    }
}

/// An event's fields as span-event attributes, its message as the event's name.
struct EventAttributes {
    name: Option<Cow<'static, str>>,
    attributes: Vec<KeyValue>,
}

impl EventAttributes {
    fn push(&mut self, field: &Field, value: opentelemetry::Value) {
        self.attributes.push(KeyValue::new(field.name(), value));
    }
}

impl Visit for EventAttributes {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.push(field, value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.push(field, value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.push(
            field,
            i64::try_from(value).map_or_else(|_| value.to_string().into(), Into::into),
        );
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.push(field, value.into());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.name = Some(Cow::Owned(value.to_owned()));
        } else {
            self.push(field, value.to_owned().into());
        }
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.push(field, value.to_string().into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.name = Some(Cow::Owned(format!("{value:?}")));
        } else {
            self.push(field, format!("{value:?}").into());
        }
    }
}

/// The log layer: one JSON object per event, with the trace and span ids of the span it
/// happened in when traces are on (a request's, a step's or a job's).
struct JsonLines {
    with_trace: bool,
    dispatch: OnceLock<tracing::dispatcher::WeakDispatch>,
}

impl JsonLines {
    fn new(with_trace: bool) -> Self {
        Self {
            with_trace,
            dispatch: OnceLock::new(),
        }
    }

    /// The ids of the event's `tracing` span (a step's, a job's), or, outside any, of the
    /// current OpenTelemetry context's span (a request's, see [`RequestTrace`]).
    fn trace_ids<S>(&self, event: &Event<'_>, ctx: &Context<'_, S>) -> Option<(String, String)>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let Some(span) = ctx.event_span(event) else {
            return OtelContext::map_current(span_ids);
        };
        let dispatch: Dispatch = self.dispatch.get()?.upgrade()?;
        let cx = tracing_opentelemetry::get_otel_context(&span.id(), &dispatch)?;
        span_ids(&cx)
    }
}

impl<S> Layer<S> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_register_dispatch(&self, subscriber: &Dispatch) {
        let _ = self.dispatch.set(subscriber.downgrade());
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let meta = event.metadata();
        let mut line = Map::new();
        line.insert(
            "timestamp".into(),
            Value::String(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true)),
        );
        line.insert("level".into(), Value::String(meta.level().to_string()));
        event.record(&mut FieldsVisitor(&mut line));
        line.insert("target".into(), Value::String(meta.target().to_string()));
        if self.with_trace
            && let Some((trace_id, span_id)) = self.trace_ids(event, &ctx)
        {
            line.insert("trace_id".into(), Value::String(trace_id));
            line.insert("span_id".into(), Value::String(span_id));
        }
        let mut bytes = serde_json::to_vec(&line).unwrap_or_default();
        bytes.push(b'\n');
        let _ = std::io::stdout().lock().write_all(&bytes);
    }
}

/// An event's fields as JSON values (numbers stay numbers).
struct FieldsVisitor<'a>(&'a mut Map<String, Value>);

impl Visit for FieldsVisitor<'_> {
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), Value::from(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0
            .insert(field.name().into(), Value::from(value.to_string()));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().into(), Value::from(format!("{value:?}")));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::Tracer as _;
    use opentelemetry_sdk::error::OTelSdkResult;
    use opentelemetry_sdk::trace::{SpanData, SpanExporter};
    use std::collections::HashMap;
    use std::sync::Mutex;

    fn from(pairs: &[(&str, &str)]) -> Result<TraceSettings, SettingsError> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        TraceSettings::from_lookup(&|k: &str| map.get(k).cloned())
    }

    #[test]
    fn traces_are_off_without_an_endpoint_and_on_with_one() {
        assert!(!from(&[]).unwrap().enabled);
        assert!(!from(&[("OTEL_SERVICE_NAME", "x")]).unwrap().enabled);
        let on = from(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318")]).unwrap();
        assert!(on.enabled);
        assert_eq!(
            on.sampler,
            TraceSampler::ParentBased(Box::new(TraceSampler::AlwaysOn))
        );
        let off = from(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"),
            ("OTEL_SDK_DISABLED", "true"),
        ])
        .unwrap();
        assert!(!off.enabled);
        let none = from(&[
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://c:4318/v1/traces",
            ),
            ("OTEL_TRACES_EXPORTER", "none"),
        ])
        .unwrap();
        assert!(!none.enabled);
    }

    #[test]
    fn the_sampler_follows_the_specification_names() {
        let s = from(&[
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
        ])
        .unwrap();
        assert_eq!(
            s.sampler,
            TraceSampler::ParentBased(Box::new(TraceSampler::Ratio(0.25)))
        );
        let s = from(&[("OTEL_TRACES_SAMPLER", "always_off")]).unwrap();
        assert_eq!(s.sampler, TraceSampler::AlwaysOff);
    }

    #[test]
    fn unusable_otel_settings_fail_with_their_name() {
        let cases: [(&[(&str, &str)], &str); 5] = [
            (
                &[("OTEL_TRACES_SAMPLER", "sometimes")],
                "OTEL_TRACES_SAMPLER",
            ),
            (
                &[("OTEL_TRACES_SAMPLER_ARG", "1.5")],
                "OTEL_TRACES_SAMPLER_ARG",
            ),
            (
                &[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")],
                "OTEL_EXPORTER_OTLP_PROTOCOL",
            ),
            (
                &[("OTEL_TRACES_EXPORTER", "jaeger")],
                "OTEL_TRACES_EXPORTER",
            ),
            (
                &[("OTEL_EXPORTER_OTLP_ENDPOINT", "jaeger:4318")],
                "OTEL_EXPORTER_OTLP_ENDPOINT",
            ),
        ];
        for (pairs, name) in cases {
            let e = from(pairs).unwrap_err().to_string();
            assert!(e.contains(name), "{e}");
        }
    }

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

    /// Keeps what it is given to export.
    #[derive(Debug, Clone, Default)]
    pub(super) struct Collect(pub(super) Arc<Mutex<Vec<SpanData>>>);

    impl SpanExporter for Collect {
        async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
            self.0.lock().unwrap().extend(batch);
            Ok(())
        }
    }

    #[test]
    fn events_logged_in_a_request_outside_step_spans_become_events_of_its_span() {
        let exported = Collect::default();
        let provider = SdkTracerProvider::builder()
            .with_simple_exporter(exported.clone())
            .build();
        let tracer = provider.tracer("test");
        let subscriber = tracing_subscriber::registry().with(RequestSpanEvents);
        tracing::subscriber::with_default(subscriber, || {
            let cx = OtelContext::new().with_span(tracer.start("request"));
            {
                let _attached = cx.clone().attach();
                tracing::warn!(rows = 3, source = "a.csv", "model reloaded");
                tracing::info!(target: ACCESS_LOG_TARGET, status = 200, "request");
                // A step's own events are tracing-opentelemetry's, on the step's span.
                let _step = tracing::info_span!("step").entered();
                tracing::warn!("inside a step");
            }
            tracing::warn!("outside any request");
            cx.span().end();
        });
        let spans = exported.0.lock().unwrap();
        assert_eq!(spans.len(), 1);
        let events = &spans[0].events.events;
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(events[0].name, "model reloaded");
        let attr = |key: &str| {
            events[0]
                .attributes
                .iter()
                .find(|kv| kv.key.as_str() == key)
                .map(|kv| kv.value.clone())
        };
        assert_eq!(attr("rows"), Some(opentelemetry::Value::I64(3)));
        assert_eq!(attr("source"), Some("a.csv".into()));
        assert_eq!(attr("level"), Some("WARN".into()));
        assert!(attr("message").is_none(), "the message names the event");
    }
}
