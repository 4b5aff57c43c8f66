//! Throw-away Postgres databases.
//!
//! Tests read the server from `PYNOMALY_TEST_DATABASE_URL` (CI sets it; a server with
//! trust auth on loopback is enough). Each test gets a database of its own, created from
//! `template0` and dropped afterwards — also when the test fails — so tests run in
//! parallel without seeing each other's rows, and nothing is left behind. Without the
//! variable, [`TestDatabase::create`] returns `None` after printing why the test skips.

use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection};

use crate::current_test;
use crate::env::{DATABASE_URL_VAR, service};

/// A database created for one test.
#[derive(Debug)]
pub struct TestDatabase {
    admin: PgConnectOptions,
    name: String,
    url: String,
}

impl TestDatabase {
    /// Creates an empty database on the server of `PYNOMALY_TEST_DATABASE_URL`; `None`
    /// (with a line on stderr saying the test skips, and why) when the variable is unset.
    ///
    /// # Panics
    /// The variable is set but the server refuses: a test environment that claims to have
    /// Postgres and does not should fail loudly, not skip.
    pub async fn create() -> Option<TestDatabase> {
        let base = service(DATABASE_URL_VAR)?;
        let admin: PgConnectOptions = base
            .parse()
            .unwrap_or_else(|e| panic!("{DATABASE_URL_VAR} is not a Postgres URL: {e}"));
        let name = format!("pynomaly_test_{}", uuid::Uuid::new_v4().simple());
        let mut conn = admin
            .connect()
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {DATABASE_URL_VAR}: {e}"));
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "CREATE DATABASE {name} TEMPLATE template0"
        )))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("cannot create the test database {name}: {e}"));
        let _ = conn.close().await;
        let url = replace_database(&base, &name);
        Some(TestDatabase { admin, name, url })
    }

    /// The URL of this test's database.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Drops the database (closing whatever connections are left to it).
    ///
    /// # Errors
    /// The server refused.
    pub async fn drop_database(self) -> Result<(), sqlx::Error> {
        let mut conn = self.admin.connect().await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        )))
        .execute(&mut conn)
        .await?;
        let _ = conn.close().await;
        Ok(())
    }

    /// Runs `test` with a fresh database's URL and drops the database afterwards, whether
    /// the test passed or panicked (the panic is then resumed). Skips (returns at once,
    /// having said so) when `PYNOMALY_TEST_DATABASE_URL` is unset.
    pub async fn run(test: impl AsyncFnOnce(String)) {
        let Some(db) = TestDatabase::create().await else {
            return;
        };
        let url = db.url.clone();
        crate::with_cleanup(test(url), async {
            if let Err(e) = db.drop_database().await {
                eprintln!(
                    "warning: could not drop the test database of {}: {e}",
                    current_test()
                );
            }
        })
        .await;
    }
}

/// `base` with its database (the URL's path) replaced by `name`, query string kept.
fn replace_database(base: &str, name: &str) -> String {
    let (head, query) = match base.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (base, None),
    };
    let after_scheme = head.find("://").map_or(0, |i| i + 3);
    let host_end = head[after_scheme..]
        .find('/')
        .map_or(head.len(), |i| after_scheme + i);
    let mut url = format!("{}/{name}", &head[..host_end]);
    if let Some(q) = query {
        url.push('?');
        url.push_str(q);
    }
    url
}

#[cfg(test)]
mod tests {
    use super::replace_database;

    #[test]
    fn the_database_of_a_url_is_replaced_and_the_rest_kept() {
        assert_eq!(
            replace_database("postgres://postgres@127.0.0.1:5432/test", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            replace_database("postgres://u:p@h/test?sslmode=disable", "x"),
            "postgres://u:p@h/x?sslmode=disable"
        );
        assert_eq!(
            replace_database("postgres://h:5432", "x"),
            "postgres://h:5432/x"
        );
    }
}
