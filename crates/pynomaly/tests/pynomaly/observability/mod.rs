//! Observability, against the real binary and real receivers:
//!
//! - `traces`: `pynomaly serve` (and `pynomaly worker`, with Redis and Postgres) export
//!   their spans over OTLP/HTTP to a receiver in the test that decodes the protobuf
//!   `ExportTraceServiceRequest`; the test checks span names, attributes, parent links,
//!   that a batch job's spans continue the submitting request's trace (also across
//!   processes), and that log lines carry the trace and span ids.
//! - `prometheus`: a real `prometheus` scrapes the service and a worker; every query of
//!   the Grafana dashboard and every alerting rule's expression must return data
//!   (ignored by default: `.ci/run` runs it, as it needs the `prometheus` binary).

mod prometheus;
mod traces;

use testkit::data::{csv, wave};

/// `rows` rows of two features ([`wave`]), with a header, and a far outlier every 50 rows.
fn csv_with_outliers(rows: usize) -> String {
    let row = |i: usize| {
        if i % 50 == 49 { [40.0, -40.0] } else { wave(i) }
    };
    csv(&["x", "y"], (0..rows).map(row))
}
