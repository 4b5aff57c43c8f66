//! Scheduled retraining against Postgres: two instances racing on one slot submit one job,
//! and slots missed while nothing ran are made up by one job, not one each.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use pynomaly_jobs::{
    InProcessQueue, JobQueue, RetrainSchedule, Scheduler, SourceResolver, TrainSpec, parse_cron,
};
use pynomaly_models::Rollout;
use pynomaly_store::{ArtifactStore, DynMetadataStore, PostgresStore};
use serde_json::json;
use testkit::TestDatabase;

use crate::runner;

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().to_utc()
}

fn schedule(cron: &str) -> serde_json::Value {
    let spec = TrainSpec {
        model_name: "m".into(),
        training_data: "a.csv".into(),
        detector: detect_core::DetectorConfig::from_json(
            "isolation_forest",
            json!({"n_estimators": 10}).as_object().unwrap(),
            &json!("auto"),
        )
        .unwrap(),
        label_column: None,
        rollout: Rollout::default(),
        validation: None,
        validation_source: None,
        trained_by: Some("key:k".into()),
    };
    serde_json::to_value(RetrainSchedule {
        cron: cron.into(),
        spec,
        created_by: "key:k".into(),
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slot_is_submitted_once_across_instances_and_missed_slots_once() {
    TestDatabase::run(async |url| {
        let dir = tempfile::tempdir().unwrap();
        let store = PostgresStore::connect(&url, 8).await.unwrap();
        let meta: DynMetadataStore = Arc::new(store);
        let artifacts =
            ArtifactStore::from_url(&dir.path().join("storage").display().to_string()).unwrap();
        let sources = SourceResolver::new(dir.path()).unwrap();
        let run = runner(&meta, &artifacts, sources, 1000);
        // Two instances, each with its queue, sharing the database.
        let instances: Vec<Scheduler> = (0..2)
            .map(|_| {
                let queue: Arc<dyn JobQueue> =
                    InProcessQueue::new(Arc::clone(&meta), Arc::clone(&run));
                Scheduler::new(Arc::clone(&meta), queue)
            })
            .collect();
        let cron = parse_cron("0 3 * * *").unwrap();
        let first = pynomaly_jobs::next_slot(&cron, at("2026-12-06T12:00:00Z")).unwrap();
        assert_eq!(first, at("2026-12-07T03:00:00Z"));
        meta.set_schedule("t", "m", &schedule("0 3 * * *"), first)
            .await
            .unwrap();

        // Before the slot: nothing.
        assert!(
            instances[0]
                .fire_due(at("2026-12-07T02:59:00Z"))
                .await
                .unwrap()
                .is_empty()
        );
        // At the slot, both race: one job.
        let now = at("2026-12-07T03:00:20Z");
        let (a, b) = tokio::join!(instances[0].fire_due(now), instances[1].fire_due(now));
        let created: Vec<String> = a.unwrap().into_iter().chain(b.unwrap()).collect();
        assert_eq!(created.len(), 1, "{created:?}");
        let s = meta.schedule("t", "m").await.unwrap().unwrap();
        assert_eq!(s.next_run_at, at("2026-12-08T03:00:00Z"));
        assert_eq!(s.last_job_id.as_deref(), Some(created[0].as_str()));
        let job = meta.job_by_id(&created[0]).await.unwrap().unwrap();
        assert_eq!((job.tenant.as_str(), job.kind.as_str()), ("t", "train"));
        assert_eq!(job.spec["model_name"], "m");
        // Again within the same slot: nothing more.
        assert!(instances[1].fire_due(now).await.unwrap().is_empty());

        // Down for three days: one job for the latest slot, then the next one after now.
        let later = at("2026-12-11T09:30:00Z");
        let created = instances[1].fire_due(later).await.unwrap();
        assert_eq!(created.len(), 1);
        let s = meta.schedule("t", "m").await.unwrap().unwrap();
        assert_eq!(s.next_run_at, at("2026-12-12T03:00:00Z"));
        assert!(instances[0].fire_due(later).await.unwrap().is_empty());
        assert_eq!(
            meta.job_counts().await.unwrap().0,
            2,
            "two jobs queued in all"
        );
    })
    .await;
}
