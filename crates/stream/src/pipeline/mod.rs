//! The pipeline: read → score → write → commit, as three tasks joined by bounded channels.
//!
//! ```text
//! reader ──[batches, bounded]──▶ scorer ──[alerts, bounded]──▶ writer (sink, dead letters, commit)
//! ```
//!
//! - **Order**: each stage is one task handling batches first in, first out, so events
//!   keep their per-partition order from read to commit.
//! - **At least once**: a batch is committed only after all its alerts and dead letters
//!   are written; a failed write is retried (with back-off) and the batch is never
//!   committed without it. A crash re-delivers what was not committed.
//! - **Coalescing**: batches that wait for the writer while a write is in flight are
//!   written (and committed) together, up to `queue_batches × batch_size` events, so a
//!   slow acknowledgement costs one round trip for all of them, not one per batch.
//! - **Back-pressure**: the channels hold `queue_batches` batches each; when the sink is
//!   slow the writer stops taking, the scorer blocks, the reader stops reading, and the
//!   broker holds the backlog. Memory is bounded by about `4 × queue_batches × batch_size`
//!   events (the writer's coalesced batches among them; plus the warm-up window in online
//!   mode).
//! - **Shutdown** (SIGTERM): the reader stops reading, the batches already read are
//!   scored, written and committed, and the online model is checkpointed; if the sink
//!   does not come back within the drain timeout, the rest stays uncommitted and is
//!   re-delivered to the next consumer.
//!
//! - **Traces**: a `stream.batch` span per scored batch (a trace of its own), with a
//!   `score` child (parse, features, score, render) and a `write` child (sink, dead
//!   letters, commit; a write of coalesced batches is the first one's child and links the
//!   others). The batch span ends when its batch is committed. Made only when the
//!   process exports traces (`PipelineConfig::traces`, from `OTEL_EXPORTER_OTLP_ENDPOINT`).
//!
//! Scoring runs on the scorer task inside `block_in_place` (a batch at a time: parse JSON,
//! extract features, score all rows with one call, serialize alerts); refits run on
//! blocking threads of their own.
//!
//! Parsing takes the fast path of `scan.rs` where it applies (no `Value` tree, the
//! alert echoes the event's text), and the `Value` path for everything else: events that
//! need masking, arrays, malformed JSON, unreadable features. Both give the same features
//! and the same alert, but for the spelling of `original_data` (same JSON value).
//!
//! The stages, one module each: `read` (batches from the source), `prepare` (events parsed
//! into feature rows, by the fast path or the `Value` path), `score` (the scorer task: a
//! registry model, or online learning with its warm-up), `render` (a prepared batch scored
//! into alerts and dead letters, with its spans) and `write` (alerts and dead letters
//! written, coalesced, then committed, with retries).

mod prepare;
mod read;
mod render;
mod score;
#[cfg(test)]
mod tests;
mod write;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::StreamError;
use crate::alert::EventFields;
use crate::broker::{Committer, Record, Sink, Source};
use crate::features::Features;
use crate::metrics::StreamMetrics;
use crate::model::{ModelSlot, OnlineLearner};
use read::read_stage;
use score::score_stage;
use write::{Processed, write_stage};

/// How events become alerts.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    pub features: Features,
    /// The event fields that key an alert and give its timestamp (never features).
    pub fields: EventFields,
    /// Write alerts for anomalies only (dead letters are always written).
    pub only_anomalies: bool,
    /// Events read (and scored) at once.
    pub batch_size: usize,
    /// Batches each channel between stages holds.
    pub queue_batches: usize,
    /// The source as shown in dead letters (`redis://host:6379/sensor-data`).
    pub source_name: String,
    /// After shutdown, how long writing what was already read may take.
    pub drain_timeout: Duration,
    /// Make the per-batch spans (`stream.batch`, `score`, `write`): on when the process
    /// exports traces, off otherwise, when nothing would read them.
    pub traces: bool,
    /// Personal data in alerts' `original_data` is masked (or hashed) with these settings
    /// (the `stream` command's, from `PYNOMALY_PII_*`); `None`: echoed as it came.
    pub privacy: Option<Arc<pynomaly_privacy::Privacy>>,
    /// Each alert's top features in its `metadata.explanation`: this many (at most the
    /// number of features); `None`: no explanations.
    pub explain: Option<usize>,
}

/// The model side of the pipeline.
#[derive(Debug)]
pub enum Scoring {
    /// A registry model (kept current by [`RegistryModel`](crate::RegistryModel)).
    Registry(ModelSlot),
    /// Learned from the stream.
    Online(Box<OnlineLearner>),
}

/// What a finished run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    pub events: u64,
    pub alerts: u64,
    pub dead_letters: u64,
}

/// A source, a sink for alerts, a sink for dead letters and a model.
pub struct Pipeline {
    pub source: Box<dyn Source>,
    pub sink: Arc<dyn Sink>,
    pub dead_letters: Arc<dyn Sink>,
    pub scoring: Scoring,
    pub config: PipelineConfig,
    pub metrics: StreamMetrics,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("sink", &self.sink.describe())
            .field("dead_letters", &self.dead_letters.describe())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Pipeline {
    /// Runs until `shutdown`, then drains (see the module docs).
    ///
    /// # Errors
    /// The first model cannot be fitted (online mode), or a stage failed.
    pub async fn run(self, shutdown: CancellationToken) -> Result<Summary, StreamError> {
        let Self {
            source,
            sink,
            dead_letters,
            scoring,
            config,
            metrics,
        } = self;
        let committer: Arc<dyn Committer> = Arc::from(source.committer());
        let cap = config.queue_batches.max(1);
        let (read_tx, read_rx) = mpsc::channel::<Vec<Record>>(cap);
        let (out_tx, out_rx) = mpsc::channel::<Processed>(cap);
        // Cancelled `drain_timeout` after shutdown: the writer gives up retrying.
        let abort = CancellationToken::new();

        let reader = tokio::spawn(read_stage(
            source,
            read_tx,
            config.batch_size.max(1),
            metrics.clone(),
            shutdown.clone(),
        ));

        let scorer = {
            let metrics = metrics.clone();
            let config = config.clone();
            tokio::spawn(score_stage(scoring, read_rx, out_tx, config, metrics))
        };

        let writer = {
            let metrics = metrics.clone();
            let committer = Arc::clone(&committer);
            let abort = abort.clone();
            let coalesce = config.batch_size.max(1) * cap;
            tokio::spawn(write_stage(
                out_rx,
                coalesce,
                sink,
                dead_letters,
                committer,
                metrics,
                abort,
            ))
        };

        let lag = {
            let metrics = metrics.clone();
            let committer = Arc::clone(&committer);
            let stop = abort.clone();
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                loop {
                    if let Some(lag) = committer.lag().await {
                        metrics.lag.set(lag as i64);
                    }
                    tokio::select! {
                        () = tokio::time::sleep(Duration::from_secs(2)) => {}
                        () = stop.cancelled() => return,
                        () = shutdown.cancelled() => return,
                    }
                }
            })
        };

        let drain = {
            let shutdown = shutdown.clone();
            let abort = abort.clone();
            let timeout = config.drain_timeout;
            tokio::spawn(async move {
                shutdown.cancelled().await;
                tokio::time::sleep(timeout).await;
                abort.cancel();
            })
        };

        let _ = reader.await;
        let scored = scorer.await;
        let summary = writer.await;
        drain.abort();
        abort.cancel();
        let _ = lag.await;
        committer.close().await;
        scored??;
        summary?
    }
}
