//! The artifact store on a real S3-compatible server (CI starts `moto_server`; any S3 API
//! will do). Each test uses a bucket of its own, emptied and deleted afterwards. Skipped,
//! with the reason printed, when `PYNOMALY_TEST_S3_ENDPOINT` is unset.

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use pynomaly_store::{ArtifactStore, S3Options, StoreError};

const S3_VAR: &str = "PYNOMALY_TEST_S3_ENDPOINT";

/// A fresh bucket on the test server, and the options to reach it.
async fn bucket(test: &str) -> Option<(S3Options, String)> {
    let Ok(endpoint) = std::env::var(S3_VAR) else {
        eprintln!(
            "SKIPPED {test}: {S3_VAR} is unset, so there is no S3-compatible server to test \
             against (e.g. `moto_server -p 5055` and {S3_VAR}=http://127.0.0.1:5055)"
        );
        return None;
    };
    let name = format!("pynomaly-test-{}", uuid_like());
    let created = reqwest::Client::new()
        .put(format!("{}/{name}", endpoint.trim_end_matches('/')))
        .send()
        .await
        .expect("the S3 test server answers");
    assert!(
        created.status().is_success(),
        "cannot create a bucket: {}",
        created.status()
    );
    let options = S3Options {
        endpoint: Some(endpoint),
        region: Some("us-east-1".into()),
        access_key_id: Some("test".into()),
        secret_access_key: Some("test".into()),
    };
    Some((options, name))
}

async fn drop_bucket(options: &S3Options, name: &str) {
    let store = pynomaly_store::s3_bucket_with(name, options).unwrap();
    let objects: Vec<_> = store.list(None).try_collect().await.unwrap();
    for o in objects {
        store.delete(&o.location).await.unwrap();
    }
    let endpoint = options.endpoint.as_deref().unwrap().trim_end_matches('/');
    let _ = reqwest::Client::new()
        .delete(format!("{endpoint}/{name}"))
        .send()
        .await;
}

fn uuid_like() -> String {
    use std::time::{SystemTime, UNIX_EPOCH};
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{nanos:x}-{}", std::process::id())
}

#[tokio::test]
async fn artifacts_round_trip_through_an_s3_bucket_under_a_prefix() {
    let test = "artifacts_round_trip_through_an_s3_bucket_under_a_prefix";
    let Some((options, name)) = bucket(test).await else {
        return;
    };
    let store = ArtifactStore::from_url_with(&format!("s3://{name}/deploy/one"), &options).unwrap();
    store.ping().await.unwrap();
    assert_eq!(
        store.uri("models/a.pnmy"),
        format!("s3://{name}/deploy/one/models/a.pnmy")
    );
    store
        .put("models/a.pnmy", Bytes::from_static(b"model bytes"))
        .await
        .unwrap();
    assert_eq!(
        &store.get("models/a.pnmy").await.unwrap()[..],
        b"model bytes"
    );
    let (size, stream) = store.get_stream("models/a.pnmy").await.unwrap();
    let streamed: Vec<Bytes> = stream.try_collect().await.unwrap();
    assert_eq!((size, streamed.concat()), (11, b"model bytes".to_vec()));
    // The prefix is where the objects really are.
    let raw = pynomaly_store::s3_bucket_with(&name, &options).unwrap();
    assert!(raw.head(&"deploy/one/models/a.pnmy".into()).await.is_ok());
    store.delete("models/a.pnmy").await.unwrap();
    store.delete("models/a.pnmy").await.unwrap();
    assert!(matches!(
        store.get("models/a.pnmy").await,
        Err(StoreError::NotFound(_))
    ));
    drop_bucket(&options, &name).await;
}

#[tokio::test]
async fn a_large_output_is_uploaded_in_parts() {
    let test = "a_large_output_is_uploaded_in_parts";
    let Some((options, name)) = bucket(test).await else {
        return;
    };
    let store = ArtifactStore::from_url_with(&format!("s3://{name}"), &options).unwrap();
    let mut writer = store.writer("jobs/t/j/output-0.csv").await.unwrap();
    let piece = vec![b'7'; 1 << 20];
    for _ in 0..12 {
        writer.write(&piece).await.unwrap();
    }
    assert_eq!(writer.finish().await.unwrap(), 12 << 20);
    let got = store.get("jobs/t/j/output-0.csv").await.unwrap();
    assert_eq!(got.len(), 12 << 20);
    assert!(got.iter().all(|&b| b == b'7'));
    let aborted = store.writer("jobs/t/j/aborted.csv").await.unwrap();
    aborted.abort().await.unwrap();
    assert!(matches!(
        store.get("jobs/t/j/aborted.csv").await,
        Err(StoreError::NotFound(_))
    ));
    drop_bucket(&options, &name).await;
}
