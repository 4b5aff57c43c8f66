//! Redis loses its data (`SHUTDOWN NOSAVE`, then started again empty) while jobs are queued
//! and running: the workers notice the loss, rebuild the queue from Postgres, and every job
//! succeeds with its output written once.

use std::time::{Duration, Instant};

use serde_json::json;
use testkit::wait::wait;

use super::Deployment;

/// Jobs submitted: two run (one per worker), the rest wait in the queue.
const JOBS: usize = 6;
/// Rows per job: enough for a job to run a few seconds.
const ROWS: usize = 150_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "starts Redis, Postgres, two instances and two workers of its own: run by .ci/run"]
async fn jobs_queued_and_running_when_redis_loses_its_data_all_succeed_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Deployment::start(dir.path()).await;
    d.train("chaos").await;
    let mut ids = Vec::new();
    for j in 0..JOBS {
        let name = format!("part-{j}.csv");
        d.source(&name, ROWS, j as u64);
        let r = d.apis[j % 2]
            .post(
                "/api/v1/batch",
                &json!({"data_source": name, "model_name": "chaos", "output_format": "csv"}),
            )
            .await;
        ids.push(r.assert_status(202)["job_id"].as_str().unwrap().to_string());
    }
    // Both workers into a job each, the others queued.
    let before = wait("two jobs run and four wait", Duration::from_secs(120))
        .until(async || {
            let all = d.jobs().await?;
            let running = all
                .values()
                .filter(|j| {
                    j["status"] == "running"
                        && j["progress"]["rows_processed"].as_u64().unwrap_or(0) > 0
                })
                .count();
            let queued = all.values().filter(|j| j["status"] == "queued").count();
            if running == 2 && queued == JOBS - 2 {
                Ok((running, queued))
            } else {
                Err(format!("{running} running, {queued} queued\n{}", d.logs()))
            }
        })
        .await;
    let lost_at = Instant::now();
    d.redis.shutdown_nosave().await;
    d.redis.start_again().await;
    let down = lost_at.elapsed();
    eprintln!(
        "redis_data_loss: SHUTDOWN NOSAVE with {} running and {} queued; Redis back, empty, after {down:.2?}",
        before.0, before.1
    );
    let attempts = d.assert_jobs_succeed_once(&ids, ROWS).await;
    let recovered = lost_at.elapsed();
    eprintln!(
        "redis_data_loss: {JOBS} jobs ({} running + {} queued at the loss) of {ROWS} rows all succeeded, \
         each output written once; {attempts} attempts in all; all done {recovered:.1?} after the loss",
        before.0, before.1
    );
    let logs = d.logs_whole();
    eprintln!(
        "redis_data_loss: workers carried on {} running job(s) whose delivery Redis lost; \
         the queue was rebuilt from Postgres {} time(s)",
        logs.matches("delivery is gone from Redis").count(),
        logs.matches("rebuilt it from the metadata store").count(),
    );
    d.stop();
}
