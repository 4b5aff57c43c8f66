//! Users who log in with a password: the [`UserStore`] trait, and its one implementation
//! for both SQL dialects (every statement reads the same in SQLite and Postgres).

use async_trait::async_trait;

use crate::StoreError;
use crate::sql::{
    Arg, Dialect, Reads, Record, SqlStore, conflict_if_unique, fetch, required_timestamp,
    stamp_once,
};
use crate::types::{NewUser, User};

/// Users, scoped by tenant except for their usernames, which are unique across tenants
/// (logging in names no tenant).
#[async_trait]
pub trait UserStore: Send + Sync {
    /// Stores a user; [`StoreError::Conflict`] when the username is taken (in any tenant).
    async fn create_user(&self, user: NewUser) -> Result<User, StoreError>;
    /// The user with this username, active or not (login).
    async fn find_user_by_username(&self, username: &str) -> Result<Option<User>, StoreError>;
    /// The user with this id, active or not (checking a token's user on each request).
    async fn user_by_id(&self, id: &str) -> Result<Option<User>, StoreError>;
    /// The tenant's users, newest first.
    async fn list_users(&self, tenant: &str) -> Result<Vec<User>, StoreError>;
    /// Disables a user (its tokens stop working); `false` when the tenant has no such user.
    async fn disable_user(&self, tenant: &str, id: &str) -> Result<bool, StoreError>;
}

impl Record for User {
    fn from_row<DB: Dialect>(row: &DB::Row) -> Result<Self, StoreError> {
        Ok(User {
            id: row.read("id")?,
            tenant: row.read("tenant")?,
            username: row.read("username")?,
            password_hash: row.read("password_hash")?,
            scopes: DB::read_scopes(row, "users.scopes")?,
            created_at: required_timestamp::<DB>(row, "users.created_at")?,
            disabled_at: DB::read_timestamp(row, "users.disabled_at")?,
        })
    }
}

#[async_trait]
impl<S: SqlStore> UserStore for S {
    async fn create_user(&self, user: NewUser) -> Result<User, StoreError> {
        let id = uuid::Uuid::now_v7().to_string();
        let statement = sqlx::query(
            "INSERT INTO users (id, tenant, username, password_hash, scopes, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING *",
        )
        .arg(id.as_str())
        .arg(user.tenant.as_str())
        .arg(user.username.as_str())
        .arg(user.password_hash.as_str())
        .arg(S::Db::scopes(&user.scopes))
        .arg(S::Db::now());
        fetch(self.db(), statement).await.map_err(|e| {
            conflict_if_unique(e, || format!("the username '{}' is taken", user.username))
        })
    }

    async fn find_user_by_username(&self, username: &str) -> Result<Option<User>, StoreError> {
        let statement = sqlx::query("SELECT * FROM users WHERE username = $1").arg(username);
        fetch(self.db(), statement).await
    }

    async fn user_by_id(&self, id: &str) -> Result<Option<User>, StoreError> {
        fetch(
            self.db(),
            sqlx::query("SELECT * FROM users WHERE id = $1").arg(id),
        )
        .await
    }

    async fn list_users(&self, tenant: &str) -> Result<Vec<User>, StoreError> {
        let statement =
            sqlx::query("SELECT * FROM users WHERE tenant = $1 ORDER BY created_at DESC, id DESC")
                .arg(tenant);
        fetch(self.db(), statement).await
    }

    async fn disable_user(&self, tenant: &str, id: &str) -> Result<bool, StoreError> {
        let disable = "UPDATE users SET disabled_at = COALESCE(disabled_at, $3) WHERE tenant = $1 AND id = $2";
        stamp_once(self.db(), disable, tenant, id).await
    }
}
