//! The metadata store going away under an instance: requests that need it answer 503 with
//! `Retry-After` (never 500), and the instance recovers by itself when it comes back.
//! Postgres is made to refuse this test's database (`ALLOW_CONNECTIONS false` and its
//! sessions ended), which is what a restart looks like from the instance, without stopping
//! the server other tests share. Skipped without `PYNOMALY_TEST_DATABASE_URL` and
//! `PYNOMALY_TEST_REDIS_URL`.

use std::time::Duration;

use serde_json::json;
use sqlx::Connection;
use testkit::{Api, eventually, with_postgres_and_redis};

use crate::helpers::instance;
use crate::scale_out::settings;

/// Runs `sql` on the server's `postgres` database, next to the test's own `database_url`.
async fn as_admin(database_url: &str, sql: &str) {
    let (server, _) = database_url.rsplit_once('/').unwrap();
    let mut c = sqlx::PgConnection::connect(&format!("{server}/postgres"))
        .await
        .expect("the postgres database");
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
        .execute(&mut c)
        .await
        .expect(sql);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_needing_postgres_answer_503_while_it_is_away_then_recover() {
    with_postgres_and_redis(async |env| {
        let root = tempfile::tempdir().unwrap();
        let a = instance(settings(root.path(), "a", &env)).await;
        let api = Api::new(&a.address, a.created_admin_key.clone().unwrap());
        api.post(
            "/api/v1/models",
            &json!({"model_name": "m", "data": [[1.0, 2.0], [1.1, 2.1], [0.9, 1.9], [8.0, -8.0]]}),
        )
        .await
        .assert_status(201);
        let db = env.database_url.rsplit_once('/').unwrap().1.to_string();
        as_admin(
            &env.database_url,
            &format!(
                "ALTER DATABASE \"{db}\" ALLOW_CONNECTIONS false; \
                 SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{db}'"
            ),
        )
        .await;
        for path in ["/api/v1/models", "/api/v1/jobs"] {
            let r = api.get(path).await;
            let e = r.assert_error(503, "unavailable");
            assert!(e["message"].as_str().unwrap().contains("retry"), "{e}");
            assert_eq!(r.headers["retry-after"], "5", "{path}");
        }
        as_admin(
            &env.database_url,
            &format!("ALTER DATABASE \"{db}\" ALLOW_CONNECTIONS true"),
        )
        .await;
        eventually(
            "the instance reads the database again",
            Duration::from_secs(30),
            async || {
                let r = api.get("/api/v1/models").await;
                if r.status == 200 {
                    Ok(())
                } else {
                    Err(r.body.to_string())
                }
            },
        )
        .await;
        a.shut().await;
    })
    .await;
}
