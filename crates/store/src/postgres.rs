//! The scale-out metadata store: Postgres, shared by every API instance and worker.
//!
//! Same behaviour as [`SqliteStore`](crate::SqliteStore) (one test suite runs against
//! both), in Postgres's own types (`TIMESTAMPTZ`, `JSONB`, `TEXT[]`: the [`Dialect`] here).
//! What differs is how atomicity is had when several processes write at once, in the
//! aggregates' `postgres.rs`:
//! - version numbering (`models/postgres.rs`) takes a transaction-scoped advisory lock on
//!   (tenant, name), so two instances training one name at once get versions `n` and
//!   `n + 1`, never a conflict;
//! - claiming the next job (`jobs/postgres.rs`) uses `FOR UPDATE SKIP LOCKED`, so claimers
//!   never wait on each other;
//! - `Idempotency-Key` deduplication (`jobs/postgres.rs`) rests on a unique index and
//!   `ON CONFLICT DO NOTHING`, so two instances receiving one retried submission create
//!   one job.
//!
//! Migrations (`migrations/postgres/`, embedded at compile time) run at start-up under a
//! session advisory lock ([`PostgresStore::migrate`]), so instances starting together apply
//! them once; `pynomaly migrate` runs the same function ahead of a deployment.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgQueryResult, PgRow};
use sqlx::{Connection, Postgres, Row};

use crate::sql::{Dialect, SqlStore, column_name};
use crate::{Scope, StoreError};

/// Key of the session advisory lock that serializes migrations across instances
/// (`pg_advisory_lock` takes a bigint: "pynomaly" in ASCII).
const MIGRATION_LOCK: i64 = 0x7079_6e6f_6d61_6c79;

/// Metadata in Postgres (chosen by `DATABASE_URL`).
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Connects (a pool of at most `max_connections`) and applies pending migrations.
    ///
    /// # Errors
    /// The URL is invalid, the database cannot be reached, or a migration fails.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        let store = Self::connect_without_migrating(url, max_connections).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// Connects without touching the schema (for `pynomaly migrate`, and for processes
    /// that must not migrate).
    ///
    /// # Errors
    /// The URL is invalid or the database cannot be reached.
    pub async fn connect_without_migrating(
        url: &str,
        max_connections: u32,
    ) -> Result<Self, StoreError> {
        let options: PgConnectOptions = url.parse()?;
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(1))
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options)
            .await?;
        Ok(Self { pool })
    }

    /// Applies the pending migrations under a session advisory lock, so that instances
    /// starting together wait for each other and each migration runs once. Returns how
    /// many were applied.
    ///
    /// # Errors
    /// A migration fails, or the lock or database cannot be reached.
    pub async fn migrate(&self) -> Result<usize, StoreError> {
        let migrator = sqlx::migrate!("../../migrations/postgres");
        let mut conn = self.pool.acquire().await?;
        sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(MIGRATION_LOCK)
            .execute(&mut *conn)
            .await?;
        // On a first run the migrations table does not exist yet: nothing applied.
        let applied_before: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations WHERE success")
                .fetch_one(&mut *conn)
                .await
                .unwrap_or_default();
        let ran = migrator.run(&mut *conn).await;
        let unlocked = sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(MIGRATION_LOCK)
            .execute(&mut *conn)
            .await;
        ran?;
        if unlocked.is_err() {
            // A session lock dies with its connection: do not return this one to the pool.
            let _ = conn.detach().close().await;
        }
        let total = migrator.iter().count();
        Ok(total.saturating_sub(usize::try_from(applied_before).unwrap_or(0)))
    }

    /// The pool (tests and tools).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

impl SqlStore for PostgresStore {
    type Db = Postgres;

    fn pool(&self) -> &PgPool {
        &self.pool
    }
}

/// Timestamps as `TIMESTAMPTZ`, JSON documents as `JSONB`, scopes as `TEXT[]`.
impl Dialect for Postgres {
    type Timestamp = Option<DateTime<Utc>>;
    type Json = Option<Value>;
    type Scopes = Vec<String>;

    fn timestamp(t: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
        // Postgres keeps microseconds: rounded here, a value read back equals the one
        // written (as SQLite's fixed-width text does).
        t.map(|t| DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap_or(t))
    }

    fn json(v: Option<&Value>) -> Option<Value> {
        v.cloned()
    }

    fn scopes(scopes: &[Scope]) -> Vec<String> {
        scopes.iter().map(|s| s.as_str().to_string()).collect()
    }

    fn read_timestamp(
        row: &PgRow,
        column: &'static str,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        Ok(row.try_get(column_name(column))?)
    }

    fn read_json(row: &PgRow, column: &'static str) -> Result<Option<Value>, StoreError> {
        Ok(row.try_get(column_name(column))?)
    }

    fn read_scopes(row: &PgRow, column: &'static str) -> Result<Vec<Scope>, StoreError> {
        let names: Vec<String> = row.try_get(column_name(column))?;
        Ok(names.iter().filter_map(|s| Scope::parse(s)).collect())
    }

    fn rows_affected(result: &PgQueryResult) -> u64 {
        result.rows_affected()
    }
}
