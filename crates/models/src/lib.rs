//! # pynomaly-models: the model registry
//!
//! - [`ModelRegistry`]: trained models stored as artifacts, numbered as versions in the
//!   metadata store, and served from the in-memory [`ModelCache`] (one load per model
//!   however many requests ask at once). The API (inline training, predict), the job
//!   runner (training from a data source, batch scoring) and the stream (scoring events
//!   with a model's production version, [`ModelRegistry::watch_production`]) all go
//!   through it, so a model is written, numbered and cached one way.
//! - [`ModelEvents`]: registrations and deletions announced to the other instances over
//!   Redis pub/sub, so every instance serves the same versions.
//! - [`DriftMonitor`]: per model version, the training reference profile (stored beside
//!   the artifact) and the time windows of what predicts and batch jobs scored, for drift
//!   and data-quality reports.
//!
//! The registry knows the stores (`pynomaly-store`) and the detectors (`detect-core`),
//! and nothing of HTTP, the job queue or the stream: those sit above it.

mod cache;
mod drift;
mod model_events;
mod registry;

pub use cache::{LoadedModel, ModelCache};
pub use drift::{DriftConfig, DriftMonitor, ModelDrift, WindowView, reference_path, unix_now};
pub use model_events::{ModelChangeSink, ModelEvents, ModelEventsError};
pub use registry::{
    ActiveRollout, Breach, GateMetric, Guards, ModelRegistry, NewRollout, ProductionWatch,
    PromotePolicy, PromotionOutcome, Registration, RegistryError, Rollout, RolloutMode,
    RolloutPolicy, ValidationSet, Variant, matrix_sha256, previous_production,
};
