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
//! **Two kinds of span.** A request's server span is made by [`RequestSpans`] (see
//! [`request_span`]): a plain value following the SDK's rules, handed to the same batch
//! processor as every other span, without the SDK span's per-span costs on the request
//! threads; the HTTP layer makes one per request when [`request_spans`] is set. The spans
//! of a request's steps and of jobs are `tracing` spans, exported by
//! `tracing-opentelemetry`. Events logged in a request outside any `tracing` span become
//! events of its server span ([`logs`]).

use std::sync::OnceLock;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{LevelFilter, Targets, filter_fn};
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

mod logs;
mod request_span;

use crate::settings::TraceSettings;
use logs::{JsonLines, RequestSpanEvents};
pub use request_span::{RequestSpan, RequestSpans};

/// The target of the one access log line per request (written by the HTTP layer).
pub const ACCESS_LOG_TARGET: &str = "pynomaly_api::access";

/// What request spans are made with, set once by [`init_telemetry`] when it exports traces.
static REQUEST_SPANS: OnceLock<RequestSpans> = OnceLock::new();

/// The instrumentation scope of every span the service makes.
const TRACER_NAME: &str = "pynomaly";

/// Whether spans are exported: no request span is made otherwise.
pub fn traces_on() -> bool {
    REQUEST_SPANS.get().is_some()
}

/// What request spans are made with, when traces are exported.
pub fn request_spans() -> Option<&'static RequestSpans> {
    REQUEST_SPANS.get()
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
