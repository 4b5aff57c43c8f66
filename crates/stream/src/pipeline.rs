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
//! - **Back-pressure**: the channels hold `queue_batches` batches each; when the sink is
//!   slow the writer stops taking, the scorer blocks, the reader stops reading, and the
//!   broker holds the backlog. Memory is bounded by about `3 × queue_batches × batch_size`
//!   events (plus the warm-up window in online mode).
//! - **Shutdown** (SIGTERM): the reader stops reading, the batches already read are
//!   scored, written and committed, and the online model is checkpointed; if the sink
//!   does not come back within the drain timeout, the rest stays uncommitted and is
//!   re-delivered to the next consumer.
//!
//! Scoring runs on the scorer task inside `block_in_place` (a batch at a time: parse JSON,
//! extract features, score all rows with one call, serialize alerts); refits run on
//! blocking threads of their own.

use std::sync::Arc;
use std::time::{Duration, Instant};

use ndarray::ArrayView2;
use serde_json::{Map, Value};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::StreamError;
use crate::alert::{self, OutMessage, Verdict};
use crate::broker::{Committer, Position, Record, Sink, Source};
use crate::features::Features;
use crate::metrics::StreamMetrics;
use crate::model::{ActiveModel, ModelSlot, OnlineLearner};

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
            tokio::spawn(write_stage(
                out_rx,
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
                    let p = prepare(batch, &config, Some(active.model.n_features()));
                    score_and_render(p, &active, &config)
                });
                vec![p]
            }
            Scoring::Online(learner) => {
                let expected = learner.n_features();
                if learner.warming_up() {
                    let p = prepare(batch, &config, expected);
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
                            tokio::task::block_in_place(|| score_and_render(p, &active, &config))
                        })
                        .collect();
                    ready
                } else {
                    let Some(active) = learner.slot().load_full() else {
                        continue;
                    };
                    let (processed, rows, nf) = tokio::task::block_in_place(|| {
                        let p = prepare(batch, &config, expected);
                        let rows = p.rows.clone();
                        let nf = p.nf;
                        (score_and_render(p, &active, &config), rows, nf)
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

async fn write_stage(
    mut rx: mpsc::Receiver<Processed>,
    sink: Arc<dyn Sink>,
    dead_letters: Arc<dyn Sink>,
    committer: Arc<dyn Committer>,
    metrics: StreamMetrics,
    abort: CancellationToken,
) -> Result<Summary, StreamError> {
    let mut summary = Summary::default();
    while let Some(p) = rx.recv().await {
        if !retry("write alerts", &metrics, &abort, || sink.write(&p.alerts)).await
            || !retry("write dead letters", &metrics, &abort, || {
                dead_letters.write(&p.dead)
            })
            .await
            || !retry("commit", &metrics, &abort, || {
                committer.commit(&p.positions)
            })
            .await
        {
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
    /// Parsed, with its features at row `row` of `rows`.
    Event {
        event: Map<String, Value>,
        row: usize,
    },
    Dead(String),
}

/// A parsed batch: events, and the feature rows of those that can be scored.
struct Prepared {
    records: Vec<Record>,
    preps: Vec<Prep>,
    rows: Vec<f64>,
    nf: usize,
}

fn prepare(records: Vec<Record>, config: &PipelineConfig, expected: Option<usize>) -> Prepared {
    let mut preps = Vec::with_capacity(records.len());
    let mut rows = Vec::with_capacity(records.len() * expected.unwrap_or(8));
    let mut nf = expected;
    let mut n_rows = 0;
    let mut buf = Vec::new();
    for r in &records {
        let payload = match &r.payload {
            Ok(p) => p,
            Err(reason) => {
                preps.push(Prep::Dead(reason.clone()));
                continue;
            }
        };
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
        let width = *nf.get_or_insert(buf.len());
        if buf.len() != width {
            preps.push(Prep::Dead(format!(
                "the event has {} features; the model expects {width}",
                buf.len()
            )));
            continue;
        }
        rows.extend_from_slice(&buf);
        preps.push(Prep::Event { event, row: n_rows });
        n_rows += 1;
    }
    Prepared {
        records,
        preps,
        rows,
        nf: nf.unwrap_or(0),
    }
}

fn score_and_render(p: Prepared, active: &ActiveModel, config: &PipelineConfig) -> Processed {
    let n_rows = p.rows.len().checked_div(p.nf).unwrap_or(0);
    let scores: Result<Vec<f64>, String> = if n_rows == 0 {
        Ok(Vec::new())
    } else {
        ArrayView2::from_shape((n_rows, p.nf), &p.rows)
            .map_err(|e| e.to_string())
            .and_then(|x| active.model.score(x).map_err(|e| e.to_string()))
    };
    let now = Value::String(alert::now_rfc3339());
    let threshold = active.model.threshold();
    let algorithm = active.model.algorithm();
    let mut out = Processed {
        alerts: Vec::with_capacity(p.records.len()),
        dead: Vec::new(),
        positions: Vec::with_capacity(p.records.len()),
        received: Vec::with_capacity(p.records.len()),
        anomalies: 0,
    };
    let received_at = now.as_str().unwrap_or_default().to_string();
    for (record, prep) in p.records.into_iter().zip(p.preps) {
        let dead_reason = match (&prep, &scores) {
            (Prep::Dead(reason), _) => Some(reason.clone()),
            (Prep::Event { .. }, Err(e)) => Some(format!("cannot score: {e}")),
            _ => None,
        };
        if let Some(reason) = dead_reason {
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
        } else if let (Prep::Event { event, row }, Ok(scores)) = (&prep, &scores) {
            let score = scores[*row];
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
                let mut payload = Vec::with_capacity(256);
                alert::write_alert(event, &verdict, &now, &mut payload);
                out.alerts.push(OutMessage {
                    key: alert::event_key(event, record.key.as_deref()),
                    payload,
                });
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
            config: PipelineConfig {
                features: Features::AllNumeric,
                only_anomalies: false,
                batch_size: 4,
                queue_batches: 1,
                source_name: "test".into(),
                drain_timeout: Duration::from_secs(5),
            },
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
        let mut expected = Vec::new();
        for b in 0..3 {
            for i in 0..4 {
                let n = b * 4 + i;
                if n != 5 {
                    expected.push(format!("alert e{n}"));
                }
            }
            if b == 1 {
                expected.push("dead ".to_string());
            }
            for i in 0..4 {
                expected.push(format!("commit entry {}-0", b * 4 + i));
            }
        }
        assert_eq!(log, expected);
    }
}
