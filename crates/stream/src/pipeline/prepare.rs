//! Events parsed into feature rows: by the fast path of `scan` where it applies (no `Value`
//! tree; the alert will echo the event's text), else by the `Value` path. An event that
//! cannot be scored becomes a dead letter here.

use pynomaly_privacy::Privacy;
use serde_json::{Map, Value};

use super::PipelineConfig;
use crate::broker::Record;
use crate::features;
use crate::scan::{EchoParts, Scanner};

/// One event after parsing.
pub(super) enum Prep {
    /// Parsed into a `Value`, with its features at row `row` of `rows`.
    Event {
        event: Map<String, Value>,
        row: usize,
    },
    /// Scanned by the fast path: nothing to mask, its alert echoes its text.
    Echo {
        parts: EchoParts,
        row: usize,
    },
    Dead(String),
}

/// How [`prepare`] parses events: [`Parse::Value`] only in tests and benchmarks, which
/// compare the two.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Parse {
    /// The fast path where it applies, else the `Value` path.
    Fast,
    /// Always the `Value` path.
    #[cfg_attr(not(test), allow(dead_code))]
    Value,
}

/// A parsed batch: events, and the feature rows of those that can be scored.
pub(super) struct Prepared {
    pub(super) records: Vec<Record>,
    pub(super) preps: Vec<Prep>,
    pub(super) rows: Vec<f64>,
    pub(super) nf: usize,
    /// The alert keys of echoed events ([`EchoParts::key`]).
    pub(super) keys: String,
    /// The `timestamp` fields of echoed events as JSON ([`EchoParts::timestamp`]).
    pub(super) stamps: Vec<u8>,
}

pub(super) fn prepare(
    records: Vec<Record>,
    config: &PipelineConfig,
    expected: Option<usize>,
    privacy: Option<&Privacy>,
    parse: Parse,
) -> Prepared {
    let mut preps = Vec::with_capacity(records.len());
    let mut rows = Vec::with_capacity(records.len() * expected.unwrap_or(8));
    let mut nf = expected;
    let mut n_rows = 0;
    let mut buf = Vec::new();
    let mut scanner = Scanner::new(privacy, &config.fields);
    // The event's width against the model's (or the batch's first event's).
    let mut accept = |features: &[f64], rows: &mut Vec<f64>| -> Result<usize, String> {
        let width = *nf.get_or_insert(features.len());
        if features.len() != width {
            return Err(format!(
                "the event has {} features; the model expects {width}",
                features.len()
            ));
        }
        rows.extend_from_slice(features);
        n_rows += 1;
        Ok(n_rows - 1)
    };
    for r in &records {
        let payload = match &r.payload {
            Ok(p) => p,
            Err(reason) => {
                preps.push(Prep::Dead(reason.clone()));
                continue;
            }
        };
        if parse == Parse::Fast
            && let Some((event, parts)) = scanner.scan(payload)
            && features::extract_scanned(&config.features, &config.fields, &event, &mut buf)
        {
            preps.push(match accept(&buf, &mut rows) {
                Ok(row) => Prep::Echo { parts, row },
                Err(reason) => Prep::Dead(reason),
            });
            continue;
        }
        let event: Map<String, Value> = match serde_json::from_slice(payload) {
            Ok(e) => e,
            Err(e) => {
                preps.push(Prep::Dead(format!("not a JSON object: {e}")));
                continue;
            }
        };
        if let Err(e) = config.features.extract(&event, &config.fields, &mut buf) {
            preps.push(Prep::Dead(e.to_string()));
            continue;
        }
        preps.push(match accept(&buf, &mut rows) {
            Ok(row) => Prep::Event { event, row },
            Err(reason) => Prep::Dead(reason),
        });
    }
    let (keys, stamps) = scanner.into_text();
    Prepared {
        records,
        preps,
        rows,
        nf: nf.unwrap_or(0),
        keys,
        stamps,
    }
}
