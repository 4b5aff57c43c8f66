//! # pynomaly-jobs: background work
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
//!   Models are registered and loaded through `pynomaly-models`' registry, which this
//!   crate builds on.
//! - [`SourceResolver`]: data-source URIs confined to the sources directory, or S3 objects.
//!
//! - [`attach_trace_context`]: a job carries its submitter's trace context, so one trace
//!   shows the job from the request to its result (see `trace_context`).
//!
//! Cancellation and shutdown are checked between chunks: a cancelled job ends `cancelled`;
//! a job interrupted by shutdown goes back to `queued` and runs again on the next start.

mod queue;
mod redis_queue;
mod runner;
mod schedule;
mod sources;
mod spec;
mod trace_context;

pub use queue::{ExecutionOutcome, InProcessQueue, JobQueue, QueueError};
pub use redis_queue::{ClaimedDelivery, Delivery, RedisQueue, RedisQueueConfig};
pub use runner::{BatchObserver, JobRunner, RunnerConfig, size_class};
pub use schedule::{RetrainSchedule, Scheduler, next_slot, parse_cron};
pub use sources::{OpenError, Source, SourceError, SourceResolver};
pub use spec::{BatchSpec, ExplainSpec, OutputFormat, Scoring, TrainSpec, ValidationSource};
pub use trace_context::{TRACE_CONTEXT_KEY, attach_trace_context};
