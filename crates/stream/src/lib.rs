//! # pynomaly-stream: streaming detection
//!
//! `pynomaly stream` reads JSON events from a Redis stream (one server or a Redis Cluster)
//! or a Kafka topic through a consumer group, scores each with an anomaly detector and
//! writes one alert per event (the message of the Python streaming loop ML engineers use,
//! see [`alert`]) to another stream or topic, at least once and in order per partition.
//!
//! - [`broker`]: the [`Source`]/[`Committer`]/[`Sink`] traits; [`redis`] and `kafka`
//!   (feature `kafka`) implement them.
//! - [`features`]: JSON event → feature vector (every numeric field, or explicit paths).
//! - [`alert`]: the alert and dead-letter messages.
//! - [`model`]: a registry model kept at its production version, or online learning
//!   with a warm-up window, sliding-window refits off the hot path and checkpoints.
//! - [`pipeline`]: read → score → write → commit, bounded, ordered, drained on shutdown;
//!   `scan` (private) is its fast path, reading an event's features straight from its
//!   bytes when nothing in it needs masking.
//! - [`metrics`]: Prometheus metrics and `/health`.
//! - [`endpoint`]: `redis://host:6379/stream`, `redis+cluster://host:7000,host:7001/stream`
//!   (a Redis Cluster) and `kafka://host:9092/topic` URLs.

pub mod alert;
pub mod broker;
pub mod endpoint;
mod error;
pub mod features;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod metrics;
pub mod model;
pub mod pipeline;
pub mod redis;
mod scan;

pub use broker::{Committer, Position, Record, Sink, Source};
pub use endpoint::Endpoint;
pub use error::StreamError;
pub use features::Features;
pub use metrics::StreamMetrics;
pub use model::{
    ActiveModel, CheckpointStore, ModelSlot, OnlineConfig, OnlineLearner, RegistryModel,
};
pub use pipeline::{Pipeline, PipelineConfig, Scoring, Summary};
