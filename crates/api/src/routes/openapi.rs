//! `GET /api/v1/openapi.json`: the OpenAPI 3.1 document (no auth, so tools can read it),
//! and Swagger UI on it at `/api/v1/docs` (assets compiled in: works offline).

use axum::Router;
use serde_json::Value;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use utoipa_swagger_ui::{Config, SwaggerUi};

use crate::state::AppState;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(openapi))
}

/// Swagger UI: an HTML page and its assets, not operations of the API (so not in the
/// document).
pub(crate) fn docs_router() -> Router<AppState> {
    SwaggerUi::new("/api/v1/docs")
        .config(Config::from(DOCUMENT).try_it_out_enabled(true))
        .into()
}

const DOCUMENT: &str = "/api/v1/openapi.json";

/// This document.
#[utoipa::path(
    get,
    path = "/api/v1/openapi.json",
    operation_id = "openapi",
    tag = "meta",
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json", body = Object)),
)]
async fn openapi() -> axum::Json<Value> {
    axum::Json(crate::openapi_doc::document().clone())
}
