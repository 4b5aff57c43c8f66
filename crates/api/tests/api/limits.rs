use std::time::Duration;

use serde_json::json;

use crate::helpers::{spawn_app_with, training_rows};

#[tokio::test]
async fn a_body_over_the_limit_is_payload_too_large() {
    let app = spawn_app_with(|s| s.server.max_body_bytes = 4096).await;
    let r = app.detect(&json!({"data": training_rows(1000, 3)})).await;
    let e = r.assert_error(413, "payload_too_large");
    assert_eq!(e["details"]["limit_bytes"], 4096);
}

#[tokio::test]
async fn too_many_cells_is_invalid_input_naming_the_limit() {
    let app = spawn_app_with(|s| s.server.max_cells = 100).await;
    let r = app.detect(&json!({"data": training_rows(50, 3)})).await;
    let e = r.assert_error(422, "invalid_input");
    assert_eq!(e["details"]["limit"], 100);
    assert!(r.message().contains("100"));
}

#[tokio::test]
async fn a_request_over_the_timeout_is_unavailable_with_retry_after() {
    let app = spawn_app_with(|s| s.server.request_timeout = Duration::from_millis(1)).await;
    let r = app
        .detect(&json!({"data": training_rows(20_000, 8), "n_estimators": 300}))
        .await;
    r.assert_error(503, "unavailable");
    assert_eq!(r.headers["retry-after"], "1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn liveness_answers_while_a_large_detect_runs() {
    let app = spawn_app_with(|_| {}).await;
    let big = json!({"data": training_rows(60_000, 8), "n_estimators": 200, "random_state": 1});
    let client = app.client.clone();
    let url = format!("{}/api/v1/detect", app.address);
    let key = app.admin_key.clone();
    let slow = tokio::spawn(async move {
        client
            .post(url)
            .bearer_auth(key)
            .json(&big)
            .send()
            .await
            .unwrap()
            .status()
    });
    // While the fit runs on the blocking pool, the async threads answer at once. The fit
    // cannot be seen starting from outside: the request is given time to reach it.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = std::time::Instant::now();
    let r = app
        .client
        .get(format!("{}/health/live", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(slow.await.unwrap(), 200);
}
