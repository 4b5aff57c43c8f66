//! Whole pipelines over in-memory sources and sinks: order, at-least-once commits,
//! coalesced writes.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use async_trait::async_trait;
use detect_core::DetectorConfig;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use super::super::{Pipeline, PipelineConfig, Scoring, Summary};
use crate::StreamError;
use crate::alert::OutMessage;
use crate::broker::{Committer, Position, Record, Sink, Source};
use crate::features::Features;
use crate::metrics::StreamMetrics;
use crate::model::{ActiveModel, ModelSlot};

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
        fields: crate::alert::EventFields::default(),
        features: Features::AllNumeric,
        only_anomalies: false,
        batch_size: 4,
        queue_batches,
        source_name: "test".into(),
        drain_timeout: Duration::from_secs(5),
        traces: false,
        privacy: None,
        explain: None,
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
