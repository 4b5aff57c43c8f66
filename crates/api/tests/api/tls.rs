//! HTTPS on the service's own listeners (`PYNOMALY_TLS_CERT`, `PYNOMALY_TLS_KEY`): both
//! the API and the metrics port speak TLS only, the certificate is replaced without a
//! restart when its files change, a bad replacement keeps the previous one, and a start
//! with a key that is not the certificate's fails naming the files.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use pynomaly_api::Application;
use pynomaly_runtime::TlsFiles;
use testkit::{Leaf, TestCa, eventually};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::rustls::pki_types::pem::PemObject as _;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};
use tokio_rustls::{TlsConnector, client::TlsStream};

use crate::helpers::test_settings;

/// A client trusting only the test CA.
fn connector(ca: &TestCa) -> TlsConnector {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&ca.cert).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    TlsConnector::from(Arc::new(config))
}

async fn connect(tls: &TlsConnector, addr: SocketAddr) -> TlsStream<TcpStream> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    tls.connect(ServerName::try_from("localhost").unwrap(), tcp)
        .await
        .expect("TLS handshake with the test CA's certificate")
}

/// `GET path` over TLS: the status line and the body.
async fn get(tls: &TlsConnector, addr: SocketAddr, path: &str) -> (String, String) {
    let mut conn = connect(tls, addr).await;
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    conn.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    // A peer that closes without close_notify is fine here: the response is what counts.
    let _ = conn.read_to_end(&mut response).await;
    let response = String::from_utf8_lossy(&response).to_string();
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    (
        head.lines().next().unwrap_or("").to_string(),
        body.to_string(),
    )
}

/// The leaf certificate the server presents.
async fn served_certificate(tls: &TlsConnector, addr: SocketAddr) -> Vec<u8> {
    let conn = connect(tls, addr).await;
    conn.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

fn der(leaf: &Leaf) -> Vec<u8> {
    CertificateDer::pem_file_iter(&leaf.cert)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .to_vec()
}

fn files(leaf: &Leaf) -> TlsFiles {
    TlsFiles {
        cert: leaf.cert.clone(),
        key: leaf.key.clone(),
    }
}

/// Copies `leaf`'s certificate and key over the files the server was started with.
fn install(leaf: &Leaf, served: &TlsFiles) {
    std::fs::copy(&leaf.key, &served.key).unwrap();
    std::fs::copy(&leaf.cert, &served.cert).unwrap();
}

async fn start(
    dir: &Path,
    tls: TlsFiles,
) -> (SocketAddr, SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let mut settings = test_settings(dir);
    settings.server.tls = Some(tls);
    settings.server.metrics_bind = Some("127.0.0.1:0".parse().unwrap());
    let app = Application::build(settings).await.expect("starts with TLS");
    assert_eq!(app.scheme(), "https");
    let (api, metrics) = (app.local_addr(), app.metrics_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.run_until(async {
        let _ = stopped.await;
    }));
    (api, metrics, stop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_listeners_serve_https_and_a_renewed_certificate_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let Some(ca) = TestCa::new(dir.path()) else {
        return;
    };
    let (first, second) = (ca.issue("first"), ca.issue("second"));
    // The server reads its own copies, which the test then replaces in place.
    let served = TlsFiles {
        cert: dir.path().join("tls.crt"),
        key: dir.path().join("tls.key"),
    };
    install(&first, &served);
    let (api, metrics, _stop) = start(dir.path(), served.clone()).await;
    let tls = connector(&ca);

    let (status, body) = get(&tls, api, "/health/live").await;
    assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
    let (status, body) = get(&tls, metrics, "/metrics").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(body.contains("pynomaly_build_info"), "{body}");
    assert_eq!(served_certificate(&tls, api).await, der(&first));

    // Plain HTTP on a TLS port gets no HTTP answer.
    let mut plain = TcpStream::connect(api).await.unwrap();
    plain
        .write_all(b"GET /health/live HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), plain.read_to_end(&mut answer)).await;
    assert!(
        !answer.starts_with(b"HTTP/1.1 200"),
        "plain HTTP was served"
    );

    // A renewed certificate is served from the next handshake on, on both listeners.
    install(&second, &served);
    let renewed = der(&second);
    eventually(
        "the renewed certificate is served",
        Duration::from_secs(15),
        async || {
            let (on_api, on_metrics) = (
                served_certificate(&tls, api).await,
                served_certificate(&tls, metrics).await,
            );
            if on_api == renewed && on_metrics == renewed {
                Ok(())
            } else {
                Err("still the first certificate".to_string())
            }
        },
    )
    .await;

    // A broken replacement is refused: the previous certificate stays.
    std::fs::write(&served.cert, "not a certificate").unwrap();
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(served_certificate(&tls, api).await, der(&second));
    let (status, _) = get(&tls, api, "/health/live").await;
    assert_eq!(status, "HTTP/1.1 200 OK");
}

#[tokio::test]
async fn a_key_that_is_not_the_certificates_fails_the_start_naming_both_files() {
    let dir = tempfile::tempdir().unwrap();
    let Some(ca) = TestCa::new(dir.path()) else {
        return;
    };
    let (a, b) = (ca.issue("a"), ca.issue("b"));
    let mut settings = test_settings(dir.path());
    settings.server.tls = Some(TlsFiles {
        cert: a.cert.clone(),
        key: b.key.clone(),
    });
    let e = Application::build(settings).await.unwrap_err();
    let chain = anyhow_chain(&e);
    assert!(chain.contains("does not go with"), "{chain}");
    assert!(
        chain.contains("a.pem") && chain.contains("b.key"),
        "{chain}"
    );

    let mut settings = test_settings(dir.path());
    settings.server.tls = Some(files(&Leaf {
        cert: dir.path().join("missing.pem"),
        key: a.key.clone(),
    }));
    let e = Application::build(settings).await.unwrap_err();
    let chain = anyhow_chain(&e);
    assert!(chain.contains("missing.pem"), "{chain}");
}

/// An error and its causes, as the command line prints them.
fn anyhow_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
