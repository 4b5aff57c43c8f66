//! `pynomaly stream` on Redis Streams (`PYNOMALY_TEST_REDIS_URL`).

use std::collections::HashSet;
use std::time::Duration;

use deadpool_redis::redis::{self, Commands};
use serde_json::Value;

use crate::helpers::{
    Message, Rng, StreamProcess, by_id, outlier_event, register_model, sensor_event, wait_until,
};

const WAIT: Duration = Duration::from_secs(90);

/// The test Redis, or `None` (with the reason printed) when it is not configured.
fn redis_url() -> Option<String> {
    match std::env::var("PYNOMALY_TEST_REDIS_URL") {
        Ok(url) => Some(url),
        Err(_) => {
            eprintln!("skipped: PYNOMALY_TEST_REDIS_URL is not set (e.g. redis://127.0.0.1:6379)");
            None
        }
    }
}

/// Unique stream names for one test; deleted when dropped.
struct Streams {
    url: String,
    conn: redis::Connection,
    prefix: String,
}

impl Streams {
    fn new(url: &str, test: &str) -> Self {
        let client = redis::Client::open(url).expect("redis url");
        let conn = client.get_connection().expect("redis connection");
        Self {
            url: url.to_string(),
            conn,
            prefix: format!(
                "pynomaly-test-stream-{test}-{}",
                uuid::Uuid::new_v4().simple()
            ),
        }
    }

    /// The stream's key.
    fn key(&self, name: &str) -> String {
        format!("{}-{name}", self.prefix)
    }

    /// The stream's URL for `--source`/`--sink`.
    fn url(&self, name: &str) -> String {
        format!("{}/{}", self.url.trim_end_matches('/'), self.key(name))
    }

    fn produce(&mut self, name: &str, events: &[Value]) {
        let key = self.key(name);
        for chunk in events.chunks(500) {
            let mut pipe = redis::pipe();
            for e in chunk {
                pipe.cmd("XADD")
                    .arg(&key)
                    .arg("*")
                    .arg("value")
                    .arg(e.to_string())
                    .ignore();
            }
            pipe.query::<()>(&mut self.conn).expect("XADD");
        }
    }

    fn produce_raw(&mut self, name: &str, fields: &[(&str, &str)]) {
        let key = self.key(name);
        let mut cmd = redis::cmd("XADD");
        cmd.arg(&key).arg("*");
        for (k, v) in fields {
            cmd.arg(*k).arg(*v);
        }
        cmd.query::<String>(&mut self.conn).expect("XADD");
    }

    fn len(&mut self, name: &str) -> usize {
        self.conn.xlen(self.key(name)).expect("XLEN")
    }

    /// Every message of a stream: (key field, value parsed as JSON).
    fn read_all(&mut self, name: &str) -> Vec<Message> {
        let reply: redis::streams::StreamRangeReply =
            self.conn.xrange_all(self.key(name)).expect("XRANGE");
        reply
            .ids
            .iter()
            .map(|entry| {
                let key: Option<String> = entry.get("key");
                let value: String = entry.get("value").expect("value field");
                (key, serde_json::from_str(&value).expect("JSON message"))
            })
            .collect()
    }

    /// Entries delivered to `group` and not acknowledged.
    fn pending(&mut self, name: &str, group: &str) -> usize {
        let reply: redis::streams::StreamPendingReply =
            self.conn.xpending(self.key(name), group).expect("XPENDING");
        reply.count()
    }
}

impl Drop for Streams {
    fn drop(&mut self) {
        let keys: Vec<String> = self
            .conn
            .keys(format!("{}-*", self.prefix))
            .unwrap_or_default();
        for k in keys {
            let _: Result<(), _> = self.conn.del(k);
        }
    }
}

#[test]
fn redis_nested_events_are_scored_by_a_registry_model_and_malformed_ones_go_to_the_dead_letters() {
    let Some(url) = redis_url() else { return };
    let mut s = Streams::new(&url, "nested");
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let version = rt.block_on(register_model(dir.path(), "sensors", 7, 1.0));

    let mut rng = Rng::new(1);
    let mut events: Vec<Value> = (0..200)
        .map(|i| sensor_event(&format!("ev-{i}"), &mut rng))
        .collect();
    events.push(outlier_event("ev-outlier"));
    s.produce("events", &events);
    s.produce_raw("events", &[("value", "{not json")]);
    s.produce_raw(
        "events",
        &[
            ("key", "k-missing"),
            ("value", r#"{"id":"ev-short","temp":20.0}"#),
        ],
    );
    s.produce_raw("events", &[("value", "[1, 2, 3]")]);
    s.produce_raw("events", &[("payload", "{}")]);

    let mut all = StreamProcess::start(
        dir.path(),
        &[
            "--source",
            &s.url("events"),
            "--sink",
            &s.url("alerts"),
            "--model",
            "sensors",
            "--consumer",
            "c1",
        ],
    );
    // A second group reads the same events and writes anomalies only.
    let mut anomalies_only = StreamProcess::start(
        dir.path(),
        &[
            "--source",
            &s.url("events"),
            "--sink",
            &s.url("anomalies"),
            "--model",
            "sensors",
            "--group",
            "only-anomalies",
            "--only-anomalies",
            "--dead-letter",
            &s.url("dlq2"),
        ],
    );
    wait_until("every event has an alert or a dead letter", WAIT, || {
        s.len("alerts") == 201
            && s.len("events.dlq") == 4
            && s.pending("events", "pynomaly-stream") == 0
    });
    let (status, health) = all.http_get("/health");
    assert_eq!(status, 200, "{health}");
    let health: Value = serde_json::from_str(&health).expect("health JSON");
    assert_eq!(health["status"], "ok");
    assert_eq!(health["model_version"], version);
    assert_eq!(all.metric("pynomaly_stream_events_in_total"), 205.0);
    assert_eq!(all.metric("pynomaly_stream_alerts_out_total"), 201.0);
    assert_eq!(all.metric("pynomaly_stream_dead_letters_total"), 4.0);
    assert!(all.metric("pynomaly_stream_anomalies_total") >= 1.0);

    let alerts = s.read_all("alerts");
    let alerts_by_id = by_id(&alerts);
    assert_eq!(alerts_by_id.len(), 201);
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

    let dead: Vec<String> = s
        .read_all("events.dlq")
        .iter()
        .map(|(_, d)| {
            assert!(d["source"].as_str().unwrap().ends_with("-events"));
            assert!(d["position"].as_str().unwrap().starts_with("entry "));
            format!("{} | {}", d["reason"].as_str().unwrap(), d["payload"])
        })
        .collect();
    assert!(
        dead[0].starts_with("not a JSON object") && dead[0].contains("{not json"),
        "{dead:?}"
    );
    assert!(
        dead[1].starts_with("the event has 1 features; the model expects 3"),
        "{dead:?}"
    );
    assert!(
        dead[2].starts_with("not a JSON object: invalid type: sequence"),
        "{dead:?}"
    );
    assert!(
        dead[3].starts_with("the entry has no `value` field"),
        "{dead:?}"
    );

    wait_until("the anomalies-only group is done", WAIT, || {
        s.pending("events", "only-anomalies") == 0 && s.len("dlq2") == 4
    });
    let only = s.read_all("anomalies");
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

#[test]
fn redis_a_newly_promoted_registry_version_is_used_without_a_restart() {
    let Some(url) = redis_url() else { return };
    let mut s = Streams::new(&url, "promote");
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    assert_eq!(
        rt.block_on(register_model(dir.path(), "sensors", 1, 1.0)),
        1
    );
    let mut p = StreamProcess::start(
        dir.path(),
        &[
            "--source",
            &s.url("events"),
            "--sink",
            &s.url("alerts"),
            "--model",
            "sensors",
            "--model-refresh",
            "0.2",
        ],
    );
    let mut rng = Rng::new(2);
    s.produce("events", &[sensor_event("before", &mut rng)]);
    wait_until("the first alert", WAIT, || s.len("alerts") == 1);
    // Version 2 is registered as staging: still version 1.
    assert_eq!(
        rt.block_on(register_model(dir.path(), "sensors", 2, 3.0)),
        2
    );
    std::thread::sleep(Duration::from_millis(600));
    s.produce("events", &[sensor_event("staged", &mut rng)]);
    wait_until("the second alert", WAIT, || s.len("alerts") == 2);
    // Promote version 2 in the registry's database, as a promotion does.
    rt.block_on(async {
        let db = sqlx::SqlitePool::connect(&format!("sqlite://{}", dir.path().join("metadata.db").display()))
            .await
            .expect("sqlite");
        sqlx::query("UPDATE model_versions SET stage = CASE version WHEN 2 THEN 'production' ELSE 'staging' END WHERE model_name = 'sensors'")
            .execute(&db)
            .await
            .expect("promote");
        db.close().await;
    });
    wait_until("the process reports version 2", WAIT, || {
        p.metric("pynomaly_stream_model_version") == 2.0
    });
    s.produce("events", &[sensor_event("promoted", &mut rng)]);
    wait_until("the third alert", WAIT, || s.len("alerts") == 3);
    let versions: Vec<(String, i64)> = s
        .read_all("alerts")
        .iter()
        .map(|(k, a)| {
            (
                k.clone().unwrap(),
                a["metadata"]["model_version"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        versions,
        vec![
            ("before".into(), 1),
            ("staged".into(), 1),
            ("promoted".into(), 2)
        ]
    );
    assert!(p.terminate().success());
}

#[test]
fn redis_a_process_killed_mid_stream_and_restarted_loses_no_event() {
    let Some(url) = redis_url() else { return };
    let mut s = Streams::new(&url, "sigkill");
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(register_model(dir.path(), "sensors", 3, 1.0));
    const N: usize = 30_000;
    let mut rng = Rng::new(3);
    let events: Vec<Value> = (0..N)
        .map(|i| sensor_event(&format!("ev-{i}"), &mut rng))
        .collect();
    s.produce("events", &events);
    let (events_url, alerts_url) = (s.url("events"), s.url("alerts"));
    let args = |consumer: &'static str| {
        vec![
            "--source".to_string(),
            events_url.clone(),
            "--sink".to_string(),
            alerts_url.clone(),
            "--model".into(),
            "sensors".into(),
            "--consumer".into(),
            consumer.into(),
            "--batch-size".into(),
            "200".into(),
            "--claim-idle".into(),
            "1".into(),
        ]
    };
    let start = |consumer: &'static str| {
        let a = args(consumer);
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        StreamProcess::start(dir.path(), &a)
    };
    let mut max_pending = 0;
    // Killed twice mid-stream: once restarted under the same name (it re-reads its own
    // pending entries), then replaced by another consumer (it claims the dead one's).
    let mut p = start("c1");
    wait_until("a third of the alerts", WAIT, || s.len("alerts") >= N / 3);
    p.kill_hard();
    max_pending = max_pending.max(s.pending("events", "pynomaly-stream"));
    let mut p = start("c1");
    wait_until("two thirds of the alerts", WAIT, || {
        s.len("alerts") >= 2 * N / 3
    });
    p.kill_hard();
    let pending_at_kill = s.pending("events", "pynomaly-stream");
    max_pending = max_pending.max(pending_at_kill);
    let mut p = start("c2");
    wait_until("every event acknowledged", WAIT, || {
        s.pending("events", "pynomaly-stream") == 0
            && p.metric("pynomaly_stream_lag") == 0.0
            && s.len("alerts") >= N
    });
    assert!(
        max_pending > 0,
        "the kills left no unacknowledged entries: the test did not exercise re-delivery"
    );
    let alerts = s.read_all("alerts");
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
    eprintln!(
        "{N} events, {} alerts ({} delivered again after the kills), {pending_at_kill} claimed from the dead consumer",
        alerts.len(),
        alerts.len() - N
    );
    assert!(p.terminate().success());
}

#[test]
fn redis_two_processes_in_one_group_split_the_events() {
    let Some(url) = redis_url() else { return };
    let mut s = Streams::new(&url, "group");
    let dir = tempfile::tempdir().expect("tempdir");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(register_model(dir.path(), "sensors", 4, 1.0));
    let common = |consumer: &str| {
        vec![
            "--source".to_string(),
            s.url("events"),
            "--sink".into(),
            s.url("alerts"),
            "--model".into(),
            "sensors".into(),
            "--group".into(),
            "shared".into(),
            "--consumer".into(),
            consumer.into(),
            "--batch-size".into(),
            "50".into(),
        ]
    };
    let a1 = common("one");
    let a2 = common("two");
    let mut one = StreamProcess::start(
        dir.path(),
        &a1.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    let mut two = StreamProcess::start(
        dir.path(),
        &a2.iter().map(String::as_str).collect::<Vec<_>>(),
    );
    const N: usize = 6000;
    let mut rng = Rng::new(4);
    let events: Vec<Value> = (0..N)
        .map(|i| sensor_event(&format!("ev-{i}"), &mut rng))
        .collect();
    for chunk in events.chunks(500) {
        s.produce("events", chunk);
        std::thread::sleep(Duration::from_millis(50));
    }
    wait_until("all events processed", WAIT, || {
        s.len("alerts") >= N && s.pending("events", "shared") == 0
    });
    let (n1, n2) = (
        one.metric("pynomaly_stream_events_in_total"),
        two.metric("pynomaly_stream_events_in_total"),
    );
    assert!(
        n1 > 0.0 && n2 > 0.0,
        "both consumers took events: {n1} and {n2}"
    );
    assert_eq!(n1 + n2, N as f64, "each event went to one consumer");
    assert_eq!(by_id(&s.read_all("alerts")).len(), N);
    assert!(one.terminate().success() && two.terminate().success());
}

#[test]
fn redis_online_refits_at_the_update_frequency_advance_the_model_version_and_resume_after_restart()
{
    let Some(url) = redis_url() else { return };
    let mut s = Streams::new(&url, "online");
    let dir = tempfile::tempdir().expect("tempdir");
    let args = [
        "--source".to_string(),
        s.url("events"),
        "--sink".into(),
        s.url("alerts"),
        "--algorithm".into(),
        "isolation_forest".into(),
        "--random-state".into(),
        "5".into(),
        "--param".into(),
        "n_estimators=50".into(),
        "--window".into(),
        "300".into(),
        "--update-frequency".into(),
        "100".into(),
        "--warm-up".into(),
        "100".into(),
        "--batch-size".into(),
        "40".into(),
    ];
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut p = StreamProcess::start(dir.path(), &args);
    let mut rng = Rng::new(5);
    let mut produced = 0;
    let chunk = |s: &mut Streams, rng: &mut Rng, produced: &mut usize| {
        let events: Vec<Value> = (*produced..*produced + 100)
            .map(|i| sensor_event(&format!("ev-{i}"), rng))
            .collect();
        s.produce("events", &events);
        *produced += 100;
    };
    // Chunk 0 is the warm-up (the first model, version 1, scores it); each later chunk of
    // 100 is scored by the current model and then triggers one refit.
    for k in 0..6 {
        chunk(&mut s, &mut rng, &mut produced);
        let deadline = std::time::Instant::now() + WAIT;
        while s.len("alerts") < produced
            || p.metric("pynomaly_stream_refits_total") < (k + 1) as f64
        {
            assert!(
                std::time::Instant::now() < deadline,
                "chunk {k}: {} alerts, {} refits, metrics:\n{}\nlog:\n{}",
                s.len("alerts"),
                p.metric("pynomaly_stream_refits_total"),
                p.http_get("/metrics").1,
                p.log_text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let refits = p.metric("pynomaly_stream_refits_total");
        assert_eq!(
            (s.len("alerts"), refits),
            (produced, (k + 1) as f64),
            "chunk {k}:\n{}",
            p.log_text()
        );
    }
    let version_of = |alerts: &[Message], i: usize| -> i64 {
        let id = format!("ev-{i}");
        let found = alerts
            .iter()
            .find(|(k, _)| k.as_deref() == Some(id.as_str()))
            .expect("alert");
        found.1["metadata"]["model_version"]
            .as_i64()
            .expect("version")
    };
    let alerts = s.read_all("alerts");
    for i in 0..600 {
        let expected = (i / 100).max(1) as i64;
        assert_eq!(version_of(&alerts, i), expected, "event {i}");
    }
    assert_eq!(p.metric("pynomaly_stream_model_version"), 6.0);
    assert!(p.terminate().success(), "{}", p.log_text());
    assert!(
        std::fs::read_dir(
            dir.path()
                .join("storage/stream-checkpoints/pynomaly-stream")
        )
        .expect("checkpoint dir")
        .count()
            == 1
    );

    // Restarted: the checkpointed model (version 6) scores at once, no warm-up.
    let mut p = StreamProcess::start(dir.path(), &args);
    chunk(&mut s, &mut rng, &mut produced);
    wait_until("alerts after the restart", WAIT, || {
        s.len("alerts") == produced
    });
    let alerts = s.read_all("alerts");
    for i in 600..700 {
        assert_eq!(version_of(&alerts, i), 6, "event {i} after restart");
    }
    wait_until("a refit after the restart", WAIT, || {
        p.metric("pynomaly_stream_refits_total") == 1.0
    });
    assert_eq!(p.metric("pynomaly_stream_model_version"), 7.0);
    let log = p.log_text();
    assert!(
        log.contains("resumed online learning from the checkpoint"),
        "{log}"
    );
    assert!(p.terminate().success());
}
