//! API keys (scope `admin`): create, list, revoke. A tenant's admins manage their tenant's
//! keys; the operator tenant's admins manage every tenant's (`?tenant=NAME` on the list,
//! revocation by id wherever the key is), and their actions in a tenant are audited in
//! that tenant's log.

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use pynomaly_store::Scope;
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::access::AdminAccess;
use crate::audit::AuditSlot;
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::routes::ApiQuery;
use crate::state::AppState;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(revoke))
}

/// A new API key.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = KeyCreate)]
struct CreateKey {
    /// What the key is for (1 to 128 characters).
    #[schema(
        min_length = 1,
        max_length = 128,
        pattern = "[^\\t\\n\\x0b\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]"
    )]
    name: String,
    /// At least one.
    #[schema(value_type = Vec<crate::openapi_doc::types::Scope>, min_items = 1)]
    scopes: Vec<String>,
    /// Default: the caller's (another tenant: admins of the 'default' tenant only).
    #[schema(pattern = "^[A-Za-z0-9_.-]{1,64}$")]
    tenant: Option<String>,
    /// The key's own request limit (default: the server's).
    #[schema(minimum = 1)]
    rate_limit_per_minute: Option<i64>,
    /// When the key stops working (RFC 3339).
    #[schema(value_type = Option<String>, format = DateTime)]
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
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct TenantQuery {
    /// Another tenant (admins of the 'default' tenant only; default: the caller's).
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

/// Create an API key (shown once)
#[utoipa::path(
    post,
    path = "/api/v1/auth/keys",
    operation_id = "create_key",
    tag = "auth",
    request_body = CreateKey,
    responses((status = 201, description = "The key, shown only in this answer", body = crate::openapi_doc::types::KeyCreated)),
    security(("bearer" = ["admin"])),
)]
async fn create(
    State(state): State<AppState>,
    AdminAccess(caller): AdminAccess,
    slot: Option<Extension<AuditSlot>>,
    ApiJson(req): ApiJson<CreateKey>,
) -> Result<(StatusCode, axum::Json<Value>), ApiError> {
    let scopes = parse_scopes(&req.scopes)?;
    if req.name.trim().is_empty() || req.name.chars().count() > 128 {
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
    crate::routes::users::check_tenant(&tenant)?;
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

/// List a tenant's keys (never the keys themselves)
#[utoipa::path(
    get,
    path = "/api/v1/auth/keys",
    operation_id = "list_keys",
    tag = "auth",
    params(TenantQuery),
    responses((status = 200, description = "Keys", body = crate::openapi_doc::types::KeyList)),
    security(("bearer" = ["admin"])),
)]
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

/// Revoke a key (the 'default' tenant's admins: in any tenant)
#[utoipa::path(
    delete,
    path = "/api/v1/auth/keys/{id}",
    operation_id = "revoke_key",
    tag = "auth",
    params(("id" = String, Path, description = "The key's id")),
    responses(
        (status = 200, description = "Revoked, naming the key's tenant", body = crate::openapi_doc::types::KeyRevoked),
        (status = 404, description = "not_found: no such key", body = crate::openapi_doc::types::Error),
    ),
    security(("bearer" = ["admin"])),
)]
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
