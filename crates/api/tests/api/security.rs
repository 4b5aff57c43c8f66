//! Security, tried from outside as an attacker would: every route without credentials and
//! with each missing scope, other tenants' resources, revoked and expired keys, forged and
//! tampered tokens, disabled users, login brute force, rate limits (one instance, and two
//! instances on one Redis), revocation across instances, and the audit log.

use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use testkit::{Api, RedisKind, eventually, with_postgres_and};

use crate::helpers::{Reply, TestApp, csv_source, spawn_app, spawn_app_with, training_rows};
use crate::scale_out::two_instances;

const PASSWORD: &str = "a long enough passphrase";

/// The routes the server documents as needing a scope, with that scope, from its own
/// OpenAPI document (so a route added later is covered without editing this test).
async fn scoped_routes(app: &TestApp) -> Vec<(Method, String, String)> {
    let doc = app
        .request(Method::GET, "/api/v1/openapi.json", None, None)
        .await
        .body;
    let mut routes = Vec::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for (method, op) in ops.as_object().unwrap() {
            let Some(desc) = op.get("description").and_then(Value::as_str) else {
                continue;
            };
            let Some(scope) = desc
                .strip_prefix("Scope: `")
                .and_then(|r| r.split('`').next())
            else {
                continue;
            };
            let concrete = path
                .replace("{name}", "m")
                .replace("{version}", "1")
                .replace("{job_id}", "00000000-0000-0000-0000-000000000000")
                .replace("{id}", "00000000-0000-0000-0000-000000000000");
            routes.push((
                Method::from_bytes(method.to_uppercase().as_bytes()).unwrap(),
                concrete,
                scope.to_string(),
            ));
        }
    }
    routes
}

/// A key with `scopes` in `tenant`; returns (key, id).
async fn key_in(
    app: &TestApp,
    tenant: &str,
    scopes: &[&str],
    limit: Option<i64>,
) -> (String, String) {
    let b = app
        .create_key_with(
            &json!({"name": "t", "scopes": scopes, "tenant": tenant, "rate_limit_per_minute": limit}),
        )
        .await;
    (
        b["key"].as_str().unwrap().to_string(),
        b["id"].as_str().unwrap().to_string(),
    )
}

/// Creates a user as `admin_key` and returns its id.
async fn create_user(app: &TestApp, admin_key: &str, username: &str, scopes: &[&str]) -> String {
    let r = app
        .request(
            Method::POST,
            "/api/v1/users",
            Some(admin_key),
            Some(&json!({"username": username, "password": PASSWORD, "scopes": scopes})),
        )
        .await;
    r.assert_status(201)["id"].as_str().unwrap().to_string()
}

async fn login(app: &TestApp, username: &str, password: &str) -> Reply {
    app.request(
        Method::POST,
        "/api/v1/auth/token",
        None,
        Some(&json!({"username": username, "password": password})),
    )
    .await
}

async fn token(app: &TestApp, username: &str) -> String {
    let r = login(app, username, PASSWORD).await;
    let b = r.assert_status(200);
    assert_eq!(b["token_type"], "bearer");
    b["access_token"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn every_scoped_route_refuses_missing_credentials_and_each_missing_scope() {
    let app = spawn_app().await;
    let routes = scoped_routes(&app).await;
    assert!(
        routes.len() >= 20,
        "the OpenAPI document lists {} scoped routes",
        routes.len()
    );
    let (read, _) = key_in(&app, "default", &["read"], None).await;
    let (write, _) = key_in(&app, "default", &["write"], None).await;
    let (read_write, _) = key_in(&app, "default", &["read", "write"], None).await;
    create_user(&app, &app.admin_key, "reader", &["read"]).await;
    let reader_token = token(&app, "reader").await;
    for (method, path, scope) in &routes {
        let body = json!({});
        for bad in [None, Some("pk_0000"), Some("not-a-token"), Some("a.b.c")] {
            let r = app.request(method.clone(), path, bad, Some(&body)).await;
            assert_eq!(r.status, 401, "{method} {path} with {bad:?}: {}", r.body);
            r.assert_error(401, "unauthorized");
            assert_eq!(r.headers["www-authenticate"], "Bearer");
        }
        let lacking: &[&str] = match scope.as_str() {
            "read" => &[&write],
            "write" => &[&read, &reader_token],
            "admin" => &[&read, &write, &read_write, &reader_token],
            other => panic!("{method} {path}: unknown scope {other}"),
        };
        for key in lacking {
            let r = app
                .request(method.clone(), path, Some(key), Some(&body))
                .await;
            assert_eq!(r.status, 403, "{method} {path} (needs {scope}): {}", r.body);
            r.assert_error(403, "forbidden");
            assert!(r.message().contains(scope.as_str()), "{}", r.message());
        }
    }
}

#[tokio::test]
async fn another_tenants_models_jobs_keys_users_and_audit_rows_are_not_found() {
    let app = spawn_app().await;
    let (acme, acme_key_id) = key_in(&app, "acme", &["admin"], None).await;
    let as_acme = |m: Method, p: &str, b: Option<Value>| {
        let acme = acme.clone();
        let p = p.to_string();
        let app = &app;
        async move { app.request(m, &p, Some(&acme), b.as_ref()).await }
    };
    as_acme(
        Method::POST,
        "/api/v1/models",
        Some(json!({"model_name": "m", "n_estimators": 10, "data": training_rows(50, 3)})),
    )
    .await
    .assert_status(201);
    app.write_source("d.csv", &csv_source(20, 3));
    let job = as_acme(
        Method::POST,
        "/api/v1/batch",
        Some(json!({"data_source": "d.csv", "model_name": "m"})),
    )
    .await;
    let job_id = job.assert_status(202)["job_id"]
        .as_str()
        .unwrap()
        .to_string();
    let acme_user = create_user(&app, &acme, "acme-ops", &["read"]).await;

    // The default tenant's admin sees none of it.
    for (m, p) in [
        (Method::GET, "/api/v1/models/m".to_string()),
        (Method::GET, "/api/v1/models/m/versions/1".to_string()),
        (Method::POST, "/api/v1/models/m/predict".to_string()),
        (Method::DELETE, "/api/v1/models/m".to_string()),
        (Method::GET, format!("/api/v1/jobs/{job_id}")),
        (Method::GET, format!("/api/v1/jobs/{job_id}/result")),
        (Method::DELETE, format!("/api/v1/jobs/{job_id}")),
        (Method::DELETE, format!("/api/v1/users/{acme_user}")),
    ] {
        let body = json!({"data": [[1.0, 2.0, 3.0]]});
        let r = app
            .request(m.clone(), &p, Some(&app.admin_key), Some(&body))
            .await;
        assert_eq!(r.status, 404, "{m} {p}: {}", r.body);
        r.assert_error(404, "not_found");
    }
    let listed = app.get("/api/v1/models").await.body.to_string()
        + &app.get("/api/v1/jobs").await.body.to_string()
        + &app.get("/api/v1/auth/keys").await.body.to_string()
        + &app.get("/api/v1/users").await.body.to_string();
    assert!(
        !listed.contains(&job_id) && !listed.contains(&acme_key_id) && !listed.contains("acme")
    );

    // Names repeat across tenants.
    app.train_inline("m").await;
    // Each tenant's audit log holds its own rows only.
    let acme_rows = wait_for_audit(&app, &acme, "action=POST%20/api/v1/batch", 1).await;
    assert!(acme_rows.iter().all(|e| e["tenant"] == "acme"));
    let default_rows = app.get("/api/v1/audit?limit=500").await;
    let default_rows = default_rows.assert_status(200)["entries"]
        .as_array()
        .unwrap()
        .clone();
    assert!(!default_rows.is_empty());
    assert!(
        default_rows.iter().all(|e| e["tenant"] == "default"),
        "{default_rows:?}"
    );
    // Acme's admin cannot mint credentials in another tenant; the operator's admin can.
    for (path, body) in [
        (
            "/api/v1/auth/keys",
            json!({"name": "x", "scopes": ["admin"], "tenant": "default"}),
        ),
        (
            "/api/v1/users",
            json!({"username": "mallory", "password": PASSWORD, "scopes": ["admin"], "tenant": "default"}),
        ),
    ] {
        as_acme(Method::POST, path, Some(body))
            .await
            .assert_error(403, "forbidden");
    }
    // And acme's key and user still work: nothing was deleted by the 404s.
    as_acme(Method::GET, "/api/v1/models/m", None)
        .await
        .assert_status(200);
    token(&app, "acme-ops").await;
}

#[tokio::test]
async fn the_operator_lists_revokes_and_audits_keys_of_other_tenants_while_tenant_admins_stay_home()
{
    let app = spawn_app().await;
    let (b_admin, _) = key_in(&app, "tenant-b", &["admin"], None).await;
    let (b_reader, b_reader_id) = key_in(&app, "tenant-b", &["read"], None).await;
    let (_, default_reader_id) = key_in(&app, "default", &["read"], None).await;

    // The operator lists the tenant's keys by name.
    let listed = app.get("/api/v1/auth/keys?tenant=tenant-b").await;
    let keys = listed.assert_status(200)["keys"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(keys.len(), 2, "{keys:?}");
    assert!(keys.iter().all(|k| k["tenant"] == "tenant-b"), "{keys:?}");
    assert!(keys.iter().any(|k| k["id"] == b_reader_id.as_str()));

    // ... revokes one by its id, and the response names the tenant.
    let models = |key: &str| {
        let key = key.to_string();
        let app = &app;
        async move {
            app.request(Method::GET, "/api/v1/models", Some(&key), None)
                .await
        }
    };
    models(&b_reader).await.assert_status(200);
    let revoked = app
        .delete(&format!("/api/v1/auth/keys/{b_reader_id}"))
        .await;
    let revoked = revoked.assert_status(200);
    assert_eq!(revoked["tenant"], "tenant-b", "{revoked}");
    assert_eq!(revoked["revoked"], true);
    models(&b_reader).await.assert_error(401, "unauthorized");

    // ... and finds the revocation in the tenant's audit log, as the tenant's admins do.
    let action = "action=DELETE%20/api/v1/auth/keys/%7Bid%7D";
    for (key, query) in [
        (app.admin_key.as_str(), format!("tenant=tenant-b&{action}")),
        (b_admin.as_str(), action.to_string()),
    ] {
        let rows = wait_for_audit(&app, key, &query, 1).await;
        assert_eq!(rows[0]["tenant"], "tenant-b", "{rows:?}");
        assert_eq!(rows[0]["outcome"], 200, "{rows:?}");
    }

    // An unknown id is not found, wherever the operator looks.
    app.delete("/api/v1/auth/keys/no-such-key")
        .await
        .assert_error(404, "not_found");

    // A tenant's admins stay in their tenant: naming another is forbidden, and another
    // tenant's key is not found (nor revoked).
    for path in [
        "/api/v1/auth/keys?tenant=default",
        "/api/v1/audit?tenant=default",
    ] {
        app.request(Method::GET, path, Some(&b_admin), None)
            .await
            .assert_error(403, "forbidden");
    }
    let path = format!("/api/v1/auth/keys/{default_reader_id}");
    app.request(Method::DELETE, &path, Some(&b_admin), None)
        .await
        .assert_error(404, "not_found");
    let own = app
        .request(Method::GET, "/api/v1/auth/keys", Some(&b_admin), None)
        .await;
    let own = own.assert_status(200)["keys"].as_array().unwrap().clone();
    assert!(own.iter().all(|k| k["tenant"] == "tenant-b"), "{own:?}");
    let defaults = app.get("/api/v1/auth/keys").await;
    let defaults = defaults.assert_status(200)["keys"].to_string();
    assert!(defaults.contains(&default_reader_id) && !defaults.contains("tenant-b"));
}

#[tokio::test]
async fn revoked_and_expired_keys_are_unauthorized() {
    let app = spawn_app().await;
    let expired = app
        .create_key_with(
            &json!({"name": "old", "scopes": ["read"], "expires_at": "2020-01-01T00:00:00Z"}),
        )
        .await;
    let expired = expired["key"].as_str().unwrap().to_string();
    app.request(Method::GET, "/api/v1/models", Some(&expired), None)
        .await
        .assert_error(401, "unauthorized");
    let (key, id) = key_in(&app, "default", &["read"], None).await;
    app.request(Method::GET, "/api/v1/models", Some(&key), None)
        .await
        .assert_status(200);
    app.delete(&format!("/api/v1/auth/keys/{id}"))
        .await
        .assert_status(200);
    let r = app
        .request(Method::GET, "/api/v1/models", Some(&key), None)
        .await;
    r.assert_error(401, "unauthorized");
    // The failure is audited under the key's own tenant, naming the key.
    let rows = wait_for_audit(
        &app,
        &app.admin_key,
        &format!("actor=key:{id}&outcome=401"),
        1,
    )
    .await;
    assert_eq!(rows[0]["tenant"], "default");
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

fn claims_of(token: &str) -> Value {
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

#[tokio::test]
async fn forged_tampered_unsigned_and_expired_tokens_are_unauthorized() {
    let app = spawn_app_with(|s| s.security.jwt_ttl = Duration::from_secs(2)).await;
    create_user(&app, &app.admin_key, "alice", &["read"]).await;
    let good = token(&app, "alice").await;
    let claims = claims_of(&good);
    for field in ["sub", "tenant", "scopes", "iat", "exp", "jti"] {
        assert!(!claims[field].is_null(), "claim {field} in {claims}");
    }
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        2
    );
    app.request(Method::GET, "/api/v1/models", Some(&good), None)
        .await
        .assert_status(200);

    let parts: Vec<&str> = good.split('.').collect();
    let mut escalated = claims.clone();
    escalated["scopes"] = json!(["read", "write", "admin"]);
    let hs256 = json!({"alg": "HS256", "typ": "JWT"});
    // The escalated claims signed with `algorithm` and a key that is not the server's.
    let signed_by_a_guess = |algorithm| {
        let key = jsonwebtoken::EncodingKey::from_secret(b"guessed secret");
        let header = jsonwebtoken::Header::new(algorithm);
        jsonwebtoken::encode(&header, &escalated, &key).unwrap()
    };
    let forged: Vec<(&str, String)> = vec![
        // Payload changed, signature kept.
        (
            "tampered",
            format!("{}.{}.{}", parts[0], b64(&escalated), parts[2]),
        ),
        // No signature at all.
        (
            "alg none",
            format!(
                "{}.{}.",
                b64(&json!({"alg": "none", "typ": "JWT"})),
                b64(&escalated)
            ),
        ),
        (
            "alg None",
            format!("{}.{}.", b64(&json!({"alg": "None"})), b64(&escalated)),
        ),
        // Signed, but by someone without our key.
        (
            "wrong key",
            signed_by_a_guess(jsonwebtoken::Algorithm::HS256),
        ),
        // Another algorithm of the family.
        ("HS512", signed_by_a_guess(jsonwebtoken::Algorithm::HS512)),
        (
            "header swapped",
            format!(
                "{}.{}.{}",
                b64(&json!({"alg": "HS512", "typ": "JWT"})),
                parts[1],
                parts[2]
            ),
        ),
        (
            "garbage signature",
            format!("{}.{}.AAAA", b64(&hs256), parts[1]),
        ),
    ];
    for (what, token) in &forged {
        let r = app
            .request(Method::GET, "/api/v1/auth/keys", Some(token), None)
            .await;
        assert_eq!(r.status, 401, "{what}: {}", r.body);
        r.assert_error(401, "unauthorized");
        let r = app
            .request(Method::GET, "/api/v1/models", Some(token), None)
            .await;
        assert_eq!(r.status, 401, "{what}");
    }
    // The genuine token is read-only: it cannot reach admin routes.
    app.request(Method::GET, "/api/v1/auth/keys", Some(&good), None)
        .await
        .assert_error(403, "forbidden");
    // Expired (no leeway): the token's lifetime is time that has to pass.
    tokio::time::sleep(Duration::from_millis(3100)).await;
    let r = app
        .request(Method::GET, "/api/v1/models", Some(&good), None)
        .await;
    r.assert_error(401, "unauthorized");
}

#[tokio::test]
async fn a_disabled_users_tokens_stop_working_at_once() {
    let app = spawn_app().await;
    let id = create_user(&app, &app.admin_key, "bob", &["read", "write"]).await;
    let t = token(&app, "bob").await;
    app.request(Method::GET, "/api/v1/models", Some(&t), None)
        .await
        .assert_status(200);
    let users = app.get("/api/v1/users").await;
    let listed = users.assert_status(200).to_string();
    assert!(listed.contains("\"bob\"") && !listed.contains(PASSWORD) && !listed.contains("argon2"));
    app.delete(&format!("/api/v1/users/{id}"))
        .await
        .assert_status(200);
    app.request(Method::GET, "/api/v1/models", Some(&t), None)
        .await
        .assert_error(401, "unauthorized");
    login(&app, "bob", PASSWORD)
        .await
        .assert_error(401, "unauthorized");
    let users = app.get("/api/v1/users").await;
    assert_eq!(users.body["users"][0]["disabled"], true);
}

#[tokio::test]
async fn users_need_a_valid_name_a_long_enough_password_and_a_free_username() {
    let app = spawn_app().await;
    for (body, field) in [
        (
            json!({"username": "x", "password": "short", "scopes": ["read"]}),
            "password",
        ),
        (
            json!({"username": "x", "password": "p".repeat(129), "scopes": ["read"]}),
            "password",
        ),
        (
            json!({"username": "bad name", "password": PASSWORD, "scopes": ["read"]}),
            "username",
        ),
        (
            json!({"username": "", "password": PASSWORD, "scopes": ["read"]}),
            "username",
        ),
        (
            json!({"username": "x", "password": PASSWORD, "scopes": ["root"]}),
            "scopes",
        ),
    ] {
        let r = app.post("/api/v1/users", &body).await;
        assert_eq!(
            r.assert_error(422, "invalid_input")["details"]["field"],
            field,
            "{body}"
        );
    }
    create_user(&app, &app.admin_key, "carol", &["read"]).await;
    let (acme, _) = key_in(&app, "acme", &["admin"], None).await;
    let r = app
        .request(
            Method::POST,
            "/api/v1/users",
            Some(&acme),
            Some(&json!({"username": "carol", "password": PASSWORD, "scopes": ["read"]})),
        )
        .await;
    r.assert_error(409, "conflict");
}

#[tokio::test]
async fn login_brute_force_is_limited_per_username_then_per_address() {
    let app = spawn_app_with(|s| {
        s.security.login_rate_limit_per_minute = 5;
        s.security.login_ip_rate_limit_per_minute = 8;
    })
    .await;
    create_user(&app, &app.admin_key, "dave", &["read"]).await;
    for i in 0..5 {
        let r = login(&app, "dave", &format!("wrong guess number {i}")).await;
        r.assert_error(401, "unauthorized");
        assert_eq!(r.message(), "invalid username or password");
    }
    for password in ["wrong guess number 5", PASSWORD] {
        let r = login(&app, "dave", password).await;
        r.assert_error(429, "rate_limited");
        let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
        assert!((1..=60).contains(&retry), "{retry}");
    }
    // Other usernames from the same address: the address has 5 attempts counted, 3 left.
    for name in ["erin", "frank", "grace"] {
        login(&app, name, PASSWORD)
            .await
            .assert_error(401, "unauthorized");
    }
    login(&app, "heidi", PASSWORD)
        .await
        .assert_error(429, "rate_limited");
    let metrics = app
        .request(Method::GET, "/metrics", None, None)
        .await
        .body
        .to_string();
    assert!(
        metrics.contains("pynomaly_rate_limited_total 3"),
        "{metrics}"
    );
    // Every attempt is audited; the known user's under its tenant and name.
    let rows = wait_for_audit(
        &app,
        &app.admin_key,
        "actor=user:dave&action=POST%20/api/v1/auth/token",
        7,
    )
    .await;
    let outcomes: Vec<i64> = rows
        .iter()
        .map(|e| e["outcome"].as_i64().unwrap())
        .collect();
    assert_eq!(
        outcomes.iter().filter(|&&o| o == 429).count(),
        2,
        "{outcomes:?}"
    );
}

#[tokio::test]
async fn an_unknown_username_costs_about_what_a_wrong_password_costs() {
    // Timing, but with a factor-of-three margin: without the dummy hash an unknown
    // username answers in well under a millisecond, a wrong password in tens of them.
    let app = spawn_app_with(|s| {
        s.security.login_rate_limit_per_minute = 1000;
        s.security.login_ip_rate_limit_per_minute = 1000;
    })
    .await;
    create_user(&app, &app.admin_key, "ivan", &["read"]).await;
    login(&app, "warm-up", "x").await;
    let mut wrong = Vec::new();
    let mut unknown = Vec::new();
    for i in 0..5 {
        let t = Instant::now();
        login(&app, "ivan", "not the password")
            .await
            .assert_error(401, "unauthorized");
        wrong.push(t.elapsed());
        let t = Instant::now();
        login(&app, &format!("nobody{i}"), "not the password")
            .await
            .assert_error(401, "unauthorized");
        unknown.push(t.elapsed());
    }
    wrong.sort();
    unknown.sort();
    let ratio = unknown[2].as_secs_f64() / wrong[2].as_secs_f64();
    assert!(
        (0.33..3.0).contains(&ratio),
        "median unknown {:?} vs wrong password {:?}",
        unknown[2],
        wrong[2]
    );
}

#[tokio::test]
async fn a_key_over_its_limit_gets_429_with_retry_after_and_a_limit_of_zero_is_none() {
    // The default applies to the admin key too: it makes 3 calls below.
    let app = spawn_app_with(|s| s.security.rate_limit_per_minute = 4).await;
    let (limited, _) = key_in(&app, "default", &["read"], Some(3)).await;
    for _ in 0..3 {
        app.request(Method::GET, "/api/v1/algorithms", Some(&limited), None)
            .await
            .assert_status(200);
    }
    let r = app
        .request(Method::GET, "/api/v1/algorithms", Some(&limited), None)
        .await;
    let e = r.assert_error(429, "rate_limited");
    let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((15..=20).contains(&retry), "one request per 20 s: {retry}");
    assert_eq!(e["details"]["retry_after_s"], retry);
    // The limit is per key: another key is not affected.
    let (other, _) = key_in(&app, "default", &["read"], Some(3)).await;
    app.request(Method::GET, "/api/v1/algorithms", Some(&other), None)
        .await
        .assert_status(200);
    // Users get the default limit (4 per minute here).
    create_user(&app, &app.admin_key, "judy", &["read"]).await;
    let t = token(&app, "judy").await;
    for _ in 0..4 {
        app.request(Method::GET, "/api/v1/models", Some(&t), None)
            .await
            .assert_status(200);
    }
    app.request(Method::GET, "/api/v1/models", Some(&t), None)
        .await
        .assert_error(429, "rate_limited");

    // Default 0: a key created without a limit has none.
    let unlimited = spawn_app_with(|s| s.security.rate_limit_per_minute = 0).await;
    for _ in 0..100 {
        unlimited
            .request(
                Method::GET,
                "/api/v1/algorithms",
                Some(&unlimited.admin_key),
                None,
            )
            .await
            .assert_status(200);
    }
}

/// Polls the audit log (as `key`) until `query` matches at least `n` rows (rows are
/// written in batches, after the response).
async fn wait_for_audit(app: &TestApp, key: &str, query: &str, n: usize) -> Vec<Value> {
    let what = format!("the audit log has {n} rows for {query}");
    eventually(&what, Duration::from_secs(5), async || {
        let path = format!("/api/v1/audit?{query}&limit=500");
        let r = app.request(Method::GET, &path, Some(key), None).await;
        let rows = r.assert_status(200)["entries"].as_array().unwrap().clone();
        if rows.len() >= n {
            Ok(rows)
        } else {
            Err(format!("{rows:?}"))
        }
    })
    .await
}

#[tokio::test]
async fn writes_admin_actions_and_failures_are_audited_and_the_log_cannot_be_changed() {
    let app = spawn_app().await;
    let keys = app.get("/api/v1/auth/keys").await;
    let admin_id = keys.body["keys"][0]["id"].as_str().unwrap().to_string();
    let (reader, reader_id) = key_in(&app, "default", &["read"], None).await;
    let started = chrono::Utc::now();

    // A write, with the client's request id.
    let resp = app
        .client
        .post(format!("{}/api/v1/models", app.address))
        .bearer_auth(&app.admin_key)
        .header("x-request-id", "audit-test-train-1")
        .json(&json!({"model_name": "audited", "n_estimators": 10, "data": training_rows(50, 3)}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::CREATED);
    // A read that is not audited, a 403, a 401 and a 401 from an anonymous caller.
    app.predict("audited", &json!({"data": [[0.1, 0.2, 0.3]]}))
        .await
        .assert_status(200);
    app.request(
        Method::DELETE,
        "/api/v1/models/audited",
        Some(&reader),
        None,
    )
    .await
    .assert_error(403, "forbidden");
    app.request(Method::GET, "/api/v1/models", Some("pk_forged"), None)
        .await
        .assert_error(401, "unauthorized");

    let rows = wait_for_audit(&app, &app.admin_key, "action=POST%20/api/v1/models", 1).await;
    let train = &rows[0];
    assert_eq!(train["actor"], format!("key:{admin_id}"));
    assert_eq!(train["tenant"], "default");
    assert_eq!(train["resource"], "/api/v1/models");
    assert_eq!(train["outcome"], 201);
    assert_eq!(train["request_id"], "audit-test-train-1");
    assert_eq!(train["client_addr"], "127.0.0.1");
    let at: chrono::DateTime<chrono::Utc> = train["created_at"].as_str().unwrap().parse().unwrap();
    assert!(at >= started - chrono::Duration::seconds(1));

    let denied = wait_for_audit(&app, &app.admin_key, &format!("actor=key:{reader_id}"), 1).await;
    assert_eq!(denied[0]["outcome"], 403);
    assert_eq!(denied[0]["action"], "DELETE /api/v1/models/{name}");
    assert_eq!(denied[0]["resource"], "/api/v1/models/audited");
    let anonymous = wait_for_audit(&app, &app.admin_key, "outcome=401", 1).await;
    assert_eq!(anonymous[0]["actor"], "anonymous");
    assert_eq!(anonymous[0]["tenant"], "default");
    // Admin reads are audited; predict (scope read) is not.
    wait_for_audit(&app, &app.admin_key, "action=GET%20/api/v1/auth/keys", 1).await;
    let all = wait_for_audit(&app, &app.admin_key, "", 4).await;
    assert!(
        !all.iter()
            .any(|e| e["action"].as_str().unwrap().contains("predict")),
        "{all:?}"
    );
    // Time filters: nothing before the test started, nothing in the future.
    let since = format!(
        "since={}",
        urlencode(&(started - chrono::Duration::hours(1)).to_rfc3339())
    );
    let until = format!(
        "until={}",
        urlencode(&(started - chrono::Duration::minutes(30)).to_rfc3339())
    );
    let r = app.get(&format!("/api/v1/audit?{since}&{until}")).await;
    assert_eq!(r.assert_status(200)["total"], 0);
    let r = app.get("/api/v1/audit?limit=1&offset=1").await;
    assert_eq!(r.body["entries"].as_array().unwrap().len(), 1);
    app.assert_errors(&[
        (
            Method::GET,
            "/api/v1/audit?outcome=abc",
            422,
            "invalid_input",
        ),
        (Method::GET, "/api/v1/audit?limit=0", 422, "invalid_input"),
    ])
    .await;

    // Append-only for the API.
    for m in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
        app.request(m, "/api/v1/audit", Some(&app.admin_key), Some(&json!({})))
            .await
            .assert_error(405, "method_not_allowed");
    }
    let id = train["id"].as_i64().unwrap();
    for m in [Method::PUT, Method::PATCH, Method::DELETE] {
        let r = app
            .request(
                m,
                &format!("/api/v1/audit/{id}"),
                Some(&app.admin_key),
                Some(&json!({})),
            )
            .await;
        assert!(r.status == 404 || r.status == 405, "{}", r.status);
    }
    app.request(Method::GET, "/api/v1/audit", Some(&reader), None)
        .await
        .assert_error(403, "forbidden");
    let still = wait_for_audit(&app, &app.admin_key, "action=POST%20/api/v1/models", 1).await;
    assert_eq!(still[0], rows[0]);
}

fn urlencode(s: &str) -> String {
    s.replace('+', "%2B").replace(':', "%3A")
}

/// Two instances on one Postgres and one Redis of this kind (unique prefix), and calls to
/// each with the admin key; skipped without Postgres and (the test) Redis.
async fn with_two_instances(redis: RedisKind, test: impl AsyncFnOnce(Api, Api)) {
    with_postgres_and(redis, async |env| {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, key) = two_instances(dir.path(), &env).await;
        let api_a = Api::new(&a.address, key);
        let api_b = api_a.at(&b.address);
        test(api_a, api_b).await;
        a.shut().await;
        b.shut().await;
    })
    .await;
}

// Also on a Redis Cluster (`…::on_a_redis_cluster`): the bucket's script runs on the node
// owning its slot.
testkit::on_each_redis!(
    a_key_limit_holds_across_two_instances_sharing_redis => a_key_limit_holds_across_two_instances
);

async fn a_key_limit_holds_across_two_instances(redis: RedisKind) {
    with_two_instances(redis, async |a, b| {
        let limited = json!({"name": "limited", "scopes": ["read"], "rate_limit_per_minute": 4});
        let created = a.post("/api/v1/auth/keys", &limited).await;
        let key = created.assert_status(201)["key"].as_str().unwrap();
        let (a, b) = (a.key(key), b.key(key));
        let mut statuses = Vec::new();
        for i in 0..6 {
            let host = if i % 2 == 0 { &a } else { &b };
            let r = host.get("/api/v1/algorithms").await;
            if r.status == StatusCode::TOO_MANY_REQUESTS {
                assert!(r.headers.contains_key("retry-after"));
            }
            statuses.push(r.status.as_u16());
        }
        // 4 per minute in all, not 4 per instance.
        assert_eq!(statuses, vec![200, 200, 200, 200, 429, 429]);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoking_a_key_or_disabling_a_user_takes_effect_on_every_instance_within_a_second() {
    with_two_instances(RedisKind::Single, async |a, b| {
        let revocable = json!({"name": "soon-revoked", "scopes": ["read"]});
        let created = a.post("/api/v1/auth/keys", &revocable).await;
        let key = created.body["key"].as_str().unwrap().to_string();
        let user = a
            .post(
                "/api/v1/users",
                &json!({"username": "soon-disabled", "password": PASSWORD, "scopes": ["read"]}),
            )
            .await;
        let login = Api::with_client(b.client().clone(), b.base())
            .post(
                "/api/v1/auth/token",
                &json!({"username": "soon-disabled", "password": PASSWORD}),
            )
            .await;
        let token = login.assert_status(200)["access_token"].as_str().unwrap();
        // B has both cached now.
        for cred in [key.as_str(), token] {
            b.key(cred).get("/api/v1/models").await.assert_status(200);
        }
        let revoke = [
            (
                format!("/api/v1/auth/keys/{}", created.body["id"].as_str().unwrap()),
                key.as_str(),
            ),
            (
                format!("/api/v1/users/{}", user.body["id"].as_str().unwrap()),
                token,
            ),
        ];
        for (path, cred) in revoke {
            a.delete(&path).await.assert_status(200);
            let on_b = b.key(cred);
            testkit::wait::wait("B refuses the credential", Duration::from_millis(1500))
                .every(Duration::from_millis(50))
                .until(async || {
                    let r = on_b.get("/api/v1/models").await;
                    if r.status == StatusCode::UNAUTHORIZED {
                        return Ok(());
                    }
                    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
                    Err("still accepted".to_string())
                })
                .await;
        }
    })
    .await;
}
