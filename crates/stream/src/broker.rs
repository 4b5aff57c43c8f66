//! The broker interface: a [`Source`] of events read in batches through a consumer group,
//! a [`Committer`] that acknowledges them once their alerts are written, and a [`Sink`]
//! that writes messages and returns once the broker holds them.
//!
//! At-least-once rests on the order of these calls in the pipeline: read → write every
//! alert and dead letter of the batch → commit the batch. A crash between the write and the
//! commit re-delivers the batch (duplicate alerts, never a lost event).

use std::time::Instant;

use async_trait::async_trait;

use crate::StreamError;
use crate::alert::OutMessage;

/// Where an event sits in its stream, to acknowledge it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Position {
    /// A Redis stream entry id (`1700000000000-0`).
    Redis(String),
    /// A Kafka partition and offset.
    Kafka { partition: i32, offset: i64 },
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Redis(id) => write!(f, "entry {id}"),
            Self::Kafka { partition, offset } => write!(f, "partition {partition} offset {offset}"),
        }
    }
}

/// One event as read from the broker.
#[derive(Debug, Clone)]
pub struct Record {
    /// The broker message's key, if any (Redis: the entry's `key` field).
    pub key: Option<String>,
    /// The message body, or why the broker message has none we can read (a Redis entry
    /// without a `value` field, an entry deleted before it was processed).
    pub payload: Result<Vec<u8>, String>,
    pub position: Position,
    /// When this process read it (for `processing_time_ms` and the latency histogram).
    pub received: Instant,
}

/// Events read through a consumer group.
#[async_trait]
pub trait Source: Send {
    /// Up to `max` events, in stream order per partition. Waits a bounded time (about a
    /// second) for new events and returns an empty batch if none came.
    ///
    /// # Errors
    /// The broker failed; the caller waits and calls again.
    async fn next_batch(&mut self, max: usize) -> Result<Vec<Record>, StreamError>;

    /// The handle that acknowledges what this source read.
    fn committer(&self) -> Box<dyn Committer>;
}

/// Acknowledges processed events (Redis XACK, Kafka offset commit).
#[async_trait]
pub trait Committer: Send + Sync {
    /// Marks these events processed. Positions come in the order they were read.
    ///
    /// # Errors
    /// The broker failed; the events will be delivered again.
    async fn commit(&self, positions: &[Position]) -> Result<(), StreamError>;

    /// Events in the stream not yet delivered to this group (`None` when unknown).
    async fn lag(&self) -> Option<u64>;

    /// Flushes pending commits before the process exits.
    async fn close(&self) {}
}

/// Writes messages to one stream or topic.
#[async_trait]
pub trait Sink: Send + Sync {
    /// Writes `messages` in order and returns once the broker has them all.
    ///
    /// # Errors
    /// The broker failed or refused; some messages may have been written (they will be
    /// written again when the batch is retried).
    async fn write(&self, messages: &[OutMessage]) -> Result<(), StreamError>;

    /// Where it writes, for logs (no credentials).
    fn describe(&self) -> String;
}
