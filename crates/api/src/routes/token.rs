//! `POST /api/v1/auth/token`: a user's username and password for a short-lived JWT.
//!
//! No credentials needed (this is how a user gets them). Limited per username and per
//! client address before the password is looked at; an unknown username costs the same
//! time as a wrong password; every attempt is audited.

use axum::Extension;
use axum::extract::State;
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::audit::AuditSlot;
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::state::AppState;
use crate::users::MAX_PASSWORD_CHARS;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(token))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[derive(utoipa::ToSchema)]
struct Login {
    #[schema(min_length = 1, max_length = 64)]
    username: String,
    #[schema(max_length = 128)]
    password: String,
}

/// Log in: a user's username and password for a JWT
#[utoipa::path(
    post,
    path = "/api/v1/auth/token",
    operation_id = "login",
    tag = "auth",
    request_body = Login,
    responses(
        (status = 200, description = "The token", body = crate::openapi_doc::types::Token),
        (status = 401, description = "unauthorized: unknown user, wrong password or disabled user", body = crate::openapi_doc::types::Error),
        (status = 429, description = "rate_limited: too many attempts; retry after Retry-After seconds", body = crate::openapi_doc::types::Error),
    ),
)]
async fn token(
    State(state): State<AppState>,
    slot: Option<Extension<AuditSlot>>,
    ApiJson(req): ApiJson<Login>,
) -> Result<axum::Json<Value>, ApiError> {
    let slot = slot.map(|Extension(s)| s);
    if let Some(s) = &slot {
        s.mark();
    }
    if req.username.is_empty() || req.username.chars().count() > 64 {
        return Err(ApiError::invalid_with(
            "'username' must have 1 to 64 characters",
            json!({"field": "username"}),
        ));
    }
    if req.password.chars().count() > MAX_PASSWORD_CHARS {
        return Err(ApiError::invalid_with(
            format!("'password' has more than {MAX_PASSWORD_CHARS} characters"),
            json!({"field": "password"}),
        ));
    }
    let client = slot.as_ref().and_then(AuditSlot::client);
    let (token, _user) = state
        .auth
        .login(&req.username, &req.password, client, slot.as_ref())
        .await?;
    Ok(axum::Json(json!({
        "access_token": token,
        "token_type": "bearer",
        "expires_in": state.auth.token_ttl_s(),
    })))
}
