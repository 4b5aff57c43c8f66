//! The scale-out deployment in one test process: two API instances on one Postgres
//! database and one Redis prefix, and a worker (the job parts `pynomaly worker` opens,
//! running jobs and serving nothing). Skipped, with the reason printed, without
//! `PYNOMALY_TEST_DATABASE_URL` and `PYNOMALY_TEST_REDIS_URL`. Each test also runs on a
//! 3-master Redis Cluster it starts (`…::on_a_redis_cluster`, `--ignored`: `.ci/run` runs
//! them).

use std::path::Path;
use std::time::Duration;

use pynomaly_runtime::{Secret, Settings, open_jobs};
use reqwest::{Method, StatusCode};
use serde_json::json;
use testkit::{Api, RedisKind, ScaleOut, eventually, with_postgres_and};

use crate::helpers::{Instance, instance};

pub(crate) fn settings(root: &Path, name: &str, env: &ScaleOut) -> Settings {
    let mut s = Settings::with_data_dir(root.join(name));
    s.server.bind = "127.0.0.1:0".parse().unwrap();
    s.server.shutdown_timeout = Duration::from_secs(5);
    // Shared by the deployment: sources and storage (a directory here, S3 in production).
    s.storage.sources_dir = root.join("sources");
    s.storage.artifacts_url = root.join("storage").display().to_string();
    s.database.url = Some(Secret::new(&env.database_url));
    s.database.max_connections = 4;
    s.queue.redis_url = Some(Secret::new(&env.redis_url));
    s.queue.redis_prefix = env.redis_prefix.clone();
    s.queue.job_lease = Duration::from_secs(5);
    s.queue.batch_chunk_rows = 100;
    s.security.secret_key = Some(Secret::new("11".repeat(32)));
    s
}

/// Two instances on this test's database and Redis prefix, in `root`; the admin key the
/// first one created.
pub(crate) async fn two_instances(root: &Path, env: &ScaleOut) -> (Instance, Instance, String) {
    let a = instance(settings(root, "a", env)).await;
    let b = instance(settings(root, "b", env)).await;
    let key = a
        .created_admin_key
        .clone()
        .expect("the first instance creates the admin key");
    assert!(
        b.created_admin_key.is_none(),
        "one admin key for the deployment"
    );
    (a, b, key)
}

testkit::on_each_redis!(
    two_instances_and_a_worker_share_models_and_jobs => share_models_and_jobs,
    a_model_deleted_through_one_instance_is_gone_from_the_other_within_a_second
        => model_changes_reach_the_other_instance_within_a_second,
);

async fn share_models_and_jobs(redis: RedisKind) {
    with_postgres_and(redis, async |env| {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("sources")).unwrap();
        std::fs::write(root.join("sources/data.csv"), testkit::data::wave_csv(1000)).unwrap();
        let (a, b, key) = two_instances(root, &env).await;
        let api_a = Api::new(&a.address, &key);
        let api_b = api_a.at(&b.address);

        // A model trained through one instance is served by the other.
        let data: Vec<Vec<f64>> = (0..50).map(|i| vec![f64::from(i % 7), f64::from(i % 5)]).collect();
        let trained = api_a.post("/api/v1/models",
            &json!({"model_name": "shared", "algorithm": "isolation_forest", "data": data, "random_state": 3})).await;
        let trained = trained.assert_status(201);
        let predicted = api_b.post("/api/v1/models/shared/predict", &json!({"data": [[1.0, 2.0], [50.0, -50.0]]})).await;
        let predicted = predicted.assert_status(200);
        assert_eq!(predicted["threshold"], trained["threshold"]);
        assert_eq!(predicted["predictions"][1], -1);

        // Deleted through A, then trained again under the same name with other data: B
        // drops its cached copy (Redis pub/sub) and serves the new model.
        let deleted = api_a.delete("/api/v1/models/shared").await;
        assert!(deleted.status.is_success(), "{}", deleted.status);
        // Pub/sub delivery is asynchronous: B answers as before for a moment.
        let predict_b = async || api_b.post("/api/v1/models/shared/predict", &json!({"data": [[1.0, 2.0]]})).await;
        eventually("a deleted model is not served by another instance", Duration::from_secs(5), async || {
            let answer = predict_b().await;
            if answer.status == StatusCode::NOT_FOUND { Ok(()) } else { Err(answer.status.to_string()) }
        }).await;
        let other: Vec<Vec<f64>> = (0..80).map(|i| vec![f64::from(i % 11) * 3.0, f64::from(i % 13)]).collect();
        let retrained = api_a.post("/api/v1/models",
            &json!({"model_name": "shared", "algorithm": "isolation_forest", "data": other, "random_state": 4, "contamination": 0.1})).await;
        let retrained = retrained.assert_status(201);
        assert_eq!(retrained["version"], 1);
        let predicted = eventually("B serves the new model, not its old copy", Duration::from_secs(5), async || {
            let answer = predict_b().await;
            if answer.body["threshold"] == retrained["threshold"] { Ok(answer) } else { Err(answer.body.to_string()) }
        }).await;
        assert_eq!(predicted.status, StatusCode::OK, "{}", predicted.body);
        assert_ne!(retrained["threshold"], trained["threshold"]);

        // A batch submitted twice (through both instances) with one key is one job.
        let batch = json!({"data_source": "data.csv", "algorithm": "isolation_forest", "random_state": 1});
        let submit = async |api: &Api| api.call(Method::POST, "/api/v1/batch").json(&batch).header("Idempotency-Key", "batch-1").send().await;
        let submitted = submit(&api_a).await;
        let submitted = submitted.assert_status(202);
        let again = submit(&api_b).await;
        assert_eq!(again.body["job_id"], submitted["job_id"]);
        let job_id = submitted["job_id"].as_str().unwrap().to_string();

        // No worker yet: the servers run no jobs themselves. An absence: time has to pass
        // for it to show.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let job = api_b.get(&format!("/api/v1/jobs/{job_id}")).await;
        assert_eq!(job.body["status"], "queued", "{}", job.body);
        // Queued jobs and no worker to run them: degraded, saying why; still ready to serve.
        let health = api_a.get("/health").await;
        let health = health.assert_status(200);
        assert_eq!(health["status"], "degraded", "{health}");
        assert_eq!(health["checks"]["workers"]["status"], "none", "{health}");
        let reasons = health["reasons"].to_string();
        assert!(reasons.contains("no live worker"), "{health}");
        api_a.get("/health/ready").await.assert_status(200);

        let worker = open_jobs(&settings(root, "w", &env), None)
            .await
            .expect("worker builds");
        let running = std::sync::Arc::clone(&worker.queue).start_workers(2);
        let job = api_b.wait_job(&job_id, Duration::from_secs(60)).await;
        assert_eq!(job["status"], "succeeded", "{job}");
        assert_eq!(job["result"]["n_samples"], 1000);
        let health = api_a.get("/health").await;
        let health = health.assert_status(200);
        assert_eq!(health["checks"]["queue"]["kind"], "redis", "{health}");
        assert_eq!(health["checks"]["workers"]["active"], 1, "{health}");
        assert_eq!(health["status"], "healthy", "{health}");
        assert_eq!(health["reasons"], serde_json::json!([]), "{health}");

        worker.queue.shutdown();
        for task in running {
            task.await.unwrap();
        }
        worker.background.cancel();
        worker.meta.close().await;
        a.shut().await;
        b.shut().await;
    })
    .await;
}

/// Model events: an instance that cached a model stops serving it within a second of its
/// deletion through another instance (polling every 50 ms; the budget is 1.5 s so a
/// loaded machine's scheduling is not what fails it).
async fn model_changes_reach_the_other_instance_within_a_second(redis: RedisKind) {
    with_postgres_and(redis, async |env| {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, key) = two_instances(dir.path(), &env).await;
        let api_a = Api::new(&a.address, &key);
        let api_b = api_a.at(&b.address);
        let data: Vec<Vec<f64>> = (0..40)
            .map(|i| vec![f64::from(i % 7), f64::from(i % 3)])
            .collect();
        let model = json!({"model_name": "m", "algorithm": "isolation_forest", "data": data});
        api_a
            .post("/api/v1/models", &model)
            .await
            .assert_status(201);
        let row = json!({"data": [[1.0, 2.0]]});
        // B loads and caches it.
        let predict_b = async || api_b.post("/api/v1/models/m/predict", &row).await;
        predict_b().await.assert_status(200);
        let deleted = api_a.delete("/api/v1/models/m").await;
        assert!(deleted.status.is_success(), "{}", deleted.status);
        testkit::wait::wait(
            "B stops serving the deleted model",
            Duration::from_millis(1500),
        )
        .every(Duration::from_millis(50))
        .until(async || {
            let r = predict_b().await;
            if r.status == StatusCode::NOT_FOUND {
                return Ok(());
            }
            assert_eq!(r.status, StatusCode::OK, "{}", r.body);
            Err("still served from B's cache".to_string())
        })
        .await;
        a.shut().await;
        b.shut().await;
    })
    .await;
}
