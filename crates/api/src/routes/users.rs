//! Users (scope `admin`): create, list, disable. Users log in at `POST /api/v1/auth/token`.
//!
//! A user is disabled, never deleted: its username stays taken and its audit rows keep
//! naming it. Disabling ends its tokens at once on this instance and within a second on
//! the others.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, post};
use pynomaly_store::User;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::access::AdminAccess;
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::routes::check_identifier;
use crate::routes::keys::parse_scopes;
use crate::state::AppState;
use crate::users::{MAX_PASSWORD_CHARS, MIN_PASSWORD_CHARS};

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/users", post(create).get(list))
        .route("/api/v1/users/{id}", delete(disable))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateUser {
    username: String,
    password: String,
    scopes: Vec<String>,
    tenant: Option<String>,
}

/// Usernames: 1 to 64 letters, digits, `_`, `-`, `.`, `@`.
pub(crate) fn check_username(name: &str) -> Result<(), ApiError> {
    check_identifier(name, "username", 64, b"_-.@", || {
        "'username' must have 1 to 64 letters, digits, '_', '-', '.' or '@'".into()
    })
}

fn check_password(password: &str) -> Result<(), ApiError> {
    let n = password.chars().count();
    if (MIN_PASSWORD_CHARS..=MAX_PASSWORD_CHARS).contains(&n) {
        Ok(())
    } else {
        Err(ApiError::invalid_with(
            format!(
                "'password' must have {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters, got {n}"
            ),
            json!({"field": "password", "min": MIN_PASSWORD_CHARS, "max": MAX_PASSWORD_CHARS}),
        ))
    }
}

fn check_tenant(tenant: &str) -> Result<(), ApiError> {
    check_identifier(tenant, "tenant", 64, b"_-.", || {
        "'tenant' must have 1 to 64 letters, digits, '_', '-' or '.'".into()
    })
}

fn shown(u: &User) -> Value {
    json!({
        "id": u.id, "username": u.username, "tenant": u.tenant, "scopes": u.scopes,
        "created_at": u.created_at, "disabled_at": u.disabled_at,
        "disabled": u.disabled_at.is_some(),
    })
}

async fn create(
    State(state): State<AppState>,
    AdminAccess(caller): AdminAccess,
    ApiJson(req): ApiJson<CreateUser>,
) -> Result<(StatusCode, axum::Json<Value>), ApiError> {
    check_username(&req.username)?;
    check_password(&req.password)?;
    let scopes = parse_scopes(&req.scopes)?;
    let tenant = req.tenant.unwrap_or_else(|| caller.tenant.clone());
    check_tenant(&tenant)?;
    crate::auth::may_administer(&caller, &tenant)?;
    let user = state
        .auth
        .create_user(&tenant, &req.username, &req.password, scopes)
        .await?;
    Ok((StatusCode::CREATED, axum::Json(shown(&user))))
}

async fn list(
    State(state): State<AppState>,
    AdminAccess(caller): AdminAccess,
) -> Result<axum::Json<Value>, ApiError> {
    let users = state.meta.list_users(&caller.tenant).await?;
    Ok(axum::Json(
        json!({"users": users.iter().map(shown).collect::<Vec<_>>()}),
    ))
}

async fn disable(
    State(state): State<AppState>,
    AdminAccess(caller): AdminAccess,
    Path(id): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    if !state.meta.disable_user(&caller.tenant, &id).await? {
        return Err(ApiError::NotFound(format!("user '{id}' not found")));
    }
    state.auth.forget_user(&id);
    Ok(axum::Json(json!({"id": id, "disabled": true})))
}
