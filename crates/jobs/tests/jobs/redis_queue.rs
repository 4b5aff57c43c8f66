//! The Redis queue against a real Redis and Postgres: each test has a database of its own
//! and a Redis key prefix of its own, both removed afterwards. Steps are driven one at a
//! time (`receive`, `claim`, `execute`, `try_execute_job`) so nothing depends on timing
//! except the short leases and backoffs the tests configure. Skipped, with the reason
//! printed, when `PYNOMALY_TEST_DATABASE_URL` or `PYNOMALY_TEST_REDIS_URL` is unset.

use std::sync::Arc;
use std::time::Duration;

use pynomaly_jobs::{
    BatchSpec, ExecutionOutcome, JobQueue, JobRunner, OutputFormat, RedisQueue, RedisQueueConfig,
    RunnerConfig, Scoring, SourceResolver,
};
use pynomaly_models::ModelRegistry;
use pynomaly_store::{
    ArtifactStore, CancelOutcome, DEFAULT_TENANT, DynMetadataStore, Job, JobKind, JobStatus,
    NewJob, NewModelVersion, PostgresStore,
};
use serde_json::{Map, json};
use testkit::{ScaleOut, with_postgres_and_redis};

/// What each test gets: stores, a runner, and a way to start queue instances (an API
/// instance or a worker process each) on this test's prefix.
struct Harness {
    dir: tempfile::TempDir,
    meta: DynMetadataStore,
    artifacts: ArtifactStore,
    runner: Arc<JobRunner>,
    env: ScaleOut,
}

impl Harness {
    fn config(&self) -> RedisQueueConfig {
        RedisQueueConfig {
            prefix: self.env.redis_prefix.clone(),
            // Long enough that a loaded CI machine does not expire a lease or a backoff
            // between two steps of a test; short enough to wait out.
            lease: Duration::from_millis(2000),
            heartbeat: Duration::from_millis(100),
            max_attempts: 2,
            backoff: Duration::from_millis(1500),
            block: Duration::from_millis(200),
            redeliver_after: Duration::from_secs(300),
        }
    }

    async fn queue(&self) -> Arc<RedisQueue> {
        self.queue_with(self.config()).await
    }

    async fn queue_with(&self, config: RedisQueueConfig) -> Arc<RedisQueue> {
        RedisQueue::connect(
            &self.env.redis_url,
            config,
            Arc::clone(&self.meta),
            Arc::clone(&self.runner),
        )
        .await
        .expect("Redis queue connects")
    }

    async fn job(&self, id: &str) -> Job {
        self.meta.job_by_id(id).await.unwrap().expect("job exists")
    }

    /// Writes a `n`-row CSV into the sources directory and returns its name.
    fn sources_file(&self, name: &str, n: usize) -> String {
        let root = self.dir.path().join("sources");
        std::fs::write(root.join(name), testkit::data::wave_csv(n)).unwrap();
        name.to_string()
    }

    /// Gives a job being executed time to get into its run. A fitting batch job reports
    /// no progress before its source is done, so there is nothing to poll for.
    async fn let_the_run_begin(&self) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    /// Waits out the lease of a claimed job: time has to pass for it to expire.
    async fn let_the_lease_expire(&self) {
        tokio::time::sleep(self.config().lease + Duration::from_millis(300)).await;
    }
}

fn batch(sources: &[&str], key: Option<&str>) -> NewJob {
    let spec = BatchSpec {
        sources: sources.iter().map(|s| s.to_string()).collect(),
        scoring: Scoring::Fit {
            algorithm: "isolation_forest".into(),
            parameters: json!({"n_estimators": 10, "random_state": 1})
                .as_object()
                .cloned()
                .unwrap_or_else(Map::new),
            contamination: json!("auto"),
        },
        output_format: OutputFormat::Csv,
        label_column: None,
    };
    NewJob {
        tenant: DEFAULT_TENANT.into(),
        kind: JobKind::Batch,
        spec: serde_json::to_value(&spec).unwrap(),
        progress: json!({"rows_processed": 0, "sources_done": 0, "sources_total": sources.len()}),
        idempotency_key: key.map(str::to_string),
    }
}

/// Runs `test` with a fresh database, a fresh key prefix and a sources directory holding
/// `a.csv` (200 rows); removes all three afterwards, also when the test fails.
async fn with_harness(test: impl AsyncFnOnce(Arc<Harness>)) {
    with_postgres_and_redis(async |env| {
        let dir = tempfile::tempdir().unwrap();
        let store = PostgresStore::connect(&env.database_url, 8).await.unwrap();
        let meta: DynMetadataStore = Arc::new(store);
        let artifacts =
            ArtifactStore::from_url(&dir.path().join("storage").display().to_string()).unwrap();
        let sources = SourceResolver::new(&dir.path().join("sources")).unwrap();
        let registry = Arc::new(ModelRegistry::new(
            Arc::clone(&meta),
            artifacts.clone(),
            1 << 20,
        ));
        let runner = Arc::new(JobRunner::new(
            registry,
            artifacts.clone(),
            sources,
            RunnerConfig {
                chunk_rows: 50,
                progress_interval: Duration::from_millis(0),
            },
        ));
        let harness = Arc::new(Harness {
            dir,
            meta: Arc::clone(&meta),
            artifacts,
            runner,
            env,
        });
        harness.sources_file("a.csv", 200);
        testkit::with_cleanup(test(harness), meta.close()).await;
    })
    .await;
}

fn done(outcome: ExecutionOutcome) -> (String, JobStatus) {
    match outcome {
        ExecutionOutcome::JobDone { job_id, status } => (job_id, status),
        ExecutionOutcome::QueueEmpty => panic!("expected a job to run, the queue was empty"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_submitted_job_runs_once_and_leaves_nothing_pending() {
    with_harness(async |h| {
        let api = h.queue().await;
        let worker = h.queue().await;
        let (job, created) = api.submit(batch(&["a.csv"], None)).await.unwrap();
        assert!(created);
        let (id, status) = done(worker.try_execute_job().await.unwrap());
        assert_eq!(
            (id.as_str(), status),
            (job.id.as_str(), JobStatus::Succeeded)
        );
        let finished = h.job(&job.id).await;
        assert_eq!(finished.attempts, 1);
        let result = finished.result.unwrap();
        assert_eq!(result["n_samples"], 200);
        assert_eq!(
            worker.try_execute_job().await.unwrap(),
            ExecutionOutcome::QueueEmpty
        );
        let path = result["outputs"][0]["path"].as_str().unwrap().to_string();
        let output = h.artifacts.get(&path).await.unwrap();
        assert_eq!(output.iter().filter(|&&b| b == b'\n').count(), 201);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_dedups_submissions_across_instances() {
    with_harness(async |h| {
        let (a, b) = (h.queue().await, h.queue().await);
        let (first, created) = a.submit(batch(&["a.csv"], Some("k1"))).await.unwrap();
        assert!(created);
        let (again, created) = b.submit(batch(&["a.csv"], Some("k1"))).await.unwrap();
        assert!(!created);
        assert_eq!(first.id, again.id);
        let worker = h.queue().await;
        done(worker.try_execute_job().await.unwrap());
        assert_eq!(
            worker.try_execute_job().await.unwrap(),
            ExecutionOutcome::QueueEmpty,
            "one delivery for one job"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_whose_worker_died_is_taken_over_and_reported_once() {
    with_harness(async |h| {
        let api = h.queue().await;
        let (job, _) = api.submit(batch(&["a.csv"], None)).await.unwrap();
        // Worker 1 takes the delivery and claims the job, then dies (never runs it, never
        // renews its lease).
        let dead = h.queue().await;
        let delivery = dead.receive(None).await.unwrap().expect("a delivery");
        let claimed = dead.claim(delivery).await.unwrap().expect("claimed");
        assert_eq!(claimed.job().attempts, 1);
        let survivor = h.queue().await;
        assert_eq!(
            survivor.try_execute_job().await.unwrap(),
            ExecutionOutcome::QueueEmpty,
            "not taken over while the lease runs"
        );
        h.let_the_lease_expire().await;
        let (id, status) = done(survivor.try_execute_job().await.unwrap());
        assert_eq!(
            (id.as_str(), status),
            (job.id.as_str(), JobStatus::Succeeded)
        );
        let finished = h.job(&job.id).await;
        assert_eq!(finished.attempts, 2);
        assert_eq!(finished.result.as_ref().unwrap()["n_samples"], 200);
        // The dead worker wakes up and runs its stale claim: its outcome is discarded.
        dead.execute(claimed).await.unwrap();
        let after = h.job(&job.id).await;
        assert_eq!(
            after.finished_at, finished.finished_at,
            "reported done once"
        );
        assert_eq!(after.result, finished.result);
        assert_eq!(
            survivor.try_execute_job().await.unwrap(),
            ExecutionOutcome::QueueEmpty
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_whose_workers_keep_dying_fails_after_its_attempts() {
    with_harness(async |h| {
        let api = h.queue().await;
        let (job, _) = api.submit(batch(&["a.csv"], None)).await.unwrap();
        for attempt in 1..=2 {
            let dying = h.queue().await;
            if attempt > 1 {
                h.let_the_lease_expire().await;
            }
            let d = dying.receive(None).await.unwrap().expect("a delivery");
            let claimed = dying.claim(d).await.unwrap().expect("claimed");
            assert_eq!(claimed.job().attempts, attempt);
        }
        h.let_the_lease_expire().await;
        let last = h.queue().await;
        let d = last.receive(None).await.unwrap().expect("taken over");
        assert!(
            last.claim(d).await.unwrap().is_none(),
            "not run a third time"
        );
        let failed = h.job(&job.id).await;
        assert_eq!(failed.status, JobStatus::Failed);
        assert!(
            failed
                .error
                .as_deref()
                .unwrap()
                .contains("gave up after 2 attempts"),
            "{:?}",
            failed.error
        );
        assert_eq!(
            last.try_execute_job().await.unwrap(),
            ExecutionOutcome::QueueEmpty
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_attempt_is_retried_after_a_backoff_then_failed_with_the_reason() {
    with_harness(async |h| {
        // A model whose artifact is missing: the storage, not the data, is at fault.
        h.meta
            .create_model_version(NewModelVersion {
                tenant: DEFAULT_TENANT.into(),
                model_name: "m".into(),
                algorithm: "isolation_forest".into(),
                parameters: json!({}),
                contamination: json!("auto"),
                threshold: 0.5,
                n_features: 2,
                n_samples: 10,
                feature_names: None,
                artifact_path: "models/default/missing.pnmy".into(),
                artifact_bytes: 1,
                training_time_ms: 1.0,
                job_id: None,
            })
            .await
            .unwrap();
        let mut new = batch(&["a.csv"], None);
        new.spec["scoring"] = json!({"mode": "model", "model_name": "m", "version": null});
        let q = h.queue().await;
        let (job, _) = q.submit(new).await.unwrap();
        let (_, status) = done(q.try_execute_job().await.unwrap());
        assert_eq!(
            status,
            JobStatus::Queued,
            "first attempt failed: retry scheduled"
        );
        let waiting = h.job(&job.id).await;
        assert!(
            waiting
                .error
                .as_deref()
                .unwrap()
                .contains("loading the model")
        );
        assert_eq!(
            q.try_execute_job().await.unwrap(),
            ExecutionOutcome::QueueEmpty,
            "not before the backoff"
        );
        // The backoff is a span of time: it has to pass.
        tokio::time::sleep(h.config().backoff + Duration::from_millis(300)).await;
        let (_, status) = done(q.try_execute_job().await.unwrap());
        assert_eq!(status, JobStatus::Failed);
        let failed = h.job(&job.id).await;
        assert_eq!(failed.attempts, 2);
        let error = failed.error.unwrap();
        assert!(
            error.contains("failed after 2 attempts") && error.contains("loading the model"),
            "{error}"
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_source_fails_at_once_without_retries() {
    with_harness(async |h| {
        let q = h.queue().await;
        let (job, _) = q.submit(batch(&["nope.csv"], None)).await.unwrap();
        let (_, status) = done(q.try_execute_job().await.unwrap());
        assert_eq!(status, JobStatus::Failed);
        let failed = h.job(&job.id).await;
        assert_eq!(failed.attempts, 1);
        assert!(failed.error.unwrap().contains("nope.csv"));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_queued_job_means_it_never_runs() {
    with_harness(async |h| {
        let api = h.queue().await;
        let (job, _) = api.submit(batch(&["a.csv"], None)).await.unwrap();
        assert!(matches!(
            api.cancel(DEFAULT_TENANT, &job.id).await.unwrap(),
            CancelOutcome::Cancelled(_)
        ));
        let worker = h.queue().await;
        assert_eq!(
            worker.try_execute_job().await.unwrap(),
            ExecutionOutcome::QueueEmpty
        );
        let cancelled = h.job(&job.id).await;
        assert_eq!(
            (cancelled.status, cancelled.attempts),
            (JobStatus::Cancelled, 0)
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_a_running_job_through_another_instance_stops_it() {
    with_harness(async |h| {
        // Enough rows that the run is still going when the cancel lands.
        let big = h.sources_file("big.csv", 400_000);
        let api = h.queue().await;
        let worker = h.queue().await;
        let (job, _) = api.submit(batch(&[&big], None)).await.unwrap();
        let d = worker.receive(None).await.unwrap().unwrap();
        let claimed = worker.claim(d).await.unwrap().unwrap();
        let running = tokio::spawn({
            let worker = Arc::clone(&worker);
            async move { worker.execute(claimed).await }
        });
        h.let_the_run_begin().await;
        assert!(matches!(
            api.cancel(DEFAULT_TENANT, &job.id).await.unwrap(),
            CancelOutcome::Requested(_)
        ));
        let outcome = tokio::time::timeout(Duration::from_secs(60), running)
            .await
            .expect("stopped promptly")
            .unwrap()
            .unwrap();
        assert_eq!(done(outcome).1, JobStatus::Cancelled);
        assert_eq!(h.job(&job.id).await.status, JobStatus::Cancelled);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutting_down_worker_hands_its_job_to_another() {
    with_harness(async |h| {
        let big = h.sources_file("big.csv", 400_000);
        let api = h.queue().await;
        let leaving = h.queue().await;
        let (job, _) = api.submit(batch(&[&big], None)).await.unwrap();
        let d = leaving.receive(None).await.unwrap().unwrap();
        let claimed = leaving.claim(d).await.unwrap().unwrap();
        let running = tokio::spawn({
            let leaving = Arc::clone(&leaving);
            async move { leaving.execute(claimed).await }
        });
        h.let_the_run_begin().await;
        leaving.shutdown();
        let outcome = running.await.unwrap().unwrap();
        assert_eq!(done(outcome).1, JobStatus::Queued);
        assert_eq!(h.job(&job.id).await.status, JobStatus::Queued);
        let next = h.queue().await;
        let d = next
            .receive(None)
            .await
            .unwrap()
            .expect("delivered again at once");
        assert!(!format!("{d:?}").is_empty());
        let claimed = next.claim(d).await.unwrap().expect("claimable");
        assert_eq!(claimed.job().attempts, 2);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_never_delivered_is_sent_again_and_workers_report_their_heartbeat() {
    with_harness(async |h| {
        // A submission that stopped between the insert and the send.
        let (job, _) = h.meta.create_job(batch(&["a.csv"], None)).await.unwrap();
        let q = h
            .queue_with(RedisQueueConfig {
                redeliver_after: Duration::from_millis(0),
                ..h.config()
            })
            .await;
        assert_eq!(
            q.try_execute_job().await.unwrap(),
            ExecutionOutcome::QueueEmpty
        );
        assert_eq!(q.redeliver_overdue().await.unwrap(), 1);
        let (id, status) = done(q.try_execute_job().await.unwrap());
        assert_eq!((id, status), (job.id, JobStatus::Succeeded));
        assert_eq!(q.live_workers().await.unwrap(), 0);
        q.register_heartbeat().await.unwrap();
        h.queue().await.register_heartbeat().await.unwrap();
        assert_eq!(q.live_workers().await.unwrap(), 2);
        assert!(q.ping().await.is_ok());
        assert_eq!(q.kind(), "redis");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_job_of_a_vanished_worker_is_sent_again_when_redis_lost_it() {
    with_harness(async |h| {
        // Running for a worker that left no trace: no heartbeat, no pending delivery.
        let (lost, _) = h.meta.create_job(batch(&["a.csv"], None)).await.unwrap();
        h.meta
            .claim_job(&lost.id, "ghost", false)
            .await
            .unwrap()
            .unwrap();
        // Running for a live worker: left alone.
        let alive = h.queue().await;
        alive.register_heartbeat().await.unwrap();
        let (busy, _) = h.meta.create_job(batch(&["a.csv"], None)).await.unwrap();
        h.meta
            .claim_job(&busy.id, alive.worker_id(), false)
            .await
            .unwrap()
            .unwrap();
        let q = h.queue().await;
        assert_eq!(q.recover_orphans().await.unwrap(), 1);
        let (id, status) = done(q.try_execute_job().await.unwrap());
        assert_eq!(
            (id.as_str(), status),
            (lost.id.as_str(), JobStatus::Succeeded)
        );
        let finished = h.job(&lost.id).await;
        assert_eq!((finished.attempts, finished.error), (2, None));
        assert_eq!(h.job(&busy.id).await.status, JobStatus::Running);
        assert_eq!(
            q.try_execute_job().await.unwrap(),
            ExecutionOutcome::QueueEmpty
        );
    })
    .await;
}
