//! Redis stopped for 10 s under predict traffic and job submissions: no predict fails
//! (models are cached in each instance), submissions answer 503 with `Retry-After` (none is
//! accepted once the outage has begun; one checked against Redis just before it went away
//! may still be, and is kept in Postgres), never a 500 or a hang; `/health` says `degraded`
//! naming Redis meanwhile; when Redis is back (empty, as a Redis without persistence
//! restarts) submissions are accepted again and every accepted job completes once, with no
//! restart.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use testkit::wait::wait;

use super::{Deployment, Tally, predict, submit, traffic};

const OUTAGE: Duration = Duration::from_secs(10);
/// Rows of each submitted job: small, so the jobs drain quickly afterwards.
const ROWS: usize = 2_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "starts Redis, Postgres, two instances and two workers of its own: run by .ci/run"]
async fn predicts_keep_serving_and_no_submission_is_lost_while_redis_is_down() {
    let dir = tempfile::tempdir().unwrap();
    let mut d = Deployment::start(dir.path()).await;
    d.train("chaos").await;
    d.source("small.csv", ROWS, 1);
    d.warm("chaos").await;
    let tally = Arc::new(Tally::default());
    let stop = Arc::new(AtomicBool::new(false));
    let mut clients = traffic(
        &tally,
        &d.apis,
        4,
        &stop,
        "predict",
        Duration::ZERO,
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
    tokio::time::sleep(Duration::from_secs(3)).await; // traffic before the outage

    let started = Instant::now();
    d.redis.stop();
    // Submissions already past their Redis check when it stopped may still be accepted:
    // count from a second later.
    let mut accepted_early_in_outage = None;
    // `/health` during the outage, from both instances.
    let mut degraded = Vec::new();
    while started.elapsed() < OUTAGE {
        for api in &d.apis {
            let h = api.get("/health").await;
            degraded.push((
                h.status.as_u16(),
                h.body["status"].clone(),
                h.body["reasons"].clone(),
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        if accepted_early_in_outage.is_none() && started.elapsed() >= Duration::from_secs(1) {
            accepted_early_in_outage = Some(tally.got("submit", "202"));
        }
    }
    let during = (tally.got("submit", "202"), tally.got("predict", "200"));
    let refused_during = tally.got("submit", "503+retry-after");
    d.redis.start_again().await;
    let outage = started.elapsed();
    tokio::time::sleep(Duration::from_secs(5)).await; // traffic after the outage
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    let recovered = Instant::now();
    // Submissions answered 503, sent again with their key as a client would.
    let again = tally.resubmit_rejected(&d.apis[0]).await;
    let accepted = tally.accepted.lock().unwrap().clone();
    let attempts = d.assert_jobs_succeed_once(&accepted, ROWS).await;
    tally.print("redis_down");
    eprintln!(
        "redis_down: Redis down {outage:.1?}; {} jobs accepted ({} by the end of the outage), \
         all succeeded once ({attempts} attempts), {:.1?} after the traffic stopped; \
         {} predicts answered 200 by the end of the outage; 503'd submissions sent again: \
         {} created, {} found already made",
        accepted.len(),
        during.0,
        recovered.elapsed(),
        during.1,
        again.0,
        again.1
    );
    let first = degraded.first().cloned();
    eprintln!("redis_down: /health during the outage, e.g. {first:?}");

    assert_eq!(
        tally.other_than("predict", &["200"]),
        vec![],
        "every predict answered 200"
    );
    assert_eq!(
        tally.other_than("submit", &["202", "503+retry-after"]),
        vec![],
        "submissions answer 202 or 503 with Retry-After, never a 500 or a hang; the instances' errors:\n{}",
        d.instance_errors()
    );
    assert!(tally.got("predict", "200") > 100, "predict traffic flowed");
    assert!(!accepted.is_empty(), "submissions were accepted");
    assert_eq!(
        Some(during.0),
        accepted_early_in_outage,
        "no submission accepted from the outage's second second to its end"
    );
    assert!(
        refused_during > 0,
        "submissions during the outage answered 503 with Retry-After"
    );
    assert!(
        tally.got("submit", "202") > during.0,
        "submissions accepted again once Redis is back"
    );
    // Every reading after the first second of the outage says degraded, naming Redis (the
    // first may predate an instance's noticing).
    let late = &degraded[degraded.len() / 4..];
    for (code, status, reasons) in late {
        assert_eq!(*code, 200, "{status} {reasons}");
        assert_eq!(status, "degraded", "{reasons}");
        assert!(reasons.to_string().contains("Redis"), "{reasons}");
    }
    // And healthy again.
    wait("/health says healthy again", Duration::from_secs(30))
        .until(async || {
            let h = d.apis[0].get("/health").await.body;
            if h["status"] == "healthy" {
                Ok(())
            } else {
                Err(h.to_string())
            }
        })
        .await;
    d.stop();
}
