//! The audit log's statements in SQLite.

use sqlx::Sqlite;

use super::AuditDialect;

impl AuditDialect for Sqlite {
    /// SQLite allows 32,766 bound values.
    const ROWS_PER_STATEMENT: usize = 512;
    const SELECT_PAGE: &'static str = "SELECT * FROM audit_log \
        WHERE tenant = $1 AND ($2 IS NULL OR actor = $2) AND ($3 IS NULL OR action = $3) \
        AND ($4 IS NULL OR outcome = $4) AND ($5 IS NULL OR created_at >= $5) \
        AND ($6 IS NULL OR created_at < $6) ORDER BY created_at DESC, id DESC LIMIT $7 OFFSET $8";
    const COUNT: &'static str = "SELECT COUNT(*) AS n FROM audit_log \
        WHERE tenant = $1 AND ($2 IS NULL OR actor = $2) AND ($3 IS NULL OR action = $3) \
        AND ($4 IS NULL OR outcome = $4) AND ($5 IS NULL OR created_at >= $5) \
        AND ($6 IS NULL OR created_at < $6)";
}
