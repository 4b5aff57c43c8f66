//! Drift and data quality from outside: train on synthetic data, score an unshifted and a
//! shifted sample, read `GET /api/v1/models/{name}/drift` and `/metrics`.

use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app, start, test_settings};

/// `n` rows of 4 features: independent normals (Box–Muller over a xorshift generator),
/// feature `j` with mean `j` and standard deviation 1; `shift` is added to feature 1.
fn gaussian_rows(seed: u64, n: usize, shift: f64) -> Vec<Vec<f64>> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut uniform = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        ((state >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    };
    (0..n)
        .map(|_| {
            (0..4)
                .map(|j| {
                    let z =
                        (-2.0 * uniform().ln()).sqrt() * (std::f64::consts::TAU * uniform()).cos();
                    z + j as f64 + if j == 1 { shift } else { 0.0 }
                })
                .collect()
        })
        .collect()
}

async fn train(app: &TestApp, name: &str) -> Value {
    let r = app
        .train(&json!({
            "model_name": name, "contamination": 0.05, "n_estimators": 50,
            "random_state": 7, "data": gaussian_rows(1, 3000, 0.0),
        }))
        .await;
    r.assert_status(201).clone()
}

fn metric_value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

fn verdicts(body: &Value) -> Vec<String> {
    body["features"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["verdict"].as_str().unwrap().to_string())
        .collect()
}

/// Scores `rows` with the model `name`, then reads its drift report.
async fn drift_after_scoring(app: &TestApp, name: &str, rows: Vec<Vec<f64>>) -> Value {
    let r = app.predict(name, &json!({"data": rows})).await;
    r.assert_status(200);
    let r = app.get(&format!("/api/v1/models/{name}/drift")).await;
    r.assert_status(200).clone()
}

#[tokio::test]
async fn drift_is_flagged_on_the_shifted_feature_only_and_never_on_a_large_unshifted_sample() {
    let app = spawn_app().await;
    train(&app, "sensors").await;
    train(&app, "sensors").await;
    // Version 1 scores fresh rows from the training distribution, version 2 a copy
    // whose feature 1 moved by 1.5 standard deviations.
    let samples = [
        (1, gaussian_rows(2, 5000, 0.0)),
        (2, gaussian_rows(3, 2000, 1.5)),
    ];
    for (version, rows) in samples {
        let r = app
            .predict("sensors", &json!({"version": version, "data": rows}))
            .await;
        r.assert_status(200);
    }

    let r = app.get("/api/v1/models/sensors/drift?version=1").await;
    let body = r.assert_status(200);
    assert_eq!(body["monitoring"], "active", "{body}");
    assert_eq!(body["verdict"], "stable", "{body}");
    assert_eq!(verdicts(body), ["stable"; 4], "{body}");
    assert_eq!(body["window"]["n_samples"], 5000);
    assert_eq!(body["anomaly_rate_verdict"], "as_trained", "{body}");
    for f in body["features"].as_array().unwrap() {
        assert!(f["psi"].as_f64().unwrap() < 0.02, "{f}");
        assert!(f["ks"].as_f64().unwrap() < 0.05, "{f}");
        assert_eq!(f["current_count"], 5000);
        assert_eq!(f["reference_count"], 3000);
    }
    assert!(body["data_quality"].as_f64().unwrap() > 0.99, "{body}");
    assert!((body["training_anomaly_rate"].as_f64().unwrap() - 0.05).abs() < 1e-9);

    let r = app.get("/api/v1/models/sensors/drift?version=2").await;
    let body = r.assert_status(200);
    assert_eq!(body["verdict"], "drift", "{body}");
    assert_eq!(
        verdicts(body),
        ["stable", "drift", "stable", "stable"],
        "{body}"
    );
    let moved = &body["features"][1];
    assert_eq!(moved["feature"], "x1");
    assert!(moved["psi"].as_f64().unwrap() > 0.25, "{moved}");
    assert!(moved["ks"].as_f64().unwrap() > 0.4, "{moved}");
    let mean = moved["current_mean"].as_f64().unwrap();
    assert!(
        (mean - 2.5).abs() < 0.1,
        "mean of feature 1 moved to ~2.5: {moved}"
    );
    assert!((moved["reference_mean"].as_f64().unwrap() - 1.0).abs() < 0.1);
    // The moved feature reaches past the training range: quality drops below 1.
    assert!(body["data_quality"].as_f64().unwrap() < 1.0, "{body}");

    // Without ?version=: the production version (2, the newest training went live).
    let r = app.get("/api/v1/models/sensors/drift").await;
    assert_eq!(r.assert_status(200)["model_version"], 2);

    // Both versions share the name: the gauge carries the newest window (version 2).
    let metrics = app.get("/metrics").await;
    let Value::String(text) = &metrics.body else {
        panic!("Prometheus text expected, got {}", metrics.body)
    };
    let psi = metric_value(
        text,
        "pynomaly_data_drift_score{feature=\"x1\",model=\"sensors\"}",
    )
    .unwrap_or_else(|| panic!("no drift score for x1 in:\n{text}"));
    assert!(psi > 0.25, "{psi}");
    let steady_psi = metric_value(
        text,
        "pynomaly_data_drift_score{feature=\"x0\",model=\"sensors\"}",
    )
    .unwrap();
    assert!(steady_psi < 0.05, "{steady_psi}");
    let quality = metric_value(text, "pynomaly_data_quality_score{dataset=\"sensors\"}")
        .unwrap_or_else(|| panic!("no quality for sensors in:\n{text}"));
    assert!(quality > 0.0 && quality < 1.0, "{quality}");

    // Deleting the model removes its series.
    app.delete("/api/v1/models/sensors")
        .await
        .assert_status(200);
    let metrics = app.get("/metrics").await;
    let Value::String(text) = &metrics.body else {
        panic!()
    };
    assert!(!text.contains("pynomaly_data_drift_score{"), "{text}");
    assert!(
        !text.contains("pynomaly_data_quality_score{dataset=\"sensors\"}"),
        "{text}"
    );
}

#[tokio::test]
async fn a_few_rows_give_statistics_but_no_verdict() {
    let app = spawn_app().await;
    train(&app, "m").await;
    let body = drift_after_scoring(&app, "m", gaussian_rows(4, 20, 3.0)).await;
    assert_eq!(body["verdict"], "insufficient_data", "{body}");
    assert_eq!(body["window"]["n_samples"], 20);
    assert_eq!(body["window"]["complete"], false);
    assert_eq!(body["thresholds"]["min_samples"], 200);
    assert!(
        body["features"][1]["psi"].as_f64().unwrap() > 0.25,
        "{body}"
    );
}

#[tokio::test]
async fn drift_of_an_unknown_or_another_tenants_model_is_not_found() {
    let app = spawn_app().await;
    train(&app, "mine").await;
    app.assert_errors(&[
        (
            Method::GET,
            "/api/v1/models/nothing/drift",
            404,
            "not_found",
        ),
        (
            Method::GET,
            "/api/v1/models/mine/drift?version=9",
            404,
            "not_found",
        ),
        (
            Method::GET,
            "/api/v1/models/mine/drift?version=zero",
            422,
            "invalid_input",
        ),
        (
            Method::GET,
            "/api/v1/models/mine/drift?versoin=1",
            422,
            "invalid_input",
        ),
    ])
    .await;
    let other = app
        .create_key_with(&json!({"name": "other", "scopes": ["read"], "tenant": "other"}))
        .await;
    let other = other["key"].as_str().unwrap().to_string();
    app.request(
        reqwest::Method::GET,
        "/api/v1/models/mine/drift",
        Some(&other),
        None,
    )
    .await
    .assert_error(404, "not_found");
    app.request(
        reqwest::Method::GET,
        "/api/v1/models/mine/drift",
        None,
        None,
    )
    .await
    .assert_error(401, "unauthorized");
}

#[tokio::test]
async fn a_model_trained_before_reference_profiles_reports_no_reference() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = test_settings(dir.path());
    let app = start(settings.clone(), None).await;
    train(&app, "old").await;
    let (_, data_dir, key) = app.stop().await;
    // Remove what this version stored beside its artifact: it now looks like a model
    // trained by an earlier release.
    let models = data_dir.join("storage/models/default");
    let mut removed = 0;
    for entry in std::fs::read_dir(&models).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "reference") {
            std::fs::remove_file(path).unwrap();
            removed += 1;
        }
    }
    assert_eq!(removed, 1, "one reference profile beside the artifact");
    settings.storage.data_dir = data_dir;
    let app = start(settings, Some(key)).await;
    let body = drift_after_scoring(&app, "old", gaussian_rows(5, 10, 0.0)).await;
    assert_eq!(body["monitoring"], "no_reference", "{body}");
    assert!(body["verdict"].is_null());
    assert!(body["message"].as_str().unwrap().contains("train it again"));
    app.stop().await;
}

#[tokio::test]
async fn batch_scoring_with_a_model_feeds_its_window_and_the_sources_quality() {
    let app = spawn_app().await;
    train(&app, "b").await;
    let mut csv = String::from("a,b,c,d\n");
    for row in gaussian_rows(6, 1500, 4.0) {
        let cells: Vec<String> = row.iter().map(f64::to_string).collect();
        csv.push_str(&cells.join(","));
        csv.push('\n');
    }
    app.write_source("moved.csv", &csv);
    let (_, job) = app
        .run_batch(&json!({"data_source": "moved.csv", "model_name": "b"}))
        .await;
    assert_eq!(job.body["status"], "succeeded");
    let r = app.get("/api/v1/models/b/drift").await;
    let body = r.assert_status(200);
    assert_eq!(body["window"]["n_samples"], 1500, "{body}");
    assert_eq!(
        verdicts(body),
        ["stable", "drift", "stable", "stable"],
        "{body}"
    );
    let metrics = app.get("/metrics").await;
    let Value::String(text) = &metrics.body else {
        panic!()
    };
    let quality = metric_value(text, "pynomaly_data_quality_score{dataset=\"moved.csv\"}")
        .unwrap_or_else(|| panic!("no quality for the source in:\n{text}"));
    // Feature 1 moved by 4 sd: most of its values are beyond the training maximum, so
    // about a fifth of all cells are out of range.
    assert!(quality > 0.7 && quality < 0.9, "{quality}");
}
