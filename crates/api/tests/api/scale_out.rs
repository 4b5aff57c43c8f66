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
    a_canary_flagging_five_times_production_is_rolled_back_on_both_instances
        => canary_rolled_back_everywhere,
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

/// A canary trained on a sliver of the data (on the traffic below it flags far more than
/// production's 5%) under predicts spread over both instances: whichever instance's guard
/// catches it first ends it, and within a second neither instance routes to it any more.
async fn canary_rolled_back_everywhere(redis: RedisKind) {
    with_postgres_and(redis, async |env| {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, key) = two_instances(dir.path(), &env).await;
        let api_a = Api::new(&a.address, &key);
        let api_b = api_a.at(&b.address);
        let row = |i: usize, spread: f64, low: f64| -> Vec<f64> {
            (0..3)
                .map(|j| low + spread * ((i * 7 + j * 13) % 17) as f64 / 17.0)
                .collect()
        };
        let train = |data: Vec<Vec<f64>>, promote: &str| {
            json!({"model_name": "c", "algorithm": "isolation_forest", "contamination": 0.05,
                   "n_estimators": 50, "random_state": 3, "promote": promote, "data": data})
        };
        let wide: Vec<Vec<f64>> = (0..300).map(|i| row(i, 1.0, 0.0)).collect();
        let narrow: Vec<Vec<f64>> = (0..300).map(|i| row(i, 0.1, 0.2)).collect();
        api_a
            .post("/api/v1/models", &train(wide, "always"))
            .await
            .assert_status(201);
        api_b
            .post("/api/v1/models", &train(narrow, "manual"))
            .await
            .assert_status(201);
        let canary = json!({"version": 2, "traffic_percent": 50});
        let r = api_a
            .call(Method::PUT, "/api/v1/models/c/canary")
            .json(&canary)
            .send()
            .await;
        r.assert_status(200);

        let (mut served, mut to_canary, mut caught_at) = (0, 0, None);
        for i in 0..600usize {
            let api = if i % 2 == 0 { &api_a } else { &api_b };
            let rows: Vec<Vec<f64>> = (0..10).map(|k| row(i * 10 + k + 1, 1.0, 0.0)).collect();
            let r = api
                .call(Method::POST, "/api/v1/models/c/predict")
                .header("x-routing-key", &format!("entity-{i}"))
                .json(&json!({"data": rows}))
                .send()
                .await;
            let b = r.assert_status(200);
            served += 1;
            if b["variant"] == "canary" {
                to_canary += 1;
            }
            if api_a.get("/api/v1/models/c/canary").await.status == StatusCode::NOT_FOUND
                || api_b.get("/api/v1/models/c/canary").await.status == StatusCode::NOT_FOUND
            {
                caught_at = Some(i);
                break;
            }
        }
        let caught_at = caught_at.expect("a guard ended the canary");
        println!("canary ended after {served} predicts ({to_canary} answered by the canary)");
        assert!(to_canary > 0, "the canary took part before it was ended");
        // Within a second both instances know: no canary, every answer from production.
        testkit::wait::wait(
            "both instances ended the canary",
            Duration::from_millis(1500),
        )
        .every(Duration::from_millis(50))
        .until(async || {
            for api in [&api_a, &api_b] {
                if api.get("/api/v1/models/c/canary").await.status != StatusCode::NOT_FOUND {
                    return Err(format!("{} still has the canary", api.base()));
                }
            }
            Ok(())
        })
        .await;
        for i in 0..40 {
            let api = if i % 2 == 0 { &api_a } else { &api_b };
            let r = api
                .call(Method::POST, "/api/v1/models/c/predict")
                .header("x-routing-key", &format!("entity-{i}"))
                .json(&json!({"data": [row(i, 1.0, 0.0)]}))
                .send()
                .await;
            let b = r.assert_status(200);
            assert_eq!(
                (b["model_version"].as_i64(), b["variant"].as_str()),
                (Some(1), Some("production")),
                "after the rollback, on {} ({caught_at} predicts in)",
                api.base()
            );
        }
        // The guard that caught it is audited once, by the service.
        let audit = api_a
            .get("/api/v1/audit?action=model_rollout&limit=100")
            .await;
        let ended: Vec<&serde_json::Value> = audit.assert_status(200)["entries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["detail"]["rollout"] == "ended")
            .collect();
        assert_eq!(ended.len(), 1, "{ended:?}");
        assert_eq!(ended[0]["detail"]["why"], "anomaly_rate", "{}", ended[0]);
        assert_eq!(ended[0]["actor"], "pynomaly");
        a.shut().await;
        b.shut().await;
    })
    .await;
}
