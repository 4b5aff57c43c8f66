//! `GET /api/v1/openapi.json`: the OpenAPI 3 document (no auth, so tools can read it).

use axum::Router;
use axum::routing::get;
use serde_json::Value;

use crate::state::AppState;

pub(crate) fn router() -> Router<AppState> {
    Router::new().route("/api/v1/openapi.json", get(openapi))
}

async fn openapi() -> axum::Json<Value> {
    axum::Json(crate::openapi_doc::document().clone())
}
