//! Postgres stopped for 10 s (a fast shutdown, as in a restart) under mixed traffic —
//! predicts, batch submissions, listings: every answer is a 2xx or a 503 with
//! `Retry-After` and the error shape, never a 500 or a hang past the request timeout; the
//! instances and workers recover by themselves when it is back; every accepted job, and
//! every refused one sent again with its `Idempotency-Key`, completes once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use testkit::wait::wait;

use super::{Deployment, Tally, get, predict, submit, traffic};

const OUTAGE: Duration = Duration::from_secs(10);
const ROWS: usize = 2_000;
/// What any request may be answered during the test.
const ALLOWED: &[&str] = &["200", "201", "202", "503+retry-after"];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "starts Redis, Postgres, two instances and two workers of its own: run by .ci/run"]
async fn only_503s_with_retry_after_while_postgres_restarts_then_recovery() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Deployment::start(dir.path()).await;
    d.train("chaos").await;
    d.source("small.csv", ROWS, 1);
    d.warm("chaos").await;
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let pause = Duration::from_millis(100);
    let mut clients = traffic(
        &tally,
        &d.apis,
        2,
        &stop,
        "predict",
        pause,
        predict("chaos"),
    );
    clients.extend(traffic(
        &tally,
        &d.apis,
        2,
        &stop,
        "submit",
        Duration::from_millis(400),
        submit("chaos", "small.csv"),
    ));
    clients.extend(traffic(
        &tally,
        &d.apis,
        2,
        &stop,
        "list jobs",
        pause,
        get("/api/v1/jobs?limit=5"),
    ));
    clients.extend(traffic(
        &tally,
        &d.apis,
        2,
        &stop,
        "get model",
        pause,
        get("/api/v1/models/chaos"),
    ));
    tokio::time::sleep(Duration::from_secs(3)).await; // traffic before the outage

    let started = Instant::now();
    d.postgres.stop().await;
    let mut health = Vec::new();
    while started.elapsed() < OUTAGE {
        let h = d.apis[0].get("/health").await;
        health.push((h.status.as_u16(), h.body["status"].clone()));
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    d.postgres.start_again().await;
    let outage = started.elapsed();
    // Recovery without a restart: both instances answer a listing again.
    let back = Instant::now();
    for api in &d.apis {
        wait("the instance reads Postgres again", Duration::from_secs(60))
            .until(async || {
                let r = api.get("/api/v1/jobs?limit=1").await;
                if r.status == 200 {
                    Ok(())
                } else {
                    Err(r.body.to_string())
                }
            })
            .await;
    }
    let recovered_in = back.elapsed();
    tokio::time::sleep(Duration::from_secs(5)).await; // traffic after the outage
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    let again = tally.resubmit_rejected(&d.apis[0]).await;
    let accepted = tally.accepted.lock().unwrap().clone();
    let drain = Instant::now();
    let attempts = d.assert_jobs_succeed_once(&accepted, ROWS).await;
    tally.print("postgres_down");
    eprintln!(
        "postgres_down: Postgres down {outage:.1?}, instances answering again {recovered_in:.1?} \
         after its start; {} jobs, all succeeded once ({attempts} attempts), {:.1?} to drain; \
         503'd submissions sent again: {} created, {} found already made; /health during: {:?}",
        accepted.len(),
        drain.elapsed(),
        again.0,
        again.1,
        health.first()
    );
    for what in ["predict", "submit", "list jobs", "get model"] {
        assert_eq!(
            tally.other_than(what, ALLOWED),
            vec![],
            "{what}: only 2xx or 503 with Retry-After; the instances' errors:\n{}",
            d.instance_errors()
        );
    }
    assert!(
        tally.got("list jobs", "503+retry-after") > 0,
        "the outage was seen"
    );
    let late = &health[health.len() / 4..];
    assert!(
        late.iter()
            .all(|(code, status)| *code == 503 && status == "unhealthy"),
        "/health says unhealthy (503) while Postgres is down: {health:?}"
    );
    d.stop();
}
