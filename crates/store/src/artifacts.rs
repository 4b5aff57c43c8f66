//! Artifacts: serialized models and job outputs, over `object_store`.
//!
//! Paths are relative to the store's root (`models/<tenant>/<name>/<uuid>.pnmy`,
//! `jobs/<tenant>/<job id>/<n>.json`). The embedded default is a directory
//! (`<data dir>/storage`); an `s3://bucket/prefix` URL opens an S3-compatible store once
//! the `aws` feature of `object_store` is enabled (the scale-out issue), with no change to
//! the callers.

use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload, WriteMultipart};

use crate::StoreError;

/// Where models and job outputs live.
#[derive(Debug, Clone)]
pub struct ArtifactStore {
    inner: Arc<dyn ObjectStore>,
    /// The configured URL, for messages and `uri()`.
    base_url: String,
}

impl ArtifactStore {
    /// Opens a store from a URL: `file:///abs/path`, or a plain local path.
    ///
    /// # Errors
    /// The directory cannot be created, or the URL's scheme is not supported by this build.
    pub fn from_url(url: &str) -> Result<Self, StoreError> {
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
        })
    }

    /// A store over any `object_store` implementation (tests, S3).
    pub fn from_object_store(inner: Arc<dyn ObjectStore>, base_url: impl Into<String>) -> Self {
        Self {
            inner,
            base_url: base_url.into(),
        }
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
        self.inner
            .put(&ObjectPath::from(path), PutPayload::from_bytes(bytes))
            .await?;
        Ok(())
    }

    /// Reads a whole artifact.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] when it does not exist, else the store's error.
    pub async fn get(&self, path: &str) -> Result<Bytes, StoreError> {
        match self.inner.get(&ObjectPath::from(path)).await {
            Ok(r) => Ok(r.bytes().await?),
            Err(object_store::Error::NotFound { .. }) => Err(StoreError::NotFound(path.into())),
            Err(e) => Err(e.into()),
        }
    }

    /// Streams an artifact: its size and its bytes.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] when it does not exist, else the store's error.
    pub async fn get_stream(
        &self,
        path: &str,
    ) -> Result<(u64, BoxStream<'static, Result<Bytes, StoreError>>), StoreError> {
        match self.inner.get(&ObjectPath::from(path)).await {
            Ok(r) => {
                let size = r.meta.size;
                Ok((size, r.into_stream().map_err(StoreError::from).boxed()))
            }
            Err(object_store::Error::NotFound { .. }) => Err(StoreError::NotFound(path.into())),
            Err(e) => Err(e.into()),
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
    ///
    /// # Errors
    /// The store's error.
    pub async fn writer(&self, path: &str) -> Result<ArtifactWriter, StoreError> {
        let upload = self.inner.put_multipart(&ObjectPath::from(path)).await?;
        Ok(ArtifactWriter {
            inner: WriteMultipart::new_with_chunk_size(upload, 5 * 1024 * 1024),
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

/// A streamed artifact write; nothing is visible until [`ArtifactWriter::finish`].
#[derive(Debug)]
pub struct ArtifactWriter {
    inner: WriteMultipart,
    bytes: u64,
}

impl ArtifactWriter {
    /// Appends bytes, waiting when too many parts are in flight.
    ///
    /// # Errors
    /// The store's error from an earlier part.
    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), StoreError> {
        self.inner.wait_for_capacity(4).await?;
        self.inner.write(bytes);
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
    pub async fn finish(self) -> Result<u64, StoreError> {
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
