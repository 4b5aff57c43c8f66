//! CPU work off the async threads.
//!
//! Fitting and scoring many rows run on the blocking pool, at most a few at a time (a
//! semaphore sized to the cores), inside the request's span; the async threads stay free
//! for `/health/live` and small predicts. Scoring a handful of rows takes microseconds,
//! less than the hand-off to another thread, so it runs in place.

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
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || span.in_scope(f))
        .await
        .map_err(ApiError::internal)
}
