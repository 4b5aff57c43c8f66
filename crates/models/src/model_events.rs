//! Model changes announced across instances (Redis pub/sub), so that a model trained or
//! deleted through one API instance is served the same way by every instance at once.
//!
//! Each instance caches models in memory ([`ModelCache`](crate::ModelCache)). When one
//! registers a version or deletes a name, it publishes `{tenant, name}` on
//! `<prefix>:models`; every other instance drops its cached copies of that name, and its
//! next request reads the database and the artifact again (once per instance, see the
//! registry's deduplicated loads). Pub/sub delivers at most once: when the subscription
//! drops, the instance clears its whole cache once it is back, since it may have missed
//! announcements.
//!
//! On a Redis Cluster the channel is the same classic pub/sub channel: a `PUBLISH` on any
//! node is forwarded to every node by the cluster bus, so the subscription is one
//! connection to any seed node ([`RedisTarget::pubsub`], trying them in turn, again on
//! every reconnection). Sharded pub/sub (`SPUBLISH`) would spare the bus the forwarding,
//! but a model change is rare, and a classic subscription needs no RESP3 push routing.
//!
//! What a received change does is the [`ModelChangeSink`]'s business (the registry is
//! one), so this module knows Redis and the message, not the registry.

use std::sync::Arc;
use std::time::Duration;

use deadpool_redis::redis;
use futures::StreamExt;
use pynomaly_redis::{RedisPool, RedisTarget};
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Redis could not be reached or refused a command.
#[derive(Debug, thiserror::Error)]
pub enum ModelEventsError {
    #[error("model events (Redis) error")]
    Redis(#[from] redis::RedisError),
    #[error("model events (Redis) connection pool error")]
    Pool(#[from] deadpool_redis::PoolError),
}

/// What receives the changes announced by other instances.
pub trait ModelChangeSink: Send + Sync + 'static {
    /// Another instance changed the model `name` of `tenant`.
    fn changed(&self, tenant: &str, name: &str);
    /// The subscription was away: announcements may have been missed.
    fn missed_changes(&self);
}

#[derive(Debug, Serialize, Deserialize)]
struct Change {
    tenant: String,
    name: String,
    /// The announcing instance (it ignores its own announcements).
    origin: String,
}

/// Publishes and receives model changes on one Redis channel.
#[derive(derive_more::Debug)]
pub struct ModelEvents {
    target: RedisTarget,
    #[debug(skip)]
    pool: RedisPool,
    channel: String,
    origin: String,
}

impl ModelEvents {
    /// Model changes on the Redis (one server or a cluster) at `target`, channel
    /// `<prefix>:models`, published through `pool` (answering within a few seconds).
    pub fn new(target: RedisTarget, pool: RedisPool, prefix: &str) -> Arc<Self> {
        Arc::new(Self {
            target,
            pool,
            channel: format!("{prefix}:models"),
            origin: uuid::Uuid::new_v4().simple().to_string(),
        })
    }

    /// Announces that a model name changed. A failure is logged: the change itself is
    /// stored; only other instances' caches may stay stale until their next reload.
    pub async fn publish(&self, tenant: &str, name: &str) {
        let payload = match serde_json::to_string(&Change {
            tenant: tenant.into(),
            name: name.into(),
            origin: self.origin.clone(),
        }) {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "cannot encode a model change");
                return;
            }
        };
        let published: Result<i64, ModelEventsError> = async {
            let mut conn = self.pool.get().await?;
            Ok(redis::cmd("PUBLISH")
                .arg(&self.channel)
                .arg(payload)
                .query_async(&mut conn)
                .await?)
        }
        .await;
        if let Err(e) = published {
            tracing::warn!(error = %e, tenant, name, "could not announce a model change to other instances");
        }
    }

    /// Listens for other instances' changes and hands them to `sink`, until `shutdown`.
    /// Reconnects when the subscription drops (telling the sink it may have missed
    /// changes). Returns once subscribed, so a change announced after this returns is seen.
    pub async fn subscribe(
        self: Arc<Self>,
        sink: Arc<dyn ModelChangeSink>,
        shutdown: CancellationToken,
    ) -> JoinHandle<()> {
        let first = self.connect().await;
        if let Err(e) = &first {
            tracing::warn!(error = %e, "cannot subscribe to model changes yet; retrying");
        }
        tokio::spawn(async move {
            let mut pubsub = first.ok();
            loop {
                let mut current = match pubsub.take() {
                    Some(p) => p,
                    None => {
                        tokio::select! {
                            () = tokio::time::sleep(Duration::from_secs(1)) => {}
                            () = shutdown.cancelled() => return,
                        }
                        match self.connect().await {
                            Ok(p) => {
                                sink.missed_changes();
                                p
                            }
                            Err(e) => {
                                tracing::warn!(error = %e, "cannot subscribe to model changes");
                                continue;
                            }
                        }
                    }
                };
                let mut messages = current.on_message();
                loop {
                    let msg = tokio::select! {
                        msg = messages.next() => msg,
                        () = shutdown.cancelled() => return,
                    };
                    let Some(msg) = msg else {
                        tracing::warn!("model change subscription dropped; reconnecting");
                        break;
                    };
                    match serde_json::from_slice::<Change>(msg.get_payload_bytes()) {
                        Ok(change) if change.origin != self.origin => {
                            sink.changed(&change.tenant, &change.name);
                            tracing::debug!(
                                tenant = change.tenant,
                                name = change.name,
                                "model changed elsewhere"
                            );
                        }
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "unreadable model change"),
                    }
                }
            }
        })
    }

    async fn connect(&self) -> Result<redis::aio::PubSub, ModelEventsError> {
        let mut pubsub = self.target.pubsub().await?;
        pubsub.subscribe(&self.channel).await?;
        Ok(pubsub)
    }
}
