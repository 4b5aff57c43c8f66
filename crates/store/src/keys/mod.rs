//! API keys: the [`KeyStore`] trait, and its one implementation for both SQL dialects
//! (every statement reads the same in SQLite and Postgres; only how scopes and timestamps
//! are stored differs, which [`Dialect`] converts).

use async_trait::async_trait;

use crate::StoreError;
use crate::sql::{
    Arg, Count, Dialect, Reads, Record, SqlStore, conflict_if_unique, fetch, required_timestamp,
    stamp_once,
};
use crate::types::{ApiKey, NewApiKey};

/// API keys, scoped by tenant (a key's hash is unique across tenants).
#[async_trait]
pub trait KeyStore: Send + Sync {
    /// Stores a key and returns it with its id; [`StoreError::Conflict`] when a key with its
    /// hash exists.
    async fn create_api_key(&self, key: NewApiKey) -> Result<ApiKey, StoreError>;
    /// The key with this hash, active or not.
    async fn find_api_key_by_hash(&self, key_hash: &str) -> Result<Option<ApiKey>, StoreError>;
    /// The key with this id in any tenant, active or not (the operator's revocations).
    async fn find_api_key_by_id(&self, id: &str) -> Result<Option<ApiKey>, StoreError>;
    /// The tenant's keys, newest first.
    async fn list_api_keys(&self, tenant: &str) -> Result<Vec<ApiKey>, StoreError>;
    /// Revokes a key; `false` when the tenant has no such key.
    async fn revoke_api_key(&self, tenant: &str, id: &str) -> Result<bool, StoreError>;
    /// How many keys exist (any tenant, revoked included): zero on a first start.
    async fn count_api_keys(&self) -> Result<i64, StoreError>;
}

/// The columns a key is read back from (never `key_hash`).
const KEY_COLUMNS: &str =
    "id, tenant, name, scopes, rate_limit_per_minute, created_at, expires_at, revoked_at";

impl Record for ApiKey {
    fn from_row<DB: Dialect>(row: &DB::Row) -> Result<Self, StoreError> {
        Ok(ApiKey {
            id: row.read("id")?,
            tenant: row.read("tenant")?,
            name: row.read("name")?,
            scopes: DB::read_scopes(row, "api_keys.scopes")?,
            rate_limit_per_minute: row.read("rate_limit_per_minute")?,
            created_at: required_timestamp::<DB>(row, "api_keys.created_at")?,
            expires_at: DB::read_timestamp(row, "api_keys.expires_at")?,
            revoked_at: DB::read_timestamp(row, "api_keys.revoked_at")?,
        })
    }
}

#[async_trait]
impl<S: SqlStore> KeyStore for S {
    async fn create_api_key(&self, key: NewApiKey) -> Result<ApiKey, StoreError> {
        let id = uuid::Uuid::now_v7().to_string();
        let statement = sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO api_keys (id, tenant, name, key_hash, scopes, rate_limit_per_minute, \
             created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             RETURNING {KEY_COLUMNS}"
        )))
        .arg(id.as_str())
        .arg(key.tenant.as_str())
        .arg(key.name.as_str())
        .arg(key.key_hash.as_str())
        .arg(S::Db::scopes(&key.scopes))
        .arg(key.rate_limit_per_minute)
        .arg(S::Db::now())
        .arg(S::Db::timestamp(key.expires_at));
        fetch(self.db(), statement)
            .await
            .map_err(|e| conflict_if_unique(e, || "an API key with this hash exists".into()))
    }

    async fn find_api_key_by_hash(&self, key_hash: &str) -> Result<Option<ApiKey>, StoreError> {
        let statement = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE key_hash = $1"
        )))
        .arg(key_hash);
        fetch(self.db(), statement).await
    }

    async fn find_api_key_by_id(&self, id: &str) -> Result<Option<ApiKey>, StoreError> {
        let statement = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE id = $1"
        )))
        .arg(id);
        fetch(self.db(), statement).await
    }

    async fn list_api_keys(&self, tenant: &str) -> Result<Vec<ApiKey>, StoreError> {
        let statement = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE tenant = $1 ORDER BY created_at DESC, id DESC"
        )))
        .arg(tenant);
        fetch(self.db(), statement).await
    }

    async fn revoke_api_key(&self, tenant: &str, id: &str) -> Result<bool, StoreError> {
        let revoke = "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $3) WHERE tenant = $1 AND id = $2";
        stamp_once(self.db(), revoke, tenant, id).await
    }

    async fn count_api_keys(&self) -> Result<i64, StoreError> {
        let Count(n) = fetch(self.db(), sqlx::query("SELECT COUNT(*) AS n FROM api_keys")).await?;
        Ok(n)
    }
}
