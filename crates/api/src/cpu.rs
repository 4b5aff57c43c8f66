//! CPU work off the async threads.
//!
//! Fitting and scoring many rows run on the blocking pool, at most a few at a time (a
//! semaphore sized to the cores), inside the caller's span (a step's, a child of the
//! request's) and with the request's OpenTelemetry context attached; the async threads
//! stay free for `/health/live` and small predicts. Scoring a handful of rows takes
//! microseconds, less than the hand-off to another thread, so it runs in place.

use crate::error::ApiError;
use crate::state::AppState;

/// Rows at or under which scoring runs in place.
pub(crate) const INLINE_ROWS: usize = 32;

/// Runs `f` in place when `inline`, else on the bounded blocking pool.
///
/// # Errors
/// 500 if the blocking task panicked.
pub(crate) async fn run<T: Send + 'static>(
    state: &AppState,
    inline: bool,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    if inline {
        return Ok(f());
    }
    let _permit = state.heavy.acquire().await.map_err(ApiError::internal)?;
    // The request's span is in the OpenTelemetry context, not a tracing span: both go along.
    let span = tracing::Span::current();
    let cx = opentelemetry::Context::current();
    tokio::task::spawn_blocking(move || {
        let _attached = cx.attach();
        span.in_scope(f)
    })
    .await
    .map_err(ApiError::internal)
}
