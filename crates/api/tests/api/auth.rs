use reqwest::Method;
use serde_json::json;

use crate::helpers::{spawn_app, training_rows};

#[tokio::test]
async fn requests_without_a_key_are_unauthorized() {
    let app = spawn_app().await;
    for (method, path) in [
        (Method::POST, "/api/v1/detect"),
        (Method::GET, "/api/v1/models"),
        (Method::POST, "/api/v1/models"),
        (Method::POST, "/api/v1/batch"),
        (Method::GET, "/api/v1/jobs"),
        (Method::GET, "/api/v1/algorithms"),
        (Method::GET, "/api/v1/auth/keys"),
    ] {
        let r = app.request(method, path, None, Some(&json!({}))).await;
        r.assert_error(401, "unauthorized");
    }
    let r = app
        .request(Method::GET, "/api/v1/models", Some("pk_not_a_key"), None)
        .await;
    r.assert_error(401, "unauthorized");
}

#[tokio::test]
async fn a_key_without_the_needed_scope_is_forbidden() {
    let app = spawn_app().await;
    let reader = app.create_key(&["read"]).await;
    let writer = app.create_key(&["write"]).await;
    let train = json!({"model_name": "m", "data": training_rows(20, 2)});
    // In order: the model the writer trains is the one the reader may not delete.
    for (method, path, key, body, expected) in [
        (Method::POST, "/api/v1/models", &reader, Some(&train), 403),
        (Method::POST, "/api/v1/models", &writer, Some(&train), 201),
        (Method::GET, "/api/v1/models", &writer, None, 403),
        (Method::GET, "/api/v1/models", &reader, None, 200),
        (Method::GET, "/api/v1/auth/keys", &reader, None, 403),
        (Method::DELETE, "/api/v1/models/m", &reader, None, 403),
    ] {
        let r = app.request(method, path, Some(key), body).await;
        if expected == 403 {
            r.assert_error(403, "forbidden");
        } else {
            r.assert_status(expected);
        }
    }
}

#[tokio::test]
async fn a_revoked_key_stops_working_at_once() {
    let app = spawn_app().await;
    let body = app
        .create_key_with(&json!({"name": "ci", "scopes": ["read"]}))
        .await;
    assert!(body["key"].as_str().unwrap().starts_with("pk_"));
    let key = body["key"].as_str().unwrap();
    app.request(Method::GET, "/api/v1/models", Some(key), None)
        .await
        .assert_status(200);
    let listed = app.get("/api/v1/auth/keys").await;
    assert!(
        !listed.body.to_string().contains(key),
        "keys are never shown again"
    );
    app.delete(&format!(
        "/api/v1/auth/keys/{}",
        body["id"].as_str().unwrap()
    ))
    .await
    .assert_status(200);
    app.request(Method::GET, "/api/v1/models", Some(key), None)
        .await
        .assert_error(401, "unauthorized");
}

#[tokio::test]
async fn the_admin_key_is_written_to_the_data_dir_readable_by_its_owner_only() {
    let app = spawn_app().await;
    let path = app.data_dir.join("admin.key");
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.trim(), app.admin_key);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

#[tokio::test]
async fn unknown_scopes_are_refused_when_creating_a_key() {
    let app = spawn_app().await;
    let r = app
        .post(
            "/api/v1/auth/keys",
            &json!({"name": "x", "scopes": ["root"]}),
        )
        .await;
    r.assert_error(422, "invalid_input");
}

#[tokio::test]
async fn a_key_for_a_malformed_tenant_is_refused_naming_the_field() {
    let app = spawn_app().await;
    for tenant in ["", "two words", "a/b", &"t".repeat(65)] {
        let r = app
            .post(
                "/api/v1/auth/keys",
                &json!({"name": "x", "scopes": ["read"], "tenant": tenant}),
            )
            .await;
        let body = r.assert_error(422, "invalid_input");
        assert!(body.to_string().contains("tenant"), "{tenant:?}: {body}");
    }
}
