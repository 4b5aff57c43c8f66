//! Scheduled retraining: a model's training job submitted at each slot of a cron
//! expression (5 fields, UTC), once per slot across every instance.
//!
//! Each instance runs a [`Scheduler`] over the metadata store. For a schedule whose next
//! slot has come, it submits the training job with the idempotency key
//! `schedule:<model>:<slot>` (so instances racing on one slot make one job), then moves the
//! schedule's next slot on with a compare-and-set. Slots missed while nothing ran (the
//! service was down) are not made up one by one: the most recent due slot runs once, and
//! the next slot is the first one after now.

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use croner::Cron;
use pynomaly_store::{DynMetadataStore, JobKind, ModelSchedule, NewJob};
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::{JobQueue, QueueError, TrainSpec};

/// A schedule as stored: the cron expression and the job each slot submits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetrainSchedule {
    pub cron: String,
    pub spec: TrainSpec,
    pub created_by: String,
}

/// Parses a 5-field cron expression (minute hour day-of-month month day-of-week, UTC;
/// names, ranges, steps, lists, `@daily`-style aliases).
///
/// # Errors
/// What is wrong with it, in croner's words.
pub fn parse_cron(expression: &str) -> Result<Cron, String> {
    if expression.split_whitespace().count() > 5 {
        return Err("use 5 fields (minute hour day month weekday), without seconds".into());
    }
    Cron::from_str(expression).map_err(|e| e.to_string())
}

/// The first slot of `cron` after `after`.
pub fn next_slot(cron: &Cron, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    cron.find_next_occurrence(&after, false).ok()
}

/// Submits the jobs of the schedules whose slot has come (see the module docs).
#[derive(derive_more::Debug)]
pub struct Scheduler {
    #[debug(skip)]
    meta: DynMetadataStore,
    #[debug(skip)]
    queue: Arc<dyn JobQueue>,
}

impl Scheduler {
    pub fn new(meta: DynMetadataStore, queue: Arc<dyn JobQueue>) -> Self {
        Self { meta, queue }
    }

    /// Submits the job of every schedule due at `now` (at most 100 at once); returns the
    /// ids of the jobs this call created.
    ///
    /// # Errors
    /// The store or the queue failed (the slot stays due and is tried again).
    pub async fn fire_due(&self, now: DateTime<Utc>) -> Result<Vec<String>, QueueError> {
        let mut created = Vec::new();
        for due in self.meta.due_schedules(now, 100).await? {
            if let Some(id) = self.fire(&due, now).await? {
                created.push(id);
            }
        }
        Ok(created)
    }

    async fn fire(
        &self,
        due: &ModelSchedule,
        now: DateTime<Utc>,
    ) -> Result<Option<String>, QueueError> {
        let schedule: RetrainSchedule = match serde_json::from_value(due.schedule.clone()) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, model = due.model_name, "unreadable retraining schedule");
                return Ok(None);
            }
        };
        let Ok(cron) = parse_cron(&schedule.cron) else {
            tracing::error!(
                model = due.model_name,
                cron = schedule.cron,
                "retraining schedule with a bad cron expression"
            );
            return Ok(None);
        };
        // The most recent due slot: missed ones are not made up one by one.
        let slot = cron
            .find_previous_occurrence(&now, true)
            .ok()
            .filter(|s| *s >= due.next_run_at)
            .unwrap_or(due.next_run_at);
        let spec = serde_json::to_value(&schedule.spec)
            .map_err(|e| QueueError::Backend(format!("a schedule's job: {e}")))?;
        let (job, created) = self
            .queue
            .submit(NewJob {
                tenant: due.tenant.clone(),
                kind: JobKind::Train,
                spec,
                progress: json!({"rows_processed": 0, "sources_done": 0, "sources_total": 1}),
                idempotency_key: Some(format!(
                    "schedule:{}:{}",
                    due.model_name,
                    slot.format("%Y-%m-%dT%H:%MZ")
                )),
            })
            .await?;
        let Some(next) = next_slot(&cron, now) else {
            tracing::warn!(
                model = due.model_name,
                "retraining schedule has no slot after now"
            );
            return Ok(created.then_some(job.id));
        };
        self.meta.advance_schedule(due, next, &job.id).await?;
        if created {
            tracing::info!(model = due.model_name, job_id = %job.id, %slot, %next, "scheduled retraining submitted");
        }
        Ok(created.then_some(job.id))
    }

    /// Checks the schedules every `every` until `stop`.
    pub fn spawn(self: Arc<Self>, every: Duration, stop: CancellationToken) -> JoinHandle<()> {
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tokio::select! {
                    _ = tick.tick() => {}
                    () = stop.cancelled() => break,
                }
                if let Err(e) = self.fire_due(Utc::now()).await {
                    tracing::warn!(error = %e, "could not submit scheduled retraining");
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn five_field_expressions_parse_and_give_their_next_slot() {
        let cron = parse_cron("0 3 * * *").unwrap();
        let at = DateTime::parse_from_rfc3339("2026-12-06T23:10:00Z")
            .unwrap()
            .to_utc();
        assert_eq!(
            next_slot(&cron, at).unwrap().to_rfc3339(),
            "2026-12-07T03:00:00+00:00"
        );
        assert!(parse_cron("0 0 3 * * *").is_err(), "seconds are refused");
        assert!(parse_cron("61 * * * *").is_err());
        assert!(parse_cron("every day").is_err());
        assert!(parse_cron("@daily").is_ok());
    }
}
