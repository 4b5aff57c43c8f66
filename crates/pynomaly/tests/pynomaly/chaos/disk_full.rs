//! The disk of the embedded default (SQLite and model files in the data directory) fills
//! up: writes are refused with 507 (or 503 with `Retry-After`) and the error shape, never a
//! 500; reads keep being served; once space returns, writes succeed again without a
//! restart. The data directory is a small tmpfs the test mounts (the tests run as root).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use testkit::{Api, free_port, wait_ready};

use super::{FEATURES, Tally};
use crate::{Env, pynomaly};

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .output()
            .expect("mount runs (util-linux)");
        assert!(
            out.status.success(),
            "cannot mount a tmpfs at {} (the test needs root, or CAP_SYS_ADMIN): {}",
            at.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(at.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the file system of `path` with the file `path` until a write finds no space;
/// returns the bytes written.
fn fill(path: &Path) -> u64 {
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![0x5a_u8; 64 * 1024];
    let mut written = 0;
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(n) => written += n as u64,
            Err(e) if e.kind() == std::io::ErrorKind::StorageFull => break,
            Err(e) => panic!("filling {}: {e}", path.display()),
        }
    }
    let _ = f.sync_all();
    written
}

/// Every file under `dir`, as text.
fn walk(dir: &Path) -> Vec<String> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path.display().to_string());
        }
    }
    files
}

fn train_body(name: &str) -> Value {
    let rows: Vec<Vec<f64>> = (0..400)
        .map(|i| vec![f64::from(i % 17) / 17.0, f64::from(i % 23) / 23.0])
        .collect();
    json!({"model_name": name, "algorithm": "isolation_forest", "n_estimators": 25,
           "random_state": 7, "contamination": 0.05, "data": rows})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "mounts a tmpfs (root) and starts an instance on it: run by .ci/run"]
async fn a_full_disk_refuses_writes_with_507_keeps_serving_reads_then_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let data = Tmpfs::mount(&root.join("data"), "24m");
    let sources = root.join("sources");
    std::fs::create_dir_all(&sources).unwrap();
    let text = testkit::data::csv(&["x", "y"], testkit::data::uniform_rows(2_000, FEATURES, 3));
    std::fs::write(sources.join("small.csv"), text).unwrap();
    let port = free_port();
    let env = Env::default()
        .set("PYNOMALY_BIND", format!("127.0.0.1:{port}"))
        .set("PYNOMALY_DATA_DIR", &data.0)
        .set("PYNOMALY_SOURCES_DIR", &sources)
        .set("LOG_LEVEL", "info")
        .set("RAYON_NUM_THREADS", "1");
    let mut server = pynomaly("api-embedded", &["serve"], &env, root);
    let base = format!("http://127.0.0.1:{port}");
    wait_ready(&format!("{base}/health/ready"), &server).await;
    let key = std::fs::read_to_string(data.0.join("admin.key")).unwrap();
    let client = reqwest::Client::builder()
        .timeout(super::CLIENT_TIMEOUT)
        .build()
        .unwrap();
    let api = Api::with_client(client, &base).key(key.trim());

    // Before: a model and a finished job to read back later.
    api.post("/api/v1/models", &train_body("before"))
        .await
        .assert_status(201);
    let batch = json!({"data_source": "small.csv", "model_name": "before", "output_format": "csv"});
    let job = api.post("/api/v1/batch", &batch).await;
    let job_id = job.assert_status(202)["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    let done = api.wait_job(&job_id, Duration::from_secs(60)).await;
    assert_eq!(done["status"], "succeeded", "{done}");

    // `/health` before: the data directory has room (a 24 MiB tmpfs: low is under 1%).
    let before = api.get("/health").await;
    assert_eq!(before.body["status"], "healthy", "{}", before.body);
    assert_eq!(
        before.body["checks"]["disk"]["status"], "ok",
        "{}",
        before.body
    );

    let filler = data.0.join("filler");
    let filled = fill(&filler);
    let full_at = Instant::now();
    let tally = Tally::default();
    let predict = json!({"data": [[0.5, 0.5], [9.0, -9.0]]});
    let mut accepted = Vec::new();
    for i in 0..5 {
        let name = format!("during-{i}");
        tally
            .call(
                &api,
                "train",
                Method::POST,
                "/api/v1/models",
                Some(&train_body(&name)),
                None,
            )
            .await;
        if let Some(r) = tally
            .call(
                &api,
                "submit",
                Method::POST,
                "/api/v1/batch",
                Some(&batch),
                None,
            )
            .await
            && r.status == 202
        {
            accepted.push(r.body["job_id"].as_str().unwrap().to_string());
        }
        for _ in 0..4 {
            let path = "/api/v1/models/before/predict";
            tally
                .call(&api, "predict", Method::POST, path, Some(&predict), None)
                .await;
        }
        tally
            .call(&api, "list", Method::GET, "/api/v1/models", None, None)
            .await;
        tally
            .call(&api, "list", Method::GET, "/api/v1/jobs", None, None)
            .await;
        let result = format!("/api/v1/jobs/{job_id}/result");
        tally
            .call(&api, "result", Method::GET, &result, None, None)
            .await;
    }
    let health = api.get("/health").await;
    // Jobs accepted while full end (succeeded, or failed naming the cause), none hangs.
    let mut ended = Vec::new();
    for id in &accepted {
        let job = api.wait_job(id, Duration::from_secs(60)).await;
        ended.push((job["status"].clone(), job["error"].clone()));
    }
    let while_full = full_at.elapsed();

    std::fs::remove_file(&filler).unwrap();
    let freed = Instant::now();
    // `/health` once space returns: healthy again, the disk check ok.
    let health_after = api.get("/health").await;
    api.post("/api/v1/models", &train_body("after"))
        .await
        .assert_status(201);
    api.post("/api/v1/models/after/predict", &predict)
        .await
        .assert_status(200);
    let job = api.post("/api/v1/batch", &batch).await;
    let after_id = job.assert_status(202)["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    let after = api.wait_job(&after_id, Duration::from_secs(60)).await;
    assert_eq!(after["status"], "succeeded", "{after}");
    let recovered = freed.elapsed();

    tally.print("disk_full");
    eprintln!(
        "disk_full: tmpfs filled with {:.1} MiB; {while_full:.1?} full; /health while full: {} {} \
         (disk {}); \
         jobs accepted while full ended {ended:?}; after space returned a train, predict and \
         batch job succeeded in {recovered:.1?}",
        filled as f64 / 1_048_576.0,
        health.status,
        health.body["status"],
        health.body["checks"]["disk"]
    );
    // `/health` while full: degraded (not unhealthy: reads are served), naming the data
    // directory, and the disk check low.
    let data_dir = data.0.display().to_string();
    assert_eq!(health.status, 200, "{}", health.body);
    assert_eq!(health.body["status"], "degraded", "{}", health.body);
    assert_eq!(
        health.body["checks"]["disk"]["status"], "low",
        "{}",
        health.body
    );
    assert_eq!(health.body["checks"]["disk"]["path"], data_dir.as_str());
    let reasons = health.body["reasons"].to_string();
    assert!(
        reasons.contains("nearly full") && reasons.contains(&data_dir),
        "the reason names the full data directory: {reasons}"
    );
    assert_eq!(
        health_after.body["status"], "healthy",
        "{}",
        health_after.body
    );
    assert_eq!(health_after.body["checks"]["disk"]["status"], "ok");
    let errors = || {
        server
            .log_text()
            .lines()
            .filter(|l| l.contains("\"ERROR\""))
            .collect::<Vec<_>>()
            .join("\n")
    };
    for what in ["train", "submit"] {
        assert_eq!(
            tally.other_than(what, &["201", "202", "507", "503+retry-after"]),
            vec![],
            "{what} while the disk is full: 2xx (it fitted), 507 or 503; never a 500:\n{}",
            errors()
        );
    }
    assert!(
        tally.got("train", "507") > 0,
        "training (which writes a model file) was refused with 507:\n{}",
        errors()
    );
    for what in ["predict", "list", "result"] {
        assert_eq!(
            tally.other_than(what, &["200"]),
            vec![],
            "{what}: reads keep working"
        );
    }
    for (status, error) in &ended {
        assert!(
            status == "succeeded" || (status == "failed" && error.is_string()),
            "{status} {error}"
        );
    }
    // Nothing half-written: no model refused for want of space is listed, and no file of
    // one is left in the data directory.
    let models = api.get("/api/v1/models?limit=500").await;
    let listed = models.assert_status(200).to_string();
    assert!(
        listed.contains("\"before\"") && listed.contains("\"after\""),
        "{listed}"
    );
    assert!(
        !listed.contains("during-"),
        "a refused model is listed: {listed}"
    );
    // Model files are named by a fresh id: exactly the two listed models' (a model and its
    // reference sample each), and no partial or staging file beside them.
    let files = walk(&data.0.join("storage").join("models"));
    let models = files.iter().filter(|f| f.ends_with(".pnmy")).count();
    let references = files.iter().filter(|f| f.ends_with(".reference")).count();
    assert!(
        (models, references, files.len()) == (2, 2, 4),
        "model files: {files:?}"
    );
    server.stop(Duration::from_secs(10));
    drop(data);
}
