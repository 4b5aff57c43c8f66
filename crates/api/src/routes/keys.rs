//! API keys (scope `admin`): create, list, revoke. A tenant's admins manage their tenant's
//! keys; the operator tenant's admins manage every tenant's (`?tenant=NAME` on the list,
//! revocation by id wherever the key is), and their actions in a tenant are audited in
//! that tenant's log.

use axum::Extension;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{delete, post};
use chrono::{DateTime, Utc};
use pynomaly_store::Scope;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::access::AdminAccess;
use crate::audit::AuditSlot;
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::routes::ApiQuery;
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

/// `?tenant=NAME`: whose keys to list.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TenantQuery {
    pub(crate) tenant: Option<String>,
}

/// Notes, for the audit log, that the request acts in `tenant` when that is not the
/// caller's own.
fn audit_in(slot: Option<&Extension<AuditSlot>>, caller_tenant: &str, tenant: &str) {
    if let Some(Extension(slot)) = slot
        && tenant != caller_tenant
    {
        slot.act_in(tenant);
    }
}

async fn create(
    State(state): State<AppState>,
    AdminAccess(caller): AdminAccess,
    slot: Option<Extension<AuditSlot>>,
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
    audit_in(slot.as_ref(), &caller.tenant, &tenant);
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
    ApiQuery(q): ApiQuery<TenantQuery>,
) -> Result<axum::Json<Value>, ApiError> {
    let tenant = crate::auth::tenant_to_list(&caller, q.tenant)?;
    let keys = state.meta.list_api_keys(&tenant).await?;
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
    slot: Option<Extension<AuditSlot>>,
    Path(id): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    let not_found = || ApiError::NotFound(format!("API key '{id}' not found"));
    // The operator's admins revoke a key wherever it is; a tenant's admins find only their
    // tenant's keys (another tenant's ids stay unknown to them, as everywhere else).
    let tenant = if caller.is_operator() {
        let key = state.meta.find_api_key_by_id(&id).await?;
        key.ok_or_else(not_found)?.tenant
    } else {
        caller.tenant.clone()
    };
    if !state.meta.revoke_api_key(&tenant, &id).await? {
        return Err(not_found());
    }
    audit_in(slot.as_ref(), &caller.tenant, &tenant);
    state.auth.forget(&id);
    Ok(axum::Json(
        json!({"id": id, "revoked": true, "tenant": tenant}),
    ))
}
