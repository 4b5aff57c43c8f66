//! `pynomaly stream` end to end, against real brokers: the Redis at
//! `PYNOMALY_TEST_REDIS_URL` and the Kafka-protocol broker (tansu, started by `.ci/run`)
//! at `PYNOMALY_TEST_KAFKA_BROKERS`. Each test skips, saying why, when its broker's
//! variable is unset. Streams and topics have unique names per test.

mod helpers;
mod kafka;
mod redis;
