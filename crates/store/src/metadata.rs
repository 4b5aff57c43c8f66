//! The metadata store trait: what the service asks of its database, as the combination of
//! one trait per aggregate ([`KeyStore`], [`UserStore`], [`AuditStore`], [`ModelStore`],
//! [`JobStore`], [`JobDeliveryStore`]) and what concerns the connection itself.
//!
//! Calling an aggregate's method through a [`DynMetadataStore`] takes that aggregate's
//! trait in scope (`use pynomaly_store::JobStore;`).

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;

use crate::audit::{AuditDialect, AuditStore};
use crate::jobs::{JobDeliveryStore, JobDialect, JobStore};
use crate::keys::KeyStore;
use crate::models::{ModelDialect, ModelStore};
use crate::sql::SqlStore;
use crate::users::UserStore;
use crate::{PoolStats, StoreError};

/// A shared, dynamically chosen metadata store (SQLite now, Postgres with `DATABASE_URL`).
pub type DynMetadataStore = Arc<dyn MetadataStore>;

/// Models, model versions, jobs, API keys, users and the audit log, every one scoped by
/// tenant (usernames excepted: they are unique across tenants).
///
/// Implementations must be safe to share between API instances and workers: version
/// numbering, job claiming and job finishing are atomic in the database, not in memory.
#[async_trait]
pub trait MetadataStore:
    KeyStore
    + UserStore
    + AuditStore
    + ModelStore
    + JobStore
    + JobDeliveryStore
    + Send
    + Sync
    + std::fmt::Debug
{
    /// Round trip to the database, for health checks.
    async fn ping(&self) -> Result<Duration, StoreError>;

    /// Closes the connections, waiting for them to be returned.
    async fn close(&self) {}

    /// The connection pool's use now, for metrics (`None`: no pool).
    fn pool_stats(&self) -> Option<PoolStats> {
        None
    }
}

/// Both SQL stores, through what they share ([`SqlStore`]).
#[async_trait]
impl<S> MetadataStore for S
where
    S: SqlStore,
    S::Db: AuditDialect + ModelDialect + JobDialect,
{
    async fn ping(&self) -> Result<Duration, StoreError> {
        let start = Instant::now();
        sqlx::query::<S::Db>("SELECT 1").execute(self.db()).await?;
        Ok(start.elapsed())
    }

    async fn close(&self) {
        self.pool().close().await;
    }

    fn pool_stats(&self) -> Option<PoolStats> {
        let pool = self.pool();
        Some(PoolStats {
            open: pool.size(),
            idle: u32::try_from(pool.num_idle()).unwrap_or(u32::MAX),
            max: pool.options().get_max_connections(),
        })
    }
}
