use reqwest::Method;
use serde_json::json;

use crate::helpers::{ALGORITHMS, spawn_app};

#[tokio::test]
async fn health_reports_every_dependency_without_auth() {
    let app = spawn_app().await;
    let r = app.request(Method::GET, "/health", None, None).await;
    let body = r.assert_status(200);
    assert_eq!(body["status"], "healthy");
    for check in ["database", "queue", "artifact_store"] {
        assert_eq!(body["checks"][check]["status"], "up", "{check}: {body}");
    }
    assert!(body["checks"]["workers"]["active"].is_number());
    assert!(body["uptime_s"].is_number() && body["version"].is_string());
    // The data directory's filesystem, with room to spare on a test machine.
    let disk = &body["checks"]["disk"];
    assert_eq!(disk["status"], "ok", "{body}");
    let (free, total) = (
        disk["free_bytes"].as_u64().unwrap(),
        disk["total_bytes"].as_u64().unwrap(),
    );
    assert!(free > 0 && free <= total, "{disk}");
    assert!(disk["path"].as_str().is_some_and(|p| !p.is_empty()));
    app.request(Method::GET, "/health/live", None, None)
        .await
        .assert_status(200);
    app.request(Method::GET, "/health/ready", None, None)
        .await
        .assert_status(200);
}

#[tokio::test]
async fn every_response_carries_a_request_id_and_echoes_the_clients() {
    let app = spawn_app().await;
    let r = app.request(Method::GET, "/health/live", None, None).await;
    assert!(r.headers.contains_key("x-request-id"));
    let echoed = app
        .get_with_header("/api/v1/models", "x-request-id", "trace-me-42")
        .await;
    assert_eq!(echoed.status, 401);
    assert_eq!(echoed.headers["x-request-id"], "trace-me-42");
    assert_eq!(echoed.body["request_id"], "trace-me-42");
}

#[tokio::test]
async fn metrics_use_the_seed_names_and_the_route_template() {
    let app = spawn_app().await;
    app.train_inline("m").await;
    app.predict("m", &json!({"data": [[60.0, 61.0, 62.0]]}))
        .await
        .assert_status(200);
    let r = app.request(Method::GET, "/metrics", None, None).await;
    let text = r.body.as_str().expect("text").to_string();
    for name in [
        "pynomaly_requests_total",
        "pynomaly_request_duration_seconds_bucket",
        "pynomaly_anomalies_detected_total",
        "pynomaly_model_inference_seconds_bucket",
        "pynomaly_active_models 1",
        "pynomaly_data_quality_score",
    ] {
        assert!(text.contains(name), "{name} missing from:\n{text}");
    }
    assert!(
        text.contains(r#"endpoint="/api/v1/models/{name}/predict""#),
        "route template expected:\n{text}"
    );
    assert!(!text.contains("/api/v1/models/m/predict"));
    assert!(text.contains(r#"data_size="small""#));
    // Every dependency answered the scrape's probes; the in-process queue has no
    // reconciler to fail; the data directory's space is reported.
    for dependency in ["database", "queue", "artifact_store"] {
        let line = format!("pynomaly_dependency_up{{dependency=\"{dependency}\"}} 1");
        assert!(text.contains(&line), "{line} missing from:\n{text}");
    }
    assert!(text.contains("pynomaly_queue_reconcile_failures_total 0"));
    let free = text
        .lines()
        .find_map(|l| l.strip_prefix("pynomaly_data_dir_free_bytes "))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or_else(|| panic!("pynomaly_data_dir_free_bytes missing from:\n{text}"));
    assert!(free > 0);
}

#[tokio::test]
async fn algorithms_are_listed_with_their_parameters() {
    let app = spawn_app().await;
    let r = app.get("/api/v1/algorithms").await;
    let names: Vec<_> = r.assert_status(200)["algorithms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].clone())
        .collect();
    assert_eq!(names, ALGORITHMS.map(|n| json!(n)));
    // Each with its parameters, defaults and ranges, from the one table.
    let knn = &r.body["algorithms"][5];
    assert_eq!(knn["parameters"][0]["name"], "n_neighbors");
    assert_eq!(knn["parameters"][0]["default"], 5);
    assert_eq!(
        knn["parameters"][1]["accepted"],
        json!(["largest", "mean", "median"])
    );
    let hbos = &r.body["algorithms"][4];
    assert_eq!(hbos["parameters"][1]["name"], "alpha");
    assert_eq!(hbos["parameters"][1]["range"], "a number in (0, 1)");
    assert!(
        hbos["contamination"]["accepted"]
            .as_str()
            .unwrap()
            .contains("contamination 0.1")
    );
}

#[tokio::test]
async fn unknown_routes_get_the_contract_error_body() {
    let app = spawn_app().await;
    app.get("/api/v1/nothing")
        .await
        .assert_error(404, "not_found");
    app.request(Method::PUT, "/api/v1/detect", None, None)
        .await
        .assert_error(405, "method_not_allowed");
}

#[tokio::test]
async fn the_openapi_document_lists_every_route_of_the_contract() {
    let app = spawn_app().await;
    let r = app
        .request(Method::GET, "/api/v1/openapi.json", None, None)
        .await;
    let doc = r.assert_status(200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    for (path, method) in [
        ("/api/v1/detect", "post"),
        ("/api/v1/models", "post"),
        ("/api/v1/models", "get"),
        ("/api/v1/models/{name}", "get"),
        ("/api/v1/models/{name}", "delete"),
        ("/api/v1/models/{name}/versions/{version}", "get"),
        ("/api/v1/models/{name}/predict", "post"),
        ("/api/v1/batch", "post"),
        ("/api/v1/jobs", "get"),
        ("/api/v1/jobs/{job_id}", "get"),
        ("/api/v1/jobs/{job_id}", "delete"),
        ("/api/v1/jobs/{job_id}/result", "get"),
        ("/api/v1/algorithms", "get"),
        ("/api/v1/auth/keys", "post"),
        ("/api/v1/auth/keys", "get"),
        ("/api/v1/auth/keys/{id}", "delete"),
        ("/api/v1/users", "post"),
        ("/api/v1/users", "get"),
        ("/api/v1/users/{id}", "delete"),
        ("/api/v1/auth/token", "post"),
        ("/api/v1/audit", "get"),
        ("/health", "get"),
        ("/health/live", "get"),
        ("/health/ready", "get"),
        ("/metrics", "get"),
        ("/api/v1/openapi.json", "get"),
    ] {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path}"
        );
        // And the server really serves it (anything but the no-route 404).
        let concrete = path
            .replace("{name}", "x")
            .replace("{version}", "1")
            .replace("{job_id}", "x")
            .replace("{id}", "x");
        let m = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let r = app.request(m, &concrete, Some(&app.admin_key), None).await;
        let msg = r.message();
        assert!(
            !msg.starts_with("no route"),
            "{method} {path} is documented but not served"
        );
    }
}
