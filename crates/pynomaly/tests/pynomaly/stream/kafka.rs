//! `pynomaly stream` on Kafka, against a real Kafka-protocol broker: the shared suite on
//! the broker `.ci/run` starts (tansu, at `PYNOMALY_TEST_KAFKA_BROKERS`), and again over TLS
//! ([`tls`]: a broker of the test's own behind nginx terminating TLS).

use std::collections::HashMap;
use std::marker::PhantomData;
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::Message;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::Value;

use super::harness::Message as Msg;
use super::{Broker, WAIT};

suite!(KafkaTopics<Plain>);

mod tls;

/// Shorter group timeouts than Kafka's defaults, so a killed member's partitions move on
/// within seconds.
const GROUP_TIMING: [&str; 4] = [
    "--kafka-config",
    "session.timeout.ms=6000",
    "--kafka-config",
    "heartbeat.interval.ms=500",
];

/// Where the brokers are and how to reach them.
pub(super) trait Endpoint {
    /// The brokers; `None`, the test skipping, when they are not configured.
    fn open() -> Option<Connection>;
}

/// The brokers of one test, the client settings that reach them (librdkafka's, given to the
/// test's own clients and to the stream processes as `--kafka-config`), and whatever serves
/// them for this test only (dropped with it).
pub(super) struct Connection {
    pub(super) brokers: String,
    pub(super) settings: Vec<(String, String)>,
    pub(super) _servers: Option<Box<dyn std::any::Any>>,
}

/// The broker `.ci/run` starts, in plain text.
pub(super) struct Plain;

impl Endpoint for Plain {
    fn open() -> Option<Connection> {
        Some(Connection {
            brokers: testkit::env::kafka_brokers()?,
            settings: Vec::new(),
            _servers: None,
        })
    }
}

/// A client configuration of `connection`'s brokers and settings.
fn client_config(connection: &Connection) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &connection.brokers);
    for (k, v) in &connection.settings {
        c.set(k, v);
    }
    c
}

/// Unique topics for one test.
pub(super) struct KafkaTopics<E> {
    connection: Connection,
    prefix: String,
    partitions: HashMap<String, i32>,
    producer: ThreadedProducer<DefaultProducerContext>,
    endpoint: PhantomData<E>,
}

impl<E: Endpoint> Broker for KafkaTopics<E> {
    const POSITION: &'static str = "partition ";
    // A killed member's partitions move to another once its session times out
    // (`GROUP_TIMING`), from the last committed offset.
    const TAKEOVER_ARGS: &'static [&'static str] = &[];
    const REBALANCE_REDELIVERS: bool = true;

    fn open(test: &str, partitions: &[(&str, i32)]) -> Option<Self> {
        let connection = E::open()?;
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        let prefix = format!("pynomaly-test-{test}-{}", uuid::Uuid::new_v4().simple());
        let admin: AdminClient<DefaultClientContext> =
            client_config(&connection).create().expect("admin client");
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
        let producer = client_config(&connection)
            .set("linger.ms", "5")
            .set("batch.num.messages", "1")
            .create()
            .expect("producer");
        Some(Self {
            connection,
            prefix,
            partitions: partitions
                .iter()
                .map(|(name, p)| (name.to_string(), *p))
                .collect(),
            producer,
            endpoint: PhantomData,
        })
    }

    /// The consumer group of this test's stream processes: its own, so that tests running
    /// at the same time never share a group (members of one group subscribed to different
    /// topics are left to the broker's assignor, which tansu 0.6 gets wrong).
    fn group(&self) -> String {
        format!("{}-group", self.prefix)
    }

    fn url(&self, name: &str) -> String {
        format!("kafka://{}/{}", self.connection.brokers, self.topic(name))
    }

    fn process_args(&self) -> Vec<String> {
        let settings = self
            .connection
            .settings
            .iter()
            .flat_map(|(k, v)| ["--kafka-config".to_string(), format!("{k}={v}")]);
        GROUP_TIMING
            .iter()
            .map(|s| s.to_string())
            .chain(settings)
            .collect()
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

    fn produce_raw(&self, name: &str, key: &str, payload: &str) {
        self.send(&self.topic(name), key, payload.as_bytes());
        self.producer.flush(Duration::from_secs(30)).expect("flush");
    }

    fn produce_broker_malformed(&self, _name: &str) -> Vec<(&'static str, &'static str)> {
        Vec::new()
    }

    /// Every message of a topic, all partitions from the start, waiting until `at_least`
    /// have arrived and no more come for half a second.
    fn read_all(&self, name: &str, at_least: usize) -> Vec<Msg> {
        let consumer: BaseConsumer = client_config(&self.connection)
            .set(
                "group.id",
                format!("{}-reader-{}", self.prefix, uuid::Uuid::new_v4().simple()),
            )
            .set("enable.auto.commit", "false")
            .create()
            .expect("consumer");
        let topic = self.topic(name);
        let mut tpl = TopicPartitionList::new();
        for p in 0..self.partitions[name] {
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

    fn pending(&self, _name: &str, _group: &str) -> Option<usize> {
        None
    }

    fn settle_group(&self) {
        // No member reports its assignment: the group is given the time a rebalance
        // takes to hand both members their partitions.
        std::thread::sleep(Duration::from_secs(8));
    }
}

impl<E> KafkaTopics<E> {
    fn topic(&self, name: &str) -> String {
        format!("{}-{name}", self.prefix)
    }

    fn send(&self, topic: &str, key: &str, payload: &[u8]) {
        let mut record = BaseRecord::to(topic).key(key).payload(payload);
        loop {
            match self.producer.send(record) {
                Ok(()) => return,
                Err((_, r)) => {
                    // The producer's queue is full: give it time to drain.
                    record = r;
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
        }
    }
}
