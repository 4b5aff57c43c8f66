//! What handlers share.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pynomaly_jobs::{JobQueue, ModelRegistry, SourceResolver};
use pynomaly_store::{ArtifactStore, DynMetadataStore};
use tokio::sync::Semaphore;

use crate::auth::AuthService;
use crate::metrics::Metrics;

/// Limits applied to every request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) max_cells: usize,
    pub(crate) max_body_bytes: usize,
    pub(crate) request_timeout: Duration,
}

/// The state every handler can reach (cheap to clone: everything is behind `Arc`s).
#[derive(Debug, Clone)]
pub struct AppState {
    pub(crate) meta: DynMetadataStore,
    pub(crate) registry: Arc<ModelRegistry>,
    pub(crate) queue: Arc<dyn JobQueue>,
    pub(crate) artifacts: ArtifactStore,
    pub(crate) sources: Arc<SourceResolver>,
    pub(crate) auth: Arc<AuthService>,
    pub(crate) audit: Arc<crate::audit::AuditLog>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) limits: Limits,
    pub(crate) started: Instant,
    /// Bounds concurrent CPU-heavy work (fits, large scorings) on the blocking pool.
    pub(crate) heavy: Arc<Semaphore>,
    /// PII detection and masking, configured by `PYNOMALY_PII_*`.
    pub(crate) privacy: Arc<pynomaly_privacy::Privacy>,
}
