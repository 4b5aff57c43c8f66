//! The scale-out deployment in one test process: two API instances on one Postgres
//! database and one Redis prefix, and a worker (the job parts `pynomaly worker` opens,
//! running jobs and serving nothing). Skipped, with the reason printed, without
//! `PYNOMALY_TEST_DATABASE_URL` and `PYNOMALY_TEST_REDIS_URL`.

use std::path::Path;
use std::time::{Duration, Instant};

use pynomaly_api::Application;
use pynomaly_jobs::RedisQueue;
use pynomaly_runtime::{Secret, Settings, open_jobs};
use pynomaly_store::testing::TestDatabase;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub(crate) struct Instance {
    pub(crate) address: String,
    stop: oneshot::Sender<()>,
    handle: JoinHandle<()>,
}

pub(crate) async fn instance(settings: Settings) -> (Instance, Option<String>) {
    let app = Application::build(settings).await.expect("instance builds");
    let key = app.admin_key().map(str::to_string);
    let address = format!("http://{}", app.local_addr());
    let (stop, rx) = oneshot::channel::<()>();
    let handle = tokio::spawn(async move {
        app.run_until(async {
            let _ = rx.await;
        })
        .await
        .expect("instance runs");
    });
    (
        Instance {
            address,
            stop,
            handle,
        },
        key,
    )
}

impl Instance {
    pub(crate) async fn shut(self) {
        let _ = self.stop.send(());
        let _ = self.handle.await;
    }
}

pub(crate) fn settings(root: &Path, name: &str, db: &str, redis: &str, prefix: &str) -> Settings {
    let mut s = Settings::with_data_dir(root.join(name));
    s.server.bind = "127.0.0.1:0".parse().unwrap();
    s.server.shutdown_timeout = Duration::from_secs(5);
    // Shared by the deployment: sources and storage (a directory here, S3 in production).
    s.storage.sources_dir = root.join("sources");
    s.storage.artifacts_url = root.join("storage").display().to_string();
    s.database.url = Some(Secret::new(db));
    s.database.max_connections = 4;
    s.queue.redis_url = Some(Secret::new(redis));
    s.queue.redis_prefix = prefix.to_string();
    s.queue.job_lease = Duration::from_secs(5);
    s.queue.batch_chunk_rows = 100;
    s.security.secret_key = Some(Secret::new("11".repeat(32)));
    s
}

async fn call(
    client: &reqwest::Client,
    key: &str,
    method: reqwest::Method,
    url: String,
    body: Option<Value>,
    idempotency_key: Option<&str>,
) -> (StatusCode, Value) {
    let mut req = client.request(method, url).bearer_auth(key);
    if let Some(b) = body {
        req = req.json(&b);
    }
    if let Some(k) = idempotency_key {
        req = req.header("Idempotency-Key", k);
    }
    let resp = req.send().await.expect("request sent");
    let status = resp.status();
    let body = resp.json().await.unwrap_or(Value::Null);
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_and_a_worker_share_models_and_jobs() {
    let Ok(redis) = std::env::var("PYNOMALY_TEST_REDIS_URL") else {
        eprintln!(
            "SKIPPED two_instances_and_a_worker_share_models_and_jobs: PYNOMALY_TEST_REDIS_URL is unset"
        );
        return;
    };
    TestDatabase::run("two_instances_and_a_worker_share_models_and_jobs", |db| async move {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let prefix = format!("pynomaly-test-{}", uuid::Uuid::new_v4().simple());
        std::fs::create_dir_all(root.join("sources")).unwrap();
        let mut csv = String::from("x,y\n");
        for i in 0..1000 {
            let t = f64::from(i);
            csv.push_str(&format!("{},{}\n", (t * 0.37).sin(), (t * 0.73).cos()));
        }
        std::fs::write(root.join("sources/data.csv"), csv).unwrap();

        let (a, key) = instance(settings(root, "a", &db, &redis, &prefix)).await;
        let key = key.expect("the first instance creates the admin key");
        let (b, none) = instance(settings(root, "b", &db, &redis, &prefix)).await;
        assert!(none.is_none(), "one admin key for the deployment");
        let client = reqwest::Client::new();
        use reqwest::Method;

        // A model trained through one instance is served by the other.
        let data: Vec<Vec<f64>> = (0..50).map(|i| vec![f64::from(i % 7), f64::from(i % 5)]).collect();
        let (status, trained) = call(&client, &key, Method::POST, format!("{}/api/v1/models", a.address),
            Some(json!({"model_name": "shared", "algorithm": "isolation_forest", "data": data, "random_state": 3})), None).await;
        assert_eq!(status, StatusCode::CREATED, "{trained}");
        let (status, predicted) = call(&client, &key, Method::POST, format!("{}/api/v1/models/shared/predict", b.address),
            Some(json!({"data": [[1.0, 2.0], [50.0, -50.0]]})), None).await;
        assert_eq!(status, StatusCode::OK, "{predicted}");
        assert_eq!(predicted["threshold"], trained["threshold"]);
        assert_eq!(predicted["predictions"][1], -1);

        // Deleted through A, then trained again under the same name with other data: B
        // drops its cached copy (Redis pub/sub) and serves the new model.
        let (status, _) = call(&client, &key, Method::DELETE, format!("{}/api/v1/models/shared", a.address), None, None).await;
        assert!(status.is_success(), "{status}");
        // Pub/sub delivery is asynchronous: allow it a moment.
        let predict_b = || call(&client, &key, Method::POST, format!("{}/api/v1/models/shared/predict", b.address),
            Some(json!({"data": [[1.0, 2.0]]})), None);
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut answer = predict_b().await;
        while answer.0 != StatusCode::NOT_FOUND && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
            answer = predict_b().await;
        }
        assert_eq!(answer.0, StatusCode::NOT_FOUND, "a deleted model is not served by another instance");
        let other: Vec<Vec<f64>> = (0..80).map(|i| vec![f64::from(i % 11) * 3.0, f64::from(i % 13)]).collect();
        let (status, retrained) = call(&client, &key, Method::POST, format!("{}/api/v1/models", a.address),
            Some(json!({"model_name": "shared", "algorithm": "isolation_forest", "data": other, "random_state": 4, "contamination": 0.1})), None).await;
        assert_eq!(status, StatusCode::CREATED, "{retrained}");
        assert_eq!(retrained["version"], 1);
        let deadline = Instant::now() + Duration::from_secs(5);
        let (mut status, mut predicted) = predict_b().await;
        while predicted["threshold"] != retrained["threshold"] && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
            (status, predicted) = predict_b().await;
        }
        assert_eq!(status, StatusCode::OK, "{predicted}");
        assert_eq!(predicted["threshold"], retrained["threshold"], "B serves the new model, not its old copy");
        assert_ne!(retrained["threshold"], trained["threshold"]);

        // A batch submitted twice (through both instances) with one key is one job.
        let batch = json!({"data_source": "data.csv", "algorithm": "isolation_forest", "random_state": 1});
        let (status, submitted) = call(&client, &key, Method::POST, format!("{}/api/v1/batch", a.address),
            Some(batch.clone()), Some("batch-1")).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{submitted}");
        let (_, again) = call(&client, &key, Method::POST, format!("{}/api/v1/batch", b.address),
            Some(batch), Some("batch-1")).await;
        assert_eq!(again["job_id"], submitted["job_id"]);
        let job_id = submitted["job_id"].as_str().unwrap().to_string();

        // No worker yet: the servers run no jobs themselves.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (_, job) = call(&client, &key, Method::GET, format!("{}/api/v1/jobs/{job_id}", b.address), None, None).await;
        assert_eq!(job["status"], "queued", "{job}");

        let worker = open_jobs(&settings(root, "w", &db, &redis, &prefix), None)
            .await
            .expect("worker builds");
        let running = std::sync::Arc::clone(&worker.queue).start_workers(2);
        let deadline = Instant::now() + Duration::from_secs(60);
        let job = loop {
            let (_, job) = call(&client, &key, Method::GET, format!("{}/api/v1/jobs/{job_id}", b.address), None, None).await;
            if job["status"] == "succeeded" || job["status"] == "failed" || Instant::now() > deadline {
                break job;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(job["status"], "succeeded", "{job}");
        assert_eq!(job["result"]["n_samples"], 1000);
        let (status, health) = call(&client, &key, Method::GET, format!("{}/health", a.address), None, None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(health["checks"]["queue"]["kind"], "redis", "{health}");
        assert_eq!(health["checks"]["workers"]["active"], 1, "{health}");

        worker.queue.shutdown();
        for task in running {
            task.await.unwrap();
        }
        worker.background.cancel();
        worker.meta.close().await;
        a.shut().await;
        b.shut().await;
        RedisQueue::delete_keys(&redis, &prefix).await.unwrap();
    })
    .await;
}
