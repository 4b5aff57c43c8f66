//! The fast path against the `Value` path: the same features, alerts and dead letters.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pynomaly_privacy::Privacy;
use serde_json::{Map, Value, json};

use super::super::PipelineConfig;
use super::super::prepare::{Parse, Prep, prepare};
use super::super::render::{score_and_render, score_and_render_at};
use super::super::write::Processed;
use crate::alert::OutMessage;
use crate::broker::{Position, Record};
use crate::features::Features;
use crate::model::ActiveModel;
use detect_core::DetectorConfig;

/// An isolation forest over `nf` features (`trees` trees, fitted on `rows` rows).
fn forest(nf: usize, rows: usize, trees: usize) -> ActiveModel {
    let config = DetectorConfig::from_json(
        "isolation_forest",
        json!({"random_state": 0, "n_estimators": trees})
            .as_object()
            .unwrap(),
        &json!("auto"),
    )
    .unwrap();
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let x = ndarray::Array2::from_shape_fn((rows, nf), |_| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64
    });
    ActiveModel {
        model: Arc::new(detect_core::fit(&config, x.view()).unwrap().model),
        version: 4,
    }
}

fn keyed(i: usize, payload: &[u8]) -> Record {
    Record {
        key: Some(format!("message-{i}")),
        payload: Ok(payload.to_vec()),
        position: Position::Redis(format!("{i}-0")),
        received: Instant::now(),
    }
}

fn config_with(features: Features) -> PipelineConfig {
    PipelineConfig {
        fields: crate::alert::EventFields::default(),
        features,
        only_anomalies: false,
        batch_size: 100,
        queue_batches: 1,
        source_name: "redis://test/events".into(),
        drain_timeout: Duration::from_secs(1),
        traces: false,
        privacy: None,
        explain: None,
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The alert without its processing time (the last field: the rest is the number and
/// `}}`), checked to be there.
fn without_time(alert: &[u8]) -> &[u8] {
    let at = find(alert, br#","processing_time_ms":"#).expect("processing_time_ms");
    assert!(alert.ends_with(b"}}"), "{}", String::from_utf8_lossy(alert));
    &alert[..at]
}

/// `fast` is `value` but for the processing time and, when the fast path echoed the
/// event, `original_data` spelled as the message was instead of as serde_json writes
/// the parsed event: byte for byte, and the same JSON value.
fn assert_same_alert(fast: &[u8], value: &[u8], message: &[u8], echoed: bool) {
    let (f, v) = (without_time(fast), without_time(value));
    let expected = if echoed {
        let parsed: Map<String, Value> = serde_json::from_slice(message).unwrap();
        let mut canonical = br#""original_data":"#.to_vec();
        canonical.extend(serde_json::to_vec(&parsed).unwrap());
        canonical.extend(br#","is_anomaly":"#);
        let at = find(v, &canonical).expect("the Value path's original_data");
        let mut expected = v[..at].to_vec();
        expected.extend(br#""original_data":"#);
        expected.extend(message.trim_ascii());
        expected.extend(br#","is_anomaly":"#);
        expected.extend(&v[at + canonical.len()..]);
        expected
    } else {
        v.to_vec()
    };
    assert_eq!(
        String::from_utf8_lossy(f),
        String::from_utf8_lossy(&expected),
        "message {}",
        String::from_utf8_lossy(message)
    );
    let parse = |a: &[u8]| {
        let mut a: Value = serde_json::from_slice(a).unwrap();
        let t = a["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("processing_time_ms");
        assert!(t.is_some_and(|t| t.is_f64()));
        a
    };
    assert_eq!(parse(fast), parse(value));
}

const NOW: &str = "2026-11-27T01:02:03.456Z";

fn dead_letter_fields(letter: &[u8]) -> Value {
    serde_json::from_slice(letter).unwrap()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    /// Scanned, the alert echoes the text.
    Fast,
    /// The `Value` path, with an alert.
    Value,
    /// A dead letter (by the `Value` path).
    Dead,
}

/// Runs `message` through both parse modes and checks they agree (features, alert or
/// dead letter) and that the fast mode took `route`; returns the features and the
/// fast mode's alert or dead letter.
fn check(
    features: &Features,
    privacy: Option<&Privacy>,
    message: &[u8],
    route: Route,
) -> (Vec<f64>, Option<OutMessage>) {
    let config = config_with(features.clone());
    let records = vec![keyed(0, message)];
    let fast = prepare(records.clone(), &config, None, privacy, Parse::Fast);
    let value = prepare(records, &config, None, privacy, Parse::Value);
    let shown = String::from_utf8_lossy(message).into_owned();
    assert_eq!(fast.rows, value.rows, "{shown}");
    assert_eq!(fast.nf, value.nf, "{shown}");
    let taken = match &fast.preps[0] {
        Prep::Echo { .. } => Route::Fast,
        Prep::Event { .. } => Route::Value,
        Prep::Dead(_) => Route::Dead,
    };
    assert_eq!(taken, route, "{shown}");
    assert!(matches!(
        (&fast.preps[0], &value.preps[0]),
        (Prep::Echo { .. } | Prep::Event { .. }, Prep::Event { .. })
            | (Prep::Dead(_), Prep::Dead(_))
    ));
    if let (Prep::Dead(a), Prep::Dead(b)) = (&fast.preps[0], &value.preps[0]) {
        assert_eq!(a, b, "{shown}");
    }
    let rows = fast.rows.clone();
    let model = forest(fast.nf.max(1), 40, 5);
    let f = score_and_render_at(fast, &model, &config, privacy, NOW.into());
    let v = score_and_render_at(value, &model, &config, privacy, NOW.into());
    assert_eq!(f.anomalies, v.anomalies);
    assert_eq!(f.positions, v.positions);
    assert_eq!(f.alerts.len(), v.alerts.len());
    assert_eq!(f.dead.len(), v.dead.len());
    for (a, b) in f.alerts.iter().zip(&v.alerts) {
        assert_eq!(a.key, b.key, "{shown}");
        assert_same_alert(&a.payload, &b.payload, message, route == Route::Fast);
    }
    assert_eq!(f.dead, v.dead, "{shown}");
    (rows, f.alerts.into_iter().chain(f.dead).next())
}

const BENCH_EVENT: &str = r#"{"id":"ev-7","timestamp":"2026-11-26T12:00:00Z","sensor":{"f0":0.1234,"f1":0.5,"f2":0.25,"f3":8.75,"f4":0.0001},"f5":0.6,"f6":0.7,"f7":0.8,"f8":0.9,"f9":1.0,"site":"plant-3"}"#;

#[test]
fn the_fast_path_gives_the_value_paths_features_and_alerts() {
    use Route::{Dead, Fast, Value};
    let all = Features::AllNumeric;
    let cases: &[(&[u8], Route, &[f64])] = &[
        // Nested objects, keys in the producer's order: sorted features, echoed text.
        (
            BENCH_EVENT.as_bytes(),
            Fast,
            // f5..f9, then sensor.f0..f4: keys sorted ("f5" < "sensor").
            &[0.6, 0.7, 0.8, 0.9, 1.0, 0.1234, 0.5, 0.25, 8.75, 0.0001],
        ),
        (
            br#"{"b":1,"a":2,"c":{"y":3,"x":4,"z":{}}}"#,
            Fast,
            &[2.0, 1.0, 4.0, 3.0],
        ),
        // Already as serde_json writes it: the alerts are equal byte for byte.
        (
            br#"{"a":1,"b":{"c":2.5},"id":"x","timestamp":"t"}"#,
            Fast,
            &[1.0, 2.5],
        ),
        // Integers, floats, exponents, beyond u64, negative zero.
        (
            br#"{"i":-12,"u":18446744073709551615,"f":1.5e3,"g":-0.0,"h":1E-7,"big":123456789012345678901234567890,"z":0,"w":-9223372036854775808}"#,
            Fast,
            &[
                1.2345678901234568e29,
                1.5e3,
                -0.0,
                1e-7,
                -12.0,
                18446744073709551615.0,
                -9223372036854775808.0,
                0.0,
            ],
        ),
        // Escapes in strings and keys, unicode keys and values.
        (
            br#"{"id":"a\"b\u00e9\n","note":"tab\t\u2028 \ud83d\ude00","k\u0065y":1,"key2":2}"#,
            Fast,
            &[1.0, 2.0],
        ),
        (
            "{\"名前\":\"値\",\"v\":1,\"ünï\":{\"x\":2},\"é\":3}".as_bytes(),
            Fast,
            &[1.0, 3.0, 2.0],
        ),
        // Whitespace inside is echoed, around it trimmed.
        (b" {\"a\" : 1 ,\n \"b\":{ \"c\" : 2 } }\r\n", Fast, &[1.0, 2.0]),
        // Ids: numbers as text, other types give the message key; timestamps copied. Neither
        // is a feature, whatever its type (a nested `id` or `timestamp` is).
        (br#"{"id":42,"v":1}"#, Fast, &[1.0]),
        (br#"{"id":4.50,"v":1,"timestamp":17326e5}"#, Fast, &[1.0]),
        (br#"{"id":true,"v":1,"timestamp":null}"#, Fast, &[1.0]),
        (
            br#"{"id":{"n":1},"v":2,"timestamp":false}"#,
            Fast,
            &[2.0],
        ),
        (br#"{"m":{"timestamp":"x","id":"y"},"v":1}"#, Fast, &[1.0]),
        // The Value path: arrays, a key twice, an object as timestamp.
        (br#"{"a":1,"tags":[1,2,{"b":3}]}"#, Value, &[1.0]),
        (br#"{"a":1,"a":2,"b":3}"#, Value, &[2.0, 3.0]),
        (br#"{"a":1,"m":{"x":1,"x":5}}"#, Value, &[1.0, 5.0]),
        (br#"{"timestamp":{"s":1},"v":1}"#, Value, &[1.0]),
        // Dead letters, with the Value path's reason.
        (br#"{"a":1,"#, Dead, &[]),
        (b"not json", Dead, &[]),
        (b"[1,2]", Dead, &[]),
        (b"null", Dead, &[]),
        (b"{}", Dead, &[]),
        (br#"{"a":"x","b":{"c":true}}"#, Dead, &[]),
        (br#"{"a":1} x"#, Dead, &[]),
        (b"{\"a\":1,\"s\":\"\xff\"}", Dead, &[]),
        (br#"{"a":1,"s":"\ud800"}"#, Dead, &[]),
        (br#"{"a":1e400}"#, Dead, &[]),
    ];
    for &(message, route, features) in cases {
        let (rows, _) = check(&all, None, message, route);
        assert_eq!(rows, features, "{}", String::from_utf8_lossy(message));
    }
    // Nested deeper than serde_json's recursion limit: the same dead letter.
    let nested = |depth: usize| format!("{}1{}", r#"{"a":"#.repeat(depth), "}".repeat(depth));
    check(&all, None, nested(200).as_bytes(), Dead);
    check(&all, None, nested(100).as_bytes(), Fast);

    // The alert key and timestamp an echoed alert carries.
    let (_, alert) = check(&all, None, br#"{"id":"e\u0031","v":1,"timestamp":3}"#, Fast);
    let alert = alert.unwrap();
    assert_eq!(alert.key.as_deref(), Some("e1"));
    assert!(
        alert
            .payload
            .starts_with(br#"{"timestamp":3,"original_data":{"id":"e\u0031","#)
    );
    let (_, alert) = check(&all, None, br#"{"v":1}"#, Fast);
    assert_eq!(alert.unwrap().key.as_deref(), Some("message-0"));
}

#[test]
fn the_fast_path_follows_explicit_feature_paths_and_leaves_their_errors_to_the_value_path() {
    use Route::{Dead, Fast};
    let paths = Features::parse_paths("v,m.x,m.deep.y").unwrap();
    let cases: &[(&[u8], Route, &[f64])] = &[
        (
            br#"{"m":{"deep":{"y":3},"x":2,"z":9},"v":1,"w":7}"#,
            Fast,
            &[1.0, 2.0, 3.0],
        ),
        (
            br#"{"v":1.5e1,"m":{"x":-2,"deep":{"y":0}}}"#,
            Fast,
            &[15.0, -2.0, 0.0],
        ),
        // Missing, not a number, not an object: dead letters naming the field.
        (br#"{"v":1}"#, Dead, &[]),
        (br#"{"v":1,"m":{"x":"2","deep":{"y":3}}}"#, Dead, &[]),
        (br#"{"v":1,"m":5}"#, Dead, &[]),
        (br#"{"v":1,"m":{"x":2,"deep":null}}"#, Dead, &[]),
        (br#"{"v":{"a":1},"m":{"x":2,"deep":{"y":3}}}"#, Dead, &[]),
    ];
    for &(message, route, features) in cases {
        let (rows, out) = check(&paths, None, message, route);
        assert_eq!(rows, features, "{}", String::from_utf8_lossy(message));
        if route == Dead {
            let letter = dead_letter_fields(&out.unwrap().payload);
            assert!(
                letter["reason"].as_str().unwrap().starts_with("feature "),
                "{letter}"
            );
        }
    }
}

#[test]
fn events_that_need_masking_take_the_value_path_and_are_masked() {
    use Route::{Fast, Value};
    let privacy = Privacy::new(
        &pynomaly_privacy::PrivacyConfig {
            fields: vec!["Owner".into()],
            ..Default::default()
        },
        [3; 32],
    )
    .with_generalization(true);
    let all = Features::AllNumeric;
    let cases: &[(&[u8], Route, Option<&str>)] = &[
        (br#"{"owner":"Jane Roe","v":1}"#, Value, Some("Jane Roe")),
        (
            br#"{"v":1,"meta":{"OWNER":"Jane Roe"}}"#,
            Value,
            Some("Jane Roe"),
        ),
        (
            br#"{"v":1,"note":"mail jane@example.com"}"#,
            Value,
            Some("jane@example.com"),
        ),
        (
            br#"{"v":1,"m":{"tel":"(555) 123-4567"}}"#,
            Value,
            Some("123-4567"),
        ),
        (br#"{"v":1,"ssn":"123-45-6789"}"#, Value, Some("123-45-6789")),
        (
            br#"{"v":1,"card":4111111111111111}"#,
            Value,
            Some("4111111111111111"),
        ),
        (br#"{"v":1,"age":41}"#, Value, Some("41")),
        (br#"{"v":1,"m":{"zip_code":"94107"}}"#, Value, Some("94107")),
        // A masked field's key with nothing in it: the Value path decides (no change).
        (br#"{"v":1,"owner":null}"#, Value, None),
        // Nothing to mask: numbers too short or not Luhn-valid, ISO timestamps.
        (
            br#"{"v":1,"n":4111111111111112,"short":411111111111,"at":"2026-11-26T12:00:00Z","id":"ev-123456"}"#,
            Fast,
            None,
        ),
        (BENCH_EVENT.as_bytes(), Fast, None),
    ];
    for &(message, route, secret) in cases {
        let (_, alert) = check(&all, Some(&privacy), message, route);
        let text = String::from_utf8(alert.unwrap().payload).unwrap();
        if let Some(secret) = secret {
            // original_data alone: the rest (processing_time_ms) may hold any digits.
            let alert: serde_json::Value = serde_json::from_str(&text).unwrap();
            let original = alert["original_data"].to_string();
            assert!(!original.contains(secret), "{secret} echoed in {text}");
        }
    }
    // The same events without masking installed take the fast path.
    check(&all, None, br#"{"owner":"Jane Roe","v":1}"#, Fast);
    check(&all, None, br#"{"v":1,"card":4111111111111111}"#, Fast);
}

#[test]
fn a_batch_mixing_both_paths_keeps_order_widths_and_dead_letters() {
    let config = config_with(Features::AllNumeric);
    let messages: [&[u8]; 6] = [
        br#"{"id":"a","x":1,"y":{"z":2}}"#,
        br#"{"id":"b","x":1,"tags":[1],"y":{"z":2}}"#,
        br#"{"id":"c","x":1}"#,
        b"{oops",
        br#"{"id":"e","y":{"z":0.5},"x":100.0}"#,
        br#"{"id":"f","x":1,"x":3,"y":{"z":2}}"#,
    ];
    let records: Vec<Record> = messages
        .iter()
        .enumerate()
        .map(|(i, m)| keyed(i, m))
        .collect();
    let model = forest(2, 60, 10);
    let run = |parse| {
        let p = prepare(records.clone(), &config, Some(2), None, parse);
        score_and_render_at(p, &model, &config, None, NOW.into())
    };
    let (f, v) = (run(Parse::Fast), run(Parse::Value));
    let keys = |p: &Processed| {
        p.alerts
            .iter()
            .map(|a| a.key.clone().unwrap())
            .collect::<Vec<_>>()
    };
    assert_eq!(keys(&f), ["a", "b", "e", "f"]);
    assert_eq!(keys(&f), keys(&v));
    for (i, (a, b)) in f.alerts.iter().zip(&v.alerts).enumerate() {
        let message = messages[[0, 1, 4, 5][i]];
        assert_same_alert(&a.payload, &b.payload, message, i == 0 || i == 2);
    }
    assert_eq!(f.dead, v.dead);
    let reasons = |p: &Processed| {
        p.dead
            .iter()
            .map(|d| dead_letter_fields(&d.payload))
            .collect::<Vec<_>>()
    };
    assert_eq!(f.dead.len(), 2);
    assert_eq!(
        reasons(&f)[0]["reason"],
        "the event has 1 features; the model expects 2"
    );
    assert_eq!(f.positions, v.positions);
    assert_eq!(f.anomalies, v.anomalies);
}

/// CPU time of this thread (Linux), else wall time.
fn thread_time() -> Duration {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .map_or_else(
            || START.get_or_init(Instant::now).elapsed(),
            Duration::from_nanos,
        )
}

/// `cargo test --release -p pynomaly-stream --lib hot_path -- --ignored --nocapture`:
/// CPU per event of prepare + score + render on the stream benchmark's events (10
/// features, 5 nested; a 100-tree isolation forest; batches of 2000), the `Value` path
/// against the fast path, in alternating rounds.
#[test]
#[ignore = "a benchmark: run it in release with --nocapture"]
fn hot_path() {
    let config = config_with(Features::AllNumeric);
    let model = forest(10, 2000, 100);
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let batch: Vec<Record> = (0..2000)
        .map(|i| {
            let mut f = [0.0f64; 10];
            for x in &mut f {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                *x = (state >> 11) as f64 / (1u64 << 53) as f64;
            }
            let event = format!(
                r#"{{"id":"ev-{i}","timestamp":"2026-11-26T12:00:00Z","sensor":{{"f0":{:.4},"f1":{:.4},"f2":{:.4},"f3":{:.4},"f4":{:.4}}},"f5":{:.4},"f6":{:.4},"f7":{:.4},"f8":{:.4},"f9":{:.4},"site":"plant-3"}}"#,
                f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8], f[9]
            );
            keyed(i, event.as_bytes())
        })
        .collect();
    // Masking installed as the stream command installs it (no fields configured).
    let privacy = Privacy::new(&pynomaly_privacy::PrivacyConfig::default(), [1; 32]);
    let rounds = 15;
    let mut prep = [Duration::ZERO; 2];
    let mut total = [Duration::ZERO; 2];
    for round in 0..rounds * 2 {
        let i = round % 2;
        let parse = [Parse::Value, Parse::Fast][i];
        let records = batch.clone();
        let t0 = thread_time();
        let p = prepare(records, &config, Some(10), Some(&privacy), parse);
        let t1 = thread_time();
        let out = score_and_render(p, &model, &config, Some(&privacy));
        let t2 = thread_time();
        assert_eq!(out.alerts.len(), batch.len());
        std::hint::black_box(out);
        // The first round of each warms up.
        if round >= 2 {
            prep[i] += t1 - t0;
            total[i] += t2 - t0;
        }
    }
    let per_event = |d: Duration| d.as_nanos() as f64 / ((rounds - 1) * batch.len()) as f64;
    for (i, name) in ["Value path", "fast path"].iter().enumerate() {
        println!(
            "hot_path {name:>10}: {:6.0} ns CPU per event (prepare {:5.0}, score + render {:5.0})",
            per_event(total[i]),
            per_event(prep[i]),
            per_event(total[i] - prep[i]),
        );
    }
    println!(
        "hot_path speed-up: {:.2}x",
        per_event(total[0]) / per_event(total[1])
    );
}

#[test]
fn explain_puts_each_alerts_top_features_in_its_metadata_on_both_paths() {
    let features = Features::parse_paths("a,meta.b,c").unwrap();
    let mut config = config_with(features);
    config.explain = Some(2);
    // The forest's rows are uniform in [0, 1): the event is far out only in meta.b.
    let message = br#"{"id":"e1","a":0.5,"meta":{"b":40.0},"c":0.5}"#;
    let model = forest(3, 200, 50);
    let mut seen = Vec::new();
    for parse in [Parse::Fast, Parse::Value] {
        let prepared = prepare(vec![keyed(0, message)], &config, None, None, parse);
        let out = score_and_render_at(prepared, &model, &config, None, NOW.into());
        assert_eq!(out.alerts.len(), 1);
        let alert: Value = serde_json::from_slice(&out.alerts[0].payload).unwrap();
        let explanation = alert["metadata"]["explanation"].as_array().unwrap().clone();
        assert_eq!(explanation.len(), 2, "{alert}");
        assert_eq!(explanation[0]["feature"], "meta.b", "{alert}");
        let shares: Vec<f64> = explanation
            .iter()
            .map(|c| c["contribution"].as_f64().unwrap())
            .collect();
        assert!(
            shares[0] >= shares[1] && shares[0] + shares[1] <= 1.0 + 1e-12,
            "{alert}"
        );
        // The processing time stays the last field.
        assert!(!without_time(&out.alerts[0].payload).is_empty());
        seen.push(explanation);
    }
    assert_eq!(seen[0], seen[1]);
    // Without --explain, no explanation.
    config.explain = None;
    let prepared = prepare(vec![keyed(0, message)], &config, None, None, Parse::Fast);
    let out = score_and_render_at(prepared, &model, &config, None, NOW.into());
    let alert: Value = serde_json::from_slice(&out.alerts[0].payload).unwrap();
    assert!(alert["metadata"].get("explanation").is_none(), "{alert}");
}
