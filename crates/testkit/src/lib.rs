//! What the workspace's integration tests share, written once:
//!
//! - [`env`]: the services a test may use, read from `PYNOMALY_TEST_*` variables; a test
//!   whose service is not configured skips, saying why, or (for the tests CI runs on
//!   purpose) fails, saying what is missing.
//! - [`postgres`]: a database of one test's own ([`TestDatabase`]), dropped afterwards; or
//!   a whole Postgres server of its own that a chaos test stops and starts
//!   ([`PostgresServer`]).
//! - [`s3`]: a bucket of one test's own ([`TestBucket`]), emptied and deleted afterwards.
//! - [`redis`]: a Postgres database and a Redis key prefix together ([`with_postgres_and_redis`]),
//!   also on a 3-master Redis Cluster the test starts ([`RedisCluster`], [`with_postgres_and`]);
//!   one `redis-server` of a test's own, to stop and crash ([`RedisServer`]).
//! - [`process`]: a child process with its output in a log file, killed when dropped
//!   ([`Proc`]), free ports, and [`wait_ready`].
//! - [`http`]: JSON calls with a bearer key ([`Api::call`], [`Api::post`], …) and
//!   [`Api::wait_job`].
//! - [`wait`]: polling with a deadline ([`eventually`]) instead of fixed sleeps.
//! - [`data`]: seeded, deterministic rows and CSV text.
//! - [`tls`]: a private CA and the server certificates it signs ([`TestCa`]).
//!
//! It depends on none of the workspace's own crates: a crate's tests that used it would
//! otherwise link a second copy of the crate under test.

pub mod data;
pub mod env;
pub mod http;
pub mod postgres;
pub mod process;
pub mod redis;
pub mod relay;
pub mod s3;
pub mod tls;
pub mod wait;

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;

use futures::FutureExt;

pub use http::{Api, Call, Reply};
pub use postgres::{PostgresServer, TestDatabase};
pub use process::{Proc, free_port, require_program, wait_ready};
pub use redis::{
    RedisCluster, RedisKind, RedisServer, ScaleOut, with_postgres_and, with_postgres_and_redis,
};
pub use relay::Relay;
pub use s3::TestBucket;
pub use tls::{Leaf, TestCa};
pub use wait::{eventually, wait_until};

/// Runs scale-out tests on each kind of Redis: for every `test => body`, a test named
/// `test` that runs `body(RedisKind::Single)` on the test Redis, and a test
/// `test::on_a_redis_cluster` (a module may share a function's name) that runs
/// `body(RedisKind::Cluster)` on a Redis Cluster of its own — ignored unless asked for
/// (`--ignored on_a_redis_cluster`, as `.ci/run` does): it starts three `redis-server`s.
/// `body` is an `async fn(RedisKind)`, a path from the invoking module;
/// `module::{a, b}` is short for `a => module::a, b => module::b`.
#[macro_export]
macro_rules! on_each_redis {
    ($module:ident::{$($case:ident),* $(,)?}) => {
        $crate::on_each_redis!($($case => $module::$case),*);
    };
    ($($test:ident => $($body:ident)::+),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $test() {
                $($body)::+($crate::RedisKind::Single).await;
            }

            mod $test {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                #[ignore = "starts a Redis Cluster (redis-server, redis-cli); .ci/run runs it"]
                async fn on_a_redis_cluster() {
                    super::$($body)::+($crate::RedisKind::Cluster).await;
                }
            }
        )*
    };
}

/// The name of the running test, as the test harness reports it (`module::test_name`):
/// the harness names each test's thread after the test. "this test" where the thread has
/// no such name (a test run on the main thread).
pub fn current_test() -> String {
    match std::thread::current().name() {
        Some(name) if name != "main" => name.to_string(),
        _ => "this test".to_string(),
    }
}

/// Runs `test`, then `cleanup` whether the test passed or panicked; a panic is resumed
/// after the cleanup, so the test still fails with its own message.
///
/// The test's future is moved to the heap: a test's whole body nested in a few such
/// layers makes a future larger than a test thread's stack in a debug build.
pub async fn with_cleanup<T>(
    test: impl Future<Output = T>,
    cleanup: impl Future<Output = ()>,
) -> T {
    let outcome = AssertUnwindSafe(Box::pin(test)).catch_unwind().await;
    cleanup.await;
    match outcome {
        Ok(value) => value,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// The repository's root directory (where `nginx.conf`, `grafana/` and `tests/` are): two
/// levels above the crate under test, which cargo names when it runs a test
/// (`CARGO_MANIFEST_DIR`). Read when the test runs, not when this crate was built: a build
/// cache shared by two checkouts may hold this crate built from the other one.
pub fn repo_root() -> PathBuf {
    let crate_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    crate_dir.join("../..")
}

/// Runs the ML-engineer guide's `PynomalyAPIClient` flow (`tests/seed_client/seed_client_flow.py`,
/// python3) against the service at `url` with `key`, training on the data source
/// `source`, and asserts that it reports success. `context` says where it ran, for the
/// failure message.
pub async fn assert_seed_client_flow_succeeds(url: &str, key: &str, source: &str, context: &str) {
    let (url, key, source) = (url.to_string(), key.to_string(), source.to_string());
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("python3")
            .arg(repo_root().join("tests/seed_client/seed_client_flow.py"))
            .env("PYNOMALY_URL", url)
            .env("PYNOMALY_API_KEY", key)
            .env("PYNOMALY_SOURCE", source)
            .output()
            .expect("python3 runs")
    })
    .await
    .expect("the guide's client's thread");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("seed client flow: ok"),
        "seed client {context}: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}
