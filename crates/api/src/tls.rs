//! HTTPS on the service's own listeners (`PYNOMALY_TLS_CERT`, `PYNOMALY_TLS_KEY`), for a
//! single-binary deployment without a proxy in front.
//!
//! rustls with its default safe protocol versions (TLS 1.2 and 1.3), HTTP/1.1 by ALPN. The
//! certificate is resolved per handshake from a slot that a reload replaces: on `SIGHUP`,
//! and when the files' contents change (read every [`POLL`]; a Kubernetes secret volume or
//! certbot swaps files in place, and mtimes are too coarse to trust), so a renewed
//! certificate is served without a restart. A pair that cannot be loaded leaves the
//! previous certificate in place and is logged once.

use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use pynomaly_runtime::TlsFiles;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::crypto::CryptoProvider;
use tokio_rustls::rustls::pki_types::pem::PemObject as _;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::{ClientHello, ResolvesServerCert};
use tokio_rustls::rustls::sign::CertifiedKey;
use tokio_rustls::rustls::{self, ServerConfig};
use tokio_util::sync::CancellationToken;

/// How often the files are read to see whether they changed.
const POLL: Duration = Duration::from_secs(2);

/// A certificate chain and key that cannot be served.
#[derive(Debug, thiserror::Error)]
#[error("cannot load the TLS certificate: {0}")]
pub struct TlsError(String);

/// The files' bytes as last read, and what they were loaded into.
#[derive(Debug)]
struct Loaded {
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
    certified: Arc<CertifiedKey>,
}

/// The certificate every handshake gets: the last pair that loaded.
#[derive(Debug)]
struct ReloadingCert {
    files: TlsFiles,
    provider: Arc<CryptoProvider>,
    current: RwLock<Loaded>,
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(
            &self
                .current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .certified,
        ))
    }
}

/// Accepts TLS connections with the configured certificate, reloading it as it changes.
#[derive(derive_more::Debug, Clone)]
pub struct Tls {
    #[debug(skip)]
    acceptor: TlsAcceptor,
    cert: Arc<ReloadingCert>,
}

impl Tls {
    /// Loads the pair the settings name.
    ///
    /// # Errors
    /// A file cannot be read, holds no certificate or key, or the key is not the
    /// certificate's.
    pub fn load(files: &TlsFiles) -> Result<Self, TlsError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let loaded = load_pair(files, &provider)?;
        let cert = Arc::new(ReloadingCert {
            files: files.clone(),
            provider: Arc::clone(&provider),
            current: RwLock::new(loaded),
        });
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError(e.to_string()))?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(&cert) as Arc<dyn ResolvesServerCert>);
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Self {
            acceptor: TlsAcceptor::from(Arc::new(config)),
            cert,
        })
    }

    /// The acceptor for the server loop.
    pub(crate) fn acceptor(&self) -> TlsAcceptor {
        self.acceptor.clone()
    }

    /// Reads the files again and serves them from the next handshake on, when they
    /// changed and load. Returns whether a new pair is now served.
    ///
    /// # Errors
    /// The changed files cannot be loaded (the previous pair is kept).
    pub fn reload(&self) -> Result<bool, TlsError> {
        let (cert_pem, key_pem) = read_pair(&self.cert.files)?;
        {
            let current = self.cert.current.read().unwrap_or_else(|e| e.into_inner());
            if current.cert_pem == cert_pem && current.key_pem == key_pem {
                return Ok(false);
            }
        }
        let loaded = parse_pair(&self.cert.files, cert_pem, key_pem, &self.cert.provider)?;
        *self.cert.current.write().unwrap_or_else(|e| e.into_inner()) = loaded;
        Ok(true)
    }

    /// Reloads on `SIGHUP` and whenever the files change, until `stop`.
    pub(crate) fn spawn_reloader(&self, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
        let tls = self.clone();
        tokio::spawn(async move {
            let mut hangup =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
            // The last failure reported, so a bad pair is logged once rather than every poll.
            let mut reported: Option<String> = None;
            loop {
                let asked = tokio::select! {
                    () = stop.cancelled() => return,
                    Some(()) = async { hangup.as_mut()?.recv().await } => true,
                    () = tokio::time::sleep(POLL) => false,
                };
                match tls.reload() {
                    Ok(true) => {
                        reported = None;
                        tracing::info!(
                            cert = %tls.cert.files.cert.display(),
                            "TLS certificate reloaded"
                        );
                    }
                    Ok(false) if asked => tracing::info!(
                        cert = %tls.cert.files.cert.display(),
                        "SIGHUP: the TLS certificate files are unchanged"
                    ),
                    Ok(false) => {}
                    Err(e) => {
                        let message = e.to_string();
                        if asked || reported.as_ref() != Some(&message) {
                            tracing::error!(
                                error = %message,
                                "the TLS certificate was not reloaded; the previous one is still served"
                            );
                            reported = Some(message);
                        }
                    }
                }
            }
        })
    }
}

fn read_file(path: &Path, what: &str, var: &str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| {
        TlsError(format!(
            "cannot read the {what} {} ({var}): {e}",
            path.display()
        ))
    })
}

fn read_pair(files: &TlsFiles) -> Result<(Vec<u8>, Vec<u8>), TlsError> {
    Ok((
        read_file(&files.cert, "certificate chain", "PYNOMALY_TLS_CERT")?,
        read_file(&files.key, "private key", "PYNOMALY_TLS_KEY")?,
    ))
}

fn load_pair(files: &TlsFiles, provider: &CryptoProvider) -> Result<Loaded, TlsError> {
    let (cert_pem, key_pem) = read_pair(files)?;
    parse_pair(files, cert_pem, key_pem, provider)
}

fn parse_pair(
    files: &TlsFiles,
    cert_pem: Vec<u8>,
    key_pem: Vec<u8>,
    provider: &CryptoProvider,
) -> Result<Loaded, TlsError> {
    let (cert_path, key_path) = (files.cert.display(), files.key.display());
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError(format!("{cert_path} (PYNOMALY_TLS_CERT) is not PEM: {e}")))?;
    if chain.is_empty() {
        return Err(TlsError(format!(
            "{cert_path} (PYNOMALY_TLS_CERT) holds no CERTIFICATE block"
        )));
    }
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| {
        TlsError(format!(
            "{key_path} (PYNOMALY_TLS_KEY) holds no usable private key (PKCS#8, PKCS#1 or \
             SEC1 PEM): {e}"
        ))
    })?;
    let certified = CertifiedKey::from_der(chain, key, provider).map_err(|e| {
        TlsError(format!(
            "{key_path} (PYNOMALY_TLS_KEY) does not go with {cert_path} (PYNOMALY_TLS_CERT): {e}"
        ))
    })?;
    Ok(Loaded {
        cert_pem,
        key_pem,
        certified: Arc::new(certified),
    })
}
