//! The HTTP/1.1 server loop, on hyper directly rather than `axum::serve`, for the limits
//! `axum::serve` has no knob for:
//!
//! - **slow clients**: a client must send its whole request head within
//!   `PYNOMALY_HEADER_READ_TIMEOUT_S`, or the connection is closed (a slowloris sending one
//!   header byte at a time holds nothing for long). Bodies are bounded by the request
//!   timeout, which covers reading them (see `middleware::observe`);
//! - **header size**: the request line and headers together may not exceed
//!   `PYNOMALY_MAX_HEADER_BYTES` (hyper answers 431 and closes), nor number more than 100.
//!
//! With TLS (`PYNOMALY_TLS_CERT`), each connection first completes its handshake, within
//! the same header-read timeout, then is served as above.
//!
//! Each request carries `ConnectInfo<SocketAddr>` (the peer's address), as
//! `into_make_service_with_connect_info` would give. Shutdown: stop accepting, let open
//! connections finish their current request (idle keep-alive ones are closed), for at most
//! the drain timeout.

use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt;

/// Connection limits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnectionLimits {
    pub(crate) max_header_bytes: usize,
    pub(crate) header_read_timeout: Duration,
}

impl ConnectionLimits {
    /// The limits the settings give.
    pub(crate) fn of(settings: &pynomaly_runtime::Settings) -> Self {
        Self {
            max_header_bytes: settings.server.max_header_bytes,
            header_read_timeout: settings.server.header_read_timeout,
        }
    }
}

/// Serves `router` (over TLS when `tls` is given) until `shutdown` completes, then drains
/// for at most `drain`.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    tls: Option<TlsAcceptor>,
    shutdown: impl Future<Output = ()> + Send + 'static,
    drain: Duration,
) {
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: back off rather than spin.
                    tracing::warn!(error = %e, "could not accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let router = router.clone();
        let watcher = graceful.watcher();
        let tls = tls.clone();
        tokio::spawn(async move {
            let Some(tls) = tls else {
                return serve_connection(stream, remote, router, limits, watcher).await;
            };
            match tokio::time::timeout(limits.header_read_timeout, tls.accept(stream)).await {
                Ok(Ok(stream)) => serve_connection(stream, remote, router, limits, watcher).await,
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, peer = %remote, "TLS handshake failed");
                }
                Err(_) => tracing::debug!(peer = %remote, "TLS handshake timed out"),
            }
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {},
        () = tokio::time::sleep(drain) => tracing::warn!(
            drain_s = drain.as_secs(),
            "drain timeout: closing the connections still open"
        ),
    }
}

/// Serves the requests of one accepted connection, plain or TLS.
async fn serve_connection<S>(
    stream: S,
    remote: std::net::SocketAddr,
    router: Router,
    limits: ConnectionLimits,
    watcher: hyper_util::server::graceful::Watcher,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(remote));
        router.clone().oneshot(req)
    });
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes)
        .max_headers(100)
        .serve_connection(TokioIo::new(stream), service);
    if let Err(e) = watcher.watch(connection).await {
        tracing::debug!(error = %e, peer = %remote, "connection closed with an error");
    }
}
