//! `GET /api/v1/algorithms`: every algorithm with its parameters, types, defaults and
//! ranges (scope `read`).

use axum::Router;
use axum::routing::get;
use serde_json::{Value, json};

use crate::access::ReadAccess;
use crate::state::AppState;

pub(crate) fn router() -> Router<AppState> {
    Router::new().route("/api/v1/algorithms", get(algorithms))
}

async fn algorithms(ReadAccess(_caller): ReadAccess) -> axum::Json<Value> {
    axum::Json(json!({"algorithms": detect_core::params::algorithms()}))
}
