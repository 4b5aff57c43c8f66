//! Artifacts: serialized models and job outputs, over `object_store`.
//!
//! Paths are relative to the store's root (`models/<tenant>/<name>/<uuid>.pnmy`,
//! `jobs/<tenant>/<job id>/<n>.json`). The embedded default is a directory
//! (`<data dir>/storage`); an `s3://bucket/prefix` URL opens an S3-compatible store
//! ([`s3_bucket`]: AWS, or any server at `AWS_ENDPOINT_URL`), with no change to the callers.
//!
//! With a [`Keyring`] ([`ArtifactStore::with_encryption`]) every object written is sealed
//! with AES-256-GCM and every object read is opened (see [`crate::crypto`]): whole objects
//! (`put`/`get`) and streamed ones (`writer`/`get_stream`, frame by frame, so memory stays
//! bounded) alike, on local files and S3, so no caller handles encryption itself.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::prefix::PrefixStore;
use object_store::{
    MultipartUpload, ObjectStore, ObjectStoreExt, PutPayload, PutResult, UploadPart, WriteMultipart,
};

use crate::StoreError;
use crate::crypto::{Envelope, Keyring, Opener, Sealer, plaintext_len};
use crate::s3_uploads::{S3Uploads, background_tries};

/// How to reach an S3-compatible store. [`S3Options::from_env`] reads the standard
/// variables; whatever is `None` falls back to them (and to the AWS defaults).
#[derive(Clone, Default)]
pub struct S3Options {
    /// `AWS_ENDPOINT_URL` (or `AWS_ENDPOINT_URL_S3`): a store other than AWS. Requests are
    /// then path-style (`endpoint/bucket/key`), and plain HTTP is allowed when it says
    /// `http://`.
    pub endpoint: Option<String>,
    /// `AWS_REGION` (default `us-east-1`).
    pub region: Option<String>,
    /// `AWS_ACCESS_KEY_ID`.
    pub access_key_id: Option<String>,
    /// `AWS_SECRET_ACCESS_KEY`.
    pub secret_access_key: Option<String>,
}

impl std::fmt::Debug for S3Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Options")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "…"),
            )
            .finish()
    }
}

impl S3Options {
    /// The endpoint and region from the environment (credentials are read by the builder).
    pub fn from_env() -> Self {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.trim().is_empty());
        Self {
            endpoint: var("AWS_ENDPOINT_URL_S3")
                .or_else(|| var("AWS_ENDPOINT_URL"))
                .or_else(|| var("AWS_ENDPOINT")),
            region: var("AWS_REGION").or_else(|| var("AWS_DEFAULT_REGION")),
            access_key_id: None,
            secret_access_key: None,
        }
    }
}

/// An S3 bucket, configured from the standard `AWS_*` variables (see [`S3Options`]).
///
/// # Errors
/// The configuration is incomplete or invalid.
pub fn s3_bucket(bucket: &str) -> Result<Arc<dyn ObjectStore>, StoreError> {
    s3_bucket_with(bucket, &S3Options::from_env())
}

/// An S3 bucket with these options (the environment fills in the rest).
///
/// # Errors
/// The configuration is incomplete or invalid.
pub fn s3_bucket_with(
    bucket: &str,
    options: &S3Options,
) -> Result<Arc<dyn ObjectStore>, StoreError> {
    Ok(Arc::new(amazon_s3(bucket, options)?))
}

fn amazon_s3(bucket: &str, options: &S3Options) -> Result<AmazonS3, StoreError> {
    if bucket.is_empty() {
        return Err(StoreError::UnsupportedUrl(
            "s3:// URL without a bucket".into(),
        ));
    }
    let mut builder = AmazonS3Builder::from_env().with_bucket_name(bucket);
    if let Some(endpoint) = &options.endpoint {
        builder = builder
            .with_endpoint(endpoint.trim_end_matches('/'))
            .with_virtual_hosted_style_request(false)
            .with_allow_http(endpoint.starts_with("http://"));
    }
    builder = builder.with_region(options.region.as_deref().unwrap_or("us-east-1"));
    if let Some(id) = &options.access_key_id {
        builder = builder.with_access_key_id(id);
    }
    if let Some(secret) = &options.secret_access_key {
        builder = builder.with_secret_access_key(secret);
    }
    Ok(builder.build()?)
}

/// Removes the staging files `<dest>#<digits>` an interrupted multipart upload to `dest`
/// left in a local store (the store itself never lists or removes them).
fn remove_staged_uploads(dest: &std::path::Path) -> Result<(), StoreError> {
    let (Some(dir), Some(name)) = (dest.parent(), dest.file_name()) else {
        return Ok(());
    };
    let prefix = format!("{}#", name.to_string_lossy());
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    for entry in entries {
        let entry = entry?;
        let file = entry.file_name();
        let staged = file
            .to_string_lossy()
            .strip_prefix(&prefix)
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        if staged {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => {
                    tracing::info!(path = %entry.path().display(), "removed an interrupted upload")
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
}

/// Where models and job outputs live.
#[derive(Debug, Clone)]
pub struct ArtifactStore {
    inner: Arc<dyn ObjectStore>,
    /// The configured URL, for messages and `uri()`.
    base_url: String,
    /// Seals what is written and opens what is read; `None`: plaintext.
    keyring: Option<Arc<Keyring>>,
    /// The directory of a local store (where interrupted uploads leave staging files).
    local_root: Option<PathBuf>,
    /// An S3 store's incomplete uploads (what interrupted uploads leave there).
    s3_uploads: Option<Arc<S3Uploads>>,
}

impl ArtifactStore {
    /// Opens a store from a URL: `s3://bucket/prefix`, `file:///abs/path`, or a plain
    /// local path.
    ///
    /// # Errors
    /// The directory cannot be created, or the URL's scheme is not supported by this build.
    pub fn from_url(url: &str) -> Result<Self, StoreError> {
        Self::from_url_with(url, &S3Options::from_env())
    }

    /// As [`ArtifactStore::from_url`], with S3 options given rather than read from the
    /// environment.
    ///
    /// # Errors
    /// As [`ArtifactStore::from_url`].
    pub fn from_url_with(url: &str, s3: &S3Options) -> Result<Self, StoreError> {
        if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            let prefix = prefix.trim_matches('/');
            let s3 = Arc::new(amazon_s3(bucket, s3)?);
            let s3_uploads = Some(Arc::new(S3Uploads::new(Arc::clone(&s3), prefix)));
            let inner: Arc<dyn ObjectStore> = if prefix.is_empty() {
                s3
            } else {
                Arc::new(PrefixStore::new(s3, prefix))
            };
            return Ok(Self {
                inner,
                base_url: format!("s3://{bucket}/{prefix}"),
                keyring: None,
                local_root: None,
                s3_uploads,
            });
        }
        let local = if let Some(rest) = url.strip_prefix("file://") {
            PathBuf::from(rest)
        } else if url.contains("://") {
            return Err(StoreError::UnsupportedUrl(url.to_string()));
        } else {
            PathBuf::from(url)
        };
        std::fs::create_dir_all(&local)?;
        let root = std::fs::canonicalize(&local)?;
        let fs = LocalFileSystem::new_with_prefix(&root)?.with_automatic_cleanup(true);
        Ok(Self {
            inner: Arc::new(fs),
            base_url: format!("file://{}", root.display()),
            keyring: None,
            local_root: Some(root),
            s3_uploads: None,
        })
    }

    /// A store over any `object_store` implementation (tests, S3).
    pub fn from_object_store(inner: Arc<dyn ObjectStore>, base_url: impl Into<String>) -> Self {
        Self {
            inner,
            base_url: base_url.into(),
            keyring: None,
            local_root: None,
            s3_uploads: None,
        }
    }

    /// Seals every object written from now on under the ring's current key (if it has
    /// one) and opens objects sealed under any of its keys.
    #[must_use]
    pub fn with_encryption(mut self, keyring: Keyring) -> Self {
        self.keyring = Some(Arc::new(keyring));
        self
    }

    /// Whether new objects are encrypted.
    pub fn encrypts(&self) -> bool {
        self.keyring.as_ref().is_some_and(|k| k.seals())
    }

    /// The key ring objects are opened with (an empty one when none is configured, so an
    /// encrypted object is reported as such rather than read as garbage).
    fn ring(&self) -> Arc<Keyring> {
        self.keyring
            .clone()
            .unwrap_or_else(|| Arc::new(Keyring::read_only()))
    }

    /// The full URI of an artifact, as shown to users.
    pub fn uri(&self, path: &str) -> String {
        format!("{}/{}", self.base_url.trim_end_matches('/'), path)
    }

    /// Writes a whole artifact.
    ///
    /// # Errors
    /// The store's error.
    pub async fn put(&self, path: &str, bytes: Bytes) -> Result<(), StoreError> {
        let path = ObjectPath::from(path);
        let bytes = match &self.keyring {
            Some(ring) if ring.seals() => Bytes::from(ring.seal(path.as_ref(), &bytes)?),
            _ => bytes,
        };
        self.inner.put(&path, PutPayload::from_bytes(bytes)).await?;
        Ok(())
    }

    /// Reads a whole artifact (opened, when it is encrypted).
    ///
    /// # Errors
    /// [`StoreError::NotFound`] when it does not exist, [`StoreError::Crypto`] when it is
    /// encrypted and cannot be opened (unknown key id, failed tag), else the store's error.
    pub async fn get(&self, path: &str) -> Result<Bytes, StoreError> {
        let object_path = ObjectPath::from(path);
        match self.inner.get(&object_path).await {
            Ok(r) => {
                let bytes = r.bytes().await?;
                Ok(Bytes::from(self.ring().open(object_path.as_ref(), &bytes)?))
            }
            Err(object_store::Error::NotFound { .. }) => Err(StoreError::NotFound(path.into())),
            Err(e) => Err(e.into()),
        }
    }

    /// Streams an artifact: its size and its bytes (opened frame by frame when it is
    /// encrypted; the size is then the plaintext's, computed from the object's).
    ///
    /// # Errors
    /// [`StoreError::NotFound`] when it does not exist, [`StoreError::Crypto`] when it is
    /// encrypted under a key id this store does not hold, else the store's error. A frame
    /// that fails authentication ends the stream with an error.
    pub async fn get_stream(
        &self,
        path: &str,
    ) -> Result<(u64, BoxStream<'static, Result<Bytes, StoreError>>), StoreError> {
        let object_path = ObjectPath::from(path);
        let r = match self.inner.get(&object_path).await {
            Ok(r) => r,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(StoreError::NotFound(path.into()));
            }
            Err(e) => return Err(e.into()),
        };
        let size = r.meta.size;
        let mut body = r.into_stream().map_err(StoreError::from).boxed();
        // Read until the start tells plaintext from sealed.
        let ring = self.ring();
        let mut start: Vec<u8> = Vec::new();
        let envelope = loop {
            let ended = match body.next().await {
                Some(part) => {
                    start.extend_from_slice(&part?);
                    false
                }
                None => true,
            };
            match ring.opener(object_path.as_ref(), &start)? {
                Envelope::NeedMore if !ended => {}
                Envelope::NeedMore => {
                    // The whole object is shorter than a header: empty (plaintext), or a
                    // truncated header (an error).
                    ring.open(object_path.as_ref(), &start)?;
                    break Envelope::Plain;
                }
                decided => break decided,
            }
        };
        match envelope {
            Envelope::Plain | Envelope::NeedMore => {
                let first =
                    futures::stream::iter((!start.is_empty()).then(|| Ok(Bytes::from(start))));
                Ok((size, first.chain(body).boxed()))
            }
            Envelope::Sealed { header_len, opener } => {
                let plain_size = plaintext_len(
                    size.saturating_sub(header_len as u64),
                    opener.frame_sealed(),
                )
                .ok_or_else(|| {
                    StoreError::Crypto(crate::crypto::CryptoError::Malformed {
                        path: path.to_string(),
                        reason: format!("{size} bytes is not the size of a sealed object"),
                    })
                })?;
                let rest = Bytes::from(start).slice(header_len..);
                let sealed =
                    futures::stream::iter((!rest.is_empty()).then(|| Ok(rest))).chain(body);
                Ok((plain_size, open_stream(sealed.boxed(), opener)))
            }
        }
    }

    /// Deletes an artifact; deleting one that does not exist is not an error.
    ///
    /// # Errors
    /// The store's error.
    pub async fn delete(&self, path: &str) -> Result<(), StoreError> {
        match self.inner.delete(&ObjectPath::from(path)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Starts a streamed write (multipart upload): memory stays bounded by the part size.
    /// What an earlier, interrupted write of `path` left behind (a process killed
    /// mid-upload: a local store's staging files `<path>#<n>`, an S3 store's incomplete
    /// uploads of that key) is removed first; when S3 fails to begin the upload, what it may
    /// have begun all the same (the answer lost, not the request) is aborted once it answers
    /// again. Writes of one path must not run at once (a job's attempts do not).
    ///
    /// # Errors
    /// The store's error.
    pub async fn writer(&self, path: &str) -> Result<ArtifactWriter, StoreError> {
        if let Some(root) = &self.local_root {
            remove_staged_uploads(&root.join(path))?;
        }
        if let Some(uploads) = &self.s3_uploads {
            match uploads.abort_stale(path, None).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(path, n, "aborted uploads an earlier write left"),
                // Not fatal: S3 away fails the upload next; a bucket policy without
                // s3:ListBucketMultipartUploads leaves them to the lifecycle rule.
                Err(e) => tracing::warn!(error = %e, path, "cannot list this path's uploads"),
            }
        }
        let object_path = ObjectPath::from(path);
        let upload = match self.inner.put_multipart(&object_path).await {
            Ok(upload) => upload,
            Err(e) => {
                if let Some(uploads) = &self.s3_uploads {
                    uploads.abort_stale_later(path);
                }
                return Err(e.into());
            }
        };
        let upload = Box::new(AbortLater {
            inner: Some(upload),
            path: path.to_string(),
        });
        let mut inner = WriteMultipart::new_with_chunk_size(upload, 5 * 1024 * 1024);
        let sealer = match self
            .keyring
            .as_ref()
            .and_then(|r| r.sealer(object_path.as_ref()))
        {
            Some((header, sealer)) => {
                inner.write(&header);
                Some(sealer)
            }
            None => None,
        };
        Ok(ArtifactWriter {
            inner,
            sealer,
            sealed: Vec::new(),
            bytes: 0,
        })
    }

    /// Checks that the store answers (for health checks).
    ///
    /// # Errors
    /// The store's error.
    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut listing = self.inner.list(Some(&ObjectPath::from("health")));
        match listing.next().await {
            None | Some(Ok(_)) => Ok(()),
            Some(Err(e)) => Err(e.into()),
        }
    }
}

/// A multipart upload that does not stay behind (invisible, but billed) when its write
/// fails: an abort the store does not answer (an S3 outage cut the write, and now the
/// abort) is tried again in the background with backoff until it does, and an upload
/// dropped neither completed nor aborted (a job's run abandoned mid-write) is aborted in
/// the background. A process that exits first leaves it to the bucket's lifecycle rule.
#[derive(Debug)]
struct AbortLater {
    /// `None` once completed or aborted (or handed to the background task).
    inner: Option<Box<dyn MultipartUpload>>,
    path: String,
}

fn upload_gone() -> object_store::Error {
    object_store::Error::Generic {
        store: "artifacts",
        source: "the upload was aborted".into(),
    }
}

/// Aborts `upload` off the caller's path: at once unless `delayed`, then with
/// [`background_tries`]' backoff until the store answers. An upload the store no longer
/// knows counts as aborted.
fn abort_in_background(mut upload: Box<dyn MultipartUpload>, path: String, delayed: bool) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    runtime.spawn(async move {
        for wait in background_tries(delayed) {
            tokio::time::sleep(wait).await;
            match upload.abort().await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {
                    tracing::info!(path, "aborted the upload of a failed write");
                    return;
                }
                Err(e) => tracing::debug!(error = %e, path, "cannot abort an upload yet"),
            }
        }
        tracing::warn!(
            path,
            "gave up aborting an upload: the bucket's lifecycle rule expires it"
        );
    });
}

#[async_trait::async_trait]
impl MultipartUpload for AbortLater {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        match &mut self.inner {
            Some(upload) => upload.put_part(data),
            None => Box::pin(async { Err(upload_gone()) }),
        }
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        let Some(upload) = &mut self.inner else {
            return Err(upload_gone());
        };
        let done = upload.complete().await?;
        self.inner = None;
        Ok(done)
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        let Some(mut upload) = self.inner.take() else {
            return Ok(());
        };
        match upload.abort().await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => {
                tracing::warn!(error = %e, path = self.path, "cannot abort an upload now: trying again in the background");
                abort_in_background(upload, self.path.clone(), true);
                Err(e)
            }
        }
    }
}

impl Drop for AbortLater {
    fn drop(&mut self) {
        if let Some(upload) = self.inner.take() {
            abort_in_background(upload, std::mem::take(&mut self.path), false);
        }
    }
}

/// A streamed artifact write; nothing is visible until [`ArtifactWriter::finish`].
#[derive(Debug)]
pub struct ArtifactWriter {
    inner: WriteMultipart,
    /// Seals the bytes on their way to `inner`, when the store encrypts.
    sealer: Option<Sealer>,
    /// Sealed frames waiting to be handed to `inner` (reused between writes).
    sealed: Vec<u8>,
    /// Plaintext bytes written.
    bytes: u64,
}

impl ArtifactWriter {
    /// Appends bytes, waiting when too many parts are in flight.
    ///
    /// # Errors
    /// The store's error from an earlier part.
    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        self.inner.wait_for_capacity(4).await?;
        match &mut self.sealer {
            Some(sealer) => {
                sealer.push_into(bytes, &mut self.sealed)?;
                if !self.sealed.is_empty() {
                    self.inner.write(&self.sealed);
                    self.sealed.clear();
                }
            }
            None => self.inner.write(bytes),
        }
        self.bytes += bytes.len() as u64;
        Ok(())
    }

    /// Bytes written so far.
    pub fn bytes_written(&self) -> u64 {
        self.bytes
    }

    /// Completes the upload.
    ///
    /// # Errors
    /// The store's error.
    pub async fn finish(mut self) -> Result<u64, StoreError> {
        if let Some(sealer) = self.sealer.take() {
            sealer.finish_into(&mut self.sealed)?;
            self.inner.write(&self.sealed);
        }
        self.inner.finish().await?;
        Ok(self.bytes)
    }

    /// Abandons the upload.
    ///
    /// # Errors
    /// The store's error.
    pub async fn abort(self) -> Result<(), StoreError> {
        self.inner.abort().await?;
        Ok(())
    }
}

/// Opens a sealed body frame by frame as it streams in.
fn open_stream(
    sealed: BoxStream<'static, Result<Bytes, StoreError>>,
    opener: Box<Opener>,
) -> BoxStream<'static, Result<Bytes, StoreError>> {
    futures::stream::try_unfold((sealed, Some(opener)), |(mut sealed, opener)| async move {
        let Some(mut opener) = opener else {
            return Ok(None);
        };
        loop {
            let mut out = Vec::new();
            match sealed.next().await {
                Some(part) => {
                    opener.push_into(&part?, &mut out)?;
                    if !out.is_empty() {
                        return Ok(Some((Bytes::from(out), (sealed, Some(opener)))));
                    }
                }
                None => {
                    opener.finish_into(&mut out)?;
                    return Ok(Some((Bytes::from(out), (sealed, None))));
                }
            }
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names of the files in `dir`, sorted.
    fn names(dir: &std::path::Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[tokio::test]
    async fn a_write_cleans_up_what_an_interrupted_write_of_its_path_left() {
        let dir = tempfile::tempdir().unwrap();
        let store = ArtifactStore::from_url(&dir.path().display().to_string()).unwrap();
        let path = "jobs/t/j1/output-0.csv";
        // A process killed mid-upload: neither finished nor aborted.
        let mut crashed = store.writer(path).await.unwrap();
        crashed
            .write(b"row,prediction,score\n0,1,0.4")
            .await
            .unwrap();
        std::mem::forget(crashed);
        let job_dir = dir.path().join("jobs/t/j1");
        let left = names(&job_dir);
        assert!(
            left.iter().any(|n| n.starts_with("output-0.csv#")),
            "{left:?}"
        );
        // A neighbour's upload is not touched.
        let neighbour = store.writer("jobs/t/j1/output-1.csv").await.unwrap();
        std::mem::forget(neighbour);

        let mut retried = store.writer(path).await.unwrap();
        retried.write(b"row,prediction,score\n").await.unwrap();
        retried.finish().await.unwrap();
        let left = names(&job_dir);
        assert!(
            left.iter().all(|n| !n.starts_with("output-0.csv#")),
            "{left:?}"
        );
        assert!(
            left.iter().any(|n| n.starts_with("output-1.csv#")),
            "{left:?}"
        );
        assert_eq!(
            store.get(path).await.unwrap(),
            Bytes::from_static(b"row,prediction,score\n")
        );
    }
}
