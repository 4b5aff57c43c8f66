//! `POST /api/v1/detect`: fit on the given rows and label them (scope `read`).

use std::time::Instant;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use detect_core::{Detection, DetectorConfig};
use ndarray::Array2;
use serde::Serialize;
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::access::ReadAccess;
use crate::cpu;
use crate::error::ApiError;
use crate::explain::{NamedExplanations, feature_names, take_explain};
use crate::extract::{ApiJson, RequestBody};
use crate::routes::check_cells;
use crate::state::AppState;
use tracing::Instrument as _;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(detect))
}

/// The answer of `detect` and `predict` (the latter adds the model's name and version).
#[derive(Debug, Serialize)]
pub(crate) struct DetectionResponse<'a> {
    pub(crate) predictions: &'a [i8],
    pub(crate) scores: &'a [f64],
    pub(crate) threshold: f64,
    pub(crate) anomaly_count: usize,
    pub(crate) algorithm: &'a str,
    pub(crate) parameters: &'a Value,
    pub(crate) contamination: &'a Value,
    pub(crate) n_samples: usize,
    pub(crate) n_features: usize,
    pub(crate) processing_time_ms: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) model_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) model_version: Option<i64>,
    /// On a model's predict: which version answered (`production`, `canary`, or
    /// `requested` when the request named one).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) variant: Option<&'static str>,
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    pub(crate) warnings: &'a [String],
    /// With `explain`: each row's top features.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) explanations: Option<NamedExplanations<'a>>,
}

/// A detector configuration and the rows to fit it on, from a request body.
pub(crate) fn fit_input(
    body: &mut RequestBody,
    max_cells: usize,
) -> Result<(DetectorConfig, Array2<f64>), ApiError> {
    let rows = body
        .data
        .take()
        .ok_or_else(|| ApiError::invalid_with("'data' is required", json!({"field": "data"})))?;
    check_cells(&rows, max_cells)?;
    let config = detector_config(body)?;
    Ok((config, rows.into_matrix()?))
}

/// `algorithm` (default `isolation_forest`), `contamination` (default `"auto"`) and the
/// parameters, nested or flat, checked by detect-core (unknown names and out-of-range
/// values are 422s listing what is accepted).
pub(crate) fn detector_config(body: &mut RequestBody) -> Result<DetectorConfig, ApiError> {
    let algorithm = body
        .take_str("algorithm")?
        .unwrap_or_else(|| "isolation_forest".into());
    let contamination = body.take("contamination").unwrap_or(Value::Null);
    let params = body.take_parameters()?;
    Ok(DetectorConfig::from_json(
        &algorithm,
        &params,
        &contamination,
    )?)
}

/// Fit on the given rows and label them
///
/// Fits the algorithm on `data` and labels the same rows; nothing is stored. With
/// `explain`, each row's top features and their shares of its anomaly.
#[utoipa::path(
    post,
    path = "/api/v1/detect",
    operation_id = "detect",
    tag = "detection",
    request_body = crate::openapi_doc::DetectRequest,
    responses((status = 200, description = "Labels and scores", body = crate::openapi_doc::types::Detection)),
    security(("bearer" = ["read"])),
)]
async fn detect(
    State(state): State<AppState>,
    ReadAccess(_caller): ReadAccess,
    ApiJson(mut body): ApiJson<RequestBody>,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let explain = take_explain(&mut body)?;
    let (config, x) = fit_input(&mut body, state.limits.max_cells)?;
    let top_k = explain.map(|e| e.top_k(x.ncols())).transpose()?;
    let fit = crate::telemetry::ml_span("fit", config.algorithm.name(), x.nrows());
    let fitted = cpu::run(&state, false, move || {
        let t = Instant::now();
        let fitted = detect_core::fit(&config, x.view())?;
        let inference = t.elapsed();
        let explained = top_k
            .map(|k| fitted.model.explain(x.view(), k))
            .transpose()?;
        Ok::<_, detect_core::DetectError>((fitted, inference, explained))
    })
    .instrument(fit.clone())
    .await?;
    let (fitted, inference, explained) = fitted?;
    fit.record(
        "ml.anomalies_detected",
        fitted.training.anomaly_count as i64,
    );
    let model = &fitted.model;
    let d: &Detection = &fitted.training;
    state.metrics.observe_inference(
        model.algorithm(),
        "inline",
        d.scores.len(),
        d.anomaly_count,
        inference,
    );
    let parameters = model.config().algorithm.to_json();
    let contamination = model.config().contamination.to_json();
    let names = feature_names(None, model.n_features());
    Ok(axum::Json(DetectionResponse {
        predictions: &d.predictions,
        scores: &d.scores,
        threshold: d.threshold,
        anomaly_count: d.anomaly_count,
        algorithm: model.algorithm(),
        parameters: &parameters,
        contamination: &contamination,
        n_samples: model.n_samples(),
        n_features: model.n_features(),
        processing_time_ms: started.elapsed().as_secs_f64() * 1e3,
        model_name: None,
        model_version: None,
        variant: None,
        warnings: &fitted.warnings,
        explanations: explained.as_ref().map(|rows| NamedExplanations {
            rows,
            names: &names,
        }),
    })
    .into_response())
}
