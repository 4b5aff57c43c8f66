//! The scorer task: batches parsed and scored in read order, with a registry model or an
//! online learner (its warm-up holds batches until the first model is fitted).

use std::time::Duration;

use tokio::sync::mpsc;

use super::prepare::{Parse, Prepared, prepare};
use super::render::score_and_render;
use super::write::Processed;
use super::{PipelineConfig, Scoring};
use crate::StreamError;
use crate::broker::Record;
use crate::metrics::StreamMetrics;

pub(super) async fn score_stage(
    mut scoring: Scoring,
    mut rx: mpsc::Receiver<Vec<Record>>,
    tx: mpsc::Sender<Processed>,
    config: PipelineConfig,
    metrics: StreamMetrics,
) -> Result<(), StreamError> {
    let mut held: Vec<Prepared> = Vec::new();
    let privacy = config.privacy.clone();
    let privacy = privacy.as_deref();
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
