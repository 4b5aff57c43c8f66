//! The audit log: who did what, to which resource, with what outcome, from where, when.
//!
//! What is recorded: every request needing the `write` or `admin` scope (every change of
//! models, jobs, keys and users, and every admin read: key, user and audit listings), every
//! login, and every authentication or authorisation failure (401, 403, 429). `detect` and
//! `predict` (scope `read`: they change nothing) are not, so scoring never waits on it.
//!
//! How: [`record`] is a middleware that gives each request an [`AuditSlot`]; the auth
//! extractors fill it with the caller (tenant, `key:<id>` or `user:<username>`) and whether
//! the request is one to record; after the response, the middleware builds the row (action
//! = method and route template, resource = the path, outcome = the status, the request id,
//! the client address) and hands it to a bounded channel. One background task appends rows
//! in batches (one INSERT for everything waiting), so no request waits on the database for
//! its audit row. If the database falls behind by [`QUEUE_CAPACITY`] rows, further rows are
//! dropped and counted in the log (`audit rows dropped`) rather than holding memory or
//! requests: a flood of failed logins must not take the service down.
//!
//! Failures without a known caller (no key, an unknown key, a malformed token) have no
//! tenant of their own: they are recorded under the deployment's operator tenant
//! ([`pynomaly_store::DEFAULT_TENANT`], where the first-start admin key lives), whose admins
//! answer for the whole service; a revoked or expired key, or a disabled user's token, is
//! recorded under its own tenant.
//!
//! Append-only: the API has `GET /api/v1/audit` and nothing that changes a row; the store
//! has no update or delete for the table.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{ConnectInfo, MatchedPath, Request};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::Response;
use pynomaly_store::{DEFAULT_TENANT, DynMetadataStore, NewAuditEntry};
use tokio::sync::mpsc;

use crate::metrics::Metrics;
use crate::request_id::current_request_id;

/// Rows waiting for the writer before new ones are dropped.
pub(crate) const QUEUE_CAPACITY: usize = 65_536;
/// Rows written per batch at most.
const BATCH: usize = 1024;

/// The caller as the auth extractors found it.
#[derive(Debug, Clone, Default)]
struct Noted {
    tenant: Option<String>,
    actor: Option<String>,
    record: bool,
}

/// Per-request: filled by the auth extractors, read by [`record`] after the response.
#[derive(Debug, Clone, Default)]
pub(crate) struct AuditSlot {
    noted: Arc<Mutex<Noted>>,
    client: Option<IpAddr>,
}

impl AuditSlot {
    /// Who the caller is (or claimed to be, for a failure with a known key or user).
    pub(crate) fn identify(&self, tenant: &str, actor: String) {
        let mut n = self.noted.lock().unwrap_or_else(|e| e.into_inner());
        n.tenant = Some(tenant.to_string());
        n.actor = Some(actor);
    }

    /// The request acts in `tenant` (an operator's action in another tenant): its entry
    /// goes to that tenant's log, where the tenant's admins and the operator see it.
    pub(crate) fn act_in(&self, tenant: &str) {
        self.noted.lock().unwrap_or_else(|e| e.into_inner()).tenant = Some(tenant.to_string());
    }

    /// This request is recorded whatever its outcome.
    pub(crate) fn mark(&self) {
        self.noted.lock().unwrap_or_else(|e| e.into_inner()).record = true;
    }

    /// The client's address (see [`client_ip`]).
    pub(crate) fn client(&self) -> Option<IpAddr> {
        self.client
    }
}

/// The appender: a bounded channel to one writer task.
#[derive(Debug)]
pub(crate) struct AuditLog {
    tx: mpsc::Sender<NewAuditEntry>,
    dropped: AtomicU64,
    trust_forwarded_for: bool,
}

impl AuditLog {
    /// Starts the writer task on `meta`. It ends when every sender is gone, after writing
    /// what is left.
    pub(crate) fn start(meta: DynMetadataStore, trust_forwarded_for: bool) -> Arc<Self> {
        let (tx, mut rx) = mpsc::channel::<NewAuditEntry>(QUEUE_CAPACITY);
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(BATCH);
            while rx.recv_many(&mut batch, BATCH).await > 0 {
                let mut attempt = 0;
                while let Err(e) = meta.append_audit(&batch).await {
                    attempt += 1;
                    if attempt >= 3 {
                        tracing::error!(error = %e, error.chain = ?e, rows = batch.len(),
                            "audit rows could not be written and are lost");
                        break;
                    }
                    tracing::warn!(error = %e, rows = batch.len(), "audit write failed; retrying");
                    tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
                }
                batch.clear();
            }
        });
        Arc::new(Self {
            tx,
            dropped: AtomicU64::new(0),
            trust_forwarded_for,
        })
    }

    fn push(&self, entry: NewAuditEntry) {
        if self.tx.try_send(entry).is_err() {
            let n = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::error!(
                    dropped_total = n,
                    "audit rows dropped: the database is not keeping up"
                );
            }
        }
    }
}

/// The client address: the peer of the connection, or with `PYNOMALY_TRUST_FORWARDED_FOR`
/// the last `X-Forwarded-For` entry (the one the proxy in front of us wrote).
pub(crate) fn client_ip(
    headers: &HeaderMap,
    peer: Option<SocketAddr>,
    trust_forwarded_for: bool,
) -> Option<IpAddr> {
    if trust_forwarded_for
        && let Some(ip) = headers
            .get_all("x-forwarded-for")
            .iter()
            .next_back()
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .and_then(|v| v.trim().parse().ok())
    {
        return Some(ip);
    }
    peer.map(|p| p.ip())
}

/// What the audit middleware does: gives the request its [`AuditSlot`], and records the outcome when the
/// request is one to record (see the module docs).
pub(crate) async fn record(
    log: &AuditLog,
    metrics: &Metrics,
    mut req: Request,
    next: Next,
) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0);
    let client = client_ip(req.headers(), peer, log.trust_forwarded_for);
    let slot = AuditSlot {
        noted: Arc::default(),
        client,
    };
    req.extensions_mut().insert(slot.clone());
    // Cheap clones (reference counts): most requests are not recorded.
    let method = req.method().clone();
    let route = req.extensions().get::<MatchedPath>().cloned();
    let uri = req.uri().clone();
    let response = next.run(req).await;
    let status = response.status().as_u16();
    if status == 429 {
        metrics.count_rate_limited();
    }
    let noted = std::mem::take(&mut *slot.noted.lock().unwrap_or_else(|e| e.into_inner()));
    if noted.record || matches!(status, 401 | 403 | 429) {
        let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
        log.push(NewAuditEntry {
            tenant: noted.tenant.unwrap_or_else(|| DEFAULT_TENANT.to_string()),
            actor: noted.actor.unwrap_or_else(|| "anonymous".into()),
            action: format!("{method} {route}"),
            // Bounded: a path is attacker-chosen.
            resource: uri.path().chars().take(512).collect(),
            outcome: i64::from(status),
            request_id: current_request_id(),
            client_addr: client.map(|ip| ip.to_string()),
            created_at: chrono::Utc::now(),
            detail: None,
        });
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_for_is_used_only_when_trusted_and_then_its_last_entry() {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "6.6.6.6, 10.0.0.7".parse().unwrap());
        let peer: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        assert_eq!(
            client_ip(&h, Some(peer), false),
            Some("127.0.0.1".parse().unwrap())
        );
        assert_eq!(
            client_ip(&h, Some(peer), true),
            Some("10.0.0.7".parse().unwrap())
        );
        h.insert("x-forwarded-for", "garbage".parse().unwrap());
        assert_eq!(
            client_ip(&h, Some(peer), true),
            Some("127.0.0.1".parse().unwrap())
        );
    }
}
