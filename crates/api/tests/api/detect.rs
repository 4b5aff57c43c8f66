use serde_json::json;

use crate::helpers::{ALGORITHMS, Reply, spawn_app, training_rows};

#[tokio::test]
async fn detect_labels_the_far_away_row_as_an_anomaly() {
    let app = spawn_app().await;
    let r = app
        .detect(&json!({
            "data": training_rows(100, 3), "algorithm": "isolation_forest",
            "contamination": 0.05, "n_estimators": 50, "random_state": 42,
        }))
        .await;
    let body = r.assert_status(200);
    assert_eq!(body["n_samples"], 100);
    assert_eq!(body["n_features"], 3);
    assert_eq!(body["algorithm"], "isolation_forest");
    assert_eq!(body["parameters"]["n_estimators"], 50);
    assert_eq!(body["contamination"], 0.05);
    assert_eq!(body["predictions"].as_array().unwrap().len(), 100);
    assert_eq!(body["predictions"][99], -1);
    let threshold = body["threshold"].as_f64().unwrap();
    for (s, p) in body["scores"]
        .as_array()
        .unwrap()
        .iter()
        .zip(body["predictions"].as_array().unwrap())
    {
        assert_eq!(s.as_f64().unwrap() > threshold, p == -1);
    }
    assert!(body["processing_time_ms"].is_number());
}

#[tokio::test]
async fn detect_gives_the_same_answer_for_the_same_seed() {
    let app = spawn_app().await;
    let req = json!({"data": training_rows(60, 2), "random_state": 7, "n_estimators": 20});
    let a = app.detect(&req).await;
    let b = app.detect(&req).await;
    assert_eq!(a.body["scores"], b.body["scores"]);
}

#[tokio::test]
async fn detect_accepts_parameters_nested_or_flat() {
    let app = spawn_app().await;
    let nested = app
        .detect(&json!({"data": training_rows(40, 2), "algorithm": "lof",
                        "parameters": {"n_neighbors": 5}}))
        .await;
    let flat = app
        .detect(&json!({"data": training_rows(40, 2), "algorithm": "lof", "n_neighbors": 5}))
        .await;
    assert_eq!(nested.assert_status(200)["parameters"]["n_neighbors"], 5);
    assert_eq!(nested.body["scores"], flat.assert_status(200)["scores"]);
}

/// A fresh server's answer to `body`, sent as is to `POST /api/v1/detect`.
async fn detect_raw(body: &str) -> Reply {
    spawn_app().await.post_raw("/api/v1/detect", body).await
}

#[tokio::test]
async fn detect_rejects_malformed_json_with_the_contract_body() {
    let r = detect_raw(r#"{"data": [[1, 2], "#).await;
    r.assert_error(400, "malformed_json");
}

#[tokio::test]
async fn detect_rejects_nan_as_a_string_naming_row_and_column() {
    let app = spawn_app().await;
    let r = app
        .detect(&json!({"data": [[1.0, 2.0], [3.0, "NaN"], [1.0, 1.0]]}))
        .await;
    let e = r.assert_error(422, "invalid_input");
    assert_eq!(e["details"]["row"], 1);
    assert_eq!(e["details"]["column"], 1);
    assert!(r.message().contains("row 1, column 1"), "{}", r.message());
}

#[tokio::test]
async fn detect_rejects_a_bare_nan_literal_as_invalid_input() {
    let r = detect_raw(r#"{"data": [[1.0, NaN], [2, 3]]}"#).await;
    r.assert_error(422, "invalid_input");
    assert!(r.message().contains("NaN"));
}

#[tokio::test]
async fn detect_rejects_ragged_rows_naming_the_row() {
    let app = spawn_app().await;
    let r = app
        .detect(&json!({"data": [[1, 2, 3], [4, 5, 6], [7, 8]]}))
        .await;
    let e = r.assert_error(422, "invalid_input");
    assert_eq!(e["details"]["row"], 2);
    assert_eq!(e["details"]["expected"], 3);
}

#[tokio::test]
async fn detect_rejects_empty_data() {
    let app = spawn_app().await;
    app.detect(&json!({"data": []}))
        .await
        .assert_error(422, "invalid_input");
    app.detect(&json!({"algorithm": "lof"}))
        .await
        .assert_error(422, "invalid_input");
}

#[tokio::test]
async fn detect_rejects_an_unknown_algorithm_listing_the_accepted_ones() {
    let app = spawn_app().await;
    let r = app
        .detect(&json!({"data": training_rows(10, 2), "algorithm": "one_class_svm"}))
        .await;
    let e = r.assert_error(422, "invalid_input");
    assert_eq!(e["details"]["algorithm"], "one_class_svm");
    assert_eq!(e["details"]["accepted"], json!(ALGORITHMS));
}

#[tokio::test]
async fn detect_rejects_an_unknown_parameter_naming_it() {
    let app = spawn_app().await;
    let r = app
        .detect(&json!({"data": training_rows(10, 2), "n_trees": 10}))
        .await;
    let e = r.assert_error(422, "invalid_input");
    assert_eq!(e["details"]["parameter"], "n_trees");
    assert!(
        e["details"]["accepted"]
            .as_array()
            .unwrap()
            .contains(&json!("n_estimators"))
    );
}

#[tokio::test]
async fn detect_rejects_an_out_of_range_parameter_and_bad_contamination() {
    let app = spawn_app().await;
    let r = app
        .detect(&json!({"data": training_rows(10, 2), "n_estimators": 0}))
        .await;
    assert_eq!(
        r.assert_error(422, "invalid_input")["details"]["parameter"],
        "n_estimators"
    );
    let r = app
        .detect(&json!({"data": training_rows(10, 2), "contamination": 0.9}))
        .await;
    let e = r.assert_error(422, "invalid_input");
    assert_eq!(e["details"]["parameter"], "contamination");
    assert!(r.message().contains("(0, 0.5]"), "{}", r.message());
}

#[tokio::test]
async fn detect_runs_pyod_detectors_and_auto_contamination_flags_a_tenth() {
    let app = spawn_app().await;
    for algorithm in ["ecod", "copod", "hbos", "knn", "pca", "gmm", "mcd", "cblof"] {
        let r = app
            .detect(&json!({"data": training_rows(100, 3), "algorithm": algorithm}))
            .await;
        let body = r.assert_status(200);
        assert_eq!(body["algorithm"], algorithm);
        assert_eq!(body["contamination"], "auto");
        // PyOD's default contamination: at most a tenth of the rows (fewer where scores
        // tie at the threshold), the planted far row among them.
        let count = body["anomaly_count"].as_u64().unwrap();
        assert!((1..=10).contains(&count), "{algorithm}: {count}");
        assert_eq!(body["predictions"][99], -1, "{algorithm}");
    }
    let r = app
        .detect(&json!({"data": training_rows(50, 2), "algorithm": "knn",
                        "parameters": {"n_neighbors": 3, "method": "median"}}))
        .await;
    let params = &r.assert_status(200)["parameters"];
    assert_eq!(
        *params,
        json!({"n_neighbors": 3, "method": "median", "metric": "euclidean"})
    );
}

#[tokio::test]
async fn detect_rejects_a_pyod_parameter_out_of_range_naming_it() {
    let app = spawn_app().await;
    let r = app
        .detect(&json!({"data": training_rows(20, 2), "algorithm": "hbos", "alpha": 1.5}))
        .await;
    let e = r.assert_error(422, "invalid_input");
    assert_eq!(e["details"]["parameter"], "alpha");
    assert!(
        e["message"].as_str().unwrap().contains("(0, 1)"),
        "{}",
        e["message"]
    );
    let r = app
        .detect(&json!({"data": training_rows(20, 2), "algorithm": "knn", "method": "max"}))
        .await;
    assert_eq!(
        r.assert_error(422, "invalid_input")["details"]["parameter"],
        "method"
    );
    // A limit that depends on the data is checked at fit time, still as a 422.
    let r = app
        .detect(&json!({"data": training_rows(20, 2), "algorithm": "pca", "n_components": 3}))
        .await;
    assert_eq!(
        r.assert_error(422, "invalid_input")["details"]["parameter"],
        "n_components"
    );
}

#[tokio::test]
async fn dbscan_labels_the_noise_and_names_eps_when_no_row_is_a_core_row() {
    let app = spawn_app().await;
    let r = app
        .detect(
            &json!({"data": training_rows(100, 3), "algorithm": "dbscan",
                        "eps": 0.3, "min_samples": 5}),
        )
        .await;
    let body = r.assert_status(200);
    assert_eq!(body["threshold"], 0.3);
    assert_eq!(body["anomaly_count"], 1);
    assert_eq!(body["predictions"][99], -1);
    assert_eq!(body["scores"][0], 0.0);
    let r = app
        .detect(
            &json!({"data": training_rows(100, 3), "algorithm": "dbscan",
                        "eps": 0.001, "min_samples": 50}),
        )
        .await;
    assert_eq!(
        r.assert_error(422, "invalid_input")["details"]["parameter"],
        "eps"
    );
    let r = app
        .detect(&json!({"data": training_rows(10, 3), "algorithm": "dbscan", "eps": 0}))
        .await;
    assert_eq!(
        r.assert_error(422, "invalid_input")["details"]["parameter"],
        "eps"
    );
}

#[tokio::test]
async fn inne_is_seeded_by_random_state_and_reports_a_drawn_seed() {
    let app = spawn_app().await;
    let req = json!({"data": training_rows(80, 3), "algorithm": "inne", "random_state": 5,
                     "n_estimators": 50});
    let a = app.detect(&req).await;
    let b = app.detect(&req).await;
    assert_eq!(
        a.assert_status(200)["scores"],
        b.assert_status(200)["scores"]
    );
    assert_eq!(a.body["predictions"][79], -1);
    let drawn = app
        .detect(&json!({"data": training_rows(80, 3), "algorithm": "inne"}))
        .await;
    assert!(drawn.assert_status(200)["parameters"]["random_state"].is_u64());
    let r = app
        .detect(&json!({"data": training_rows(80, 3), "algorithm": "inne", "max_samples": 1}))
        .await;
    assert_eq!(
        r.assert_error(422, "invalid_input")["details"]["parameter"],
        "max_samples"
    );
}

#[tokio::test]
async fn mcd_is_seeded_reports_a_drawn_seed_and_names_support_fraction() {
    let app = spawn_app().await;
    let req = json!({"data": training_rows(120, 3), "algorithm": "mcd", "random_state": 4,
                     "support_fraction": 0.75});
    let a = app.detect(&req).await;
    let b = app.detect(&req).await;
    assert_eq!(
        a.assert_status(200)["scores"],
        b.assert_status(200)["scores"]
    );
    assert_eq!(a.body["predictions"][119], -1);
    assert_eq!(
        a.body["parameters"],
        json!({"support_fraction": 0.75, "assume_centered": false, "random_state": 4})
    );
    let drawn = app
        .detect(&json!({"data": training_rows(120, 3), "algorithm": "mcd"}))
        .await;
    assert!(drawn.assert_status(200)["parameters"]["random_state"].is_u64());
    for bad in [json!(0), json!(1.5), json!("half")] {
        let r = app
            .detect(&json!({"data": training_rows(40, 3), "algorithm": "mcd",
                            "support_fraction": bad}))
            .await;
        let e = r.assert_error(422, "invalid_input");
        assert_eq!(e["details"]["parameter"], "support_fraction", "{bad}");
    }
}

#[tokio::test]
async fn cblof_is_seeded_and_names_n_clusters_when_it_cannot_apply() {
    let app = spawn_app().await;
    let req = json!({"data": training_rows(120, 3), "algorithm": "cblof", "random_state": 2,
                     "n_clusters": 4});
    let a = app.detect(&req).await;
    let b = app.detect(&req).await;
    assert_eq!(
        a.assert_status(200)["scores"],
        b.assert_status(200)["scores"]
    );
    assert_eq!(a.body["predictions"][119], -1);
    assert_eq!(
        a.body["parameters"],
        json!({"n_clusters": 4, "alpha": 0.9, "beta": 5.0, "use_weights": false,
               "random_state": 2})
    );
    // More clusters than rows, and parameters out of their ranges.
    for (params, name) in [
        (json!({"n_clusters": 30}), "n_clusters"),
        (json!({"n_clusters": 1}), "n_clusters"),
        (json!({"alpha": 1.0}), "alpha"),
        (json!({"beta": 1}), "beta"),
    ] {
        let mut body = json!({"data": training_rows(20, 2), "algorithm": "cblof"});
        for (k, v) in params.as_object().unwrap() {
            body[k] = v.clone();
        }
        let r = app.detect(&body).await;
        let e = r.assert_error(422, "invalid_input");
        assert_eq!(e["details"]["parameter"], name, "{params}");
    }
}

/// `training_rows(n, width)` with the last row back in the cluster but for `feature`.
fn rows_with_one_far_feature(n: usize, width: usize, feature: usize) -> serde_json::Value {
    let mut rows = training_rows(n, width);
    let last = rows[n - 1].as_array_mut().unwrap();
    for (j, v) in last.iter_mut().enumerate() {
        *v = json!(if j == feature { 50.0 } else { 0.5 });
    }
    rows
}

#[tokio::test]
async fn detect_explains_each_row_with_its_top_features_named() {
    let app = spawn_app().await;
    for algorithm in ALGORITHMS {
        let mut body = json!({"data": rows_with_one_far_feature(80, 4, 2),
                              "algorithm": algorithm, "explain": true});
        if ["isolation_forest", "inne"].contains(&algorithm) {
            body["random_state"] = json!(3);
        }
        let r = app.detect(&body).await;
        let body = r.assert_status(200);
        let explanations = body["explanations"].as_array().unwrap();
        assert_eq!(explanations.len(), 80, "{algorithm}");
        for row in explanations {
            let row = row.as_array().unwrap();
            assert_eq!(row.len(), 3, "{algorithm}: the default top_k");
            let shares: Vec<f64> = row
                .iter()
                .map(|c| c["contribution"].as_f64().unwrap())
                .collect();
            assert!(
                shares.windows(2).all(|w| w[0] >= w[1]),
                "{algorithm}: {shares:?}"
            );
            assert!(shares.iter().sum::<f64>() <= 1.0 + 1e-9, "{algorithm}");
        }
        assert_eq!(
            explanations[79][0]["feature"], "x2",
            "{algorithm}: {}",
            explanations[79]
        );
    }
    // top_k as given; without explain, no explanations.
    let r = app
        .detect(
            &json!({"data": training_rows(30, 4), "algorithm": "ecod", "explain": {"top_k": 4}}),
        )
        .await;
    let all = &r.assert_status(200)["explanations"][0];
    let total: f64 = all
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["contribution"].as_f64().unwrap())
        .sum();
    assert!((total - 1.0).abs() < 1e-9, "{all}");
    let r = app
        .detect(&json!({"data": training_rows(30, 2), "explain": false}))
        .await;
    assert!(r.assert_status(200).get("explanations").is_none());
    // true on data narrower than 3 features explains every feature.
    let r = app
        .detect(&json!({"data": training_rows(30, 2), "explain": true}))
        .await;
    assert_eq!(
        r.assert_status(200)["explanations"][0]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

#[tokio::test]
async fn detect_refuses_a_bad_explain_naming_the_field() {
    let app = spawn_app().await;
    for (explain, field) in [
        (json!({"top_k": 0}), "explain.top_k"),
        (json!({"top_k": 4}), "explain.top_k"),
        (json!({"top_k": "2"}), "explain.top_k"),
        (json!({"k": 2}), "explain"),
        (json!("yes"), "explain"),
        (json!(1), "explain"),
    ] {
        let r = app
            .detect(&json!({"data": training_rows(30, 3), "explain": explain}))
            .await;
        let error = r.assert_error(422, "invalid_input");
        assert_eq!(error["details"]["field"], field, "{explain}: {error}");
    }
}
