//! `POST /api/v1/batch`: score data sources in the background (scope `write`).
//!
//! Everything that can be checked now is checked now (sources inside the sources
//! directory and present, the model known, the parameters valid), so a job fails later
//! only for what only reading the data reveals.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use pynomaly_jobs::{BatchSpec, ExplainSpec, OutputFormat, Scoring};
use pynomaly_store::{JobKind, NewJob};
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::access::WriteAccess;
use crate::error::ApiError;
use crate::explain::take_explain;
use crate::extract::{ApiJson, RequestBody};
use crate::routes::detect::detector_config;
use crate::routes::jobs::idempotency_key;
use crate::routes::{check_model_name, traced_spec};
use crate::state::AppState;

/// Most sources one job may read.
const MAX_SOURCES: usize = 100;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(submit))
}

fn sources(body: &mut RequestBody) -> Result<Vec<String>, ApiError> {
    let mut out = Vec::new();
    if let Some(one) = body.take_str("data_source")? {
        out.push(one);
    }
    match body.take("data_sources") {
        None => {}
        Some(Value::Array(items)) => {
            for item in items {
                match item {
                    Value::String(s) => out.push(s),
                    other => {
                        return Err(ApiError::invalid_with(
                            format!("'data_sources' must hold strings, got {other}"),
                            json!({"field": "data_sources"}),
                        ));
                    }
                }
            }
        }
        Some(other) => {
            return Err(ApiError::invalid_with(
                format!("'data_sources' must be an array of strings, got {other}"),
                json!({"field": "data_sources"}),
            ));
        }
    }
    if out.is_empty() {
        return Err(ApiError::invalid_with(
            "'data_source' or 'data_sources' is required",
            json!({"field": "data_source"}),
        ));
    }
    if out.len() > MAX_SOURCES {
        return Err(ApiError::invalid_with(
            format!(
                "at most {MAX_SOURCES} data sources per job, got {}",
                out.len()
            ),
            json!({"field": "data_sources", "limit": MAX_SOURCES}),
        ));
    }
    Ok(out)
}

/// Score data sources in the background
#[utoipa::path(
    post,
    path = "/api/v1/batch",
    operation_id = "submit_batch",
    tag = "jobs",
    params(("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 255, pattern = "^[!-~]+$", description = "1 to 255 visible ASCII characters: a retried submission with the same key returns the first job (200) instead of queuing another")),
    request_body = crate::openapi_doc::BatchRequest,
    responses(
        (status = 202, description = "Job queued", body = crate::openapi_doc::types::JobAccepted),
        (status = 200, description = "The first job of this Idempotency-Key", body = crate::openapi_doc::types::JobAccepted),
        (status = 404, description = "not_found: a data source or the model does not exist", body = crate::openapi_doc::types::Error),
    ),
    security(("bearer" = ["write"])),
)]
async fn submit(
    State(state): State<AppState>,
    WriteAccess(caller): WriteAccess,
    headers: HeaderMap,
    ApiJson(mut body): ApiJson<RequestBody>,
) -> Result<(StatusCode, axum::Json<Value>), ApiError> {
    if body.data.is_some() {
        return Err(ApiError::invalid(
            "a batch reads data sources; send rows to /api/v1/detect or /api/v1/models/{name}/predict",
        ));
    }
    let sources = sources(&mut body)?;
    for s in &sources {
        state.sources.locate(s)?;
    }
    let output_format = match body.take_str("output_format")? {
        None => OutputFormat::Json,
        Some(f) => OutputFormat::parse(&f).ok_or_else(|| {
            ApiError::invalid_with(
                format!("unknown output_format '{f}'; accepted: json, csv"),
                json!({"field": "output_format", "accepted": ["json", "csv"]}),
            )
        })?,
    };
    let label_column = body.take_str("label_column")?;
    let explain = take_explain(&mut body)?;
    let scoring = match body.take_str("model_name")? {
        Some(name) => {
            check_model_name(&name)?;
            let version = body.take_i64("version")?;
            let Some(model) = state.registry.load(&caller.tenant, &name, version).await? else {
                return Err(ApiError::NotFound(match version {
                    Some(v) => format!("model '{name}' has no version {v}"),
                    None => format!("model '{name}' not found"),
                }));
            };
            // The guide's client always sends an algorithm; it must agree with the model's.
            if let Some(algorithm) = body.take_str("algorithm")?
                && algorithm != model.version.algorithm
            {
                return Err(ApiError::invalid_with(
                    format!(
                        "model '{name}' is a {} model; 'algorithm' {algorithm} does not apply",
                        model.version.algorithm
                    ),
                    json!({"field": "algorithm"}),
                ));
            }
            body.reject_rest(&[
                "data_source",
                "data_sources",
                "model_name",
                "version",
                "algorithm",
                "output_format",
                "label_column",
                "explain",
            ])?;
            // The model's width is known now: a top_k above it is refused here.
            if let Some(e) = explain {
                e.top_k(model.model.n_features())?;
            }
            Scoring::Model {
                model_name: name,
                version,
            }
        }
        None => Scoring::Fit(detector_config(&mut body)?),
    };
    let total = sources.len();
    let spec = BatchSpec {
        sources,
        scoring,
        output_format,
        label_column,
        explain: explain.map(|e| ExplainSpec {
            top_k: e.given_top_k(),
        }),
    };
    let (job, created) = state
        .queue
        .submit(NewJob {
            tenant: caller.tenant,
            kind: JobKind::Batch,
            spec: traced_spec(&spec)?,
            progress: json!({"rows_processed": 0, "sources_done": 0, "sources_total": total}),
            idempotency_key: idempotency_key(&headers)?,
        })
        .await?;
    let status = if created {
        StatusCode::ACCEPTED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        axum::Json(json!({
            "job_id": job.id,
            "status": job.status.as_str(),
            "status_url": format!("/api/v1/jobs/{}", job.id),
        })),
    ))
}
