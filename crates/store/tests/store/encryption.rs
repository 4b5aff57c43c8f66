//! Encryption at rest through the artifact store, on local files and (when
//! `PYNOMALY_TEST_S3_ENDPOINT` names a server, as CI's moto) on S3: key rotation, tampered
//! objects, objects moved to another path, plaintext written before a key existed, and
//! streamed writes and reads. The raw objects are read and altered underneath the store,
//! through the same `object_store` it uses.

use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::local::LocalFileSystem;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use pynomaly_store::crypto::{CryptoError, Keyring, MAGIC, MasterKey};
use pynomaly_store::{ArtifactStore, StoreError};
use testkit::TestBucket;

use crate::s3_options;

fn key_a() -> MasterKey {
    MasterKey::from_hex(&"a1".repeat(32)).unwrap()
}
fn key_b() -> MasterKey {
    MasterKey::from_hex(&"b2".repeat(32)).unwrap()
}

fn store(raw: &Arc<dyn ObjectStore>, ring: Option<Keyring>) -> ArtifactStore {
    let s = ArtifactStore::from_object_store(Arc::clone(raw), "test://store");
    match ring {
        Some(r) => s.with_encryption(r),
        None => s,
    }
}

async fn raw_get(raw: &Arc<dyn ObjectStore>, path: &str) -> Vec<u8> {
    raw.get(&path.into())
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec()
}

async fn raw_put(raw: &Arc<dyn ObjectStore>, path: &str, bytes: Vec<u8>) {
    raw.put(&path.into(), PutPayload::from(bytes))
        .await
        .unwrap();
}

fn crypto_err<T: std::fmt::Debug>(r: Result<T, StoreError>) -> CryptoError {
    match r {
        Err(StoreError::Crypto(e)) => e,
        other => panic!("expected a crypto error, got {other:?}"),
    }
}

/// Asserts that `path` reads back, whole, as `expected`.
async fn assert_reads(store: &ArtifactStore, path: &str, expected: &[u8]) {
    assert_eq!(&store.get(path).await.unwrap()[..], expected, "{path}");
}

/// The error of opening `path` as a stream (before any byte is read).
async fn stream_err(store: &ArtifactStore, path: &str) -> CryptoError {
    crypto_err(store.get_stream(path).await.map(|(size, _)| size))
}

async fn read_stream(store: &ArtifactStore, path: &str) -> Result<(u64, Vec<u8>), StoreError> {
    let (size, stream) = store.get_stream(path).await?;
    let parts: Vec<Bytes> = stream.try_collect().await?;
    Ok((size, parts.concat()))
}

/// Everything the encryption promises, against one object store.
async fn encryption_holds_on(raw: Arc<dyn ObjectStore>) {
    let model = b"PNMY model bytes that must not be readable at rest".to_vec();

    // Plaintext written before any key was configured.
    let plain_store = store(&raw, None);
    plain_store
        .put("models/t/old.pnmy", Bytes::from(model.clone()))
        .await
        .unwrap();

    // Key A: whole objects and streamed outputs are sealed at rest.
    let under_a = store(&raw, Some(Keyring::new("A", key_a()).unwrap()));
    assert!(under_a.encrypts());
    under_a
        .put("models/t/a.pnmy", Bytes::from(model.clone()))
        .await
        .unwrap();
    let at_rest = raw_get(&raw, "models/t/a.pnmy").await;
    assert_eq!(&at_rest[..7], MAGIC);
    assert!(
        !at_rest.windows(16).any(|w| w == &model[..16]),
        "plaintext visible at rest"
    );
    let output: Vec<u8> = (0..120_000u32)
        .flat_map(|i| format!("{i},1,0.{i}\n").into_bytes())
        .collect();
    let mut w = under_a.writer("jobs/t/j/output-0.csv").await.unwrap();
    for piece in output.chunks(50_001) {
        w.write(piece).await.unwrap();
    }
    assert_eq!(w.finish().await.unwrap(), output.len() as u64);
    let at_rest = raw_get(&raw, "jobs/t/j/output-0.csv").await;
    assert_eq!(&at_rest[..7], MAGIC);
    assert!(!at_rest.windows(12).any(|w| w == b"\n100000,1,0."));

    // The old plaintext still reads under a key; so do A's objects, whole and streamed.
    assert_reads(&under_a, "models/t/old.pnmy", &model).await;
    assert_reads(&under_a, "models/t/a.pnmy", &model).await;
    let (size, streamed) = read_stream(&under_a, "jobs/t/j/output-0.csv")
        .await
        .unwrap();
    assert_eq!(size, output.len() as u64, "the size is the plaintext's");
    assert_eq!(streamed, output);

    // Rotate: B is current, A is kept for reading. Both read; new objects are under B.
    let rotated = store(
        &raw,
        Some(
            Keyring::new("B", key_b())
                .unwrap()
                .with_old_key("A", key_a())
                .unwrap(),
        ),
    );
    rotated
        .put("models/t/b.pnmy", Bytes::from(model.clone()))
        .await
        .unwrap();
    assert_reads(&rotated, "models/t/a.pnmy", &model).await;
    assert_reads(&rotated, "models/t/b.pnmy", &model).await;
    assert_eq!(
        read_stream(&rotated, "jobs/t/j/output-0.csv")
            .await
            .unwrap()
            .1,
        output
    );
    let b_header = raw_get(&raw, "models/t/b.pnmy").await;
    assert_eq!(
        &b_header[9..10],
        b"B",
        "the key id is stored beside the object"
    );

    // A store that has dropped A: a clear error naming the key id, for whole and streamed
    // reads; a store with no key at all says the same instead of returning ciphertext.
    let only_b = store(&raw, Some(Keyring::new("B", key_b()).unwrap()));
    assert_eq!(
        crypto_err(only_b.get("models/t/a.pnmy").await),
        CryptoError::UnknownKey {
            path: "models/t/a.pnmy".into(),
            key_id: "A".into()
        }
    );
    assert!(matches!(
        stream_err(&only_b, "jobs/t/j/output-0.csv").await,
        CryptoError::UnknownKey { .. }
    ));
    assert!(matches!(
        crypto_err(plain_store.get("models/t/b.pnmy").await),
        CryptoError::UnknownKey { .. }
    ));
    let message = crypto_err(only_b.get("models/t/a.pnmy").await).to_string();
    assert!(
        message.contains("PYNOMALY_ENCRYPTION_OLD_KEYS"),
        "{message}"
    );

    // Tampered ciphertext: one flipped bit in the body, in place, fails authentication,
    // whole or streamed (the stream ends with the error instead of yielding altered bytes).
    let mut tampered_output = raw_get(&raw, "jobs/t/j/output-0.csv").await;
    let mid = tampered_output.len() / 2;
    tampered_output[mid] ^= 0x80;
    raw_put(&raw, "jobs/t/j/output-0.csv", tampered_output).await;
    assert!(matches!(
        crypto_err(read_stream(&rotated, "jobs/t/j/output-0.csv").await),
        CryptoError::Authentication { .. }
    ));
    assert!(matches!(
        crypto_err(rotated.get("jobs/t/j/output-0.csv").await),
        CryptoError::Authentication { .. }
    ));

    // Path swap: A's sealed model copied over B's path, bit for bit, does not open there,
    // though it opens at its own.
    let a_bytes = raw_get(&raw, "models/t/a.pnmy").await;
    raw_put(&raw, "models/t/b.pnmy", a_bytes).await;
    assert_eq!(
        crypto_err(rotated.get("models/t/b.pnmy").await),
        CryptoError::Authentication {
            path: "models/t/b.pnmy".into()
        }
    );

    // Truncated below a header: malformed, not a panic.
    raw_put(&raw, "models/t/cut.pnmy", MAGIC[..5].to_vec()).await;
    assert!(matches!(
        crypto_err(rotated.get("models/t/cut.pnmy").await),
        CryptoError::Malformed { .. }
    ));
    assert!(matches!(
        stream_err(&rotated, "models/t/cut.pnmy").await,
        CryptoError::Malformed { .. }
    ));

    // A store that requires encryption refuses the old plaintext (no downgrade by
    // substituting an unencrypted object).
    let strict = store(
        &raw,
        Some(Keyring::new("B", key_b()).unwrap().require_encrypted(true)),
    );
    assert!(matches!(
        crypto_err(strict.get("models/t/old.pnmy").await),
        CryptoError::PlaintextRefused { .. }
    ));

    // Empty objects round-trip both ways.
    rotated
        .put("jobs/t/j/empty.json", Bytes::new())
        .await
        .unwrap();
    assert_eq!(rotated.get("jobs/t/j/empty.json").await.unwrap().len(), 0);
    assert_eq!(
        read_stream(&rotated, "jobs/t/j/empty.json").await.unwrap(),
        (0, Vec::new())
    );
    plain_store
        .put("jobs/t/j/empty-plain.json", Bytes::new())
        .await
        .unwrap();
    assert_eq!(
        read_stream(&rotated, "jobs/t/j/empty-plain.json")
            .await
            .unwrap(),
        (0, Vec::new())
    );
}

#[tokio::test]
async fn encryption_at_rest_on_local_files_rotates_and_detects_tampering() {
    let dir = tempfile::tempdir().unwrap();
    let raw: Arc<dyn ObjectStore> = Arc::new(LocalFileSystem::new_with_prefix(dir.path()).unwrap());
    encryption_holds_on(raw).await;
}

#[tokio::test]
async fn encryption_at_rest_on_s3_rotates_and_detects_tampering() {
    TestBucket::run(async |bucket| {
        let raw = pynomaly_store::s3_bucket_with(bucket.name(), &s3_options(bucket)).unwrap();
        encryption_holds_on(raw).await;
    })
    .await;
}
