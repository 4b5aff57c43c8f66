//! What the OTLP exporter spends on one request span on its own thread: the
//! `opentelemetry-proto` conversion of the SDK's `SpanData` (the one `opentelemetry-otlp`
//! runs) and the protobuf encoding, per span, in batches of 512 (the batch processor's
//! default), for a traced 1-row predict's span in two shapes: "now", as the service exports
//! it (six attributes, the name and route `&'static str`s), and "before", the heavier shape
//! it replaced, kept for comparison (eight: also `request_id` and `ml.data_rows`, the name
//! and route formatted per request).
//!
//! ```text
//! cargo run --release -p bench-tools --bin otlp-encode [ROUNDS]
//! ```
//!
//! The spans are made outside the timed part; timing is of the conversion, encoding and
//! freeing only, all on one thread (in the service the span data is made on the request
//! threads, which costs the exporter's thread more: see BENCHMARKS.md).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};
use prost::Message as _;

const BATCH: usize = 512;
const BATCHES: usize = 400;
const ROUTE: &str = "/api/v1/models/{name}/predict";

/// The span's attributes and name (see the module docs).
#[derive(Clone, Copy)]
enum Shape {
    /// As the service exports it: six attributes, static name and route.
    Now,
    /// Eight attributes, the name and route formatted per request.
    Before,
}

fn span(i: usize, shape: Shape, scope: &InstrumentationScope, id: &Arc<str>) -> SpanData {
    let trace = TraceId::from_bytes((i as u128 + 1).to_be_bytes());
    let own = SpanId::from_bytes((i as u64 + 1).to_be_bytes());
    let mut attributes = Vec::with_capacity(10);
    let name = match shape {
        Shape::Now => {
            attributes.push(KeyValue::new("http.method", "POST"));
            attributes.push(KeyValue::new("http.route", ROUTE));
            "POST /api/v1/models/{name}/predict".into()
        }
        Shape::Before => {
            attributes.push(KeyValue::new("http.method", "POST"));
            attributes.push(KeyValue::new("http.route", ROUTE.to_owned()));
            attributes.push(KeyValue::new("request_id", Arc::clone(id)));
            attributes.push(KeyValue::new("ml.data_rows", 1_i64));
            format!("POST {ROUTE}").into()
        }
    };
    attributes.push(KeyValue::new("ml.algorithm", "isolation_forest"));
    attributes.push(KeyValue::new("ml.data_size", "small"));
    attributes.push(KeyValue::new("ml.anomalies_detected", 0_i64));
    attributes.push(KeyValue::new("http.status_code", 200_i64));
    let now = SystemTime::now();
    SpanData {
        span_context: SpanContext::new(trace, own, TraceFlags::SAMPLED, false, TraceState::NONE),
        parent_span_id: SpanId::INVALID,
        parent_span_is_remote: false,
        span_kind: SpanKind::Server,
        name,
        start_time: now,
        end_time: now,
        attributes,
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status: Status::Unset,
        instrumentation_scope: scope.clone(),
    }
}

/// Microseconds per span and bytes per span for `BATCHES` batches of `BATCH` spans.
fn run(shape: Shape, resource: &ResourceAttributesWithSchema) -> (f64, usize) {
    let scope = InstrumentationScope::builder("pynomaly").build();
    let id: Arc<str> = Arc::from("0b9d6c0e-3f0f-4a39-9d8e-2f1c1f7c3a11");
    let (mut spent, mut bytes) = (Duration::ZERO, 0);
    for _ in 0..BATCHES {
        let spans: Vec<SpanData> = (0..BATCH).map(|i| span(i, shape, &scope, &id)).collect();
        let t = Instant::now();
        let request = ExportTraceServiceRequest {
            resource_spans: group_spans_by_resource_and_scope(spans, resource),
        };
        let body = request.encode_to_vec();
        bytes += body.len();
        drop((request, body));
        spent += t.elapsed();
    }
    let n = (BATCHES * BATCH) as f64;
    (spent.as_secs_f64() * 1e6 / n, bytes / (BATCHES * BATCH))
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .map_or(3, |r| r.parse().expect("ROUNDS: a number"));
    let resource = opentelemetry_sdk::Resource::builder()
        .with_service_name("pynomaly-api")
        .build();
    let resource = ResourceAttributesWithSchema::from(&resource);
    for round in 1..=rounds {
        for (label, shape) in [
            ("now (6 attributes)", Shape::Now),
            ("before (8)", Shape::Before),
        ] {
            let (us, bytes) = run(shape, &resource);
            println!(
                "round {round}: {label}: {us:.3} µs a span to convert, encode and free; {bytes} bytes a span"
            );
        }
    }
}
