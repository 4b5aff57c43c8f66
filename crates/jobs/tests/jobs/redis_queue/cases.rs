//! The Redis queue's behaviours, each run by `super` on the test Redis and on a Redis
//! Cluster.

use std::time::Duration;

use pynomaly_jobs::{JobQueue, RedisQueueConfig};
use pynomaly_store::{CancelOutcome, DEFAULT_TENANT, JobStatus, NewModelVersion};
use serde_json::json;
use testkit::RedisKind;
use testkit::wait::wait;

use super::{assert_nothing_to_run, batch, done, with_harness};

pub(super) async fn a_submitted_job_runs_once_and_leaves_nothing_pending(redis: RedisKind) {
    with_harness(redis, async |h| {
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
        assert_nothing_to_run(&worker, "the job ran once").await;
        let path = result["outputs"][0]["path"].as_str().unwrap().to_string();
        let output = h.artifacts.get(&path).await.unwrap();
        assert_eq!(output.iter().filter(|&&b| b == b'\n').count(), 201);
    })
    .await;
}

pub(super) async fn an_idempotency_key_dedups_submissions_across_instances(redis: RedisKind) {
    with_harness(redis, async |h| {
        let (a, b) = (h.queue().await, h.queue().await);
        let (first, created) = a.submit(batch(&["a.csv"], Some("k1"))).await.unwrap();
        assert!(created);
        let (again, created) = b.submit(batch(&["a.csv"], Some("k1"))).await.unwrap();
        assert!(!created);
        assert_eq!(first.id, again.id);
        let worker = h.queue().await;
        done(worker.try_execute_job().await.unwrap());
        assert_nothing_to_run(&worker, "one delivery for one job").await;
    })
    .await;
}

pub(super) async fn a_job_whose_worker_died_is_taken_over_and_reported_once(redis: RedisKind) {
    with_harness(redis, async |h| {
        let (_api, job) = h.submitted().await;
        // Worker 1 takes the delivery and claims the job, then dies (never runs it, never
        // renews its lease).
        let dead = h.queue().await;
        let delivery = dead.receive(None).await.unwrap().expect("a delivery");
        let claimed = dead.claim(delivery).await.unwrap().expect("claimed");
        assert_eq!(claimed.job().attempts, 1);
        let survivor = h.queue().await;
        assert_nothing_to_run(&survivor, "not taken over while the lease runs").await;
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
        assert_nothing_to_run(&survivor, "the job ran once more, and only once").await;
    })
    .await;
}

pub(super) async fn a_job_whose_workers_keep_dying_fails_after_its_attempts(redis: RedisKind) {
    with_harness(redis, async |h| {
        let (_api, job) = h.submitted().await;
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
        assert_nothing_to_run(&last, "the job is failed, not run again").await;
    })
    .await;
}

pub(super) async fn a_failing_attempt_is_retried_after_a_backoff_then_failed_with_the_reason(
    redis: RedisKind,
) {
    with_harness(redis, async |h| {
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
                metrics: None,
                lineage: None,
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
        assert_nothing_to_run(&q, "not before the backoff").await;
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

pub(super) async fn a_bad_source_fails_at_once_without_retries(redis: RedisKind) {
    with_harness(redis, async |h| {
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

pub(super) async fn cancelling_a_queued_job_means_it_never_runs(redis: RedisKind) {
    with_harness(redis, async |h| {
        let (api, job) = h.submitted().await;
        assert!(matches!(
            api.cancel(DEFAULT_TENANT, &job.id).await.unwrap(),
            CancelOutcome::Cancelled(_)
        ));
        let worker = h.queue().await;
        assert_nothing_to_run(&worker, "a cancelled job is not delivered").await;
        let cancelled = h.job(&job.id).await;
        assert_eq!(
            (cancelled.status, cancelled.attempts),
            (JobStatus::Cancelled, 0)
        );
    })
    .await;
}

pub(super) async fn cancelling_a_running_job_through_another_instance_stops_it(redis: RedisKind) {
    with_harness(redis, async |h| {
        let api = h.queue().await;
        let worker = h.queue().await;
        let (job, running) = h.start_a_long_job(&api, &worker).await;
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

pub(super) async fn a_shutting_down_worker_hands_its_job_to_another(redis: RedisKind) {
    with_harness(redis, async |h| {
        let api = h.queue().await;
        let leaving = h.queue().await;
        let (job, running) = h.start_a_long_job(&api, &leaving).await;
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

pub(super) async fn a_job_never_delivered_is_sent_again_and_workers_report_their_heartbeat(
    redis: RedisKind,
) {
    with_harness(redis, async |h| {
        // A submission that stopped between the insert and the send.
        let (job, _) = h.meta.create_job(batch(&["a.csv"], None)).await.unwrap();
        let q = h
            .queue_with(RedisQueueConfig {
                redeliver_after: Duration::from_millis(0),
                ..h.config()
            })
            .await;
        assert_nothing_to_run(&q, "the job was never sent").await;
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

pub(super) async fn a_running_job_of_a_vanished_worker_is_sent_again_when_redis_lost_it(
    redis: RedisKind,
) {
    with_harness(redis, async |h| {
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
        assert_nothing_to_run(
            &q,
            "the recovered job ran once; the busy one stays with its worker",
        )
        .await;
    })
    .await;
}

pub(super) async fn jobs_queued_and_running_when_redis_lost_its_data_run_once(redis: RedisKind) {
    with_harness(redis, async |h| {
        let q = h.queue().await;
        // The first check of a new deployment finds no state, and then finds it.
        assert!(q.reconcile().await.unwrap().is_some());
        assert!(q.reconcile().await.unwrap().is_none());
        // Two jobs queued (sent), one running on a worker that then vanished.
        let (a, _) = q.submit(batch(&["a.csv"], None)).await.unwrap();
        let (b, _) = q.submit(batch(&["a.csv"], None)).await.unwrap();
        let (c, _) = q.submit(batch(&["a.csv"], None)).await.unwrap();
        let ghost = h.queue().await;
        let d = ghost.receive(None).await.unwrap().unwrap();
        let claimed = ghost.claim(d).await.unwrap().unwrap();
        assert_eq!(claimed.job().id, a.id);
        drop(claimed);

        h.lose_redis_state().await;
        // Until reconciled, nothing is delivered (the consumer group is recreated).
        assert_nothing_to_run(&q, "Redis forgot every delivery").await;
        let noticed = q.reconcile().await.unwrap().expect("the loss is noticed");
        assert!(q.reconcile().await.unwrap().is_none(), "noticed once");
        // b and c were queued: sent again at once; a, running for a worker that is gone,
        // once the grace has passed.
        let mut ran = Vec::new();
        for _ in 0..2 {
            let (id, status) = done(q.try_execute_job().await.unwrap());
            assert_eq!(status, JobStatus::Succeeded);
            ran.push(id);
        }
        assert_nothing_to_run(&q, "a waits for the grace").await;
        assert_eq!(q.reconcile_after_grace(noticed).await.unwrap(), 1);
        let (id, status) = done(q.try_execute_job().await.unwrap());
        assert_eq!(status, JobStatus::Succeeded);
        ran.push(id);
        ran.sort();
        let mut expected = vec![a.id.clone(), b.id.clone(), c.id.clone()];
        expected.sort();
        assert_eq!(ran, expected, "each job ran once");
        assert_nothing_to_run(&q, "nothing runs twice").await;
        for id in [&b.id, &c.id] {
            assert_eq!(h.job(id).await.attempts, 1);
        }
    })
    .await;
}

pub(super) async fn a_running_job_whose_delivery_redis_lost_runs_to_its_end(redis: RedisKind) {
    with_harness(redis, async |h| {
        let api = h.queue().await;
        let worker = h.queue().await;
        let (job, running) = h.start_a_long_job(&api, &worker).await;
        // Redis forgets the delivery mid-run, and the group comes back empty: the worker's
        // next renewals find no entry at all (not another worker's), while the job is still
        // `running` for it in the metadata store.
        h.lose_redis_state().await;
        assert!(
            api.reconcile().await.unwrap().is_some(),
            "the loss is noticed"
        );
        let outcome = tokio::time::timeout(Duration::from_secs(120), running)
            .await
            .expect("the job ends")
            .unwrap()
            .unwrap();
        assert_eq!(
            done(outcome),
            (job.id.clone(), JobStatus::Succeeded),
            "the worker carried on rather than leaving the job `running` with nobody on it"
        );
        let finished = h.job(&job.id).await;
        assert_eq!(
            (finished.status, finished.attempts),
            (JobStatus::Succeeded, 1)
        );
        assert_nothing_to_run(&api, "it ran once").await;
    })
    .await;
}

/// A worker whose job's run ends while the database is away (its connections dropped,
/// new ones refused) keeps the lease and records the outcome when the database returns:
/// once, with no second attempt.
pub(super) async fn a_job_that_ends_while_the_database_is_away_is_recorded_once_when_it_returns(
    redis: RedisKind,
) {
    with_harness(redis, async |h| {
        let api = h.queue().await;
        let (worker, mut database) = h.queue_through_a_relay().await;
        let (job, running) = h.start_a_long_job(&api, &worker).await;
        wait("the run begins", Duration::from_secs(30))
            .until(async || {
                if worker.busy() == 1 {
                    Ok(())
                } else {
                    Err("not yet".to_string())
                }
            })
            .await;
        database.cut().await;
        wait("the run ends", Duration::from_secs(120))
            .until(async || {
                if worker.busy() == 0 {
                    Ok(())
                } else {
                    Err("running".to_string())
                }
            })
            .await;
        assert!(
            !running.is_finished(),
            "the run ended before the database went away: nothing was tested"
        );
        // Longer than the store's pool waits for a connection (10 s): the first write of
        // the outcome fails, and it is the worker's retry that records it.
        tokio::time::sleep(Duration::from_secs(12)).await;
        assert!(!running.is_finished(), "the outcome waits for the database");
        database.reopen().await;
        let outcome = tokio::time::timeout(Duration::from_secs(60), running)
            .await
            .expect("recorded once the database answers")
            .unwrap()
            .unwrap();
        assert_eq!(
            done(outcome),
            (job.id.clone(), JobStatus::Succeeded),
            "the run's outcome"
        );
        let recorded = h.job(&job.id).await;
        assert_eq!(
            (recorded.status, recorded.attempts),
            (JobStatus::Succeeded, 1)
        );
        assert_eq!(recorded.result.unwrap()["n_samples"], 400_000);
        assert_nothing_to_run(&worker, "the job ran once").await;
    })
    .await;
}
