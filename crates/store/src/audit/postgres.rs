//! The audit log's statements in Postgres, which must be told the type of a parameter
//! that is only compared with NULL.

use sqlx::Postgres;

use super::AuditDialect;

impl AuditDialect for Postgres {
    /// Postgres allows 65,535 bound values.
    const ROWS_PER_STATEMENT: usize = 1024;
    const SELECT_PAGE: &'static str = "SELECT * FROM audit_log \
        WHERE tenant = $1 AND ($2::TEXT IS NULL OR actor = $2) \
        AND ($3::TEXT IS NULL OR action = $3) AND ($4::BIGINT IS NULL OR outcome = $4) \
        AND ($5::TIMESTAMPTZ IS NULL OR created_at >= $5) \
        AND ($6::TIMESTAMPTZ IS NULL OR created_at < $6) \
        ORDER BY created_at DESC, id DESC LIMIT $7 OFFSET $8";
    const COUNT: &'static str = "SELECT COUNT(*) AS n FROM audit_log \
        WHERE tenant = $1 AND ($2::TEXT IS NULL OR actor = $2) \
        AND ($3::TEXT IS NULL OR action = $3) AND ($4::BIGINT IS NULL OR outcome = $4) \
        AND ($5::TIMESTAMPTZ IS NULL OR created_at >= $5) \
        AND ($6::TIMESTAMPTZ IS NULL OR created_at < $6)";
}
