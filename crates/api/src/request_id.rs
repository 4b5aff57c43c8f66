//! The request id: set by the `observe` middleware for the life of a request (the
//! client's own `x-request-id` when it sent a usable one, else one made for it), and read
//! wherever a request's errors, logs and audit entries name it.

use std::future::Future;
use std::sync::Arc;

tokio::task_local! {
    static REQUEST_ID: Arc<str>;
}

/// The header carrying the request id, both ways.
pub(crate) const REQUEST_ID_HEADER: &str = "x-request-id";

/// The current request's id (inside a request), or `"unknown"`.
pub(crate) fn current_request_id() -> String {
    REQUEST_ID
        .try_with(|id| id.to_string())
        .unwrap_or_else(|_| "unknown".into())
}

/// Runs `f` (a request's handling) with `id` as its request id.
pub(crate) fn with_request_id<F: Future>(
    id: Arc<str>,
    f: F,
) -> tokio::task::futures::TaskLocalFuture<Arc<str>, F> {
    REQUEST_ID.scope(id, f)
}
