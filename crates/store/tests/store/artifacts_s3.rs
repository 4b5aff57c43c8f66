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

#[tokio::test]
async fn a_write_aborts_the_uploads_earlier_writes_of_its_path_left() {
    TestBucket::run(async |bucket| {
        let options = s3_options(bucket);
        let store = ArtifactStore::from_url_with(&bucket.uri("deploy"), &options).unwrap();
        // What a cut connection leaves: uploads S3 began that no writer completes or
        // aborts, one holding a part; and a neighbour's upload, still going.
        let raw = bucket.store();
        for key in [
            "deploy/jobs/t/j/output-0.csv",
            "deploy/jobs/t/j/output-1.csv",
        ] {
            let mut left = raw.put_multipart(&key.into()).await.unwrap();
            left.put_part(vec![b'x'; 5 << 20].into()).await.unwrap();
            std::mem::forget(left);
        }
        let lost = raw
            .put_multipart(&"deploy/jobs/t/j/output-0.csv".into())
            .await
            .unwrap();
        std::mem::forget(lost);
        assert_eq!(bucket.incomplete_uploads().await.len(), 3);

        let mut writer = store.writer("jobs/t/j/output-0.csv").await.unwrap();
        writer.write(b"row,prediction,score\n").await.unwrap();
        writer.finish().await.unwrap();
        assert_eq!(
            bucket.incomplete_uploads().await,
            ["deploy/jobs/t/j/output-1.csv"]
        );
        assert_eq!(
            &store.get("jobs/t/j/output-0.csv").await.unwrap()[..],
            b"row,prediction,score\n"
        );
    })
    .await;
}

#[tokio::test]
async fn a_write_dropped_unfinished_leaves_no_upload() {
    TestBucket::run(async |bucket| {
        let url = format!("s3://{}", bucket.name());
        let store = ArtifactStore::from_url_with(&url, &s3_options(bucket)).unwrap();
        // A job's run abandoned mid-write: neither finished nor aborted.
        let mut writer = store.writer("jobs/t/j/output-0.csv").await.unwrap();
        writer.write(&vec![b'7'; 6 << 20]).await.unwrap();
        drop(writer);
        let mut left = bucket.incomplete_uploads().await;
        for _ in 0..100 {
            if left.is_empty() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            left = bucket.incomplete_uploads().await;
        }
        assert_eq!(left, Vec::<String>::new(), "aborted in the background");
        assert!(matches!(
            store.get("jobs/t/j/output-0.csv").await,
            Err(StoreError::NotFound(_))
        ));
    })
    .await;
}
