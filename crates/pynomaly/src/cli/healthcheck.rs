//! `pynomaly healthcheck [--metrics] [--url URL]`: asks a running process whether it is
//! alive, for container health checks in images that carry no HTTP client (Docker's
//! `HEALTHCHECK`, compose's `healthcheck`).
//!
//! Without `--url` it asks this container's own process, at the address the settings give
//! (`PYNOMALY_BIND`, or `PYNOMALY_METRICS_BIND` with `--metrics`, a worker's only port),
//! over HTTPS when `PYNOMALY_TLS_CERT` is set. Such a loopback probe does not check the
//! certificate's name: the certificate is the process's own, named for its public host.
//! A `--url` is checked as any client would.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use anyhow::Context;

use crate::cli::InputError;

/// Arguments of `pynomaly healthcheck`.
#[derive(Debug, clap::Args)]
pub struct HealthcheckArgs {
    /// Ask the metrics port (`PYNOMALY_METRICS_BIND`, `GET /metrics`) instead of the API's
    /// `GET /health/live`: a worker's health check
    #[arg(long)]
    pub metrics: bool,
    /// The URL to ask instead (its status must be 2xx)
    #[arg(long, value_name = "URL", conflicts_with = "metrics")]
    pub url: Option<String>,
    /// Seconds to wait for the answer
    #[arg(long, value_name = "S", default_value_t = 5)]
    pub timeout: u64,
}

/// Exits 0 when the process answers 2xx, 1 otherwise (with the reason on stderr).
///
/// # Errors
/// Invalid settings (exit status 2); no answer, or not 2xx (1).
pub fn run(args: &HealthcheckArgs) -> anyhow::Result<()> {
    let (url, own) = match &args.url {
        Some(url) => (url.clone(), false),
        None => (own_url(args.metrics)?, true),
    };
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(args.timeout.max(1)))
        .tls_danger_accept_invalid_certs(own)
        .build()
        .context("cannot make an HTTP client")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let status = runtime
        .block_on(async { client.get(&url).send().await.map(|r| r.status()) })
        .with_context(|| format!("no answer from {url}"))?;
    if status.is_success() {
        println!("{url}: {status}");
        Ok(())
    } else {
        anyhow::bail!("{url} answered {status}")
    }
}

/// This container's own process, as its settings place it.
fn own_url(metrics: bool) -> anyhow::Result<String> {
    let settings = crate::cli::serve::settings(None)?;
    let (addr, path) = if metrics {
        let addr = settings.server.metrics_bind.ok_or_else(|| {
            InputError("--metrics: PYNOMALY_METRICS_BIND is not set (no metrics port)".into())
        })?;
        (addr, "/metrics")
    } else {
        (settings.server.bind, "/health/live")
    };
    let scheme = if settings.server.tls.is_some() {
        "https"
    } else {
        "http"
    };
    Ok(format!("{scheme}://{}{path}", loopback(addr)))
}

/// A listening address as a client reaches it: the unspecified address is loopback.
fn loopback(addr: SocketAddr) -> SocketAddr {
    match addr.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => (Ipv4Addr::LOCALHOST, addr.port()).into(),
        IpAddr::V6(ip) if ip.is_unspecified() => (Ipv6Addr::LOCALHOST, addr.port()).into(),
        _ => addr,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_unspecified_address_is_asked_on_loopback() {
        let l = |s: &str| loopback(s.parse().unwrap()).to_string();
        assert_eq!(l("0.0.0.0:8000"), "127.0.0.1:8000");
        assert_eq!(l("[::]:8000"), "[::1]:8000");
        assert_eq!(l("10.1.2.3:8000"), "10.1.2.3:8000");
    }
}
