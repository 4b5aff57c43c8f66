//! Batch jobs reading `s3://` sources and writing outputs to an S3 bucket, on a real
//! S3-compatible server (CI starts `moto_server`). Each test uses a bucket of its own,
//! emptied and deleted afterwards. Skipped, with the reason printed, when
//! `PYNOMALY_TEST_S3_ENDPOINT` is unset.

use std::sync::Arc;

use bytes::Bytes;
use object_store::{ObjectStoreExt, PutPayload};
use pynomaly_jobs::{ExecutionOutcome, InProcessQueue, JobQueue, SourceResolver};
use pynomaly_store::{ArtifactStore, DynMetadataStore, JobStatus, NewJob, S3Options, SqliteStore};
use serde_json::json;
use testkit::TestBucket;
use testkit::data::{csv, wave};

use crate::{fit_batch, runner};

/// A batch over `sources`, with a tenth of the rows taken for anomalies.
fn batch(sources: &[&str]) -> NewJob {
    fit_batch(sources, json!(0.1), None)
}

/// `n` rows `x,y,label`, every label 0.
fn rows_csv(n: usize) -> String {
    csv(
        &["x", "y", "label"],
        (0..n).map(|i| [wave(i)[0], wave(i)[1], 0.0]),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_reads_s3_sources_and_writes_its_outputs_to_s3() {
    TestBucket::run(async |bucket| {
        let name = bucket.name();
        let options = S3Options {
            endpoint: Some(bucket.endpoint().to_string()),
            region: Some(TestBucket::REGION.into()),
            access_key_id: Some(TestBucket::ACCESS_KEY_ID.into()),
            secret_access_key: Some(TestBucket::SECRET_ACCESS_KEY.into()),
        };
        let dir = tempfile::tempdir().unwrap();
        let raw = bucket.store();
        raw.put(
            &"data/plain.csv".into(),
            PutPayload::from_bytes(Bytes::from(rows_csv(3000))),
        )
        .await
        .unwrap();
        let gz = {
            use std::io::Write;
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(rows_csv(500).as_bytes()).unwrap();
            e.finish().unwrap()
        };
        raw.put(
            &"data/small.csv.gz".into(),
            PutPayload::from_bytes(Bytes::from(gz)),
        )
        .await
        .unwrap();

        let meta: DynMetadataStore = Arc::new(SqliteStore::in_memory().await.unwrap());
        let artifacts =
            ArtifactStore::from_url_with(&format!("s3://{name}/outputs"), &options).unwrap();
        let sources = SourceResolver::new(dir.path())
            .unwrap()
            .with_s3(options.clone());
        let runner = runner(&meta, &artifacts, sources, 256);
        let queue = InProcessQueue::new(Arc::clone(&meta), runner);
        let (job, _) = queue
            .submit(batch(&[
                &bucket.uri("data/plain.csv"),
                &bucket.uri("data/small.csv.gz"),
            ]))
            .await
            .unwrap();
        let outcome = queue.try_execute_job().await.unwrap();
        assert!(
            matches!(
                outcome,
                ExecutionOutcome::JobDone {
                    status: JobStatus::Succeeded,
                    ..
                }
            ),
            "{outcome:?}: {:?}",
            meta.job_by_id(&job.id).await.unwrap().unwrap().error
        );
        let done = meta.job_by_id(&job.id).await.unwrap().unwrap();
        let result = done.result.unwrap();
        assert_eq!(
            result["n_samples"], 3500,
            "the label column is left out, every row counted"
        );
        let uri = result["outputs"][0]["uri"].as_str().unwrap();
        assert!(
            uri.starts_with(&format!("s3://{name}/outputs/jobs/")),
            "{uri}"
        );
        let path = result["outputs"][0]["path"].as_str().unwrap();
        let output = artifacts.get(path).await.unwrap();
        assert_eq!(output.iter().filter(|&&b| b == b'\n').count(), 3001);

        // A missing object fails the job with its name, at once.
        let (missing, _) = queue
            .submit(batch(&[&bucket.uri("data/nope.csv")]))
            .await
            .unwrap();
        queue.try_execute_job().await.unwrap();
        let failed = meta.job_by_id(&missing.id).await.unwrap().unwrap();
        assert_eq!(failed.status, JobStatus::Failed);
        assert!(failed.error.unwrap().contains("does not exist"));
    })
    .await;
}

/// An S3 endpoint on loopback that refuses every request the way S3 refuses unknown
/// credentials (403, `InvalidAccessKeyId`); its address.
async fn refusing_s3() -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut conn, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut request = vec![0u8; 16 * 1024];
                let _ = conn.read(&mut request).await;
                let body = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error>\
                            <Code>InvalidAccessKeyId</Code><Message>The AWS Access Key Id \
                            you provided does not exist in our records.</Message></Error>";
                let reply = format!(
                    "HTTP/1.1 403 Forbidden\r\nContent-Type: application/xml\r\n\
                     Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = conn.write_all(reply.as_bytes()).await;
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_the_object_store_refuses_fails_the_job_saying_why() {
    let addr = refusing_s3().await;
    let options = S3Options {
        endpoint: Some(format!("http://{addr}")),
        region: Some("us-east-1".into()),
        access_key_id: Some("unknown".into()),
        secret_access_key: Some("wrong".into()),
    };
    let dir = tempfile::tempdir().unwrap();
    let meta: DynMetadataStore = Arc::new(SqliteStore::in_memory().await.unwrap());
    let artifacts = ArtifactStore::from_url(&dir.path().join("out").display().to_string()).unwrap();
    let sources = SourceResolver::new(&dir.path().join("sources"))
        .unwrap()
        .with_s3(options);
    let queue = InProcessQueue::new(Arc::clone(&meta), runner(&meta, &artifacts, sources, 256));
    let (job, _) = queue.submit(batch(&["s3://data/rows.csv"])).await.unwrap();
    queue.try_execute_job().await.unwrap();
    let job = pynomaly_store::JobStore::job(meta.as_ref(), "default", &job.id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(job.status, JobStatus::Failed, "{job:?}");
    let error = job.error.unwrap_or_default();
    assert!(
        error.starts_with("s3://data/rows.csv: the object store failed"),
        "{error}"
    );
    assert!(
        error.contains("403"),
        "the cause is in the job's error: {error}"
    );
    assert!(!error.contains("wrong"), "no secret in the error: {error}");
}
