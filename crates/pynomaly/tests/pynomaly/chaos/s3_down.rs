//! S3 unavailable mid-job: the deployment's artifact store is a bucket on a moto server the
//! test starts, reached through a TCP relay of the test's own that stands for "S3" on the
//! network. Batch jobs write their outputs to `s3://`; while they run, S3 is cut off for
//! 10 s (the relay's port closed and every open connection dropped, as a crashed or
//! partitioned S3 endpoint looks to its clients) and then answers again. moto keeps its
//! objects in memory, so killing moto itself would bring back an S3 without the bucket or
//! the models written before — unlike S3 — hence the relay.
//!
//! What must hold: every job ends — succeeded (its output whole: one line per input row)
//! or failed with the store's cause in its `error` — none hangs; the bucket holds no
//! object of a failed attempt (only models and the outputs of succeeded jobs) and, within
//! a minute of S3 answering again, no multipart upload a failed attempt began; `/health`
//! says `degraded` naming the artifact store meanwhile; a model trained meanwhile is
//! refused with a clear error (not 201, not 500) and is never listed or served; training
//! and predicting work again afterwards, with no restart.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use testkit::wait::wait;
use testkit::{Proc, Relay, free_port};

use super::Deployment;

const OUTAGE: Duration = Duration::from_secs(10);
/// Rows of each job: enough that its output spans several 5 MiB parts and the job is
/// still writing when S3 goes.
const ROWS: usize = 300_000;
const JOBS: usize = 4;
const BUCKET: &str = "pynomaly-chaos";

/// A moto server (S3) on a free loopback port, started by the test.
struct Moto {
    proc: Proc,
    port: u16,
}

impl Moto {
    async fn start(root: &Path) -> Moto {
        let found = Command::new("python3")
            .args(["-c", "import moto.server"])
            .status()
            .is_ok_and(|s| s.success());
        assert!(
            found,
            "s3_down: moto is not installed: install it with `python3 -m pip install 'moto[server]'`"
        );
        let port = free_port();
        let mut cmd = Command::new("python3");
        cmd.args([
            "-m",
            "moto.server",
            "-H",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ]);
        let proc = Proc::spawn("moto", &mut cmd, &root.join("moto.log"));
        let url = format!("http://127.0.0.1:{port}/");
        wait("moto answers", Duration::from_secs(30))
            .every(Duration::from_millis(200))
            .until(async || match reqwest::get(&url).await {
                Ok(r) if r.status().is_success() => Ok(()),
                other => Err(format!("{other:?}\n{}", proc.log_tail())),
            })
            .await;
        Moto { proc, port }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}/{BUCKET}{path}", self.port)
    }

    /// Every key in the bucket (asked of moto directly, not through the relay).
    async fn keys(&self) -> Vec<String> {
        testkit::s3::object_keys(&self.url("")).await
    }

    /// Multipart uploads started and neither completed nor aborted.
    async fn incomplete_uploads(&self) -> Vec<String> {
        testkit::s3::incomplete_uploads(&self.url("")).await
    }

    /// Waits up to `within` for the incomplete uploads to be gone: returns how many there
    /// were at first, those left, and how long it took.
    async fn uploads_cleaned(&self, within: Duration) -> (usize, Vec<String>, Duration) {
        let started = Instant::now();
        let mut left = self.incomplete_uploads().await;
        let at_first = left.len();
        while !left.is_empty() && started.elapsed() < within {
            tokio::time::sleep(Duration::from_millis(500)).await;
            left = self.incomplete_uploads().await;
        }
        (at_first, left, started.elapsed())
    }
}

/// How long the workers have, once S3 answers again, to abort what the cut attempts
/// uploaded (their background tries are at most 15 s apart).
const CLEANUP: Duration = Duration::from_secs(60);

fn train_body(name: &str) -> Value {
    let rows: Vec<Vec<f64>> = (0..400)
        .map(|i| vec![f64::from(i % 17) / 17.0, f64::from(i % 23) / 23.0])
        .collect();
    json!({"model_name": name, "algorithm": "isolation_forest", "n_estimators": 25,
           "random_state": 7, "contamination": 0.05, "data": rows})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "starts moto, Redis, Postgres, two instances and two workers of its own: run by .ci/run"]
async fn jobs_writing_to_s3_survive_an_outage_and_nothing_half_written_is_served() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let moto = Moto::start(root).await;
    let created = reqwest::Client::new()
        .put(moto.url(""))
        .send()
        .await
        .unwrap();
    assert!(
        created.status().is_success(),
        "create the bucket: {created:?}"
    );
    let mut s3 = Relay::open(free_port(), moto.port).await;
    let extra = [
        ("PYNOMALY_STORAGE_URL", format!("s3://{BUCKET}/deploy")),
        (
            "AWS_ENDPOINT_URL",
            format!("http://127.0.0.1:{}", s3.port()),
        ),
        ("AWS_ACCESS_KEY_ID", "test".to_string()),
        ("AWS_SECRET_ACCESS_KEY", "test".to_string()),
        ("AWS_REGION", "us-east-1".to_string()),
    ];
    let mut d = Deployment::start_with(root, &extra).await;
    d.train("chaos").await;
    d.source("big.csv", ROWS, 1);
    let batch = json!({"data_source": "big.csv", "model_name": "chaos", "output_format": "csv"});
    let mut ids = Vec::new();
    for _ in 0..JOBS {
        let r = d.apis[0].post("/api/v1/batch", &batch).await;
        ids.push(r.assert_status(202)["job_id"].as_str().unwrap().to_string());
    }
    // Cut S3 once a job is running (reading its source, writing its output).
    wait("a job runs", Duration::from_secs(60))
        .every(Duration::from_millis(50))
        .until(async || {
            let jobs = d.jobs().await?;
            if jobs.values().any(|j| j["status"] == "running") {
                Ok(())
            } else {
                Err(format!("{jobs:?}"))
            }
        })
        .await;
    let cut_at = Instant::now();
    s3.cut().await;

    // Meanwhile: `/health` names the artifact store; a model trained is refused.
    let health = wait("/health names the artifact store", Duration::from_secs(8))
        .every(Duration::from_millis(250))
        .until(async || {
            let h = d.apis[0].get("/health").await;
            let reasons = h.body["reasons"].to_string();
            if h.body["status"] == "degraded" && reasons.contains("artifact store") {
                Ok(h)
            } else {
                Err(format!("{} {}", h.status, h.body))
            }
        })
        .await;
    let train_during = d.apis[1]
        .post("/api/v1/models", &train_body("during"))
        .await;
    let train_took = cut_at.elapsed();
    if let Some(left) = OUTAGE.checked_sub(cut_at.elapsed()) {
        tokio::time::sleep(left).await;
    }
    s3.reopen().await;
    let outage = cut_at.elapsed();
    let back = Instant::now();

    // Every job ends, one way or the other.
    let ended = wait("every job ends", Duration::from_secs(300))
        .every(Duration::from_millis(500))
        .until(async || {
            let all = d.jobs().await?;
            let pending: Vec<&Value> = ids
                .iter()
                .map(|id| all.get(id).unwrap_or(&Value::Null))
                .filter(|j| !matches!(j["status"].as_str(), Some("succeeded" | "failed")))
                .collect();
            if pending.is_empty() {
                Ok(all)
            } else {
                Err(format!("{} not ended, e.g. {}", pending.len(), pending[0]))
            }
        })
        .await;
    let drained = back.elapsed();
    let mut succeeded = Vec::new();
    let mut failed = Vec::new();
    let mut attempts = 0;
    for id in &ids {
        let job = &ended[id];
        attempts += job["attempts"].as_u64().unwrap_or(0);
        if job["status"] == "succeeded" {
            succeeded.push(job.clone());
        } else {
            failed.push(job.clone());
        }
    }
    // After: training and predicting work again.
    d.apis[0]
        .post("/api/v1/models", &train_body("after"))
        .await
        .assert_status(201);
    let after_predict = d.apis[1]
        .post(
            "/api/v1/models/after/predict",
            &json!({"data": [[0.5, 0.5], [9.0, -9.0]]}),
        )
        .await;
    let during_predict = d.apis[0]
        .post(
            "/api/v1/models/during/predict",
            &json!({"data": [[0.5, 0.5]]}),
        )
        .await;
    let models = d.apis[0].get("/api/v1/models?limit=500").await;
    // What the cut attempts had uploaded is aborted by the workers once S3 answers.
    let (incomplete_at_end, incomplete, cleaned_in) = moto.uploads_cleaned(CLEANUP).await;
    let keys = moto.keys().await;
    eprintln!(
        "s3_down: S3 cut {outage:.1?} while {JOBS} jobs of {ROWS} rows ran; {} succeeded, {} \
         failed ({attempts} attempts in all), all ended {drained:.1?} after S3 returned; \
         /health meanwhile: {} {}; train during the outage: {} in {train_took:.1?} {}; \
         predict of that model afterwards: {}; bucket: {} objects; {incomplete_at_end} \
         incomplete multipart uploads when the jobs had ended, {} {cleaned_in:.1?} later \
         {incomplete:?}",
        succeeded.len(),
        failed.len(),
        health.body["status"],
        health.body["reasons"],
        train_during.status,
        train_during.body,
        during_predict.status,
        keys.len(),
        incomplete.len(),
    );
    for job in &failed {
        eprintln!("s3_down: failed job: {}", job["error"]);
    }
    assert_eq!(
        incomplete,
        Vec::<String>::new(),
        "uploads of failed attempts aborted"
    );

    // Jobs: whole outputs, or a failure naming the store.
    for job in &succeeded {
        let id = job["job_id"].as_str().unwrap();
        assert_eq!(job["result"]["n_samples"], ROWS, "{job}");
        let out = d.apis[1].get(&format!("/api/v1/jobs/{id}/result")).await;
        assert_eq!(out.status, 200, "{}", out.body);
        let lines = out
            .body
            .as_str()
            .expect("CSV output")
            .bytes()
            .filter(|&c| c == b'\n')
            .count();
        assert_eq!(lines, ROWS + 1, "job {id}: one output row per input row");
    }
    for job in &failed {
        let error = job["error"].as_str().unwrap_or_default();
        assert!(
            error.contains("s3://") || error.contains("artifact store"),
            "a failed job names the store's failure: {job}"
        );
    }
    // The bucket: model files and the outputs of succeeded jobs, nothing else.
    let outputs: Vec<String> = succeeded
        .iter()
        .flat_map(|j| {
            j["result"]["outputs"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .map(|o| format!("deploy/{}", o["path"].as_str().unwrap()))
        .collect();
    for key in &keys {
        assert!(
            key.starts_with("deploy/models/") || outputs.contains(key),
            "an object that is neither a model nor a succeeded job's output: {key} (all: {keys:?})"
        );
    }
    for output in &outputs {
        assert!(keys.contains(output), "{output} missing: {keys:?}");
    }
    // The model trained during the outage: refused with the error shape, never served.
    assert_ne!(train_during.status, 201, "{}", train_during.body);
    assert_ne!(train_during.status, 500, "{}", train_during.body);
    assert!(
        train_during.body["error"]["message"].is_string(),
        "{}",
        train_during.body
    );
    let listed = models.assert_status(200).to_string();
    assert!(
        listed.contains("\"chaos\"") && listed.contains("\"after\""),
        "{listed}"
    );
    assert!(
        !listed.contains("\"during\""),
        "a refused model is listed: {listed}"
    );
    assert_eq!(during_predict.status, 404, "{}", during_predict.body);
    assert_eq!(after_predict.status, 200, "{}", after_predict.body);
    // Model files: the two listed models' (a model and its reference sample each).
    let model_files = keys.iter().filter(|k| k.ends_with(".pnmy")).count();
    assert_eq!(model_files, 2, "model files: {keys:?}");

    // Second round: S3 stays away until the jobs have used up their attempts. Each
    // fails, its error naming the store's failure, and leaves no object behind.
    let mut doomed = Vec::new();
    for _ in 0..2 {
        let r = d.apis[0].post("/api/v1/batch", &batch).await;
        doomed.push(r.assert_status(202)["job_id"].as_str().unwrap().to_string());
    }
    wait("a job runs", Duration::from_secs(60))
        .every(Duration::from_millis(50))
        .until(async || {
            let jobs = d.jobs().await?;
            if doomed.iter().any(|id| jobs[id]["status"] == "running") {
                Ok(())
            } else {
                Err(format!("{jobs:?}"))
            }
        })
        .await;
    let cut_at = Instant::now();
    s3.cut().await;
    let ended = wait("the jobs fail while S3 is away", Duration::from_secs(180))
        .every(Duration::from_millis(500))
        .until(async || {
            let all = d.jobs().await?;
            let jobs: Vec<Value> = doomed.iter().map(|id| all[id].clone()).collect();
            if jobs
                .iter()
                .all(|j| matches!(j["status"].as_str(), Some("succeeded" | "failed")))
            {
                Ok(jobs)
            } else {
                Err(format!("{jobs:?}"))
            }
        })
        .await;
    let down_for = cut_at.elapsed();
    s3.reopen().await;
    let keys = moto.keys().await;
    // The uploads the cut attempts had started (among them one whose creation S3 carried
    // out while the cut lost its answer) could not be aborted while S3 was away: the
    // workers abort them in the background once it answers.
    let (left_at_return, incomplete, cleaned_in) = moto.uploads_cleaned(CLEANUP).await;
    eprintln!(
        "s3_down: S3 away until the jobs ended ({down_for:.1?}): {:?}; bucket: {} objects; \
         {left_at_return} incomplete multipart uploads when S3 returned, {} after \
         {cleaned_in:.1?}",
        ended
            .iter()
            .map(|j| (
                j["status"].clone(),
                j["attempts"].clone(),
                j["error"].clone()
            ))
            .collect::<Vec<_>>(),
        keys.len(),
        incomplete.len()
    );
    assert_eq!(
        incomplete,
        Vec::<String>::new(),
        "uploads of failed attempts aborted once S3 answered"
    );
    for job in &ended {
        assert_eq!(job["status"], "failed", "{job}");
        let error = job["error"].as_str().unwrap_or_default();
        assert!(
            error.starts_with("failed after")
                && error.contains("s3://")
                && error.contains("the artifact store is unavailable"),
            "the job's error names the attempts and the store's failure: {job}"
        );
        assert!(
            !error.contains("http://"),
            "the store's internal endpoint stays in the logs: {job}"
        );
        let id = job["job_id"].as_str().unwrap();
        assert!(
            !keys.iter().any(|k| k.contains(id)),
            "an object of failed job {id}: {keys:?}"
        );
    }
    d.stop();
    drop(moto.proc);
}
