//! The artifact store on a real S3-compatible server (CI starts `moto_server`; any S3 API
//! will do). Each test uses a bucket of its own, emptied and deleted afterwards. Skipped,
//! with the reason printed, when `PYNOMALY_TEST_S3_ENDPOINT` is unset.

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use pynomaly_store::{ArtifactStore, StoreError};
use testkit::TestBucket;

use crate::s3_options;

#[tokio::test]
async fn artifacts_round_trip_through_an_s3_bucket_under_a_prefix() {
    TestBucket::run(async |bucket| {
        let options = s3_options(bucket);
        let store = ArtifactStore::from_url_with(&bucket.uri("deploy/one"), &options).unwrap();
        store.ping().await.unwrap();
        assert_eq!(
            store.uri("models/a.pnmy"),
            bucket.uri("deploy/one/models/a.pnmy")
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
        let raw = pynomaly_store::s3_bucket_with(bucket.name(), &options).unwrap();
        assert!(raw.head(&"deploy/one/models/a.pnmy".into()).await.is_ok());
        store.delete("models/a.pnmy").await.unwrap();
        store.delete("models/a.pnmy").await.unwrap();
        assert!(matches!(
            store.get("models/a.pnmy").await,
            Err(StoreError::NotFound(_))
        ));
    })
    .await;
}

#[tokio::test]
async fn a_large_output_is_uploaded_in_parts() {
    TestBucket::run(async |bucket| {
        let url = format!("s3://{}", bucket.name());
        let store = ArtifactStore::from_url_with(&url, &s3_options(bucket)).unwrap();
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
    })
    .await;
}
