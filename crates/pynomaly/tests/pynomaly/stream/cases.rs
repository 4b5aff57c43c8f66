//! The behaviours of `pynomaly stream` that hold on every broker, written once against
//! [`Broker`]; `suite!` runs each on Redis and on Kafka.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use tempfile::TempDir;
use testkit::wait_until;

use super::harness::{Rng, StreamProcess, by_id, outlier_event, register_model, sensor_events};
use super::{Broker, WAIT};

/// The malformed messages every broker carries: key, payload, and the start of the
/// reason their dead letters give.
const MALFORMED: [(&str, &str, &str); 3] = [
    ("bad-1", "{not json", "not a JSON object"),
    (
        "bad-2",
        r#"{"id":"ev-short","temp":20.0}"#,
        "the event has 1 features; the model expects 3",
    ),
    (
        "bad-3",
        "[1, 2, 3]",
        "not a JSON object: invalid type: sequence",
    ),
];

/// Events over four partitions (where the broker has them), their alerts likewise.
const PARTITIONED: [(&str, i32); 3] = [("events", 4), ("alerts", 4), ("events.dlq", 1)];

/// The broker's `topics` for the test `test`, a data directory whose registry holds the
/// model `sensors` (trained from `seed`), and that model's version; `None` when the
/// broker is not configured.
fn open_with_model<B: Broker>(
    test: &str,
    topics: &[(&str, i32)],
    seed: u64,
) -> Option<(B, TempDir, i64)> {
    let b = B::open(test, topics)?;
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let version = rt.block_on(register_model(dir.path(), "sensors", seed, 1.0));
    Some((b, dir, version))
}

/// A member `consumer` of `group`, scoring `events` into `alerts` with the registry's
/// model `sensors`, given `extra` arguments too.
fn member<B: Broker>(
    b: &B,
    dir: &Path,
    group: &str,
    consumer: &str,
    extra: &[&str],
) -> StreamProcess {
    let (events, alerts) = (b.url("events"), b.url("alerts"));
    let mut args = vec![
        "--source",
        &events,
        "--sink",
        &alerts,
        "--model",
        "sensors",
        "--group",
        group,
        "--consumer",
        consumer,
    ];
    args.extend(extra);
    b.start(dir, &args)
}

#[allow(clippy::too_many_lines)]
pub fn nested_events_are_scored_by_a_registry_model_and_malformed_ones_go_to_the_dead_letters<
    B: Broker,
>() {
    let topics = [
        ("events", 2),
        ("alerts", 2),
        ("events.dlq", 1),
        ("anomalies", 1),
        ("dlq2", 1),
    ];
    let Some((b, dir, version)) = open_with_model::<B>("nested", &topics, 7) else {
        return;
    };

    let mut events = sensor_events(0..200, &mut Rng::new(1));
    events.push(outlier_event("ev-outlier"));
    b.produce("events", &events);
    for (key, payload, _) in MALFORMED {
        b.produce_raw("events", key, payload);
    }
    let reasons: Vec<(&str, &str)> = MALFORMED
        .iter()
        .map(|(key, _, reason)| (*key, *reason))
        .chain(b.produce_broker_malformed("events"))
        .collect();
    let (n_events, n_dead) = (events.len(), reasons.len());

    let (source, group) = (b.url("events"), b.group());
    let mut all = member(&b, dir.path(), &group, "c1", &[]);
    // A second group reads the same events and writes anomalies only.
    let only_group = format!("{group}-anomalies");
    let mut anomalies_only = b.start(
        dir.path(),
        &[
            "--source",
            &source,
            "--sink",
            &b.url("anomalies"),
            "--model",
            "sensors",
            "--group",
            &only_group,
            "--only-anomalies",
            "--dead-letter",
            &b.url("dlq2"),
        ],
    );
    let alerts = b.read_all("alerts", n_events);
    let dead = b.read_all("events.dlq", n_dead);
    let consumed = (n_events + n_dead) as f64;
    wait_until("every event is consumed and acknowledged", WAIT, || {
        all.metric("pynomaly_stream_events_in_total") >= consumed
            && all.metric("pynomaly_stream_lag") == 0.0
            && b.pending("events", &group).unwrap_or(0) == 0
    });
    let (status, health) = all.http_get("/health");
    assert_eq!(status, 200, "{health}");
    let health: Value = serde_json::from_str(&health).expect("health JSON");
    assert_eq!(health["status"], "ok");
    assert_eq!(health["model_version"], version);
    assert_eq!(all.metric("pynomaly_stream_events_in_total"), consumed);
    assert_eq!(
        all.metric("pynomaly_stream_alerts_out_total"),
        n_events as f64
    );
    assert_eq!(
        all.metric("pynomaly_stream_dead_letters_total"),
        n_dead as f64
    );
    assert!(all.metric("pynomaly_stream_anomalies_total") >= 1.0);

    let alerts_by_id = by_id(&alerts);
    assert_eq!(alerts_by_id.len(), n_events);
    for (i, event) in events.iter().enumerate() {
        let id = event["id"].as_str().unwrap();
        let alert = &alerts_by_id[id][0];
        assert_eq!(
            alert["original_data"], *event,
            "alert {i} carries the event"
        );
        assert_eq!(alert["timestamp"], "2026-11-26T10:00:00Z");
        assert_eq!(alert["metadata"]["algorithm"], "isolation_forest");
        assert_eq!(alert["metadata"]["model_version"], version);
        assert!(alert["metadata"]["processing_time_ms"].as_f64().unwrap() >= 0.0);
        let score = alert["anomaly_score"].as_f64().unwrap();
        assert_eq!(alert["is_anomaly"], score > 0.5);
        let c = alert["confidence"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&c));
    }
    // Nested features were read: the far-off event is an anomaly and among the highest
    // scores (isolation scores saturate beyond the training range, so corner points of the
    // normal cloud can tie with or pass it).
    let score = |a: &Value| a["anomaly_score"].as_f64().unwrap();
    let outlier = score(&alerts_by_id["ev-outlier"][0]);
    assert_eq!(alerts_by_id["ev-outlier"][0]["is_anomaly"], true);
    let above = alerts.iter().filter(|(_, a)| score(a) > outlier).count();
    assert!(
        above <= 2,
        "{above} normal events score above the outlier ({outlier})"
    );
    let flagged = alerts
        .iter()
        .filter(|(_, a)| a["is_anomaly"] == true)
        .count();

    // One dead letter per malformed message, keyed as it was, saying why and where from.
    let dead_by_key: HashMap<&str, &Value> = dead
        .iter()
        .map(|(key, d)| {
            assert!(d["source"].as_str().unwrap().ends_with("-events"), "{d}");
            assert!(
                d["position"].as_str().unwrap().starts_with(B::POSITION),
                "{d}"
            );
            (key.as_deref().expect("a dead letter keeps the key"), d)
        })
        .collect();
    assert_eq!(dead_by_key.len(), n_dead, "{dead:?}");
    for (key, reason) in &reasons {
        let d = dead_by_key[*key];
        assert!(d["reason"].as_str().unwrap().starts_with(reason), "{d}");
    }
    for (key, payload, _) in MALFORMED {
        assert_eq!(dead_by_key[key]["payload"], payload);
    }
    assert_eq!(
        dead_by_key["bad-2"]["reason"],
        "the event has 1 features; the model expects 3"
    );

    wait_until(
        "the anomalies-only group has consumed every event",
        WAIT,
        || {
            anomalies_only.metric("pynomaly_stream_events_in_total") >= consumed
                && anomalies_only.metric("pynomaly_stream_lag") == 0.0
                && b.pending("events", &only_group).unwrap_or(0) == 0
        },
    );
    assert_eq!(b.read_all("dlq2", n_dead).len(), n_dead);
    let only = b.read_all("anomalies", flagged);
    assert_eq!(
        only.len(),
        flagged,
        "one alert per anomaly, none for normal events"
    );
    assert!(only.iter().all(|(_, a)| a["is_anomaly"] == true));

    for p in [&mut all, &mut anomalies_only] {
        let status = p.terminate();
        assert!(
            status.success(),
            "exit on SIGTERM: {status}\n{}",
            p.log_text()
        );
    }
}

pub fn a_process_killed_mid_stream_and_restarted_loses_no_event<B: Broker>() {
    let Some((b, dir, _)) = open_with_model::<B>("sigkill", &PARTITIONED, 3) else {
        return;
    };
    const N: usize = 20_000;
    b.produce("events", &sensor_events(0..N, &mut Rng::new(3)));
    let group = b.group();
    let args = [&["--batch-size", "200"], B::TAKEOVER_ARGS].concat();
    let start = |consumer: &str| member(&b, dir.path(), &group, consumer, &args);
    let a_third_scored =
        |p: &StreamProcess| p.metric("pynomaly_stream_alerts_out_total") >= (N / 3) as f64;
    // Killed twice mid-stream: once restarted under the same name (it reads again what it
    // had not acknowledged), then replaced by another consumer (which takes over what the
    // dead one had not).
    let mut p = start("c1");
    wait_until("a third of the events are scored", WAIT, || {
        a_third_scored(&p)
    });
    p.kill_hard();
    let mut max_pending = b.pending("events", &group);
    let mut p = start("c1");
    wait_until("another third is scored after the restart", WAIT, || {
        a_third_scored(&p)
    });
    p.kill_hard();
    let pending_at_kill = b.pending("events", &group);
    max_pending = max_pending.max(pending_at_kill);
    let mut p = start("c2");
    wait_until("every event is consumed and acknowledged", WAIT, || {
        p.metric("pynomaly_stream_events_in_total") > 0.0
            && p.metric("pynomaly_stream_lag") == 0.0
            && b.pending("events", &group).unwrap_or(0) == 0
    });
    if let Some(max_pending) = max_pending {
        assert!(
            max_pending > 0,
            "the kills left no unacknowledged events: the test did not exercise re-delivery"
        );
    }
    let alerts = b.read_all("alerts", N);
    let ids: HashSet<String> = by_id(&alerts).into_keys().collect();
    let missing: Vec<usize> = (0..N)
        .filter(|i| !ids.contains(&format!("ev-{i}")))
        .collect();
    assert!(
        missing.is_empty(),
        "{} events lost, first {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    let unacknowledged = pending_at_kill.map_or(String::new(), |n| {
        format!(", {n} unacknowledged at the second kill")
    });
    eprintln!(
        "{N} events, {} alerts ({} delivered again after the kills){unacknowledged}",
        alerts.len(),
        alerts.len() - N
    );
    assert!(p.terminate().success(), "{}", p.log_text());
}

pub fn two_processes_in_one_group_split_the_events<B: Broker>() {
    let Some((b, dir, _)) = open_with_model::<B>("group", &PARTITIONED, 4) else {
        return;
    };
    let group = b.group();
    let start = |consumer: &str| member(&b, dir.path(), &group, consumer, &["--batch-size", "50"]);
    let mut one = start("one");
    let mut two = start("two");
    b.settle_group();
    const N: usize = 4000;
    let events = sensor_events(0..N, &mut Rng::new(4));
    for chunk in events.chunks(500) {
        b.produce("events", chunk);
        // Events arrive over time, as they would: both members are reading meanwhile.
        std::thread::sleep(Duration::from_millis(50));
    }
    let alerts = b.read_all("alerts", N);
    let events_in = |p: &StreamProcess| p.metric("pynomaly_stream_events_in_total");
    wait_until("the group has consumed every event", WAIT, || {
        events_in(&one) + events_in(&two) >= N as f64
            && b.pending("events", &group).unwrap_or(0) == 0
    });
    let (n1, n2) = (events_in(&one), events_in(&two));
    assert!(n1 > 0.0 && n2 > 0.0, "both members consumed: {n1} and {n2}");
    if B::REBALANCE_REDELIVERS {
        assert!(n1 + n2 >= N as f64, "{n1} + {n2}");
    } else {
        assert_eq!(n1 + n2, N as f64, "each event went to one consumer");
    }
    assert_eq!(by_id(&alerts).len(), N, "every event has an alert");
    assert!(one.terminate().success() && two.terminate().success());
}
