//! # pynomaly-jobs: background work and the model registry
//!
//! - [`JobQueue`]: the queue trait (submit, cancel, execute one job). [`InProcessQueue`] is
//!   the embedded implementation: a pool of worker tasks in the server process, with every
//!   job's state in the [`MetadataStore`](pynomaly_store::MetadataStore) so queued and
//!   running jobs resume after a restart. [`RedisQueue`] implements the same trait for
//!   several API instances and worker processes: state in the metadata store (Postgres),
//!   delivery through a Redis stream with leases, take-over, retries and cancellation.
//! - [`JobRunner`]: what a job does. Batch jobs stream each data source through the
//!   `data-source` chunked reader and score chunk by chunk (memory does not grow with the
//!   file), writing `row, prediction, score` per input row to the artifact store; training
//!   jobs fit a model on a data source and register it.
//! - [`ModelRegistry`] and [`ModelCache`]: models stored as artifacts, numbered in the
//!   metadata store, served from memory (one load per model however many requests ask at
//!   once). Shared by the API and the runner. [`ModelEvents`] announces registrations and
//!   deletions to the other instances (Redis pub/sub) so every instance serves the same.
//! - [`DriftMonitor`]: per model version, the training reference profile (stored beside the
//!   artifact) and the time windows of what predicts and batch jobs scored, for drift and
//!   data-quality reports.
//! - [`SourceResolver`]: data-source URIs confined to the sources directory, or S3 objects.
//!
//! - [`attach_trace_context`]: a job carries its submitter's trace context, so one trace
//!   shows the job from the request to its result (see `trace_context`).
//!
//! Cancellation and shutdown are checked between chunks: a cancelled job ends `cancelled`;
//! a job interrupted by shutdown goes back to `queued` and runs again on the next start.

mod cache;
mod drift;
mod model_events;
mod queue;
mod redis_queue;
mod registry;
mod runner;
mod sources;
mod spec;
mod trace_context;

pub use cache::{LoadedModel, ModelCache};
pub use drift::{DriftConfig, DriftMonitor, ModelDrift, WindowView, reference_path, unix_now};
pub use model_events::ModelEvents;
pub use queue::{ExecutionOutcome, InProcessQueue, JobQueue, QueueError};
pub use redis_queue::{ClaimedDelivery, Delivery, RedisQueue, RedisQueueConfig};
pub use registry::{ModelRegistry, Registration, RegistryError};
pub use runner::{BatchObserver, JobRunner, RunnerConfig, size_class};
pub use sources::{OpenError, Source, SourceError, SourceResolver};
pub use spec::{BatchSpec, OutputFormat, Scoring, TrainSpec};
pub use trace_context::{TRACE_CONTEXT_KEY, attach_trace_context};
