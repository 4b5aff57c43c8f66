//! The model that scores events: a registry model, or one learned online.
//!
//! Both put the model in an [`ArcSwapOption`]: the scoring stage loads it once per batch
//! (one atomic read, no lock), and whoever has a newer model stores it there.
//!
//! - **Registry** ([`RegistryModel`]): the production version of a named model, from the
//!   same registry as the API (`ModelRegistry`: metadata store plus artifact store), which
//!   checks the production version every `refresh` interval; when it changes (a
//!   promotion, or a retrain of a model that had none), the new version is loaded through
//!   the registry's cache and swapped in, without a restart.
//!   `model_version` in alerts is the registry's version number.
//! - **Online** ([`OnlineLearner`]): the first `warm_up` events are held (not yet
//!   acknowledged) until they fill the window; the first model is fitted on them and scores
//!   them. From then on every event is scored by the current model and joins a sliding
//!   window of the last `window` events; every `update_frequency` events a copy of the
//!   window is refitted on a blocking thread (never on the scoring path; at most one refit
//!   at a time, a refit due while one runs waits for the next count), and the new model is
//!   swapped in with the next version number. After each refit, and at shutdown, the model
//!   and the window are checkpointed to the artifact store, so a restarted process
//!   continues with that model and window (no warm-up, versions keep counting).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use detect_core::{DetectorConfig, FittedModel};
use ndarray::Array2;
use pynomaly_models::{LoadedModel, ModelRegistry};
use pynomaly_store::{ArtifactStore, StoreError};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::StreamError;
use crate::metrics::StreamMetrics;

/// A model ready to score, and the version reported in alerts.
#[derive(Debug)]
pub struct ActiveModel {
    pub model: Arc<FittedModel>,
    pub version: i64,
}

/// Where the current model is published for the scoring stage.
pub type ModelSlot = Arc<ArcSwapOption<ActiveModel>>;

/// A registry model kept at its production version.
#[derive(Debug)]
pub struct RegistryModel {
    pub registry: Arc<ModelRegistry>,
    pub tenant: String,
    pub name: String,
    /// How often the production version is checked.
    pub refresh: Duration,
}

impl RegistryModel {
    /// Loads the production version into a new slot and keeps it current until `stop`
    /// ([`ModelRegistry::watch_production`]).
    ///
    /// # Errors
    /// The model does not exist, or the stores fail.
    pub async fn start(
        self,
        metrics: StreamMetrics,
        stop: CancellationToken,
    ) -> Result<(ModelSlot, JoinHandle<()>), StreamError> {
        let watch = self
            .registry
            .watch_production(&self.tenant, &self.name, self.refresh, stop.clone())
            .await?
            .ok_or_else(|| StreamError::NoSuchModel {
                tenant: self.tenant.clone(),
                name: self.name.clone(),
            })?;
        let mut current = watch.current;
        let active = move |loaded: &LoadedModel| {
            metrics.model_version.set(loaded.version.version);
            Some(Arc::new(ActiveModel {
                model: Arc::clone(&loaded.model),
                version: loaded.version.version,
            }))
        };
        let slot: ModelSlot = Arc::new(ArcSwapOption::from(active(&current.borrow_and_update())));
        let watched = Arc::clone(&slot);
        let task = tokio::spawn(async move {
            // The watch's own task ends at `stop`, and with it this loop.
            while current.changed().await.is_ok() {
                watched.store(active(&current.borrow_and_update()));
            }
            let _ = watch.task.await;
        });
        Ok((slot, task))
    }
}

/// Online learning options.
#[derive(Debug, Clone)]
pub struct OnlineConfig {
    pub detector: DetectorConfig,
    /// Events in the sliding window refits use.
    pub window: usize,
    /// Events held before the first model is fitted (at most `window`, at least 2).
    pub warm_up: usize,
    /// A refit every this many events after warm-up.
    pub update_frequency: usize,
}

const CHECKPOINT_FORMAT: u16 = 1;

#[derive(Serialize, Deserialize)]
struct Checkpoint {
    format: u16,
    model_version: i64,
    n_features: u64,
    /// Window rows, oldest first, row-major.
    window: Vec<f64>,
    /// `FittedModel::to_bytes`.
    model: Vec<u8>,
}

/// Where checkpoints are written: an artifact store path.
#[derive(Debug, Clone)]
pub struct CheckpointStore {
    pub artifacts: ArtifactStore,
    pub path: String,
}

impl CheckpointStore {
    async fn load(&self) -> Result<Option<Checkpoint>, StreamError> {
        let bytes = match self.artifacts.get(&self.path).await {
            Ok(b) => b,
            Err(StoreError::NotFound(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let bad = |detail: String| StreamError::Checkpoint {
            path: self.artifacts.uri(&self.path),
            detail,
        };
        let c: Checkpoint = postcard::from_bytes(&bytes).map_err(|e| bad(e.to_string()))?;
        if c.format != CHECKPOINT_FORMAT {
            return Err(bad(format!(
                "format {} is not {CHECKPOINT_FORMAT}",
                c.format
            )));
        }
        if c.n_features == 0 || !c.window.len().is_multiple_of(c.n_features as usize) {
            return Err(bad("window does not hold whole rows".into()));
        }
        Ok(Some(c))
    }

    /// Writes every checkpoint published on `rx` (the latest when several queue up) until
    /// the sender is dropped.
    fn spawn_writer(self, mut rx: watch::Receiver<Option<Arc<Vec<u8>>>>) -> JoinHandle<()> {
        tokio::spawn(async move {
            loop {
                let latest = rx.borrow_and_update().clone();
                if let Some(bytes) = latest {
                    let n = bytes.len();
                    match self
                        .artifacts
                        .put(&self.path, Bytes::from(bytes.as_ref().clone()))
                        .await
                    {
                        Ok(()) => {
                            tracing::debug!(bytes = n, path = self.path, "checkpoint written")
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, path = self.path, "cannot write the checkpoint")
                        }
                    }
                }
                if rx.changed().await.is_err() {
                    // Sender gone: write what it published last, if not written yet.
                    if rx.has_changed().unwrap_or(false) {
                        continue;
                    }
                    return;
                }
            }
        })
    }
}

/// The online learner, owned by the scoring stage.
#[derive(Debug)]
pub struct OnlineLearner {
    config: OnlineConfig,
    slot: ModelSlot,
    n_features: Option<usize>,
    /// Ring buffer of `window` rows.
    ring: Vec<f64>,
    head: usize,
    len: usize,
    since_refit: usize,
    refitting: Arc<AtomicBool>,
    checkpoints: Option<watch::Sender<Option<Arc<Vec<u8>>>>>,
    metrics: StreamMetrics,
}

impl OnlineLearner {
    /// A learner, restored from the checkpoint when one exists. Returns the learner and
    /// the checkpoint writer task (ends once the learner is dropped).
    ///
    /// # Errors
    /// A checkpoint that exists but cannot be read (refusing it would silently start over).
    pub async fn start(
        mut config: OnlineConfig,
        checkpoint: Option<CheckpointStore>,
        metrics: StreamMetrics,
    ) -> Result<(Self, Option<JoinHandle<()>>), StreamError> {
        config.window = config.window.max(2);
        config.warm_up = config.warm_up.clamp(2, config.window);
        config.update_frequency = config.update_frequency.max(1);
        let mut learner = Self {
            config,
            slot: Arc::new(ArcSwapOption::empty()),
            n_features: None,
            ring: Vec::new(),
            head: 0,
            len: 0,
            since_refit: 0,
            refitting: Arc::new(AtomicBool::new(false)),
            checkpoints: None,
            metrics,
        };
        let Some(store) = checkpoint else {
            return Ok((learner, None));
        };
        if let Some(c) = store.load().await? {
            let model = FittedModel::from_bytes(&c.model).map_err(|e| StreamError::Checkpoint {
                path: store.artifacts.uri(&store.path),
                detail: e.to_string(),
            })?;
            let nf = c.n_features as usize;
            learner.n_features = Some(nf);
            learner.ring = vec![0.0; learner.config.window * nf];
            for row in c.window.chunks_exact(nf) {
                learner.push(row);
            }
            // The restored window was already fitted on: count from zero again.
            learner.since_refit = 0;
            tracing::info!(
                version = c.model_version,
                window = learner.len,
                path = store.artifacts.uri(&store.path),
                "resumed online learning from the checkpoint"
            );
            learner.metrics.model_version.set(c.model_version);
            learner.slot.store(Some(Arc::new(ActiveModel {
                model: Arc::new(model),
                version: c.model_version,
            })));
        }
        let (tx, rx) = watch::channel(None);
        learner.checkpoints = Some(tx);
        let writer = store.spawn_writer(rx);
        Ok((learner, Some(writer)))
    }

    /// Where the current model is.
    pub fn slot(&self) -> ModelSlot {
        Arc::clone(&self.slot)
    }

    /// Features per event, once known (from the first event or the checkpoint).
    pub fn n_features(&self) -> Option<usize> {
        self.n_features
    }

    /// Whether the first model is still to be fitted.
    pub fn warming_up(&self) -> bool {
        self.slot.load().is_none()
    }

    /// Adds one event's features to the window. The first row fixes the width; callers
    /// check widths against [`OnlineLearner::n_features`] first.
    pub fn push(&mut self, row: &[f64]) {
        let nf = *self.n_features.get_or_insert(row.len());
        if self.ring.is_empty() {
            self.ring = vec![0.0; self.config.window * nf];
        }
        let cap = self.config.window;
        let slot = (self.head + self.len) % cap;
        self.ring[slot * nf..(slot + 1) * nf].copy_from_slice(row);
        if self.len < cap {
            self.len += 1;
        } else {
            self.head = (self.head + 1) % cap;
        }
        self.since_refit += 1;
    }

    fn snapshot(&self) -> Array2<f64> {
        let nf = self.n_features.unwrap_or(1);
        let cap = self.config.window;
        let mut flat = Vec::with_capacity(self.len * nf);
        for i in 0..self.len {
            let r = (self.head + i) % cap;
            flat.extend_from_slice(&self.ring[r * nf..(r + 1) * nf]);
        }
        Array2::from_shape_vec((self.len, nf), flat).unwrap_or_else(|_| Array2::zeros((0, nf)))
    }

    /// Whether enough events arrived to fit the first model.
    pub fn warm_up_complete(&self) -> bool {
        self.len >= self.config.warm_up
    }

    /// Fits the first model on the warm-up window, on this (blocking) thread.
    ///
    /// # Errors
    /// The detector cannot fit this data (for example, parameters that need more rows).
    pub fn fit_first(&mut self) -> Result<(), StreamError> {
        let x = self.snapshot();
        self.since_refit = 0;
        refit(
            &self.config.detector,
            x,
            &self.slot,
            self.checkpoints.as_ref(),
            &self.metrics,
        )?;
        Ok(())
    }

    /// Whether `update_frequency` events arrived since the last refit started.
    pub fn refit_due(&self) -> bool {
        self.since_refit >= self.config.update_frequency && !self.warming_up()
    }

    /// Starts a refit on a blocking thread if one is due and none is running.
    pub fn maybe_refit(&mut self) {
        if !self.refit_due() {
            return;
        }
        if self.refitting.swap(true, Ordering::AcqRel) {
            return;
        }
        self.since_refit = 0;
        let x = self.snapshot();
        let detector = self.config.detector.clone();
        let slot = Arc::clone(&self.slot);
        let checkpoints = self.checkpoints.clone();
        let metrics = self.metrics.clone();
        let running = Arc::clone(&self.refitting);
        tokio::task::spawn_blocking(move || {
            if let Err(e) = refit(&detector, x, &slot, checkpoints.as_ref(), &metrics) {
                tracing::warn!(error = %e, "refit failed; still scoring with the previous model");
            }
            running.store(false, Ordering::Release);
        });
    }

    /// Publishes a checkpoint of the current model and window (at shutdown).
    pub fn checkpoint_now(&self) {
        let (Some(tx), Some(current)) = (&self.checkpoints, self.slot.load_full()) else {
            return;
        };
        let x = self.snapshot();
        let bytes = encode_checkpoint(&current, x);
        let _ = tx.send(Some(Arc::new(bytes)));
    }
}

fn encode_checkpoint(current: &ActiveModel, x: Array2<f64>) -> Vec<u8> {
    let n_features = x.ncols() as u64;
    let c = Checkpoint {
        format: CHECKPOINT_FORMAT,
        model_version: current.version,
        n_features,
        window: x.into_raw_vec_and_offset().0,
        model: current.model.to_bytes(),
    };
    postcard::to_allocvec(&c).unwrap_or_default()
}

/// Fits on `x`, swaps the model in with the next version, publishes a checkpoint.
fn refit(
    detector: &DetectorConfig,
    x: Array2<f64>,
    slot: &ModelSlot,
    checkpoints: Option<&watch::Sender<Option<Arc<Vec<u8>>>>>,
    metrics: &StreamMetrics,
) -> Result<(), StreamError> {
    let started = std::time::Instant::now();
    let fitted = detect_core::fit(detector, x.view())?.model;
    let version = slot.load().as_ref().map_or(0, |m| m.version) + 1;
    let active = Arc::new(ActiveModel {
        model: Arc::new(fitted),
        version,
    });
    slot.store(Some(Arc::clone(&active)));
    metrics.refits.inc();
    metrics.model_version.set(version);
    tracing::info!(
        version,
        rows = x.nrows(),
        ms = started.elapsed().as_secs_f64() * 1e3,
        "refitted the online model"
    );
    if let Some(tx) = checkpoints {
        let _ = tx.send(Some(Arc::new(encode_checkpoint(&active, x))));
    }
    Ok(())
}
