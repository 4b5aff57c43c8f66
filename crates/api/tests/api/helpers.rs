//! `spawn_app()` and typed request helpers.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use pynomaly_api::Application;
use pynomaly_jobs::{ExecutionOutcome, InProcessQueue, JobQueue};
use pynomaly_runtime::Settings;
use reqwest::Method;
use serde_json::{Value, json};
use tempfile::TempDir;
use testkit::Api;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use testkit::Reply;

/// An application built from settings and serving on its own task until [`Instance::shut`].
pub struct Instance {
    pub address: String,
    /// The deployment's admin key, when this instance created it (the first to start on
    /// a fresh store does; the key is then also in its data directory's `admin.key`).
    pub created_admin_key: Option<String>,
    /// The job queue when it runs in this process (the default; not in a Redis deployment).
    pub queue: Option<Arc<InProcessQueue>>,
    stop: oneshot::Sender<()>,
    handle: JoinHandle<()>,
}

/// Builds the application from `settings` and serves it.
pub async fn instance(settings: Settings) -> Instance {
    let app = Application::build(settings)
        .await
        .expect("application builds");
    let created_admin_key = app.admin_key().map(str::to_string);
    let address = format!("http://{}", app.local_addr());
    let queue = app.in_process_queue();
    let (stop, rx) = oneshot::channel::<()>();
    let handle = tokio::spawn(async move {
        app.run_until(async {
            let _ = rx.await;
        })
        .await
        .expect("server runs");
    });
    Instance {
        address,
        created_admin_key,
        queue,
        stop,
        handle,
    }
}

impl Instance {
    /// Stops the server gracefully and waits for it.
    pub async fn shut(self) {
        let _ = self.stop.send(());
        self.handle.await.expect("server task");
    }
}

/// A running server on a random port, with its own data directory.
pub struct TestApp {
    pub address: String,
    pub admin_key: String,
    pub data_dir: PathBuf,
    pub queue: Arc<InProcessQueue>,
    pub client: reqwest::Client,
    /// Calls to this server, with no key.
    pub anonymous: Api,
    dir: Option<TempDir>,
    instance: Option<Instance>,
}

/// Settings for a test: port 0, no background workers (tests drain jobs step by step).
pub fn test_settings(dir: &Path) -> Settings {
    let mut s = Settings::with_data_dir(dir.join("data"));
    s.server.bind = "127.0.0.1:0".parse().unwrap();
    s.queue.worker_concurrency = 0;
    s.queue.batch_chunk_rows = 1000;
    s
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

/// A server with the model `m` trained ([`TestApp::train_inline`]) and a CSV data source
/// `file` of `rows` rows of three features ([`csv_source`]).
pub async fn spawn_app_with_model_and_source(file: &str, rows: usize) -> TestApp {
    let app = spawn_app().await;
    app.train_inline("m").await;
    app.write_source(file, &csv_source(rows, 3));
    app
}

pub async fn spawn_app_with(configure: impl FnOnce(&mut Settings)) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut settings = test_settings(dir.path());
    configure(&mut settings);
    let mut app = start(settings, None).await;
    app.dir = Some(dir);
    app
}

/// Starts a server on `settings`; `admin_key` for a restart (the key file exists then).
pub async fn start(settings: Settings, admin_key: Option<String>) -> TestApp {
    let data_dir = settings.storage.data_dir.clone();
    let mut server = instance(settings).await;
    let admin_key = server
        .created_admin_key
        .clone()
        .or(admin_key)
        .unwrap_or_else(|| {
            std::fs::read_to_string(data_dir.join("admin.key"))
                .expect("admin key file")
                .trim()
                .to_string()
        });
    let queue = server
        .queue
        .take()
        .expect("tests run on the in-process queue");
    let client = reqwest::Client::new();
    TestApp {
        address: server.address.clone(),
        admin_key,
        data_dir,
        queue,
        anonymous: Api::with_client(client.clone(), server.address.clone()),
        client,
        dir: None,
        instance: Some(server),
    }
}

impl TestApp {
    /// Stops the server gracefully and waits for it; keeps the data directory.
    pub async fn stop(mut self) -> (Option<TempDir>, PathBuf, String) {
        if let Some(server) = self.instance.take() {
            server.shut().await;
        }
        (
            self.dir.take(),
            self.data_dir.clone(),
            self.admin_key.clone(),
        )
    }

    pub async fn request(
        &self,
        method: Method,
        path: &str,
        key: Option<&str>,
        body: Option<&Value>,
    ) -> Reply {
        let api = match key {
            Some(k) => self.anonymous.key(k),
            None => self.anonymous.clone(),
        };
        match body {
            Some(b) => api.call(method, path).json(b).send().await,
            None => api.call(method, path).send().await,
        }
    }

    /// `GET path` without a key, with one more header.
    pub async fn get_with_header(&self, path: &str, name: &str, value: &str) -> Reply {
        let call = self.anonymous.call(Method::GET, path);
        call.header(name, value).send().await
    }

    /// A raw body (for malformed JSON), as the admin.
    pub async fn post_raw(&self, path: &str, body: &str) -> Reply {
        let resp = self
            .client
            .post(format!("{}{path}", self.address))
            .bearer_auth(&self.admin_key)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await;
        Reply::read(resp.expect("request sent"))
            .await
            .expect("body")
    }

    pub async fn post(&self, path: &str, body: &Value) -> Reply {
        self.request(Method::POST, path, Some(&self.admin_key), Some(body))
            .await
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.request(Method::GET, path, Some(&self.admin_key), None)
            .await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.request(Method::DELETE, path, Some(&self.admin_key), None)
            .await
    }

    pub async fn detect(&self, body: &Value) -> Reply {
        self.post("/api/v1/detect", body).await
    }

    pub async fn train(&self, body: &Value) -> Reply {
        self.post("/api/v1/models", body).await
    }

    pub async fn predict(&self, name: &str, body: &Value) -> Reply {
        self.post(&format!("/api/v1/models/{name}/predict"), body)
            .await
    }

    pub async fn batch(&self, body: &Value) -> Reply {
        self.post("/api/v1/batch", body).await
    }

    pub async fn job(&self, id: &str) -> Reply {
        self.get(&format!("/api/v1/jobs/{id}")).await
    }

    /// Submits a batch, asserting that it is accepted; its job id.
    pub async fn submit_batch(&self, body: &Value) -> String {
        let r = self.batch(body).await;
        r.assert_status(202)["job_id"].as_str().unwrap().to_string()
    }

    /// Submits a batch and runs the queued jobs; the batch's job id and its final state.
    pub async fn run_batch(&self, body: &Value) -> (String, Reply) {
        let id = self.submit_batch(body).await;
        self.drain_jobs().await;
        let job = self.job(&id).await;
        (id, job)
    }

    /// Asserts that each `(method, path, status, code)`, called as the admin without a
    /// body, is answered with that error.
    pub async fn assert_errors(&self, calls: &[(Method, &str, u16, &str)]) {
        for (method, path, status, code) in calls {
            let r = self.request(method.clone(), path, Some(&self.admin_key), None);
            r.await.assert_error(*status, code);
        }
    }

    /// Creates a key with these scopes, as the admin.
    pub async fn create_key(&self, scopes: &[&str]) -> String {
        let created = self
            .create_key_with(&json!({"name": "test", "scopes": scopes}))
            .await;
        created["key"].as_str().unwrap().to_string()
    }

    /// Creates a key as the admin from this request, asserting that it is created; the
    /// answer (`key`, `id`, …).
    pub async fn create_key_with(&self, body: &Value) -> Value {
        let r = self.post("/api/v1/auth/keys", body).await;
        r.assert_status(201).clone()
    }

    /// Trains `name` inline on [`training_rows`] and returns the version.
    pub async fn train_inline(&self, name: &str) -> Value {
        let r = self
            .train(&json!({
                "model_name": name, "algorithm": "isolation_forest", "contamination": 0.05,
                "n_estimators": 50, "random_state": 42, "data": training_rows(200, 3),
            }))
            .await;
        r.assert_status(201).clone()
    }

    /// Writes a data source into the sources directory.
    pub fn write_source(&self, name: &str, contents: &str) -> PathBuf {
        let dir = self.data_dir.join("sources");
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(name);
        std::fs::write(&path, contents).unwrap();
        path
    }

    /// Runs queued jobs until the queue is empty; returns how many ran.
    pub async fn drain_jobs(&self) -> usize {
        let mut n = 0;
        while let ExecutionOutcome::JobDone { .. } =
            self.queue.try_execute_job().await.expect("job step")
        {
            n += 1;
        }
        n
    }
}

/// `n` rows of `width` features: a tight cluster, the last row far away.
/// Every algorithm the API takes, in the order `GET /api/v1/algorithms` lists them.
pub const ALGORITHMS: [&str; 12] = [
    "isolation_forest",
    "lof",
    "ecod",
    "copod",
    "hbos",
    "knn",
    "pca",
    "gmm",
    "dbscan",
    "inne",
    "mcd",
    "cblof",
];

pub fn training_rows(n: usize, width: usize) -> Value {
    let mut rows = Vec::with_capacity(n);
    for i in 0..n {
        let row: Vec<f64> = (0..width)
            .map(|j| {
                if i == n - 1 {
                    50.0 + j as f64
                } else {
                    ((i * 7 + j * 13) % 17) as f64 / 17.0
                }
            })
            .collect();
        rows.push(row);
    }
    json!(rows)
}

/// A CSV with a header of `width` features (f0, f1, …) and `n` rows.
pub fn csv_source(n: usize, width: usize) -> String {
    let header: Vec<String> = (0..width).map(|j| format!("f{j}")).collect();
    let mut s = header.join(",") + "\n";
    for i in 0..n {
        let row: Vec<String> = (0..width)
            .map(|j| format!("{}", ((i * 7 + j * 13) % 17) as f64 / 17.0))
            .collect();
        s.push_str(&row.join(","));
        s.push('\n');
    }
    s
}
