//! Hardening, tried from outside: security headers on every kind of response, no version
//! or software name in headers, oversized and malformed bodies, oversized request heads,
//! slow clients (headers or body dribbled) cut off, and path traversal in every field that takes a path or URI.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{
    Reply, TestApp, csv_source, spawn_app, spawn_app_with, spawn_app_with_model_and_source,
    training_rows,
};

#[track_caller]
fn assert_security_headers(r: &Reply, what: &str) {
    let h = &r.headers;
    let get = |name: &str| {
        h.get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_else(|| panic!("{what}: no {name} header: {h:?}"))
            .to_string()
    };
    assert_eq!(get("x-content-type-options"), "nosniff", "{what}");
    assert_eq!(get("x-frame-options"), "DENY", "{what}");
    assert_eq!(get("referrer-policy"), "no-referrer", "{what}");
    assert!(
        get("content-security-policy").starts_with("default-src 'none'"),
        "{what}"
    );
    assert_eq!(get("cache-control"), "no-store", "{what}");
    assert!(h.get("server").is_none(), "{what}: server header {h:?}");
    assert!(h.get("x-powered-by").is_none(), "{what}");
    // Plain HTTP without a proxy saying otherwise: no HSTS (browsers ignore it there).
    assert!(h.get("strict-transport-security").is_none(), "{what}");
}

#[tokio::test]
async fn every_kind_of_response_carries_the_security_headers() {
    let app = spawn_app_with(|s| s.server.max_body_bytes = 4096).await;
    let health = app.request(Method::GET, "/health", None, None).await;
    assert_security_headers(&health, "health");
    // The contract's /health reports the version; it is the crate's, not a build string
    // with paths or a compiler version.
    assert_eq!(health.body["version"], env!("CARGO_PKG_VERSION"));
    assert_security_headers(&app.get("/api/v1/models").await, "authenticated GET");
    assert_security_headers(
        &app.request(Method::GET, "/api/v1/models", None, None).await,
        "401",
    );
    assert_security_headers(&app.get("/api/v1/nope").await, "404 fallback");
    assert_security_headers(
        &app.request(Method::PUT, "/api/v1/detect", Some(&app.admin_key), None)
            .await,
        "405",
    );
    assert_security_headers(
        &app.detect(&json!({"data": training_rows(1000, 3)})).await,
        "413",
    );
    assert_security_headers(&app.post_raw("/api/v1/detect", "{").await, "400");
    let metrics = app.request(Method::GET, "/metrics", None, None).await;
    assert_security_headers(&metrics, "metrics");
    // Behind a TLS-terminating proxy, HSTS.
    let r = app
        .get_with_header("/health/live", "x-forwarded-proto", "https")
        .await;
    assert_eq!(
        r.headers["strict-transport-security"],
        "max-age=31536000; includeSubDomains"
    );
}

#[tokio::test]
async fn malformed_and_oversized_bodies_get_the_error_shape_on_every_json_route() {
    let app = spawn_app_with(|s| s.server.max_body_bytes = 32 * 1024).await;
    app.train_inline("m").await;
    let routes = [
        "/api/v1/detect",
        "/api/v1/models",
        "/api/v1/models/m/predict",
        "/api/v1/batch",
        "/api/v1/auth/keys",
        "/api/v1/privacy/scan",
        "/api/v1/privacy/anonymize",
    ];
    let deep = "[".repeat(7000) + &"]".repeat(7000);
    for route in routes {
        for (body, what) in [
            ("", "empty"),
            ("{", "truncated"),
            ("{\"data\": [1, 2,]}", "trailing comma"),
            ("not json at all", "text"),
            ("\u{feff}{}", "BOM"),
            (deep.as_str(), "nested 7000 deep"),
        ] {
            let r = app.post_raw(route, body).await;
            assert!(
                r.status.as_u16() == 400 || r.status.as_u16() == 422,
                "{route} {what}: {} {}",
                r.status,
                r.body
            );
            assert!(
                r.body["error"]["code"].is_string(),
                "{route} {what}: {}",
                r.body
            );
            assert!(r.body["request_id"].is_string(), "{route} {what}");
        }
        // Bytes that are not UTF-8.
        let r = app
            .client
            .post(format!("{}{route}", app.address))
            .bearer_auth(&app.admin_key)
            .header("content-type", "application/json")
            .body(vec![b'{', 0xff, 0xfe, b'}'])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{route} invalid UTF-8");
        // Over the limit, announced by Content-Length...
        let big = format!("{{\"data\": \"{}\"}}", "x".repeat(40_000));
        let r = app.post_raw(route, &big).await;
        r.assert_error(413, "payload_too_large");
        // ...or streamed without one (chunked): cut off at the limit all the same.
        let mut chunked = format!(
            "POST {route} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\
             Connection: close\r\n\r\n",
            app.admin_key
        );
        for _ in 0..48 {
            chunked.push_str(&format!("400\r\n{}\r\n", " ".repeat(1024)));
        }
        chunked.push_str("0\r\n\r\n");
        let answer = raw_exchange(&app, chunked.as_bytes(), Duration::from_secs(5)).await;
        assert!(
            answer.starts_with("HTTP/1.1 413"),
            "{route} chunked: {answer}"
        );
        assert!(
            answer.contains("payload_too_large"),
            "{route} chunked: {answer}"
        );
    }
}

/// Sends raw bytes on a fresh connection and returns what comes back before the server
/// closes it (or `timeout` passes).
async fn raw_exchange(app: &TestApp, request: &[u8], timeout: Duration) -> String {
    let addr = app.address.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr).await.unwrap();
    // The server may answer and close before it has read everything: a failed write is
    // part of the answer, not a test failure.
    let _ = stream.write_all(request).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(timeout, stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn oversized_request_heads_are_refused_and_normal_ones_served() {
    let app = spawn_app_with(|s| s.server.max_header_bytes = 16 * 1024).await;
    // One huge header.
    let big = format!(
        "GET /health/live HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(40 * 1024)
    );
    let answer = raw_exchange(&app, big.as_bytes(), Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    // Many small headers, over 100.
    let mut many = String::from("GET /health/live HTTP/1.1\r\nHost: x\r\n");
    for i in 0..150 {
        many.push_str(&format!("X-H{i}: v\r\n"));
    }
    many.push_str("Connection: close\r\n\r\n");
    let answer = raw_exchange(&app, many.as_bytes(), Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 431"), "{answer}");
    // A long URL is a long head too.
    let url = format!("/api/v1/models/{}", "m".repeat(40 * 1024));
    let r = app
        .client
        .get(format!("{}{url}", app.address))
        .bearer_auth(&app.admin_key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 431);
    // The server still serves well-formed requests, with a few KiB of headers.
    let r = app
        .get_with_header("/health/live", "x-fine", &"b".repeat(4096))
        .await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn a_client_sending_its_headers_byte_by_byte_is_cut_off() {
    let app = spawn_app_with(|s| s.server.header_read_timeout = Duration::from_secs(1)).await;
    let addr = app.address.trim_start_matches("http://").to_string();
    let stream = TcpStream::connect(&addr).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let head = format!(
        "GET /health/live HTTP/1.1\r\nHost: x\r\nX-Slow: {}\r\n\r\n",
        "s".repeat(100)
    );
    let started = Instant::now();
    let writer = tokio::spawn(async move {
        for b in head.bytes() {
            if write.write_all(&[b]).await.is_err() {
                return false;
            }
            // The slowness is the test: ten bytes a second.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        true
    });
    // 130 bytes at 10 a second would take 13 s; the server closes after about 1 s.
    let mut buf = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(6), read.read_to_end(&mut buf)).await;
    let elapsed = started.elapsed();
    assert!(closed.is_ok(), "the connection was still open after 6 s");
    assert!(
        !String::from_utf8_lossy(&buf).contains("200 OK"),
        "a request was served: {}",
        String::from_utf8_lossy(&buf)
    );
    assert!(
        elapsed >= Duration::from_millis(900),
        "closed too early: {elapsed:?}"
    );
    writer.abort();
    // A client that sends its request at once is served.
    let answer = raw_exchange(
        &app,
        b"GET /health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[tokio::test]
async fn a_client_dribbling_its_body_is_answered_at_the_request_timeout() {
    let app = spawn_app_with(|s| s.server.request_timeout = Duration::from_secs(1)).await;
    let addr = app.address.trim_start_matches("http://").to_string();
    let stream = TcpStream::connect(&addr).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let head = format!(
        "POST /api/v1/detect HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n",
        app.admin_key
    );
    write.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let writer = tokio::spawn(async move {
        // 1000 bytes at 10 a second would take 100 s.
        for _ in 0..1000 {
            if write.write_all(b" ").await.is_err() {
                return;
            }
            // The slowness is the test: ten bytes a second.
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(6), read.read(&mut buf))
        .await
        .expect("no answer within 6 s")
        .unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("unavailable"), "{answer}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    writer.abort();
}

/// What a field that takes a data source says about `uri`.
async fn refused(app: &TestApp, field: &str, uri: &str) -> Reply {
    let body = match field {
        "batch.data_source" => json!({"data_source": uri, "algorithm": "isolation_forest"}),
        "batch.data_sources" => {
            json!({"data_sources": ["ok.csv", uri], "algorithm": "isolation_forest"})
        }
        "batch.data_source+model" => json!({"data_source": uri, "model_name": "m"}),
        "models.training_data" => json!({"model_name": "t", "training_data": uri}),
        other => panic!("unknown field {other}"),
    };
    let path = if field.starts_with("models") {
        "/api/v1/models"
    } else {
        "/api/v1/batch"
    };
    app.post(path, &body).await
}

#[tokio::test]
async fn path_traversal_is_refused_in_every_field_that_takes_a_data_source() {
    let app = spawn_app_with_model_and_source("ok.csv", 50).await;
    let sources = app.data_dir.join("sources");
    let outside = app.data_dir.join("secret.csv");
    std::fs::write(&outside, csv_source(50, 3)).unwrap();
    std::fs::create_dir_all(app.data_dir.join("elsewhere")).unwrap();
    std::fs::write(app.data_dir.join("elsewhere/x.csv"), csv_source(50, 3)).unwrap();
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(&outside, sources.join("link.csv")).unwrap();
        std::os::unix::fs::symlink(app.data_dir.join("elsewhere"), sources.join("dirlink"))
            .unwrap();
        std::os::unix::fs::symlink("../secret.csv", sources.join("relative-link.csv")).unwrap();
    }
    let root = std::fs::canonicalize(&sources).unwrap();
    let escapes: Vec<(String, &str)> = vec![
        ("../secret.csv".into(), "outside_sources_dir"),
        ("../nope.csv".into(), "outside_sources_dir"),
        ("sub/../../secret.csv".into(), "outside_sources_dir"),
        ("./../secret.csv".into(), "outside_sources_dir"),
        (outside.display().to_string(), "outside_sources_dir"),
        ("/etc/passwd".into(), "outside_sources_dir"),
        (
            format!("file://{}", outside.display()),
            "outside_sources_dir",
        ),
        (
            format!("file://{}/../secret.csv", root.display()),
            "outside_sources_dir",
        ),
        ("file:///etc/passwd".into(), "outside_sources_dir"),
        ("link.csv".into(), "outside_sources_dir"),
        ("relative-link.csv".into(), "outside_sources_dir"),
        ("dirlink/x.csv".into(), "outside_sources_dir"),
        // Encoded dots are names, not parent directories: such a file does not exist.
        ("%2e%2e/secret.csv".into(), "not_found"),
        ("..%2fsecret.csv".into(), "not_found"),
        ("ok.csv\u{0}.png".into(), "not_found"),
        (".".into(), "not_a_file"),
        ("".into(), "not_found"),
        ("https://example.com/x.csv".into(), "unsupported_scheme"),
        ("ftp://example.com/x.csv".into(), "unsupported_scheme"),
        ("s3://".into(), "bad_object_url"),
        ("s3://bucket-only".into(), "bad_object_url"),
    ];
    for field in [
        "batch.data_source",
        "batch.data_sources",
        "batch.data_source+model",
        "models.training_data",
    ] {
        for (uri, reason) in &escapes {
            let r = refused(&app, field, uri).await;
            let e = r.assert_error(422, "invalid_input");
            assert_eq!(
                e["details"]["reason"], *reason,
                "{field} = {uri:?}: {}",
                r.body
            );
            // The refusal never shows where the sources directory is.
            assert!(
                !r.message().contains(&root.display().to_string())
                    || uri.contains(&root.display().to_string()),
                "{field} = {uri:?}: {}",
                r.message()
            );
        }
    }
    // Nothing was queued by any of them.
    assert_eq!(app.drain_jobs().await, 0);
    // The same source inside the directory is accepted by each field.
    for field in [
        "batch.data_source",
        "batch.data_sources",
        "models.training_data",
    ] {
        let r = refused(&app, field, "ok.csv").await;
        r.assert_status(202);
    }
    assert_eq!(app.drain_jobs().await, 3);
}

#[tokio::test]
async fn a_source_swapped_for_a_symlink_after_submission_fails_the_job() {
    let app = spawn_app().await;
    let path = app.write_source("later.csv", &csv_source(50, 3));
    let outside = app.data_dir.join("secret.csv");
    std::fs::write(&outside, csv_source(50, 3)).unwrap();
    let id = app
        .submit_batch(&json!({"data_source": "later.csv", "algorithm": "isolation_forest"}))
        .await;
    // Between the request's check and the job's run, the file becomes a link outside.
    std::fs::remove_file(&path).unwrap();
    #[cfg(unix)]
    std::os::unix::fs::symlink(&outside, &path).unwrap();
    app.drain_jobs().await;
    let job = app.job(&id).await;
    let job: &Value = job.assert_status(200);
    assert_eq!(job["status"], "failed", "{job}");
    assert!(
        job["error"]
            .as_str()
            .unwrap()
            .contains("outside the sources directory"),
        "{job}"
    );
}
