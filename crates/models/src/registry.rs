//! The model registry: trained models stored as artifacts, registered as versions in the
//! metadata store, and served from the in-memory [`ModelCache`].
//!
//! Both the API (inline training, predict) and the job runner (training from a data source,
//! batch scoring) go through it, so a model is written, numbered and cached one way.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use detect_core::drift::ReferenceProfile;
use detect_core::{DetectError, FittedModel};
use pynomaly_store::{ArtifactStore, DynMetadataStore, ModelVersion, NewModelVersion, StoreError};
use thiserror::Error;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::cache::{LoadedModel, ModelCache};
use crate::drift::{DriftConfig, DriftMonitor, reference_path};
use crate::model_events::{ModelChangeSink, ModelEvents};

mod canary;
mod lifecycle;
mod rollout;

pub use canary::{ActiveRollout, Breach, Guards, NewRollout, RolloutMode, RolloutPolicy, Variant};

pub use lifecycle::previous_production;
pub use rollout::{
    GateMetric, PromotePolicy, PromotionOutcome, Rollout, ValidationSet, matrix_sha256,
};

/// An error from registering or loading a model.
#[derive(Debug, Error)]
pub enum RegistryError {
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A stored artifact that cannot be read back (corrupt, or a newer format).
    #[error("stored model {name} v{version} cannot be loaded")]
    Artifact {
        name: String,
        version: i64,
        #[source]
        source: DetectError,
    },
    /// Decoding ran on a blocking thread that panicked.
    #[error("model loading task failed")]
    Join(#[from] tokio::task::JoinError),
    /// Validation rows the model cannot score (another width, NaN).
    #[error("the validation data cannot be scored: {0}")]
    Validation(#[source] DetectError),
}

/// What to register beside the fitted model.
#[derive(Debug, Clone)]
pub struct Registration {
    pub tenant: String,
    pub model_name: String,
    pub feature_names: Option<Vec<String>>,
    pub training_time_ms: f64,
    /// The training job registering it (`None` for inline training): a job re-run after
    /// a crash gets the version its first run registered, not a second one.
    pub job_id: Option<String>,
    /// Validation figures (see [`ModelVersion::metrics`]).
    pub metrics: Option<serde_json::Value>,
    /// Where it comes from (see [`ModelVersion::lineage`]).
    pub lineage: Option<serde_json::Value>,
}

impl Registration {
    /// A version of `tenant`'s `model_name` with nothing more known: no feature names, no
    /// job, no validation figures or lineage, no training time.
    pub fn new(tenant: impl Into<String>, model_name: impl Into<String>) -> Self {
        Self {
            tenant: tenant.into(),
            model_name: model_name.into(),
            feature_names: None,
            training_time_ms: 0.0,
            job_id: None,
            metrics: None,
            lineage: None,
        }
    }
}

/// The rollouts held, by tenant and name: `None` for a model known to have none.
type Rollouts = HashMap<String, HashMap<String, Option<Arc<ActiveRollout>>>>;

/// Key of a load in flight: (tenant, name, version asked; `None`: production).
type LoadKey = (String, String, Option<i64>);

/// Models: stored, numbered, cached.
#[derive(Debug)]
pub struct ModelRegistry {
    meta: DynMetadataStore,
    artifacts: ArtifactStore,
    cache: ModelCache,
    /// One loader per model at a time: a burst of predicts on a cold cache reads and
    /// decodes the artifact once, the others wait for it and hit the cache.
    loading: std::sync::Mutex<HashMap<LoadKey, Arc<tokio::sync::Mutex<()>>>>,
    /// Artifacts read and decoded (cache misses that loaded), for tests and metrics.
    loads: AtomicU64,
    /// Loads answered from memory at once / not (metrics).
    hits: AtomicU64,
    misses: AtomicU64,
    /// Where changes are announced to the other instances (Redis pub/sub), when set.
    events: OnceLock<Arc<ModelEvents>>,
    /// Reference profiles and drift windows of the models served here.
    drift: DriftMonitor,
    /// Stage changes made here, by (model, reason) (metrics).
    stage_changes: lifecycle::Counts,
    /// The rollouts of the models asked about: `None` for a model with none.
    rollouts: std::sync::Mutex<Rollouts>,
    /// Counts the forgettings of `rollouts`, so a store read that a change overtook is not
    /// kept (see `ModelRegistry::rollout`).
    rollout_generation: AtomicU64,
    /// Rollouts ended by their guards here, by (model, guard) (metrics).
    rollbacks: lifecycle::Counts,
}

impl ModelRegistry {
    /// A registry over these stores, caching at most `cache_bytes` of models.
    pub fn new(meta: DynMetadataStore, artifacts: ArtifactStore, cache_bytes: u64) -> Self {
        Self {
            meta,
            artifacts,
            cache: ModelCache::new(cache_bytes),
            loading: std::sync::Mutex::new(HashMap::new()),
            loads: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            events: OnceLock::new(),
            drift: DriftMonitor::new(DriftConfig::default()),
            stage_changes: std::sync::Mutex::default(),
            rollouts: std::sync::Mutex::default(),
            rollout_generation: AtomicU64::new(0),
            rollbacks: std::sync::Mutex::default(),
        }
    }

    /// Watches drift with these settings (default: on, 5-minute windows).
    #[must_use]
    pub fn with_drift(mut self, config: DriftConfig) -> Self {
        self.drift = DriftMonitor::new(config);
        self
    }

    /// The drift windows of the models served here.
    pub fn drift(&self) -> &DriftMonitor {
        &self.drift
    }

    /// Shares model changes with the other instances through `events`: announces this
    /// registry's registrations and deletions there (set once, at start-up), and drops from
    /// the cache what the others announce, until `stop`. Returns once subscribed.
    pub async fn follow_changes(
        self: &Arc<Self>,
        events: Arc<ModelEvents>,
        stop: CancellationToken,
    ) -> JoinHandle<()> {
        let _ = self.events.set(Arc::clone(&events));
        events
            .subscribe(Arc::clone(self) as Arc<dyn ModelChangeSink>, stop)
            .await
    }

    /// Artifacts read and decoded since start (cache misses that loaded).
    pub fn loads(&self) -> u64 {
        self.loads.load(Ordering::Relaxed)
    }

    /// Loads served from the in-memory cache at once, since start.
    pub fn cache_hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// Loads that did not find their model in memory (they read the artifact, or waited
    /// for another request reading it), since start.
    pub fn cache_misses(&self) -> u64 {
        self.misses.load(Ordering::Relaxed)
    }

    async fn announce(&self, tenant: &str, name: &str) {
        if let Some(events) = self.events.get() {
            events.publish(tenant, name).await;
        }
    }

    /// The in-memory cache (for metrics).
    pub fn cache(&self) -> &ModelCache {
        &self.cache
    }

    /// Stores the model's artifact, registers the next version and caches it (with no
    /// reference profile: its drift cannot be watched; see
    /// [`ModelRegistry::register_with_reference`]).
    ///
    /// # Errors
    /// The artifact or metadata store failed; no half-registered version is left behind.
    pub async fn register(
        &self,
        model: FittedModel,
        reg: Registration,
    ) -> Result<LoadedModel, RegistryError> {
        self.register_with_reference(model, reg, None).await
    }

    /// [`ModelRegistry::register`], storing the training data's reference profile beside
    /// the artifact so the model's drift can be watched.
    ///
    /// # Errors
    /// As [`ModelRegistry::register`].
    pub async fn register_with_reference(
        &self,
        model: FittedModel,
        reg: Registration,
        reference: Option<ReferenceProfile>,
    ) -> Result<LoadedModel, RegistryError> {
        let bytes = model.to_bytes();
        let size = bytes.len() as u64;
        let path = format!("models/{}/{}.pnmy", reg.tenant, uuid::Uuid::now_v7());
        let ref_path = reference_path(&path);
        if let Some(reference) = &reference {
            self.artifacts
                .put(&ref_path, Bytes::from(reference.to_bytes()))
                .await?;
        }
        if let Err(e) = self.artifacts.put(&path, Bytes::from(bytes)).await {
            self.remove_quietly(&ref_path).await;
            return Err(e.into());
        }
        let new = NewModelVersion {
            tenant: reg.tenant,
            model_name: reg.model_name,
            algorithm: model.algorithm().to_string(),
            parameters: model.config().algorithm.to_json(),
            contamination: model.config().contamination.to_json(),
            threshold: model.threshold(),
            n_features: model.n_features() as i64,
            n_samples: model.n_samples() as i64,
            feature_names: reg.feature_names,
            artifact_path: path.clone(),
            artifact_bytes: size as i64,
            training_time_ms: reg.training_time_ms,
            job_id: reg.job_id,
            metrics: reg.metrics,
            lineage: reg.lineage,
        };
        let version = match self.meta.create_model_version(new).await {
            Ok(v) => v,
            Err(e) => {
                self.remove_quietly(&path).await;
                self.remove_quietly(&ref_path).await;
                return Err(e.into());
            }
        };
        if version.artifact_path != path {
            // This job registered its version on an earlier run (then crashed before
            // finishing): keep that version, drop this run's copy, serve the stored one.
            self.remove_quietly(&path).await;
            self.remove_quietly(&ref_path).await;
            let (tenant, name, number) = (
                version.tenant.clone(),
                version.model_name.clone(),
                version.version,
            );
            return self
                .load(&tenant, &name, Some(number))
                .await?
                .ok_or_else(|| {
                    RegistryError::Store(StoreError::NotFound(format!("{name} v{number}")))
                });
        }
        let production = version.stage == "production";
        if !production {
            // The production version did not change, but drop a stale alias anyway.
            self.cache
                .forget_production(&version.tenant, &version.model_name);
        }
        let drift = reference.and_then(|r| {
            self.drift.attach(
                &version.tenant,
                &version.model_name,
                version.version,
                Arc::new(r),
                version.feature_names.as_deref(),
            )
        });
        let loaded = LoadedModel {
            model: Arc::new(model),
            version: Arc::new(version),
            drift,
        };
        self.cache.insert(loaded.clone(), size, production);
        self.announce(&loaded.version.tenant, &loaded.version.model_name)
            .await;
        Ok(loaded)
    }

    /// The asked version of a model, or its production version; `None` when it does not
    /// exist for this tenant. Served from memory after the first load.
    ///
    /// # Errors
    /// The stores failed, or the artifact cannot be decoded.
    pub async fn load(
        &self,
        tenant: &str,
        name: &str,
        version: Option<i64>,
    ) -> Result<Option<LoadedModel>, RegistryError> {
        if let Some(hit) = self.cache.get(tenant, name, version) {
            self.hits.fetch_add(1, Ordering::Relaxed);
            return Ok(Some(hit));
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let key: LoadKey = (tenant.to_string(), name.to_string(), version);
        let gate = Arc::clone(
            self.lock_loading()
                .entry(key.clone())
                .or_insert_with(|| Arc::new(tokio::sync::Mutex::new(()))),
        );
        let loaded = {
            let _turn = gate.lock().await;
            // Whoever held the gate before us may have loaded it.
            match self.cache.get(tenant, name, version) {
                Some(hit) => Ok(Some(hit)),
                None => self.load_uncached(tenant, name, version).await,
            }
        };
        {
            let mut loading = self.lock_loading();
            if loading.get(&key).is_some_and(|g| Arc::ptr_eq(g, &gate)) {
                loading.remove(&key);
            }
        }
        loaded
    }

    fn lock_loading(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<LoadKey, Arc<tokio::sync::Mutex<()>>>> {
        self.loading.lock().unwrap_or_else(|e| e.into_inner())
    }

    async fn load_uncached(
        &self,
        tenant: &str,
        name: &str,
        version: Option<i64>,
    ) -> Result<Option<LoadedModel>, RegistryError> {
        let generation = self.cache.generation();
        let record = match version {
            Some(v) => self.meta.model_version(tenant, name, v).await?,
            None => self.meta.production_version(tenant, name).await?,
        };
        let Some(record) = record else {
            return Ok(None);
        };
        if let Some(hit) = self.cache.get(tenant, name, Some(record.version)) {
            if version.is_none() {
                self.cache.set_production(tenant, name, record.version);
            }
            return Ok(Some(hit));
        }
        let bytes = self.artifacts.get(&record.artifact_path).await?;
        self.loads.fetch_add(1, Ordering::Relaxed);
        let size = bytes.len() as u64;
        let decoded = tokio::task::spawn_blocking(move || FittedModel::from_bytes(&bytes)).await?;
        let model = decoded.map_err(|source| RegistryError::Artifact {
            name: record.model_name.clone(),
            version: record.version,
            source,
        })?;
        let drift = self.load_reference(&record).await.and_then(|r| {
            self.drift.attach(
                &record.tenant,
                &record.model_name,
                record.version,
                r,
                record.feature_names.as_deref(),
            )
        });
        let loaded = LoadedModel {
            model: Arc::new(model),
            version: Arc::new(record),
            drift,
        };
        // Not if the name changed meanwhile (deleted or retrained elsewhere): this copy
        // may be stale; the next request loads again.
        self.cache
            .insert_unless_invalidated(generation, loaded.clone(), size, version.is_none());
        Ok(Some(loaded))
    }

    /// The reference profile stored beside a version's artifact; `None` when it has none
    /// (trained before profiles existed), monitoring is off, or it cannot be read (logged:
    /// predicts go on without drift windows).
    async fn load_reference(&self, record: &ModelVersion) -> Option<Arc<ReferenceProfile>> {
        if !self.drift.config().enabled {
            return None;
        }
        let path = reference_path(&record.artifact_path);
        match self.artifacts.get(&path).await {
            Ok(bytes) => match ReferenceProfile::from_bytes(&bytes) {
                Ok(r) if r.n_features() as i64 == record.n_features => Some(Arc::new(r)),
                Ok(r) => {
                    tracing::warn!(
                        path,
                        features = r.n_features(),
                        "reference profile does not match its model"
                    );
                    None
                }
                Err(e) => {
                    tracing::warn!(error = %e, path, "unreadable reference profile");
                    None
                }
            },
            Err(StoreError::NotFound(_)) => None,
            Err(e) => {
                tracing::warn!(error = %e, path, "could not read a reference profile");
                None
            }
        }
    }

    async fn remove_quietly(&self, path: &str) {
        if let Err(e) = self.artifacts.delete(path).await {
            tracing::warn!(error = %e, path, "could not remove an orphan artifact");
        }
    }

    /// Every version of a model (oldest first); empty when it does not exist.
    ///
    /// # Errors
    /// The metadata store failed.
    pub async fn versions(
        &self,
        tenant: &str,
        name: &str,
    ) -> Result<Vec<ModelVersion>, RegistryError> {
        Ok(self.meta.model_versions(tenant, name).await?)
    }

    /// Keeps up with a model's production version: loads it now (`None` when the model
    /// does not exist), then checks the metadata store every `every` until `stop`, and
    /// publishes each new production version (a promotion, or a model deleted and trained
    /// again, which starts over at version 1) on the returned channel once it is loaded.
    ///
    /// # Errors
    /// The stores failed, or the artifact cannot be decoded.
    pub async fn watch_production(
        self: &Arc<Self>,
        tenant: &str,
        name: &str,
        every: Duration,
        stop: CancellationToken,
    ) -> Result<Option<ProductionWatch>, RegistryError> {
        let Some(first) = self.load(tenant, name, None).await? else {
            return Ok(None);
        };
        let (tx, rx) = watch::channel(first);
        let registry = Arc::clone(self);
        let (tenant, name) = (tenant.to_string(), name.to_string());
        let task = tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = tokio::time::sleep(every) => {}
                    () = stop.cancelled() => return,
                }
                let held = tx.borrow().clone();
                if let Some(next) = registry.newer_production(&tenant, &name, &held).await {
                    tracing::info!(
                        model = name,
                        from = held.version.version,
                        to = next.version.version,
                        "new production version"
                    );
                    tx.send_replace(next);
                }
            }
        });
        Ok(Some(ProductionWatch { current: rx, task }))
    }

    /// The production version when it is not `held` (a version is identified by its
    /// artifact too), loaded; `None` when it is the same, gone, or cannot be loaded now
    /// (logged: the caller keeps what it has and asks again).
    async fn newer_production(
        &self,
        tenant: &str,
        name: &str,
        held: &LoadedModel,
    ) -> Option<LoadedModel> {
        let production = match self.meta.production_version(tenant, name).await {
            Ok(Some(v)) => v,
            Ok(None) => {
                tracing::warn!(
                    model = name,
                    "the model was deleted from the registry; keeping its last version"
                );
                return None;
            }
            Err(e) => {
                tracing::warn!(error = %e, model = name, "cannot check the model's production version");
                return None;
            }
        };
        if production.version == held.version.version
            && production.artifact_path == held.version.artifact_path
        {
            return None;
        }
        match self.load(tenant, name, Some(production.version)).await {
            Ok(Some(loaded)) if loaded.version.artifact_path == production.artifact_path => {
                Some(loaded)
            }
            Ok(Some(_)) => {
                // A stale cached copy of a re-created version: drop it, load next time.
                self.cache.invalidate(tenant, name);
                None
            }
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %e, model = name, version = production.version, "cannot load the new production version");
                None
            }
        }
    }

    /// Deletes a model: its versions, its artifacts and its cache entries. Returns the
    /// deleted versions (empty: there was no such model).
    ///
    /// # Errors
    /// The metadata store failed (artifacts that cannot be removed are logged, not fatal).
    pub async fn delete(
        &self,
        tenant: &str,
        name: &str,
    ) -> Result<Vec<ModelVersion>, RegistryError> {
        let deleted = self.meta.delete_model(tenant, name).await?;
        self.meta.end_rollout(tenant, name).await?;
        self.meta.delete_schedule(tenant, name).await?;
        self.forget_rollout(tenant, name);
        self.cache.invalidate(tenant, name);
        self.drift.forget(tenant, name);
        if !deleted.is_empty() {
            self.announce(tenant, name).await;
        }
        for v in &deleted {
            if let Err(e) = self.artifacts.delete(&v.artifact_path).await {
                tracing::warn!(error = %e, path = v.artifact_path, "could not remove model artifact");
            }
            self.remove_quietly(&reference_path(&v.artifact_path)).await;
        }
        Ok(deleted)
    }
}

impl ModelChangeSink for ModelRegistry {
    fn changed(&self, tenant: &str, name: &str) {
        self.cache.invalidate(tenant, name);
        self.forget_rollout(tenant, name);
    }

    fn missed_changes(&self) {
        self.cache.clear();
        self.forget_rollouts();
    }
}

/// A model's production version, kept current by [`ModelRegistry::watch_production`].
#[derive(Debug)]
pub struct ProductionWatch {
    /// The loaded production version; changes when a new one is loaded.
    pub current: watch::Receiver<LoadedModel>,
    /// The task checking for new versions (ends at `stop`).
    pub task: JoinHandle<()>,
}
