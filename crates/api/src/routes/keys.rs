//! API keys (scope `admin`): create, list, revoke.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, post};
use chrono::{DateTime, Utc};
use pynomaly_store::Scope;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::access::AdminAccess;
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::state::AppState;

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/api/v1/auth/keys", post(create).get(list))
        .route("/api/v1/auth/keys/{id}", delete(revoke))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateKey {
    name: String,
    scopes: Vec<String>,
    tenant: Option<String>,
    rate_limit_per_minute: Option<i64>,
    expires_at: Option<DateTime<Utc>>,
}

/// Parses scope names, rejecting unknown ones with the accepted list.
pub(crate) fn parse_scopes(names: &[String]) -> Result<Vec<Scope>, ApiError> {
    let mut scopes = Vec::new();
    for n in names {
        let s = Scope::parse(n).ok_or_else(|| {
            ApiError::invalid_with(
                format!("unknown scope '{n}'; accepted: read, write, admin"),
                json!({"field": "scopes", "accepted": ["read", "write", "admin"]}),
            )
        })?;
        if !scopes.contains(&s) {
            scopes.push(s);
        }
    }
    if scopes.is_empty() {
        return Err(ApiError::invalid_with(
            "a key needs at least one scope: read, write, admin",
            json!({"field": "scopes"}),
        ));
    }
    Ok(scopes)
}

async fn create(
    State(state): State<AppState>,
    AdminAccess(caller): AdminAccess,
    ApiJson(req): ApiJson<CreateKey>,
) -> Result<(StatusCode, axum::Json<Value>), ApiError> {
    let scopes = parse_scopes(&req.scopes)?;
    if req.name.trim().is_empty() || req.name.len() > 128 {
        return Err(ApiError::invalid_with(
            "'name' must have 1 to 128 characters",
            json!({"field": "name"}),
        ));
    }
    if req.rate_limit_per_minute.is_some_and(|r| r < 1) {
        return Err(ApiError::invalid_with(
            "'rate_limit_per_minute' must be at least 1",
            json!({"field": "rate_limit_per_minute"}),
        ));
    }
    let tenant = req.tenant.unwrap_or_else(|| caller.tenant.clone());
    crate::auth::may_administer(&caller, &tenant)?;
    let created = state
        .auth
        .create_key(
            &tenant,
            &req.name,
            scopes,
            req.rate_limit_per_minute,
            req.expires_at,
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        axum::Json(serde_json::to_value(created).map_err(ApiError::internal)?),
    ))
}

async fn list(
    State(state): State<AppState>,
    AdminAccess(caller): AdminAccess,
) -> Result<axum::Json<Value>, ApiError> {
    let keys = state.meta.list_api_keys(&caller.tenant).await?;
    let keys: Vec<Value> = keys
        .iter()
        .map(|k| {
            json!({
                "id": k.id, "name": k.name, "tenant": k.tenant, "scopes": k.scopes,
                "rate_limit_per_minute": k.rate_limit_per_minute,
                "created_at": k.created_at, "expires_at": k.expires_at,
                "revoked_at": k.revoked_at,
            })
        })
        .collect();
    Ok(axum::Json(json!({"keys": keys})))
}

async fn revoke(
    State(state): State<AppState>,
    AdminAccess(caller): AdminAccess,
    Path(id): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    if !state.meta.revoke_api_key(&caller.tenant, &id).await? {
        return Err(ApiError::NotFound(format!("API key '{id}' not found")));
    }
    state.auth.forget(&id);
    Ok(axum::Json(json!({"id": id, "revoked": true})))
}
