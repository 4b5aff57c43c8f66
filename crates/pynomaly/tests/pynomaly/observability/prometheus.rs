//! A real Prometheus against the running service: it scrapes an API instance and a
//! worker (Postgres + Redis deployment), loads `prometheus/alerts.yml`, and every query
//! of every panel of `grafana/dashboards/*.json` must parse and return data. A panel
//! that asks for a metric the service does not export returns nothing and fails the test.
//!
//! Ignored by default (needs the `prometheus` binary — Debian's `prometheus` package, or
//! `PYNOMALY_PROMETHEUS=/path/to/prometheus` — Postgres and Redis); `.ci/run` runs it with
//! `cargo test -p pynomaly --test pynomaly -- --ignored observability::`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use testkit::env::{DATABASE_URL_VAR, REDIS_URL_VAR, require};
use testkit::wait::wait;
use testkit::{Api, Proc, ScaleOut, eventually, free_port, repo_root, wait_ready};

use super::{Deployment, csv_with_outliers, deploy};
use crate::Env;

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
    // The worker takes jobs from Redis.
    require(&[DATABASE_URL_VAR, REDIS_URL_VAR]);
    testkit::with_postgres_and_redis(async |env| run(&prometheus, &env).await).await;
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
async fn run(prometheus: &str, scale_out: &ScaleOut) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("sources")).unwrap();
    std::fs::write(root.join("sources/data.csv"), csv_with_outliers(2000)).unwrap();
    let env = Env::default()
        .set("DATABASE_URL", &scale_out.database_url)
        .set("REDIS_URL", &scale_out.redis_url)
        .set("PYNOMALY_REDIS_PREFIX", &scale_out.redis_prefix)
        .set("PYNOMALY_SECRET_KEY", "5a".repeat(32))
        .set("PYNOMALY_SOURCES_DIR", root.join("sources"))
        .set("PYNOMALY_STORAGE_URL", root.join("storage"))
        .set("PYNOMALY_SHUTDOWN_TIMEOUT_S", "5")
        .set("LOG_LEVEL", "warn")
        .set("RAYON_NUM_THREADS", "1");
    let (api_metrics, prom_port) = (free_port(), free_port());
    let api_env = env
        .clone()
        .set("PYNOMALY_METRICS_BIND", format!("127.0.0.1:{api_metrics}"));
    let Deployment {
        mut api_proc,
        mut worker,
        api,
        api_port,
        worker_metrics_port: worker_metrics,
    } = deploy(root, &env, api_env, "2").await;
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
    wait_ready(&format!("{prom}/-/ready"), &prom_proc).await;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();

    // Traffic: the guide's flow (train, predict with anomalies, an error, a batch job, a
    // training job), over a few scrapes so that rates have two samples.
    let rows = testkit::data::wave_rows(200);
    let trained = api
        .post(
            "/api/v1/models",
            &json!({"model_name": "prom", "data": rows, "random_state": 0}),
        )
        .await;
    trained.assert_status(201);
    let batch = api
        .post(
            "/api/v1/batch",
            &json!({"data_source": "data.csv", "model_name": "prom"}),
        )
        .await;
    let train = api
        .post(
            "/api/v1/models",
            &json!({"model_name": "prom-file", "training_data": "data.csv"}),
        )
        .await;
    let jobs = [batch.assert_status(202), train.assert_status(202)];
    let traffic_until = Instant::now() + Duration::from_secs(8);
    let mut predicts = 0;
    let outliers = json!({"data": [[0.1, 0.2], [0.5, 0.4], [30.0, -30.0]]});
    while Instant::now() < traffic_until {
        let r = api.post("/api/v1/models/prom/predict", &outliers).await;
        r.assert_status(200);
        let missing = json!({"data": [[0.1, 0.2]]});
        let r = api.post("/api/v1/models/missing/predict", &missing).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        predicts += 1;
        // A steady rate over several scrapes is the point: the loop is paced, not polling.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(predicts > 10);
    for job in jobs {
        let id = job["job_id"].as_str().unwrap();
        let job = api.wait_job(id, Duration::from_secs(60)).await;
        assert_eq!(job["status"], "succeeded", "{job}\n{}", worker.log_tail());
    }
    // Both jobs' counters scraped (the worker counts them by kind).
    let succeeded = eventually(
        "Prometheus has scraped both jobs",
        Duration::from_secs(30),
        async || {
            let kinds = query(
                &client,
                &prom,
                "sum by (kind) (pynomaly_job_duration_seconds_count{job=\"pynomaly-worker\",status=\"succeeded\"})",
            )
            .await?;
            if kinds.len() == 2 { Ok(kinds) } else { Err(format!("{kinds:?}")) }
        },
    )
    .await;
    assert_eq!(
        succeeded.len(),
        2,
        "a batch and a training job: {succeeded:?}"
    );

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

    // Every dashboard query parses and returns data, once a rate's window holds two
    // samples of every counter the traffic moved.
    let queries = dashboard_queries();
    assert!(
        queries.len() >= 20,
        "the dashboards' queries: {}",
        queries.len()
    );
    wait(
        "every dashboard query returns data",
        Duration::from_secs(30),
    )
    .every(Duration::from_secs(1))
    .until(async || {
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
        if failures.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "dashboard queries without data:\n{}",
                failures.join("\n")
            ))
        }
    })
    .await;
    // The guide's five panels are there.
    for title in [
        "Request Rate",
        "Response Time Percentiles",
        "Anomalies Detected",
        "Model Performance",
        "Data Quality Score",
    ] {
        assert!(
            queries.iter().any(|(_, p, _)| p == title),
            "the guide's panel '{title}' is missing"
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
    let rules = wait("every rule has been evaluated", Duration::from_secs(10))
        .every(Duration::from_millis(200))
        .until(async || {
            let body = Api::with_client(client.clone(), &prom)
                .get("/api/v1/rules")
                .await
                .body;
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
            if evaluated {
                Ok(rules)
            } else {
                Err(format!("{rules:?}"))
            }
        })
        .await;
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
    api_proc.stop(Duration::from_secs(15));
}
