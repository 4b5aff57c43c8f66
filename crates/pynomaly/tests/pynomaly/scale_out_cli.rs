//! `pynomaly migrate`, `pynomaly worker` and `pynomaly keys` with the scale-out settings.
//! The Postgres cases need `PYNOMALY_TEST_DATABASE_URL` (skipped, saying so, without it).

use std::process::{Command, Output};

use pynomaly_store::{KeyStore, MetadataStore, PostgresStore};
use testkit::TestDatabase;

fn pynomaly(args: &[&str], env: &[(&str, &str)]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    Command::new(env!("CARGO_BIN_EXE_pynomaly"))
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("REDIS_URL")
        .env("PYNOMALY_DATA_DIR", dir.path())
        .envs(env.iter().copied())
        .output()
        .expect("the pynomaly binary runs")
}

/// [`pynomaly`] off the async runtime's threads.
async fn pynomaly_blocking(args: &[&str], env: &[(&str, &str)]) -> Output {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let env: Vec<(String, String)> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        pynomaly(&args, &env)
    })
    .await
    .expect("the command's thread")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn worker_and_migrate_explain_what_they_need() {
    let redis = [("REDIS_URL", "redis://127.0.0.1:1")];
    for (args, env, message) in [
        (&["worker"], &[][..], "REDIS_URL is not set"),
        (&["migrate"], &[], "DATABASE_URL is not set"),
        (&["worker"], &redis, "set DATABASE_URL too"),
    ] {
        let out = pynomaly(args, env);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        assert!(text(&out).contains(message), "{}", text(&out));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_applies_the_migrations_once_and_keys_go_to_postgres() {
    TestDatabase::run(async |url| {
        let db = [("DATABASE_URL", url.as_str())];
        let first = pynomaly_blocking(&["migrate"], &db).await;
        assert!(first.status.success(), "{}", text(&first));
        let migrations = std::fs::read_dir(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../migrations/postgres"
        ))
        .unwrap()
        .count();
        assert!(
            text(&first).contains(&format!("applied {migrations} migration(s)")),
            "{}",
            text(&first)
        );
        let again = pynomaly_blocking(&["migrate"], &db).await;
        assert!(
            text(&again).contains("applied 0 migration(s)"),
            "{}",
            text(&again)
        );
        let secret = "ab".repeat(32);
        let key = pynomaly_blocking(
            &["keys", "create", "--name", "ci", "--scopes", "read,write"],
            &[("DATABASE_URL", &url), ("PYNOMALY_SECRET_KEY", &secret)],
        )
        .await;
        assert!(key.status.success(), "{}", text(&key));
        assert!(
            String::from_utf8_lossy(&key.stdout)
                .trim()
                .starts_with("pk_")
        );
        let store = PostgresStore::connect(&url, 1).await.unwrap();
        let keys = store.list_api_keys("default").await.unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].name, "ci");
        store.close().await;
    })
    .await;
}
