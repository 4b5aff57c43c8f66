//! Security headers on every response, errors and fallbacks included.
//!
//! The service serves JSON (and CSV, Prometheus text), never HTML, so the policy is the
//! strictest: nothing may be loaded, framed or sniffed (`Content-Security-Policy:
//! default-src 'none'; frame-ancestors 'none'`, `X-Frame-Options: DENY`,
//! `X-Content-Type-Options: nosniff`), no referrer leaves, and nothing is cached
//! (`Cache-Control: no-store`: responses carry tenants' data and are fetched with
//! credentials). `Strict-Transport-Security` is sent when the request came over HTTPS
//! through the proxy (`X-Forwarded-Proto: https`, which nginx.conf sets); over plain HTTP
//! browsers ignore it. No `Server` header names the software or its version.

use axum::extract::Request;
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;

pub(crate) async fn security_headers(req: Request, next: Next) -> Response {
    let https = req
        .headers()
        .get("x-forwarded-proto")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"));
    let mut response = next.run(req).await;
    let h = response.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
    );
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    if https {
        h.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000; includeSubDomains"),
        );
    }
    h.remove(header::SERVER);
    h.remove("x-powered-by");
    response
}
