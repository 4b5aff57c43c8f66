//! Keep-alive after an answer given before the request's body was read.
//!
//! A request refused early (429 over the rate limit, 401, 413, a 404 route) leaves its body
//! unread. hyper then cannot reuse the connection and closes it after the response, without
//! a `Connection: close` header, and closing a socket with unread bytes in it makes the
//! kernel send a reset. A keep-alive client that already put the connection back in its pool
//! then sends its next request into a closed socket ("server disconnected without sending a
//! response"), or loses the response itself to the reset.
//!
//! This middleware, outside all others, hands the handler a body that shares the request's
//! own, and once the response is made reads what the handler left unread (up to
//! `PYNOMALY_MAX_BODY_BYTES`, for at most [`DRAIN_WAIT`]): the connection then stays usable.
//! A body larger than that, or one that does not arrive in time, is not read: the response
//! says `Connection: close`, which every client sees before reusing the connection.

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;
use futures::StreamExt;
use hyper::body::{Frame, SizeHint};

use crate::state::AppState;

/// How long the rest of an unread body may take to arrive before the connection is closed
/// instead: what a network delays a body by, not what a client dribbling it takes.
pub(crate) const DRAIN_WAIT: Duration = Duration::from_secs(1);

/// The request's body, shared between the handler and [`finish_body`]; `None` once read to
/// its end.
type Slot = Arc<Mutex<Option<Body>>>;

/// The handler's view of the request's body.
struct SharedBody(Slot);

impl HttpBody for SharedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let mut slot = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(body) = slot.as_mut() else {
            return Poll::Ready(None);
        };
        let frame = Pin::new(body).poll_frame(cx);
        if matches!(frame, Poll::Ready(None)) {
            *slot = None;
        }
        frame
    }

    fn is_end_stream(&self) -> bool {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .is_none_or(HttpBody::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), HttpBody::size_hint)
    }
}

/// Runs the request, then reads what its handler left of the body (see the module's
/// documentation).
pub(crate) async fn finish_body(
    State(state): State<AppState>,
    req: Request,
    next: Next,
) -> Response {
    if req.body().is_end_stream() {
        return next.run(req).await;
    }
    let (parts, body) = req.into_parts();
    let slot: Slot = Arc::new(Mutex::new(Some(body)));
    let req = Request::from_parts(parts, Body::new(SharedBody(Arc::clone(&slot))));
    let mut response = next.run(req).await;
    // Still shared: a task the handler started is reading it; leave it to that task.
    let Ok(slot) = Arc::try_unwrap(slot) else {
        return response;
    };
    let rest = slot.into_inner().unwrap_or_else(PoisonError::into_inner);
    if let Some(rest) = rest
        && !rest.is_end_stream()
        && !drain(rest, state.limits.max_body_bytes).await
    {
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    response
}

/// Reads `body` to its end; false when it holds more than `max_bytes` or does not end within
/// [`DRAIN_WAIT`] (or fails).
async fn drain(body: Body, max_bytes: usize) -> bool {
    if body.size_hint().lower() > max_bytes as u64 {
        return false;
    }
    let read = async {
        let mut chunks = body.into_data_stream();
        let mut read = 0usize;
        while let Some(chunk) = chunks.next().await {
            let Ok(chunk) = chunk else { return false };
            read += chunk.len();
            if read > max_bytes {
                return false;
            }
        }
        true
    };
    tokio::time::timeout(DRAIN_WAIT, read)
        .await
        .unwrap_or(false)
}
