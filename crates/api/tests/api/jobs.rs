use reqwest::Method;
use serde_json::json;

use crate::helpers::{
    csv_source, spawn_app, spawn_app_with_model_and_source, start, test_settings,
};

#[tokio::test]
async fn a_job_cancelled_while_running_stops_and_is_reported_cancelled() {
    let app = spawn_app_with_model_and_source("big.csv", 20_000).await;
    let id = app
        .submit_batch(&json!({"data_source": "big.csv", "model_name": "m"}))
        .await;

    let claimed = app.queue.claim_next().await.unwrap().expect("a queued job");
    assert_eq!(app.job(&id).await.body["status"], "running");
    let cancel = app.delete(&format!("/api/v1/jobs/{id}")).await;
    assert_eq!(cancel.assert_status(202)["cancel_requested"], true);
    app.queue.execute(claimed).await.unwrap();

    let job = app.job(&id).await;
    assert_eq!(job.body["status"], "cancelled", "{}", job.body);
    assert!(job.body["finished_at"].is_string());
    let (result, job) = (
        format!("/api/v1/jobs/{id}/result"),
        format!("/api/v1/jobs/{id}"),
    );
    app.assert_errors(&[
        (Method::GET, &result, 409, "conflict"),
        (Method::DELETE, &job, 409, "conflict"),
    ])
    .await;
}

#[tokio::test]
async fn a_queued_job_cancelled_never_runs() {
    let app = spawn_app().await;
    app.write_source("d.csv", &csv_source(10, 2));
    let id = app.submit_batch(&json!({"data_source": "d.csv"})).await;
    let r = app.delete(&format!("/api/v1/jobs/{id}")).await;
    assert_eq!(r.assert_status(200)["status"], "cancelled");
    assert_eq!(app.drain_jobs().await, 0);
}

#[tokio::test]
async fn a_job_queued_before_a_restart_runs_after_it() {
    let app = spawn_app().await;
    app.write_source("d.csv", &csv_source(50, 2));
    let batch = json!({"data_source": "d.csv"});
    let queued = app.submit_batch(&batch).await;
    let interrupted = app.submit_batch(&batch).await;
    // One job is claimed (running) when the server stops, one is still queued.
    let claimed = app.queue.claim_next().await.unwrap().unwrap();
    assert_eq!(claimed.id(), queued);
    let (dir, data_dir, key) = app.stop().await;
    drop(claimed);

    let dir = dir.unwrap();
    let mut settings = test_settings(dir.path());
    settings.storage.data_dir = data_dir;
    let app = start(settings, Some(key)).await;
    for id in [&queued, &interrupted] {
        assert_eq!(app.job(id).await.body["status"], "queued");
    }
    assert_eq!(app.drain_jobs().await, 2);
    for id in [&queued, &interrupted] {
        let job = app.job(id).await;
        assert_eq!(job.body["status"], "succeeded", "{}", job.body);
        assert_eq!(job.body["result"]["n_samples"], 50);
    }
    drop(dir);
}

#[tokio::test]
async fn jobs_are_listed_and_unknown_jobs_are_not_found() {
    let app = spawn_app().await;
    app.write_source("d.csv", &csv_source(10, 2));
    app.batch(&json!({"data_source": "d.csv"}))
        .await
        .assert_status(202);
    let list = app.get("/api/v1/jobs").await;
    assert_eq!(list.assert_status(200)["total"], 1);
    assert_eq!(list.body["jobs"][0]["kind"], "batch");
    app.assert_errors(&[
        (Method::GET, "/api/v1/jobs/no-such-job", 404, "not_found"),
        (Method::DELETE, "/api/v1/jobs/no-such-job", 404, "not_found"),
        (Method::GET, "/api/v1/jobs?limit=0", 422, "invalid_input"),
    ])
    .await;
}
