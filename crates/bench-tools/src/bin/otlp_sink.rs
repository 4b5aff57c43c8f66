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
//! The HTTP/1.1 it speaks is what the OTLP exporter's client sends: keep-alive requests
//! with a `Content-Length` (a chunked body gets 411 and the connection is closed).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
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
/// Largest request or header line accepted.
const MAX_LINE: usize = 8 << 10;

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

/// A request's head: what the sink needs of it.
struct Head {
    method: String,
    path: String,
    content_type: Option<String>,
    content_length: usize,
    chunked: bool,
    close: bool,
}

/// Reads one line (without its CRLF) of at most [`MAX_LINE`] bytes; `None` at the end of
/// the stream.
fn read_line(r: &mut impl BufRead) -> std::io::Result<Option<String>> {
    let mut buf = Vec::new();
    let n = r.take(MAX_LINE as u64).read_until(b'\n', &mut buf)?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() != Some(&b'\n') {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "line too long or truncated",
        ));
    }
    while matches!(buf.last(), Some(b'\n' | b'\r')) {
        buf.pop();
    }
    Ok(Some(String::from_utf8_lossy(&buf).into_owned()))
}

fn read_head(r: &mut impl BufRead) -> std::io::Result<Option<Head>> {
    let Some(request_line) = read_line(r)? else {
        return Ok(None);
    };
    let mut parts = request_line.split_ascii_whitespace();
    let mut head = Head {
        method: parts.next().unwrap_or_default().to_string(),
        path: parts.next().unwrap_or_default().to_string(),
        content_type: None,
        content_length: 0,
        chunked: false,
        close: false,
    };
    loop {
        let Some(line) = read_line(r)? else {
            return Ok(None);
        };
        if line.is_empty() {
            return Ok(Some(head));
        }
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        match name.trim().to_ascii_lowercase().as_str() {
            "content-type" => head.content_type = Some(value.to_string()),
            "content-length" => {
                head.content_length = value.parse().map_err(|_| {
                    std::io::Error::new(std::io::ErrorKind::InvalidData, "bad Content-Length")
                })?;
            }
            "transfer-encoding" => head.chunked = value.to_ascii_lowercase().contains("chunked"),
            "connection" => head.close = value.eq_ignore_ascii_case("close"),
            _ => {}
        }
    }
}

fn respond(
    w: &mut impl Write,
    status: &str,
    content_type: &str,
    body: &[u8],
) -> std::io::Result<()> {
    write!(
        w,
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )?;
    w.write_all(body)?;
    w.flush()
}

fn serve(stream: TcpStream, received: &Mutex<Received>) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let mut writer = stream.try_clone()?;
    let mut reader = BufReader::with_capacity(256 << 10, stream);
    while let Some(head) = read_head(&mut reader)? {
        if head.chunked {
            respond(&mut writer, "411 Length Required", "text/plain", b"")?;
            return Ok(());
        }
        if head.content_length > MAX_BODY {
            respond(&mut writer, "413 Payload Too Large", "text/plain", b"")?;
            return Ok(());
        }
        let mut body = vec![0; head.content_length];
        reader.read_exact(&mut body)?;
        match (head.method.as_str(), head.path.as_str()) {
            ("POST", "/v1/traces") => {
                let ok = head.content_type.as_deref() == Some("application/x-protobuf");
                {
                    let mut r = received.lock().unwrap_or_else(|e| e.into_inner());
                    r.requests += 1;
                    r.bytes += body.len() as u64;
                    if ok {
                        r.bodies.push(body);
                    } else {
                        r.rejected += 1;
                    }
                }
                let status = if ok { "200 OK" } else { "400 Bad Request" };
                respond(&mut writer, status, "application/x-protobuf", b"")?;
            }
            ("GET", "/stats") => {
                let stats = {
                    let mut r = received.lock().unwrap_or_else(|e| e.into_inner());
                    r.decode();
                    json!({
                        "requests": r.requests,
                        "bytes": r.bytes,
                        "spans": r.spans,
                        "rejected": r.rejected,
                        "invalid_spans": r.invalid_spans,
                    })
                };
                respond(
                    &mut writer,
                    "200 OK",
                    "application/json",
                    stats.to_string().as_bytes(),
                )?;
            }
            _ => {
                received.lock().unwrap_or_else(|e| e.into_inner()).rejected += 1;
                respond(&mut writer, "400 Bad Request", "text/plain", b"")?;
            }
        }
        if head.close {
            return Ok(());
        }
    }
    Ok(())
}

/// Serves connections on `listener` (a thread each) until the process ends.
fn run(listener: TcpListener, received: Arc<Mutex<Received>>) {
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let received = Arc::clone(&received);
        std::thread::spawn(move || {
            // A broken connection ends only itself.
            let _ = serve(stream, &received);
        });
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    let listener = TcpListener::bind(("127.0.0.1", args.port))
        .with_context(|| format!("cannot listen on 127.0.0.1:{}", args.port))?;
    println!("otlp sink on http://127.0.0.1:{}/v1/traces", args.port);
    run(listener, Arc::new(Mutex::new(Received::default())));
    Ok(())
}

#[cfg(test)]
mod tests {
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
