//! Keep-alive connections survive answers given before the request's body was read (401,
//! 429): the client gets every response, and the connection either serves the next request
//! or says `Connection: close` first.

use std::time::Duration;

use futures::StreamExt;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::{TestApp, spawn_app};

/// A rate-limited key with `per_minute` requests, read and write.
async fn limited_key(app: &TestApp, per_minute: u32) -> String {
    let b = app
        .create_key_with(&json!({"name": "keep-alive", "scopes": ["read", "write"],
                                 "rate_limit_per_minute": per_minute}))
        .await;
    b["key"].as_str().unwrap().to_string()
}

fn detect_body(rows: usize) -> Vec<u8> {
    let data: Vec<Vec<f64>> = (0..rows)
        .map(|i| vec![i as f64, (i % 7) as f64, (i % 3) as f64])
        .collect();
    serde_json::to_vec(&json!({"data": data, "algorithm": "isolation_forest"})).unwrap()
}

/// One response read off a raw connection: status, headers (lower-case names) and body.
struct RawResponse {
    status: u16,
    headers: Vec<(String, String)>,
}

impl RawResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Reads one response (with a `Content-Length` body) from `conn`; `None` when the server
/// closed the connection before sending one.
async fn read_response(conn: &mut TcpStream, buf: &mut Vec<u8>) -> Option<RawResponse> {
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let mut chunk = [0u8; 4096];
        match tokio::time::timeout(Duration::from_secs(20), conn.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => return None,
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let len: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let mut chunk = [0u8; 4096];
        match tokio::time::timeout(Duration::from_secs(20), conn.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => return None,
        }
    }
    buf.drain(..head_end + len);
    Some(RawResponse { status, headers })
}

/// Sends a detect request whose body arrives `delay` after its head, as a large upload over
/// a real network does; the server may answer before the body is there.
async fn post_slowly(conn: &mut TcpStream, address: &str, key: &str, body: &[u8], delay: Duration) {
    let host = address.trim_start_matches("http://");
    let head = format!(
        "POST /api/v1/detect HTTP/1.1\r\nhost: {host}\r\nauthorization: Bearer {key}\r\n\
         content-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    tokio::time::sleep(delay).await;
    // The server may have closed the connection already: what matters is what it answered.
    let _ = conn.write_all(body).await;
}

#[tokio::test]
async fn an_early_answer_keeps_the_connection_usable_or_says_it_closes() {
    let app = spawn_app().await;
    let key = limited_key(&app, 1).await;
    let body = detect_body(3000);
    let host = app.address.trim_start_matches("http://").to_string();
    // The first request spends the key's one request a minute; the next are refused (429)
    // before their bodies are read, as are those with an unknown key (401).
    let mut spent = TcpStream::connect(&host).await.unwrap();
    let mut buf = Vec::new();
    post_slowly(&mut spent, &app.address, &key, &body, Duration::ZERO).await;
    let first = read_response(&mut spent, &mut buf)
        .await
        .expect("a response");
    assert_eq!(first.status, 200);
    for (key, refused) in [(key.as_str(), 429), ("pk_not_a_key", 401)] {
        let mut conn = TcpStream::connect(&host).await.unwrap();
        let mut buf = Vec::new();
        post_slowly(
            &mut conn,
            &app.address,
            key,
            &body,
            Duration::from_millis(300),
        )
        .await;
        let r = read_response(&mut conn, &mut buf)
            .await
            .expect("a response to the early-refused request");
        assert_eq!(r.status, refused);
        if r.header("connection") == Some("close") {
            continue;
        }
        // Kept alive: the connection must serve the next request.
        let get = format!("GET /health/live HTTP/1.1\r\nhost: {host}\r\n\r\n");
        let next = match conn.write_all(get.as_bytes()).await {
            Ok(()) => read_response(&mut conn, &mut buf).await,
            Err(_) => None,
        };
        let next = next.unwrap_or_else(|| {
            panic!(
                "the server closed a connection it had not announced closing \
                 (after a {refused} sent before the request's body was read)"
            )
        });
        assert_eq!(next.status, 200);
    }
}

#[tokio::test]
async fn a_keep_alive_client_over_its_rate_limit_gets_every_response() {
    let app = spawn_app().await;
    let key = limited_key(&app, 5).await;
    let body: Value = serde_json::from_slice(&detect_body(200)).unwrap();
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(8)
        .build()
        .unwrap();
    let url = format!("{}/api/v1/detect", app.address);
    let (mut codes, mut errors) = (std::collections::BTreeMap::new(), Vec::new());
    let started = std::time::Instant::now();
    for _round in 0..20 {
        let replies: Vec<_> = futures::stream::iter(0..80)
            .map(|_| client.post(&url).bearer_auth(&key).json(&body).send())
            .buffer_unordered(8)
            .collect()
            .await;
        for r in replies {
            match r {
                Ok(r) => *codes.entry(r.status().as_u16()).or_insert(0) += 1,
                Err(e) => errors.push(e.to_string()),
            }
        }
    }
    assert!(
        errors.is_empty(),
        "transport errors: {errors:?} (answers: {codes:?})"
    );
    // The burst of 5, plus one more request for every 12 s (60 s / 5) the rounds took on
    // a slow machine; every other request refused.
    let refills = (started.elapsed().as_secs_f64() / 12.0).floor() as u32;
    let allowed = codes.get(&200).copied().unwrap_or(0);
    assert!(
        (5..=5 + refills).contains(&allowed),
        "{codes:?} after {refills} refills"
    );
    assert_eq!(codes.get(&429), Some(&(1600 - allowed)), "{codes:?}");
}
