//! The log layers: JSON lines on stdout, each with the trace and span ids of the span it
//! happened in when traces are on, and events logged in a request outside any `tracing`
//! span recorded as events of the request's server span.

use std::borrow::Cow;
use std::io::Write as _;
use std::sync::OnceLock;

use opentelemetry::trace::TraceContextExt as _;
use opentelemetry::{Context as OtelContext, KeyValue};
use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Dispatch, Event, Subscriber};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;

use super::ACCESS_LOG_TARGET;

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
pub(crate) struct RequestSpanEvents;

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
pub(crate) struct JsonLines {
    with_trace: bool,
    dispatch: OnceLock<tracing::dispatcher::WeakDispatch>,
}

impl JsonLines {
    pub(crate) fn new(with_trace: bool) -> Self {
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
pub(crate) mod tests {
    use super::*;
    use opentelemetry::trace::{Tracer as _, TracerProvider as _};
    use opentelemetry_sdk::error::OTelSdkResult;
    use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
    use std::sync::{Arc, Mutex};
    use tracing_subscriber::layer::SubscriberExt as _;

    /// Keeps what it is given to export.
    #[derive(Debug, Clone, Default)]
    pub(crate) struct Collect(pub(crate) Arc<Mutex<Vec<SpanData>>>);

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
