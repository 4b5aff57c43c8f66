//! `otlp-sink`: a small local OTLP/HTTP trace receiver for `bench/tracing_bench.sh`, in
//! place of `bench/otlp_sink.py` (`SINK=rust`).
//!
//! ```text
//! cargo build --release -p bench-tools --bin otlp-sink
//! otlp-sink --port 4318        # POST /v1/traces (protobuf) -> 200; GET /stats -> JSON counts
//! ```
//!
//! It answers `POST /v1/traces` with `Content-Type: application/x-protobuf` like a
//! collector (200, an empty `ExportTraceServiceResponse`) and keeps the bodies; anything
//! else gets 400 and counts as rejected. `GET /stats` decodes every body kept so far with
//! `opentelemetry-proto` (`ExportTraceServiceRequest`) and answers
//! `{"requests", "bytes", "spans", "rejected", "invalid_spans"}` (the Python sink's
//! fields, plus the spans whose trace or span id has the wrong length or whose name is
//! empty). Bodies are decoded then, not as they arrive, for the same reason as the Python
//! sink's: during a benchmark the receiver's CPU is only reading the requests, the least a
//! collector does, and the service under test is charged as little of it as possible.
//!
//! HTTP is axum's, on one thread (a current-thread tokio runtime): the receiver stays
//! as light as the Python one is meant to be.

use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use clap::Parser;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use serde_json::json;

#[derive(Debug, Parser)]
#[command(about = "A local OTLP/HTTP (protobuf) trace receiver that counts the spans it gets")]
struct Args {
    /// Port on 127.0.0.1.
    #[arg(long, default_value_t = 4318)]
    port: u16,
}

/// Largest body accepted (the exporter's batches are far smaller).
const MAX_BODY: usize = 64 << 20;

#[derive(Debug, Default)]
struct Received {
    requests: u64,
    bytes: u64,
    rejected: u64,
    /// Bodies not decoded yet.
    bodies: Vec<Vec<u8>>,
    /// Counts of the bodies already decoded.
    spans: u64,
    invalid_spans: u64,
}

impl Received {
    /// Decodes the bodies kept so far into the counts.
    fn decode(&mut self) {
        for body in std::mem::take(&mut self.bodies) {
            match ExportTraceServiceRequest::decode(body.as_slice()) {
                Ok(req) => {
                    for span in req
                        .resource_spans
                        .iter()
                        .flat_map(|r| &r.scope_spans)
                        .flat_map(|s| &s.spans)
                    {
                        self.spans += 1;
                        if span.trace_id.len() != 16
                            || span.span_id.len() != 8
                            || span.name.is_empty()
                        {
                            self.invalid_spans += 1;
                        }
                    }
                }
                Err(_) => self.rejected += 1,
            }
        }
    }
}

type Shared = Arc<Mutex<Received>>;

fn lock(received: &Shared) -> std::sync::MutexGuard<'_, Received> {
    received.lock().unwrap_or_else(|e| e.into_inner())
}

/// `POST /v1/traces`: kept when it is protobuf, counted as rejected otherwise.
async fn traces(
    State(received): State<Shared>,
    headers: header::HeaderMap,
    body: Bytes,
) -> Response {
    let ok = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        == Some("application/x-protobuf");
    {
        let mut r = lock(&received);
        r.requests += 1;
        r.bytes += body.len() as u64;
        if ok {
            r.bodies.push(body.to_vec());
        } else {
            r.rejected += 1;
        }
    }
    let status = if ok {
        StatusCode::OK
    } else {
        StatusCode::BAD_REQUEST
    };
    (status, [(header::CONTENT_TYPE, "application/x-protobuf")]).into_response()
}

/// `GET /stats`: decodes what was kept and answers the counts.
async fn stats(State(received): State<Shared>) -> Response {
    let mut r = lock(&received);
    r.decode();
    axum::Json(json!({
        "requests": r.requests,
        "bytes": r.bytes,
        "spans": r.spans,
        "rejected": r.rejected,
        "invalid_spans": r.invalid_spans,
    }))
    .into_response()
}

/// Anything else: 400, counted as rejected.
async fn other(State(received): State<Shared>) -> StatusCode {
    lock(&received).rejected += 1;
    StatusCode::BAD_REQUEST
}

/// Serves `listener` on the calling thread until the process ends.
fn run(listener: TcpListener, received: Shared) -> Result<()> {
    let app = Router::new()
        .route("/v1/traces", post(traces))
        .route("/stats", get(stats))
        .fallback(other)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(received);
    listener.set_nonblocking(true)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)?;
        axum::serve(listener, app).await
    })?;
    Ok(())
}

fn main() -> Result<()> {
    let args = Args::parse();
    let listener = TcpListener::bind(("127.0.0.1", args.port))
        .with_context(|| format!("cannot listen on 127.0.0.1:{}", args.port))?;
    println!("otlp sink on http://127.0.0.1:{}/v1/traces", args.port);
    run(listener, Arc::new(Mutex::new(Received::default())))
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpStream;

    use super::*;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

    fn body(spans: &[(&[u8], &[u8], &str)]) -> Vec<u8> {
        let spans = spans
            .iter()
            .map(|(trace_id, span_id, name)| Span {
                trace_id: trace_id.to_vec(),
                span_id: span_id.to_vec(),
                name: (*name).to_string(),
                ..Span::default()
            })
            .collect();
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans,
                    ..ScopeSpans::default()
                }],
                ..ResourceSpans::default()
            }],
        }
        .encode_to_vec()
    }

    fn post(path: &str, content_type: &str, body: &[u8]) -> Vec<u8> {
        let mut req = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        req.extend_from_slice(body);
        req
    }

    /// Sends `requests` on one keep-alive connection, then asks for the stats.
    fn exchange(requests: &[Vec<u8>]) -> (String, serde_json::Value) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || run(listener, Arc::new(Mutex::new(Received::default()))));
        let mut conn = TcpStream::connect(addr).unwrap();
        for r in requests {
            conn.write_all(r).unwrap();
        }
        conn.write_all(b"GET /stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut answer = String::new();
        conn.read_to_string(&mut answer).unwrap();
        let stats = answer.rsplit("\r\n\r\n").next().unwrap();
        let stats = serde_json::from_str(stats).unwrap();
        (answer, stats)
    }

    #[test]
    fn spans_posted_on_one_connection_are_decoded_and_counted() {
        let ids: (&[u8], &[u8]) = (&[1; 16], &[2; 8]);
        let one = body(&[(ids.0, ids.1, "POST /a")]);
        let two = body(&[(ids.0, ids.1, "POST /b"), (&[1; 3], ids.1, "bad id")]);
        let (answer, stats) = exchange(&[
            post("/v1/traces", "application/x-protobuf", &one),
            post("/v1/traces", "application/x-protobuf", &two),
        ]);
        assert_eq!(answer.matches("HTTP/1.1 200 OK").count(), 3, "{answer}");
        assert_eq!(stats["requests"], 2);
        assert_eq!(stats["spans"], 3);
        assert_eq!(stats["invalid_spans"], 1);
        assert_eq!(stats["rejected"], 0);
        assert_eq!(stats["bytes"], (one.len() + two.len()) as u64);
    }

    #[test]
    fn other_paths_types_and_undecodable_bodies_are_rejected() {
        let ok = body(&[(&[1; 16], &[2; 8], "POST /a")]);
        let (answer, stats) = exchange(&[
            post("/v1/metrics", "application/x-protobuf", &ok),
            post("/v1/traces", "application/json", b"{}"),
            post("/v1/traces", "application/x-protobuf", &[0xff, 0xff, 0xff]),
        ]);
        assert_eq!(answer.matches("400 Bad Request").count(), 2, "{answer}");
        assert_eq!(stats["spans"], 0);
        assert_eq!(stats["rejected"], 3);
    }
}
