//! Data sources: turning a URI from a request into a file the job may read.
//!
//! Accepted: a path relative to the sources directory, or a `file://` URI inside it.
//! Refused: anything that ends up outside that directory, whether through `..`, an absolute
//! path or a symbolic link. The check is done twice: lexically first (so a path outside
//! the directory is refused the same way whether or not it exists, revealing nothing), then
//! on the canonical path (so symbolic links cannot escape). Other schemes (`s3://`,
//! `https://`) are refused here until they are configured (the scale-out issue).

use std::path::{Component, Path, PathBuf};

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
}

/// Resolves data-source URIs inside one directory.
#[derive(Debug, Clone)]
pub struct SourceResolver {
    root: PathBuf,
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
        })
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
            r.resolve("s3://b/k.csv"),
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
