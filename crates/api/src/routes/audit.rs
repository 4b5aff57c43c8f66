//! `GET /api/v1/audit` (scope `admin`): the caller's tenant's audit rows (or, for the
//! operator tenant's admins, those of `?tenant=NAME`), newest first, filtered by actor,
//! action, outcome and time. Read-only: no route changes a row.

use axum::extract::State;
use chrono::{DateTime, Utc};
use pynomaly_store::AuditFilter;
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::access::AdminAccess;
use crate::error::ApiError;
use crate::routes::{ApiQuery, PageQuery, page_json};
use crate::state::AppState;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct AuditQuery {
    /// Whose log (the operator tenant's admins only; default the caller's tenant).
    tenant: Option<String>,
    /// `key:<id>`, `user:<username>` or `anonymous`.
    actor: Option<String>,
    /// `METHOD /route/template`, e.g. `POST /api/v1/models`.
    action: Option<String>,
    /// An HTTP status, e.g. 401.
    outcome: Option<i64>,
    /// Inclusive (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    since: Option<DateTime<Utc>>,
    /// Exclusive (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    until: Option<DateTime<Utc>>,
    /// Rows per page.
    #[param(minimum = 1, maximum = 500, default = 50)]
    limit: Option<u32>,
    /// Rows skipped.
    #[param(minimum = 0, default = 0)]
    offset: Option<u32>,
}

/// The tenant's audit log, newest first (read-only: no route changes it)
#[utoipa::path(
    get,
    path = "/api/v1/audit",
    operation_id = "audit_log",
    tag = "auth",
    params(AuditQuery),
    responses((status = 200, description = "Audit rows", body = crate::openapi_doc::types::AuditList)),
    security(("bearer" = ["admin"])),
)]
async fn list(
    State(state): State<AppState>,
    AdminAccess(caller): AdminAccess,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> Result<axum::Json<Value>, ApiError> {
    let page = PageQuery {
        limit: q.limit,
        offset: q.offset,
    }
    .page()?;
    if let (Some(since), Some(until)) = (q.since, q.until)
        && since > until
    {
        return Err(ApiError::invalid_with(
            "'since' is after 'until'",
            json!({"field": "since"}),
        ));
    }
    let filter = AuditFilter {
        actor: q.actor,
        action: q.action,
        outcome: q.outcome,
        since: q.since,
        until: q.until,
    };
    let tenant = crate::auth::tenant_to_list(&caller, q.tenant)?;
    let (entries, total) = state.meta.list_audit(&tenant, &filter, page).await?;
    let list = serde_json::to_value(entries).map_err(ApiError::internal)?;
    Ok(axum::Json(page_json("entries", list, total, page)))
}
