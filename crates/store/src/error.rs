//! The store's one error type.

use thiserror::Error;

/// An error from a metadata or artifact store.
///
/// None of these is the caller's fault except [`StoreError::Conflict`] and
/// [`StoreError::NotFound`]; the API answers the others with a 500 and logs the chain.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The database answered with an error or could not be reached.
    #[error("database error")]
    Database(#[from] sqlx::Error),
    /// Migrations could not be applied at start-up.
    #[error("database migration failed")]
    Migration(#[from] sqlx::migrate::MigrateError),
    /// The artifact store answered with an error.
    #[error("artifact store error")]
    Artifact(#[from] object_store::Error),
    /// A stored document (JSON column) could not be read back.
    #[error("corrupt stored value in {column}: {reason}")]
    Corrupt {
        column: &'static str,
        reason: String,
    },
    /// A unique constraint was violated (e.g. an API key hash that already exists).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The object asked for does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// A storage URL this build cannot open.
    #[error("unsupported storage URL '{0}'")]
    UnsupportedUrl(String),
    /// An encrypted artifact could not be opened (unknown key id, failed tag, malformed
    /// header) or sealed.
    #[error(transparent)]
    Crypto(#[from] crate::crypto::CryptoError),
    /// Local I/O around the store (creating the data directory).
    #[error("I/O error")]
    Io(#[from] std::io::Error),
}
