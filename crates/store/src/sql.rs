//! What the SQLite and Postgres stores share: the [`Dialect`] abstraction, the helpers that
//! run a statement and read its rows back, and [`SqlStore`], through which every aggregate
//! store trait (and `MetadataStore`) is implemented once for both backends.
//!
//! The dialects store text, integers, reals and flags alike; they differ in how they store a
//! timestamp (RFC 3339 text, `TIMESTAMPTZ`), a JSON document (text, `JSONB`) and a list of
//! scopes (comma-separated text, `TEXT[]`), which [`Dialect`] converts, and in a few
//! statements, which each aggregate keeps in its own `sqlite.rs` and `postgres.rs`.
//!
//! sqlx encodes and decodes `String`, `i64`, … for each database, but code generic over a
//! `sqlx::Database` cannot see that. [`Binds`], [`Reads`] and [`PoolExecutor`] state it as
//! bounds of [`Dialect`], checked once where each database implements it, so the shared code
//! needs no `where` clause of its own.

use std::fmt::Debug;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::query::Query;
use sqlx::query_builder::Separated;
use sqlx::{ColumnIndex, Database, Decode, Encode, Executor, IntoArguments, Pool, Row, Type};

use crate::{Scope, StoreError};

/// A statement with the values bound so far.
pub type Statement<'q, DB> = Query<'q, DB, <DB as Database>::Arguments>;

/// The database binds a `T` as sqlx encodes it.
pub trait Binds<T>: Database {
    /// Binds the statement's next parameter.
    fn bind_to(statement: Statement<'_, Self>, value: T) -> Statement<'_, Self>;
    /// Binds the next parameter of a row of a multi-row `VALUES` list.
    fn push_bind_to(values: &mut Separated<'_, Self, &'static str>, value: T);
}

impl<'t, DB: Database, T: Encode<'t, DB> + Type<DB>> Binds<T> for DB {
    fn bind_to(statement: Statement<'_, Self>, value: T) -> Statement<'_, Self> {
        statement.bind(value)
    }

    fn push_bind_to(values: &mut Separated<'_, Self, &'static str>, value: T) {
        values.push_bind(value);
    }
}

/// `statement.arg(value)`: [`Query::bind`] (and `push_bind` in a `VALUES` list) for code
/// generic over the [`Dialect`].
pub trait Arg<DB>: Sized {
    /// Binds the next parameter.
    fn arg<T>(self, value: T) -> Self
    where
        DB: Binds<T>;
}

impl<DB: Database> Arg<DB> for Statement<'_, DB> {
    fn arg<T>(self, value: T) -> Self
    where
        DB: Binds<T>,
    {
        DB::bind_to(self, value)
    }
}

impl<DB: Database> Arg<DB> for &mut Separated<'_, DB, &'static str> {
    fn arg<T>(self, value: T) -> Self
    where
        DB: Binds<T>,
    {
        DB::push_bind_to(&mut *self, value);
        self
    }
}

/// The row decodes a `T` from a column named by its name.
pub trait Reads<T>: Row {
    /// The column's value.
    ///
    /// # Errors
    /// No such column, or its value is not a `T`.
    fn read(&self, column: &str) -> Result<T, sqlx::Error>;
}

impl<R: Row, T> Reads<T> for R
where
    T: for<'r> Decode<'r, R::Database> + Type<R::Database>,
    for<'c> &'c str: ColumnIndex<R>,
{
    fn read(&self, column: &str) -> Result<T, sqlx::Error> {
        self.try_get(column)
    }
}

/// A pool of the database runs statements (as every sqlx pool does).
pub trait PoolExecutor: Database {
    /// The pool as an executor.
    fn executor(pool: &Pool<Self>) -> impl Executor<'_, Database = Self> + Copy;
}

impl<DB: Database> PoolExecutor for DB
where
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
{
    fn executor(pool: &Pool<DB>) -> impl Executor<'_, Database = DB> + Copy {
        pool
    }
}

/// A SQL database the stores run on: SQLite or Postgres, each implementing this beside its
/// store (`src/sqlite.rs`, `src/postgres.rs`).
pub trait Dialect:
    Database<
        Row: Reads<String>
                 + Reads<Option<String>>
                 + Reads<i64>
                 + Reads<Option<i64>>
                 + Reads<f64>
                 + Reads<bool>,
        Arguments: IntoArguments<Self>,
    > + for<'a> Binds<&'a str>
    + for<'a> Binds<Option<&'a str>>
    + Binds<i64>
    + Binds<Option<i64>>
    + Binds<f64>
    + Binds<bool>
    + PoolExecutor
{
    /// A timestamp, or NULL, as the database stores it.
    type Timestamp: for<'q> Encode<'q, Self> + Type<Self> + Send;
    /// A JSON document, or NULL, as the database stores it.
    type Json: for<'q> Encode<'q, Self> + Type<Self> + Send;
    /// A key's or user's scopes as the database stores them.
    type Scopes: for<'q> Encode<'q, Self> + Type<Self> + Send;

    /// A timestamp to bind, rounded to the microseconds both databases keep, so that a
    /// value read back equals the one written.
    fn timestamp(t: Option<DateTime<Utc>>) -> Self::Timestamp;
    /// A JSON document to bind.
    fn json(v: Option<&Value>) -> Self::Json;
    /// Scopes to bind.
    fn scopes(scopes: &[Scope]) -> Self::Scopes;

    /// Reads a timestamp column; `column` is `table.column` (the error names it, the row
    /// is read by the part after the dot).
    ///
    /// # Errors
    /// No such column, or a value that is not a timestamp ([`StoreError::Corrupt`]).
    fn read_timestamp(
        row: &Self::Row,
        column: &'static str,
    ) -> Result<Option<DateTime<Utc>>, StoreError>;
    /// Reads a JSON column, as [`Dialect::read_timestamp`].
    ///
    /// # Errors
    /// No such column, or a value that is not JSON ([`StoreError::Corrupt`]).
    fn read_json(row: &Self::Row, column: &'static str) -> Result<Option<Value>, StoreError>;
    /// Reads a scopes column, as [`Dialect::read_timestamp`]; unknown scopes are dropped.
    ///
    /// # Errors
    /// No such column.
    fn read_scopes(row: &Self::Row, column: &'static str) -> Result<Vec<Scope>, StoreError>;

    /// How many rows a statement changed (each driver's result type has its own method:
    /// sqlx has no trait for it).
    fn rows_affected(result: &Self::QueryResult) -> u64;

    /// The current time, to bind.
    fn now() -> Self::Timestamp {
        Self::timestamp(Some(Utc::now()))
    }
}

/// The column of a `table.column` name.
pub fn column_name(column: &str) -> &str {
    column.rsplit_once('.').map_or(column, |(_, name)| name)
}

/// A `NOT NULL` timestamp column.
///
/// # Errors
/// As [`Dialect::read_timestamp`], and [`StoreError::Corrupt`] for a NULL.
pub fn required_timestamp<DB: Dialect>(
    row: &DB::Row,
    column: &'static str,
) -> Result<DateTime<Utc>, StoreError> {
    DB::read_timestamp(row, column)?.ok_or(StoreError::Corrupt {
        column,
        reason: "NULL".into(),
    })
}

/// A `NOT NULL` JSON column.
///
/// # Errors
/// As [`Dialect::read_json`], and [`StoreError::Corrupt`] for a NULL.
pub fn required_json<DB: Dialect>(
    row: &DB::Row,
    column: &'static str,
) -> Result<Value, StoreError> {
    DB::read_json(row, column)?.ok_or(StoreError::Corrupt {
        column,
        reason: "NULL".into(),
    })
}

/// A record read back from a row the same way in both dialects.
pub trait Record: Sized {
    /// The record in `row`.
    ///
    /// # Errors
    /// A column is missing or holds a value the record cannot have.
    fn from_row<DB: Dialect>(row: &DB::Row) -> Result<Self, StoreError>;
}

/// What a statement's rows are read back as: one record (a statement that returns no row
/// is [`sqlx::Error::RowNotFound`]), at most one, all of them, or a [`Count`].
pub trait FromRows<DB: Dialect>: Sized {
    /// The rows as `Self`.
    ///
    /// # Errors
    /// No row where one is needed, or a row a record cannot be read from.
    fn from_rows(rows: &[DB::Row]) -> Result<Self, StoreError>;
}

impl<DB: Dialect, R: Record> FromRows<DB> for R {
    fn from_rows(rows: &[DB::Row]) -> Result<Self, StoreError> {
        R::from_row::<DB>(rows.first().ok_or(sqlx::Error::RowNotFound)?)
    }
}

impl<DB: Dialect, R: Record> FromRows<DB> for Option<R> {
    fn from_rows(rows: &[DB::Row]) -> Result<Self, StoreError> {
        rows.first().map(R::from_row::<DB>).transpose()
    }
}

impl<DB: Dialect, R: Record> FromRows<DB> for Vec<R> {
    fn from_rows(rows: &[DB::Row]) -> Result<Self, StoreError> {
        rows.iter().map(R::from_row::<DB>).collect()
    }
}

/// The count in column `n` of a statement's one row (`SELECT COUNT(*) AS n …`).
#[derive(Debug, Clone, Copy)]
pub struct Count(pub i64);

impl<DB: Dialect> FromRows<DB> for Count {
    fn from_rows(rows: &[DB::Row]) -> Result<Self, StoreError> {
        let row = rows.first().ok_or(sqlx::Error::RowNotFound)?;
        Ok(Count(row.read("n")?))
    }
}

/// Runs a statement and reads its rows back as a `T` (the type asked for says how many
/// rows are expected).
pub async fn fetch<'c, DB: Dialect, T: FromRows<DB>>(
    db: impl Executor<'c, Database = DB>,
    statement: Statement<'_, DB>,
) -> Result<T, StoreError> {
    T::from_rows(&statement.fetch_all(db).await?)
}

/// Runs a statement and tells whether it changed a row.
pub async fn execute_changed<'c, DB: Dialect>(
    db: impl Executor<'c, Database = DB>,
    statement: Statement<'_, DB>,
) -> Result<bool, StoreError> {
    Ok(DB::rows_affected(&statement.execute(db).await?) > 0)
}

/// Whether the database refused a write for a unique constraint.
pub fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

/// Sets a timestamp column of one of the tenant's rows to now unless it is set already
/// (revoking a key, disabling a user): `sql` binds the tenant as `$1`, the row's id as `$2`
/// and now as `$3`. `false` when the tenant has no such row.
pub async fn stamp_once<'c, DB: Dialect>(
    db: impl Executor<'c, Database = DB>,
    sql: &'static str,
    tenant: &str,
    id: &str,
) -> Result<bool, StoreError> {
    execute_changed(db, sqlx::query(sql).arg(tenant).arg(id).arg(DB::now())).await
}

/// `e`, or [`StoreError::Conflict`] with `message` when it is a unique violation.
pub fn conflict_if_unique(e: StoreError, message: impl FnOnce() -> String) -> StoreError {
    match e {
        StoreError::Database(e) if is_unique_violation(&e) => StoreError::Conflict(message()),
        e => e,
    }
}

/// A store over a pool of one [`Dialect`] ([`crate::SqliteStore`], [`crate::PostgresStore`]):
/// every aggregate store trait is implemented once for all of them.
pub trait SqlStore: Send + Sync + Debug {
    /// The database. The aggregates whose statements differ per database ask for their
    /// own dialect trait of it (`AuditDialect`, `ModelDialect`, `JobDialect`).
    type Db: Dialect;

    /// The connection pool.
    fn pool(&self) -> &Pool<Self::Db>;

    /// The pool, to run statements on.
    fn db(&self) -> impl Executor<'_, Database = Self::Db> + Copy {
        Self::Db::executor(self.pool())
    }
}
