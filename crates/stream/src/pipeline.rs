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

use std::sync::Arc;
use std::time::{Duration, Instant};

use ndarray::ArrayView2;
use pynomaly_privacy::Privacy;
use serde_json::{Map, Value};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::StreamError;
use crate::alert::{self, OutMessage, Verdict};
use crate::broker::{Committer, Position, Record, Sink, Source};
use crate::features::{self, Features};
use crate::metrics::StreamMetrics;
use crate::model::{ActiveModel, ModelSlot, OnlineLearner};
use crate::scan::{EchoParts, Scanner};

/// How events become alerts.
#[derive(Debug, Clone)]
pub struct PipelineConfig {
    pub features: Features,
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

/// A scored batch, ready to write and commit.
struct Processed {
    alerts: Vec<OutMessage>,
    dead: Vec<OutMessage>,
    positions: Vec<Position>,
    received: Vec<Instant>,
    anomalies: u64,
    /// The `stream.batch` span of each batch in it ([`batch_span`]), in read order: they
    /// end when the batch is dropped, once written and committed.
    spans: Vec<tracing::Span>,
}

impl Processed {
    /// Appends the next batch (in read order): written and committed together.
    fn absorb(&mut self, next: Processed) {
        self.alerts.extend(next.alerts);
        self.dead.extend(next.dead);
        self.positions.extend(next.positions);
        self.received.extend(next.received);
        self.anomalies += next.anomalies;
        self.spans.extend(next.spans);
    }
}

impl Pipeline {
    /// Runs until `shutdown`, then drains (see the module docs).
    ///
    /// # Errors
    /// The first model cannot be fitted (online mode), or a stage failed.
    pub async fn run(self, shutdown: CancellationToken) -> Result<Summary, StreamError> {
        let Self {
            mut source,
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

        let reader = {
            let metrics = metrics.clone();
            let shutdown = shutdown.clone();
            let batch_size = config.batch_size.max(1);
            tokio::spawn(async move {
                let mut backoff = Duration::from_millis(100);
                loop {
                    let batch = tokio::select! {
                        b = source.next_batch(batch_size) => b,
                        () = shutdown.cancelled() => break,
                    };
                    match batch {
                        Ok(batch) => {
                            backoff = Duration::from_millis(100);
                            metrics.set_error(None);
                            if batch.is_empty() {
                                continue;
                            }
                            metrics.events_in.inc_by(batch.len() as u64);
                            if read_tx.send(batch).await.is_err() {
                                break;
                            }
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "cannot read from the source; retrying");
                            metrics.set_error(Some(format!("source: {e}")));
                            tokio::select! {
                                () = tokio::time::sleep(backoff) => {}
                                () = shutdown.cancelled() => break,
                            }
                            backoff = (backoff * 2).min(Duration::from_secs(5));
                        }
                    }
                }
            })
        };

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

async fn score_stage(
    mut scoring: Scoring,
    mut rx: mpsc::Receiver<Vec<Record>>,
    tx: mpsc::Sender<Processed>,
    config: PipelineConfig,
    metrics: StreamMetrics,
) -> Result<(), StreamError> {
    let mut held: Vec<Prepared> = Vec::new();
    let privacy = alert::installed_privacy();
    loop {
        // A refit that came due while another ran starts as soon as that one is done,
        // even when no more events arrive.
        let due = matches!(&scoring, Scoring::Online(l) if l.refit_due());
        let batch = tokio::select! {
            b = rx.recv() => match b {
                Some(b) => b,
                None => break,
            },
            () = tokio::time::sleep(Duration::from_millis(50)), if due => {
                if let Scoring::Online(learner) = &mut scoring {
                    learner.maybe_refit();
                }
                continue;
            }
        };
        let out = match &mut scoring {
            Scoring::Registry(slot) => {
                let Some(active) = slot.load_full() else {
                    continue;
                };
                let p = tokio::task::block_in_place(|| {
                    let p = prepare(
                        batch,
                        &config,
                        Some(active.model.n_features()),
                        privacy,
                        Parse::Fast,
                    );
                    score_and_render(p, &active, &config, privacy)
                });
                vec![p]
            }
            Scoring::Online(learner) => {
                let expected = learner.n_features();
                if learner.warming_up() {
                    let p = prepare(batch, &config, expected, privacy, Parse::Fast);
                    for row in p.rows.chunks_exact(p.nf.max(1)) {
                        learner.push(row);
                    }
                    held.push(p);
                    if !learner.warm_up_complete() {
                        continue;
                    }
                    tokio::task::block_in_place(|| learner.fit_first())?;
                    let Some(active) = learner.slot().load_full() else {
                        continue;
                    };
                    tracing::info!("warm-up complete: scoring with the first online model");
                    let ready: Vec<Processed> = held
                        .drain(..)
                        .map(|p| {
                            tokio::task::block_in_place(|| {
                                score_and_render(p, &active, &config, privacy)
                            })
                        })
                        .collect();
                    ready
                } else {
                    let Some(active) = learner.slot().load_full() else {
                        continue;
                    };
                    let (processed, rows, nf) = tokio::task::block_in_place(|| {
                        let p = prepare(batch, &config, expected, privacy, Parse::Fast);
                        let rows = p.rows.clone();
                        let nf = p.nf;
                        (score_and_render(p, &active, &config, privacy), rows, nf)
                    });
                    for row in rows.chunks_exact(nf.max(1)) {
                        learner.push(row);
                    }
                    learner.maybe_refit();
                    vec![processed]
                }
            }
        };
        for p in out {
            metrics.anomalies.inc_by(p.anomalies);
            if tx.send(p).await.is_err() {
                return Ok(());
            }
        }
    }
    if let Scoring::Online(learner) = &scoring {
        if !held.is_empty() {
            let n: usize = held.iter().map(|p| p.records.len()).sum();
            tracing::info!(
                events = n,
                "stopping during warm-up: held events stay unacknowledged and will be re-delivered"
            );
        }
        learner.checkpoint_now();
    }
    Ok(())
}

/// Writes and commits scored batches in order. Batches that queued up while the previous
/// write was waiting for its acknowledgements go out together, up to `coalesce` events:
/// one wait for the sink (Kafka: `linger.ms` plus the produce round trip) and one commit
/// for all of them, instead of one per batch. Small batches (a Kafka fetch's worth) would
/// otherwise cap the rate at one batch per acknowledgement round trip.
async fn write_stage(
    mut rx: mpsc::Receiver<Processed>,
    coalesce: usize,
    sink: Arc<dyn Sink>,
    dead_letters: Arc<dyn Sink>,
    committer: Arc<dyn Committer>,
    metrics: StreamMetrics,
    abort: CancellationToken,
) -> Result<Summary, StreamError> {
    let mut summary = Summary::default();
    while let Some(mut p) = rx.recv().await {
        while p.positions.len() < coalesce {
            match rx.try_recv() {
                Ok(next) => p.absorb(next),
                Err(_) => break,
            }
        }
        // A child of the first batch's span; the batches written with it are its links.
        // No batch spans (traces off): no write span either.
        let write = match p.spans.first() {
            None => tracing::Span::none(),
            Some(first) => tracing::info_span!(
                parent: first,
                "write",
                otel.name = "write",
                messaging.batch.message_count = p.alerts.len() as i64,
                stream.dead_letters = p.dead.len() as i64,
                stream.batches = p.spans.len() as i64,
                otel.status_code = tracing::field::Empty,
            ),
        };
        for other in p.spans.iter().skip(1) {
            write.follows_from(other);
        }
        let written = async {
            retry("write alerts", &metrics, &abort, || sink.write(&p.alerts)).await
                && retry("write dead letters", &metrics, &abort, || {
                    dead_letters.write(&p.dead)
                })
                .await
                && retry("commit", &metrics, &abort, || {
                    committer.commit(&p.positions)
                })
                .await
        }
        .instrument(write.clone())
        .await;
        if !written {
            write.record("otel.status_code", "ERROR");
            tracing::warn!(
                "drain timeout: leaving the remaining events unacknowledged for re-delivery"
            );
            break;
        }
        let done = Instant::now();
        for r in &p.received {
            metrics
                .latency
                .observe(done.duration_since(*r).as_secs_f64());
        }
        metrics.alerts_out.inc_by(p.alerts.len() as u64);
        metrics.dead_letters.inc_by(p.dead.len() as u64);
        summary.events += p.positions.len() as u64;
        summary.alerts += p.alerts.len() as u64;
        summary.dead_letters += p.dead.len() as u64;
    }
    Ok(summary)
}

/// Retries `op` with back-off until it succeeds (true) or `abort` (false).
async fn retry<F, Fut>(
    what: &str,
    metrics: &StreamMetrics,
    abort: &CancellationToken,
    mut op: F,
) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), StreamError>>,
{
    let mut backoff = Duration::from_millis(100);
    loop {
        match op().await {
            Ok(()) => return true,
            Err(e) => {
                tracing::warn!(error = %e, "cannot {what}; retrying");
                metrics.set_error(Some(format!("{what}: {e}")));
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = abort.cancelled() => return false,
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// One event after parsing.
enum Prep {
    /// Parsed into a `Value`, with its features at row `row` of `rows`.
    Event {
        event: Map<String, Value>,
        row: usize,
    },
    /// Scanned by the fast path: nothing to mask, its alert echoes its text.
    Echo {
        parts: EchoParts,
        row: usize,
    },
    Dead(String),
}

/// How [`prepare`] parses events: [`Parse::Value`] only in tests and benchmarks, which
/// compare the two.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Parse {
    /// The fast path where it applies, else the `Value` path.
    Fast,
    /// Always the `Value` path.
    #[cfg_attr(not(test), allow(dead_code))]
    Value,
}

/// A parsed batch: events, and the feature rows of those that can be scored.
struct Prepared {
    records: Vec<Record>,
    preps: Vec<Prep>,
    rows: Vec<f64>,
    nf: usize,
    /// The alert keys of echoed events ([`EchoParts::key`]).
    keys: String,
    /// The `timestamp` fields of echoed events as JSON ([`EchoParts::timestamp`]).
    stamps: Vec<u8>,
}

fn prepare(
    records: Vec<Record>,
    config: &PipelineConfig,
    expected: Option<usize>,
    privacy: Option<&Privacy>,
    parse: Parse,
) -> Prepared {
    let mut preps = Vec::with_capacity(records.len());
    let mut rows = Vec::with_capacity(records.len() * expected.unwrap_or(8));
    let mut nf = expected;
    let mut n_rows = 0;
    let mut buf = Vec::new();
    let mut scanner = Scanner::new(privacy);
    // The event's width against the model's (or the batch's first event's).
    let mut accept = |features: &[f64], rows: &mut Vec<f64>| -> Result<usize, String> {
        let width = *nf.get_or_insert(features.len());
        if features.len() != width {
            return Err(format!(
                "the event has {} features; the model expects {width}",
                features.len()
            ));
        }
        rows.extend_from_slice(features);
        n_rows += 1;
        Ok(n_rows - 1)
    };
    for r in &records {
        let payload = match &r.payload {
            Ok(p) => p,
            Err(reason) => {
                preps.push(Prep::Dead(reason.clone()));
                continue;
            }
        };
        if parse == Parse::Fast
            && let Some((event, parts)) = scanner.scan(payload)
            && features::extract_scanned(&config.features, &event, &mut buf)
        {
            preps.push(match accept(&buf, &mut rows) {
                Ok(row) => Prep::Echo { parts, row },
                Err(reason) => Prep::Dead(reason),
            });
            continue;
        }
        let event: Map<String, Value> = match serde_json::from_slice(payload) {
            Ok(e) => e,
            Err(e) => {
                preps.push(Prep::Dead(format!("not a JSON object: {e}")));
                continue;
            }
        };
        if let Err(e) = config.features.extract(&event, &mut buf) {
            preps.push(Prep::Dead(e.to_string()));
            continue;
        }
        preps.push(match accept(&buf, &mut rows) {
            Ok(row) => Prep::Event { event, row },
            Err(reason) => Prep::Dead(reason),
        });
    }
    let (keys, stamps) = scanner.into_text();
    Prepared {
        records,
        preps,
        rows,
        nf: nf.unwrap_or(0),
        keys,
        stamps,
    }
}

fn score_and_render(
    p: Prepared,
    active: &ActiveModel,
    config: &PipelineConfig,
    privacy: Option<&Privacy>,
) -> Processed {
    if !config.traces {
        return score_and_render_at(p, active, config, privacy, alert::now_rfc3339());
    }
    let batch = batch_span(config, active, p.records.len());
    let score = tracing::info_span!(
        parent: &batch,
        "score",
        otel.name = "score",
        ml.algorithm = active.model.algorithm(),
        ml.data_rows = p.records.len() as i64,
        ml.anomalies_detected = tracing::field::Empty,
    );
    let mut out =
        score.in_scope(|| score_and_render_at(p, active, config, privacy, alert::now_rfc3339()));
    let anomalies = i64::try_from(out.anomalies).unwrap_or(i64::MAX);
    score.record("ml.anomalies_detected", anomalies);
    batch.record("ml.anomalies_detected", anomalies);
    batch.record("stream.dead_letters", out.dead.len() as i64);
    out.spans.push(batch);
    out
}

/// The span of one batch, from its scoring to its alerts' write and commit (a trace per
/// batch: its `score` and `write` steps are children). With traces on (the standard
/// `OTEL_*` variables) the sampler decides which batches are kept; a batch, not an event,
/// is the unit, so tracing costs per batch of up to `--batch-size` events.
fn batch_span(config: &PipelineConfig, active: &ActiveModel, events: usize) -> tracing::Span {
    tracing::info_span!(
        "stream.batch",
        otel.name = "stream.batch",
        otel.kind = "consumer",
        messaging.source.name = config.source_name.as_str(),
        messaging.batch.message_count = events as i64,
        ml.algorithm = active.model.algorithm(),
        ml.model_version = active.version,
        ml.data_size = pynomaly_jobs::size_class(events),
        ml.anomalies_detected = tracing::field::Empty,
        stream.dead_letters = tracing::field::Empty,
    )
}

/// [`score_and_render`] with `now` (RFC 3339) as the time of the alerts and dead letters.
fn score_and_render_at(
    p: Prepared,
    active: &ActiveModel,
    config: &PipelineConfig,
    privacy: Option<&Privacy>,
    now: String,
) -> Processed {
    let n_rows = p.rows.len().checked_div(p.nf).unwrap_or(0);
    let scores: Result<Vec<f64>, String> = if n_rows == 0 {
        Ok(Vec::new())
    } else {
        ArrayView2::from_shape((n_rows, p.nf), &p.rows)
            .map_err(|e| e.to_string())
            .and_then(|x| active.model.score(x).map_err(|e| e.to_string()))
    };
    let now = Value::String(now);
    let now_json = serde_json::to_vec(&now).unwrap_or_default();
    let threshold = active.model.threshold();
    let algorithm = active.model.algorithm();
    let mut out = Processed {
        alerts: Vec::with_capacity(p.records.len()),
        dead: Vec::new(),
        positions: Vec::with_capacity(p.records.len()),
        received: Vec::with_capacity(p.records.len()),
        anomalies: 0,
        spans: Vec::new(),
    };
    let received_at = now.as_str().unwrap_or_default().to_string();
    for (record, prep) in p.records.into_iter().zip(p.preps) {
        let scored = match (&prep, &scores) {
            (Prep::Dead(reason), _) => Err(reason.clone()),
            (Prep::Event { .. } | Prep::Echo { .. }, Err(e)) => Err(format!("cannot score: {e}")),
            (Prep::Event { row, .. } | Prep::Echo { row, .. }, Ok(scores)) => Ok(scores[*row]),
        };
        match scored {
            Err(reason) => {
                let payload = record.payload.as_deref().unwrap_or_default();
                out.dead.push(OutMessage {
                    key: record.key.clone(),
                    payload: alert::dead_letter(
                        &reason,
                        &config.source_name,
                        &record.position.to_string(),
                        &received_at,
                        payload,
                    ),
                });
            }
            Ok(score) => {
                let is_anomaly = score > threshold;
                if is_anomaly {
                    out.anomalies += 1;
                }
                if is_anomaly || !config.only_anomalies {
                    let verdict = Verdict {
                        score,
                        threshold,
                        algorithm,
                        model_version: active.version,
                        processing_time_ms: record.received.elapsed().as_secs_f64() * 1e3,
                    };
                    let message = match &prep {
                        Prep::Echo { parts, .. } => {
                            let key = match &parts.key {
                                Some(r) => p.keys.get(r.clone()).map(str::to_string),
                                None => record.key.clone(),
                            };
                            let timestamp = parts
                                .timestamp
                                .as_ref()
                                .and_then(|r| p.stamps.get(r.clone()))
                                .unwrap_or(&now_json);
                            let payload = record.payload.as_deref().unwrap_or_default();
                            let text = payload.get(parts.text.clone()).unwrap_or_default();
                            // The alert's own fields take under 200 bytes: one allocation.
                            let mut payload =
                                Vec::with_capacity(text.len() + timestamp.len() + 200);
                            alert::write_alert_echo(text, timestamp, &verdict, &mut payload);
                            Some(OutMessage { key, payload })
                        }
                        Prep::Event { event, .. } => {
                            let mut payload = Vec::with_capacity(256);
                            alert::write_alert_with(privacy, event, &verdict, &now, &mut payload);
                            Some(OutMessage {
                                key: alert::event_key(event, record.key.as_deref()),
                                payload,
                            })
                        }
                        Prep::Dead(_) => None,
                    };
                    out.alerts.extend(message);
                }
            }
        }
        out.positions.push(record.position);
        out.received.push(record.received);
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use arc_swap::ArcSwapOption;
    use async_trait::async_trait;
    use detect_core::DetectorConfig;
    use serde_json::json;

    use super::*;
    use crate::broker::Committer;

    /// Batches handed out in order; then empty batches.
    struct ListSource {
        batches: VecDeque<Vec<Record>>,
        log: Arc<Mutex<Vec<String>>>,
    }

    struct ListCommitter {
        log: Arc<Mutex<Vec<String>>>,
    }

    /// Fails its first `fail` writes, then records every message.
    struct FlakySink {
        fail: AtomicUsize,
        log: Arc<Mutex<Vec<String>>>,
        name: &'static str,
    }

    #[async_trait]
    impl Source for ListSource {
        async fn next_batch(&mut self, _max: usize) -> Result<Vec<Record>, StreamError> {
            match self.batches.pop_front() {
                Some(b) => Ok(b),
                None => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    Ok(Vec::new())
                }
            }
        }

        fn committer(&self) -> Box<dyn Committer> {
            Box::new(ListCommitter {
                log: Arc::clone(&self.log),
            })
        }
    }

    #[async_trait]
    impl Committer for ListCommitter {
        async fn commit(&self, positions: &[Position]) -> Result<(), StreamError> {
            let mut log = self.log.lock().unwrap();
            for p in positions {
                log.push(format!("commit {p}"));
            }
            Ok(())
        }

        async fn lag(&self) -> Option<u64> {
            None
        }
    }

    #[async_trait]
    impl Sink for FlakySink {
        async fn write(&self, messages: &[OutMessage]) -> Result<(), StreamError> {
            if messages.is_empty() {
                return Ok(());
            }
            if self
                .fail
                .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                .is_ok()
            {
                return Err(StreamError::RedisPool("broker down".into()));
            }
            let mut log = self.log.lock().unwrap();
            for m in messages {
                log.push(format!(
                    "{} {}",
                    self.name,
                    m.key.clone().unwrap_or_default()
                ));
            }
            Ok(())
        }

        fn describe(&self) -> String {
            self.name.into()
        }
    }

    fn record(i: usize, payload: &str) -> Record {
        Record {
            key: None,
            payload: Ok(payload.as_bytes().to_vec()),
            position: Position::Redis(format!("{i}-0")),
            received: Instant::now(),
        }
    }

    /// An isolation forest over `nf` features (`trees` trees, fitted on `rows` rows).
    fn forest(nf: usize, rows: usize, trees: usize) -> ActiveModel {
        let config = DetectorConfig::from_json(
            "isolation_forest",
            json!({"random_state": 0, "n_estimators": trees})
                .as_object()
                .unwrap(),
            &json!("auto"),
        )
        .unwrap();
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let x = ndarray::Array2::from_shape_fn((rows, nf), |_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64
        });
        ActiveModel {
            model: Arc::new(detect_core::fit(&config, x.view()).unwrap().model),
            version: 4,
        }
    }

    fn keyed(i: usize, payload: &[u8]) -> Record {
        Record {
            key: Some(format!("message-{i}")),
            payload: Ok(payload.to_vec()),
            position: Position::Redis(format!("{i}-0")),
            received: Instant::now(),
        }
    }

    fn config_with(features: Features) -> PipelineConfig {
        PipelineConfig {
            features,
            only_anomalies: false,
            batch_size: 100,
            queue_batches: 1,
            source_name: "redis://test/events".into(),
            drain_timeout: Duration::from_secs(1),
            traces: false,
        }
    }

    fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
        haystack.windows(needle.len()).position(|w| w == needle)
    }

    /// The alert without its processing time (the last field: the rest is the number and
    /// `}}`), checked to be there.
    fn without_time(alert: &[u8]) -> &[u8] {
        let at = find(alert, br#","processing_time_ms":"#).expect("processing_time_ms");
        assert!(alert.ends_with(b"}}"), "{}", String::from_utf8_lossy(alert));
        &alert[..at]
    }

    /// `fast` is `value` but for the processing time and, when the fast path echoed the
    /// event, `original_data` spelled as the message was instead of as serde_json writes
    /// the parsed event: byte for byte, and the same JSON value.
    fn assert_same_alert(fast: &[u8], value: &[u8], message: &[u8], echoed: bool) {
        let (f, v) = (without_time(fast), without_time(value));
        let expected = if echoed {
            let parsed: Map<String, Value> = serde_json::from_slice(message).unwrap();
            let mut canonical = br#""original_data":"#.to_vec();
            canonical.extend(serde_json::to_vec(&parsed).unwrap());
            canonical.extend(br#","is_anomaly":"#);
            let at = find(v, &canonical).expect("the Value path's original_data");
            let mut expected = v[..at].to_vec();
            expected.extend(br#""original_data":"#);
            expected.extend(message.trim_ascii());
            expected.extend(br#","is_anomaly":"#);
            expected.extend(&v[at + canonical.len()..]);
            expected
        } else {
            v.to_vec()
        };
        assert_eq!(
            String::from_utf8_lossy(f),
            String::from_utf8_lossy(&expected),
            "message {}",
            String::from_utf8_lossy(message)
        );
        let parse = |a: &[u8]| {
            let mut a: Value = serde_json::from_slice(a).unwrap();
            let t = a["metadata"]
                .as_object_mut()
                .unwrap()
                .remove("processing_time_ms");
            assert!(t.is_some_and(|t| t.is_f64()));
            a
        };
        assert_eq!(parse(fast), parse(value));
    }

    const NOW: &str = "2026-11-27T01:02:03.456Z";

    fn dead_letter_fields(letter: &[u8]) -> Value {
        serde_json::from_slice(letter).unwrap()
    }

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum Route {
        /// Scanned, the alert echoes the text.
        Fast,
        /// The `Value` path, with an alert.
        Value,
        /// A dead letter (by the `Value` path).
        Dead,
    }

    /// Runs `message` through both parse modes and checks they agree (features, alert or
    /// dead letter) and that the fast mode took `route`; returns the features and the
    /// fast mode's alert or dead letter.
    fn check(
        features: &Features,
        privacy: Option<&Privacy>,
        message: &[u8],
        route: Route,
    ) -> (Vec<f64>, Option<OutMessage>) {
        let config = config_with(features.clone());
        let records = vec![keyed(0, message)];
        let fast = prepare(records.clone(), &config, None, privacy, Parse::Fast);
        let value = prepare(records, &config, None, privacy, Parse::Value);
        let shown = String::from_utf8_lossy(message).into_owned();
        assert_eq!(fast.rows, value.rows, "{shown}");
        assert_eq!(fast.nf, value.nf, "{shown}");
        let taken = match &fast.preps[0] {
            Prep::Echo { .. } => Route::Fast,
            Prep::Event { .. } => Route::Value,
            Prep::Dead(_) => Route::Dead,
        };
        assert_eq!(taken, route, "{shown}");
        assert!(matches!(
            (&fast.preps[0], &value.preps[0]),
            (Prep::Echo { .. } | Prep::Event { .. }, Prep::Event { .. })
                | (Prep::Dead(_), Prep::Dead(_))
        ));
        if let (Prep::Dead(a), Prep::Dead(b)) = (&fast.preps[0], &value.preps[0]) {
            assert_eq!(a, b, "{shown}");
        }
        let rows = fast.rows.clone();
        let model = forest(fast.nf.max(1), 40, 5);
        let f = score_and_render_at(fast, &model, &config, privacy, NOW.into());
        let v = score_and_render_at(value, &model, &config, privacy, NOW.into());
        assert_eq!(f.anomalies, v.anomalies);
        assert_eq!(f.positions, v.positions);
        assert_eq!(f.alerts.len(), v.alerts.len());
        assert_eq!(f.dead.len(), v.dead.len());
        for (a, b) in f.alerts.iter().zip(&v.alerts) {
            assert_eq!(a.key, b.key, "{shown}");
            assert_same_alert(&a.payload, &b.payload, message, route == Route::Fast);
        }
        assert_eq!(f.dead, v.dead, "{shown}");
        (rows, f.alerts.into_iter().chain(f.dead).next())
    }

    const BENCH_EVENT: &str = r#"{"id":"ev-7","timestamp":"2026-11-26T12:00:00Z","sensor":{"f0":0.1234,"f1":0.5,"f2":0.25,"f3":8.75,"f4":0.0001},"f5":0.6,"f6":0.7,"f7":0.8,"f8":0.9,"f9":1.0,"site":"plant-3"}"#;

    #[test]
    fn the_fast_path_gives_the_value_paths_features_and_alerts() {
        use Route::{Dead, Fast, Value};
        let all = Features::AllNumeric;
        let cases: &[(&[u8], Route, &[f64])] = &[
            // Nested objects, keys in the producer's order: sorted features, echoed text.
            (
                BENCH_EVENT.as_bytes(),
                Fast,
                // f5..f9, then sensor.f0..f4: keys sorted ("f5" < "sensor").
                &[0.6, 0.7, 0.8, 0.9, 1.0, 0.1234, 0.5, 0.25, 8.75, 0.0001],
            ),
            (
                br#"{"b":1,"a":2,"c":{"y":3,"x":4,"z":{}}}"#,
                Fast,
                &[2.0, 1.0, 4.0, 3.0],
            ),
            // Already as serde_json writes it: the alerts are equal byte for byte.
            (
                br#"{"a":1,"b":{"c":2.5},"id":"x","timestamp":"t"}"#,
                Fast,
                &[1.0, 2.5],
            ),
            // Integers, floats, exponents, beyond u64, negative zero.
            (
                br#"{"i":-12,"u":18446744073709551615,"f":1.5e3,"g":-0.0,"h":1E-7,"big":123456789012345678901234567890,"z":0,"w":-9223372036854775808}"#,
                Fast,
                &[
                    1.2345678901234568e29,
                    1.5e3,
                    -0.0,
                    1e-7,
                    -12.0,
                    18446744073709551615.0,
                    -9223372036854775808.0,
                    0.0,
                ],
            ),
            // Escapes in strings and keys, unicode keys and values.
            (
                br#"{"id":"a\"b\u00e9\n","note":"tab\t\u2028 \ud83d\ude00","k\u0065y":1,"key2":2}"#,
                Fast,
                &[1.0, 2.0],
            ),
            (
                "{\"名前\":\"値\",\"v\":1,\"ünï\":{\"x\":2},\"é\":3}".as_bytes(),
                Fast,
                &[1.0, 3.0, 2.0],
            ),
            // Whitespace inside is echoed, around it trimmed.
            (b" {\"a\" : 1 ,\n \"b\":{ \"c\" : 2 } }\r\n", Fast, &[1.0, 2.0]),
            // Ids: numbers as text, other types give the message key; timestamps copied.
            (br#"{"id":42,"v":1}"#, Fast, &[42.0, 1.0]),
            (
                br#"{"id":4.50,"v":1,"timestamp":17326e5}"#,
                Fast,
                &[4.5, 1732600000.0, 1.0],
            ),
            (br#"{"id":true,"v":1,"timestamp":null}"#, Fast, &[1.0]),
            (
                br#"{"id":{"n":1},"v":2,"timestamp":false}"#,
                Fast,
                &[1.0, 2.0],
            ),
            (br#"{"m":{"timestamp":"x","id":"y"},"v":1}"#, Fast, &[1.0]),
            // The Value path: arrays, a key twice, an object as timestamp.
            (br#"{"a":1,"tags":[1,2,{"b":3}]}"#, Value, &[1.0]),
            (br#"{"a":1,"a":2,"b":3}"#, Value, &[2.0, 3.0]),
            (br#"{"a":1,"m":{"x":1,"x":5}}"#, Value, &[1.0, 5.0]),
            (br#"{"timestamp":{"s":1},"v":1}"#, Value, &[1.0, 1.0]),
            // Dead letters, with the Value path's reason.
            (br#"{"a":1,"#, Dead, &[]),
            (b"not json", Dead, &[]),
            (b"[1,2]", Dead, &[]),
            (b"null", Dead, &[]),
            (b"{}", Dead, &[]),
            (br#"{"a":"x","b":{"c":true}}"#, Dead, &[]),
            (br#"{"a":1} x"#, Dead, &[]),
            (b"{\"a\":1,\"s\":\"\xff\"}", Dead, &[]),
            (br#"{"a":1,"s":"\ud800"}"#, Dead, &[]),
            (br#"{"a":1e400}"#, Dead, &[]),
        ];
        for &(message, route, features) in cases {
            let (rows, _) = check(&all, None, message, route);
            assert_eq!(rows, features, "{}", String::from_utf8_lossy(message));
        }
        // Nested deeper than serde_json's recursion limit: the same dead letter.
        let nested = |depth: usize| format!("{}1{}", r#"{"a":"#.repeat(depth), "}".repeat(depth));
        check(&all, None, nested(200).as_bytes(), Dead);
        check(&all, None, nested(100).as_bytes(), Fast);

        // The alert key and timestamp an echoed alert carries.
        let (_, alert) = check(&all, None, br#"{"id":"e\u0031","v":1,"timestamp":3}"#, Fast);
        let alert = alert.unwrap();
        assert_eq!(alert.key.as_deref(), Some("e1"));
        assert!(
            alert
                .payload
                .starts_with(br#"{"timestamp":3,"original_data":{"id":"e\u0031","#)
        );
        let (_, alert) = check(&all, None, br#"{"v":1}"#, Fast);
        assert_eq!(alert.unwrap().key.as_deref(), Some("message-0"));
    }

    #[test]
    fn the_fast_path_follows_explicit_feature_paths_and_leaves_their_errors_to_the_value_path() {
        use Route::{Dead, Fast};
        let paths = Features::parse_paths("v,m.x,m.deep.y").unwrap();
        let cases: &[(&[u8], Route, &[f64])] = &[
            (
                br#"{"m":{"deep":{"y":3},"x":2,"z":9},"v":1,"w":7}"#,
                Fast,
                &[1.0, 2.0, 3.0],
            ),
            (
                br#"{"v":1.5e1,"m":{"x":-2,"deep":{"y":0}}}"#,
                Fast,
                &[15.0, -2.0, 0.0],
            ),
            // Missing, not a number, not an object: dead letters naming the field.
            (br#"{"v":1}"#, Dead, &[]),
            (br#"{"v":1,"m":{"x":"2","deep":{"y":3}}}"#, Dead, &[]),
            (br#"{"v":1,"m":5}"#, Dead, &[]),
            (br#"{"v":1,"m":{"x":2,"deep":null}}"#, Dead, &[]),
            (br#"{"v":{"a":1},"m":{"x":2,"deep":{"y":3}}}"#, Dead, &[]),
        ];
        for &(message, route, features) in cases {
            let (rows, out) = check(&paths, None, message, route);
            assert_eq!(rows, features, "{}", String::from_utf8_lossy(message));
            if route == Dead {
                let letter = dead_letter_fields(&out.unwrap().payload);
                assert!(
                    letter["reason"].as_str().unwrap().starts_with("feature "),
                    "{letter}"
                );
            }
        }
    }

    #[test]
    fn events_that_need_masking_take_the_value_path_and_are_masked() {
        use Route::{Fast, Value};
        let privacy = Privacy::new(
            &pynomaly_privacy::PrivacyConfig {
                fields: vec!["Owner".into()],
                ..Default::default()
            },
            [3; 32],
        )
        .with_generalization(true);
        let all = Features::AllNumeric;
        let cases: &[(&[u8], Route, Option<&str>)] = &[
            (br#"{"owner":"Jane Roe","v":1}"#, Value, Some("Jane Roe")),
            (
                br#"{"v":1,"meta":{"OWNER":"Jane Roe"}}"#,
                Value,
                Some("Jane Roe"),
            ),
            (
                br#"{"v":1,"note":"mail jane@example.com"}"#,
                Value,
                Some("jane@example.com"),
            ),
            (
                br#"{"v":1,"m":{"tel":"(555) 123-4567"}}"#,
                Value,
                Some("123-4567"),
            ),
            (br#"{"v":1,"ssn":"123-45-6789"}"#, Value, Some("123-45-6789")),
            (
                br#"{"v":1,"card":4111111111111111}"#,
                Value,
                Some("4111111111111111"),
            ),
            (br#"{"v":1,"age":41}"#, Value, Some("41")),
            (br#"{"v":1,"m":{"zip_code":"94107"}}"#, Value, Some("94107")),
            // A masked field's key with nothing in it: the Value path decides (no change).
            (br#"{"v":1,"owner":null}"#, Value, None),
            // Nothing to mask: numbers too short or not Luhn-valid, ISO timestamps.
            (
                br#"{"v":1,"n":4111111111111112,"short":411111111111,"at":"2026-11-26T12:00:00Z","id":"ev-123456"}"#,
                Fast,
                None,
            ),
            (BENCH_EVENT.as_bytes(), Fast, None),
        ];
        for &(message, route, secret) in cases {
            let (_, alert) = check(&all, Some(&privacy), message, route);
            let text = String::from_utf8(alert.unwrap().payload).unwrap();
            if let Some(secret) = secret {
                // original_data alone: the rest (processing_time_ms) may hold any digits.
                let alert: serde_json::Value = serde_json::from_str(&text).unwrap();
                let original = alert["original_data"].to_string();
                assert!(!original.contains(secret), "{secret} echoed in {text}");
            }
        }
        // The same events without masking installed take the fast path.
        check(&all, None, br#"{"owner":"Jane Roe","v":1}"#, Fast);
        check(&all, None, br#"{"v":1,"card":4111111111111111}"#, Fast);
    }

    #[test]
    fn a_batch_mixing_both_paths_keeps_order_widths_and_dead_letters() {
        let config = config_with(Features::AllNumeric);
        let messages: [&[u8]; 6] = [
            br#"{"id":"a","x":1,"y":{"z":2}}"#,
            br#"{"id":"b","x":1,"tags":[1],"y":{"z":2}}"#,
            br#"{"id":"c","x":1}"#,
            b"{oops",
            br#"{"id":"e","y":{"z":0.5},"x":100.0}"#,
            br#"{"id":"f","x":1,"x":3,"y":{"z":2}}"#,
        ];
        let records: Vec<Record> = messages
            .iter()
            .enumerate()
            .map(|(i, m)| keyed(i, m))
            .collect();
        let model = forest(2, 60, 10);
        let run = |parse| {
            let p = prepare(records.clone(), &config, Some(2), None, parse);
            score_and_render_at(p, &model, &config, None, NOW.into())
        };
        let (f, v) = (run(Parse::Fast), run(Parse::Value));
        let keys = |p: &Processed| {
            p.alerts
                .iter()
                .map(|a| a.key.clone().unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(keys(&f), ["a", "b", "e", "f"]);
        assert_eq!(keys(&f), keys(&v));
        for (i, (a, b)) in f.alerts.iter().zip(&v.alerts).enumerate() {
            let message = messages[[0, 1, 4, 5][i]];
            assert_same_alert(&a.payload, &b.payload, message, i == 0 || i == 2);
        }
        assert_eq!(f.dead, v.dead);
        let reasons = |p: &Processed| {
            p.dead
                .iter()
                .map(|d| dead_letter_fields(&d.payload))
                .collect::<Vec<_>>()
        };
        assert_eq!(f.dead.len(), 2);
        assert_eq!(
            reasons(&f)[0]["reason"],
            "the event has 1 features; the model expects 2"
        );
        assert_eq!(f.positions, v.positions);
        assert_eq!(f.anomalies, v.anomalies);
    }

    /// CPU time of this thread (Linux), else wall time.
    fn thread_time() -> Duration {
        static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
        std::fs::read_to_string("/proc/thread-self/schedstat")
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse().ok())
            .map_or_else(
                || START.get_or_init(Instant::now).elapsed(),
                Duration::from_nanos,
            )
    }

    /// `cargo test --release -p pynomaly-stream --lib hot_path -- --ignored --nocapture`:
    /// CPU per event of prepare + score + render on the stream benchmark's events (10
    /// features, 5 nested; a 100-tree isolation forest; batches of 2000), the `Value` path
    /// against the fast path, in alternating rounds.
    #[test]
    #[ignore = "a benchmark: run it in release with --nocapture"]
    fn hot_path() {
        let config = config_with(Features::AllNumeric);
        let model = forest(10, 2000, 100);
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let batch: Vec<Record> = (0..2000)
            .map(|i| {
                let mut f = [0.0f64; 10];
                for x in &mut f {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    *x = (state >> 11) as f64 / (1u64 << 53) as f64;
                }
                let event = format!(
                    r#"{{"id":"ev-{i}","timestamp":"2026-11-26T12:00:00Z","sensor":{{"f0":{:.4},"f1":{:.4},"f2":{:.4},"f3":{:.4},"f4":{:.4}}},"f5":{:.4},"f6":{:.4},"f7":{:.4},"f8":{:.4},"f9":{:.4},"site":"plant-3"}}"#,
                    f[0], f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8], f[9]
                );
                keyed(i, event.as_bytes())
            })
            .collect();
        // Masking installed as the stream command installs it (no fields configured).
        let privacy = Privacy::new(&pynomaly_privacy::PrivacyConfig::default(), [1; 32]);
        let rounds = 15;
        let mut prep = [Duration::ZERO; 2];
        let mut total = [Duration::ZERO; 2];
        for round in 0..rounds * 2 {
            let i = round % 2;
            let parse = [Parse::Value, Parse::Fast][i];
            let records = batch.clone();
            let t0 = thread_time();
            let p = prepare(records, &config, Some(10), Some(&privacy), parse);
            let t1 = thread_time();
            let out = score_and_render(p, &model, &config, Some(&privacy));
            let t2 = thread_time();
            assert_eq!(out.alerts.len(), batch.len());
            std::hint::black_box(out);
            // The first round of each warms up.
            if round >= 2 {
                prep[i] += t1 - t0;
                total[i] += t2 - t0;
            }
        }
        let per_event = |d: Duration| d.as_nanos() as f64 / ((rounds - 1) * batch.len()) as f64;
        for (i, name) in ["Value path", "fast path"].iter().enumerate() {
            println!(
                "hot_path {name:>10}: {:6.0} ns CPU per event (prepare {:5.0}, score + render {:5.0})",
                per_event(total[i]),
                per_event(prep[i]),
                per_event(total[i] - prep[i]),
            );
        }
        println!(
            "hot_path speed-up: {:.2}x",
            per_event(total[0]) / per_event(total[1])
        );
    }

    fn model() -> ModelSlot {
        let config = DetectorConfig::from_json(
            "isolation_forest",
            json!({"random_state": 1, "n_estimators": 10})
                .as_object()
                .unwrap(),
            &json!("auto"),
        )
        .unwrap();
        let x = ndarray::Array2::from_shape_fn((50, 2), |(i, j)| (i * (j + 1)) as f64 % 7.0);
        let fitted = detect_core::fit(&config, x.view()).unwrap().model;
        Arc::new(ArcSwapOption::from_pointee(ActiveModel {
            model: Arc::new(fitted),
            version: 4,
        }))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn batches_are_committed_in_order_only_after_their_alerts_and_dead_letters_are_written() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut batches = VecDeque::new();
        for b in 0..3 {
            batches.push_back(
                (0..4)
                    .map(|i| {
                        let n = b * 4 + i;
                        if n == 5 {
                            record(n, "not json")
                        } else {
                            record(n, &format!(r#"{{"id":"e{n}","a":{n},"b":{{"c":1}}}}"#))
                        }
                    })
                    .collect(),
            );
        }
        let pipeline = Pipeline {
            source: Box::new(ListSource {
                batches,
                log: Arc::clone(&log),
            }),
            sink: Arc::new(FlakySink {
                fail: AtomicUsize::new(2),
                log: Arc::clone(&log),
                name: "alert",
            }),
            dead_letters: Arc::new(FlakySink {
                fail: AtomicUsize::new(1),
                log: Arc::clone(&log),
                name: "dead",
            }),
            scoring: Scoring::Registry(model()),
            config: batches_of_four(1),
            metrics: StreamMetrics::new(),
        };
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        let watched = Arc::clone(&log);
        tokio::spawn(async move {
            while watched
                .lock()
                .unwrap()
                .iter()
                .filter(|l| l.starts_with("commit"))
                .count()
                < 12
            {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            stop.cancel();
        });
        let summary = pipeline.run(shutdown).await.unwrap();
        assert_eq!(
            summary,
            Summary {
                events: 12,
                alerts: 11,
                dead_letters: 1
            }
        );
        let log = log.lock().unwrap().clone();
        // Batches that queued behind the failing writes may be written together, so the
        // log is checked for what must hold whatever was coalesced: alerts and commits in
        // read order, each once, and every event's alert (or dead letter) before its commit.
        let at = |line: &str| {
            let found: Vec<usize> = (0..log.len()).filter(|&i| log[i] == line).collect();
            assert_eq!(found.len(), 1, "{line:?} once in {log:?}");
            found[0]
        };
        let mut last_alert = None;
        let mut last_commit = None;
        for n in 0..12 {
            let commit = at(&format!("commit entry {n}-0"));
            let written = if n == 5 {
                at("dead ")
            } else {
                let a = at(&format!("alert e{n}"));
                assert!(last_alert < Some(a), "alerts out of order: {log:?}");
                last_alert = Some(a);
                a
            };
            assert!(
                written < commit,
                "event {n} committed before written: {log:?}"
            );
            assert!(last_commit < Some(commit), "commits out of order: {log:?}");
            last_commit = Some(commit);
        }
        assert_eq!(log.len(), 11 + 1 + 12, "{log:?}");
    }

    /// Batches of 4 events, `queue_batches` of them between stages.
    fn batches_of_four(queue_batches: usize) -> PipelineConfig {
        PipelineConfig {
            features: Features::AllNumeric,
            only_anomalies: false,
            batch_size: 4,
            queue_batches,
            source_name: "test".into(),
            drain_timeout: Duration::from_secs(5),
            traces: false,
        }
    }

    /// Records the size of every write; the first one takes a while.
    struct SlowFirstSink {
        writes: Arc<Mutex<Vec<usize>>>,
    }

    #[async_trait]
    impl Sink for SlowFirstSink {
        async fn write(&self, messages: &[OutMessage]) -> Result<(), StreamError> {
            let first = {
                let mut w = self.writes.lock().unwrap();
                w.push(messages.len());
                w.len() == 1
            };
            if first {
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
            Ok(())
        }

        fn describe(&self) -> String {
            "slow".into()
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn batches_queued_behind_a_slow_write_go_out_in_one_write_with_commits_in_order() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let batches: VecDeque<Vec<Record>> = (0..5)
            .map(|b| {
                (0..4)
                    .map(|i| {
                        let n = b * 4 + i;
                        record(n, &format!(r#"{{"id":"e{n}","a":{n},"b":{{"c":1}}}}"#))
                    })
                    .collect()
            })
            .collect();
        let writes = Arc::new(Mutex::new(Vec::new()));
        let pipeline = Pipeline {
            source: Box::new(ListSource {
                batches,
                log: Arc::clone(&log),
            }),
            sink: Arc::new(SlowFirstSink {
                writes: Arc::clone(&writes),
            }),
            dead_letters: Arc::new(SlowFirstSink {
                writes: Arc::new(Mutex::new(Vec::new())),
            }),
            scoring: Scoring::Registry(model()),
            config: batches_of_four(4),
            metrics: StreamMetrics::new(),
        };
        let shutdown = CancellationToken::new();
        let stop = shutdown.clone();
        let watched = Arc::clone(&log);
        tokio::spawn(async move {
            while watched.lock().unwrap().len() < 20 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            stop.cancel();
        });
        let summary = pipeline.run(shutdown).await.unwrap();
        assert_eq!(summary.events, 20);
        let writes = writes.lock().unwrap().clone();
        // Whatever the first write took, everything read meanwhile (at most 16 events, the
        // coalescing limit of 4 batches of 4) waited for it and went out in one write.
        assert_eq!(writes.iter().sum::<usize>(), 20, "{writes:?}");
        assert!(
            writes.len() <= 2,
            "five batches in {} writes: {writes:?}",
            writes.len()
        );
        let commits: Vec<String> = log.lock().unwrap().clone();
        let expected: Vec<String> = (0..20).map(|n| format!("commit entry {n}-0")).collect();
        assert_eq!(commits, expected);
    }
}
