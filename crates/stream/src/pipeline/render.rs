//! A prepared batch scored with one call and rendered into alerts and dead letters, and
//! the batch's `stream.batch` and `score` spans.

use ndarray::ArrayView2;
use pynomaly_privacy::Privacy;
use serde_json::Value;

use super::PipelineConfig;
use super::prepare::{Prep, Prepared};
use super::write::Processed;
use crate::alert::{self, OutMessage, Verdict};
use crate::model::ActiveModel;

pub(super) fn score_and_render(
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
pub(super) fn batch_span(
    config: &PipelineConfig,
    active: &ActiveModel,
    events: usize,
) -> tracing::Span {
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
pub(super) fn score_and_render_at(
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
    // With --explain: every scored row's top features, and the features' names.
    let explained = match (config.explain, &scores) {
        (Some(k), Ok(_)) if n_rows > 0 => ArrayView2::from_shape((n_rows, p.nf), &p.rows)
            .ok()
            .and_then(|x| active.model.explain(x, k.clamp(1, p.nf)).ok()),
        _ => None,
    };
    let names = explained
        .as_ref()
        .map(|_| config.features.names(p.nf))
        .unwrap_or_default();
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
                        explanation: match (&prep, &explained) {
                            (Prep::Event { row, .. } | Prep::Echo { row, .. }, Some(e)) => {
                                Some(alert::Explanation {
                                    top: &e[*row],
                                    names: &names,
                                })
                            }
                            _ => None,
                        },
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
                            alert::write_alert(
                                privacy,
                                &config.fields,
                                event,
                                &verdict,
                                &now,
                                &mut payload,
                            );
                            Some(OutMessage {
                                key: alert::event_key(event, &config.fields, record.key.as_deref()),
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
