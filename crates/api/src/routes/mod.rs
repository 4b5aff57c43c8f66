//! One router per resource, merged in [`api_router`]; helpers they share.

use axum::Router;
use axum::extract::{FromRequestParts, Query};
use axum::http::request::Parts;
use axum::http::{Method, Uri};
use pynomaly_store::Page;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;

use crate::error::ApiError;
use crate::extract::Rows;
use crate::state::AppState;

pub mod algorithms;
pub mod audit;
pub mod batch;
pub mod detect;
pub mod drift;
pub mod health;
pub mod jobs;
pub mod keys;
pub mod lifecycle;
pub mod metrics;
pub mod models;
pub mod openapi;
pub mod privacy;
pub mod token;
pub mod users;

/// Every route of the service, with the JSON fallbacks.
pub(crate) fn api_router() -> Router<AppState> {
    let (router, _) = api_routes().split_for_parts();
    router
        .merge(openapi::docs_router())
        .fallback(no_route)
        .method_not_allowed_fallback(method_not_allowed)
}

/// Every documented route, each with its `#[utoipa::path]`: the router and the paths of
/// the OpenAPI document come from this one list.
pub(crate) fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(detect::router())
        .merge(models::router())
        .merge(lifecycle::router())
        .merge(drift::router())
        .merge(batch::router())
        .merge(jobs::router())
        .merge(algorithms::router())
        .merge(keys::router())
        .merge(users::router())
        .merge(token::router())
        .merge(audit::router())
        .merge(health::router())
        .merge(metrics::router())
        .merge(openapi::router())
        .merge(privacy::router())
}

async fn no_route(method: Method, uri: Uri) -> ApiError {
    ApiError::NotFound(format!("no route for {method} {}", uri.path()))
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::MethodNotAllowed(format!("{method} is not allowed on {}", uri.path()))
}

/// A query string, with the contract's 422 on a bad one.
#[derive(Debug)]
pub(crate) struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned + Send> FromRequestParts<AppState> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(q)| ApiQuery(q))
            .map_err(|r| ApiError::invalid(format!("invalid query string: {}", r.body_text())))
    }
}

/// `?limit=&offset=` of listings.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct PageQuery {
    /// Rows per page.
    #[param(minimum = 1, maximum = 500, default = 50)]
    pub(crate) limit: Option<u32>,
    /// Rows skipped.
    #[param(minimum = 0, default = 0)]
    pub(crate) offset: Option<u32>,
}

pub(crate) const MAX_PAGE: u32 = 500;

impl PageQuery {
    pub(crate) fn page(&self) -> Result<Page, ApiError> {
        let limit = self.limit.unwrap_or(50);
        if limit == 0 || limit > MAX_PAGE {
            return Err(ApiError::invalid_with(
                format!("limit must be in [1, {MAX_PAGE}], got {limit}"),
                json!({"field": "limit"}),
            ));
        }
        Ok(Page {
            limit,
            offset: self.offset.unwrap_or(0),
        })
    }
}

/// Whether `name` has 1 to `max` characters, each an ASCII letter or digit or one of `extra`.
fn is_identifier(name: &str, max: usize, extra: &[u8]) -> bool {
    (1..=max).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || extra.contains(&b))
}

/// `value` as [`is_identifier`] accepts it, or 422 with `message`, naming `field`.
pub(crate) fn check_identifier(
    value: &str,
    field: &'static str,
    max: usize,
    extra: &[u8],
    message: impl FnOnce() -> String,
) -> Result<(), ApiError> {
    if is_identifier(value, max, extra) {
        Ok(())
    } else {
        Err(ApiError::invalid_with(message(), json!({"field": field})))
    }
}

/// Model names: 1 to 128 characters of letters, digits, `_`, `-`, `.`.
pub(crate) fn check_model_name(name: &str) -> Result<(), ApiError> {
    check_identifier(name, "model_name", 128, b"_-.", || {
        format!("invalid model name '{name}': use 1 to 128 letters, digits, '_', '-' or '.'")
    })
}

/// A page of a listing: `{"<items>": [...], "total", "limit", "offset"}`.
pub(crate) fn page_json(items: &'static str, list: Value, total: i64, page: Page) -> Value {
    json!({items: list, "total": total, "limit": page.limit, "offset": page.offset})
}

/// A job's specification as stored, with the current request's trace context, so the
/// worker running the job continues the request's trace.
pub(crate) fn traced_spec(spec: &impl serde::Serialize) -> Result<serde_json::Value, ApiError> {
    let mut value = serde_json::to_value(spec).map_err(ApiError::internal)?;
    pynomaly_jobs::attach_trace_context(&mut value);
    Ok(value)
}

/// Rows × features within the configured limit.
pub(crate) fn check_cells(rows: &Rows, max_cells: usize) -> Result<(), ApiError> {
    if rows.cells() > max_cells {
        return Err(ApiError::invalid_with(
            format!(
                "the request has {} rows × {} features = {} values, over the limit of {max_cells} (PYNOMALY_MAX_CELLS); split it or use a batch job",
                rows.n_rows,
                rows.n_cols,
                rows.cells()
            ),
            json!({"limit": max_cells, "cells": rows.cells()}),
        ));
    }
    Ok(())
}
