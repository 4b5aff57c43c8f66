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
//! 4318) by the SDK's batch processor on its own thread, so a slow or absent collector
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

use std::io::Write as _;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::http::HeaderMap;
use opentelemetry::propagation::Extractor;
use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
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

/// The target of the one access log line per request (`crate::middleware`).
pub(crate) const ACCESS_LOG_TARGET: &str = "pynomaly_api::access";

/// Whether this process exports traces (set once, by [`init_telemetry`]).
static TRACES_ON: AtomicBool = AtomicBool::new(false);

/// Whether spans are exported: the middleware makes no request span otherwise.
pub(crate) fn traces_on() -> bool {
    TRACES_ON.load(Ordering::Relaxed)
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
        Some(
            SdkTracerProvider::builder()
                .with_batch_exporter(exporter)
                .with_sampler(traces.sampler.to_sdk())
                .with_resource(resource)
                .build(),
        )
    } else {
        None
    };
    let otel_layer = provider.as_ref().map(|p| {
        tracing_opentelemetry::layer()
            .with_tracer(p.tracer("pynomaly"))
            .with_location(false)
            .with_threads(false)
            .with_target(false)
            .with_level(false)
            // Nothing here reads OpenTelemetry's own current context (spans find their
            // parents through tracing), and busy/idle times are not worth two clock
            // reads per poll: both off, for the cost per request.
            .with_context_activation(false)
            .with_tracked_inactivity(false)
            // The access line repeats the request span's own attributes: as a span event
            // it would only add to every request's export.
            .with_filter(filter_fn(|meta| {
                !(meta.is_event() && meta.target() == ACCESS_LOG_TARGET)
            }))
    });
    // One filter for both layers: LOG_LEVEL decides which events are logged (and become
    // span events); with traces on, info spans (requests, jobs, steps) are kept whatever
    // LOG_LEVEL says, so LOG_LEVEL=warn quiets the logs, not the traces.
    let traces_on = provider.is_some();
    let filter = filter_fn(move |meta| {
        (traces_on && meta.is_span() && *meta.level() <= tracing::Level::INFO)
            || targets.would_enable(meta.target(), meta.level())
    });
    let installed = tracing_subscriber::registry()
        .with(filter)
        .with(otel_layer)
        .with(JsonLines::new(traces_on))
        .try_init()
        .is_ok();
    if installed && let Some(p) = &provider {
        opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
        opentelemetry::global::set_tracer_provider(p.clone());
        TRACES_ON.store(true, Ordering::Relaxed);
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
pub(crate) fn remote_parent(headers: &HeaderMap) -> Option<opentelemetry::Context> {
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

/// Marks the current span (the request's, inside a handler) as failed with `code` and
/// the message the client gets ("internal error" for a 5xx).
pub(crate) fn record_error(code: &str, message: &dyn std::fmt::Display) {
    if !traces_on() {
        return;
    }
    let span = tracing::Span::current();
    span.record("error.type", code);
    span.record("error.message", tracing::field::display(message));
}

/// A span for an inline ML step of a request (`fit`, `score`, `store`) with the seed's
/// `ml.algorithm` and `ml.data_size` (and the row count); none when traces are off.
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
/// inline in microseconds: the request's span, with the step's `ml.algorithm`,
/// `ml.data_size` and row count recorded on it. A child span there would double what
/// tracing costs a small request for a step of no duration worth showing. None when
/// traces are off.
pub(crate) fn ml_inline(algorithm: &str, rows: usize) -> tracing::Span {
    if !traces_on() {
        return tracing::Span::none();
    }
    let span = tracing::Span::current();
    span.record("ml.algorithm", algorithm);
    span.record("ml.data_size", pynomaly_jobs::size_class(rows));
    span.record("ml.data_rows", rows as i64);
    span
}

/// The log layer: one JSON object per event, with the trace and span ids of the span it
/// happened in when traces are on.
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

    fn trace_ids<S>(&self, event: &Event<'_>, ctx: &Context<'_, S>) -> Option<(String, String)>
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let span = ctx.event_span(event)?;
        let dispatch: Dispatch = self.dispatch.get()?.upgrade()?;
        let cx = tracing_opentelemetry::get_otel_context(&span.id(), &dispatch)?;
        let otel_span = cx.span();
        let sc = otel_span.span_context();
        sc.is_valid()
            .then(|| (sc.trace_id().to_string(), sc.span_id().to_string()))
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
    use std::collections::HashMap;

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
}
