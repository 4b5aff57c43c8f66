//! `GET /api/v1/algorithms`: every algorithm with its parameters, types, defaults and
//! ranges (scope `read`).

use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::access::ReadAccess;
use crate::state::AppState;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(algorithms))
}

/// Algorithms with their parameters, types, defaults and ranges
#[utoipa::path(
    get,
    path = "/api/v1/algorithms",
    operation_id = "list_algorithms",
    tag = "detection",
    responses((status = 200, description = "Every algorithm", body = crate::openapi_doc::types::Algorithms)),
    security(("bearer" = ["read"])),
)]
async fn algorithms(ReadAccess(_caller): ReadAccess) -> axum::Json<Value> {
    axum::Json(json!({"algorithms": detect_core::params::algorithms()}))
}
