//! The services a test may use, each named by a variable (CI sets them all; `.ci/run`
//! starts what it needs). Without its variable a test skips, printing one line that says
//! which test and why; the tests CI runs on purpose ([`require`]) fail instead.

use crate::current_test;

/// A Postgres server tests may create databases on (trust auth on loopback is enough),
/// e.g. `postgres://postgres@127.0.0.1:5432/test`.
pub const DATABASE_URL_VAR: &str = "PYNOMALY_TEST_DATABASE_URL";
/// A Redis tests may write keys to (each under a prefix of its own), e.g.
/// `redis://127.0.0.1:6379`.
pub const REDIS_URL_VAR: &str = "PYNOMALY_TEST_REDIS_URL";
/// A Kafka-protocol broker (CI runs tansu) tests may create topics on, e.g.
/// `127.0.0.1:9092`.
pub const KAFKA_BROKERS_VAR: &str = "PYNOMALY_TEST_KAFKA_BROKERS";
/// The tansu binary (`.ci/run` builds it), for tests that start a Kafka-protocol broker of
/// their own, e.g. `/var/tmp/pynomaly-tools/bin/tansu`.
pub const TANSU_VAR: &str = "PYNOMALY_TEST_TANSU";
/// An S3-compatible server (CI runs moto) tests may create buckets on, e.g.
/// `http://127.0.0.1:5055`.
pub const S3_ENDPOINT_VAR: &str = "PYNOMALY_TEST_S3_ENDPOINT";

/// What each variable names, and an example value, for the skip message.
fn describe(var: &str) -> (&'static str, &'static str) {
    match var {
        DATABASE_URL_VAR => (
            "no Postgres server",
            "postgres://postgres@127.0.0.1:5432/test",
        ),
        REDIS_URL_VAR => ("no Redis", "redis://127.0.0.1:6379"),
        KAFKA_BROKERS_VAR => (
            "no Kafka-protocol broker (.ci/run starts tansu)",
            "127.0.0.1:9092",
        ),
        TANSU_VAR => (
            "no tansu binary to start a broker with (.ci/run builds one)",
            "/var/tmp/pynomaly-tools/bin/tansu",
        ),
        S3_ENDPOINT_VAR => (
            "no S3-compatible server (e.g. `moto_server -p 5055`)",
            "http://127.0.0.1:5055",
        ),
        _ => ("a service missing", "…"),
    }
}

/// The value of `var`; `None`, after printing that the running test skips and why, when
/// it is unset.
pub fn service(var: &str) -> Option<String> {
    match std::env::var(var) {
        Ok(value) => Some(value),
        Err(_) => {
            let (what, example) = describe(var);
            eprintln!(
                "SKIPPED {}: {var} is unset, so there is {what} to test against (e.g. {var}={example})",
                current_test()
            );
            None
        }
    }
}

/// The Redis of [`REDIS_URL_VAR`], or `None` (the test skips, having said so).
pub fn redis_url() -> Option<String> {
    service(REDIS_URL_VAR)
}

/// The brokers of [`KAFKA_BROKERS_VAR`], or `None` (the test skips, having said so).
pub fn kafka_brokers() -> Option<String> {
    service(KAFKA_BROKERS_VAR)
}

/// For a test that must not skip (one CI runs with `--ignored` on purpose): the values of
/// `vars`, in order.
///
/// # Panics
/// Any of them is unset; the message names every one missing.
pub fn require(vars: &[&str]) -> Vec<String> {
    let missing: Vec<&str> = vars
        .iter()
        .copied()
        .filter(|v| std::env::var(v).is_err())
        .collect();
    assert!(
        missing.is_empty(),
        "{} needs {vars:?} (missing: {missing:?})",
        current_test()
    );
    vars.iter()
        .map(|v| std::env::var(v).unwrap_or_default())
        .collect()
}
