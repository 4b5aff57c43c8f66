//! Throw-away Postgres databases and S3 buckets for tests (this crate's, and those of the
//! crates above it).
//!
//! Tests read the server from `PYNOMALY_TEST_DATABASE_URL` (CI sets it; a server with
//! trust auth on loopback is enough). Each test gets a database of its own, created from
//! `template0` and dropped afterwards — also when the test fails — so tests run in
//! parallel without seeing each other's rows, and nothing is left behind. Without the
//! variable, [`TestDatabase::create`] returns `None` after printing why the test skips.
//!
//! S3 tests read an S3-compatible server from `PYNOMALY_TEST_S3_ENDPOINT` (CI starts moto)
//! and get a bucket of their own from [`test_bucket`], emptied and deleted by
//! [`drop_test_bucket`].

use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures::FutureExt;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection};

use crate::StoreError;

/// The variable naming the Postgres server tests may create databases on.
pub const TEST_DATABASE_URL_VAR: &str = "PYNOMALY_TEST_DATABASE_URL";

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
    pub async fn create(test: &str) -> Option<TestDatabase> {
        let Ok(base) = std::env::var(TEST_DATABASE_URL_VAR) else {
            eprintln!(
                "SKIPPED {test}: {TEST_DATABASE_URL_VAR} is unset, so there is no Postgres server \
                 to test against (e.g. {TEST_DATABASE_URL_VAR}=postgres://postgres@127.0.0.1:5432/test)"
            );
            return None;
        };
        let admin: PgConnectOptions = base
            .parse()
            .unwrap_or_else(|e| panic!("{TEST_DATABASE_URL_VAR} is not a Postgres URL: {e}"));
        let name = format!("pynomaly_test_{}", uuid::Uuid::new_v4().simple());
        let mut conn = admin
            .connect()
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {TEST_DATABASE_URL_VAR}: {e}"));
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
    pub async fn drop_database(self) -> Result<(), StoreError> {
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
    pub async fn run<F, Fut>(test: &str, f: F)
    where
        F: FnOnce(String) -> Fut,
        Fut: Future<Output = ()>,
    {
        let Some(db) = TestDatabase::create(test).await else {
            return;
        };
        let outcome = AssertUnwindSafe(f(db.url.clone())).catch_unwind().await;
        if let Err(e) = db.drop_database().await {
            eprintln!("warning: could not drop a test database: {e}");
        }
        if let Err(panic) = outcome {
            std::panic::resume_unwind(panic);
        }
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

/// The variable naming the S3-compatible server tests may create buckets on.
pub const TEST_S3_ENDPOINT_VAR: &str = "PYNOMALY_TEST_S3_ENDPOINT";

/// A fresh bucket on the server of `PYNOMALY_TEST_S3_ENDPOINT`, and the options to reach
/// it; `None` (with a line on stderr saying the test skips, and why) when the variable is
/// unset.
///
/// # Panics
/// The variable is set but the server cannot create the bucket.
pub async fn test_bucket(test: &str) -> Option<(crate::S3Options, String)> {
    let Ok(endpoint) = std::env::var(TEST_S3_ENDPOINT_VAR) else {
        eprintln!(
            "SKIPPED {test}: {TEST_S3_ENDPOINT_VAR} is unset, so there is no S3-compatible \
             server to test against (e.g. `moto_server -p 5055` and \
             {TEST_S3_ENDPOINT_VAR}=http://127.0.0.1:5055)"
        );
        return None;
    };
    let name = format!("pynomaly-test-{}", uuid::Uuid::new_v4().simple());
    let created = reqwest::Client::new()
        .put(format!("{}/{name}", endpoint.trim_end_matches('/')))
        .send()
        .await
        .expect("the S3 test server answers");
    assert!(
        created.status().is_success(),
        "cannot create a bucket: {}",
        created.status()
    );
    let options = crate::S3Options {
        endpoint: Some(endpoint),
        region: Some("us-east-1".into()),
        access_key_id: Some("test".into()),
        secret_access_key: Some("test".into()),
    };
    Some((options, name))
}

/// Empties and deletes a bucket made by [`test_bucket`].
///
/// # Panics
/// The bucket cannot be listed or emptied.
pub async fn drop_test_bucket(options: &crate::S3Options, name: &str) {
    use futures::TryStreamExt;
    use object_store::ObjectStoreExt;

    let store = crate::s3_bucket_with(name, options).expect("the test bucket's options are valid");
    let objects: Vec<_> = store
        .list(None)
        .try_collect()
        .await
        .expect("the test bucket can be listed");
    for o in objects {
        store
            .delete(&o.location)
            .await
            .expect("the test bucket can be emptied");
    }
    let endpoint = options.endpoint.as_deref().unwrap_or_default();
    let _ = reqwest::Client::new()
        .delete(format!("{}/{name}", endpoint.trim_end_matches('/')))
        .send()
        .await;
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
