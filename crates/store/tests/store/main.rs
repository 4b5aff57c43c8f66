//! The store's integration tests, one binary:
//!
//! - `metadata`: one suite of metadata-store behaviours, run against the embedded SQLite
//!   store and against Postgres;
//! - `artifacts_s3`: the artifact store on a real S3-compatible server;
//! - `encryption`: encryption at rest through the artifact store, on local files and S3;
//! - `sql_bound_parameters`: a check of the crate's sources that SQL takes values only as
//!   bound parameters.
//!
//! Postgres and S3 come from `PYNOMALY_TEST_DATABASE_URL` and `PYNOMALY_TEST_S3_ENDPOINT`
//! (see the `testkit` crate); a test whose server is not configured skips, saying why.

mod artifacts_s3;
mod encryption;
mod metadata;
mod sql_bound_parameters;

use pynomaly_store::S3Options;
use testkit::TestBucket;

/// The store's options for reaching a test bucket's server.
fn s3_options(bucket: &TestBucket) -> S3Options {
    S3Options {
        endpoint: Some(bucket.endpoint().to_string()),
        region: Some(TestBucket::REGION.into()),
        access_key_id: Some(TestBucket::ACCESS_KEY_ID.into()),
        secret_access_key: Some(TestBucket::SECRET_ACCESS_KEY.into()),
    }
}
