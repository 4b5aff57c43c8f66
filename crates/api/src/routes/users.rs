//! Users (scope `admin`): create, list, disable. Users log in at `POST /api/v1/auth/token`.
//!
//! A user is disabled, never deleted: its username stays taken and its audit rows keep
//! naming it. Disabling ends its tokens at once on this instance and within a second on
//! the others.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use pynomaly_store::User;
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::access::AdminAccess;
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::routes::check_identifier;
use crate::routes::keys::parse_scopes;
use crate::state::AppState;
use crate::users::{MAX_PASSWORD_CHARS, MIN_PASSWORD_CHARS};

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(disable))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[derive(utoipa::ToSchema)]
#[schema(as = UserCreate)]
struct CreateUser {
    /// Unique across tenants.
    #[schema(pattern = "^[A-Za-z0-9_.@-]{1,64}$")]
    username: String,
    /// Stored only as an argon2id hash.
    #[schema(min_length = 15, max_length = 128)]
    password: String,
    /// At least one.
    #[schema(value_type = Vec<crate::openapi_doc::types::Scope>, min_items = 1)]
    scopes: Vec<String>,
    /// Default: the caller's.
    #[schema(pattern = "^[A-Za-z0-9_.-]{1,64}$")]
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

/// Tenant names: 1 to 64 letters, digits, `_`, `-`, `.`.
pub(crate) fn check_tenant(tenant: &str) -> Result<(), ApiError> {
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

/// Create a user (password stored as an argon2id hash)
#[utoipa::path(
    post,
    path = "/api/v1/users",
    operation_id = "create_user",
    tag = "auth",
    request_body = CreateUser,
    responses(
        (status = 201, description = "The user", body = crate::openapi_doc::types::User),
        (status = 409, description = "conflict: the username is taken", body = crate::openapi_doc::types::Error),
    ),
    security(("bearer" = ["admin"])),
)]
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

/// List the tenant's users
#[utoipa::path(
    get,
    path = "/api/v1/users",
    operation_id = "list_users",
    tag = "auth",
    responses((status = 200, description = "Users", body = crate::openapi_doc::types::UserList)),
    security(("bearer" = ["admin"])),
)]
async fn list(
    State(state): State<AppState>,
    AdminAccess(caller): AdminAccess,
) -> Result<axum::Json<Value>, ApiError> {
    let users = state.meta.list_users(&caller.tenant).await?;
    Ok(axum::Json(
        json!({"users": users.iter().map(shown).collect::<Vec<_>>()}),
    ))
}

/// Disable a user: its tokens stop working at once
#[utoipa::path(
    delete,
    path = "/api/v1/users/{id}",
    operation_id = "disable_user",
    tag = "auth",
    params(("id" = String, Path, description = "The user's id")),
    responses(
        (status = 200, description = "Disabled", body = crate::openapi_doc::types::UserDisabled),
        (status = 404, description = "not_found: no such user", body = crate::openapi_doc::types::Error),
    ),
    security(("bearer" = ["admin"])),
)]
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
