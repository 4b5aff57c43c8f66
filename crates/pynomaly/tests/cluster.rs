//! The scale-out deployment, for real, on loopback: two `pynomaly serve` instances, two
//! `pynomaly worker` processes and nginx (the repository's `nginx.conf`), on Postgres, Redis
//! and an S3-compatible server; then, through nginx:
//!
//! 1. the seed's `PynomalyAPIClient` flow (train, predict, batch, job status);
//! 2. a model trained through one instance is served by both;
//! 3. six batch jobs of 300,000 rows each read from S3, with one worker killed (SIGKILL)
//!    mid-job: every job succeeds, every row is counted once;
//! 4. one API instance killed (SIGKILL) under steady predict traffic: no request fails.
//!
//! Ignored by default (it needs nginx and the three servers, and takes a minute); `.ci/run`
//! runs it with `cargo test -p pynomaly --test cluster -- --ignored --nocapture` and
//! `PYNOMALY_TEST_DATABASE_URL`, `PYNOMALY_TEST_REDIS_URL`, `PYNOMALY_TEST_S3_ENDPOINT` set.
//! Everything it creates (database, Redis keys, bucket, processes, files) is removed at the
//! end, also when it fails.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::{ObjectStoreExt, PutPayload};
use pynomaly_store::S3Options;
use pynomaly_store::testing::TestDatabase;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

#[path = "support/proc.rs"]
mod proc;
use proc::{Proc, free_port};

const ROWS_PER_JOB: usize = 300_000;
const JOBS: usize = 6;

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn csv_rows(n: usize, seed: u64) -> String {
    let mut s = String::with_capacity(n * 40);
    s.push_str("x,y\n");
    let mut state = seed;
    for _ in 0..n {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let a = (state >> 11) as f64 / (1u64 << 53) as f64;
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let b = (state >> 11) as f64 / (1u64 << 53) as f64;
        s.push_str(&format!("{a},{b}\n"));
    }
    s
}

struct Cluster {
    env: HashMap<String, String>,
    root: PathBuf,
}

impl Cluster {
    fn pynomaly(&self, name: &str, args: &[&str], extra: &[(&str, String)]) -> Proc {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_pynomaly"));
        cmd.args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .envs(&self.env)
            .envs(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
        Proc::spawn(name, &mut cmd, &self.root.join(format!("{name}.log")))
    }
}

/// Waits for `url` to answer 200; fails at once if `proc` exits first, and after 60 s.
async fn wait_ready(client: &reqwest::Client, url: &str, what: &str, proc: &Proc) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = client.get(url).send().await
            && r.status() == StatusCode::OK
        {
            return;
        }
        assert!(
            !proc.exited(),
            "{what} exited before it became ready:\n{}",
            proc.log_tail()
        );
        assert!(
            Instant::now() < deadline,
            "{what} did not become ready:\n{}",
            proc.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn call(
    client: &reqwest::Client,
    key: &str,
    method: Method,
    url: String,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = client.request(method, url).bearer_auth(key);
    if let Some(b) = body {
        req = req.json(&b);
    }
    match req.send().await {
        Ok(resp) => {
            let status = resp.status();
            (status, resp.json().await.unwrap_or(Value::Null))
        }
        Err(e) => (
            StatusCode::BAD_GATEWAY,
            json!({"transport_error": e.to_string()}),
        ),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "starts nginx, two instances and two workers on Postgres, Redis and S3: run by .ci/run"]
async fn the_cluster_survives_killed_workers_and_instances() {
    let vars = ["PYNOMALY_TEST_REDIS_URL", "PYNOMALY_TEST_S3_ENDPOINT"];
    let missing: Vec<&str> = vars
        .iter()
        .copied()
        .filter(|v| std::env::var(v).is_err())
        .collect();
    assert!(
        missing.is_empty() && std::env::var("PYNOMALY_TEST_DATABASE_URL").is_ok(),
        "the cluster test needs PYNOMALY_TEST_DATABASE_URL, PYNOMALY_TEST_REDIS_URL and \
         PYNOMALY_TEST_S3_ENDPOINT (missing: {missing:?})"
    );
    let redis = std::env::var("PYNOMALY_TEST_REDIS_URL").unwrap();
    let s3 = std::env::var("PYNOMALY_TEST_S3_ENDPOINT").unwrap();
    TestDatabase::run(
        "the_cluster_survives_killed_workers_and_instances",
        |db| async move {
            let dir = tempfile::tempdir().unwrap();
            let prefix = format!("pynomaly-cluster-{}", uuid::Uuid::new_v4().simple());
            let bucket = prefix.clone();
            let client = reqwest::Client::new();
            let created = client
                .put(format!("{}/{bucket}", s3.trim_end_matches('/')))
                .send()
                .await
                .unwrap();
            assert!(
                created.status().is_success(),
                "cannot create the test bucket"
            );
            let s3_options = S3Options {
                endpoint: Some(s3.clone()),
                region: Some("us-east-1".into()),
                access_key_id: Some("test".into()),
                secret_access_key: Some("test".into()),
            };
            let outcome = futures::FutureExt::catch_unwind(std::panic::AssertUnwindSafe(
                run_cluster(dir.path(), &db, &redis, &prefix, &s3, &bucket, &s3_options),
            ))
            .await;
            // Clean up whatever happened.
            let _ = pynomaly_jobs::RedisQueue::delete_keys(&redis, &prefix).await;
            if let Ok(store) = pynomaly_store::s3_bucket_with(&bucket, &s3_options) {
                let objects: Vec<_> = store.list(None).try_collect().await.unwrap_or_default();
                for o in objects {
                    let _ = store.delete(&o.location).await;
                }
            }
            let _ = client
                .delete(format!("{}/{bucket}", s3.trim_end_matches('/')))
                .send()
                .await;
            if let Err(panic) = outcome {
                std::panic::resume_unwind(panic);
            }
        },
    )
    .await;
}

#[allow(clippy::too_many_lines)]
async fn run_cluster(
    root: &Path,
    db: &str,
    redis: &str,
    prefix: &str,
    s3: &str,
    bucket: &str,
    s3_options: &S3Options,
) {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap();
    let sources = root.join("sources");
    std::fs::create_dir_all(&sources).unwrap();
    // The seed flow sends three-feature rows.
    let seed_rows: String = csv_rows(3000, 42)
        .lines()
        .skip(1)
        .collect::<Vec<_>>()
        .chunks(3)
        .map(|c| format!("{},{}\n", c[0], c[1].split(',').next().unwrap_or("0")))
        .collect();
    std::fs::write(sources.join("seed.csv"), format!("a,b,c\n{seed_rows}")).unwrap();
    let secret: String = "5a".repeat(32);
    let env: HashMap<String, String> = [
        ("DATABASE_URL", db.to_string()),
        ("REDIS_URL", redis.to_string()),
        ("PYNOMALY_REDIS_PREFIX", prefix.to_string()),
        ("PYNOMALY_STORAGE_URL", format!("s3://{bucket}/artifacts")),
        ("PYNOMALY_SOURCES_DIR", sources.display().to_string()),
        ("PYNOMALY_SECRET_KEY", secret),
        ("PYNOMALY_JOB_LEASE_S", "3".into()),
        ("PYNOMALY_DATABASE_MAX_CONNECTIONS", "8".into()),
        ("PYNOMALY_SHUTDOWN_TIMEOUT_S", "5".into()),
        // This test is about failover under steady predict traffic (well over the default
        // 6,000 a minute from one key); rate limits have their own two-instance test.
        ("PYNOMALY_RATE_LIMIT_PER_MINUTE", "0".into()),
        ("AWS_ENDPOINT_URL", s3.to_string()),
        ("AWS_ACCESS_KEY_ID", "test".into()),
        ("AWS_SECRET_ACCESS_KEY", "test".into()),
        ("AWS_REGION", "us-east-1".into()),
        ("LOG_LEVEL", "warn".into()),
        ("RAYON_NUM_THREADS", "1".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let cluster = Cluster {
        env,
        root: root.to_path_buf(),
    };

    // Two API instances; the first start creates the deployment's admin key.
    let (port_a, port_b, port_nginx) = (free_port(), free_port(), free_port());
    let mut api_a = cluster.pynomaly(
        "api-a",
        &["serve"],
        &[
            ("PYNOMALY_BIND", format!("127.0.0.1:{port_a}")),
            ("PYNOMALY_DATA_DIR", root.join("a").display().to_string()),
        ],
    );
    let a = format!("http://127.0.0.1:{port_a}");
    wait_ready(&client, &format!("{a}/health/ready"), "instance A", &api_a).await;
    let key = std::fs::read_to_string(root.join("a/admin.key"))
        .expect("admin key")
        .trim()
        .to_string();
    let mut api_b = cluster.pynomaly(
        "api-b",
        &["serve"],
        &[
            ("PYNOMALY_BIND", format!("127.0.0.1:{port_b}")),
            ("PYNOMALY_DATA_DIR", root.join("b").display().to_string()),
        ],
    );
    let b = format!("http://127.0.0.1:{port_b}");
    wait_ready(&client, &format!("{b}/health/ready"), "instance B", &api_b).await;
    let mut workers: Vec<Proc> = (1..=2)
        .map(|i| {
            cluster.pynomaly(
                &format!("worker-{i}"),
                &["worker", "--concurrency", "1"],
                &[(
                    "PYNOMALY_DATA_DIR",
                    root.join(format!("w{i}")).display().to_string(),
                )],
            )
        })
        .collect();

    // nginx, with the repository's configuration pointed at these ports.
    let conf = std::fs::read_to_string(repo_root().join("nginx.conf")).unwrap();
    assert!(conf.contains("server 127.0.0.1:8001") && conf.contains("listen 8080"));
    let conf = conf
        .replace(
            "server 127.0.0.1:8001",
            &format!("server 127.0.0.1:{port_a}"),
        )
        .replace(
            "server 127.0.0.1:8002",
            &format!("server 127.0.0.1:{port_b}"),
        )
        .replace("listen 8080", &format!("listen 127.0.0.1:{port_nginx}"));
    let nginx_dir = root.join("nginx");
    std::fs::create_dir_all(nginx_dir.join("tmp")).unwrap();
    std::fs::write(nginx_dir.join("nginx.conf"), conf).unwrap();
    let mut nginx = Proc::spawn(
        "nginx",
        Command::new("nginx")
            .arg("-p")
            .arg(&nginx_dir)
            .arg("-c")
            .arg(nginx_dir.join("nginx.conf"))
            .args(["-e", "stderr", "-g", "daemon off;"]),
        &root.join("nginx.log"),
    );
    let lb = format!("http://127.0.0.1:{port_nginx}");
    wait_ready(&client, &format!("{lb}/health/ready"), "nginx", &nginx).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, health) = call(&client, &key, Method::GET, format!("{lb}/health"), None).await;
        if health["checks"]["workers"]["active"] == 2 {
            assert_eq!(health["checks"]["queue"]["kind"], "redis");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "two live workers expected: {health}\n{}",
            workers[0].log_tail()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!(
        "cluster up: nginx :{port_nginx} -> A :{port_a} (pid {}), B :{port_b} (pid {}); workers pids {} {}",
        api_a.pid(),
        api_b.pid(),
        workers[0].pid(),
        workers[1].pid()
    );

    // 1. The seed's client, unchanged, through nginx.
    let seed = tokio::task::spawn_blocking({
        let lb = lb.clone();
        let key = key.clone();
        move || {
            Command::new("python3")
                .arg(repo_root().join("tests/seed_client/seed_client_flow.py"))
                .env("PYNOMALY_URL", lb)
                .env("PYNOMALY_API_KEY", key)
                .env("PYNOMALY_SOURCE", "seed.csv")
                .output()
                .expect("python3 runs")
        }
    })
    .await
    .unwrap();
    let seed_out = String::from_utf8_lossy(&seed.stdout);
    assert!(
        seed.status.success() && seed_out.contains("seed client flow: ok"),
        "seed client through nginx:\n{seed_out}\n{}",
        String::from_utf8_lossy(&seed.stderr)
    );
    eprintln!("1. seed client flow through nginx: ok");

    // 2. Trained through A, served by A, B and nginx alike.
    let train: Vec<Vec<f64>> = (0..400)
        .map(|i| vec![f64::from(i % 17) / 17.0, f64::from(i % 23) / 23.0])
        .collect();
    let (status, model) = call(
        &client,
        &key,
        Method::POST,
        format!("{a}/api/v1/models"),
        Some(
            json!({"model_name": "cluster", "algorithm": "isolation_forest", "n_estimators": 25,
                    "random_state": 7, "contamination": 0.05, "data": train}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{model}");
    let rows = json!({"data": [[0.5, 0.5], [9.0, -9.0]]});
    let mut answers = Vec::new();
    for base in [&a, &b, &lb] {
        let (status, p) = call(
            &client,
            &key,
            Method::POST,
            format!("{base}/api/v1/models/cluster/predict"),
            Some(rows.clone()),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{base}: {p}");
        answers.push((p["scores"].clone(), p["threshold"].clone()));
    }
    assert!(
        answers.windows(2).all(|w| w[0] == w[1]),
        "every instance serves the same model: {answers:?}"
    );
    eprintln!("2. a model trained through A is served identically by A, B and nginx");

    // 3. Six 300,000-row batch jobs from S3; one worker is killed mid-job.
    let store = pynomaly_store::s3_bucket_with(bucket, s3_options).unwrap();
    let data = Bytes::from(csv_rows(ROWS_PER_JOB, 7));
    for j in 0..JOBS {
        store
            .put(
                &format!("data/part-{j}.csv").as_str().into(),
                PutPayload::from_bytes(data.clone()),
            )
            .await
            .unwrap();
    }
    let mut jobs = Vec::new();
    for j in 0..JOBS {
        let (status, submitted) = call(
            &client,
            &key,
            Method::POST,
            format!("{lb}/api/v1/batch"),
            Some(
                json!({"data_source": format!("s3://{bucket}/data/part-{j}.csv"),
                        "model_name": "cluster", "output_format": "csv"}),
            ),
        )
        .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{submitted}");
        jobs.push(submitted["job_id"].as_str().unwrap().to_string());
    }
    // Kill worker 1 once both workers are into their jobs.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let mut started = 0;
        for id in &jobs {
            let (_, job) = call(
                &client,
                &key,
                Method::GET,
                format!("{lb}/api/v1/jobs/{id}"),
                None,
            )
            .await;
            if job["status"] == "running"
                && job["progress"]["rows_processed"].as_u64().unwrap_or(0) > 0
            {
                started += 1;
            }
        }
        if started >= 2 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "jobs did not start:\n{}",
            workers[0].log_tail()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    workers[0].kill_hard();
    eprintln!("3. SIGKILLed worker 1 with jobs running");
    let deadline = Instant::now() + Duration::from_secs(600);
    let finished = loop {
        let mut all = Vec::new();
        for id in &jobs {
            let (_, job) = call(
                &client,
                &key,
                Method::GET,
                format!("{lb}/api/v1/jobs/{id}"),
                None,
            )
            .await;
            all.push(job);
        }
        if all.iter().all(|j| {
            matches!(
                j["status"].as_str(),
                Some("succeeded" | "failed" | "cancelled")
            )
        }) {
            break all;
        }
        assert!(
            Instant::now() < deadline,
            "jobs did not finish: {all:?}\n{}",
            workers[1].log_tail()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    for (id, job) in jobs.iter().zip(&finished) {
        assert_eq!(job["status"], "succeeded", "{job}");
        assert_eq!(job["result"]["n_samples"], ROWS_PER_JOB, "{job}");
        let out = client
            .get(format!("{lb}/api/v1/jobs/{id}/result"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
        assert_eq!(out.status(), StatusCode::OK);
        let body = out.bytes().await.unwrap();
        let lines = body.iter().filter(|&&c| c == b'\n').count();
        assert_eq!(
            lines,
            ROWS_PER_JOB + 1,
            "job {id}: one output row per input row, once"
        );
    }
    let attempts: u64 = finished
        .iter()
        .map(|j| j["attempts"].as_u64().unwrap_or(0))
        .sum();
    assert!(
        attempts > JOBS as u64,
        "the killed worker's job was taken over and run again (attempts: {attempts})"
    );
    eprintln!(
        "3. all {JOBS} jobs succeeded after the kill ({attempts} attempts in all); every row counted once"
    );

    // 4. Steady predict traffic through nginx while instance A is killed.
    let failures = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let stop_at = Instant::now() + Duration::from_secs(6);
    let clients: Vec<_> = (0..8)
        .map(|_| {
            let (client, key, lb) = (client.clone(), key.clone(), lb.clone());
            let (failures, done) = (Arc::clone(&failures), Arc::clone(&done));
            tokio::spawn(async move {
                while Instant::now() < stop_at {
                    let (status, body) = call(
                        &client,
                        &key,
                        Method::POST,
                        format!("{lb}/api/v1/models/cluster/predict"),
                        Some(json!({"data": [[0.5, 0.5], [9.0, -9.0]]})),
                    )
                    .await;
                    if status == StatusCode::OK {
                        done.fetch_add(1, Ordering::Relaxed);
                    } else {
                        failures.fetch_add(1, Ordering::Relaxed);
                        eprintln!("predict failed: {status} {body}");
                    }
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    api_a.kill_hard();
    eprintln!("4. SIGKILLed instance A under predict traffic");
    for c in clients {
        c.await.unwrap();
    }
    let (ok, failed) = (
        done.load(Ordering::Relaxed),
        failures.load(Ordering::Relaxed),
    );
    eprintln!("4. predicts through nginx: {ok} succeeded, {failed} failed");
    assert!(ok > 50, "traffic flowed: {ok}");
    assert_eq!(failed, 0, "no request failed while an instance died");

    // Graceful stop of what is left.
    workers[1].stop(Duration::from_secs(10));
    api_b.stop(Duration::from_secs(10));
    nginx.stop(Duration::from_secs(5));
}
