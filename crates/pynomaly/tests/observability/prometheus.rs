//! A real Prometheus against the running service: it scrapes an API instance and a
//! worker (Postgres + Redis deployment), loads `prometheus/alerts.yml`, and every query
//! of every panel of `grafana/dashboards/*.json` must parse and return data. A panel
//! that asks for a metric the service does not export returns nothing and fails the test.
//!
//! Ignored by default (needs the `prometheus` binary — Debian's `prometheus` package, or
//! `PYNOMALY_PROMETHEUS=/path/to/prometheus` — Postgres and Redis); `.ci/run` runs it with
//! `cargo test -p pynomaly --test observability -- --ignored`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use pynomaly_store::testing::TestDatabase;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::{Proc, call, csv_rows, free_port, pynomaly, wait_job, wait_ready};

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every `(dashboard, panel title, expr)` of the repository's dashboards.
fn dashboard_queries() -> Vec<(String, String, String)> {
    let dir = repo_root().join("grafana/dashboards");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("grafana/dashboards") {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("json") {
            continue;
        }
        let dash: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
            .unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()));
        let name = dash["title"].as_str().unwrap_or("?").to_string();
        let mut panels: Vec<&Value> = Vec::new();
        for p in dash["panels"].as_array().expect("panels") {
            panels.push(p);
            if let Some(nested) = p["panels"].as_array() {
                panels.extend(nested);
            }
        }
        for p in panels {
            for t in p["targets"].as_array().into_iter().flatten() {
                let expr = t["expr"].as_str().expect("every target has an expr");
                out.push((
                    name.clone(),
                    p["title"].as_str().unwrap_or("?").to_string(),
                    expr.to_string(),
                ));
            }
        }
    }
    out
}

/// Grafana's variables, as Grafana would fill them for this test's 1 s scrape interval.
fn substitute(expr: &str) -> String {
    expr.replace("$__rate_interval", "20s")
        .replace("$__interval", "2s")
        .replace("$__range", "5m")
}

async fn query(client: &reqwest::Client, prom: &str, expr: &str) -> Result<Vec<Value>, String> {
    let url = reqwest::Url::parse_with_params(&format!("{prom}/api/v1/query"), &[("query", expr)])
        .map_err(|e| e.to_string())?;
    let resp = client.get(url).send().await.map_err(|e| e.to_string())?;
    let status = resp.status();
    let body: Value = resp.json().await.map_err(|e| e.to_string())?;
    if status != StatusCode::OK || body["status"] != "success" {
        return Err(format!("{status}: {}", body["error"]));
    }
    Ok(body["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the prometheus binary, Postgres and Redis: run by .ci/run"]
async fn prometheus_scrapes_the_service_and_every_dashboard_query_returns_data() {
    let prometheus = std::env::var("PYNOMALY_PROMETHEUS").unwrap_or_else(|_| "prometheus".into());
    let found = Command::new(&prometheus).arg("--version").output();
    assert!(
        found.is_ok_and(|o| o.status.success()),
        "`{prometheus} --version` failed: install Debian's prometheus package or set \
         PYNOMALY_PROMETHEUS"
    );
    let redis = std::env::var("PYNOMALY_TEST_REDIS_URL")
        .expect("PYNOMALY_TEST_REDIS_URL (the worker takes jobs from Redis)");
    assert!(
        std::env::var("PYNOMALY_TEST_DATABASE_URL").is_ok(),
        "PYNOMALY_TEST_DATABASE_URL is needed"
    );
    TestDatabase::run("prometheus_scrapes_the_service", |db| async move {
        let prefix = format!("pynomaly-prom-{}", uuid::Uuid::new_v4().simple());
        let outcome = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(run(
            &prometheus,
            &db,
            &redis,
            &prefix,
        )))
        .await;
        let _ = pynomaly_jobs::RedisQueue::delete_keys(&redis, &prefix).await;
        if let Err(panic) = outcome {
            std::panic::resume_unwind(panic);
        }
    })
    .await;
}

fn prometheus_config(root: &Path, api: u16, api_metrics: u16, worker: u16) -> PathBuf {
    let rules = repo_root().join("prometheus/alerts.yml");
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
         rule_files:\n  - {rules}\n\
         scrape_configs:\n\
         \x20 - job_name: pynomaly-api\n    static_configs:\n      - targets: [\"127.0.0.1:{api}\"]\n\
         \x20 - job_name: pynomaly-api-metrics-port\n    static_configs:\n      - targets: [\"127.0.0.1:{api_metrics}\"]\n\
         \x20 - job_name: pynomaly-worker\n    static_configs:\n      - targets: [\"127.0.0.1:{worker}\"]\n",
        rules = rules.display()
    );
    let path = root.join("prometheus.yml");
    std::fs::write(&path, config).unwrap();
    path
}

#[allow(clippy::too_many_lines)]
async fn run(prometheus: &str, db: &str, redis: &str, prefix: &str) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("sources")).unwrap();
    std::fs::write(root.join("sources/data.csv"), csv_rows(2000)).unwrap();
    let env: HashMap<String, String> = [
        ("DATABASE_URL", db.to_string()),
        ("REDIS_URL", redis.to_string()),
        ("PYNOMALY_REDIS_PREFIX", prefix.to_string()),
        ("PYNOMALY_SECRET_KEY", "5a".repeat(32)),
        (
            "PYNOMALY_SOURCES_DIR",
            root.join("sources").display().to_string(),
        ),
        (
            "PYNOMALY_STORAGE_URL",
            root.join("storage").display().to_string(),
        ),
        ("PYNOMALY_SHUTDOWN_TIMEOUT_S", "5".into()),
        ("LOG_LEVEL", "warn".into()),
        ("RAYON_NUM_THREADS", "1".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let (api_port, api_metrics, worker_metrics, prom_port) =
        (free_port(), free_port(), free_port(), free_port());
    let mut api_env = env.clone();
    api_env.insert("PYNOMALY_BIND".into(), format!("127.0.0.1:{api_port}"));
    api_env.insert(
        "PYNOMALY_METRICS_BIND".into(),
        format!("127.0.0.1:{api_metrics}"),
    );
    api_env.insert(
        "PYNOMALY_DATA_DIR".into(),
        root.join("api").display().to_string(),
    );
    let mut api = pynomaly("api", &["serve"], &api_env, root);
    let mut worker_env = env.clone();
    worker_env.insert(
        "PYNOMALY_METRICS_BIND".into(),
        format!("127.0.0.1:{worker_metrics}"),
    );
    worker_env.insert(
        "PYNOMALY_DATA_DIR".into(),
        root.join("worker").display().to_string(),
    );
    let mut worker = pynomaly(
        "worker",
        &["worker", "--concurrency", "2"],
        &worker_env,
        root,
    );
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let base = format!("http://127.0.0.1:{api_port}");
    wait_ready(&client, &format!("{base}/health/ready"), &api).await;
    wait_ready(
        &client,
        &format!("http://127.0.0.1:{worker_metrics}/metrics"),
        &worker,
    )
    .await;
    let config = prometheus_config(root, api_port, api_metrics, worker_metrics);
    let mut cmd = Command::new(prometheus);
    cmd.arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            root.join("tsdb").display()
        ))
        .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"));
    let mut prom_proc = Proc::spawn("prometheus", &mut cmd, &root.join("prometheus.log"));
    let prom = format!("http://127.0.0.1:{prom_port}");
    wait_ready(&client, &format!("{prom}/-/ready"), &prom_proc).await;

    // Traffic: the seed's flow (train, predict with anomalies, an error, a batch job, a
    // training job), over a few scrapes so that rates have two samples.
    let key = std::fs::read_to_string(root.join("api/admin.key"))
        .unwrap()
        .trim()
        .to_string();
    let rows: Vec<Vec<f64>> = (0..200)
        .map(|i| vec![(i as f64 * 0.37).sin(), (i as f64 * 0.48).cos()])
        .collect();
    let (status, body) = call(
        &client,
        &key,
        Method::POST,
        format!("{base}/api/v1/models"),
        Some(json!({"model_name": "prom", "data": rows, "random_state": 0})),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (status, batch) = call(
        &client,
        &key,
        Method::POST,
        format!("{base}/api/v1/batch"),
        Some(json!({"data_source": "data.csv", "model_name": "prom"})),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{batch}");
    let (status, train) = call(
        &client,
        &key,
        Method::POST,
        format!("{base}/api/v1/models"),
        Some(json!({"model_name": "prom-file", "training_data": "data.csv"})),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{train}");
    let traffic_until = Instant::now() + Duration::from_secs(8);
    let mut predicts = 0;
    while Instant::now() < traffic_until {
        let (status, body) = call(
            &client,
            &key,
            Method::POST,
            format!("{base}/api/v1/models/prom/predict"),
            Some(json!({"data": [[0.1, 0.2], [0.5, 0.4], [30.0, -30.0]]})),
            &[],
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (status, _) = call(
            &client,
            &key,
            Method::POST,
            format!("{base}/api/v1/models/missing/predict"),
            Some(json!({"data": [[0.1, 0.2]]})),
            &[],
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        predicts += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(predicts > 10);
    for id in [&batch["job_id"], &train["job_id"]] {
        let job = wait_job(&client, &key, &base, id.as_str().unwrap()).await;
        assert_eq!(job["status"], "succeeded", "{job}\n{}", worker.log_tail());
    }
    // A few more scrapes after the jobs, so their counters have moved inside the window.
    tokio::time::sleep(Duration::from_secs(4)).await;

    // Every target is up.
    let up = query(&client, &prom, "up").await.unwrap();
    assert_eq!(up.len(), 3, "three targets: {up:?}");
    for t in &up {
        assert_eq!(
            t["value"][1],
            "1",
            "target down: {t}\n{}",
            prom_proc.log_tail()
        );
    }

    // Every dashboard query parses and returns data.
    let queries = dashboard_queries();
    assert!(
        queries.len() >= 20,
        "the dashboards' queries: {}",
        queries.len()
    );
    let mut failures = Vec::new();
    for (dash, panel, expr) in &queries {
        match query(&client, &prom, &substitute(expr)).await {
            Ok(result) if result.is_empty() => {
                failures.push(format!("{dash} / {panel}: no data for `{expr}`"));
            }
            Ok(_) => {}
            Err(e) => failures.push(format!("{dash} / {panel}: `{expr}` failed: {e}")),
        }
    }
    assert!(
        failures.is_empty(),
        "dashboard queries without data:\n{}",
        failures.join("\n")
    );
    // The seed's five panels are there.
    for title in [
        "Request Rate",
        "Response Time Percentiles",
        "Anomalies Detected",
        "Model Performance",
        "Data Quality Score",
    ] {
        assert!(
            queries.iter().any(|(_, p, _)| p == title),
            "the seed's panel '{title}' is missing"
        );
    }

    // Spot checks that the numbers are the service's own.
    let anomalies = query(
        &client,
        &prom,
        "sum(pynomaly_anomalies_detected_total{dataset=\"data.csv\"})",
    )
    .await
    .unwrap();
    assert!(
        anomalies[0]["value"][1]
            .as_str()
            .unwrap()
            .parse::<f64>()
            .unwrap()
            > 0.0,
        "the worker counts the batch job's anomalies: {anomalies:?}"
    );
    let succeeded = query(
        &client,
        &prom,
        "sum by (kind) (pynomaly_job_duration_seconds_count{job=\"pynomaly-worker\",status=\"succeeded\"})",
    )
    .await
    .unwrap();
    assert_eq!(
        succeeded.len(),
        2,
        "a batch and a training job: {succeeded:?}"
    );
    // The predicts send an outlier in every third row: the model's drift window against
    // its training data is exported per feature.
    let drift = query(&client, &prom, "pynomaly_data_drift_score{model=\"prom\"}")
        .await
        .unwrap();
    let features: Vec<&str> = drift
        .iter()
        .filter_map(|s| s["metric"]["feature"].as_str())
        .collect();
    assert!(
        !features.is_empty(),
        "drift scores of model 'prom': {drift:?}"
    );
    let workers = query(&client, &prom, "max(pynomaly_workers_active)")
        .await
        .unwrap();
    assert_eq!(workers[0]["value"][1], "1", "one worker process alive");

    // The alerting rules are loaded and evaluate without error (none needs to fire).
    let deadline = Instant::now() + Duration::from_secs(10);
    let rules = loop {
        let body: Value = client
            .get(format!("{prom}/api/v1/rules"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let rules: Vec<Value> = body["data"]["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .collect();
        let evaluated = !rules.is_empty()
            && rules.iter().all(|r| {
                r["lastEvaluation"]
                    .as_str()
                    .is_some_and(|t| !t.starts_with("0001"))
            });
        if evaluated || Instant::now() > deadline {
            break rules;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let names: Vec<&str> = rules.iter().filter_map(|r| r["name"].as_str()).collect();
    for alert in [
        "PynomalyHighErrorRate",
        "PynomalyHighLatencyP99",
        "PynomalyJobBacklog",
        "PynomalyNoWorkers",
        "PynomalyDataDrift",
    ] {
        assert!(names.contains(&alert), "{alert} not loaded: {names:?}");
    }
    for r in &rules {
        assert_eq!(
            r["health"], "ok",
            "rule {} failed to evaluate: {r}",
            r["name"]
        );
    }
    let firing: Vec<&Value> = rules
        .iter()
        .filter(|r| r["name"] == "PynomalyNoWorkers" && r["state"] != "inactive")
        .collect();
    assert!(firing.is_empty(), "a worker is alive: {firing:?}");

    prom_proc.stop(Duration::from_secs(10));
    worker.stop(Duration::from_secs(15));
    api.stop(Duration::from_secs(15));
}
