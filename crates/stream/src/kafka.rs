//! Kafka (rdkafka, bundled librdkafka): a consumer-group [`Source`] and a [`Sink`].
//!
//! - **Reading**: one `StreamConsumer` in the group; a batch is the first message that
//!   comes within the poll wait plus every message already fetched, up to the batch size
//!   (librdkafka prefetches in the background, so batches fill under load).
//! - **Committing**: offsets are *stored* (`rd_kafka_offset_store`, highest offset per
//!   partition of the batch) only once the batch's alerts are delivered, and librdkafka's
//!   auto-commit writes stored offsets to the group every `auto.commit.interval.ms` and when
//!   partitions are revoked; at shutdown the stored offsets are committed synchronously.
//!   `enable.auto.offset.store` is off, so nothing read but not yet written is ever
//!   committed. After a rebalance, a batch of a partition this process lost cannot be
//!   stored: the new owner processes it again (at least once).
//! - **Writing**: a `FutureProducer` (batching with `linger.ms`); a batch is written when
//!   every message's delivery report has come back, in order per partition of the alerts
//!   topic (partitioned by the event's `id`).
//!
//! `--kafka-config key=value` options pass through to librdkafka (both clients), e.g.
//! `session.timeout.ms` or security settings: librdkafka is built with TLS and SASL
//! (`PLAIN`, `SCRAM-SHA-256`, `SCRAM-SHA-512`, `OAUTHBEARER`; not `GSSAPI`), so
//! `security.protocol=SASL_SSL` with `ssl.ca.location` and `sasl.*` works.
//! - **Connecting**: clients connect lazily and retry an unreachable broker in the
//!   background. What retrying cannot mend — a TLS handshake that fails (a certificate the
//!   CA does not verify, a plain-text port) or refused credentials — is caught by
//!   [`KafkaSource::check_connection`] and [`KafkaSink::check_connection`] at start, with librdkafka's
//!   reason, so the process stops with it instead of retrying forever.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::FutureExt;
use rdkafka::ClientConfig;
use rdkafka::Message;
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::producer::{
    BaseProducer, DeliveryResult, FutureProducer, FutureRecord, Producer, ProducerContext,
};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::util::Timeout;

use crate::StreamError;
use crate::alert::OutMessage;
use crate::broker::{Committer, Position, Record, Sink, Source};
use crate::redis::StartFrom;

/// How long [`KafkaSource::check_connection`] and [`KafkaSink::check_connection`] wait for
/// the brokers before going on (an unreachable broker is retried in the background).
pub const CONNECT_CHECK: Duration = Duration::from_secs(10);

/// The connection check's librdkafka context: logs errors as the default one does, but keeps
/// the last one that retrying cannot mend (TLS, authentication), with librdkafka's reason.
#[derive(Clone, Default)]
struct KafkaContext {
    refused: Arc<Mutex<Option<String>>>,
}

impl KafkaContext {
    fn refused(&self) -> Option<String> {
        self.refused
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

impl ClientContext for KafkaContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        // The check's client is a producer made of a consumer's settings too: librdkafka's
        // "is a consumer property and will be ignored" warnings are not the user's concern.
        if fac != "CONFWARN" {
            DefaultClientContext.log(level, fac, log_message);
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let permanent = matches!(
            error.rdkafka_error_code(),
            Some(
                RDKafkaErrorCode::SSL
                    | RDKafkaErrorCode::Authentication
                    | RDKafkaErrorCode::SaslAuthenticationFailed
            )
        );
        if permanent {
            *self
                .refused
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(reason.to_string());
        } else {
            DefaultClientContext.error(error, reason);
        }
    }
}

/// The check sends no message.
impl ProducerContext for KafkaContext {
    type DeliveryOpaque = ();

    fn delivery(&self, _: &DeliveryResult<'_>, (): ()) {}
}

/// Checks, with a short-lived client of the same settings, that the brokers of `config`
/// accept a connection: waits up to `wait` for `topic`'s metadata. A TLS or authentication
/// failure is an error carrying librdkafka's reason; brokers that do not answer in time only
/// get a warning (they are retried in the background, as when they go away later).
async fn check_connection(
    config: &ClientConfig,
    topic: &str,
    wait: Duration,
) -> Result<(), StreamError> {
    let brokers = config
        .get("bootstrap.servers")
        .unwrap_or_default()
        .to_string();
    let topic = topic.to_string();
    let context = KafkaContext::default();
    let producer: BaseProducer<KafkaContext> = config.create_with_context(context.clone())?;
    let deadline = Instant::now() + wait;
    let reached = tokio::task::spawn_blocking(move || {
        let step = Duration::from_millis(250);
        loop {
            // Serves the error events, which is where a refused handshake shows.
            producer.poll(step);
            if let Some(reason) = context.refused() {
                return Err(reason);
            }
            if producer.client().fetch_metadata(Some(&topic), step).is_ok() {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
        }
    })
    .await?;
    match reached {
        Ok(true) => Ok(()),
        Ok(false) => {
            tracing::warn!(
                brokers,
                wait_s = wait.as_secs(),
                "the Kafka brokers did not answer yet; retrying in the background"
            );
            Ok(())
        }
        Err(reason) => Err(StreamError::Config(format!(
            "cannot connect to the Kafka brokers at {brokers}: {reason}"
        ))),
    }
}

/// Options of a Kafka consumer.
#[derive(Debug, Clone)]
pub struct KafkaSourceConfig {
    pub group: String,
    /// `client.id`, shown in the group's member list.
    pub client_id: String,
    pub start: StartFrom,
    /// How long one poll waits for the first message of a batch.
    pub poll_wait: Duration,
    /// Extra librdkafka settings (`key=value`), applied last.
    pub extra: Vec<(String, String)>,
}

/// A consumer in a Kafka consumer group, on one topic.
#[derive(derive_more::Debug)]
pub struct KafkaSource {
    #[debug(skip)]
    consumer: Arc<StreamConsumer>,
    topic: String,
    #[debug(skip)]
    poll_wait: Duration,
    #[debug(skip)]
    config: ClientConfig,
}

impl KafkaSource {
    /// Creates the consumer and subscribes to `topic`.
    ///
    /// # Errors
    /// An invalid setting (the consumer connects lazily: an unreachable broker shows up
    /// as read errors, retried).
    pub fn connect(
        brokers: &str,
        topic: &str,
        config: KafkaSourceConfig,
    ) -> Result<Self, StreamError> {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", brokers)
            .set("group.id", &config.group)
            .set("client.id", &config.client_id)
            .set("enable.auto.commit", "true")
            .set("enable.auto.offset.store", "false")
            .set("auto.commit.interval.ms", "1000")
            .set(
                "auto.offset.reset",
                match config.start {
                    StartFrom::Earliest => "earliest",
                    StartFrom::Latest => "latest",
                },
            )
            .set("queued.min.messages", "20000")
            // A fetch can bring more than queued.min.messages of one partition at once
            // (a broker filling the whole response from one partition does: tansu returns
            // up to 5 MB, ~24,000 of the benchmark's events); librdkafka then pauses that
            // partition's fetching for fetch.queue.backoff.ms, 1 s by default, during which
            // a fast pipeline drains its queue and waits: with the default, that paces
            // Kafka throughput at ~24,000 events a second. Re-checking every 20 ms costs
            // nothing.
            .set("fetch.queue.backoff.ms", "20")
            .set("fetch.wait.max.ms", "50");
        for (k, v) in &config.extra {
            c.set(k, v);
        }
        let consumer: StreamConsumer = c.create()?;
        consumer.subscribe(&[topic])?;
        Ok(Self {
            consumer: Arc::new(consumer),
            topic: topic.to_string(),
            poll_wait: config.poll_wait,
            config: c,
        })
    }

    /// Waits up to `wait` for the brokers to accept a connection (see the module's
    /// "Connecting").
    ///
    /// # Errors
    /// A TLS handshake or an authentication that fails, with librdkafka's reason.
    pub async fn check_connection(&self, wait: Duration) -> Result<(), StreamError> {
        check_connection(&self.config, &self.topic, wait).await
    }
}

fn record(m: &rdkafka::message::BorrowedMessage<'_>, received: Instant) -> Record {
    Record {
        key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
        payload: Ok(m.payload().unwrap_or_default().to_vec()),
        position: Position::Kafka {
            partition: m.partition(),
            offset: m.offset(),
        },
        received,
    }
}

#[async_trait]
impl Source for KafkaSource {
    async fn next_batch(&mut self, max: usize) -> Result<Vec<Record>, StreamError> {
        let first = match tokio::time::timeout(self.poll_wait, self.consumer.recv()).await {
            Err(_) => return Ok(Vec::new()),
            Ok(m) => m?,
        };
        let now = Instant::now();
        let mut out = Vec::with_capacity(max.min(4096));
        out.push(record(&first, now));
        drop(first);
        while out.len() < max {
            // Only what librdkafka has already fetched: never wait here.
            match self.consumer.recv().now_or_never() {
                Some(Ok(m)) => out.push(record(&m, now)),
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "kafka read error inside a batch");
                    break;
                }
                None => break,
            }
        }
        Ok(out)
    }

    fn committer(&self) -> Box<dyn Committer> {
        Box::new(KafkaCommitter {
            consumer: Arc::clone(&self.consumer),
            topic: self.topic.clone(),
        })
    }
}

struct KafkaCommitter {
    consumer: Arc<StreamConsumer>,
    topic: String,
}

#[async_trait]
impl Committer for KafkaCommitter {
    async fn commit(&self, positions: &[Position]) -> Result<(), StreamError> {
        let mut highest: BTreeMap<i32, i64> = BTreeMap::new();
        for p in positions {
            if let Position::Kafka { partition, offset } = p {
                let e = highest.entry(*partition).or_insert(*offset);
                *e = (*e).max(*offset);
            }
        }
        for (partition, offset) in highest {
            // librdkafka stores offset + 1: the next one to read.
            match self.consumer.store_offset(&self.topic, partition, offset) {
                Ok(()) => {}
                Err(e) if e.rdkafka_error_code() == Some(RDKafkaErrorCode::State) => {
                    tracing::info!(
                        partition,
                        offset,
                        "partition reassigned before its batch was committed; its new owner processes it again"
                    );
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    async fn lag(&self) -> Option<u64> {
        let consumer = Arc::clone(&self.consumer);
        let topic = self.topic.clone();
        tokio::task::spawn_blocking(move || {
            let position = consumer.position().ok()?;
            let mut lag = 0u64;
            for e in position.elements_for_topic(&topic) {
                let (low, high) = consumer
                    .fetch_watermarks(
                        &topic,
                        e.partition(),
                        Timeout::After(Duration::from_secs(2)),
                    )
                    .ok()?;
                // No committed position yet: the group starts at the oldest message.
                let at = match e.offset() {
                    rdkafka::Offset::Offset(o) => o,
                    _ => low,
                };
                lag += (high - at).max(0) as u64;
            }
            Some(lag)
        })
        .await
        .ok()
        .flatten()
    }

    async fn close(&self) {
        let consumer = Arc::clone(&self.consumer);
        let committed =
            tokio::task::spawn_blocking(move || consumer.commit_consumer_state(CommitMode::Sync))
                .await;
        match committed {
            Ok(Ok(()))
            | Ok(Err(rdkafka::error::KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset))) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot commit the last offsets; they will be processed again")
            }
            Err(e) => tracing::warn!(error = %e, "offset commit task failed"),
        }
    }
}

/// Writes messages to a topic and waits for their delivery reports.
#[derive(derive_more::Debug)]
pub struct KafkaSink {
    #[debug(skip)]
    producer: FutureProducer,
    #[debug(skip)]
    topic: String,
    display: String,
    #[debug(skip)]
    config: ClientConfig,
}

impl KafkaSink {
    /// A producer for `topic` (`extra`: librdkafka settings, applied last).
    ///
    /// # Errors
    /// An invalid setting.
    pub fn new(
        brokers: &str,
        topic: &str,
        display: String,
        extra: &[(String, String)],
    ) -> Result<Self, StreamError> {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", brokers)
            .set("linger.ms", "5")
            .set("batch.num.messages", "10000")
            .set("queue.buffering.max.messages", "200000")
            .set("message.timeout.ms", "30000");
        for (k, v) in extra {
            c.set(k, v);
        }
        Ok(Self {
            producer: c.create()?,
            topic: topic.to_string(),
            display,
            config: c,
        })
    }

    /// Waits up to `wait` for the brokers to accept a connection (see the module's
    /// "Connecting").
    ///
    /// # Errors
    /// A TLS handshake or an authentication that fails, with librdkafka's reason.
    pub async fn check_connection(&self, wait: Duration) -> Result<(), StreamError> {
        check_connection(&self.config, &self.topic, wait).await
    }
}

#[async_trait]
impl Sink for KafkaSink {
    async fn write(&self, messages: &[OutMessage]) -> Result<(), StreamError> {
        let mut deliveries = Vec::with_capacity(messages.len());
        for m in messages {
            let mut record: FutureRecord<'_, str, [u8]> =
                FutureRecord::to(&self.topic).payload(&m.payload);
            if let Some(k) = &m.key {
                record = record.key(k.as_str());
            }
            loop {
                match self.producer.send_result(record) {
                    Ok(delivery) => {
                        deliveries.push(delivery);
                        break;
                    }
                    Err((
                        rdkafka::error::KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull),
                        r,
                    )) => {
                        // The producer's queue is full: let deliveries drain (back-pressure).
                        record = r;
                        tokio::time::sleep(Duration::from_millis(2)).await;
                    }
                    Err((e, _)) => return Err(e.into()),
                }
            }
        }
        for d in deliveries {
            match d.await {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => return Err(e.into()),
                Err(_) => {
                    return Err(StreamError::KafkaDelivery(
                        "the producer dropped a delivery report".into(),
                    ));
                }
            }
        }
        Ok(())
    }

    fn describe(&self) -> String {
        self.display.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect()
    }

    fn source_config(extra: Vec<(String, String)>) -> KafkaSourceConfig {
        KafkaSourceConfig {
            group: "g".into(),
            client_id: "c".into(),
            start: StartFrom::Earliest,
            poll_wait: Duration::from_millis(10),
            extra,
        }
    }

    #[tokio::test]
    async fn tls_and_sasl_plain_and_scram_settings_make_clients() {
        for mechanism in ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] {
            let extra = settings(&[
                ("security.protocol", "SASL_SSL"),
                ("sasl.mechanisms", mechanism),
                ("sasl.username", "alice"),
                ("sasl.password", "secret"),
                ("ssl.endpoint.identification.algorithm", "https"),
            ]);
            KafkaSource::connect("127.0.0.1:9", "events", source_config(extra.clone()))
                .unwrap_or_else(|e| panic!("a SASL_SSL {mechanism} consumer: {e}"));
            KafkaSink::new("127.0.0.1:9", "alerts", "alerts".into(), &extra)
                .unwrap_or_else(|e| panic!("a SASL_SSL {mechanism} producer: {e}"));
        }
        let tls = settings(&[("security.protocol", "SSL")]);
        KafkaSource::connect("127.0.0.1:9", "events", source_config(tls)).expect("an SSL consumer");
    }

    #[tokio::test]
    async fn gssapi_is_refused_when_the_client_is_made() {
        let extra = settings(&[
            ("security.protocol", "SASL_SSL"),
            ("sasl.mechanisms", "GSSAPI"),
        ]);
        let err = KafkaSink::new("127.0.0.1:9", "alerts", "alerts".into(), &extra)
            .expect_err("GSSAPI is not built in");
        assert!(err.to_string().contains("GSSAPI"), "{err}");
    }
}
