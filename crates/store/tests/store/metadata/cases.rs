//! The cases of the metadata store suite, written once against the trait.

use chrono::{Duration, Utc};
use futures::future::join_all;
use pynomaly_store::{
    AuditFilter, CancelOutcome, DEFAULT_TENANT, JobKind, JobStatus, MetadataStore, NewApiKey,
    NewAuditEntry, NewJob, NewModelVersion, NewStage, NewUser, Page, Scope, StoreError,
};
use serde_json::json;

fn version(name: &str, tenant: &str) -> NewModelVersion {
    NewModelVersion {
        tenant: tenant.into(),
        model_name: name.into(),
        algorithm: "lof".into(),
        parameters: json!({"n_neighbors": 5, "metric": "euclidean"}),
        contamination: json!("auto"),
        threshold: 1.5,
        n_features: 2,
        n_samples: 10,
        feature_names: Some(vec!["a".into(), "b".into()]),
        artifact_path: format!("models/{tenant}/{name}"),
        artifact_bytes: 100,
        training_time_ms: 1.25,
        job_id: None,
        metrics: None,
        lineage: Some(json!({"trained_by": "key:k1", "rows": 10})),
    }
}

fn job(key: Option<&str>) -> NewJob {
    job_of(DEFAULT_TENANT, key)
}

fn job_of(tenant: &str, key: Option<&str>) -> NewJob {
    NewJob {
        tenant: tenant.into(),
        kind: JobKind::Batch,
        spec: json!({"sources": ["a.csv"], "scoring": {"mode": "fit"}}),
        progress: json!({"rows_processed": 0}),
        idempotency_key: key.map(str::to_string),
    }
}

fn key(tenant: &str, name: &str, hash: &str) -> NewApiKey {
    NewApiKey {
        tenant: tenant.into(),
        name: name.into(),
        key_hash: hash.into(),
        scopes: vec![Scope::Read, Scope::Write],
        rate_limit_per_minute: Some(600),
        expires_at: None,
    }
}

pub async fn api_keys_are_found_by_hash_listed_per_tenant_and_revoked(s: &dyn MetadataStore) {
    assert_eq!(s.count_api_keys().await.unwrap(), 0);
    let a = s.create_api_key(key("t1", "ci", "h1")).await.unwrap();
    let b = s.create_api_key(key("t1", "ops", "h2")).await.unwrap();
    s.create_api_key(key("t2", "other", "h3")).await.unwrap();
    assert_eq!(s.count_api_keys().await.unwrap(), 3);
    let found = s.find_api_key_by_hash("h1").await.unwrap().unwrap();
    assert_eq!(found, a);
    assert_eq!(found.scopes, vec![Scope::Read, Scope::Write]);
    assert_eq!(found.rate_limit_per_minute, Some(600));
    assert!(found.is_active(Utc::now()));
    assert!(s.find_api_key_by_hash("nope").await.unwrap().is_none());
    let by_id = s.find_api_key_by_id(&b.id).await.unwrap().unwrap();
    assert_eq!((by_id.tenant.as_str(), by_id.name.as_str()), ("t1", "ops"));
    assert!(s.find_api_key_by_id("nope").await.unwrap().is_none());
    let listed: Vec<String> = s
        .list_api_keys("t1")
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.name)
        .collect();
    assert_eq!(listed, ["ops", "ci"], "newest first, this tenant only");
    assert!(
        !s.revoke_api_key("t2", &b.id).await.unwrap(),
        "another tenant's key"
    );
    assert!(s.revoke_api_key("t1", &b.id).await.unwrap());
    let revoked = s.find_api_key_by_hash("h2").await.unwrap().unwrap();
    assert!(revoked.revoked_at.is_some() && !revoked.is_active(Utc::now()));
    let expiring = NewApiKey {
        expires_at: Some(Utc::now() - Duration::seconds(1)),
        ..key("t1", "old", "h4")
    };
    let expired = s.create_api_key(expiring).await.unwrap();
    assert!(!expired.is_active(Utc::now()));
}

pub async fn a_duplicate_key_hash_is_a_conflict(s: &dyn MetadataStore) {
    s.create_api_key(key("t1", "a", "same")).await.unwrap();
    let e = s.create_api_key(key("t1", "b", "same")).await.unwrap_err();
    assert!(matches!(e, StoreError::Conflict(_)), "{e:?}");
}

pub async fn versions_are_numbered_per_tenant_and_name_and_the_first_is_production(
    s: &dyn MetadataStore,
) {
    let a1 = s.create_model_version(version("a", "t1")).await.unwrap();
    let a2 = s.create_model_version(version("a", "t1")).await.unwrap();
    let other = s.create_model_version(version("a", "t2")).await.unwrap();
    assert_eq!((a1.version, a1.stage.as_str()), (1, "production"));
    assert_eq!((a2.version, a2.stage.as_str()), (2, "staging"));
    assert_eq!(other.version, 1, "names repeat across tenants");
    assert_eq!(a1.feature_names, Some(vec!["a".into(), "b".into()]));
    assert_eq!(
        a1.parameters,
        json!({"n_neighbors": 5, "metric": "euclidean"})
    );
    assert_eq!(a1.contamination, json!("auto"));
    assert_eq!(
        (a1.threshold, a1.training_time_ms, a1.artifact_bytes),
        (1.5, 1.25, 100)
    );
    let read_back = s.model_version("t1", "a", 1).await.unwrap().unwrap();
    assert_eq!(read_back, a1, "what is read back is what was written");
    let prod = s.production_version("t1", "a").await.unwrap().unwrap();
    assert_eq!(prod.version, 1);
    assert!(s.model_version("t2", "a", 2).await.unwrap().is_none());
    assert!(s.production_version("t1", "nope").await.unwrap().is_none());
    let versions: Vec<i64> = s
        .model_versions("t1", "a")
        .await
        .unwrap()
        .iter()
        .map(|v| v.version)
        .collect();
    assert_eq!(versions, [1, 2]);
    let mut deleted: Vec<i64> = s
        .delete_model("t1", "a")
        .await
        .unwrap()
        .iter()
        .map(|v| v.version)
        .collect();
    deleted.sort_unstable();
    assert_eq!(deleted, [1, 2]);
    assert!(s.model_versions("t1", "a").await.unwrap().is_empty());
    assert_eq!(s.model_versions("t2", "a").await.unwrap().len(), 1);
    let again = s.create_model_version(version("a", "t1")).await.unwrap();
    assert_eq!(
        (again.version, again.stage.as_str()),
        (1, "production"),
        "a deleted name starts over"
    );
}

pub async fn concurrent_trainings_of_one_name_get_consecutive_versions(s: &dyn MetadataStore) {
    let made = join_all((0..8).map(|_| s.create_model_version(version("busy", "t")))).await;
    let mut numbers: Vec<i64> = made.into_iter().map(|v| v.unwrap().version).collect();
    numbers.sort_unstable();
    assert_eq!(numbers, (1..=8).collect::<Vec<_>>());
    let production: Vec<_> = s
        .model_versions("t", "busy")
        .await
        .unwrap()
        .into_iter()
        .filter(|v| v.stage == "production")
        .collect();
    assert_eq!(production.len(), 1);
    assert_eq!(production[0].version, 1);
}

pub async fn models_are_listed_with_their_latest_and_production_versions(s: &dyn MetadataStore) {
    for name in ["b", "a", "b", "c"] {
        s.create_model_version(version(name, "t1")).await.unwrap();
    }
    s.create_model_version(version("z", "t2")).await.unwrap();
    let (models, total) = s.list_models("t1", Page::default()).await.unwrap();
    assert_eq!(total, 3);
    let names: Vec<&str> = models.iter().map(|m| m.model_name.as_str()).collect();
    assert_eq!(names, ["a", "b", "c"]);
    let b = &models[1];
    assert_eq!(
        (
            b.latest_version,
            b.production_version,
            b.version_count,
            b.algorithm.as_str()
        ),
        (2, Some(1), 2, "lof")
    );
    assert!(b.created_at <= b.updated_at);
    let page = Page {
        limit: 1,
        offset: 1,
    };
    let (models, total) = s.list_models("t1", page).await.unwrap();
    assert_eq!(
        (models.len(), total, models[0].model_name.as_str()),
        (1, 3, "b")
    );
}

pub async fn a_job_is_claimed_once_and_finished_once(s: &dyn MetadataStore) {
    let (j, created) = s.create_job(job(None)).await.unwrap();
    assert!(created);
    assert_eq!((j.status, j.attempts), (JobStatus::Queued, 0));
    assert_eq!(j.progress, json!({"rows_processed": 0}));
    let claimed = s.claim_next_job("w1").await.unwrap().unwrap();
    assert_eq!(
        (claimed.id.as_str(), claimed.status, claimed.attempts),
        (j.id.as_str(), JobStatus::Running, 1)
    );
    assert!(claimed.started_at.is_some());
    assert!(s.claim_next_job("w2").await.unwrap().is_none());
    s.update_job_progress(&j.id, &json!({"rows_processed": 5}))
        .await
        .unwrap();
    assert!(
        s.finish_job(&j.id, JobStatus::Succeeded, Some(&json!({"n": 1})), None)
            .await
            .unwrap()
    );
    assert!(
        !s.finish_job(&j.id, JobStatus::Failed, None, Some("late"))
            .await
            .unwrap()
    );
    let done = s.job(DEFAULT_TENANT, &j.id).await.unwrap().unwrap();
    assert_eq!(done.status, JobStatus::Succeeded);
    assert_eq!(done.result, Some(json!({"n": 1})));
    assert_eq!(done.progress, json!({"rows_processed": 5}));
    assert!(done.finished_at.is_some() && done.error.is_none());
    assert!(s.job("other", &j.id).await.unwrap().is_none());
    assert_eq!(s.job_by_id(&j.id).await.unwrap().unwrap(), done);
}

pub async fn an_idempotency_key_returns_the_first_job(s: &dyn MetadataStore) {
    let (a, _) = s.create_job(job(Some("k"))).await.unwrap();
    let (b, created) = s.create_job(job(Some("k"))).await.unwrap();
    assert!(!created);
    assert_eq!(a.id, b.id);
    let (c, created) = s.create_job(job_of("t2", Some("k"))).await.unwrap();
    assert!(created, "keys are per tenant");
    assert_ne!(a.id, c.id);
}

pub async fn concurrent_submissions_with_one_idempotency_key_create_one_job(s: &dyn MetadataStore) {
    let made = join_all((0..8).map(|_| s.create_job(job(Some("retry-me"))))).await;
    let made: Vec<_> = made.into_iter().map(Result::unwrap).collect();
    assert_eq!(made.iter().filter(|(_, created)| *created).count(), 1);
    assert!(made.iter().all(|(j, _)| j.id == made[0].0.id));
    let (_, total) = s.list_jobs(DEFAULT_TENANT, Page::default()).await.unwrap();
    assert_eq!(total, 1);
}

pub async fn jobs_are_listed_newest_first_per_tenant(s: &dyn MetadataStore) {
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(s.create_job(job(None)).await.unwrap().0.id);
    }
    s.create_job(job_of("t2", None)).await.unwrap();
    let (jobs, total) = s.list_jobs(DEFAULT_TENANT, Page::default()).await.unwrap();
    assert_eq!(total, 3);
    let listed: Vec<String> = jobs.into_iter().map(|j| j.id).collect();
    ids.reverse();
    assert_eq!(listed, ids);
    let page = Page {
        limit: 1,
        offset: 2,
    };
    let (jobs, _) = s.list_jobs(DEFAULT_TENANT, page).await.unwrap();
    assert_eq!(jobs[0].id, ids[2]);
}

pub async fn a_queued_job_is_cancelled_at_once_and_a_running_one_is_asked_to_stop(
    s: &dyn MetadataStore,
) {
    let (a, _) = s.create_job(job(None)).await.unwrap();
    let (b, _) = s.create_job(job(None)).await.unwrap();
    let running = s.claim_next_job("w").await.unwrap().unwrap();
    assert_eq!(running.id, a.id);
    match s.request_job_cancel(DEFAULT_TENANT, &b.id).await.unwrap() {
        CancelOutcome::Cancelled(j) => {
            assert_eq!(j.status, JobStatus::Cancelled);
            assert!(j.finished_at.is_some());
        }
        other => panic!("expected Cancelled, got {other:?}"),
    }
    match s.request_job_cancel(DEFAULT_TENANT, &a.id).await.unwrap() {
        CancelOutcome::Requested(j) => {
            assert!(j.cancel_requested);
            assert_eq!(j.status, JobStatus::Running);
        }
        other => panic!("expected Requested, got {other:?}"),
    }
    assert!(matches!(
        s.request_job_cancel(DEFAULT_TENANT, &b.id).await.unwrap(),
        CancelOutcome::AlreadyFinished(_)
    ));
    assert!(matches!(
        s.request_job_cancel("other", &a.id).await.unwrap(),
        CancelOutcome::NotFound
    ));
    assert!(s.claim_next_job("w").await.unwrap().is_none());
}

pub async fn interrupted_jobs_are_requeued_unless_cancelled(s: &dyn MetadataStore) {
    let (a, _) = s.create_job(job(None)).await.unwrap();
    let (b, _) = s.create_job(job(None)).await.unwrap();
    s.claim_next_job("w").await.unwrap();
    s.claim_next_job("w").await.unwrap();
    assert!(matches!(
        s.request_job_cancel(DEFAULT_TENANT, &b.id).await.unwrap(),
        CancelOutcome::Requested(_)
    ));
    assert_eq!(s.requeue_interrupted_jobs().await.unwrap(), 1);
    assert_eq!(
        s.job_by_id(&a.id).await.unwrap().unwrap().status,
        JobStatus::Queued
    );
    assert_eq!(
        s.job_by_id(&b.id).await.unwrap().unwrap().status,
        JobStatus::Cancelled
    );
    assert!(s.release_job(&a.id).await.is_ok_and(|released| !released));
}

pub async fn a_delivered_job_is_claimed_by_one_worker_unless_taken_over(s: &dyn MetadataStore) {
    let (j, _) = s.create_job(job(None)).await.unwrap();
    let first = s.claim_job(&j.id, "w1", false).await.unwrap().unwrap();
    assert_eq!((first.status, first.attempts), (JobStatus::Running, 1));
    assert!(
        s.claim_job(&j.id, "w2", false).await.unwrap().is_none(),
        "a second delivery does not run it twice"
    );
    let taken = s.claim_job(&j.id, "w2", true).await.unwrap().unwrap();
    assert_eq!(taken.attempts, 2, "a take-over is another attempt");
    assert_eq!(taken.started_at, first.started_at);
    assert!(
        s.claim_job(&j.id, "w2", true).await.unwrap().is_none(),
        "a worker does not take over its own job"
    );
    assert!(
        s.finish_claimed_job(&j.id, "w2", JobStatus::Succeeded, Some(&json!({})), None)
            .await
            .unwrap()
    );
    assert!(s.claim_job(&j.id, "w3", true).await.unwrap().is_none());
    assert!(
        s.claim_job("no-such-job", "w3", true)
            .await
            .unwrap()
            .is_none()
    );
}

pub async fn writes_of_a_worker_that_lost_its_job_are_refused(s: &dyn MetadataStore) {
    let (j, _) = s.create_job(job(None)).await.unwrap();
    s.claim_job(&j.id, "w1", false).await.unwrap().unwrap();
    s.claim_job(&j.id, "w2", true).await.unwrap().unwrap();
    assert!(
        !s.finish_claimed_job(&j.id, "w1", JobStatus::Succeeded, Some(&json!({})), None)
            .await
            .unwrap()
    );
    assert!(
        s.release_claimed_job(&j.id, "w1", None, Utc::now())
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        s.job_by_id(&j.id).await.unwrap().unwrap().status,
        JobStatus::Running
    );
    assert!(
        s.finish_claimed_job(&j.id, "w2", JobStatus::Failed, None, Some("bad row 3"))
            .await
            .unwrap()
    );
    let done = s.job_by_id(&j.id).await.unwrap().unwrap();
    assert_eq!(
        (done.status, done.error.as_deref()),
        (JobStatus::Failed, Some("bad row 3"))
    );
}

pub async fn a_released_job_waits_for_its_backoff_and_keeps_the_reason(s: &dyn MetadataStore) {
    let (j, _) = s.create_job(job(None)).await.unwrap();
    let now = Utc::now();
    let queued_at = async |at| s.queued_job_ids(at, 10).await.unwrap();
    let just_j = vec![j.id.clone()];
    let seconds = Duration::seconds;
    assert!(
        queued_at(now - seconds(60)).await.is_empty(),
        "not yet overdue"
    );
    assert_eq!(queued_at(now + seconds(1)).await, just_j);
    s.claim_job(&j.id, "w1", false).await.unwrap().unwrap();
    assert!(queued_at(now + seconds(1)).await.is_empty());
    let later = now + seconds(30);
    let released = s
        .release_claimed_job(&j.id, "w1", Some("storage unreachable"), later)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(released.status, JobStatus::Queued);
    assert_eq!(released.error.as_deref(), Some("storage unreachable"));
    assert!(
        queued_at(now + seconds(10)).await.is_empty(),
        "still backing off"
    );
    assert_eq!(queued_at(later + seconds(1)).await, just_j);
    let again = s.claim_job(&j.id, "w2", false).await.unwrap().unwrap();
    assert_eq!(again.attempts, 2);
}

pub async fn a_released_job_whose_cancel_was_asked_ends_cancelled(s: &dyn MetadataStore) {
    let (j, _) = s.create_job(job(None)).await.unwrap();
    s.claim_job(&j.id, "w1", false).await.unwrap().unwrap();
    s.request_job_cancel(DEFAULT_TENANT, &j.id).await.unwrap();
    let released = s
        .release_claimed_job(&j.id, "w1", None, Utc::now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(released.status, JobStatus::Cancelled);
    assert!(released.finished_at.is_some());
}

pub async fn running_jobs_are_listed_with_their_workers(s: &dyn MetadataStore) {
    let (a, _) = s.create_job(job(None)).await.unwrap();
    let (b, _) = s.create_job(job(None)).await.unwrap();
    s.create_job(job(None)).await.unwrap();
    s.claim_job(&a.id, "w1", false).await.unwrap().unwrap();
    s.claim_job(&b.id, "w2", false).await.unwrap().unwrap();
    assert_eq!(
        s.running_jobs(10).await.unwrap(),
        vec![
            (a.id.clone(), Some("w1".to_string())),
            (b.id.clone(), Some("w2".to_string()))
        ]
    );
    assert_eq!(s.running_jobs(1).await.unwrap().len(), 1);
}

pub async fn job_counts_count_queued_and_running(s: &dyn MetadataStore) {
    assert_eq!(s.job_counts().await.unwrap(), (0, 0));
    for _ in 0..3 {
        s.create_job(job(None)).await.unwrap();
    }
    let running = s.claim_next_job("w").await.unwrap().unwrap();
    assert_eq!(s.job_counts().await.unwrap(), (2, 1));
    s.finish_job(&running.id, JobStatus::Succeeded, None, None)
        .await
        .unwrap();
    assert_eq!(s.job_counts().await.unwrap(), (2, 0));
    assert!(s.ping().await.is_ok());
}

pub async fn a_job_that_registers_twice_gets_its_first_version(s: &dyn MetadataStore) {
    let first = s
        .create_model_version(NewModelVersion {
            job_id: Some("job-1".into()),
            ..version("m", "t")
        })
        .await
        .unwrap();
    let again = s
        .create_model_version(NewModelVersion {
            job_id: Some("job-1".into()),
            artifact_path: "models/t/rerun".into(),
            ..version("m", "t")
        })
        .await
        .unwrap();
    assert_eq!(again, first, "a re-run finds the version of its first run");
    let other = s
        .create_model_version(NewModelVersion {
            job_id: Some("job-2".into()),
            ..version("m", "t")
        })
        .await
        .unwrap();
    assert_eq!(other.version, 2);
    assert_eq!(s.model_versions("t", "m").await.unwrap().len(), 2);
}

fn stage(to: &str, reason: &str) -> NewStage {
    NewStage {
        to: to.into(),
        by: "key:k2".into(),
        reason: reason.into(),
        note: Some(format!("{reason} it")),
    }
}

pub async fn stage_changes_keep_one_production_version_and_their_history(s: &dyn MetadataStore) {
    for _ in 0..3 {
        s.create_model_version(version("m", "t")).await.unwrap();
    }
    let v1 = s.model_version("t", "m", 1).await.unwrap().unwrap();
    assert_eq!(v1.stage_history.len(), 1);
    assert_eq!(v1.stage_history[0].to, "production");
    assert_eq!(
        v1.stage_history[0].by, "key:k1",
        "the trainer registered it"
    );
    assert_eq!(
        v1.lineage,
        Some(json!({"trained_by": "key:k1", "rows": 10}))
    );

    let c = s
        .change_stage("t", "m", 3, stage("production", "promote"))
        .await
        .unwrap();
    assert_eq!((c.from.as_str(), c.replaced), ("staging", Some(1)));
    assert_eq!(c.version.stage, "production");
    let event = c.version.stage_history.last().unwrap();
    assert_eq!(
        (
            event.from.as_deref(),
            event.to.as_str(),
            event.reason.as_str()
        ),
        (Some("staging"), "production", "promote")
    );
    assert_eq!(event.note.as_deref(), Some("promote it"));
    let v1 = s.model_version("t", "m", 1).await.unwrap().unwrap();
    assert_eq!(v1.stage, "archived");
    assert_eq!(v1.stage_history.last().unwrap().reason, "replaced");
    assert_eq!(
        s.production_version("t", "m")
            .await
            .unwrap()
            .unwrap()
            .version,
        3
    );

    for (v, to, why) in [
        (3, "production", "already"),
        (3, "archived", "in production"),
    ] {
        match s.change_stage("t", "m", v, stage(to, "x")).await {
            Err(StoreError::Conflict(m)) => assert!(m.contains(why), "{m}"),
            other => panic!("{v} -> {to}: {other:?}"),
        }
    }
    assert!(matches!(
        s.change_stage("t", "m", 7, stage("production", "promote"))
            .await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        s.change_stage("other", "m", 2, stage("production", "promote"))
            .await,
        Err(StoreError::NotFound(_)),
    ));
    // Concurrent promotions of one model: one production version whatever the order.
    let (a, b) = futures::join!(
        s.change_stage("t", "m", 1, stage("production", "promote")),
        s.change_stage("t", "m", 2, stage("production", "promote")),
    );
    assert!(a.is_ok() && b.is_ok(), "{a:?} {b:?}");
    let production: Vec<i64> = s
        .model_versions("t", "m")
        .await
        .unwrap()
        .iter()
        .filter(|v| v.stage == "production")
        .map(|v| v.version)
        .collect();
    assert_eq!(production.len(), 1, "{production:?}");
}

pub async fn a_model_has_at_most_one_rollout_per_tenant(s: &dyn MetadataStore) {
    assert_eq!(s.rollout("t", "m").await.unwrap(), None);
    s.set_rollout("t", "m", &json!({"version": 2}))
        .await
        .unwrap();
    s.set_rollout("t", "m", &json!({"version": 3}))
        .await
        .unwrap();
    assert_eq!(
        s.rollout("t", "m").await.unwrap(),
        Some(json!({"version": 3}))
    );
    assert_eq!(s.rollout("other", "m").await.unwrap(), None);
    assert_eq!(
        s.end_rollout("t", "m").await.unwrap(),
        Some(json!({"version": 3}))
    );
    assert_eq!(s.end_rollout("t", "m").await.unwrap(), None);
    assert_eq!(s.rollout("t", "m").await.unwrap(), None);
}

fn user(tenant: &str, username: &str) -> NewUser {
    NewUser {
        tenant: tenant.into(),
        username: username.into(),
        password_hash: format!("$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$hash-of-{username}"),
        scopes: vec![Scope::Read, Scope::Admin],
    }
}

pub async fn users_have_unique_names_are_listed_per_tenant_and_disabled(s: &dyn MetadataStore) {
    let alice = s.create_user(user("t1", "alice")).await.unwrap();
    assert_eq!(alice.scopes, vec![Scope::Read, Scope::Admin]);
    assert!(alice.is_active());
    let bob = s.create_user(user("t1", "bob")).await.unwrap();
    s.create_user(user("t2", "carol")).await.unwrap();
    // Usernames are unique across tenants: login names no tenant.
    let taken = s.create_user(user("t2", "alice")).await.unwrap_err();
    assert!(matches!(taken, StoreError::Conflict(_)), "{taken:?}");

    let found = s.find_user_by_username("alice").await.unwrap().unwrap();
    assert_eq!(found, alice);
    assert_eq!(s.user_by_id(&bob.id).await.unwrap().unwrap(), bob);
    assert!(s.find_user_by_username("nobody").await.unwrap().is_none());
    let listed: Vec<String> = s
        .list_users("t1")
        .await
        .unwrap()
        .into_iter()
        .map(|u| u.username)
        .collect();
    assert_eq!(listed, vec!["bob", "alice"], "newest first, tenant t1 only");

    // Another tenant cannot disable it; its own tenant can, and it stays disabled.
    assert!(!s.disable_user("t2", &alice.id).await.unwrap());
    assert!(s.disable_user("t1", &alice.id).await.unwrap());
    let disabled = s.user_by_id(&alice.id).await.unwrap().unwrap();
    assert!(!disabled.is_active());
    assert!(s.disable_user("t1", &alice.id).await.unwrap());
    assert_eq!(
        s.user_by_id(&alice.id).await.unwrap().unwrap().disabled_at,
        disabled.disabled_at,
        "disabling again keeps the first time"
    );
}

fn audit(tenant: &str, actor: &str, action: &str, outcome: i64, at_s: i64) -> NewAuditEntry {
    NewAuditEntry {
        tenant: tenant.into(),
        actor: actor.into(),
        action: action.into(),
        resource: "/api/v1/models/m".into(),
        outcome,
        request_id: format!("req-{at_s}"),
        client_addr: Some("127.0.0.1:5000".into()),
        created_at: chrono::DateTime::from_timestamp(1_800_000_000 + at_s, 0).unwrap(),
        detail: (outcome == 200).then(|| json!({"from": "staging", "to": "production"})),
    }
}

pub async fn audit_rows_are_appended_in_batches_and_filtered_per_tenant(s: &dyn MetadataStore) {
    let mut rows = vec![
        audit("t1", "key:a", "POST /api/v1/models", 201, 0),
        audit("t1", "key:a", "DELETE /api/v1/models/{name}", 200, 10),
        audit("t1", "user:bob", "POST /api/v1/models", 403, 20),
        audit("t2", "key:z", "POST /api/v1/models", 201, 30),
    ];
    // A batch larger than one statement holds.
    for i in 0..1100 {
        rows.push(audit("t3", "key:bulk", "POST /api/v1/batch", 202, 100 + i));
    }
    s.append_audit(&rows).await.unwrap();
    s.append_audit(&[]).await.unwrap();

    let all = AuditFilter::default();
    let (t1, total) = s.list_audit("t1", &all, Page::default()).await.unwrap();
    assert_eq!(total, 3);
    assert_eq!(t1.len(), 3);
    assert_eq!(t1[0].actor, "user:bob", "newest first");
    assert_eq!(t1[0].outcome, 403);
    assert_eq!(t1[0].request_id, "req-20");
    assert_eq!(t1[0].client_addr.as_deref(), Some("127.0.0.1:5000"));
    assert_eq!(t1[0].resource, "/api/v1/models/m");
    assert_eq!(t1[2].created_at, rows[0].created_at);
    assert!(t1.iter().all(|e| e.tenant == "t1"));

    let by_actor = AuditFilter {
        actor: Some("key:a".into()),
        ..AuditFilter::default()
    };
    assert_eq!(
        s.list_audit("t1", &by_actor, Page::default())
            .await
            .unwrap()
            .1,
        2
    );
    let by_action_and_outcome = AuditFilter {
        action: Some("POST /api/v1/models".into()),
        outcome: Some(201),
        ..AuditFilter::default()
    };
    let (found, n) = s
        .list_audit("t1", &by_action_and_outcome, Page::default())
        .await
        .unwrap();
    assert_eq!((n, found[0].request_id.as_str()), (1, "req-0"));
    let window = AuditFilter {
        since: Some(rows[1].created_at),
        until: Some(rows[2].created_at),
        ..AuditFilter::default()
    };
    let (found, n) = s.list_audit("t1", &window, Page::default()).await.unwrap();
    assert_eq!(
        (n, found[0].request_id.as_str()),
        (1, "req-10"),
        "since inclusive, until exclusive"
    );

    let (page, total) = s
        .list_audit(
            "t3",
            &all,
            Page {
                limit: 100,
                offset: 1000,
            },
        )
        .await
        .unwrap();
    assert_eq!(total, 1100);
    assert_eq!(page.len(), 100);
    assert_eq!(page[0].request_id, "req-199");
    let (none, n) = s.list_audit("t9", &all, Page::default()).await.unwrap();
    assert!(none.is_empty() && n == 0);
}
