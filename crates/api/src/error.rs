//! One error type for every handler, mapped exhaustively to the contract's error shape:
//! `{"error": {"code", "message", "details"}, "request_id"}`.
//!
//! Client errors say precisely what was wrong (row, column, parameter, accepted values).
//! Server errors say "internal error" and nothing more; their cause is logged with its
//! whole chain and the request id, so an operator can find it from the client's report.

use std::error::Error as StdError;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use detect_core::DetectError;
use pynomaly_jobs::{QueueError, SourceError};
use pynomaly_models::RegistryError;
use pynomaly_store::StoreError;
use serde_json::{Value, json};

use crate::request_id::current_request_id;

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 422 `invalid_input`: the request is well-formed JSON but its content is wrong.
    #[error("{message}")]
    InvalidInput { message: String, details: Value },
    /// 400 `malformed_json`.
    #[error("{0}")]
    MalformedJson(String),
    /// 401 `unauthorized`.
    #[error("{0}")]
    Unauthorized(String),
    /// 403 `forbidden`.
    #[error("{0}")]
    Forbidden(String),
    /// 404 `not_found`.
    #[error("{0}")]
    NotFound(String),
    /// 405 `method_not_allowed` (the route exists, not with this method).
    #[error("{0}")]
    MethodNotAllowed(String),
    /// 409 `conflict`.
    #[error("{0}")]
    Conflict(String),
    /// 413 `payload_too_large`.
    #[error("request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    /// 429 `rate_limited`, with `Retry-After`.
    #[error("{message}")]
    RateLimited { message: String, retry_after_s: u64 },
    /// 503 `unavailable`, with `Retry-After` when given.
    #[error("{message}")]
    Unavailable {
        message: String,
        retry_after_s: Option<u64>,
    },
    /// 507 `insufficient_storage`: the server's disk (the metadata database or the artifact
    /// store) is full; nothing was written. The cause is logged.
    #[error("{0}")]
    InsufficientStorage(String),
    /// 500 `internal`: the cause is logged, never sent.
    #[error("internal error")]
    Internal(#[source] Box<dyn StdError + Send + Sync>),
}

impl ApiError {
    /// A 422 with no details.
    pub fn invalid(message: impl Into<String>) -> Self {
        ApiError::InvalidInput {
            message: message.into(),
            details: json!({}),
        }
    }

    /// A 422 with details.
    pub fn invalid_with(message: impl Into<String>, details: Value) -> Self {
        ApiError::InvalidInput {
            message: message.into(),
            details,
        }
    }

    /// A 500 from any error — or a 507 when what failed was a write to a full disk (the
    /// error, or one of its sources, says so): the client learns that no space is left,
    /// not that we broke.
    pub fn internal(e: impl StdError + Send + Sync + 'static) -> Self {
        if storage_full(&e) {
            tracing::error!(error = %e, error.chain = %chain(&e), "a write found the disk full");
            return ApiError::InsufficientStorage(
                "the server's storage is full: nothing was written; retry once space is freed"
                    .into(),
            );
        }
        ApiError::Internal(Box::new(e))
    }

    /// The HTTP status and the contract's code.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::InvalidInput { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_input"),
            ApiError::MalformedJson(_) => (StatusCode::BAD_REQUEST, "malformed_json"),
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::MethodNotAllowed(_) => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::PayloadTooLarge { .. } => {
                (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
            }
            ApiError::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            ApiError::Unavailable { .. } => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::InsufficientStorage(_) => {
                (StatusCode::INSUFFICIENT_STORAGE, "insufficient_storage")
            }
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }

    /// Builds the response for a known request id.
    pub(crate) fn to_response(&self, request_id: &str) -> Response {
        let (status, code) = self.status_and_code();
        crate::telemetry::record_error(code, self);
        let details = match self {
            ApiError::InvalidInput { details, .. } => details.clone(),
            ApiError::PayloadTooLarge { limit } => json!({"limit_bytes": limit}),
            ApiError::Unavailable {
                retry_after_s: Some(s),
                ..
            } => json!({"retry_after_s": s}),
            ApiError::RateLimited { retry_after_s, .. } => json!({"retry_after_s": retry_after_s}),
            ApiError::Internal(cause) => {
                tracing::error!(
                    request_id,
                    error = %cause,
                    error.chain = %chain(cause.as_ref()),
                    "request failed with an internal error"
                );
                json!({})
            }
            ApiError::MalformedJson(_)
            | ApiError::Unauthorized(_)
            | ApiError::Forbidden(_)
            | ApiError::NotFound(_)
            | ApiError::MethodNotAllowed(_)
            | ApiError::Conflict(_)
            | ApiError::InsufficientStorage(_)
            | ApiError::Unavailable { .. } => json!({}),
        };
        let body = json!({
            "error": {"code": code, "message": self.to_string(), "details": details},
            "request_id": request_id,
        });
        let mut response = (status, axum::Json(body)).into_response();
        match self {
            ApiError::Unavailable {
                retry_after_s: Some(s),
                ..
            }
            | ApiError::RateLimited {
                retry_after_s: s, ..
            } => {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from(*s));
            }
            ApiError::Unauthorized(_) => {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            _ => {}
        }
        response
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let id = current_request_id();
        self.to_response(&id)
    }
}

fn chain(e: &(dyn StdError + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// Whether `e` or one of its sources is a write refused for want of space: an I/O error
/// `ENOSPC` / `EDQUOT`, or SQLite's `SQLITE_FULL` (13).
fn storage_full(e: &(dyn StdError + 'static)) -> bool {
    let mut next = Some(e);
    while let Some(e) = next {
        if let Some(io) = e.downcast_ref::<std::io::Error>()
            && (matches!(
                io.kind(),
                std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
            ) || matches!(io.raw_os_error(), Some(28 | 122)))
        {
            return true;
        }
        if let Some(sqlx::Error::Database(db)) = e.downcast_ref::<sqlx::Error>()
            && db.code().as_deref() == Some("13")
        {
            return true;
        }
        next = e.source();
    }
    false
}

fn list(accepted: &str) -> Value {
    json!(accepted.split(", ").collect::<Vec<_>>())
}

impl From<DetectError> for ApiError {
    fn from(e: DetectError) -> Self {
        let details = match &e {
            DetectError::EmptyInput(_) => json!({"field": "data"}),
            DetectError::TooFewRows { n_rows } => json!({"field": "data", "n_rows": n_rows}),
            DetectError::RaggedRow {
                row,
                found,
                expected,
            } => json!({"row": row, "found": found, "expected": expected}),
            DetectError::NonFinite { row, column, .. } => json!({"row": row, "column": column}),
            DetectError::FeatureMismatch { expected, found } => {
                json!({"expected_features": expected, "found_features": found})
            }
            DetectError::UnknownAlgorithm { name, accepted } => {
                json!({"algorithm": name, "accepted": list(accepted)})
            }
            DetectError::UnknownParameter {
                algorithm,
                name,
                accepted,
            } => json!({"parameter": name, "algorithm": algorithm, "accepted": list(accepted)}),
            DetectError::InvalidParameter { name, .. } => json!({"parameter": name}),
            DetectError::Deserialize(_) | DetectError::UnsupportedFormat { .. } => {
                return ApiError::internal(e);
            }
        };
        ApiError::InvalidInput {
            message: e.to_string(),
            details,
        }
    }
}

/// The store's two errors that are the caller's (see [`StoreError`]) keep their meaning;
/// the others are ours.
impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict(message) => ApiError::Conflict(message),
            StoreError::NotFound(message) => ApiError::NotFound(message),
            ref e if e.database_unreachable() => {
                tracing::error!(error = %e, error.chain = ?e, "metadata store unavailable");
                ApiError::Unavailable {
                    message: "the metadata store is unavailable; retry shortly".into(),
                    retry_after_s: Some(5),
                }
            }
            ref e if e.artifact_store_unreachable() => {
                tracing::error!(error = %e, error.chain = ?e, "artifact store unavailable");
                ApiError::Unavailable {
                    message: "the artifact store is unavailable: nothing was saved; retry \
                              shortly"
                        .into(),
                    retry_after_s: Some(5),
                }
            }
            e => ApiError::internal(e),
        }
    }
}

impl From<RegistryError> for ApiError {
    fn from(e: RegistryError) -> Self {
        match e {
            RegistryError::Store(e) => e.into(),
            RegistryError::Validation(e) => ApiError::invalid_with(
                format!("'validation_data' cannot be scored by the model: {e}"),
                serde_json::json!({"field": "validation_data"}),
            ),
            e => ApiError::internal(e),
        }
    }
}

impl From<QueueError> for ApiError {
    fn from(e: QueueError) -> Self {
        match e {
            // The backend down or its pool exhausted: tell the client to come back, not
            // that we broke.
            QueueError::Unavailable { .. } => {
                tracing::error!(error = %e, error.chain = ?e, "job queue unavailable");
                ApiError::Unavailable {
                    message: "the job queue is unavailable; retry shortly".into(),
                    retry_after_s: Some(5),
                }
            }
            // A submission's insert meets the metadata store as any other request does:
            // unreachable is 503 with Retry-After, not a 500.
            QueueError::Store(e) => e.into(),
            QueueError::Backend(_) => ApiError::internal(e),
        }
    }
}

impl From<SourceError> for ApiError {
    fn from(e: SourceError) -> Self {
        let reason = match &e {
            SourceError::OutsideSourcesDir(_) => "outside_sources_dir",
            SourceError::NotFound(_) => "not_found",
            SourceError::UnsupportedScheme(_) => "unsupported_scheme",
            SourceError::NotAFile(_) => "not_a_file",
            SourceError::BadObjectUrl(_) => "bad_object_url",
            SourceError::ObjectStoreConfig { .. } => "object_store_config",
        };
        ApiError::invalid_with(e.to_string(), json!({"reason": reason}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queue_whose_store_is_unreachable_is_unavailable_not_internal() {
        let e = ApiError::from(QueueError::Store(StoreError::Database(
            sqlx::Error::PoolTimedOut,
        )));
        assert!(
            matches!(
                e,
                ApiError::Unavailable {
                    retry_after_s: Some(5),
                    ..
                }
            ),
            "{e:?}"
        );
        let e = ApiError::from(QueueError::Store(StoreError::Conflict("taken".into())));
        assert!(matches!(e, ApiError::Conflict(_)), "{e:?}");
        let e = ApiError::from(QueueError::Backend("no such scheme".into()));
        assert_eq!(e.status_and_code().0, StatusCode::INTERNAL_SERVER_ERROR);
    }

    /// An error with a source, as the artifact store wraps an I/O error.
    #[derive(Debug, thiserror::Error)]
    #[error("artifact store error")]
    struct Wrapped(#[source] std::io::Error);

    #[test]
    fn a_write_to_a_full_disk_is_507_and_other_faults_stay_500() {
        let full = Wrapped(std::io::Error::from_raw_os_error(28));
        let e = ApiError::internal(full);
        assert_eq!(
            e.status_and_code(),
            (StatusCode::INSUFFICIENT_STORAGE, "insufficient_storage")
        );
        assert!(e.to_string().contains("storage is full"), "{e}");
        let other = Wrapped(std::io::Error::from_raw_os_error(5));
        assert_eq!(ApiError::internal(other).status_and_code().1, "internal");
    }
}
