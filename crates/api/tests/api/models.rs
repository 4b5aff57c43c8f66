use reqwest::Method;
use serde_json::{Value, json};

use crate::helpers::{csv_source, spawn_app, training_rows};

#[tokio::test]
async fn training_inline_registers_numbered_versions_the_latest_in_production() {
    let app = spawn_app().await;
    let v1 = app.train_inline("sensors").await;
    assert_eq!(v1["model_name"], "sensors");
    assert_eq!(v1["version"], 1);
    assert_eq!(v1["stage"], "production");
    assert_eq!(v1["n_features"], 3);
    assert_eq!(v1["n_samples"], 200);
    assert_eq!(v1["algorithm"], "isolation_forest");
    assert!(v1["created_at"].is_string() && v1["training_time_ms"].is_number());
    let v2 = app.train_inline("sensors").await;
    assert_eq!(v2["version"], 2);
    assert_eq!(v2["stage"], "production");

    let listed = app.get("/api/v1/models").await;
    assert_eq!(listed.assert_status(200)["total"], 1);
    assert_eq!(listed.body["models"][0]["latest_version"], 2);
    let versions = app.get("/api/v1/models/sensors").await;
    assert_eq!(
        versions.assert_status(200)["versions"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(versions.body["production_version"], 2);
    let one = app.get("/api/v1/models/sensors/versions/1").await;
    assert_eq!(one.assert_status(200)["version"], 1);
    assert_eq!(one.body["stage"], "archived");
}

#[tokio::test]
async fn predict_scores_rows_with_the_production_version_or_the_asked_one() {
    let app = spawn_app().await;
    app.train_inline("m").await;
    app.train_inline("m").await;
    let r = app
        .predict("m", &json!({"data": [[0.1, 0.2, 0.3], [60.0, 61.0, 62.0]]}))
        .await;
    let body = r.assert_status(200);
    assert_eq!(body["model_name"], "m");
    assert_eq!(body["model_version"], 2);
    assert_eq!(body["predictions"], json!([1, -1]));
    assert_eq!(body["n_features"], 3);
    let r = app
        .predict("m", &json!({"data": [[0.1, 0.2, 0.3]], "version": 1}))
        .await;
    assert_eq!(r.assert_status(200)["model_version"], 1);
}

#[tokio::test]
async fn predict_rejects_rows_with_the_wrong_width_naming_the_expected_count() {
    let app = spawn_app().await;
    app.train_inline("m").await;
    let r = app.predict("m", &json!({"data": [[1.0, 2.0]]})).await;
    let e = r.assert_error(422, "invalid_input");
    assert_eq!(e["details"]["expected_features"], 3);
    assert!(r.message().contains("expects 3"), "{}", r.message());
}

#[tokio::test]
async fn predict_on_an_unknown_model_or_version_is_not_found() {
    let app = spawn_app().await;
    app.predict("nope", &json!({"data": [[1.0]]}))
        .await
        .assert_error(404, "not_found");
    app.train_inline("m").await;
    app.predict("m", &json!({"data": [[1.0, 2.0, 3.0]], "version": 9}))
        .await
        .assert_error(404, "not_found");
    app.assert_errors(&[
        (Method::GET, "/api/v1/models/nope", 404, "not_found"),
        (Method::GET, "/api/v1/models/m/versions/7", 404, "not_found"),
    ])
    .await;
}

#[tokio::test]
async fn deleting_a_model_removes_every_version() {
    let app = spawn_app().await;
    app.train_inline("gone").await;
    app.delete("/api/v1/models/gone").await.assert_status(200);
    app.predict("gone", &json!({"data": [[1.0, 2.0, 3.0]]}))
        .await
        .assert_error(404, "not_found");
    let gone = [(Method::DELETE, "/api/v1/models/gone", 404, "not_found")];
    app.assert_errors(&gone).await;
}

#[tokio::test]
async fn training_rejects_bad_requests_with_invalid_input() {
    let app = spawn_app().await;
    app.train(&json!({"data": training_rows(10, 2)}))
        .await
        .assert_error(422, "invalid_input");
    app.train(&json!({"model_name": "bad name/..", "data": training_rows(10, 2)}))
        .await
        .assert_error(422, "invalid_input");
    app.train(&json!({"model_name": "x", "data": training_rows(10, 2), "algorithm": "svm"}))
        .await
        .assert_error(422, "invalid_input");
}

#[tokio::test]
async fn training_from_a_data_source_runs_as_a_job_and_keeps_the_csv_header() {
    let app = spawn_app().await;
    app.write_source("train.csv", &csv_source(300, 4));
    let r = app
        .train(
            &json!({"model_name": "from_csv", "algorithm": "isolation_forest",
                       "training_data": "train.csv", "random_state": 1}),
        )
        .await;
    let body = r.assert_status(202);
    assert_eq!(body["status"], "queued");
    assert_eq!(body["model_name"], "from_csv");
    let job_id = body["job_id"].as_str().unwrap().to_string();
    assert_eq!(app.drain_jobs().await, 1);
    let job = app.job(&job_id).await;
    assert_eq!(
        job.assert_status(200)["status"],
        "succeeded",
        "{}",
        job.body
    );
    assert_eq!(job.body["kind"], "train");
    assert_eq!(job.body["progress"]["rows_processed"], 300, "{}", job.body);
    assert_eq!(job.body["progress"]["sources_done"], 1, "{}", job.body);
    let v = app.get("/api/v1/models/from_csv/versions/1").await;
    assert_eq!(
        v.assert_status(200)["feature_names"],
        json!(["f0", "f1", "f2", "f3"])
    );
    assert_eq!(v.body["n_samples"], 300);
}

#[tokio::test]
async fn inline_training_keeps_the_feature_names_it_is_given_and_checks_them() {
    let app = spawn_app().await;
    let body = |names: Value| {
        json!({"model_name": "named", "n_estimators": 10, "data": training_rows(50, 3),
               "feature_names": names})
    };
    let r = app
        .train(&body(json!(["temp", "meta.pressure", "meta.rpm"])))
        .await;
    assert_eq!(
        r.assert_status(201)["feature_names"],
        json!(["temp", "meta.pressure", "meta.rpm"])
    );
    let v = app.get("/api/v1/models/named/versions/1").await;
    assert_eq!(
        v.assert_status(200)["feature_names"],
        json!(["temp", "meta.pressure", "meta.rpm"])
    );
    for bad in [
        json!(["a", "b"]),
        json!(["a", "a", "b"]),
        json!(["a", "", "b"]),
        json!("a,b,c"),
    ] {
        let r = app.train(&body(bad.clone())).await;
        let e = r.assert_error(422, "invalid_input");
        assert_eq!(e["details"]["field"], "feature_names", "{bad}: {}", r.body);
    }
}

#[tokio::test]
async fn training_from_a_path_outside_the_sources_directory_is_refused() {
    let app = spawn_app().await;
    std::fs::write(app.data_dir.join("secret.csv"), "1,2\n3,4\n").unwrap();
    for uri in [
        "../secret.csv",
        "/etc/passwd",
        "file:///etc/passwd",
        "sub/../../secret.csv",
    ] {
        let r = app
            .train(&json!({"model_name": "x", "training_data": uri}))
            .await;
        let e = r.assert_error(422, "invalid_input");
        assert_eq!(e["details"]["reason"], "outside_sources_dir", "{uri}");
    }
    #[cfg(unix)]
    {
        let sources = app.data_dir.join("sources");
        std::fs::create_dir_all(&sources).unwrap();
        std::os::unix::fs::symlink(app.data_dir.join("secret.csv"), sources.join("link.csv"))
            .unwrap();
        let r = app
            .train(&json!({"model_name": "x", "training_data": "link.csv"}))
            .await;
        assert_eq!(
            r.assert_error(422, "invalid_input")["details"]["reason"],
            "outside_sources_dir"
        );
    }
}

#[tokio::test]
async fn a_pyod_detector_trains_a_model_that_predicts_new_rows() {
    let app = spawn_app().await;
    let trained = app
        .train(
            &json!({"model_name": "tails", "algorithm": "ecod", "data": training_rows(120, 3),
                       "contamination": 0.05}),
        )
        .await;
    let v1 = trained.assert_status(201);
    assert_eq!(v1["algorithm"], "ecod");
    let r = app
        .predict(
            "tails",
            &json!({"data": [[0.5, 0.5, 0.5], [40.0, -40.0, 40.0]]}),
        )
        .await;
    let body = r.assert_status(200);
    assert_eq!(body["algorithm"], "ecod");
    assert_eq!(body["predictions"], json!([1, -1]));
    let scores = body["scores"].as_array().unwrap();
    assert!(scores[1].as_f64().unwrap() > scores[0].as_f64().unwrap());
}

#[tokio::test]
async fn predict_explains_rows_with_the_models_feature_names() {
    let app = spawn_app().await;
    let r = app
        .train(
            &json!({"model_name": "named", "algorithm": "ecod", "data": training_rows(50, 3),
                       "feature_names": ["temp", "pressure", "rpm"]}),
        )
        .await;
    r.assert_status(201);
    let rows = json!([[0.5, 0.5, 0.5], [0.5, 40.0, 0.5]]);
    let r = app
        .predict("named", &json!({"data": rows, "explain": {"top_k": 2}}))
        .await;
    let body = r.assert_status(200);
    let explanations = body["explanations"].as_array().unwrap();
    assert_eq!(explanations.len(), 2);
    assert_eq!(explanations[1].as_array().unwrap().len(), 2);
    assert_eq!(explanations[1][0]["feature"], "pressure", "{body}");
    assert!(
        explanations[1][0]["contribution"].as_f64().unwrap() > 0.5,
        "{body}"
    );
    // A model without names uses the column names x0, x1, …
    app.train_inline("plain").await;
    let r = app
        .predict(
            "plain",
            &json!({"data": [[0.5, 0.5, 60.0]], "explain": true}),
        )
        .await;
    let body = r.assert_status(200);
    assert_eq!(body["explanations"][0][0]["feature"], "x2", "{body}");
    assert_eq!(body["explanations"][0].as_array().unwrap().len(), 3);
    // Without explain: no field; a top_k above the model's width names the field; rows of
    // the wrong width are the model's 422, as without explain.
    let r = app
        .predict("plain", &json!({"data": [[0.5, 0.5, 0.5]]}))
        .await;
    assert!(r.assert_status(200).get("explanations").is_none());
    let r = app
        .predict(
            "plain",
            &json!({"data": [[0.5, 0.5, 0.5]], "explain": {"top_k": 4}}),
        )
        .await;
    let e = r.assert_error(422, "invalid_input");
    assert_eq!(e["details"]["field"], "explain.top_k", "{e}");
    let r = app
        .predict("plain", &json!({"data": [[0.5, 0.5]], "explain": true}))
        .await;
    let e = r.assert_error(422, "invalid_input");
    assert_eq!(e["details"]["expected_features"], 3, "{e}");
}
