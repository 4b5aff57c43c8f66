//! The OpenAPI document: generated from the routes and types (every route of the contract,
//! nothing else; the algorithms' parameters as detect-core's table gives them; strict
//! bodies closed), and true to the server: real answers of every route validate against
//! the schemas the document gives for their status, with the headers it promises.

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::{Value, json};
use testkit::Reply;

use crate::helpers::{ALGORITHMS, TestApp, csv_source, spawn_app, training_rows};

async fn document(app: &TestApp) -> Value {
    let r = app
        .request(Method::GET, "/api/v1/openapi.json", None, None)
        .await;
    r.assert_status(200).clone()
}

/// Every operation of the contract (`docs/api.md`), as `(path, method)`.
const CONTRACT: &[(&str, &str)] = &[
    ("/api/v1/detect", "post"),
    ("/api/v1/models", "post"),
    ("/api/v1/models", "get"),
    ("/api/v1/models/{name}", "get"),
    ("/api/v1/models/{name}", "delete"),
    ("/api/v1/models/{name}/versions/{version}", "get"),
    ("/api/v1/models/{name}/versions/{version}/promote", "post"),
    ("/api/v1/models/{name}/versions/{version}/archive", "post"),
    ("/api/v1/models/{name}/versions", "post"),
    ("/api/v1/models/{name}/rollback", "post"),
    ("/api/v1/models/{name}/canary", "put"),
    ("/api/v1/models/{name}/canary", "get"),
    ("/api/v1/models/{name}/canary", "delete"),
    ("/api/v1/models/{name}/canary/promote", "post"),
    ("/api/v1/models/{name}/schedule", "put"),
    ("/api/v1/models/{name}/schedule", "get"),
    ("/api/v1/models/{name}/schedule", "delete"),
    ("/api/v1/models/{name}/predict", "post"),
    ("/api/v1/models/{name}/drift", "get"),
    ("/api/v1/batch", "post"),
    ("/api/v1/jobs", "get"),
    ("/api/v1/jobs/{job_id}", "get"),
    ("/api/v1/jobs/{job_id}", "delete"),
    ("/api/v1/jobs/{job_id}/result", "get"),
    ("/api/v1/algorithms", "get"),
    ("/api/v1/auth/keys", "post"),
    ("/api/v1/auth/keys", "get"),
    ("/api/v1/auth/keys/{id}", "delete"),
    ("/api/v1/auth/token", "post"),
    ("/api/v1/users", "post"),
    ("/api/v1/users", "get"),
    ("/api/v1/users/{id}", "delete"),
    ("/api/v1/audit", "get"),
    ("/api/v1/privacy/scan", "post"),
    ("/api/v1/privacy/anonymize", "post"),
    ("/health", "get"),
    ("/health/live", "get"),
    ("/health/ready", "get"),
    ("/metrics", "get"),
    ("/api/v1/openapi.json", "get"),
];

fn operations(doc: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if ["get", "put", "post", "delete", "patch"].contains(&method.as_str()) {
                out.insert((path.clone(), method.clone()));
            }
        }
    }
    out
}

/// Follows a `$ref` within the document.
fn resolve<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => doc
            .pointer(r.trim_start_matches('#'))
            .unwrap_or_else(|| panic!("dangling $ref {r}")),
        None => v,
    }
}

#[tokio::test]
async fn the_document_is_generated_from_the_routes_and_types() {
    let app = spawn_app().await;
    let doc = document(&app).await;
    assert_eq!(doc["openapi"], "3.1.0");

    // Exactly the contract's operations: the router and the document are one list.
    let documented = operations(&doc);
    let contract: BTreeSet<(String, String)> = CONTRACT
        .iter()
        .map(|(p, m)| (p.to_string(), m.to_string()))
        .collect();
    assert_eq!(
        documented.difference(&contract).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "documented but not in the contract list"
    );
    assert_eq!(
        contract.difference(&documented).collect::<Vec<_>>(),
        Vec::<&(String, String)>::new(),
        "in the contract but not documented"
    );

    let mut ids = BTreeSet::new();
    for (path, method) in &documented {
        let op = &doc["paths"][path][method];
        let id = op["operationId"].as_str().expect("an operationId");
        assert!(ids.insert(id.to_string()), "operationId {id} twice");
        let responses = op["responses"].as_object().unwrap();
        assert!(responses.contains_key("503"), "{method} {path}: 503");
        // Scoped operations say so, in words and as a security requirement.
        match op["security"][0]["bearer"][0].as_str() {
            Some(scope) => {
                assert!(
                    op["description"]
                        .as_str()
                        .unwrap()
                        .starts_with(&format!("Scope: `{scope}`.")),
                    "{method} {path}"
                );
                for code in ["401", "403", "429"] {
                    assert!(responses.contains_key(code), "{method} {path}: {code}");
                }
            }
            None => assert_eq!(op["security"], json!([]), "{method} {path}"),
        }
        // Every answer carries X-Request-Id.
        for (code, response) in responses {
            let response = resolve(&doc, response);
            assert!(
                response["headers"].get("X-Request-Id").is_some(),
                "{method} {path} {code}: no X-Request-Id"
            );
        }
    }
    // Retry-After where the server sends it.
    let limited = &doc["components"]["responses"]["RateLimited"];
    assert!(limited["headers"]["Retry-After"].is_object());
    assert_eq!(
        doc["components"]["headers"]["Retry-After"]["required"],
        true
    );

    // The algorithms' parameters: what GET /api/v1/algorithms (detect-core's table)
    // describes, with the same defaults, in closed objects.
    let algorithms = app.get("/api/v1/algorithms").await;
    let algorithms = algorithms.assert_status(200)["algorithms"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(algorithms.len(), ALGORITHMS.len());
    let schemas = &doc["components"]["schemas"];
    let detect = schemas["DetectRequest"]["oneOf"].as_array().unwrap();
    assert_eq!(
        detect.len(),
        2 * ALGORITHMS.len(),
        "flat and nested per algorithm"
    );
    for variant in detect {
        assert_eq!(variant["additionalProperties"], false, "{variant}");
        assert_eq!(variant["required"][0], "data", "{variant}");
    }
    for a in &algorithms {
        let name = a["name"].as_str().unwrap();
        let params = detect
            .iter()
            .find(|v| {
                v["properties"]["algorithm"]["enum"][0] == name
                    && v["properties"].get("parameters").is_some()
            })
            .unwrap_or_else(|| panic!("no nested variant for {name}"));
        let object = resolve(&doc, &params["properties"]["parameters"]);
        assert_eq!(object["additionalProperties"], false);
        let described: BTreeSet<&str> = a["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        let documented: BTreeSet<&str> = object["properties"]
            .as_object()
            .into_iter()
            .flat_map(|p| p.keys().map(String::as_str))
            .collect();
        assert_eq!(described, documented, "{name}");
        for p in a["parameters"].as_array().unwrap() {
            let schema = &object["properties"][p["name"].as_str().unwrap()];
            assert_eq!(schema["default"], p["default"], "{name}.{}", p["name"]);
        }
    }
    // `explain`: a boolean or a closed object of `top_k`, on detect, predict and batch;
    // answered as per-row arrays of named contributions.
    let explain = &schemas["Explain"]["oneOf"];
    assert_eq!(explain[0]["type"], "boolean", "{explain}");
    assert_eq!(explain[1]["type"], "object", "{explain}");
    assert_eq!(explain[1]["additionalProperties"], false, "{explain}");
    assert_eq!(
        (
            &explain[1]["properties"]["top_k"]["type"],
            &explain[1]["properties"]["top_k"]["minimum"]
        ),
        (&json!("integer"), &json!(1))
    );
    let explain_ref = json!({"$ref": "#/components/schemas/Explain"});
    for variant in detect {
        assert_eq!(variant["properties"]["explain"], explain_ref, "{variant}");
    }
    for variant in schemas["BatchRequest"]["oneOf"].as_array().unwrap() {
        assert_eq!(variant["properties"]["explain"], explain_ref, "{variant}");
    }
    let predict_explain = schemas["PredictRequest"]["properties"]["explain"].to_string();
    assert!(
        predict_explain.contains("#/components/schemas/Explain"),
        "{predict_explain}"
    );
    let explanations = &schemas["Detection"]["properties"]["explanations"];
    assert!(
        explanations
            .to_string()
            .contains("#/components/schemas/FeatureContribution"),
        "{explanations}"
    );
    let contribution = &schemas["FeatureContribution"];
    assert_eq!(contribution["required"], json!(["feature", "contribution"]));
    assert_eq!(contribution["properties"]["contribution"]["maximum"], 1.0);

    let forest = &schemas["IsolationForestParameters"]["properties"]["n_estimators"];
    assert_eq!(
        (&forest["type"], &forest["minimum"], &forest["maximum"]),
        (&json!("integer"), &json!(1), &json!(100_000))
    );
    // Bodies the server reads into `deny_unknown_fields` types are closed, and the
    // server really refuses a field the document does not list.
    for (schema, path, body) in [
        (
            "KeyCreate",
            "/api/v1/auth/keys",
            json!({"name": "k", "scopes": ["read"], "extra": 1}),
        ),
        (
            "UserCreate",
            "/api/v1/users",
            json!({"username": "u", "password": "a long enough passphrase", "scopes": ["read"], "extra": 1}),
        ),
        (
            "Login",
            "/api/v1/auth/token",
            json!({"username": "u", "password": "p", "extra": 1}),
        ),
        (
            "PrivacyRequest",
            "/api/v1/privacy/scan",
            json!({"data": {}, "extra": 1}),
        ),
        (
            "PredictRequest",
            "/api/v1/models/m/predict",
            json!({"data": [[1.0]], "extra": 1}),
        ),
        (
            "CanaryRequest",
            "/api/v1/models/m/canary",
            json!({"version": 1, "extra": 1}),
        ),
        (
            "StageChangeRequest",
            "/api/v1/models/m/rollback",
            json!({"extra": 1}),
        ),
    ] {
        assert_eq!(schemas[schema]["additionalProperties"], false, "{schema}");
        assert!(
            schemas[schema]["properties"].get("extra").is_none(),
            "{schema}"
        );
        let method = if path.ends_with("/canary") {
            Method::PUT
        } else {
            Method::POST
        };
        let r = app
            .request(method, path, Some(&app.admin_key), Some(&body))
            .await;
        r.assert_error(422, "invalid_input");
    }
    // Links for clients and stateful fuzzing.
    let train = &doc["paths"]["/api/v1/models"]["post"]["responses"];
    assert_eq!(
        train["201"]["links"]["PredictWithModel"]["operationId"],
        "predict"
    );
    assert_eq!(
        train["202"]["links"]["GetTrainingJob"]["operationId"],
        "get_job"
    );
    let job = &doc["paths"]["/api/v1/jobs/{job_id}"]["get"]["responses"]["200"];
    assert_eq!(
        job["links"]["GetJobResult"]["operationId"],
        "get_job_result"
    );
    let key = &doc["paths"]["/api/v1/auth/keys"]["post"]["responses"]["201"];
    assert_eq!(key["links"]["RevokeKey"]["operationId"], "revoke_key");
    // Every schema title is unique in the document: within a `oneOf` it is what tells two
    // variants apart, and client generators (openapi-python-client) name a class after it.
    let mut titles = BTreeSet::new();
    let mut stack = vec![&doc["components"]];
    while let Some(v) = stack.pop() {
        match v {
            Value::Object(o) => {
                if let Some(t) = o.get("title").and_then(Value::as_str) {
                    assert!(titles.insert(t.to_string()), "schema title {t:?} twice");
                }
                stack.extend(o.values());
            }
            Value::Array(a) => stack.extend(a),
            _ => {}
        }
    }
    assert!(titles.contains("batch on data_sources: score with a model"));
    // A model file is bytes, not text: clients send it as a file.
    let upload = &doc["paths"]["/api/v1/models/{name}/versions"]["post"]["requestBody"]["content"]
        ["application/octet-stream"]["schema"];
    assert_eq!(upload["format"], "binary", "{upload}");
    // Swagger UI, from assets compiled into the binary.
    let r = app
        .client
        .get(format!("{}/api/v1/docs/", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let page = r.text().await.unwrap();
    assert!(page.contains("swagger"), "{page}");
}

/// Validates real answers against the document.
struct Checker {
    doc: Value,
    checked: BTreeSet<(String, String, u16)>,
}

impl Checker {
    /// `reply` answered `method path` (the path as the document writes it): its status is
    /// documented, its JSON body valid against the schema given for that status, and it
    /// carries the headers the document says are required.
    fn check(&mut self, method: &str, path: &str, reply: &Reply) {
        let status = reply.status.as_u16();
        let op = &self.doc["paths"][path][method];
        assert!(op.is_object(), "{method} {path} is not documented");
        let response = op["responses"].get(status.to_string()).unwrap_or_else(|| {
            panic!(
                "{method} {path} answered {status}, not documented: {}",
                reply.body
            )
        });
        let response = resolve(&self.doc, response).clone();
        for (name, header) in response["headers"].as_object().into_iter().flatten() {
            let header = resolve(&self.doc, header);
            if header["required"] == true {
                assert!(
                    reply.headers.contains_key(name.as_str()),
                    "{method} {path} {status}: no {name} header"
                );
            }
        }
        let content_type = reply
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        if content_type.starts_with("application/json") {
            let schema = &response["content"]["application/json"]["schema"];
            assert!(
                schema.is_object(),
                "{method} {path} {status}: no JSON schema"
            );
            // The whole document is the root, so `#/components/...` references resolve.
            let mut root = self.doc.clone();
            root["$schema"] = json!("https://json-schema.org/draft/2020-12/schema");
            root["allOf"] = json!([schema]);
            let validator = jsonschema::validator_for(&root).expect("a valid schema");
            let errors: Vec<String> = validator
                .iter_errors(&reply.body)
                .map(|e| format!("{} at {}", e, e.instance_path()))
                .collect();
            assert!(
                errors.is_empty(),
                "{method} {path} {status}: the answer does not match the document: {errors:?}\n{}",
                reply.body
            );
        } else {
            let documented = response["content"]
                .as_object()
                .map(|c| c.keys().any(|k| content_type.starts_with(k.as_str())))
                .unwrap_or(false);
            assert!(
                documented,
                "{method} {path} {status}: content type {content_type} not documented"
            );
        }
        self.checked
            .insert((path.to_string(), method.to_string(), status));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_answers_of_every_route_match_the_document() {
    let app = spawn_app().await;
    let mut c = Checker {
        doc: document(&app).await,
        checked: BTreeSet::new(),
    };
    let admin = Some(app.admin_key.as_str());
    app.write_source("train.csv", &csv_source(200, 3));
    let call = |method: Method, path: String, body: Option<Value>| {
        let app = &app;
        async move { app.request(method, &path, admin, body.as_ref()).await }
    };

    // Detection, every algorithm.
    for algorithm in ALGORITHMS {
        let r = app
            .detect(&json!({"data": training_rows(60, 3), "algorithm": algorithm}))
            .await;
        r.assert_status(200);
        c.check("post", "/api/v1/detect", &r);
    }
    for explain in [json!(true), json!({"top_k": 2})] {
        let r = app
            .detect(&json!({"data": training_rows(30, 3), "algorithm": "ecod", "explain": explain}))
            .await;
        assert!(r.assert_status(200)["explanations"].is_array());
        c.check("post", "/api/v1/detect", &r);
    }
    let r = app
        .detect(&json!({"data": training_rows(30, 3), "explain": {"top_k": 9}}))
        .await;
    r.assert_error(422, "invalid_input");
    c.check("post", "/api/v1/detect", &r);
    let r = app.detect(&json!({"data": [[1.0, "x"]]})).await;
    c.check("post", "/api/v1/detect", &r);
    let r = app.post_raw("/api/v1/detect", "{").await;
    c.check("post", "/api/v1/detect", &r);
    let r = app
        .request(
            Method::POST,
            "/api/v1/detect",
            None,
            Some(&json!({"data": [[1.0]]})),
        )
        .await;
    c.check("post", "/api/v1/detect", &r);
    let r = call(Method::GET, "/api/v1/algorithms".into(), None).await;
    c.check("get", "/api/v1/algorithms", &r);

    // Models.
    let version = app.train_inline("m").await;
    assert_eq!(version["model_name"], "m");
    let r = app
        .train(&json!({"model_name": "m", "data": training_rows(100, 3), "n_estimators": 20, "promote": "manual"}))
        .await;
    c.check("post", "/api/v1/models", &r);
    let r = app
        .train(&json!({"model_name": "s", "training_data": "train.csv", "algorithm": "ecod"}))
        .await;
    c.check("post", "/api/v1/models", &r);
    let train_job = r.body["job_id"].as_str().unwrap().to_string();
    app.drain_jobs().await;
    let r = call(Method::GET, format!("/api/v1/jobs/{train_job}"), None).await;
    c.check("get", "/api/v1/jobs/{job_id}", &r);
    for (method, path, template) in [
        ("get", "/api/v1/models".to_string(), "/api/v1/models"),
        ("get", "/api/v1/models/m".into(), "/api/v1/models/{name}"),
        ("get", "/api/v1/models/nope".into(), "/api/v1/models/{name}"),
        (
            "get",
            "/api/v1/models/m/versions/1".into(),
            "/api/v1/models/{name}/versions/{version}",
        ),
        (
            "get",
            "/api/v1/models/m/versions/0".into(),
            "/api/v1/models/{name}/versions/{version}",
        ),
        (
            "get",
            "/api/v1/models/m/drift".into(),
            "/api/v1/models/{name}/drift",
        ),
    ] {
        let r = call(Method::GET, path, None).await;
        c.check(method, template, &r);
    }
    let r = app
        .predict("m", &json!({"data": training_rows(10, 3)}))
        .await;
    r.assert_status(200);
    c.check("post", "/api/v1/models/{name}/predict", &r);
    let r = app
        .predict("m", &json!({"data": training_rows(10, 3), "explain": true}))
        .await;
    assert!(r.assert_status(200)["explanations"].is_array());
    c.check("post", "/api/v1/models/{name}/predict", &r);
    let r = app.predict("m", &json!({"data": [[1.0]]})).await;
    c.check("post", "/api/v1/models/{name}/predict", &r);
    let r = app.predict("nope", &json!({"data": [[1.0]]})).await;
    c.check("post", "/api/v1/models/{name}/predict", &r);

    // Lifecycle: version 2 is staging.
    let r = call(
        Method::PUT,
        "/api/v1/models/m/canary".into(),
        Some(json!({"version": 2, "traffic_percent": 50})),
    )
    .await;
    r.assert_status(200);
    c.check("put", "/api/v1/models/{name}/canary", &r);
    let r = call(Method::GET, "/api/v1/models/m/canary".into(), None).await;
    c.check("get", "/api/v1/models/{name}/canary", &r);
    let r = call(Method::DELETE, "/api/v1/models/m/canary".into(), None).await;
    c.check("delete", "/api/v1/models/{name}/canary", &r);
    let r = call(Method::POST, "/api/v1/models/m/canary/promote".into(), None).await;
    c.check("post", "/api/v1/models/{name}/canary/promote", &r);
    let r = call(
        Method::POST,
        "/api/v1/models/m/versions/2/promote".into(),
        Some(json!({"reason": "better"})),
    )
    .await;
    r.assert_status(200);
    c.check(
        "post",
        "/api/v1/models/{name}/versions/{version}/promote",
        &r,
    );
    let r = call(Method::POST, "/api/v1/models/m/rollback".into(), None).await;
    c.check("post", "/api/v1/models/{name}/rollback", &r);
    let r = call(
        Method::POST,
        "/api/v1/models/m/versions/2/archive".into(),
        None,
    )
    .await;
    c.check(
        "post",
        "/api/v1/models/{name}/versions/{version}/archive",
        &r,
    );
    let fitted = detect_core::fit(
        &detect_core::DetectorConfig::from_json("ecod", &serde_json::Map::new(), &Value::Null)
            .unwrap(),
        ndarray::Array2::from_shape_fn((30, 2), |(i, j)| ((i * 3 + j * 7) % 11) as f64).view(),
    )
    .unwrap();
    let r = app
        .client
        .post(format!("{}/api/v1/models/u/versions", app.address))
        .bearer_auth(&app.admin_key)
        .header("content-type", "application/octet-stream")
        .body(fitted.model.to_bytes())
        .send()
        .await
        .unwrap();
    let r = Reply::read(r).await.unwrap();
    r.assert_status(201);
    c.check("post", "/api/v1/models/{name}/versions", &r);
    let r = call(Method::PUT, "/api/v1/models/s/schedule".into(), Some(json!({"cron": "0 3 * * *", "training_data": "train.csv", "algorithm": "hbos", "parameters": {"n_bins": 5}}))).await;
    r.assert_status(200);
    c.check("put", "/api/v1/models/{name}/schedule", &r);
    let r = call(Method::GET, "/api/v1/models/s/schedule".into(), None).await;
    c.check("get", "/api/v1/models/{name}/schedule", &r);
    let r = call(Method::DELETE, "/api/v1/models/s/schedule".into(), None).await;
    c.check("delete", "/api/v1/models/{name}/schedule", &r);

    // Batch and jobs.
    let r = app
        .batch(&json!({"data_source": "train.csv", "model_name": "m", "output_format": "csv"}))
        .await;
    r.assert_status(202);
    c.check("post", "/api/v1/batch", &r);
    let csv_job = r.body["job_id"].as_str().unwrap().to_string();
    let r = app
        .request(
            Method::POST,
            "/api/v1/batch",
            admin,
            Some(&json!({"data_sources": ["train.csv"], "algorithm": "knn", "n_neighbors": 3})),
        )
        .await;
    r.assert_status(202);
    c.check("post", "/api/v1/batch", &r);
    let json_job = r.body["job_id"].as_str().unwrap().to_string();
    let r = call(Method::DELETE, format!("/api/v1/jobs/{json_job}"), None).await;
    c.check("delete", "/api/v1/jobs/{job_id}", &r);
    let r = app
        .batch(&json!({"data_source": "train.csv", "algorithm": "copod"}))
        .await;
    let json_job = r.body["job_id"].as_str().unwrap().to_string();
    app.drain_jobs().await;
    for id in [&csv_job, &json_job] {
        let r = call(Method::GET, format!("/api/v1/jobs/{id}"), None).await;
        r.assert_status(200);
        c.check("get", "/api/v1/jobs/{job_id}", &r);
        let r = call(Method::GET, format!("/api/v1/jobs/{id}/result"), None).await;
        r.assert_status(200);
        c.check("get", "/api/v1/jobs/{job_id}/result", &r);
    }
    let r = call(Method::DELETE, format!("/api/v1/jobs/{json_job}"), None).await;
    c.check("delete", "/api/v1/jobs/{job_id}", &r);
    let r = call(Method::GET, "/api/v1/jobs".into(), None).await;
    c.check("get", "/api/v1/jobs", &r);
    let r = call(Method::GET, "/api/v1/jobs?limit=0".into(), None).await;
    c.check("get", "/api/v1/jobs", &r);
    let r = call(Method::GET, "/api/v1/jobs/nope".into(), None).await;
    c.check("get", "/api/v1/jobs/{job_id}", &r);

    // Keys, users, tokens, audit.
    let r = call(
        Method::POST,
        "/api/v1/auth/keys".into(),
        Some(json!({"name": "ci", "scopes": ["read"], "rate_limit_per_minute": 100})),
    )
    .await;
    r.assert_status(201);
    c.check("post", "/api/v1/auth/keys", &r);
    let key_id = r.body["id"].as_str().unwrap().to_string();
    let read_key = r.body["key"].as_str().unwrap().to_string();
    let r = call(Method::GET, "/api/v1/auth/keys".into(), None).await;
    c.check("get", "/api/v1/auth/keys", &r);
    let r = app
        .request(Method::GET, "/api/v1/auth/keys", Some(&read_key), None)
        .await;
    r.assert_error(403, "forbidden");
    c.check("get", "/api/v1/auth/keys", &r);
    let r = call(Method::DELETE, format!("/api/v1/auth/keys/{key_id}"), None).await;
    c.check("delete", "/api/v1/auth/keys/{id}", &r);
    let r = app
        .request(Method::GET, "/api/v1/auth/keys", Some(&read_key), None)
        .await;
    r.assert_error(401, "unauthorized");
    c.check("get", "/api/v1/auth/keys", &r);
    let r = call(
        Method::POST,
        "/api/v1/users".into(),
        Some(
            json!({"username": "ana", "password": "a long enough passphrase", "scopes": ["read"]}),
        ),
    )
    .await;
    r.assert_status(201);
    c.check("post", "/api/v1/users", &r);
    let user_id = r.body["id"].as_str().unwrap().to_string();
    let r = app
        .request(
            Method::POST,
            "/api/v1/auth/token",
            None,
            Some(&json!({"username": "ana", "password": "a long enough passphrase"})),
        )
        .await;
    r.assert_status(200);
    c.check("post", "/api/v1/auth/token", &r);
    let r = app
        .request(
            Method::POST,
            "/api/v1/auth/token",
            None,
            Some(&json!({"username": "ana", "password": "wrong wrong wrong"})),
        )
        .await;
    c.check("post", "/api/v1/auth/token", &r);
    let r = call(Method::GET, "/api/v1/users".into(), None).await;
    c.check("get", "/api/v1/users", &r);
    let r = call(Method::DELETE, format!("/api/v1/users/{user_id}"), None).await;
    c.check("delete", "/api/v1/users/{id}", &r);
    let r = call(Method::GET, "/api/v1/audit?limit=5".into(), None).await;
    c.check("get", "/api/v1/audit", &r);

    // Privacy.
    let doc = json!({"data": {"email": "a@example.com", "note": "call 555-123-4567"}});
    let r = call(
        Method::POST,
        "/api/v1/privacy/scan".into(),
        Some(doc.clone()),
    )
    .await;
    c.check("post", "/api/v1/privacy/scan", &r);
    let r = call(Method::POST, "/api/v1/privacy/anonymize".into(), Some(doc)).await;
    c.check("post", "/api/v1/privacy/anonymize", &r);

    // Health, metrics, the document.
    for path in [
        "/health",
        "/health/live",
        "/health/ready",
        "/metrics",
        "/api/v1/openapi.json",
    ] {
        let r = app.request(Method::GET, path, None, None).await;
        c.check("get", path, &r);
    }
    let r = call(Method::DELETE, "/api/v1/models/m".into(), None).await;
    c.check("delete", "/api/v1/models/{name}", &r);

    // Every operation was answered at least once.
    let answered: BTreeSet<(String, String)> = c
        .checked
        .iter()
        .map(|(p, m, _)| (p.clone(), m.clone()))
        .collect();
    for (path, method) in CONTRACT {
        assert!(
            answered.contains(&(path.to_string(), method.to_string())),
            "{method} {path} was not exercised"
        );
    }
}
