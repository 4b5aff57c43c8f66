//! Chaos: what pynomaly depends on is crashed or stopped under load, and nothing accepted
//! is lost. Each test starts a deployment of its own on loopback — its own `redis-server`
//! ([`testkit::RedisServer`]) and its own Postgres cluster ([`testkit::PostgresServer`],
//! `initdb` into a temporary directory, run as the `postgres` OS user), two `pynomaly
//! serve` instances and two `pynomaly worker`s — so that nothing shared is disturbed:
//!
//! - `redis_data_loss`: Redis `SHUTDOWN NOSAVE` and restarted empty with jobs queued and
//!   running → every job succeeds, its output written once;
//! - `redis_down`: Redis stopped for 10 s under predict traffic and submissions → no
//!   predict fails, submissions answer 503 with `Retry-After` (then 202 once it is back),
//!   `/health` says `degraded` naming Redis, every accepted job completes once;
//! - `postgres_down`: Postgres stopped for 10 s under mixed traffic → only 2xx or 503 with
//!   `Retry-After`, recovery without a restart, every accepted job completed once;
//! - `disk_full` (one instance on the embedded default, its data directory a small tmpfs
//!   the test mounts, as root): the disk filled → writes 507, reads served, nothing
//!   half-written, `/health` `degraded` naming the data directory, writes succeed and
//!   `/health` is healthy again once space returns.
//!
//! - `s3_down` (the deployment's artifact store an S3 bucket on a moto server the test
//!   starts): S3 cut mid-job for 10 s → jobs retry and succeed, or fail naming the store's
//!   error; no partial output object; a model trained meanwhile is refused, not listed.
//!
//! Each prints its figures (requests by answer, jobs, durations). Ignored by default (they
//! need `redis-server`, the Postgres server programs and root, and take up to a minute);
//! `.ci/run` runs them with
//! `cargo test -p pynomaly --test pynomaly -- --ignored --nocapture chaos::`.
//! A missing tool fails them, naming what to install.

mod disk_full;
mod postgres_down;
mod redis_data_loss;
mod redis_down;
mod s3_down;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use testkit::data::{csv, uniform_rows};
use testkit::wait::wait;
use testkit::{Api, PostgresServer, Proc, RedisServer, free_port, wait_ready};

use crate::{Env, pynomaly};

/// The service's request timeout here (above the metadata pool's 10 s acquire timeout, so
/// that a request waiting for Postgres is answered by the pool's 503): a request running
/// longer is answered 503.
const REQUEST_TIMEOUT_S: u64 = 15;
/// The clients' timeout: no answer by then is a hang, which the tests count and refuse.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(REQUEST_TIMEOUT_S + 5);
/// Rows of the model every test trains, and of its predict requests' width.
const FEATURES: usize = 2;

/// A deployment of the test's own: Redis, Postgres, two instances, two workers.
/// Fields drop in order: the processes before the servers they use.
struct Deployment {
    instances: Vec<Proc>,
    workers: Vec<Proc>,
    /// One client per instance, with the admin key.
    apis: Vec<Api>,
    redis: RedisServer,
    postgres: PostgresServer,
    root: PathBuf,
}

impl Deployment {
    /// Starts everything and waits until both workers are alive.
    async fn start(root: &Path) -> Deployment {
        Self::start_with(root, &[]).await
    }

    /// [`Deployment::start`] with more variables for every process (after the defaults,
    /// so they may replace them: e.g. an `s3://` `PYNOMALY_STORAGE_URL`).
    async fn start_with(root: &Path, extra: &[(&str, String)]) -> Deployment {
        let redis = RedisServer::start().await;
        let postgres = PostgresServer::start().await;
        let sources = root.join("sources");
        std::fs::create_dir_all(&sources).unwrap();
        let env = Env::default()
            .set("DATABASE_URL", postgres.url())
            .set("REDIS_URL", redis.url())
            .set("PYNOMALY_STORAGE_URL", root.join("storage"))
            .set("PYNOMALY_SOURCES_DIR", &sources)
            .set("PYNOMALY_SECRET_KEY", "5a".repeat(32))
            .set("PYNOMALY_JOB_LEASE_S", "3")
            .set("PYNOMALY_DATABASE_MAX_CONNECTIONS", "8")
            .set("PYNOMALY_SHUTDOWN_TIMEOUT_S", "5")
            .set("PYNOMALY_REQUEST_TIMEOUT_S", REQUEST_TIMEOUT_S.to_string())
            // Rate limiting stays on (it uses Redis too), with room for the test's traffic.
            .set("PYNOMALY_RATE_LIMIT_PER_MINUTE", "1000000")
            .set("LOG_LEVEL", "info")
            .set("RAYON_NUM_THREADS", "1");
        let env = extra
            .iter()
            .fold(env, |env, (name, value)| env.set(name, value));
        let mut instances = Vec::new();
        let mut apis = Vec::new();
        let mut key = String::new();
        for name in ["a", "b"] {
            let port = free_port();
            let env = env
                .clone()
                .set("PYNOMALY_BIND", format!("127.0.0.1:{port}"))
                .set("PYNOMALY_DATA_DIR", root.join(name));
            let proc = pynomaly(&format!("api-{name}"), &["serve"], &env, root);
            let base = format!("http://127.0.0.1:{port}");
            wait_ready(&format!("{base}/health/ready"), &proc).await;
            if key.is_empty() {
                // The first start creates the deployment's admin key.
                key = std::fs::read_to_string(root.join(name).join("admin.key"))
                    .expect("admin key")
                    .trim()
                    .to_string();
            }
            let client = reqwest::Client::builder()
                .timeout(CLIENT_TIMEOUT)
                .build()
                .unwrap();
            apis.push(Api::with_client(client, base).key(&key));
            instances.push(proc);
        }
        let workers: Vec<Proc> = (1..=2)
            .map(|i| {
                let env = env
                    .clone()
                    .set("PYNOMALY_DATA_DIR", root.join(format!("w{i}")));
                let args = ["worker", "--concurrency", "1"];
                pynomaly(&format!("worker-{i}"), &args, &env, root)
            })
            .collect();
        let deployment = Deployment {
            root: root.to_path_buf(),
            redis,
            postgres,
            instances,
            workers,
            apis,
        };
        deployment.wait_workers(2).await;
        eprintln!(
            "deployment up: redis :{}, postgres :{}, instances {}, 2 workers",
            deployment.redis.port(),
            deployment.postgres.port(),
            deployment
                .apis
                .iter()
                .map(Api::base)
                .collect::<Vec<_>>()
                .join(" ")
        );
        deployment
    }

    /// Waits until `/health` counts `n` live workers.
    async fn wait_workers(&self, n: u64) {
        wait("the workers are alive", Duration::from_secs(60))
            .every(Duration::from_millis(200))
            .until(async || {
                let health = self.apis[0].get("/health").await.body;
                if health["checks"]["workers"]["active"] == n {
                    Ok(())
                } else {
                    Err(format!("{health}\n{}", self.logs()))
                }
            })
            .await;
    }

    /// The processes' log tails, for a failure message.
    fn logs(&self) -> String {
        self.instances
            .iter()
            .chain(&self.workers)
            .map(|p| format!("--- {}:\n{}", p.name(), p.log_tail()))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The instances' ERROR lines (the cause of a 500), for a failure message.
    fn instance_errors(&self) -> String {
        self.instances
            .iter()
            .flat_map(|p| {
                p.log_text()
                    .lines()
                    .filter(|l| l.contains("\"ERROR\""))
                    .map(|l| format!("{}: {l}", p.name()))
                    .collect::<Vec<_>>()
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Everything the workers have logged.
    fn logs_whole(&self) -> String {
        self.workers.iter().map(Proc::log_text).collect()
    }

    /// Writes `name` (a CSV of `rows` rows) into the sources directory.
    fn source(&self, name: &str, rows: usize, seed: u64) {
        let text = csv(&["x", "y"], uniform_rows(rows, FEATURES, seed));
        std::fs::write(self.root.join("sources").join(name), text).unwrap();
    }

    /// Trains the model `name` through the first instance (at once, from inline rows).
    async fn train(&self, name: &str) {
        let rows: Vec<Vec<f64>> = (0..400)
            .map(|i| vec![f64::from(i % 17) / 17.0, f64::from(i % 23) / 23.0])
            .collect();
        self.apis[0]
            .post(
                "/api/v1/models",
                &json!({"model_name": name, "algorithm": "isolation_forest", "n_estimators": 25,
                        "random_state": 7, "contamination": 0.05, "data": rows}),
            )
            .await
            .assert_status(201);
    }

    /// Has every instance score with the model `name` once, so each holds it in memory
    /// before an outage.
    async fn warm(&self, name: &str) {
        for api in &self.apis {
            api.post(
                &format!("/api/v1/models/{name}/predict"),
                &json!({"data": [[0.5, 0.5]]}),
            )
            .await
            .assert_status(200);
        }
    }

    /// Every job of the deployment (the newest 500), by id.
    async fn jobs(&self) -> Result<BTreeMap<String, Value>, String> {
        let r = self.apis[0].get("/api/v1/jobs?limit=500").await;
        if r.status != 200 {
            return Err(format!("{} {}", r.status, r.body));
        }
        Ok(r.body["jobs"]
            .as_array()
            .expect("jobs")
            .iter()
            .map(|j| (j["job_id"].as_str().unwrap().to_string(), j.clone()))
            .collect())
    }

    /// Waits until every job of `ids` has ended, and asserts that each succeeded, having
    /// scored `rows` rows once (its result and its output's line count), and that the
    /// deployment holds no job but these (none created twice). Returns the attempts in
    /// all.
    async fn assert_jobs_succeed_once(&self, ids: &[String], rows: usize) -> u64 {
        let ended = wait("every accepted job ends", Duration::from_secs(300))
            .every(Duration::from_millis(500))
            .until(async || {
                let all = self.jobs().await?;
                let pending: Vec<&Value> = ids
                    .iter()
                    .map(|id| all.get(id).unwrap_or(&Value::Null))
                    .filter(|j| {
                        !matches!(
                            j["status"].as_str(),
                            Some("succeeded" | "failed" | "cancelled")
                        )
                    })
                    .collect();
                if pending.is_empty() {
                    Ok(all)
                } else {
                    Err(format!(
                        "{} not ended, e.g. {}\n{}",
                        pending.len(),
                        pending[0],
                        self.logs()
                    ))
                }
            })
            .await;
        assert_eq!(
            ended.len(),
            ids.len(),
            "the deployment holds exactly the accepted jobs: {:?}",
            ended.keys()
        );
        let mut attempts = 0;
        for id in ids {
            let job = &ended[id];
            assert_eq!(job["status"], "succeeded", "{job}");
            assert_eq!(job["result"]["n_samples"], rows, "{job}");
            attempts += job["attempts"].as_u64().unwrap_or(0);
            let out = self.apis[1].get(&format!("/api/v1/jobs/{id}/result")).await;
            assert_eq!(out.status, 200, "{}", out.body);
            let text = out.body.as_str().expect("CSV output");
            let lines = text.bytes().filter(|&c| c == b'\n').count();
            assert_eq!(
                lines,
                rows + 1,
                "job {id}: one output row per input row, once"
            );
        }
        attempts
    }

    /// Stops the processes gracefully (then the servers go with the value).
    fn stop(&mut self) {
        for p in self.workers.iter_mut().chain(&mut self.instances) {
            p.stop(Duration::from_secs(10));
        }
    }
}

/// What a kind of request got, counted by answer: `200`, `503+retry-after`, `no answer`, …
#[derive(Default)]
struct Tally {
    answers: Mutex<BTreeMap<(String, String), (usize, Duration)>>,
    /// Jobs whose submission was answered 202.
    accepted: Mutex<Vec<String>>,
    /// Submissions answered otherwise: their body and `Idempotency-Key`, to send again.
    rejected: Mutex<Vec<(Value, String)>>,
}

impl Tally {
    fn count(&self, what: &str, answer: &str, took: Duration) {
        let mut answers = self.answers.lock().unwrap();
        let e = answers
            .entry((what.to_string(), answer.to_string()))
            .or_default();
        e.0 += 1;
        e.1 = e.1.max(took);
    }

    /// Sends `method path [body]` and counts its answer under `what`; a 503 counts as
    /// `503+retry-after` only with that header and the error shape. Returns the reply.
    async fn call(
        &self,
        api: &Api,
        what: &str,
        method: Method,
        path: &str,
        body: Option<&Value>,
        key: Option<&str>,
    ) -> Option<testkit::Reply> {
        let start = Instant::now();
        let mut call = api.call(method, path);
        if let Some(b) = body {
            call = call.json(b);
        }
        if let Some(k) = key {
            call = call.header("Idempotency-Key", k);
        }
        let reply = call.try_send().await;
        let took = start.elapsed();
        match reply {
            Ok(r) => {
                let code = r.status.as_u16();
                let answer = if code == 503 {
                    let shaped = r.body["error"]["code"].is_string()
                        && r.body["error"]["message"].is_string();
                    match (r.headers.get("retry-after"), shaped) {
                        (Some(_), true) => "503+retry-after".to_string(),
                        _ => {
                            eprintln!("{what}: 503 without Retry-After or error shape: {r:?}");
                            "503 bare".to_string()
                        }
                    }
                } else {
                    if code >= 500 {
                        eprintln!("{what}: {code} {}", r.body);
                    }
                    code.to_string()
                };
                self.count(what, &answer, took);
                Some(r)
            }
            Err(e) => {
                eprintln!("{what}: no answer after {took:?}: {e}");
                self.count(what, "no answer", took);
                None
            }
        }
    }

    /// How many `what` requests got `answer`.
    fn got(&self, what: &str, answer: &str) -> usize {
        self.answers
            .lock()
            .unwrap()
            .get(&(what.to_string(), answer.to_string()))
            .map_or(0, |e| e.0)
    }

    /// Every answer `what` requests got other than those in `allowed`, with counts.
    fn other_than(&self, what: &str, allowed: &[&str]) -> Vec<(String, usize)> {
        self.answers
            .lock()
            .unwrap()
            .iter()
            .filter(|((w, a), _)| w == what && !allowed.contains(&a.as_str()))
            .map(|((_, a), (n, _))| (a.clone(), *n))
            .collect()
    }

    /// Sends again, through `api`, every submission that was not answered 202, with its
    /// `Idempotency-Key`, as a client retrying after `Retry-After` would, until each is
    /// answered 202 (a job created now) or 200 (the job its first try created after all);
    /// adds their jobs to the accepted ones. Returns (202s, 200s).
    async fn resubmit_rejected(&self, api: &Api) -> (usize, usize) {
        let rejected = self.rejected.lock().unwrap().clone();
        let (mut created, mut found) = (0, 0);
        for (body, key) in rejected {
            let r = wait("a resubmission is accepted", Duration::from_secs(60))
                .every(Duration::from_secs(1))
                .until(async || {
                    let r = api
                        .call(Method::POST, "/api/v1/batch")
                        .json(&body)
                        .header("Idempotency-Key", &key)
                        .send()
                        .await;
                    match r.status.as_u16() {
                        200 | 202 => Ok(r),
                        _ => Err(format!("{} {}", r.status, r.body)),
                    }
                })
                .await;
            if r.status == 202 {
                created += 1;
            } else {
                found += 1;
            }
            let id = r.body["job_id"].as_str().expect("job_id").to_string();
            let mut accepted = self.accepted.lock().unwrap();
            if !accepted.contains(&id) {
                accepted.push(id);
            }
        }
        (created, found)
    }

    /// Prints the figures.
    fn print(&self, scenario: &str) {
        eprintln!("{scenario}: requests by answer (count, slowest)");
        for ((what, answer), (n, slowest)) in self.answers.lock().unwrap().iter() {
            eprintln!("  {what:<10} {answer:<16} {n:>6}  {slowest:.2?}");
        }
    }
}

/// Traffic of kind `what` from `clients` tasks over the deployment's instances (each task
/// its own instance in turn) until `stop`: each round calls `request(api, i)` and counts
/// its answer; submissions answered 202 are recorded as accepted.
fn traffic(
    tally: &Arc<Tally>,
    apis: &[Api],
    clients: usize,
    stop: &Arc<AtomicBool>,
    what: &'static str,
    pause: Duration,
    request: impl Fn(usize) -> Request + Send + Sync + 'static,
) -> Vec<tokio::task::JoinHandle<()>> {
    let request = Arc::new(request);
    (0..clients)
        .map(|c| {
            let (tally, stop, request) =
                (Arc::clone(tally), Arc::clone(stop), Arc::clone(&request));
            let api = apis[c % apis.len()].clone();
            tokio::spawn(async move {
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let (method, path, body, key) = request(c * 1_000_000 + i);
                    let reply = tally
                        .call(&api, what, method, &path, body.as_ref(), key.as_deref())
                        .await;
                    let accepted = reply.as_ref().and_then(|r| {
                        (r.status == 202).then(|| r.body["job_id"].as_str().map(str::to_string))?
                    });
                    match (accepted, body, key) {
                        (Some(id), _, _) => tally.accepted.lock().unwrap().push(id),
                        (None, Some(body), Some(key)) => {
                            tally.rejected.lock().unwrap().push((body, key));
                        }
                        _ => {}
                    }
                    i += 1;
                    tokio::time::sleep(pause).await;
                }
            })
        })
        .collect()
}

/// A request of a traffic client: method, path, JSON body, `Idempotency-Key` (a
/// submission's, which makes it one to send again if not accepted).
type Request = (Method, String, Option<Value>, Option<String>);

/// A predict request for the model `model`.
fn predict(model: &'static str) -> impl Fn(usize) -> Request {
    move |_| {
        (
            Method::POST,
            format!("/api/v1/models/{model}/predict"),
            Some(json!({"data": [[0.5, 0.5], [9.0, -9.0]]})),
            None,
        )
    }
}

/// `GET path`.
fn get(path: &'static str) -> impl Fn(usize) -> Request {
    move |_| (Method::GET, path.to_string(), None, None)
}

/// A batch submission scoring `source` with `model`, CSV out, under an `Idempotency-Key`
/// of its own.
fn submit(model: &'static str, source: &'static str) -> impl Fn(usize) -> Request {
    let run = uuid::Uuid::new_v4().simple().to_string();
    move |i| {
        (
            Method::POST,
            "/api/v1/batch".to_string(),
            Some(json!({"data_source": source, "model_name": model, "output_format": "csv"})),
            Some(format!("chaos-{run}-{i}")),
        )
    }
}
