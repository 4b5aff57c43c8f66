//! The scale-out deployment, for real, on loopback: two `pynomaly serve` instances, two
//! `pynomaly worker` processes and nginx (the repository's `nginx.conf`), on Postgres, Redis
//! and an S3-compatible server; then, through nginx:
//!
//! 1. the ML-engineer guide's `PynomalyAPIClient` flow (train, predict, batch, job status);
//! 2. a model trained through one instance is served by both;
//! 3. six batch jobs of 300,000 rows each read from S3, with one worker killed (SIGKILL)
//!    mid-job: every job succeeds, every row is counted once;
//! 4. one API instance killed (SIGKILL) under steady predict traffic: no request fails.
//!
//! Ignored by default (it needs nginx and the three servers, and takes a minute); `.ci/run`
//! runs it with `cargo test -p pynomaly --test pynomaly -- --ignored --nocapture cluster::`
//! and `PYNOMALY_TEST_DATABASE_URL`, `PYNOMALY_TEST_REDIS_URL`, `PYNOMALY_TEST_S3_ENDPOINT`
//! set.
//! Everything it creates (database, Redis keys, bucket, processes, files) is removed at the
//! end, also when it fails.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use object_store::{ObjectStoreExt, PutPayload};
use reqwest::Method;
use serde_json::{Value, json};
use testkit::data::{csv, uniform_rows};
use testkit::env::{DATABASE_URL_VAR, REDIS_URL_VAR, S3_ENDPOINT_VAR, require};
use testkit::wait::wait;
use testkit::{Api, Proc, ScaleOut, TestBucket, free_port, repo_root, wait_ready};

use crate::{Env, pynomaly};

const ROWS_PER_JOB: usize = 300_000;
const JOBS: usize = 6;

/// `n` rows `x,y`, uniform in the unit square, from `seed`.
fn uniform_csv(n: usize, seed: u64) -> String {
    csv(&["x", "y"], uniform_rows(n, 2, seed))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "starts nginx, two instances and two workers on Postgres, Redis and S3: run by .ci/run"]
async fn the_cluster_survives_killed_workers_and_instances() {
    require(&[DATABASE_URL_VAR, REDIS_URL_VAR, S3_ENDPOINT_VAR]);
    testkit::with_postgres_and_redis(async |env| {
        TestBucket::run(async |bucket| {
            let dir = tempfile::tempdir().unwrap();
            run_cluster(dir.path(), &env, bucket).await;
        })
        .await;
    })
    .await;
}

#[allow(clippy::too_many_lines)]
async fn run_cluster(root: &Path, scale_out: &ScaleOut, bucket: &TestBucket) {
    let sources = root.join("sources");
    std::fs::create_dir_all(&sources).unwrap();
    // The seed flow sends three-feature rows.
    let seed_rows = csv(&["a", "b", "c"], uniform_rows(1000, 3, 42));
    std::fs::write(sources.join("seed.csv"), seed_rows).unwrap();
    let env = Env::default()
        .set("DATABASE_URL", &scale_out.database_url)
        .set("REDIS_URL", &scale_out.redis_url)
        .set("PYNOMALY_REDIS_PREFIX", &scale_out.redis_prefix)
        .set("PYNOMALY_STORAGE_URL", bucket.uri("artifacts"))
        .set("PYNOMALY_SOURCES_DIR", &sources)
        .set("PYNOMALY_SECRET_KEY", "5a".repeat(32))
        .set("PYNOMALY_JOB_LEASE_S", "3")
        .set("PYNOMALY_DATABASE_MAX_CONNECTIONS", "8")
        .set("PYNOMALY_SHUTDOWN_TIMEOUT_S", "5")
        // This test is about failover under steady predict traffic (well over the default
        // 6,000 a minute from one key); rate limits have their own two-instance test.
        .set("PYNOMALY_RATE_LIMIT_PER_MINUTE", "0")
        .set("AWS_ENDPOINT_URL", bucket.endpoint())
        .set("AWS_ACCESS_KEY_ID", TestBucket::ACCESS_KEY_ID)
        .set("AWS_SECRET_ACCESS_KEY", TestBucket::SECRET_ACCESS_KEY)
        .set("AWS_REGION", TestBucket::REGION)
        .set("LOG_LEVEL", "warn")
        .set("RAYON_NUM_THREADS", "1");

    // Two API instances; the first start creates the deployment's admin key.
    let (port_a, port_b, port_nginx) = (free_port(), free_port(), free_port());
    let serve = |name: &str, port: u16, data: &str| {
        let env = env
            .clone()
            .set("PYNOMALY_BIND", format!("127.0.0.1:{port}"))
            .set("PYNOMALY_DATA_DIR", root.join(data));
        pynomaly(name, &["serve"], &env, root)
    };
    let mut api_a = serve("api-a", port_a, "a");
    let a = format!("http://127.0.0.1:{port_a}");
    wait_ready(&format!("{a}/health/ready"), &api_a).await;
    let key = std::fs::read_to_string(root.join("a/admin.key"))
        .expect("admin key")
        .trim()
        .to_string();
    let mut api_b = serve("api-b", port_b, "b");
    let b = format!("http://127.0.0.1:{port_b}");
    wait_ready(&format!("{b}/health/ready"), &api_b).await;
    let mut workers: Vec<Proc> = (1..=2)
        .map(|i| {
            let env = env
                .clone()
                .set("PYNOMALY_DATA_DIR", root.join(format!("w{i}")));
            let args = ["worker", "--concurrency", "1"];
            pynomaly(&format!("worker-{i}"), &args, &env, root)
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
    wait_ready(&format!("{lb}/health/ready"), &nginx).await;
    let api = Api::new(&lb, &key);
    let health = wait("two live workers", Duration::from_secs(30))
        .every(Duration::from_millis(200))
        .until(async || {
            let health = api.get("/health").await.body;
            if health["checks"]["workers"]["active"] == 2 {
                Ok(health)
            } else {
                Err(format!("{health}\n{}", workers[0].log_tail()))
            }
        })
        .await;
    assert_eq!(health["checks"]["queue"]["kind"], "redis");
    eprintln!(
        "cluster up: nginx :{port_nginx} -> A :{port_a} (pid {}), B :{port_b} (pid {}); workers pids {} {}",
        api_a.pid(),
        api_b.pid(),
        workers[0].pid(),
        workers[1].pid()
    );

    // 1. The guide's client, unchanged, through nginx.
    testkit::assert_seed_client_flow_succeeds(&lb, &key, "seed.csv", "through nginx").await;
    eprintln!("1. seed client flow through nginx: ok");

    // 2. Trained through A, served by A, B and nginx alike.
    let train: Vec<Vec<f64>> = (0..400)
        .map(|i| vec![f64::from(i % 17) / 17.0, f64::from(i % 23) / 23.0])
        .collect();
    let model = api
        .at(&a)
        .post(
            "/api/v1/models",
            &json!({"model_name": "cluster", "algorithm": "isolation_forest", "n_estimators": 25,
                    "random_state": 7, "contamination": 0.05, "data": train}),
        )
        .await;
    model.assert_status(201);
    let rows = json!({"data": [[0.5, 0.5], [9.0, -9.0]]});
    let mut answers = Vec::new();
    for base in [&a, &b, &lb] {
        let p = api
            .at(base)
            .post("/api/v1/models/cluster/predict", &rows)
            .await;
        let p = p.assert_status(200);
        answers.push((p["scores"].clone(), p["threshold"].clone()));
    }
    assert!(
        answers.windows(2).all(|w| w[0] == w[1]),
        "every instance serves the same model: {answers:?}"
    );
    eprintln!("2. a model trained through A is served identically by A, B and nginx");

    // 3. Six 300,000-row batch jobs from S3; one worker is killed mid-job.
    let store = bucket.store();
    let data = Bytes::from(uniform_csv(ROWS_PER_JOB, 7));
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
        let source = bucket.uri(&format!("data/part-{j}.csv"));
        let submitted = api
            .post(
                "/api/v1/batch",
                &json!({"data_source": source, "model_name": "cluster", "output_format": "csv"}),
            )
            .await;
        let submitted = submitted.assert_status(202);
        jobs.push(submitted["job_id"].as_str().unwrap().to_string());
    }
    let all_jobs = async || {
        let mut all = Vec::new();
        for id in &jobs {
            all.push(api.get(&format!("/api/v1/jobs/{id}")).await.body);
        }
        all
    };
    // Kill worker 1 once both workers are into their jobs.
    eventually_running(&all_jobs, &workers[0]).await;
    workers[0].kill_hard();
    eprintln!("3. SIGKILLed worker 1 with jobs running");
    let finished = wait("every job ends", Duration::from_secs(600))
        .every(Duration::from_millis(500))
        .until(async || {
            let all = all_jobs().await;
            let ended = |j: &Value| {
                matches!(
                    j["status"].as_str(),
                    Some("succeeded" | "failed" | "cancelled")
                )
            };
            if all.iter().all(ended) {
                Ok(all)
            } else {
                Err(format!("{all:?}\n{}", workers[1].log_tail()))
            }
        })
        .await;
    for (id, job) in jobs.iter().zip(&finished) {
        assert_eq!(job["status"], "succeeded", "{job}");
        assert_eq!(job["result"]["n_samples"], ROWS_PER_JOB, "{job}");
        let out = api.get(&format!("/api/v1/jobs/{id}/result")).await;
        assert_eq!(out.status, 200);
        let text = out.body.as_str().expect("CSV output");
        let lines = text.bytes().filter(|&c| c == b'\n').count();
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
            let api = api.clone();
            let (failures, done) = (Arc::clone(&failures), Arc::clone(&done));
            tokio::spawn(async move {
                let rows = json!({"data": [[0.5, 0.5], [9.0, -9.0]]});
                while Instant::now() < stop_at {
                    let path = "/api/v1/models/cluster/predict";
                    match api.call(Method::POST, path).json(&rows).try_send().await {
                        Ok(r) if r.status == 200 => {
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(r) => {
                            failures.fetch_add(1, Ordering::Relaxed);
                            eprintln!("predict failed: {} {}", r.status, r.body);
                        }
                        Err(e) => {
                            failures.fetch_add(1, Ordering::Relaxed);
                            eprintln!("predict failed: {e}");
                        }
                    }
                }
            })
        })
        .collect();
    // Kill A once traffic is flowing through both instances.
    wait("predicts flow through nginx", Duration::from_secs(5))
        .until(async || {
            let ok = done.load(Ordering::Relaxed);
            if ok >= 20 {
                Ok(())
            } else {
                Err(format!("{ok} answered"))
            }
        })
        .await;
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

/// Waits until at least two jobs are running and have processed rows: both workers are
/// into their jobs.
async fn eventually_running(all_jobs: &impl AsyncFn() -> Vec<Value>, worker: &Proc) {
    wait("two jobs are under way", Duration::from_secs(120))
        .until(async || {
            let all = all_jobs().await;
            let started = all
                .iter()
                .filter(|job| {
                    job["status"] == "running"
                        && job["progress"]["rows_processed"].as_u64().unwrap_or(0) > 0
                })
                .count();
            if started >= 2 {
                Ok(())
            } else {
                Err(format!("{all:?}\n{}", worker.log_tail()))
            }
        })
        .await;
}
