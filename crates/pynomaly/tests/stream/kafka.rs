//! `pynomaly stream` on Kafka, against a real Kafka-protocol broker (tansu, which
//! `.ci/run` starts) at `PYNOMALY_TEST_KAFKA_BROKERS`.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::Message;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value;

use crate::helpers::{
    Message as Msg, Rng, StreamProcess, by_id, outlier_event, register_model, sensor_event,
    wait_until,
};

const WAIT: Duration = Duration::from_secs(120);

fn brokers() -> Option<String> {
    match std::env::var("PYNOMALY_TEST_KAFKA_BROKERS") {
        Ok(b) => Some(b),
        Err(_) => {
            eprintln!(
                "skipped: PYNOMALY_TEST_KAFKA_BROKERS is not set (.ci/run starts a tansu broker and sets it)"
            );
            None
        }
    }
}

/// Unique topics for one test.
struct Topics {
    brokers: String,
    prefix: String,
    producer: ThreadedProducer<DefaultProducerContext>,
}

impl Topics {
    fn new(
        brokers: &str,
        test: &str,
        rt: &tokio::runtime::Runtime,
        partitions: &[(&str, i32)],
    ) -> Self {
        let prefix = format!("pynomaly-test-{test}-{}", uuid::Uuid::new_v4().simple());
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .create()
            .expect("admin client");
        let names: Vec<String> = partitions
            .iter()
            .map(|(n, _)| format!("{prefix}-{n}"))
            .collect();
        let topics: Vec<NewTopic<'_>> = names
            .iter()
            .zip(partitions)
            .map(|(name, (_, p))| NewTopic::new(name, *p, TopicReplication::Fixed(1)))
            .collect();
        let created = rt
            .block_on(admin.create_topics(&topics, &AdminOptions::new()))
            .expect("create topics");
        for r in created {
            r.expect("topic created");
        }
        // One record per record batch. tansu 0.6's in-memory storage (the broker CI runs)
        // files a partition's records as whole batches keyed by their base offset and
        // answers a fetch from offset X with the batches whose base offset is >= X
        // (tansu-storage 0.6.0, src/dynostore.rs, `fetch`), where Kafka returns the batch
        // holding X and the client skips what it has seen; its ListOffsets(latest) also
        // answers the last batch's base offset + 1. With single-record batches a committed
        // offset is always a batch boundary and the watermarks are exact, so the SIGKILL
        // test checks our commits, not that broker's batch bookkeeping.
        let producer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("linger.ms", "5")
            .set("batch.num.messages", "1")
            .create()
            .expect("producer");
        Self {
            brokers: brokers.to_string(),
            prefix,
            producer,
        }
    }

    fn topic(&self, name: &str) -> String {
        format!("{}-{name}", self.prefix)
    }

    /// The consumer group of this test's stream processes: its own, so that tests running
    /// at the same time never share a group (members of one group subscribed to different
    /// topics are left to the broker's assignor, which tansu 0.6 gets wrong).
    fn group(&self) -> String {
        format!("{}-group", self.prefix)
    }

    fn url(&self, name: &str) -> String {
        format!("kafka://{}/{}", self.brokers, self.topic(name))
    }

    /// Produces events keyed by their id (so they spread over the partitions).
    fn produce(&self, name: &str, events: &[Value]) {
        let topic = self.topic(name);
        for e in events {
            let payload = e.to_string();
            let key = e["id"].as_str().unwrap_or("none").to_string();
            self.send(&topic, &key, payload.as_bytes());
        }
        self.producer.flush(Duration::from_secs(30)).expect("flush");
    }

    fn produce_raw(&self, name: &str, key: &str, payload: &[u8]) {
        self.send(&self.topic(name), key, payload);
        self.producer.flush(Duration::from_secs(30)).expect("flush");
    }

    fn send(&self, topic: &str, key: &str, payload: &[u8]) {
        let mut record = BaseRecord::to(topic).key(key).payload(payload);
        loop {
            match self.producer.send(record) {
                Ok(()) => return,
                Err((_, r)) => {
                    record = r;
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
    }

    /// Every message of a topic, all partitions from the start, waiting until `at_least`
    /// have arrived (or the timeout).
    fn read_all(&self, name: &str, partitions: i32, at_least: usize) -> Vec<Msg> {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &self.brokers)
            .set(
                "group.id",
                format!("{}-reader-{}", self.prefix, uuid::Uuid::new_v4().simple()),
            )
            .set("enable.auto.commit", "false")
            .create()
            .expect("consumer");
        let topic = self.topic(name);
        let mut tpl = TopicPartitionList::new();
        for p in 0..partitions {
            tpl.add_partition_offset(&topic, p, Offset::Beginning)
                .expect("partition");
        }
        consumer.assign(&tpl).expect("assign");
        let mut out = Vec::new();
        let deadline = Instant::now() + WAIT;
        let mut quiet_since = Instant::now();
        loop {
            match consumer.poll(Duration::from_millis(200)) {
                Some(Ok(m)) => {
                    let key = m.key().map(|k| String::from_utf8_lossy(k).into_owned());
                    let value: Value = serde_json::from_slice(m.payload().unwrap_or_default())
                        .expect("JSON message");
                    out.push((key, value));
                    quiet_since = Instant::now();
                }
                Some(Err(e)) => panic!("reading {topic}: {e}"),
                None => {}
            }
            if out.len() >= at_least && quiet_since.elapsed() > Duration::from_millis(500) {
                return out;
            }
            assert!(
                Instant::now() < deadline,
                "only {} of {at_least} messages on {topic}",
                out.len()
            );
        }
    }
}

/// Shorter group timeouts than Kafka's defaults, so a killed member's partitions move on
/// within seconds.
const GROUP_TIMING: [&str; 4] = [
    "--kafka-config",
    "session.timeout.ms=6000",
    "--kafka-config",
    "heartbeat.interval.ms=500",
];

fn args(parts: &[&str]) -> Vec<String> {
    parts
        .iter()
        .map(|s| s.to_string())
        .chain(GROUP_TIMING.iter().map(|s| s.to_string()))
        .collect()
}

fn start(dir: &std::path::Path, a: &[String]) -> StreamProcess {
    let a: Vec<&str> = a.iter().map(String::as_str).collect();
    StreamProcess::start(dir, &a)
}

#[test]
fn kafka_nested_events_are_scored_and_malformed_ones_go_to_the_dead_letter_topic() {
    let Some(brokers) = brokers() else { return };
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let t = Topics::new(
        &brokers,
        "nested",
        &rt,
        &[("events", 2), ("alerts", 2), ("events.dlq", 1)],
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let version = rt.block_on(register_model(dir.path(), "sensors", 7, 1.0));
    let mut rng = Rng::new(11);
    let mut events: Vec<Value> = (0..100)
        .map(|i| sensor_event(&format!("ev-{i}"), &mut rng))
        .collect();
    events.push(outlier_event("ev-outlier"));
    t.produce("events", &events);
    t.produce_raw("events", "bad-1", b"{not json");
    t.produce_raw("events", "bad-2", br#"{"id":"ev-short","temp":20.0}"#);
    let mut p = start(
        dir.path(),
        &args(&[
            "--source",
            &t.url("events"),
            "--sink",
            &t.url("alerts"),
            "--model",
            "sensors",
            "--group",
            &t.group(),
        ]),
    );
    let alerts = t.read_all("alerts", 2, 101);
    let dead = t.read_all("events.dlq", 1, 2);
    let alerts_by_id = by_id(&alerts);
    assert_eq!(alerts_by_id.len(), 101);
    for e in &events {
        let a = &alerts_by_id[e["id"].as_str().unwrap()][0];
        assert_eq!(a["original_data"], *e);
        assert_eq!(a["metadata"]["model_version"], version);
        assert_eq!(a["metadata"]["algorithm"], "isolation_forest");
        assert_eq!(a["is_anomaly"], a["anomaly_score"].as_f64().unwrap() > 0.5);
    }
    assert_eq!(alerts_by_id["ev-outlier"][0]["is_anomaly"], true);
    let mut reasons: Vec<(Option<String>, String)> = dead
        .iter()
        .map(|(k, d)| {
            assert!(d["position"].as_str().unwrap().starts_with("partition "));
            (k.clone(), d["reason"].as_str().unwrap().to_string())
        })
        .collect();
    reasons.sort();
    assert_eq!(reasons[0].0.as_deref(), Some("bad-1"));
    assert!(reasons[0].1.starts_with("not a JSON object"), "{reasons:?}");
    assert_eq!(reasons[1].0.as_deref(), Some("bad-2"));
    assert_eq!(
        reasons[1].1,
        "the event has 1 features; the model expects 3"
    );
    wait_until("the group's lag is 0", WAIT, || {
        p.metric("pynomaly_stream_lag") == 0.0
    });
    assert_eq!(p.metric("pynomaly_stream_events_in_total"), 103.0);
    assert!(p.terminate().success(), "{}", p.log_text());
}

#[test]
fn kafka_a_process_killed_mid_stream_and_restarted_loses_no_event() {
    let Some(brokers) = brokers() else { return };
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let t = Topics::new(
        &brokers,
        "sigkill",
        &rt,
        &[("events", 4), ("alerts", 4), ("events.dlq", 1)],
    );
    let dir = tempfile::tempdir().expect("tempdir");
    rt.block_on(register_model(dir.path(), "sensors", 3, 1.0));
    const N: usize = 20_000;
    let mut rng = Rng::new(13);
    let events: Vec<Value> = (0..N)
        .map(|i| sensor_event(&format!("ev-{i}"), &mut rng))
        .collect();
    t.produce("events", &events);
    let a = args(&[
        "--source",
        &t.url("events"),
        "--sink",
        &t.url("alerts"),
        "--model",
        "sensors",
        "--batch-size",
        "200",
        "--consumer",
        "k1",
        "--group",
        &t.group(),
    ]);
    let mut p = start(dir.path(), &a);
    wait_until("a third of the events", WAIT, || {
        p.metric("pynomaly_stream_alerts_out_total") >= (N / 3) as f64
    });
    p.kill_hard();
    let mut p = start(dir.path(), &a);
    wait_until("lag 0 after the restart", WAIT, || {
        p.metric("pynomaly_stream_lag") == 0.0 && p.metric("pynomaly_stream_events_in_total") > 0.0
    });
    let alerts = t.read_all("alerts", 4, N);
    let ids: HashSet<String> = by_id(&alerts).into_keys().collect();
    let missing = (0..N).filter(|i| !ids.contains(&format!("ev-{i}"))).count();
    assert_eq!(missing, 0, "{missing} events lost");
    eprintln!(
        "{N} events, {} alerts ({} delivered again after the kill)",
        alerts.len(),
        alerts.len() - N
    );
    assert!(p.terminate().success(), "{}", p.log_text());
}

#[test]
fn kafka_two_processes_in_one_group_split_the_partitions() {
    let Some(brokers) = brokers() else { return };
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let t = Topics::new(
        &brokers,
        "group",
        &rt,
        &[("events", 4), ("alerts", 4), ("events.dlq", 1)],
    );
    let dir = tempfile::tempdir().expect("tempdir");
    rt.block_on(register_model(dir.path(), "sensors", 4, 1.0));
    let a = args(&[
        "--source",
        &t.url("events"),
        "--sink",
        &t.url("alerts"),
        "--model",
        "sensors",
        "--group",
        &t.group(),
    ]);
    let mut one = start(dir.path(), &a);
    let mut two = start(dir.path(), &a);
    // Let the group settle with both members before producing.
    std::thread::sleep(Duration::from_secs(8));
    const N: usize = 4000;
    let mut rng = Rng::new(17);
    let events: Vec<Value> = (0..N)
        .map(|i| sensor_event(&format!("ev-{i}"), &mut rng))
        .collect();
    t.produce("events", &events);
    let alerts = t.read_all("alerts", 4, N);
    assert_eq!(by_id(&alerts).len(), N, "every event has an alert");
    let (n1, n2) = (
        one.metric("pynomaly_stream_events_in_total"),
        two.metric("pynomaly_stream_events_in_total"),
    );
    assert!(n1 > 0.0 && n2 > 0.0, "both members consumed: {n1} and {n2}");
    assert!(n1 + n2 >= N as f64);
    assert!(one.terminate().success() && two.terminate().success());
}
