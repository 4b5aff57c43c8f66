//! Throw-away S3 buckets on the S3-compatible server of `PYNOMALY_TEST_S3_ENDPOINT` (CI
//! starts moto): a bucket per test, emptied and deleted afterwards.

use std::sync::Arc;

use futures::TryStreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::{ObjectStore, ObjectStoreExt};

use crate::current_test;
use crate::env::{S3_ENDPOINT_VAR, service};

/// A bucket created for one test.
#[derive(Debug)]
pub struct TestBucket {
    endpoint: String,
    name: String,
}

impl TestBucket {
    /// The region the test server is addressed with.
    pub const REGION: &'static str = "us-east-1";
    /// The access key id the test server accepts (any will do for moto).
    pub const ACCESS_KEY_ID: &'static str = "test";
    /// The secret access key the test server accepts.
    pub const SECRET_ACCESS_KEY: &'static str = "test";

    /// A fresh bucket on the server of `PYNOMALY_TEST_S3_ENDPOINT`; `None` (with a line on
    /// stderr saying the test skips, and why) when the variable is unset.
    ///
    /// # Panics
    /// The variable is set but the server cannot create the bucket.
    pub async fn create() -> Option<TestBucket> {
        let endpoint = service(S3_ENDPOINT_VAR)?;
        let bucket = TestBucket {
            endpoint: endpoint.trim_end_matches('/').to_string(),
            name: format!("pynomaly-test-{}", uuid::Uuid::new_v4().simple()),
        };
        let created = reqwest::Client::new()
            .put(bucket.url())
            .send()
            .await
            .expect("the S3 test server answers");
        assert!(
            created.status().is_success(),
            "cannot create a bucket: {}",
            created.status()
        );
        Some(bucket)
    }

    /// Runs `test` with a fresh bucket and removes the bucket afterwards, whether the test
    /// passed or panicked (the panic is then resumed). Skips (returns at once, having said
    /// so) when `PYNOMALY_TEST_S3_ENDPOINT` is unset.
    pub async fn run(test: impl AsyncFnOnce(&TestBucket)) {
        let Some(bucket) = TestBucket::create().await else {
            return;
        };
        crate::with_cleanup(test(&bucket), bucket.remove()).await;
    }

    /// The bucket's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The server's URL.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// `s3://BUCKET/path`.
    pub fn uri(&self, path: &str) -> String {
        format!("s3://{}/{path}", self.name)
    }

    fn url(&self) -> String {
        format!("{}/{}", self.endpoint, self.name)
    }

    /// The keys of the bucket's multipart uploads neither completed nor aborted.
    pub async fn incomplete_uploads(&self) -> Vec<String> {
        incomplete_uploads(&self.url()).await
    }

    /// The bucket's objects, read and written directly (path-style requests, plain HTTP
    /// allowed, nothing read from the `AWS_*` variables).
    ///
    /// # Panics
    /// The client cannot be configured.
    pub fn store(&self) -> Arc<dyn ObjectStore> {
        let store = AmazonS3Builder::new()
            .with_bucket_name(&self.name)
            .with_endpoint(&self.endpoint)
            .with_virtual_hosted_style_request(false)
            .with_allow_http(self.endpoint.starts_with("http://"))
            .with_region(Self::REGION)
            .with_access_key_id(Self::ACCESS_KEY_ID)
            .with_secret_access_key(Self::SECRET_ACCESS_KEY)
            .build()
            .expect("the test bucket's client is configured");
        Arc::new(store)
    }

    /// Empties and deletes the bucket. Failures are reported, not raised: this runs after
    /// the test, also after one that failed.
    pub async fn remove(&self) {
        let store = self.store();
        let emptied: Result<(), object_store::Error> = async {
            let objects: Vec<_> = store.list(None).try_collect().await?;
            for o in objects {
                store.delete(&o.location).await?;
            }
            Ok(())
        }
        .await;
        let deleted = reqwest::Client::new().delete(self.url()).send().await;
        if let Err(e) = emptied {
            eprintln!(
                "warning: could not empty the test bucket of {}: {e}",
                current_test()
            );
        } else if let Err(e) = deleted {
            eprintln!(
                "warning: could not delete the test bucket of {}: {e}",
                current_test()
            );
        }
    }
}

/// The keys of every object in the bucket at `bucket_url` (`http://host:port/bucket`), asked
/// of the server without signing (moto answers; the first 1,000).
///
/// # Panics
/// The server does not answer.
pub async fn object_keys(bucket_url: &str) -> Vec<String> {
    xml_texts(
        &fetch(&format!("{bucket_url}?list-type=2&max-keys=1000")).await,
        "Key",
    )
}

/// The keys of the multipart uploads at `bucket_url` neither completed nor aborted, asked
/// as [`object_keys`] is.
///
/// # Panics
/// The server does not answer.
pub async fn incomplete_uploads(bucket_url: &str) -> Vec<String> {
    xml_texts(&fetch(&format!("{bucket_url}?uploads")).await, "Key")
}

async fn fetch(url: &str) -> String {
    reqwest::get(url)
        .await
        .and_then(reqwest::Response::error_for_status)
        .expect("the S3 test server answers")
        .text()
        .await
        .expect("the S3 test server's answer is text")
}

/// The texts of every `<tag>…</tag>` of `xml` (S3 listings: flat, no attributes).
fn xml_texts(xml: &str, tag: &str) -> Vec<String> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    xml.split(open.as_str())
        .skip(1)
        .filter_map(|rest| rest.split_once(close.as_str()).map(|(v, _)| v.to_string()))
        .collect()
}
