//! Request spans: made and ended on the request threads without the SDK's `Span`, handed
//! to the same batch processor as every other span.
//!
//! Every traced request pays for its span, so what a span costs the request threads is
//! what tracing costs the service. The SDK's span clones its tracer (two reference counts
//! shared by every thread, touched twice per span) and allocates its attribute vector on
//! the request thread, which the exporter's thread then frees; with glibc such a free
//! returns the memory to the request thread's arena under that arena's lock, so the request
//! threads contend with the exporter for their own heap and their per-thread caches never
//! refill. A [`RequestSpan`] is a plain value instead: it follows the SDK's rules (the
//! configured sampler and id generator, the `OTEL_SPAN_*` limits, the same instrumentation
//! scope, so request and step spans export together) and, when it ends, becomes the SDK's
//! [`SpanData`] for the shared [`BatchSpanProcessor`]. Its attribute vector comes from an
//! [`AttributePool`] that the exporter's side ([`Recycling`]) refills with the vectors of
//! the spans it has exported, so attribute memory circulates instead of being allocated on
//! one thread and freed on another. Where the allocator does not contend this way, this
//! path and the SDK's cost the same (BENCHMARKS.md, tracing).

use std::borrow::Cow;
use std::cell::RefCell;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use opentelemetry::trace::{
    Event, Link, SpanContext, SpanId, SpanKind, Status, TraceContextExt as _, TraceFlags,
};
use opentelemetry::{Context as OtelContext, InstrumentationScope, KeyValue};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    BatchSpanProcessor, IdGenerator as _, RandomIdGenerator, Sampler, SamplingDecision,
    ShouldSample as _, Span as SdkSpan, SpanData, SpanEvents, SpanExporter, SpanLimits, SpanLinks,
    SpanProcessor,
};

/// The capacity of a request span's attribute vector: method, route, the client's request
/// id, status code, error type and message, and an inline step's three `ml.*` — room for
/// all from the start, so a vector from the pool is never grown.
const REQUEST_ATTRIBUTES: usize = 9;

/// Vectors the pool keeps at most (beyond the batch processor's queue and batch, which
/// hold the rest of those in circulation).
const POOL_MAX: usize = 8192;

/// Vectors a thread takes from the shared pool at a time (one lock per this many spans).
const REFILL: usize = 32;

thread_local! {
    /// This thread's share of the pool's vectors.
    static LOCAL_ATTRIBUTES: RefCell<Vec<Vec<KeyValue>>> = const { RefCell::new(Vec::new()) };
}

/// Empty attribute vectors of capacity [`REQUEST_ATTRIBUTES`], given back by the
/// exporter's side ([`Recycling`]) and taken by the request threads a few at a time.
#[derive(Debug, Default)]
struct AttributePool {
    free: Mutex<Vec<Vec<KeyValue>>>,
}

impl AttributePool {
    /// An empty vector with room for a request span's attributes: one of this thread's,
    /// else one of the pool's (taking a few more for later), else a new one.
    fn take(&self) -> Vec<KeyValue> {
        LOCAL_ATTRIBUTES
            .with_borrow_mut(|local| {
                if local.is_empty() {
                    let mut free = self.free.lock().unwrap_or_else(PoisonError::into_inner);
                    let at = free.len().saturating_sub(REFILL);
                    local.extend(free.drain(at..));
                }
                local.pop()
            })
            .unwrap_or_else(|| Vec::with_capacity(REQUEST_ATTRIBUTES))
    }

    /// Keeps `emptied` (empty vectors) for later spans, up to [`POOL_MAX`] in all.
    fn give_back(&self, mut emptied: Vec<Vec<KeyValue>>) {
        let mut free = self.free.lock().unwrap_or_else(PoisonError::into_inner);
        let room = POOL_MAX.saturating_sub(free.len());
        emptied.truncate(room);
        free.append(&mut emptied);
    }

    /// Vectors kept in the shared pool (not counting the threads' own).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.free.lock().unwrap().len()
    }
}

/// Whether a vector is one of the pool's (or as good as one).
fn poolable(attributes: &Vec<KeyValue>) -> bool {
    attributes.capacity() == REQUEST_ATTRIBUTES
}

/// The exporter as the batch processor sees it: before a batch goes to `inner`, each
/// request span's attributes move into a vector made on this (the exporter's) thread, and
/// the pool's vector, emptied, goes back to the pool.
#[derive(Debug)]
struct Recycling<E> {
    inner: E,
    pool: Arc<AttributePool>,
}

impl<E: SpanExporter> SpanExporter for Recycling<E> {
    async fn export(&self, mut batch: Vec<SpanData>) -> OTelSdkResult {
        let mut emptied = Vec::with_capacity(batch.len());
        for span in &mut batch {
            if poolable(&span.attributes) {
                let mut own = Vec::with_capacity(span.attributes.len());
                own.append(&mut span.attributes);
                emptied.push(std::mem::replace(&mut span.attributes, own));
            }
        }
        self.pool.give_back(emptied);
        self.inner.export(batch).await
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// The batch processor shared by the tracer provider (step and job spans) and the request
/// spans. The provider owns this handle and forwards shutdown and flushes through it.
#[derive(Debug)]
pub(crate) struct SharedProcessor(Arc<BatchSpanProcessor>);

impl SpanProcessor for SharedProcessor {
    fn on_start(&self, span: &mut SdkSpan, cx: &OtelContext) {
        self.0.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        self.0.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }

    // `set_resource` is left out: the processor is shared, so
    // `RequestSpans::with_exporter` gives it the provider's resource before sharing it.
}

/// What request spans are made with: the provider's sampler, id generator, span limits
/// and instrumentation scope, and its batch processor.
#[derive(Debug)]
pub struct RequestSpans {
    processor: Arc<BatchSpanProcessor>,
    sampler: Sampler,
    ids: RandomIdGenerator,
    limits: SpanLimits,
    scope: InstrumentationScope,
    pool: Arc<AttributePool>,
}

impl RequestSpans {
    /// A batch processor (the `OTEL_BSP_*` variables) over `exporter`, for spans of
    /// `resource`: the handle the tracer provider is built with, and the request spans
    /// made with the provider's `sampler` and `limits` and the scope of its tracer
    /// `scope`, which end into the same processor.
    pub(crate) fn with_exporter<E: SpanExporter + 'static>(
        exporter: E,
        resource: &Resource,
        sampler: Sampler,
        limits: SpanLimits,
        scope: &'static str,
    ) -> (SharedProcessor, Self) {
        let pool = Arc::new(AttributePool::default());
        let mut processor = BatchSpanProcessor::builder(Recycling {
            inner: exporter,
            pool: Arc::clone(&pool),
        })
        .build();
        processor.set_resource(resource);
        let processor = Arc::new(processor);
        let spans = Self {
            processor: Arc::clone(&processor),
            sampler,
            ids: RandomIdGenerator::default(),
            limits,
            scope: InstrumentationScope::builder(scope).build(),
            pool,
        };
        (SharedProcessor(processor), spans)
    }

    /// A server span named `name`, a child of `parent`'s span when that is valid (a
    /// caller's, from its `traceparent`), else the root of a new trace. As the SDK's
    /// tracer does: the sampler decides whether it records; a span that does not still
    /// has valid ids (unsampled), so that logs and responses can name its trace.
    pub fn start(&'static self, name: Cow<'static, str>, parent: &OtelContext) -> RequestSpan {
        if parent.is_telemetry_suppressed() {
            return RequestSpan::not_recording(SpanContext::empty_context());
        }
        let parent_span = parent.span();
        let psc = parent_span.span_context();
        let (trace_id, parent_span_id, parent_is_remote, flags) = if psc.is_valid() {
            (
                psc.trace_id(),
                psc.span_id(),
                psc.is_remote(),
                psc.trace_flags(),
            )
        } else {
            (
                self.ids.new_trace_id(),
                SpanId::INVALID,
                false,
                TraceFlags::default(),
            )
        };
        let span_id = self.ids.new_span_id();
        let sampling =
            self.sampler
                .should_sample(Some(parent), trace_id, &name, &SpanKind::Server, &[], &[]);
        let sampled = match sampling.decision {
            SamplingDecision::Drop => {
                let sc = SpanContext::new(
                    trace_id,
                    span_id,
                    TraceFlags::default(),
                    false,
                    sampling.trace_state,
                );
                return RequestSpan::not_recording(sc);
            }
            SamplingDecision::RecordOnly => false,
            SamplingDecision::RecordAndSample => true,
        };
        let context = SpanContext::new(
            trace_id,
            span_id,
            flags.with_sampled(sampled),
            false,
            sampling.trace_state,
        );
        let mut span = RequestSpan {
            context,
            recording: Some(Recording {
                spans: self,
                parent_span_id,
                parent_is_remote,
                name,
                start_time: opentelemetry::time::now(),
                attributes: self.pool.take(),
                dropped_attributes: 0,
                events: SpanEvents::default(),
                links: SpanLinks::default(),
                status: Status::Unset,
            }),
        };
        opentelemetry::trace::Span::set_attributes(&mut span, sampling.attributes);
        span
    }
}

/// A request's span (see the module docs): what it records until it ends, when it is
/// handed to the batch processor. Ended when dropped, as the SDK's spans are.
#[derive(Debug)]
pub struct RequestSpan {
    context: SpanContext,
    /// `None` when the span does not record, or once it has ended.
    recording: Option<Recording>,
}

#[derive(Debug)]
struct Recording {
    spans: &'static RequestSpans,
    parent_span_id: SpanId,
    parent_is_remote: bool,
    name: Cow<'static, str>,
    start_time: SystemTime,
    attributes: Vec<KeyValue>,
    dropped_attributes: u32,
    events: SpanEvents,
    links: SpanLinks,
    status: Status,
}

impl RequestSpan {
    fn not_recording(context: SpanContext) -> Self {
        Self {
            context,
            recording: None,
        }
    }
}

/// Keeps the first `limit` of an event's or link's attributes; how many were dropped.
fn truncate(attributes: &mut Vec<KeyValue>, limit: u32) -> u32 {
    let dropped = attributes.len().saturating_sub(limit as usize);
    attributes.truncate(limit as usize);
    u32::try_from(dropped).unwrap_or(u32::MAX)
}

impl opentelemetry::trace::Span for RequestSpan {
    fn add_event_with_timestamp<T>(
        &mut self,
        name: T,
        timestamp: SystemTime,
        mut attributes: Vec<KeyValue>,
    ) where
        T: Into<Cow<'static, str>>,
    {
        let Some(r) = &mut self.recording else {
            return;
        };
        if r.events.events.len() < r.spans.limits.max_events_per_span as usize {
            let dropped = truncate(&mut attributes, r.spans.limits.max_attributes_per_event);
            r.events
                .events
                .push(Event::new(name, timestamp, attributes, dropped));
        } else {
            r.events.dropped_count += 1;
        }
    }

    fn span_context(&self) -> &SpanContext {
        &self.context
    }

    fn is_recording(&self) -> bool {
        self.recording.is_some()
    }

    fn set_attribute(&mut self, attribute: KeyValue) {
        let Some(r) = &mut self.recording else {
            return;
        };
        if r.attributes.len() < r.spans.limits.max_attributes_per_span as usize {
            r.attributes.push(attribute);
        } else {
            r.dropped_attributes += 1;
        }
    }

    fn set_status(&mut self, status: Status) {
        // As the SDK: Ok is final, Error replaces Unset, Unset changes nothing.
        if let Some(r) = &mut self.recording
            && status > r.status
        {
            r.status = status;
        }
    }

    fn update_name<T>(&mut self, new_name: T)
    where
        T: Into<Cow<'static, str>>,
    {
        if let Some(r) = &mut self.recording {
            r.name = new_name.into();
        }
    }

    fn add_link(&mut self, span_context: SpanContext, mut attributes: Vec<KeyValue>) {
        let Some(r) = &mut self.recording else {
            return;
        };
        if r.links.links.len() < r.spans.limits.max_links_per_span as usize {
            let dropped = truncate(&mut attributes, r.spans.limits.max_attributes_per_link);
            r.links
                .links
                .push(Link::new(span_context, attributes, dropped));
        } else {
            r.links.dropped_count += 1;
        }
    }

    fn end_with_timestamp(&mut self, timestamp: SystemTime) {
        let Some(r) = self.recording.take() else {
            return;
        };
        r.spans.processor.on_end(SpanData {
            span_context: self.context.clone(),
            parent_span_id: r.parent_span_id,
            parent_span_is_remote: r.parent_is_remote,
            span_kind: SpanKind::Server,
            name: r.name,
            start_time: r.start_time,
            end_time: timestamp,
            attributes: r.attributes,
            dropped_attributes_count: r.dropped_attributes,
            events: r.events,
            links: r.links,
            status: r.status,
            instrumentation_scope: r.spans.scope.clone(),
        });
    }
}

impl Drop for RequestSpan {
    fn drop(&mut self) {
        if self.recording.is_some() {
            opentelemetry::trace::Span::end(self);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::logs::tests::Collect;
    use opentelemetry::propagation::TextMapPropagator as _;
    use opentelemetry::trace::{Span as _, TraceId, TraceState};
    use opentelemetry_sdk::propagation::TraceContextPropagator;
    use std::collections::HashMap;

    /// Request spans exporting to `Collect`, set up as `init_telemetry` sets them up;
    /// kept for the test process (spans hold a `&'static`).
    fn request_spans(sampler: Sampler, limits: SpanLimits) -> (&'static RequestSpans, Collect) {
        let exported = Collect::default();
        let resource = Resource::builder_empty().build();
        let (_provider_handle, spans) =
            RequestSpans::with_exporter(exported.clone(), &resource, sampler, limits, "pynomaly");
        (Box::leak(Box::new(spans)), exported)
    }

    fn attr(span: &SpanData, key: &str) -> Option<opentelemetry::Value> {
        span.attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| kv.value.clone())
    }

    #[test]
    fn a_request_span_is_exported_as_the_sdk_exports_its_spans() {
        let (spans, exported) = request_spans(Sampler::AlwaysOn, SpanLimits::default());
        let mut span = spans.start("POST /api/v1/models".into(), &OtelContext::new());
        assert!(span.is_recording());
        let sc = span.span_context().clone();
        assert!(sc.is_valid() && sc.is_sampled() && !sc.is_remote());
        span.set_attribute(KeyValue::new("http.method", "POST"));
        span.set_attribute(KeyValue::new("http.status_code", 500_i64));
        span.add_event("model reloaded", vec![KeyValue::new("rows", 3_i64)]);
        span.set_status(Status::error("boom"));
        // Unset after Error changes nothing.
        span.set_status(Status::Unset);
        span.end();
        assert!(!span.is_recording());
        span.end(); // a second end exports nothing more
        spans.processor.force_flush().unwrap();

        let out = exported.0.lock().unwrap();
        assert_eq!(out.len(), 1);
        let s = &out[0];
        assert_eq!(s.name, "POST /api/v1/models");
        assert_eq!(s.span_kind, SpanKind::Server);
        assert_eq!(s.span_context, sc);
        assert_eq!(s.parent_span_id, SpanId::INVALID);
        assert_eq!(s.instrumentation_scope.name(), "pynomaly");
        assert_eq!(attr(s, "http.method"), Some("POST".into()));
        assert_eq!(attr(s, "http.status_code"), Some(500_i64.into()));
        assert_eq!(s.status, Status::error("boom"));
        assert_eq!(s.events.events.len(), 1);
        assert_eq!(s.events.events[0].name, "model reloaded");
        assert!(s.end_time >= s.start_time);
        // The exporter got attributes in a vector of its own; the pool got the span's back.
        assert!(!poolable(&s.attributes));
        assert_eq!(spans.pool.len(), 1);
        let again = spans.pool.take();
        assert!(again.is_empty() && again.capacity() == REQUEST_ATTRIBUTES);
    }

    #[test]
    fn a_request_span_continues_the_callers_trace_and_ends_when_dropped() {
        let (spans, exported) = request_spans(
            Sampler::ParentBased(Box::new(Sampler::AlwaysOff)),
            SpanLimits::default(),
        );
        let headers = HashMap::from([(
            "traceparent".to_string(),
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".to_string(),
        )]);
        let parent = TraceContextPropagator::new().extract(&headers);
        let span = spans.start("GET /health".into(), &parent);
        let sc = span.span_context().clone();
        // Sampled because the caller sampled it, whatever the root sampler says.
        assert!(span.is_recording() && sc.is_sampled());
        assert_eq!(
            sc.trace_id(),
            TraceId::from_hex("0af7651916cd43dd8448eb211c80319c").unwrap()
        );
        drop(span);
        spans.processor.force_flush().unwrap();
        let out = exported.0.lock().unwrap();
        assert_eq!(out.len(), 1);
        assert_eq!(
            out[0].parent_span_id,
            SpanId::from_hex("b7ad6b7169203331").unwrap()
        );
        assert!(out[0].parent_span_is_remote);
        assert_eq!(out[0].span_context.trace_id(), sc.trace_id());
    }

    #[test]
    fn a_span_the_sampler_drops_records_nothing_but_has_ids() {
        let (spans, exported) = request_spans(Sampler::AlwaysOff, SpanLimits::default());
        let mut span = spans.start("GET /health".into(), &OtelContext::new());
        let sc = span.span_context().clone();
        assert!(!span.is_recording());
        assert!(sc.is_valid() && !sc.is_sampled());
        assert_eq!(sc.trace_state(), &TraceState::default());
        span.set_attribute(KeyValue::new("http.status_code", 200_i64));
        span.end();
        spans.processor.force_flush().unwrap();
        assert!(exported.0.lock().unwrap().is_empty());
        // A suppressed context makes no span at all.
        let suppressed = OtelContext::new().with_telemetry_suppressed();
        assert!(
            !spans
                .start("x".into(), &suppressed)
                .span_context()
                .is_valid()
        );
    }

    #[test]
    fn the_span_limits_apply_to_request_spans() {
        let limits = SpanLimits {
            max_attributes_per_span: 2,
            max_events_per_span: 1,
            max_attributes_per_event: 1,
            max_links_per_span: 1,
            max_attributes_per_link: 1,
        };
        let (spans, exported) = request_spans(Sampler::AlwaysOn, limits);
        let mut span = spans.start("GET /x".into(), &OtelContext::new());
        for i in 0..4_i64 {
            span.set_attribute(KeyValue::new("n", i));
        }
        span.add_event(
            "first",
            vec![KeyValue::new("a", 1_i64), KeyValue::new("b", 2_i64)],
        );
        span.add_event("second", vec![]);
        let linked = SpanContext::new(
            TraceId::from(7),
            SpanId::from(9),
            TraceFlags::SAMPLED,
            true,
            TraceState::default(),
        );
        span.add_link(
            linked.clone(),
            vec![KeyValue::new("a", 1_i64), KeyValue::new("b", 2_i64)],
        );
        span.add_link(linked.clone(), vec![]);
        span.end();
        spans.processor.force_flush().unwrap();
        let out = exported.0.lock().unwrap();
        let s = &out[0];
        assert_eq!(s.attributes.len(), 2);
        assert_eq!(s.dropped_attributes_count, 2);
        assert_eq!(s.events.events.len(), 1);
        assert_eq!(s.events.dropped_count, 1);
        assert_eq!(s.events.events[0].attributes.len(), 1);
        assert_eq!(s.events.events[0].dropped_attributes_count, 1);
        assert_eq!(s.links.links.len(), 1);
        assert_eq!(s.links.dropped_count, 1);
        assert_eq!(s.links.links[0].span_context, linked);
        assert_eq!(s.links.links[0].attributes.len(), 1);
        assert_eq!(s.links.links[0].dropped_attributes_count, 1);
    }

    #[test]
    fn the_pool_keeps_at_most_its_limit() {
        let pool = AttributePool::default();
        let vectors = || {
            (0..POOL_MAX / 2 + 10)
                .map(|_| Vec::with_capacity(REQUEST_ATTRIBUTES))
                .collect()
        };
        pool.give_back(vectors());
        pool.give_back(vectors());
        assert_eq!(pool.len(), POOL_MAX);
        // A thread takes a few at a time from the shared pool.
        let taken = pool.take();
        assert_eq!(taken.capacity(), REQUEST_ATTRIBUTES);
        assert_eq!(pool.len(), POOL_MAX - REFILL);
    }
}
