//! Model lifecycle over HTTP: promotion policies at training, promote, archive and roll
//! back with their conflicts, the validation gate, stage history, lineage, audit rows and
//! the stage-change counter.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use testkit::eventually;

use crate::helpers::{TestApp, spawn_app, training_rows};

/// Trains `name` inline with `extra` fields on `data`.
async fn train(app: &TestApp, name: &str, data: Value, extra: Value) -> Value {
    let mut body = json!({
        "model_name": name, "algorithm": "isolation_forest", "contamination": 0.05,
        "n_estimators": 50, "random_state": 42, "data": data,
    });
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    app.train(&body).await.assert_status(201).clone()
}

async fn post(app: &TestApp, path: &str, body: Option<Value>) -> crate::helpers::Reply {
    app.request(Method::POST, path, Some(&app.admin_key), body.as_ref())
        .await
}

async fn production_of(app: &TestApp, name: &str) -> Value {
    app.get(&format!("/api/v1/models/{name}"))
        .await
        .assert_status(200)["production_version"]
        .clone()
}

/// Rows near the origin (normal) and, every tenth row, far away (anomalous), with labels.
fn labelled(n: usize) -> (Value, Value) {
    let rows: Vec<Vec<f64>> = (0..n)
        .map(|i| {
            let far = i % 10 == 9;
            (0..3)
                .map(|j| {
                    let base = ((i * 7 + j * 13) % 17) as f64 / 17.0;
                    if far { 30.0 + base } else { base }
                })
                .collect()
        })
        .collect();
    let labels: Vec<u8> = (0..n).map(|i| u8::from(i % 10 == 9)).collect();
    (json!(rows), json!(labels))
}

#[tokio::test]
async fn a_retrained_version_goes_live_by_default_and_manual_ones_wait_for_promotion() {
    let app = spawn_app().await;
    let v1 = train(&app, "m", training_rows(200, 3), json!({})).await;
    assert_eq!(v1["stage"], "production");
    assert_eq!(v1["promotion"]["promoted"], true);
    let v2 = train(&app, "m", training_rows(200, 3), json!({})).await;
    assert_eq!(
        (v2["version"].clone(), v2["stage"].clone()),
        (json!(2), json!("production"))
    );
    assert_eq!(v2["promotion"]["policy"], "always");
    assert_eq!(v2["promotion"]["replaced"], 1);
    // Predict follows the new production version.
    let p = app.predict("m", &json!({"data": [[0.1, 0.2, 0.3]]})).await;
    assert_eq!(p.assert_status(200)["model_version"], 2);

    let v3 = train(
        &app,
        "m",
        training_rows(200, 3),
        json!({"promote": "manual"}),
    )
    .await;
    assert_eq!(v3["stage"], "staging");
    assert_eq!(v3["promotion"]["promoted"], false);
    assert!(
        v3["promotion"]["reason"]
            .as_str()
            .unwrap()
            .contains("/api/v1/models/m/versions/3/promote"),
        "{v3}"
    );
    assert_eq!(production_of(&app, "m").await, 2);

    // Lineage: the data's digest and size, the parent, the seed, who trained it.
    let lineage = &v3["lineage"];
    assert_eq!(lineage["training_data"], "inline");
    assert_eq!(lineage["rows"], 200);
    assert_eq!(lineage["sha256"].as_str().unwrap().len(), 64);
    assert_eq!(
        lineage["sha256"], v2["lineage"]["sha256"],
        "same data, same digest"
    );
    assert_eq!(lineage["parent_version"], 2);
    assert_eq!(lineage["random_state"], 42);
    assert!(lineage["trained_by"].as_str().unwrap().starts_with("key:"));
    assert!(lineage["pynomaly_version"].is_string());
}

#[tokio::test]
async fn promote_archive_and_rollback_move_production_and_refuse_what_cannot_be() {
    let app = spawn_app().await;
    for _ in 0..3 {
        train(
            &app,
            "m",
            training_rows(200, 3),
            json!({"promote": "manual"}),
        )
        .await;
    }
    assert_eq!(production_of(&app, "m").await, 1);

    let r = post(
        &app,
        "/api/v1/models/m/versions/3/promote",
        Some(json!({"reason": "better recall"})),
    )
    .await;
    let b = r.assert_status(200);
    assert_eq!(
        (b["version"].clone(), b["stage"].clone()),
        (json!(3), json!("production"))
    );
    assert_eq!(b["previous_stage"], "staging");
    assert_eq!(b["replaced_version"], 1);
    let last = b["stage_history"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["from"], "staging");
    assert_eq!(last["to"], "production");
    assert_eq!(last["reason"], "promote");
    assert_eq!(last["note"], "better recall");
    assert!(last["by"].as_str().unwrap().starts_with("key:"));
    let p = app.predict("m", &json!({"data": [[0.1, 0.2, 0.3]]})).await;
    assert_eq!(p.assert_status(200)["model_version"], 3);
    let v1 = app.get("/api/v1/models/m/versions/1").await;
    assert_eq!(v1.assert_status(200)["stage"], "archived");

    // Conflicts: promoting production again, archiving production.
    post(&app, "/api/v1/models/m/versions/3/promote", None)
        .await
        .assert_error(409, "conflict");
    let r = post(&app, "/api/v1/models/m/versions/3/archive", None).await;
    r.assert_error(409, "conflict");
    assert!(r.message().contains("roll back"), "{}", r.message());
    // Not found: a version or a model that does not exist; a bad version.
    post(&app, "/api/v1/models/m/versions/9/promote", None)
        .await
        .assert_error(404, "not_found");
    post(&app, "/api/v1/models/nope/rollback", None)
        .await
        .assert_error(404, "not_found");
    post(&app, "/api/v1/models/m/versions/x/promote", None)
        .await
        .assert_error(422, "invalid_input");
    let r = post(
        &app,
        "/api/v1/models/m/versions/2/archive",
        Some(json!({"why": "x"})),
    )
    .await;
    assert_eq!(r.status, 422, "{}", r.body);
    assert!(r.message().contains("why"), "{}", r.message());

    // Rollback: back to 1 (replaced by 3); again: nothing before 1.
    let r = post(
        &app,
        "/api/v1/models/m/rollback",
        Some(json!({"reason": "alerts doubled"})),
    )
    .await;
    let b = r.assert_status(200);
    assert_eq!(b["version"], 1);
    assert_eq!(b["replaced_version"], 3);
    let p = app.predict("m", &json!({"data": [[0.1, 0.2, 0.3]]})).await;
    assert_eq!(p.assert_status(200)["model_version"], 1);
    let r = post(&app, "/api/v1/models/m/rollback", None).await;
    r.assert_error(409, "conflict");

    // Archive a staging version.
    let r = post(&app, "/api/v1/models/m/versions/2/archive", None).await;
    assert_eq!(r.assert_status(200)["stage"], "archived");

    // Each change has an audit row naming from, to and why; and is counted.
    let rows = eventually(
        "the stage changes are audited",
        Duration::from_secs(5),
        async || {
            let r = app
                .get("/api/v1/audit?action=model_stage_change&limit=100")
                .await;
            let rows = r.assert_status(200)["entries"].as_array().unwrap().clone();
            if rows.len() >= 3 {
                Ok(rows)
            } else {
                Err(format!("{rows:?}"))
            }
        },
    )
    .await;
    let details: Vec<(Value, Value, Value)> = rows
        .iter()
        .map(|r| {
            (
                r["detail"]["from"].clone(),
                r["detail"]["to"].clone(),
                r["detail"]["reason"].clone(),
            )
        })
        .collect();
    assert!(
        details.contains(&(json!("staging"), json!("production"), json!("promote"))),
        "{details:?}"
    );
    assert!(
        details.contains(&(json!("archived"), json!("production"), json!("rollback"))),
        "{details:?}"
    );
    assert!(
        details.contains(&(json!("staging"), json!("archived"), json!("archive"))),
        "{details:?}"
    );
    let metrics = app.request(Method::GET, "/metrics", None, None).await;
    let metrics = metrics.body.as_str().unwrap_or_default();
    assert!(
        metrics.contains(r#"pynomaly_model_stage_changes_total{model="m",reason="rollback"} 1"#),
        "{metrics}"
    );
}

#[tokio::test]
async fn if_better_keeps_a_worse_model_in_staging_with_both_figures() {
    let app = spawn_app().await;
    let (valid_x, valid_y) = labelled(200);
    let gate =
        json!({"promote": "if_better", "validation_data": {"data": valid_x, "labels": valid_y}});
    // A good model: trained on normal rows only.
    let normal: Vec<Value> = labelled(400)
        .0
        .as_array()
        .unwrap()
        .iter()
        .enumerate()
        .filter(|(i, _)| i % 10 != 9)
        .map(|(_, r)| r.clone())
        .collect();
    let v1 = train(&app, "g", json!(normal), gate.clone()).await;
    assert_eq!(v1["stage"], "production");
    let auc1 = v1["metrics"]["validation"]["roc_auc"].as_f64().unwrap();
    assert!(auc1 > 0.95, "{v1}");
    // A worse one: trained on data where the far rows are as common as the near ones.
    let mixed: Vec<Vec<f64>> = (0..400)
        .map(|i| {
            (0..3)
                .map(|j| {
                    ((i * 7 + j * 13) % 17) as f64 / 17.0 + if i % 2 == 0 { 30.0 } else { 0.0 }
                })
                .collect()
        })
        .collect();
    let v2 = train(&app, "g", json!(mixed), gate.clone()).await;
    assert_eq!(v2["stage"], "staging", "{v2}");
    let promotion = &v2["promotion"];
    assert_eq!(promotion["promoted"], false);
    let auc2 = v2["metrics"]["validation"]["roc_auc"].as_f64().unwrap();
    assert_eq!(v2["metrics"]["production"]["version"], 1);
    assert_eq!(
        v2["metrics"]["production"]["roc_auc"].as_f64().unwrap(),
        auc1
    );
    assert!(auc2 < auc1, "{auc2} {auc1}");
    let reason = promotion["reason"].as_str().unwrap();
    assert!(
        reason.contains(&format!("{auc2:.4}")) && reason.contains(&format!("{auc1:.4}")),
        "{reason}"
    );
    assert_eq!(production_of(&app, "g").await, 1);
    // The same good data again passes the gate (equal is enough).
    let v3 = train(&app, "g", json!(normal), gate).await;
    assert_eq!(v3["stage"], "production", "{v3}");

    // The gate's input is checked at the edge.
    for (extra, field) in [
        (json!({"promote": "if_better"}), "validation_data"),
        (json!({"promote": "sometimes"}), "promote"),
        (json!({"gate_metric": "f1"}), "gate_metric"),
        (json!({"min_improvement": -1}), "min_improvement"),
        (
            json!({"validation_data": {"data": [[1.0, 2.0, 3.0]], "labels": [0, 1]}}),
            "validation_data.labels",
        ),
        (
            json!({"validation_data": {"data": [[1.0, 2.0, 3.0]], "labels": [2]}}),
            "validation_data.labels",
        ),
        (json!({"validation_data": [[1.0]]}), "validation_data"),
    ] {
        let mut body = json!({"model_name": "g", "data": training_rows(50, 3)});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        let r = app.train(&body).await;
        let e = r.assert_error(422, "invalid_input");
        assert_eq!(e["details"]["field"], field, "{extra}: {}", r.body);
    }
}

#[tokio::test]
async fn a_training_job_follows_its_policy_and_records_its_lineage() {
    let app = spawn_app().await;
    app.write_source("train.csv", &crate::helpers::csv_source(300, 3));
    let (valid_x, valid_y) = labelled(100);
    let mut versions = Vec::new();
    for promote in ["always", "manual", "if_better"] {
        let r = app
            .train(
                &json!({"model_name": "j", "training_data": "train.csv", "random_state": 1,
                           "promote": promote,
                           "validation_data": {"data": valid_x, "labels": valid_y}}),
            )
            .await;
        let job_id = r.assert_status(202)["job_id"].as_str().unwrap().to_string();
        assert_eq!(app.drain_jobs().await, 1);
        let job = app.job(&job_id).await;
        let result = job.assert_status(200)["result"].clone();
        assert_eq!(job.body["status"], "succeeded", "{}", job.body);
        assert_eq!(result["promotion"]["policy"], promote, "{result}");
        let lineage = &result["lineage"];
        assert_eq!(lineage["training_data"], "train.csv");
        assert_eq!(lineage["job_id"], job_id.as_str());
        assert_eq!(lineage["rows"], 300);
        assert!(lineage["trained_by"].as_str().unwrap().starts_with("key:"));
        assert!(
            result["metrics"]["validation"]["roc_auc"].is_number(),
            "{result}"
        );
        versions.push(result);
    }
    // Same data, same digest; version 2 (manual) waits in staging; version 3, as good as
    // production on the same rows (same data and seed), passes the gate.
    assert_eq!(
        versions[0]["lineage"]["sha256"],
        versions[2]["lineage"]["sha256"]
    );
    assert_eq!(versions[1]["stage"], "staging");
    assert_eq!(versions[2]["stage"], "production", "{}", versions[2]);
    assert_eq!(versions[2]["metrics"]["production"]["version"], 1);
    assert_eq!(production_of(&app, "j").await, 3);
}

#[tokio::test]
async fn a_training_job_measures_its_version_on_a_validation_data_source() {
    let app = spawn_app().await;
    app.write_source("train.csv", &crate::helpers::csv_source(300, 3));
    let (valid_x, valid_y) = labelled(100);
    let mut csv = String::from("a,b,c,is_anomaly\n");
    for (row, label) in valid_x
        .as_array()
        .unwrap()
        .iter()
        .zip(valid_y.as_array().unwrap())
    {
        let cells: Vec<String> = row
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.to_string())
            .collect();
        csv.push_str(&format!("{},{label}\n", cells.join(",")));
    }
    app.write_source("valid.csv", &csv);
    let gate = json!({"source": "valid.csv", "label_column": "is_anomaly"});
    let r = app
        .train(
            &json!({"model_name": "v", "training_data": "train.csv", "random_state": 1,
                       "promote": "if_better", "validation_data": gate}),
        )
        .await;
    let job_id = r.assert_status(202)["job_id"].as_str().unwrap().to_string();
    assert_eq!(app.drain_jobs().await, 1);
    let job = app.job(&job_id).await;
    assert_eq!(
        job.assert_status(200)["status"],
        "succeeded",
        "{}",
        job.body
    );
    let validation = &job.body["result"]["metrics"]["validation"];
    assert_eq!(validation["rows"], 100, "{validation}");
    // The same rows inline give the same figures.
    let inline = train(
        &app,
        "inline",
        crate::helpers::training_rows(300, 3),
        json!({"validation_data": {"data": valid_x, "labels": valid_y}}),
    )
    .await;
    assert!(inline["metrics"]["validation"]["roc_auc"].is_number());
    assert!(
        validation["roc_auc"].as_f64().unwrap() > 0.9,
        "{validation}"
    );

    // A label column holding something else than 0/1 fails the job, naming it.
    app.write_source("bad.csv", "a,b,c,is_anomaly\n1,2,3,0\n4,5,6,7\n");
    let r = app
        .train(&json!({"model_name": "v", "training_data": "train.csv",
                       "validation_data": {"source": "bad.csv", "label_column": "is_anomaly"}}))
        .await;
    let job_id = r.assert_status(202)["job_id"].as_str().unwrap().to_string();
    app.drain_jobs().await;
    let job = app.job(&job_id).await;
    assert_eq!(job.assert_status(200)["status"], "failed", "{}", job.body);
    let error = job.body["error"].as_str().unwrap_or_default().to_string();
    assert!(
        error.contains("is_anomaly") && error.contains("0 and 1"),
        "{error}"
    );

    // Refused at the edge: a source with inline training, a source without a label column.
    for (body, field) in [
        (
            json!({"model_name": "v", "data": training_rows(50, 3), "validation_data": "valid.csv"}),
            "validation_data",
        ),
        (
            json!({"model_name": "v", "training_data": "train.csv", "validation_data": "valid.csv"}),
            "validation_data.label_column",
        ),
        (
            json!({"model_name": "v", "training_data": "train.csv",
                   "validation_data": {"source": "valid.csv", "labels": "x"}}),
            "validation_data",
        ),
    ] {
        let r = app.train(&body).await;
        assert_eq!(
            r.assert_error(422, "invalid_input")["details"]["field"],
            field,
            "{body}"
        );
    }
}

async fn put_canary(app: &TestApp, name: &str, body: Value) -> crate::helpers::Reply {
    app.request(
        Method::PUT,
        &format!("/api/v1/models/{name}/canary"),
        Some(&app.admin_key),
        Some(&body),
    )
    .await
}

/// Predicts one normal row as `key`; returns (version, variant).
async fn predict_as(app: &TestApp, name: &str, key: &str) -> (i64, String) {
    let r = app
        .anonymous
        .key(&app.admin_key)
        .call(Method::POST, &format!("/api/v1/models/{name}/predict"))
        .header("x-routing-key", key)
        .json(&json!({"data": [[0.1, 0.2, 0.3]]}))
        .send()
        .await;
    let b = r.assert_status(200);
    (
        b["model_version"].as_i64().unwrap(),
        b["variant"].as_str().unwrap().to_string(),
    )
}

#[tokio::test]
async fn a_canary_takes_its_share_by_routing_key_and_is_promoted() {
    let app = spawn_app().await;
    train(&app, "c", training_rows(200, 3), json!({})).await;
    train(
        &app,
        "c",
        training_rows(200, 3),
        json!({"promote": "manual"}),
    )
    .await;
    let r = put_canary(&app, "c", json!({"version": 2, "traffic_percent": 20})).await;
    let b = r.assert_status(200);
    assert_eq!(
        (b["version"].clone(), b["mode"].clone()),
        (json!(2), json!("canary"))
    );
    assert_eq!(b["guards"]["max_anomaly_rate_ratio"], 2.0);

    let mut to_canary = 0;
    for i in 0..1000 {
        let (version, variant) = predict_as(&app, "c", &format!("customer-{i}")).await;
        match variant.as_str() {
            "canary" => {
                assert_eq!(version, 2);
                to_canary += 1;
            }
            "production" => assert_eq!(version, 1),
            other => panic!("{other}"),
        }
    }
    assert!(
        (150..=250).contains(&to_canary),
        "{to_canary} of 1000 at 20%"
    );
    // One key, one version, every time.
    let first = predict_as(&app, "c", "customer-7").await;
    for _ in 0..20 {
        assert_eq!(predict_as(&app, "c", "customer-7").await, first);
    }
    // A version asked for is served as asked.
    let r = app
        .predict("c", &json!({"data": [[0.1, 0.2, 0.3]], "version": 1}))
        .await;
    assert_eq!(r.assert_status(200)["variant"], "requested");

    let live = app.get("/api/v1/models/c/canary").await;
    let cmp = &live.assert_status(200)["comparison"];
    assert_eq!(
        cmp["candidate"]["requests"].as_u64().unwrap()
            + cmp["production"]["requests"].as_u64().unwrap(),
        1021
    );

    // Refusals: production or unknown version, bad percent, unknown field, no canary.
    put_canary(&app, "c", json!({"version": 1}))
        .await
        .assert_error(409, "conflict");
    put_canary(&app, "c", json!({"version": 9}))
        .await
        .assert_error(404, "not_found");
    let r = put_canary(&app, "c", json!({"version": 2, "traffic_percent": 0})).await;
    assert_eq!(
        r.assert_error(422, "invalid_input")["details"]["field"],
        "traffic_percent"
    );
    let r = put_canary(
        &app,
        "c",
        json!({"version": 2, "guards": {"max_error_rate": 2}}),
    )
    .await;
    assert_eq!(r.status, 422, "{}", r.body);
    let r = put_canary(&app, "c", json!({"version": 2, "percent": 5})).await;
    assert_eq!(r.status, 422, "{}", r.body);

    let r = app
        .request(
            Method::POST,
            "/api/v1/models/c/canary/promote",
            Some(&app.admin_key),
            None,
        )
        .await;
    assert_eq!(r.assert_status(200)["version"], 2);
    assert_eq!(production_of(&app, "c").await, 2);
    app.get("/api/v1/models/c/canary")
        .await
        .assert_error(404, "not_found");
    let (version, variant) = predict_as(&app, "c", "customer-7").await;
    assert_eq!((version, variant.as_str()), (2, "production"));
}

/// Rows where a model trained on `training_rows` flags about 1 in 20, and one trained on a
/// narrower copy flags far more.
fn traffic(i: usize) -> Vec<f64> {
    (0..3)
        .map(|j| ((i * 11 + j * 5) % 23) as f64 / 23.0)
        .collect()
}

#[tokio::test]
async fn a_canary_flagging_far_more_than_production_is_ended_by_its_guard() {
    let app = spawn_app().await;
    train(
        &app,
        "g",
        training_rows(200, 3),
        json!({"contamination": 0.05}),
    )
    .await;
    // Trained on a sliver of the range: most traffic looks anomalous to it.
    let narrow: Vec<Vec<f64>> = (0..200)
        .map(|i| {
            (0..3)
                .map(|j| 0.2 + ((i * 7 + j * 13) % 17) as f64 / 170.0)
                .collect()
        })
        .collect();
    train(
        &app,
        "g",
        json!(narrow),
        json!({"promote": "manual", "contamination": 0.05}),
    )
    .await;
    put_canary(&app, "g", json!({"version": 2, "traffic_percent": 50}))
        .await
        .assert_status(200);
    let mut ended_after = None;
    for i in 0..400 {
        let rows: Vec<Vec<f64>> = (0..10).map(|k| traffic(i * 10 + k)).collect();
        let r = app
            .anonymous
            .key(&app.admin_key)
            .call(Method::POST, "/api/v1/models/g/predict")
            .header("x-routing-key", &format!("k{i}"))
            .json(&json!({"data": rows}))
            .send()
            .await;
        r.assert_status(200);
        if app.get("/api/v1/models/g/canary").await.status == 404 {
            ended_after = Some(i);
            break;
        }
    }
    let ended_after = ended_after.expect("the anomaly-rate guard ended the canary");
    assert!(ended_after < 200, "ended after {ended_after} requests");
    assert_eq!(production_of(&app, "g").await, 1, "production untouched");
    let rows = eventually(
        "the rollback is audited",
        Duration::from_secs(5),
        async || {
            let r = app
                .get("/api/v1/audit?action=model_rollout&limit=100")
                .await;
            let rows = r.assert_status(200)["entries"].as_array().unwrap().clone();
            let ended: Vec<Value> = rows
                .into_iter()
                .filter(|r| r["detail"]["rollout"] == "ended")
                .collect();
            if ended.is_empty() {
                Err("no rollout end audited".into())
            } else {
                Ok(ended)
            }
        },
    )
    .await;
    let detail = &rows[0]["detail"];
    assert_eq!(detail["why"], "anomaly_rate", "{detail}");
    assert_eq!(rows[0]["actor"], "pynomaly");
    let candidate = detail["detail"]["candidate"].as_f64().unwrap();
    let limit = detail["detail"]["limit"].as_f64().unwrap();
    assert!(candidate > limit, "{detail}");
    let metrics = app.request(Method::GET, "/metrics", None, None).await;
    let metrics = metrics.body.as_str().unwrap_or_default();
    assert!(
        metrics.contains(r#"pynomaly_model_rollbacks_total{guard="anomaly_rate",model="g"} 1"#),
        "{metrics}"
    );
}

/// Sliver-of-the-range training rows: on [`traffic`] a model trained on them flags most rows.
fn narrow_rows() -> Value {
    let rows: Vec<Vec<f64>> = (0..200)
        .map(|i| {
            (0..3)
                .map(|j| 0.2 + ((i * 7 + j * 13) % 17) as f64 / 170.0)
                .collect()
        })
        .collect();
    json!(rows)
}

/// Predicts 10 rows of [`traffic`] (from `i * 10`) with model `name`'s default version.
async fn predict_traffic(app: &TestApp, name: &str, i: usize) -> Value {
    let rows: Vec<Vec<f64>> = (0..10).map(|k| traffic(i * 10 + k)).collect();
    app.predict(name, &json!({"data": rows}))
        .await
        .assert_status(200)
        .clone()
}

/// The audit rows of `action` whose detail has `key` equal to `value`, newest first.
async fn audited(app: &TestApp, action: &str, key: &str, value: &str) -> Vec<Value> {
    let r = app
        .get(&format!("/api/v1/audit?action={action}&limit=100"))
        .await;
    let rows = r.assert_status(200)["entries"].as_array().unwrap().clone();
    rows.into_iter()
        .filter(|r| r["detail"][key] == value)
        .collect()
}

/// [`audited`] once there is at least one such row (audit rows follow the change).
async fn audited_eventually(app: &TestApp, action: &str, key: &str, value: &str) -> Vec<Value> {
    eventually(
        &format!("an audit row {action} with {key} = {value}"),
        Duration::from_secs(5),
        async || {
            let rows = audited(app, action, key, value).await;
            if rows.is_empty() {
                Err("none yet".to_string())
            } else {
                Ok(rows)
            }
        },
    )
    .await
}

#[tokio::test]
async fn a_promotion_that_breaks_its_bake_is_rolled_back_and_one_that_holds_stays() {
    let app = spawn_app().await;
    train(&app, "b", training_rows(200, 3), json!({})).await;
    train(&app, "b", narrow_rows(), json!({"promote": "manual"})).await;

    // Refusals: a bake out of range, a bake asked of PUT canary.
    let r = post(
        &app,
        "/api/v1/models/b/versions/2/promote",
        Some(json!({"bake_seconds": 99_999_999})),
    )
    .await;
    assert_eq!(
        r.assert_error(422, "invalid_input")["details"]["field"],
        "bake_seconds"
    );
    let r = put_canary(&app, "b", json!({"version": 2, "mode": "bake"})).await;
    assert_eq!(
        r.assert_error(422, "invalid_input")["details"]["field"],
        "mode"
    );
    assert_eq!(production_of(&app, "b").await, 1, "nothing changed");

    let r = post(
        &app,
        "/api/v1/models/b/versions/2/promote",
        Some(json!({"reason": "try it", "bake_seconds": 600})),
    )
    .await;
    assert_eq!(r.assert_status(200)["replaced_version"], 1);
    let bake = app.get("/api/v1/models/b/canary").await;
    let bake = bake.assert_status(200);
    assert_eq!(bake["mode"], "bake", "{bake}");
    assert_eq!(
        (bake["version"].as_i64(), bake["replaced"].as_i64()),
        (Some(2), Some(1))
    );
    // The share of its training rows version 2 labelled anomalous (few: its rows repeat).
    let trained = bake["training_anomaly_rate"].as_f64().unwrap();
    assert!((0.0..=0.06).contains(&trained), "{bake}");
    assert!(bake["bake_until"].is_string(), "{bake}");

    // Version 2 flags most of this traffic, against 5% of its training rows.
    let mut rolled_back_after = None;
    for i in 0..100 {
        let b = predict_traffic(&app, "b", i).await;
        if b["model_version"] == 1 {
            rolled_back_after = Some(i);
            break;
        }
        assert_eq!(b["variant"], "production");
    }
    let after = rolled_back_after.expect("the bake's guard put version 1 back");
    assert!(after >= 20, "judged before min_rows: {after}");
    assert_eq!(production_of(&app, "b").await, 1);
    app.get("/api/v1/models/b/canary")
        .await
        .assert_error(404, "not_found");
    let v2 = app.get("/api/v1/models/b/versions/2").await;
    let v2 = v2.assert_status(200);
    assert_eq!(v2["stage"], "archived");
    let last = v2["stage_history"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["reason"], "rolled_back", "{last}");
    let ended = audited_eventually(&app, "model_rollout", "rollout", "ended").await;
    assert_eq!(ended[0]["detail"]["why"], "anomaly_rate", "{}", ended[0]);
    let detail = &ended[0]["detail"]["detail"];
    assert!(
        detail["candidate"].as_f64() > detail["limit"].as_f64(),
        "{detail}"
    );
    let changes = audited_eventually(&app, "model_stage_change", "reason", "guard").await;
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0]["actor"], "pynomaly");
    let metrics = app.request(Method::GET, "/metrics", None, None).await;
    let metrics = metrics.body.as_str().unwrap_or_default();
    for line in [
        r#"pynomaly_model_rollbacks_total{guard="anomaly_rate",model="b"} 1"#,
        r#"pynomaly_model_stage_changes_total{model="b",reason="guard"} 1"#,
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }
    // Rows by version and variant: version 2 scored as production during its bake.
    assert!(
        metrics.contains(r#"pynomaly_model_predicted_rows_total{model="b",model_version="2",variant="production"}"#),
        "{metrics}"
    );

    // A version that behaves keeps production once its bake is over.
    train(
        &app,
        "b",
        training_rows(200, 3),
        json!({"promote": "manual"}),
    )
    .await;
    let r = post(
        &app,
        "/api/v1/models/b/versions/3/promote",
        Some(json!({"bake_seconds": 1})),
    )
    .await;
    r.assert_status(200);
    assert_eq!(
        app.get("/api/v1/models/b/canary").await.assert_status(200)["mode"],
        "bake"
    );
    predict_traffic(&app, "b", 0).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let b = predict_traffic(&app, "b", 1).await;
    assert_eq!(b["model_version"], 3);
    app.get("/api/v1/models/b/canary")
        .await
        .assert_error(404, "not_found");
    assert_eq!(production_of(&app, "b").await, 3);
    let baked = audited_eventually(&app, "model_rollout", "why", "baked").await;
    assert_eq!(baked.len(), 1, "{baked:?}");
}

#[tokio::test]
async fn a_canary_whose_traffic_drifts_is_ended_by_the_drift_guard() {
    let app = spawn_app().await;
    train(&app, "d", training_rows(200, 3), json!({})).await;
    train(
        &app,
        "d",
        training_rows(200, 3),
        json!({"promote": "manual"}),
    )
    .await;
    // Only the drift guard can judge: every predict goes to the candidate, and the rate
    // guards allow anything.
    let guards = json!({"drift": true, "max_anomaly_rate_ratio": 1_000_000, "max_anomaly_rate": 1,
                        "max_error_rate": 1});
    put_canary(
        &app,
        "d",
        json!({"version": 2, "traffic_percent": 100, "guards": guards}),
    )
    .await
    .assert_status(200);
    let mut ended_after = None;
    for i in 0..400 {
        // The first feature far outside anything trained on.
        let rows: Vec<Vec<f64>> = (0..10)
            .map(|k| {
                let mut r = traffic(i * 10 + k);
                r[0] += 50.0;
                r
            })
            .collect();
        let r = app.predict("d", &json!({"data": rows})).await;
        r.assert_status(200);
        if app.get("/api/v1/models/d/canary").await.status == 404 {
            ended_after = Some(i);
            break;
        }
    }
    let after = ended_after.expect("the drift guard ended the canary");
    assert!(
        after >= 19,
        "judged before the drift window had its rows: {after}"
    );
    let ended = audited_eventually(&app, "model_rollout", "rollout", "ended").await;
    assert_eq!(ended[0]["detail"]["why"], "drift", "{}", ended[0]);
    assert!(ended[0]["detail"]["detail"]["candidate"].as_f64().unwrap() >= 0.25);
    assert_eq!(production_of(&app, "d").await, 1);
}

#[tokio::test]
async fn a_shadow_never_changes_answers_and_reports_its_agreement() {
    let app = spawn_app().await;
    train(&app, "s", training_rows(200, 3), json!({})).await;
    train(
        &app,
        "s",
        training_rows(200, 3),
        json!({"promote": "manual", "random_state": 7}),
    )
    .await;
    let data: Vec<Vec<f64>> = (0..50).map(traffic).collect();
    let before = app
        .predict("s", &json!({"data": data}))
        .await
        .assert_status(200)
        .clone();
    put_canary(&app, "s", json!({"version": 2, "mode": "shadow"}))
        .await
        .assert_status(200);
    for _ in 0..20 {
        let r = app.predict("s", &json!({"data": data})).await;
        let b = r.assert_status(200);
        assert_eq!(b["model_version"], 1);
        assert_eq!(b["variant"], "production");
        assert_eq!(b["scores"], before["scores"]);
        assert_eq!(b["predictions"], before["predictions"]);
    }
    let report = eventually(
        "the shadow compared the rows",
        Duration::from_secs(5),
        async || {
            let r = app.get("/api/v1/models/s/canary").await;
            let b = r.assert_status(200).clone();
            if b["comparison"]["shadow"]["rows_compared"] == 1000 {
                Ok(b)
            } else {
                Err(b.to_string())
            }
        },
    )
    .await;
    let shadow = &report["comparison"]["shadow"];
    assert!(
        shadow["label_agreement"].as_f64().unwrap() > 0.8,
        "{shadow}"
    );
    assert!(
        shadow["score_rank_correlation"].as_f64().unwrap() > 0.5,
        "{shadow}"
    );
    assert_eq!(shadow["dropped"], 0, "{shadow}");
    let r = app
        .request(
            Method::DELETE,
            "/api/v1/models/s/canary",
            Some(&app.admin_key),
            None,
        )
        .await;
    assert_eq!(r.assert_status(200)["ended"], true);
}

#[tokio::test]
async fn a_retraining_schedule_is_checked_kept_and_removed() {
    let app = spawn_app().await;
    app.write_source("train.csv", &crate::helpers::csv_source(100, 3));
    let app = &app;
    let put = async |body: Value| {
        app.request(
            Method::PUT,
            "/api/v1/models/nightly/schedule",
            Some(&app.admin_key),
            Some(&body),
        )
        .await
    };
    let r = put(
        json!({"cron": "0 3 * * *", "training_data": "train.csv", "promote": "manual",
                       "n_estimators": 20}),
    )
    .await;
    let b = r.assert_status(200).clone();
    assert_eq!(b["cron"], "0 3 * * *");
    assert_eq!(b["spec"]["training_data"], "train.csv");
    assert_eq!(b["spec"]["promote"], "manual");
    assert_eq!(b["spec"]["parameters"]["n_estimators"], 20);
    let next = chrono::DateTime::parse_from_rfc3339(b["next_run_at"].as_str().unwrap()).unwrap();
    assert_eq!(next.format("%H:%M").to_string(), "03:00");
    assert!(next > chrono::Utc::now());
    assert_eq!(b["last_job_id"], Value::Null);
    let got = app.get("/api/v1/models/nightly/schedule").await;
    assert_eq!(got.assert_status(200)["next_run_at"], b["next_run_at"]);

    for (body, field) in [
        (
            json!({"cron": "0 0 3 * * *", "training_data": "train.csv"}),
            "cron",
        ),
        (
            json!({"cron": "tomorrow", "training_data": "train.csv"}),
            "cron",
        ),
        (json!({"training_data": "train.csv"}), "cron"),
        (json!({"cron": "0 3 * * *"}), "training_data"),
        (
            json!({"cron": "0 3 * * *", "training_data": "train.csv", "promote": "if_better"}),
            "validation_data",
        ),
    ] {
        let r = put(body.clone()).await;
        let e = r.assert_error(422, "invalid_input");
        assert_eq!(e["details"]["field"], field, "{body}: {}", r.body);
    }
    let r = put(json!({"cron": "0 3 * * *", "training_data": "missing.csv"})).await;
    assert!(r.status.is_client_error(), "{}", r.body);

    let r = app
        .request(
            Method::DELETE,
            "/api/v1/models/nightly/schedule",
            Some(&app.admin_key),
            None,
        )
        .await;
    assert_eq!(r.assert_status(200)["deleted"], true);
    app.get("/api/v1/models/nightly/schedule")
        .await
        .assert_error(404, "not_found");
}

#[tokio::test]
async fn a_model_fitted_elsewhere_is_uploaded_and_scores_the_same() {
    let app = spawn_app().await;
    let rows: Vec<Vec<f64>> = (0..300).map(traffic).collect();
    let x = ndarray::Array2::from_shape_vec((300, 3), rows.concat()).unwrap();
    let config = detect_core::DetectorConfig::from_json(
        "isolation_forest",
        json!({"n_estimators": 50, "random_state": 3})
            .as_object()
            .unwrap(),
        &json!(0.05),
    )
    .unwrap();
    let fitted = detect_core::fit(&config, x.view()).unwrap().model;
    let local = fitted.predict(x.view()).unwrap();
    let upload = |query: &'static str, body: Vec<u8>| {
        app.client
            .post(format!("{}/api/v1/models/up/versions{query}", app.address))
            .bearer_auth(&app.admin_key)
            .header("content-type", "application/octet-stream")
            .body(body)
            .send()
    };
    let r = upload("", fitted.to_bytes()).await.unwrap();
    assert_eq!(r.status(), 201);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        (v["version"].clone(), v["stage"].clone()),
        (json!(1), json!("production"))
    );
    assert_eq!(v["lineage"]["training_data"], "uploaded");
    assert_eq!(v["lineage"]["rows"], 300);
    let served = app.predict("up", &json!({"data": rows})).await;
    let served = served.assert_status(200);
    let scores: Vec<f64> = serde_json::from_value(served["scores"].clone()).unwrap();
    assert_eq!(
        scores, local.scores,
        "the service scores an uploaded model as it was fitted"
    );

    let r = upload("?promote=manual", fitted.to_bytes()).await.unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["stage"], "staging", "{v}");
    for (query, body, field) in [
        ("", b"not a model".to_vec(), "body"),
        ("?promote=if_better", fitted.to_bytes(), "promote"),
    ] {
        let r = upload(query, body).await.unwrap();
        assert_eq!(r.status(), 422);
        let e: Value = r.json().await.unwrap();
        assert_eq!(e["error"]["details"]["field"], field, "{e}");
    }
}
