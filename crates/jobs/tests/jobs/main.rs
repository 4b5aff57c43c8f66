//! The job crate's integration tests, one binary:
//!
//! - `redis_queue`: the Redis queue against a real Redis and Postgres, driven step by step;
//! - `s3_sources`: batch jobs reading `s3://` sources and writing outputs to S3.
//!
//! The servers come from `PYNOMALY_TEST_*` variables (see the `testkit` crate); a test
//! whose server is not configured skips, saying why.

mod redis_queue;
mod s3_sources;
