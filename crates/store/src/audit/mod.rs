//! The audit log: the [`AuditStore`] trait, and its one implementation for both SQL
//! dialects. What differs per dialect ([`AuditDialect`]: how many rows one statement may
//! append, and how the filter's parameters are typed) lives in `sqlite.rs` and
//! `postgres.rs` beside this file.

use async_trait::async_trait;

use crate::StoreError;
use crate::sql::{
    Arg, Count, Dialect, Reads, Record, SqlStore, Statement, fetch, required_timestamp,
};
use crate::types::{AuditEntry, AuditFilter, NewAuditEntry, Page};

mod postgres;
mod sqlite;

/// The audit log, append-only: there is no update or delete.
#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Appends rows, in as few statements as the database's limit on bound values allows.
    async fn append_audit(&self, entries: &[NewAuditEntry]) -> Result<(), StoreError>;
    /// The tenant's rows matching `filter`, newest first, with their total count.
    async fn list_audit(
        &self,
        tenant: &str,
        filter: &AuditFilter,
        page: Page,
    ) -> Result<(Vec<AuditEntry>, i64), StoreError>;
}

/// The audit log's statements that differ per dialect.
pub trait AuditDialect: Dialect {
    /// Rows appended per statement: the database's limit on bound values over the 8 a row
    /// binds.
    const ROWS_PER_STATEMENT: usize;
    /// The page of the tenant's rows matching a filter, newest first: `$1` tenant, `$2`
    /// actor, `$3` action, `$4` outcome, `$5` since, `$6` until (each NULL matches every
    /// row), `$7` limit, `$8` offset.
    const SELECT_PAGE: &'static str;
    /// How many of the tenant's rows match a filter (`$1` to `$6` as in
    /// [`AuditDialect::SELECT_PAGE`]), in column `n`.
    const COUNT: &'static str;
}

impl Record for AuditEntry {
    fn from_row<DB: Dialect>(row: &DB::Row) -> Result<Self, StoreError> {
        Ok(AuditEntry {
            id: row.read("id")?,
            tenant: row.read("tenant")?,
            actor: row.read("actor")?,
            action: row.read("action")?,
            resource: row.read("resource")?,
            outcome: row.read("outcome")?,
            request_id: row.read("request_id")?,
            client_addr: row.read("client_addr")?,
            created_at: required_timestamp::<DB>(row, "audit_log.created_at")?,
            detail: DB::read_json(row, "audit_log.detail")?,
        })
    }
}

/// Binds `$1` to `$6` of [`AuditDialect::SELECT_PAGE`] and [`AuditDialect::COUNT`].
fn filtered<'q, DB: Dialect>(
    statement: Statement<'q, DB>,
    tenant: &str,
    filter: &AuditFilter,
) -> Statement<'q, DB> {
    statement
        .arg(tenant)
        .arg(filter.actor.as_deref())
        .arg(filter.action.as_deref())
        .arg(filter.outcome)
        .arg(DB::timestamp(filter.since))
        .arg(DB::timestamp(filter.until))
}

#[async_trait]
impl<S> AuditStore for S
where
    S: SqlStore,
    S::Db: AuditDialect,
{
    async fn append_audit(&self, entries: &[NewAuditEntry]) -> Result<(), StoreError> {
        for chunk in entries.chunks(S::Db::ROWS_PER_STATEMENT) {
            let mut q = sqlx::QueryBuilder::<S::Db>::new(
                "INSERT INTO audit_log (tenant, actor, action, resource, outcome, request_id, \
                 client_addr, created_at, detail) ",
            );
            q.push_values(chunk, |mut row, e| {
                row.arg(e.tenant.as_str())
                    .arg(e.actor.as_str())
                    .arg(e.action.as_str())
                    .arg(e.resource.as_str())
                    .arg(e.outcome)
                    .arg(e.request_id.as_str())
                    .arg(e.client_addr.as_deref())
                    .arg(S::Db::timestamp(Some(e.created_at)))
                    .arg(S::Db::json(e.detail.as_ref()));
            });
            q.build().execute(self.db()).await?;
        }
        Ok(())
    }

    async fn list_audit(
        &self,
        tenant: &str,
        filter: &AuditFilter,
        page: Page,
    ) -> Result<(Vec<AuditEntry>, i64), StoreError> {
        let statement = filtered(sqlx::query(S::Db::SELECT_PAGE), tenant, filter)
            .arg(i64::from(page.limit))
            .arg(i64::from(page.offset));
        let entries = fetch(self.db(), statement).await?;
        let count = filtered(sqlx::query(S::Db::COUNT), tenant, filter);
        let Count(total) = fetch(self.db(), count).await?;
        Ok((entries, total))
    }
}
