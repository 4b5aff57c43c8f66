use serde_json::{Value, json};

use crate::helpers::{csv_source, spawn_app, spawn_app_with_model_and_source};

#[tokio::test]
async fn batch_with_a_model_writes_one_json_row_per_input_row() {
    let app = spawn_app_with_model_and_source("data.csv", 2500).await;
    let r = app
        .batch(
            &json!({"data_source": "data.csv", "model_name": "m", "algorithm": "isolation_forest"}),
        )
        .await;
    let body = r.assert_status(202);
    assert_eq!(body["status"], "queued");
    let id = body["job_id"].as_str().unwrap().to_string();
    assert_eq!(body["status_url"], format!("/api/v1/jobs/{id}"));
    app.drain_jobs().await;
    let job = app.job(&id).await;
    let job = job.assert_status(200);
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["progress"]["rows_processed"], 2500);
    assert_eq!(job["progress"]["sources_done"], 1);
    assert_eq!(job["result"]["n_samples"], 2500);
    assert_eq!(job["result"]["outputs"][0]["source"], "data.csv");
    let out = app.get(&format!("/api/v1/jobs/{id}/result")).await;
    let rows = out.assert_status(200).as_array().unwrap();
    assert_eq!(rows.len(), 2500);
    assert_eq!(rows[0]["row"], 0);
    assert_eq!(rows[2499]["row"], 2499);
    assert!(rows[10]["prediction"] == 1 || rows[10]["prediction"] == -1);
    assert!(rows[10]["score"].is_number());
}

#[tokio::test]
async fn batch_fitting_on_each_source_writes_csv_outputs() {
    let app = spawn_app().await;
    app.write_source("a.csv", &csv_source(300, 2));
    app.write_source("b.csv", &csv_source(200, 2));
    let (id, job) = app
        .run_batch(
            &json!({"data_sources": ["a.csv", "b.csv"], "algorithm": "lof",
                       "n_neighbors": 10, "contamination": 0.1, "output_format": "csv"}),
        )
        .await;
    assert_eq!(job.body["status"], "succeeded", "{}", job.body);
    assert_eq!(job.body["result"]["n_samples"], 500);
    let out = app.get(&format!("/api/v1/jobs/{id}/result?output=1")).await;
    let Value::String(text) = &out.body else {
        panic!("CSV expected, got {}", out.body)
    };
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "row,prediction,score");
    assert_eq!(lines.len(), 201);
}

#[tokio::test]
async fn batch_fits_a_pyod_detector_with_its_parameters() {
    let app = spawn_app().await;
    app.write_source("a.csv", &csv_source(300, 3));
    let (id, job) = app
        .run_batch(
            &json!({"data_source": "a.csv", "algorithm": "hbos", "n_bins": "auto",
                           "alpha": 0.05}),
        )
        .await;
    assert_eq!(job.body["status"], "succeeded", "{}", job.body);
    let out = app.get(&format!("/api/v1/jobs/{id}/result")).await;
    let rows = out.assert_status(200).as_array().unwrap();
    assert_eq!(rows.len(), 300);
    // contamination "auto" is PyOD's 0.1: at most a tenth flagged (this regular grid
    // ties every row's score, so none is above the threshold).
    let flagged = rows.iter().filter(|r| r["prediction"] == -1).count();
    assert!(flagged <= 30, "{flagged}");
    assert!(
        rows.iter()
            .all(|r| r["score"].as_f64().is_some_and(f64::is_finite))
    );
    let r = app
        .batch(&json!({"data_source": "a.csv", "algorithm": "hbos", "alpha": 0}))
        .await;
    assert_eq!(
        r.assert_error(422, "invalid_input")["details"]["parameter"],
        "alpha"
    );
}

#[tokio::test]
async fn batch_refuses_a_path_outside_the_sources_directory() {
    let app = spawn_app().await;
    let r = app.batch(&json!({"data_source": "../../etc/passwd"})).await;
    assert_eq!(
        r.assert_error(422, "invalid_input")["details"]["reason"],
        "outside_sources_dir"
    );
    let r = app.batch(&json!({"data_source": "missing.csv"})).await;
    assert_eq!(
        r.assert_error(422, "invalid_input")["details"]["reason"],
        "not_found"
    );
}

#[tokio::test]
async fn batch_with_an_unknown_model_is_not_found_and_bad_formats_are_refused() {
    let app = spawn_app().await;
    app.write_source("d.csv", &csv_source(10, 2));
    app.batch(&json!({"data_source": "d.csv", "model_name": "ghost"}))
        .await
        .assert_error(404, "not_found");
    let r = app
        .batch(&json!({"data_source": "d.csv", "output_format": "parquet"}))
        .await;
    assert_eq!(
        r.assert_error(422, "invalid_input")["details"]["accepted"],
        json!(["json", "csv"])
    );
}

#[tokio::test]
async fn a_retried_batch_with_the_same_idempotency_key_returns_the_first_job() {
    let app = spawn_app().await;
    app.write_source("d.csv", &csv_source(10, 2));
    let send = || async {
        app.client
            .post(format!("{}/api/v1/batch", app.address))
            .bearer_auth(&app.admin_key)
            .header("Idempotency-Key", "abc-123")
            .json(&json!({"data_source": "d.csv"}))
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()
    };
    let first = send().await;
    let second = send().await;
    assert_eq!(first["job_id"], second["job_id"]);
    assert_eq!(app.drain_jobs().await, 1);
}

#[tokio::test]
async fn a_batch_over_a_file_with_a_bad_value_fails_naming_the_line() {
    let app = spawn_app().await;
    app.train(&json!({"model_name": "two", "data": [[0.0, 1.0], [1.0, 0.0], [0.5, 0.5]]}))
        .await
        .assert_status(201);
    app.write_source("bad.csv", "a,b\n1,2\n3,oops\n");
    let (_, job) = app
        .run_batch(&json!({"data_source": "bad.csv", "model_name": "two"}))
        .await;
    assert_eq!(job.body["status"], "failed");
    assert!(
        job.body["error"].as_str().unwrap().contains("line 3"),
        "{}",
        job.body
    );
}

#[tokio::test]
async fn batch_jobs_count_their_anomalies_in_the_metrics_per_source() {
    let app = spawn_app().await;
    // 17 distinct rows repeated, and one far away: LOF flags that one.
    app.write_source("a.csv", &(csv_source(300, 2) + "50,50\n"));
    let (_, job) = app
        .run_batch(&json!({"data_source": "a.csv", "algorithm": "lof"}))
        .await;
    assert_eq!(job.body["status"], "succeeded", "{}", job.body);
    let anomalies = job.body["result"]["outputs"][0]["anomaly_count"]
        .as_u64()
        .unwrap();
    assert!(
        anomalies > 0,
        "contamination 0.1 flags some rows: {}",
        job.body
    );
    let metrics = app.get("/metrics").await;
    let Value::String(text) = &metrics.body else {
        panic!("Prometheus text expected, got {}", metrics.body)
    };
    let line = format!(
        "pynomaly_anomalies_detected_total{{algorithm=\"lof\",dataset=\"a.csv\"}} {anomalies}"
    );
    assert!(text.lines().any(|l| l == line), "no '{line}' in:\n{text}");
}

#[tokio::test]
async fn batch_explains_rows_in_json_and_csv_outputs() {
    let app = spawn_app_with_model_and_source("data.csv", 40).await;
    // One far row, far in its third column (the header names it f2).
    let mut source = csv_source(40, 3);
    source.push_str("0.5,0.5,80\n");
    app.write_source("far.csv", &source);
    // With the model (which has no feature names): the source's header names them.
    let (id, job) = app
        .run_batch(&json!({"data_source": "far.csv", "model_name": "m", "explain": {"top_k": 2}}))
        .await;
    assert_eq!(job.body["status"], "succeeded", "{}", job.body);
    let out = app.get(&format!("/api/v1/jobs/{id}/result")).await;
    let rows = out.assert_status(200).as_array().unwrap().clone();
    assert_eq!(rows.len(), 41);
    for row in &rows {
        assert_eq!(row["explanation"].as_array().unwrap().len(), 2, "{row}");
    }
    assert_eq!(rows[40]["explanation"][0]["feature"], "f2", "{}", rows[40]);
    // Fitting, CSV: an `explanation` column of name:share pairs.
    let (id, job) = app
        .run_batch(
            &json!({"data_source": "far.csv", "algorithm": "ecod", "output_format": "csv",
                           "explain": true}),
        )
        .await;
    assert_eq!(job.body["status"], "succeeded", "{}", job.body);
    let out = app.get(&format!("/api/v1/jobs/{id}/result")).await;
    let Value::String(text) = &out.body else {
        panic!("CSV expected, got {}", out.body)
    };
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "row,prediction,score,explanation");
    assert_eq!(lines.len(), 42);
    let last: Vec<&str> = lines[41].splitn(4, ',').collect();
    let pairs: Vec<(&str, f64)> = last[3]
        .split(';')
        .map(|p| {
            let (name, share) = p.split_once(':').unwrap();
            (name, share.parse().unwrap())
        })
        .collect();
    assert_eq!(pairs.len(), 3, "{}", lines[41]);
    assert_eq!(pairs[0].0, "f2", "{}", lines[41]);
    assert!(pairs.windows(2).all(|w| w[0].1 >= w[1].1), "{}", lines[41]);
    // Without explain, the outputs keep their columns.
    let (id, _) = app
        .run_batch(&json!({"data_source": "far.csv", "model_name": "m", "output_format": "csv"}))
        .await;
    let out = app.get(&format!("/api/v1/jobs/{id}/result")).await;
    assert!(
        out.body
            .as_str()
            .unwrap()
            .starts_with("row,prediction,score\n")
    );
}

#[tokio::test]
async fn batch_refuses_a_top_k_above_the_width_at_once_with_a_model_and_later_without() {
    let app = spawn_app_with_model_and_source("data.csv", 40).await;
    let r = app
        .batch(&json!({"data_source": "data.csv", "model_name": "m", "explain": {"top_k": 4}}))
        .await;
    let e = r.assert_error(422, "invalid_input");
    assert_eq!(e["details"]["field"], "explain.top_k", "{e}");
    let r = app
        .batch(&json!({"data_source": "data.csv", "model_name": "m", "explain": {"top_k": 0}}))
        .await;
    assert_eq!(
        r.assert_error(422, "invalid_input")["details"]["field"],
        "explain.top_k"
    );
    // Fitting: the width is known once the source is read.
    let (_, job) = app
        .run_batch(
            &json!({"data_source": "data.csv", "algorithm": "ecod", "explain": {"top_k": 4}}),
        )
        .await;
    assert_eq!(job.body["status"], "failed", "{}", job.body);
    let error = job.body["error"].as_str().unwrap();
    assert!(
        error.contains("explain.top_k") && error.contains("1..=3"),
        "{error}"
    );
}
