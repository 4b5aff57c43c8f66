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

impl StoreError {
    /// Whether the database cannot be reached now (down, restarting, refusing
    /// connections, the pool out of connections) rather than that a statement failed: the
    /// caller should come back later, nothing is wrong with the request.
    pub fn database_unreachable(&self) -> bool {
        match self {
            StoreError::Database(e) => database_unreachable(e),
            _ => false,
        }
    }

    /// Whether this is the artifact store (S3) not answering — the connection refused,
    /// reset or timed out after the client's own retries — rather than a request it
    /// refused: the caller should come back later, nothing is wrong with the request.
    pub fn artifact_store_unreachable(&self) -> bool {
        let StoreError::Artifact(e) = self else {
            return false;
        };
        let mut next: Option<&(dyn std::error::Error + 'static)> = Some(e);
        while let Some(e) = next {
            if let Some(http) = e.downcast_ref::<object_store::client::HttpError>()
                && matches!(
                    http.kind(),
                    object_store::client::HttpErrorKind::Connect
                        | object_store::client::HttpErrorKind::Timeout
                        | object_store::client::HttpErrorKind::Interrupted
                )
            {
                return true;
            }
            if let Some(io) = e.downcast_ref::<std::io::Error>()
                && matches!(
                    io.kind(),
                    std::io::ErrorKind::ConnectionRefused
                        | std::io::ErrorKind::ConnectionReset
                        | std::io::ErrorKind::ConnectionAborted
                        | std::io::ErrorKind::NotConnected
                        | std::io::ErrorKind::TimedOut
                )
            {
                return true;
            }
            next = e.source();
        }
        false
    }
}

/// Whether a database error says the database cannot be reached now (down, restarting,
/// refusing connections, the pool out of connections) rather than that a statement failed:
/// the client should retry, not report a bug.
fn database_unreachable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        // Class 08 (connection exception), 57P (operator intervention: shutdown, cannot
        // connect now), 55000 as a connection is refused ("database is not currently
        // accepting connections"); SQLite's "database is locked" (5) and "busy" (6, 261, 517).
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            code.starts_with("08")
                || code.starts_with("57P")
                || matches!(&*code, "55000" | "5" | "6" | "261" | "517")
        }),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_artifact_store_that_does_not_answer_is_unreachable() {
        let refused = object_store::Error::Generic {
            store: "S3",
            source: Box::new(std::io::Error::from(std::io::ErrorKind::ConnectionRefused)),
        };
        assert!(StoreError::Artifact(refused).artifact_store_unreachable());
        let missing = object_store::Error::NotFound {
            path: "models/x.pnmy".into(),
            source: Box::new(std::io::Error::from(std::io::ErrorKind::NotFound)),
        };
        assert!(!StoreError::Artifact(missing).artifact_store_unreachable());
        assert!(!StoreError::NotFound("x".into()).artifact_store_unreachable());
    }
}
