//! Events in, alerts and dead letters out: the message formats.
//!
//! An event is a JSON object. Its alert is the message the Python streaming loop ML
//! engineers use writes (`bench/seed_stream_loop.py` reproduces that loop):
//!
//! ```json
//! {"timestamp": "...", "original_data": {...}, "is_anomaly": true,
//!  "anomaly_score": 0.71, "confidence": 0.62,
//!  "metadata": {"algorithm": "isolation_forest", "model_version": 3,
//!               "processing_time_ms": 1.8}}
//! ```
//!
//! With `--explain`, `metadata` also has `explanation`, the event's top features:
//! `[{"feature": "temp", "contribution": 0.83}, …]` (named by the feature paths, else
//! `x0`, `x1`, …; shares of its anomaly as `detect_core::explain` defines them).
//!
//! keyed by the event's id field ([`EventFields`], `id` by default: a string, or a number
//! written as text; the broker message's own key when the event has none). `timestamp` is
//! the event's own timestamp field (`timestamp` by default)
//! when it has one (the Python loop copies it), else the time the alert was made (RFC 3339,
//! UTC).
//! `processing_time_ms` is the time from reading the event off the broker to making its
//! alert: queueing inside the process included, broker time excluded.
//!
//! `confidence` is how far the score lies from the model's threshold, relative to the
//! threshold: `1 − exp(−4·|score − threshold| / threshold)`, in [0, 1): 0 on the threshold,
//! about 0.86 half a threshold away (an isolation-forest score of 0.75 against 0.5), near
//! 1 far from it, on either side.
//!
//! A dead letter carries the reason, where the event came from and the payload as text:
//! `{"reason", "source", "position", "received_at", "payload"}`.
//!
//! `original_data` passes through [`original_data`], the one place where fields are to be
//! masked before they leave the process. An event the pipeline's fast path read
//! (`scan.rs`: nothing in it that masking could touch) is echoed as the text it came
//! in (`write_alert_echo`): the same JSON value, in the producer's key order and spelling
//! rather than serde_json's (sorted keys, `1000.0` for `1e3`).

use std::borrow::Cow;

use serde::Serialize;
use serde_json::{Map, Value};

/// The event fields that are an alert's metadata, not features: the one whose value keys
/// the alert (`id` unless `--id-field` says otherwise) and the one copied as its
/// `timestamp` (`timestamp` unless `--timestamp-field`). Top-level fields only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventFields {
    pub id: String,
    pub timestamp: String,
}

impl Default for EventFields {
    fn default() -> Self {
        Self {
            id: "id".into(),
            timestamp: "timestamp".into(),
        }
    }
}

impl EventFields {
    /// Whether the top-level field `name` is one of them.
    pub fn contains(&self, name: &str) -> bool {
        name == self.id || name == self.timestamp
    }
}

/// A message to write to a stream or topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutMessage {
    pub key: Option<String>,
    pub payload: Vec<u8>,
}

/// What goes into `original_data`. Every alert's copy of the event passes through here:
/// with `privacy` (the pipeline's, from the `PYNOMALY_PII_*` settings), personal data is
/// masked (or hashed) first, so an alert never echoes it; the event is copied only when
/// something was masked.
pub fn original_data<'e>(
    privacy: Option<&pynomaly_privacy::Privacy>,
    event: &'e Map<String, Value>,
) -> Cow<'e, Map<String, Value>> {
    let Some(privacy) = privacy else {
        return Cow::Borrowed(event);
    };
    // Checked first without a copy: most events have nothing to hide.
    if !privacy.object_needs_masking(event) {
        return Cow::Borrowed(event);
    }
    let mut copy = Value::Object(event.clone());
    if privacy.mask_json(&mut copy) == 0 {
        return Cow::Borrowed(event);
    }
    match copy {
        Value::Object(masked) => Cow::Owned(masked),
        _ => Cow::Borrowed(event),
    }
}

/// The alert key: the event's id field, else the broker message's key.
pub fn event_key(
    event: &Map<String, Value>,
    fields: &EventFields,
    message_key: Option<&str>,
) -> Option<String> {
    match event.get(&fields.id) {
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => message_key.map(str::to_string),
    }
}

/// `1 − exp(−4·|score − threshold| / threshold)`; see the module docs.
pub fn confidence(score: f64, threshold: f64) -> f64 {
    let scale = if threshold > 0.0 { threshold } else { 1.0 };
    let c = 1.0 - (-4.0 * (score - threshold).abs() / scale).exp();
    if c.is_finite() {
        c.clamp(0.0, 1.0)
    } else {
        0.0
    }
}

#[derive(Serialize)]
struct Alert<'a> {
    timestamp: &'a Value,
    original_data: &'a Map<String, Value>,
    is_anomaly: bool,
    anomaly_score: f64,
    confidence: f64,
    metadata: AlertMetadata<'a>,
}

#[derive(Serialize)]
struct AlertMetadata<'a> {
    algorithm: &'a str,
    model_version: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    explanation: Option<Explanation<'a>>,
    processing_time_ms: f64,
}

/// With `--explain`: the event's top features, most responsible first, as
/// `[{"feature", "contribution"}]` (shares of its anomaly; see `detect_core::explain`).
#[derive(Debug, Clone, Copy)]
pub struct Explanation<'a> {
    pub top: &'a [detect_core::FeatureContribution],
    /// The name of every feature, by index.
    pub names: &'a [String],
}

impl Serialize for Explanation<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeSeq;
        #[derive(Serialize)]
        struct Named<'a> {
            feature: &'a str,
            contribution: f64,
        }
        let mut seq = s.serialize_seq(Some(self.top.len()))?;
        for c in self.top {
            seq.serialize_element(&Named {
                feature: &self.names[c.feature],
                contribution: c.contribution,
            })?;
        }
        seq.end()
    }
}

/// What the model said about one event.
#[derive(Debug, Clone, Copy)]
pub struct Verdict<'a> {
    pub score: f64,
    pub threshold: f64,
    pub algorithm: &'a str,
    pub model_version: i64,
    pub processing_time_ms: f64,
    /// With `--explain`: the event's top features.
    pub explanation: Option<Explanation<'a>>,
}

/// The alert for `event`, appended to `out` as JSON, its `original_data` masked with
/// `privacy` ([`original_data`]).
pub fn write_alert(
    privacy: Option<&pynomaly_privacy::Privacy>,
    fields: &EventFields,
    event: &Map<String, Value>,
    verdict: &Verdict<'_>,
    now: &Value,
    out: &mut Vec<u8>,
) {
    let original = original_data(privacy, event);
    let alert = Alert {
        timestamp: event.get(&fields.timestamp).unwrap_or(now),
        original_data: &original,
        is_anomaly: verdict.score > verdict.threshold,
        anomaly_score: verdict.score,
        confidence: confidence(verdict.score, verdict.threshold),
        metadata: AlertMetadata {
            algorithm: verdict.algorithm,
            model_version: verdict.model_version,
            explanation: verdict.explanation,
            processing_time_ms: verdict.processing_time_ms,
        },
    };
    // Serializing plain maps, strings and finite numbers into a Vec cannot fail.
    if serde_json::to_writer(out, &alert).is_err() {
        tracing::error!("alert serialization failed");
    }
}

/// The alert of an event that needs no masking, its `original_data` the event's own text
/// (`event_json`, valid JSON the caller has parsed): the bytes [`write_alert`] writes for
/// it, except that `original_data` keeps the producer's key order, spacing and number and
/// string spelling instead of serde_json's (the same JSON value). `timestamp_json` is the
/// event's `timestamp` field as JSON, or the time now.
pub(crate) fn write_alert_echo(
    event_json: &[u8],
    timestamp_json: &[u8],
    verdict: &Verdict<'_>,
    out: &mut Vec<u8>,
) {
    // Field for field as `Alert` derives it; scalars through serde_json, so numbers and
    // strings are spelled as `write_alert` spells them (non-finite scores as null).
    out.extend_from_slice(b"{\"timestamp\":");
    out.extend_from_slice(timestamp_json);
    out.extend_from_slice(b",\"original_data\":");
    out.extend_from_slice(event_json);
    out.extend_from_slice(b",\"is_anomaly\":");
    scalar(out, &(verdict.score > verdict.threshold));
    out.extend_from_slice(b",\"anomaly_score\":");
    scalar(out, &verdict.score);
    out.extend_from_slice(b",\"confidence\":");
    scalar(out, &confidence(verdict.score, verdict.threshold));
    out.extend_from_slice(b",\"metadata\":{\"algorithm\":");
    scalar(out, verdict.algorithm);
    out.extend_from_slice(b",\"model_version\":");
    scalar(out, &verdict.model_version);
    if let Some(explanation) = &verdict.explanation {
        out.extend_from_slice(b",\"explanation\":");
        scalar(out, explanation);
    }
    out.extend_from_slice(b",\"processing_time_ms\":");
    scalar(out, &verdict.processing_time_ms);
    out.extend_from_slice(b"}}");
}

/// A boolean, number or string as serde_json writes it.
fn scalar<T: Serialize + ?Sized>(out: &mut Vec<u8>, v: &T) {
    // Into a Vec, and non-finite floats written as null: cannot fail.
    if serde_json::to_writer(out, v).is_err() {
        tracing::error!("alert serialization failed");
    }
}

#[derive(Serialize)]
struct DeadLetter<'a> {
    reason: &'a str,
    source: &'a str,
    position: &'a str,
    received_at: &'a str,
    payload: Cow<'a, str>,
}

/// The dead letter for an unusable event.
pub fn dead_letter(
    reason: &str,
    source: &str,
    position: &str,
    received_at: &str,
    payload: &[u8],
) -> Vec<u8> {
    let letter = DeadLetter {
        reason,
        source,
        position,
        received_at,
        payload: String::from_utf8_lossy(payload),
    };
    serde_json::to_vec(&letter).unwrap_or_default()
}

/// The current time as the RFC 3339 JSON string used for `timestamp` and `received_at`.
pub fn now_rfc3339() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pynomaly_privacy::{Privacy, PrivacyConfig};
    use serde_json::json;

    /// The alert [`write_alert`] writes into `out`, with the default event fields and
    /// `now` for a time, parsed back.
    fn alert_json(
        privacy: Option<&Privacy>,
        event: &Map<String, Value>,
        verdict: &Verdict<'_>,
        out: &mut Vec<u8>,
    ) -> Value {
        out.clear();
        write_alert(
            privacy,
            &EventFields::default(),
            event,
            verdict,
            &json!("now"),
            out,
        );
        serde_json::from_slice(out).unwrap()
    }

    #[test]
    fn an_alert_has_the_python_loops_fields_and_the_events_timestamp() {
        let event = json!({"id": 7, "timestamp": "2026-01-01T00:00:00Z", "temp": 99.0});
        let event = event.as_object().unwrap();
        let mut out = Vec::new();
        let verdict = Verdict {
            score: 0.75,
            threshold: 0.5,
            algorithm: "isolation_forest",
            model_version: 3,
            processing_time_ms: 1.5,
            explanation: None,
        };
        let alert = alert_json(None, event, &verdict, &mut out);
        assert_eq!(alert["timestamp"], "2026-01-01T00:00:00Z");
        assert_eq!(alert["original_data"], json!(event));
        assert_eq!(alert["is_anomaly"], true);
        assert_eq!(alert["anomaly_score"], 0.75);
        assert!((alert["confidence"].as_f64().unwrap() - 0.8647).abs() < 1e-3);
        assert_eq!(
            alert["metadata"],
            json!({"algorithm": "isolation_forest", "model_version": 3, "processing_time_ms": 1.5})
        );
        assert_eq!(
            event_key(event, &EventFields::default(), None).as_deref(),
            Some("7")
        );
    }

    #[test]
    fn confidence_is_zero_on_the_threshold_and_grows_on_both_sides() {
        assert_eq!(confidence(0.5, 0.5), 0.0);
        assert!(confidence(0.4, 0.5) > 0.5 && confidence(0.4, 0.5) < confidence(0.3, 0.5));
        assert!(confidence(0.9, 0.5) > confidence(0.7, 0.5));
        assert!(confidence(1e308, 0.5) <= 1.0);
    }

    #[test]
    fn events_without_an_id_are_keyed_by_the_message_key() {
        let event = json!({"temp": 1});
        assert_eq!(
            event_key(
                event.as_object().unwrap(),
                &EventFields::default(),
                Some("k")
            )
            .as_deref(),
            Some("k")
        );
        assert_eq!(
            event_key(event.as_object().unwrap(), &EventFields::default(), None),
            None
        );
    }

    #[test]
    fn alerts_mask_configured_fields_and_detected_personal_data() {
        let config = PrivacyConfig {
            fields: vec!["owner".into()],
            ..PrivacyConfig::default()
        };
        let privacy = Privacy::new(&config, [7; 32]);
        let privacy = Some(&privacy);
        let event = json!({
            "id": "e1", "temp": 21.5, "owner": "Jane Roe",
            "meta": {"contact": "jane@example.com", "note": "card 4111 1111 1111 1111"}
        });
        let event = event.as_object().unwrap();
        let masked = original_data(privacy, event);
        let text = serde_json::to_string(&*masked).unwrap();
        for secret in ["Jane Roe", "jane@example.com", "4111 1111 1111 1111"] {
            assert!(!text.contains(secret), "{secret} echoed in {text}");
        }
        assert_eq!(masked["temp"], json!(21.5));
        assert_eq!(masked["id"], json!("e1"));
        // The whole alert, as written to the sink.
        let verdict = Verdict {
            score: 0.7,
            threshold: 0.5,
            algorithm: "isolation_forest",
            model_version: 1,
            processing_time_ms: 0.1,
            explanation: None,
        };
        let mut out = Vec::new();
        let alert = alert_json(privacy, event, &verdict, &mut out);
        assert!(!alert.to_string().contains("jane@example.com"), "{alert}");
        assert_eq!(alert["original_data"]["temp"], json!(21.5));
        // An event without personal data is passed through as it is.
        let clean = json!({"id": "e2", "temp": 1.0});
        assert_eq!(
            *original_data(privacy, clean.as_object().unwrap()),
            *clean.as_object().unwrap()
        );
    }
}
