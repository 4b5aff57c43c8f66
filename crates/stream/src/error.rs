//! The crate's error type.

use thiserror::Error;

/// What can stop a stream process or one of its brokers' calls.
#[derive(Debug, Error)]
pub enum StreamError {
    /// A `--source`/`--sink`/`--dead-letter` URL or another option the user gave.
    #[error("{0}")]
    Config(String),
    #[error("redis: {0}")]
    Redis(#[from] deadpool_redis::redis::RedisError),
    /// No Redis connection could be had from the pool (timeout, closed pool).
    #[error("redis connection: {0}")]
    RedisPool(String),
    /// A Redis reply of an unexpected shape.
    #[error("unexpected reply from redis to {command}: {detail}")]
    RedisReply {
        command: &'static str,
        detail: String,
    },
    #[cfg(feature = "kafka")]
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// A Kafka message whose delivery report never came.
    #[cfg(feature = "kafka")]
    #[error("kafka delivery: {0}")]
    KafkaDelivery(String),
    #[error("model registry")]
    Registry(#[from] pynomaly_models::RegistryError),
    #[error("store")]
    Store(#[from] pynomaly_store::StoreError),
    #[error("model")]
    Detect(#[from] detect_core::DetectError),
    /// A registry model that does not exist.
    #[error("model {name:?} (tenant {tenant:?}) does not exist in the registry")]
    NoSuchModel { tenant: String, name: String },
    #[error("checkpoint {path}: {detail}")]
    Checkpoint { path: String, detail: String },
    #[error("cannot listen on {addr}")]
    Bind {
        addr: std::net::SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("a processing task failed")]
    Join(#[from] tokio::task::JoinError),
}

impl StreamError {
    /// Whether the error is the user's (a bad option or URL), for the CLI's exit status.
    pub fn is_input_error(&self) -> bool {
        matches!(self, Self::Config(_) | Self::NoSuchModel { .. })
    }
}
