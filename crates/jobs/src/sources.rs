//! Data sources: turning a URI from a request into a file the job may read.
//!
//! Accepted: a path relative to the sources directory, or a `file://` URI inside it.
//! Refused: anything that ends up outside that directory, whether through `..`, an absolute
//! path or a symbolic link. The check is done twice: lexically first (so a path outside
//! the directory is refused the same way whether or not it exists, revealing nothing), then
//! on the canonical path (so symbolic links cannot escape).
//!
//! Also accepted: `s3://bucket/key` ([`SourceResolver::locate`]), read from any
//! S3-compatible store configured by the standard `AWS_*` variables. An object is read as a
//! stream, one response body part at a time, by the same chunked reader as a file, so memory
//! does not grow with its size. `https://` stays refused.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use data_source::{DataError, Format, ReadOptions, TableReader};
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::{ObjectStore, ObjectStoreExt};
use pynomaly_store::S3Options;
use thiserror::Error;

/// Why a data source was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SourceError {
    #[error("data source '{0}' is outside the sources directory")]
    OutsideSourcesDir(String),
    #[error("data source '{0}' does not exist")]
    NotFound(String),
    #[error(
        "data source '{0}': scheme not supported by this server (accepted: a path relative to the sources directory, or file://)"
    )]
    UnsupportedScheme(String),
    #[error("data source '{0}' is empty or not a file")]
    NotAFile(String),
    #[error("data source '{0}': expected s3://bucket/key")]
    BadObjectUrl(String),
    #[error("data source '{uri}': the object store cannot be configured: {reason}")]
    ObjectStoreConfig { uri: String, reason: String },
}

/// Where a data source's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A file inside the sources directory (canonical path).
    Local(PathBuf),
    /// An object in an S3-compatible bucket.
    Object { bucket: String, key: String },
}

impl Source {
    /// The name the format is guessed from (extension, `.gz`).
    fn name(&self) -> String {
        match self {
            Source::Local(p) => p.display().to_string(),
            Source::Object { key, .. } => key.clone(),
        }
    }
}

/// Why a source could not be opened or read to its end.
#[derive(Debug, Error)]
pub enum OpenError {
    /// The data itself (or a missing object): the job fails with this message.
    #[error(transparent)]
    Data(#[from] DataError),
    /// The object does not exist.
    #[error("object s3://{bucket}/{key} does not exist")]
    NotFound { bucket: String, key: String },
    /// The object store failed (may succeed on another attempt).
    #[error("object store error")]
    Store(#[from] object_store::Error),
    /// The store could not be configured.
    #[error(transparent)]
    Config(#[from] pynomaly_store::StoreError),
}

/// Resolves data-source URIs inside one directory, or to S3 objects.
#[derive(Debug, Clone)]
pub struct SourceResolver {
    root: PathBuf,
    s3: S3Options,
    buckets: Arc<Mutex<HashMap<String, Arc<dyn ObjectStore>>>>,
}

impl SourceResolver {
    /// A resolver for sources under `root` (created if missing).
    ///
    /// # Errors
    /// The directory cannot be created or canonicalized.
    pub fn new(root: &Path) -> std::io::Result<Self> {
        std::fs::create_dir_all(root)?;
        Ok(Self {
            root: std::fs::canonicalize(root)?,
            s3: S3Options::from_env(),
            buckets: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    /// Reads `s3://` sources with these options instead of the environment's.
    #[must_use]
    pub fn with_s3(mut self, s3: S3Options) -> Self {
        self.s3 = s3;
        self.buckets = Arc::new(Mutex::new(HashMap::new()));
        self
    }

    /// Where a source URI points: a local file (as [`SourceResolver::resolve`]) or an S3
    /// object (`s3://bucket/key`, checked for shape only: reading it tells whether it
    /// exists).
    ///
    /// # Errors
    /// See [`SourceError`].
    pub fn locate(&self, uri: &str) -> Result<Source, SourceError> {
        if let Some(rest) = uri.strip_prefix("s3://") {
            return match rest.split_once('/') {
                Some((bucket, key)) if !bucket.is_empty() && !key.is_empty() => {
                    Ok(Source::Object {
                        bucket: bucket.to_string(),
                        key: key.to_string(),
                    })
                }
                _ => Err(SourceError::BadObjectUrl(uri.to_string())),
            };
        }
        self.resolve(uri).map(Source::Local)
    }

    fn bucket(&self, bucket: &str) -> Result<Arc<dyn ObjectStore>, pynomaly_store::StoreError> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(store) = buckets.get(bucket) {
            return Ok(Arc::clone(store));
        }
        let store = pynomaly_store::s3_bucket_with(bucket, &self.s3)?;
        buckets.insert(bucket.to_string(), Arc::clone(&store));
        Ok(store)
    }

    /// Opens a chunked reader over a source. Call it on a blocking thread (the object's
    /// bytes are fetched through `runtime` as the reader asks for them).
    ///
    /// # Errors
    /// See [`OpenError`].
    pub fn open_blocking(
        &self,
        source: &Source,
        options: &ReadOptions,
        runtime: &tokio::runtime::Handle,
    ) -> Result<TableReader<'static>, OpenError> {
        match source {
            Source::Local(path) => Ok(TableReader::open(path, options)?),
            Source::Object { bucket, key } => {
                let store = self.bucket(bucket)?;
                let path = object_store::path::Path::from(key.as_str());
                let got = runtime.block_on(store.get(&path));
                let body = match got {
                    Ok(r) => r.into_stream(),
                    Err(object_store::Error::NotFound { .. }) => {
                        return Err(OpenError::NotFound {
                            bucket: bucket.clone(),
                            key: key.clone(),
                        });
                    }
                    Err(e) => return Err(e.into()),
                };
                let reader = ObjectReader {
                    body,
                    runtime: runtime.clone(),
                    current: Bytes::new(),
                };
                let mut options = options.clone();
                let name = source.name().to_ascii_lowercase();
                let name = name.strip_suffix(".gz").unwrap_or(&name);
                if options.format.is_none() {
                    options.format = match name.rsplit_once('.').map(|(_, ext)| ext) {
                        Some("csv" | "tsv" | "tab") => Some(Format::Csv),
                        Some("jsonl" | "ndjson") => Some(Format::JsonLines),
                        _ => None,
                    };
                }
                if (name.ends_with(".tsv") || name.ends_with(".tab")) && options.delimiter.is_none()
                {
                    options.delimiter = Some(b'\t');
                }
                Ok(TableReader::new(reader, &options)?)
            }
        }
    }

    /// The canonical sources directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file a source URI names.
    ///
    /// # Errors
    /// See [`SourceError`].
    pub fn resolve(&self, uri: &str) -> Result<PathBuf, SourceError> {
        let raw = if let Some(rest) = uri.strip_prefix("file://") {
            PathBuf::from(rest)
        } else if uri.contains("://") {
            return Err(SourceError::UnsupportedScheme(uri.to_string()));
        } else {
            PathBuf::from(uri)
        };
        if uri.is_empty() {
            return Err(SourceError::NotFound(uri.to_string()));
        }
        let joined = self.root.join(&raw);
        let lexical = normalize(&joined);
        if !lexical.starts_with(&self.root) {
            return Err(SourceError::OutsideSourcesDir(uri.to_string()));
        }
        let canonical = match std::fs::canonicalize(&lexical) {
            Ok(p) => p,
            Err(_) => return Err(SourceError::NotFound(uri.to_string())),
        };
        if !canonical.starts_with(&self.root) {
            return Err(SourceError::OutsideSourcesDir(uri.to_string()));
        }
        if !canonical.is_file() {
            return Err(SourceError::NotAFile(uri.to_string()));
        }
        Ok(canonical)
    }
}

/// A blocking `Read` over an object's body stream: each refill waits for the next part of
/// the response (a few hundred KiB), so at most one part is held in memory.
struct ObjectReader {
    body: BoxStream<'static, object_store::Result<Bytes>>,
    runtime: tokio::runtime::Handle,
    current: Bytes,
}

impl Read for ObjectReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.current.is_empty() {
            match self.runtime.block_on(self.body.next()) {
                Some(Ok(part)) => self.current = part,
                Some(Err(e)) => return Err(std::io::Error::other(e)),
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.current.len());
        buf[..n].copy_from_slice(&self.current[..n]);
        self.current = self.current.slice(n..);
        Ok(n)
    }
}

/// Resolves `.` and `..` without touching the file system.
fn normalize(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_inside_the_directory_resolve_and_escapes_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let sources = dir.path().join("sources");
        std::fs::create_dir_all(sources.join("sub")).unwrap();
        std::fs::write(sources.join("sub/a.csv"), "1,2\n").unwrap();
        std::fs::write(dir.path().join("secret.csv"), "1,2\n").unwrap();
        let r = SourceResolver::new(&sources).unwrap();
        assert!(r.resolve("sub/a.csv").is_ok());
        assert!(r.resolve("sub/../sub/a.csv").is_ok());
        let abs = format!("file://{}", r.root().join("sub/a.csv").display());
        assert!(r.resolve(&abs).is_ok());
        assert!(matches!(
            r.resolve("../secret.csv"),
            Err(SourceError::OutsideSourcesDir(_))
        ));
        assert!(matches!(
            r.resolve("/etc/passwd"),
            Err(SourceError::OutsideSourcesDir(_))
        ));
        assert!(matches!(
            r.resolve("../nope.csv"),
            Err(SourceError::OutsideSourcesDir(_))
        ));
        assert!(matches!(
            r.resolve("nope.csv"),
            Err(SourceError::NotFound(_))
        ));
        assert!(matches!(
            r.resolve("https://b/k.csv"),
            Err(SourceError::UnsupportedScheme(_))
        ));
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink(dir.path().join("secret.csv"), sources.join("link.csv"))
                .unwrap();
            assert!(matches!(
                r.resolve("link.csv"),
                Err(SourceError::OutsideSourcesDir(_))
            ));
        }
    }
}
