//! A Postgres database and a Redis key prefix of one test's own: what the scale-out tests
//! (API instances, workers and queues sharing both) run on.

use deadpool_redis::redis;

use crate::current_test;
use crate::env::redis_url;
use crate::postgres::TestDatabase;

/// Where a scale-out test's deployment keeps its state.
#[derive(Debug, Clone)]
pub struct ScaleOut {
    /// A database of this test's own.
    pub database_url: String,
    /// The test Redis.
    pub redis_url: String,
    /// A prefix unique to this test: every Redis key the test makes starts with it.
    pub redis_prefix: String,
}

/// Runs `test` on a fresh database and a fresh Redis key prefix; afterwards, whether the
/// test passed or panicked, deletes every key under the prefix and drops the database.
/// Skips (returns at once, having said why) when `PYNOMALY_TEST_REDIS_URL` or
/// `PYNOMALY_TEST_DATABASE_URL` is unset.
pub async fn with_postgres_and_redis(test: impl AsyncFnOnce(ScaleOut)) {
    let Some(redis_url) = redis_url() else {
        return;
    };
    TestDatabase::run(async |database_url| {
        let env = ScaleOut {
            database_url,
            redis_prefix: format!("pynomaly-test-{}", uuid::Uuid::new_v4().simple()),
            redis_url,
        };
        let (url, prefix) = (env.redis_url.clone(), env.redis_prefix.clone());
        crate::with_cleanup(test(env), delete_keys(url, prefix)).await;
    })
    .await;
}

/// Deletes every key under `prefix`; failures are reported, not raised.
async fn delete_keys(url: String, prefix: String) {
    let deleted: redis::RedisResult<()> = async {
        let client = redis::Client::open(url.as_str())?;
        let mut conn = client.get_multiplexed_async_connection().await?;
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{prefix}*"))
            .query_async(&mut conn)
            .await?;
        if !keys.is_empty() {
            redis::cmd("DEL")
                .arg(keys)
                .query_async::<()>(&mut conn)
                .await?;
        }
        Ok(())
    }
    .await;
    if let Err(e) = deleted {
        eprintln!(
            "warning: could not delete the Redis keys of {}: {e}",
            current_test()
        );
    }
}
