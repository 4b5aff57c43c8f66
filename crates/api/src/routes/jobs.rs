//! Jobs: status, listing, result, cancellation.

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::TryStreamExt;
use pynomaly_store::{CancelOutcome, Job, JobKind, JobStatus};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::access::{ReadAccess, WriteAccess};
use crate::error::ApiError;
use crate::routes::{ApiQuery, PageQuery, page_json};
use crate::state::AppState;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(status, cancel))
        .routes(routes!(result))
}

/// The `Idempotency-Key` header, if any.
pub(crate) fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(v) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    match v.to_str() {
        Ok(s) if !s.is_empty() && s.len() <= 255 => Ok(Some(s.to_string())),
        _ => Err(ApiError::invalid_with(
            "Idempotency-Key must be 1 to 255 visible ASCII characters",
            json!({"header": "Idempotency-Key"}),
        )),
    }
}

/// A job as the API shows it.
pub(crate) fn job_json(job: &Job) -> Value {
    let mut v = json!({
        "job_id": job.id,
        "kind": job.kind.as_str(),
        "status": job.status.as_str(),
        "progress": job.progress,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "result": job.result,
        "error": job.error,
        "cancel_requested": job.cancel_requested,
        "attempts": job.attempts,
        "status_url": format!("/api/v1/jobs/{}", job.id),
    });
    if job.kind == JobKind::Train {
        v["model_name"] = job.spec.get("model_name").cloned().unwrap_or(Value::Null);
    }
    if job.kind == JobKind::Batch && job.status == JobStatus::Succeeded {
        v["result_url"] = json!(format!("/api/v1/jobs/{}/result", job.id));
    }
    v
}

fn job_not_found(id: &str) -> ApiError {
    ApiError::NotFound(format!("job '{id}' not found"))
}

/// List the caller's jobs
#[utoipa::path(
    get,
    path = "/api/v1/jobs",
    operation_id = "list_jobs",
    tag = "jobs",
    params(crate::routes::PageQuery),
    responses((status = 200, description = "Jobs, newest first", body = crate::openapi_doc::types::JobList)),
    security(("bearer" = ["read"])),
)]
async fn list(
    State(state): State<AppState>,
    ReadAccess(caller): ReadAccess,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<axum::Json<Value>, ApiError> {
    let page = q.page()?;
    let (jobs, total) = state.meta.list_jobs(&caller.tenant, page).await?;
    let list = jobs.iter().map(job_json).collect();
    Ok(axum::Json(page_json("jobs", list, total, page)))
}

/// A job's status, progress and result
#[utoipa::path(
    get,
    path = "/api/v1/jobs/{job_id}",
    operation_id = "get_job",
    tag = "jobs",
    params(("job_id" = String, Path, description = "The job's id")),
    responses(
        (status = 200, description = "The job", body = crate::openapi_doc::types::Job),
        (status = 404, description = "not_found: no such job", body = crate::openapi_doc::types::Error),
    ),
    security(("bearer" = ["read"])),
)]
async fn status(
    State(state): State<AppState>,
    ReadAccess(caller): ReadAccess,
    Path(id): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    let job = state
        .meta
        .job(&caller.tenant, &id)
        .await?
        .ok_or_else(|| job_not_found(&id))?;
    Ok(axum::Json(job_json(&job)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ResultQuery {
    /// Which output, for a job over several sources (0-based, default 0).
    #[param(minimum = 0, default = 0)]
    output: Option<usize>,
}

/// Stream a batch job's output
///
/// One entry per input row (row, prediction, score), as JSON or CSV as the job asked.
#[utoipa::path(
    get,
    path = "/api/v1/jobs/{job_id}/result",
    operation_id = "get_job_result",
    tag = "jobs",
    params(("job_id" = String, Path, description = "The job's id"), ResultQuery),
    responses(
        (status = 200, description = "The output: a JSON array, or CSV with a header row", content(
            (Vec<crate::openapi_doc::types::ResultRow> = "application/json"),
            (String = "text/csv"),
        )),
        (status = 404, description = "not_found: no such job, not a batch job, or no such output", body = crate::openapi_doc::types::Error),
        (status = 409, description = "conflict: the job has not succeeded (yet)", body = crate::openapi_doc::types::Error),
    ),
    security(("bearer" = ["read"])),
)]
async fn result(
    State(state): State<AppState>,
    ReadAccess(caller): ReadAccess,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<ResultQuery>,
) -> Result<Response, ApiError> {
    let job = state
        .meta
        .job(&caller.tenant, &id)
        .await?
        .ok_or_else(|| job_not_found(&id))?;
    if job.kind != JobKind::Batch {
        return Err(ApiError::NotFound(format!(
            "job '{id}' is a {} job: it has no output file (its result is in GET /api/v1/jobs/{id})",
            job.kind.as_str()
        )));
    }
    if job.status != JobStatus::Succeeded {
        return Err(ApiError::Conflict(format!(
            "job '{id}' is {}: its output is available once it has succeeded",
            job.status.as_str()
        )));
    }
    let outputs = job
        .result
        .as_ref()
        .and_then(|r| r.get("outputs"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let index = q.output.unwrap_or(0);
    let Some(output) = outputs.get(index) else {
        return Err(ApiError::NotFound(format!(
            "job '{id}' has {} outputs; output {index} does not exist",
            outputs.len()
        )));
    };
    let path = output
        .get("path")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let content_type = match output.get("format").and_then(Value::as_str) {
        Some("csv") => "text/csv",
        _ => "application/json",
    };
    let (size, stream) = state.artifacts.get_stream(path).await?;
    let mut response = Body::from_stream(stream.map_err(std::io::Error::other)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    Ok(response)
}

/// Cancel a job that has not finished
#[utoipa::path(
    delete,
    path = "/api/v1/jobs/{job_id}",
    operation_id = "cancel_job",
    tag = "jobs",
    params(("job_id" = String, Path, description = "The job's id")),
    responses(
        (status = 200, description = "Cancelled (it was queued)", body = crate::openapi_doc::types::Job),
        (status = 202, description = "Cancellation requested: the running job stops at its next chunk", body = crate::openapi_doc::types::Job),
        (status = 404, description = "not_found: no such job", body = crate::openapi_doc::types::Error),
        (status = 409, description = "conflict: the job has already finished", body = crate::openapi_doc::types::Error),
    ),
    security(("bearer" = ["write"])),
)]
async fn cancel(
    State(state): State<AppState>,
    WriteAccess(caller): WriteAccess,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    match state.queue.cancel(&caller.tenant, &id).await? {
        CancelOutcome::Cancelled(job) => Ok(axum::Json(job_json(&job)).into_response()),
        CancelOutcome::Requested(job) => {
            Ok((StatusCode::ACCEPTED, axum::Json(job_json(&job))).into_response())
        }
        CancelOutcome::AlreadyFinished(job) => Err(ApiError::Conflict(format!(
            "job '{id}' has already finished ({})",
            job.status.as_str()
        ))),
        CancelOutcome::NotFound => Err(job_not_found(&id)),
    }
}
