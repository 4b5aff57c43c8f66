//! The embedded metadata store: one SQLite file in the data directory.
//!
//! WAL journal so reads never wait for the writer, a busy timeout so concurrent writers
//! queue instead of failing, and every multi-step change written as one statement
//! (`INSERT … SELECT`, `UPDATE … WHERE id = (SELECT …) RETURNING`) so it is atomic without
//! an explicit transaction. Timestamps are stored as RFC 3339 text in UTC with a fixed
//! width, so they sort as text.
//!
//! This file opens the database and says how SQLite stores values (the [`Dialect`]); the
//! statements are in the aggregates' modules (`keys/`, `jobs/`, …), with what is SQLite's
//! own in their `sqlite.rs`.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::Value;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteQueryResult,
    SqliteRow,
};
use sqlx::{Row, Sqlite};

use crate::sql::{Dialect, SqlStore, column_name};
use crate::{Scope, StoreError};

/// Metadata in a SQLite database (the embedded default).
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if needed) `metadata.db` in `data_dir` and applies the migrations.
    ///
    /// # Errors
    /// The directory cannot be created, the database cannot be opened, or a migration fails.
    pub async fn open(data_dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir)?;
        let options = SqliteConnectOptions::new()
            .filename(data_dir.join("metadata.db"))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        Self::connect(options, 8).await
    }

    /// An in-memory database on one connection (for unit tests).
    ///
    /// # Errors
    /// As [`SqliteStore::open`].
    pub async fn in_memory() -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str("sqlite::memory:")?;
        // One connection: each connection to `:memory:` is its own database.
        Self::connect(options, 1).await
    }

    async fn connect(options: SqliteConnectOptions, max: u32) -> Result<Self, StoreError> {
        let pool = SqlitePoolOptions::new()
            .max_connections(max)
            .min_connections(1)
            .connect_with(options)
            .await?;
        sqlx::migrate!("../../migrations/sqlite").run(&pool).await?;
        Ok(Self { pool })
    }

    /// Closes the pool, waiting for connections to be returned.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

impl SqlStore for SqliteStore {
    type Db = Sqlite;

    fn pool(&self) -> &SqlitePool {
        &self.pool
    }
}

/// Timestamps as RFC 3339 text in UTC, microseconds, `Z`: fixed width, so they sort as
/// text; JSON documents as text; scopes comma-separated.
impl Dialect for Sqlite {
    type Timestamp = Option<String>;
    type Json = Option<String>;
    type Scopes = String;

    fn timestamp(t: Option<DateTime<Utc>>) -> Option<String> {
        t.map(|t| t.to_rfc3339_opts(SecondsFormat::Micros, true))
    }

    fn json(v: Option<&Value>) -> Option<String> {
        v.map(Value::to_string)
    }

    fn scopes(scopes: &[Scope]) -> String {
        let names: Vec<&str> = scopes.iter().map(|s| s.as_str()).collect();
        names.join(",")
    }

    fn read_timestamp(
        row: &SqliteRow,
        column: &'static str,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let text: Option<String> = row.try_get(column_name(column))?;
        text.map(|s| {
            DateTime::parse_from_rfc3339(&s)
                .map(|t| t.with_timezone(&Utc))
                .map_err(|e| corrupt(column, &e))
        })
        .transpose()
    }

    fn read_json(row: &SqliteRow, column: &'static str) -> Result<Option<Value>, StoreError> {
        let text: Option<String> = row.try_get(column_name(column))?;
        text.map(|s| serde_json::from_str(&s).map_err(|e| corrupt(column, &e)))
            .transpose()
    }

    fn read_scopes(row: &SqliteRow, column: &'static str) -> Result<Vec<Scope>, StoreError> {
        let text: String = row.try_get(column_name(column))?;
        Ok(text.split(',').filter_map(Scope::parse).collect())
    }

    fn rows_affected(result: &SqliteQueryResult) -> u64 {
        result.rows_affected()
    }
}

fn corrupt(column: &'static str, e: &dyn std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        column,
        reason: e.to_string(),
    }
}
