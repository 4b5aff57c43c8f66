//! What handlers share.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pynomaly_jobs::{JobQueue, SourceResolver};
use pynomaly_models::ModelRegistry;
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

/// The state every handler can reach: one `Arc`, so the several clones axum makes per
/// request (each middleware and extractor takes its own) cost one reference count each.
/// With the fields cloned one by one, those clones were about a sixth of the server's CPU
/// on the 1-row predict (a dozen contended atomic counts and a `String` per clone).
#[derive(Debug, Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub(crate) fn new(shared: Shared) -> Self {
        Self(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What [`AppState`] shares.
#[derive(Debug)]
pub struct Shared {
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
    /// `PYNOMALY_DATA_DIR`: `/health` reports its filesystem's free space.
    pub(crate) data_dir: std::path::PathBuf,
    /// What `/health` saw of the queue before (jobs that do not drain).
    pub(crate) drain: crate::routes::health::DrainWatch,
    /// Shadow rollouts' scoring, off the request path.
    pub(crate) shadow: crate::shadow::ShadowScorer,
}
