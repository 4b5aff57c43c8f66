//! Models: train (inline or from a data source), list, get, versions, delete, predict.
//!
//! Training keeps the training data's reference profile beside the model; predicting adds
//! the scored rows to the model's drift window (see `routes/drift.rs`).

use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use detect_core::drift::ReferenceProfile;
use pynomaly_jobs::TrainSpec;
use pynomaly_models::{ActiveRollout, Registration, RolloutMode, Variant, matrix_sha256, unix_now};
use std::sync::Arc;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::request_id::current_request_id;
use pynomaly_store::{JobKind, NewJob};
use serde_json::{Value, json};

use crate::access::{ReadAccess, WriteAccess};
use crate::cpu;
use crate::error::ApiError;
use crate::extract::{ApiJson, RequestBody};
use crate::routes::detect::{DetectionResponse, detector_config, fit_input};
use crate::routes::lifecycle::{Validation, take_rollout};
use crate::routes::{
    ApiQuery, PageQuery, check_cells, check_model_name, jobs::idempotency_key, page_json,
    traced_spec,
};
use crate::state::AppState;
use crate::telemetry::ml_span;
use tracing::Instrument as _;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(train, list))
        .routes(routes!(versions, delete))
        .routes(routes!(version))
        .routes(routes!(predict))
}

/// `feature_names` of inline training: one name per column (a stream looks features up
/// by them), none empty or given twice.
fn take_feature_names(body: &mut RequestBody) -> Result<Option<Vec<String>>, ApiError> {
    let Some(value) = body.take("feature_names") else {
        return Ok(None);
    };
    let invalid = |why: &str| {
        ApiError::invalid_with(
            format!("'feature_names' {why}"),
            json!({"field": "feature_names"}),
        )
    };
    let names: Vec<String> =
        serde_json::from_value(value).map_err(|_| invalid("must be an array of strings"))?;
    if names
        .iter()
        .any(|n| n.trim().is_empty() || n.chars().count() > 256)
    {
        return Err(invalid("must hold names of 1 to 256 characters"));
    }
    let distinct: std::collections::HashSet<&str> = names.iter().map(String::as_str).collect();
    if distinct.len() != names.len() {
        return Err(invalid("must not name a column twice"));
    }
    Ok(Some(names))
}

fn model_not_found(name: &str, version: Option<i64>) -> ApiError {
    match version {
        Some(v) => ApiError::NotFound(format!("model '{name}' has no version {v}")),
        None => ApiError::NotFound(format!("model '{name}' not found")),
    }
}

/// Train and register a model version
///
/// With `data`, trains now and answers the new version (201); with `training_data` (a data
/// source), queues a training job (202). The header `Idempotency-Key` makes a retried
/// job submission return the first job.
#[utoipa::path(
    post,
    path = "/api/v1/models",
    operation_id = "train",
    tag = "models",
    params(("Idempotency-Key" = Option<String>, Header, min_length = 1, max_length = 255, pattern = "^[!-~]+$", description = "1 to 255 visible ASCII characters: a retried submission with the same key returns the first job (training_data only)")),
    request_body = crate::openapi_doc::TrainRequest,
    responses(
        (status = 201, description = "Trained now (inline data): the new version, with its promotion", body = crate::openapi_doc::TrainedVersion),
        (status = 202, description = "Training job queued (training_data)", body = crate::openapi_doc::types::JobAccepted),
        (status = 404, description = "not_found: the data source does not exist", body = crate::openapi_doc::types::Error),
    ),
    security(("bearer" = ["write"])),
)]
async fn train(
    State(state): State<AppState>,
    WriteAccess(caller): WriteAccess,
    headers: HeaderMap,
    ApiJson(mut body): ApiJson<RequestBody>,
) -> Result<Response, ApiError> {
    let name = body.take_str("model_name")?.ok_or_else(|| {
        ApiError::invalid_with("'model_name' is required", json!({"field": "model_name"}))
    })?;
    check_model_name(&name)?;
    let training_data = body.take_str("training_data")?;
    match (body.data.is_some(), training_data) {
        (true, Some(_)) => Err(ApiError::invalid(
            "give either 'data' (train now) or 'training_data' (a data source), not both",
        )),
        (false, None) => Err(ApiError::invalid_with(
            "'data' or 'training_data' is required",
            json!({"field": "data"}),
        )),
        (false, Some(uri)) => {
            let by = caller.label();
            train_from_source(&state, &caller.tenant, &by, &headers, name, uri, body).await
        }
        (true, None) => {
            let started = Instant::now();
            let feature_names = take_feature_names(&mut body)?;
            let (rollout, validation) = take_rollout(&mut body, state.limits.max_cells)?;
            let validation = match validation {
                None => None,
                Some(Validation::Rows(set)) => Some(set),
                Some(Validation::Source { .. }) => {
                    return Err(ApiError::invalid_with(
                        "a validation data source is read by a training job: give \
                         'training_data' (a data source), or the validation rows inline",
                        json!({"field": "validation_data"}),
                    ));
                }
            };
            let (config, x) = fit_input(&mut body, state.limits.max_cells)?;
            if let Some(names) = &feature_names
                && names.len() != x.ncols()
            {
                return Err(ApiError::invalid_with(
                    format!(
                        "'feature_names' has {} names; the data has {} columns",
                        names.len(),
                        x.ncols()
                    ),
                    json!({"field": "feature_names", "expected": x.ncols()}),
                ));
            }
            let algorithm = config.algorithm.name().to_string();
            let fit = ml_span("fit", &algorithm, x.nrows());
            let (fitted, reference, digest) = cpu::run(&state, false, move || {
                let fitted = detect_core::fit(&config, x.view())?;
                let reference = ReferenceProfile::from_training(x.view(), &fitted.training);
                Ok::<_, detect_core::DetectError>((fitted, reference, matrix_sha256(x.view())))
            })
            .instrument(fit.clone())
            .await??;
            fit.record(
                "ml.anomalies_detected",
                fitted.training.anomaly_count as i64,
            );
            let store = ml_span("store", &algorithm, fitted.model.n_samples());
            let training_time_ms = started.elapsed().as_secs_f64() * 1e3;
            let anomaly_count = fitted.training.anomaly_count;
            let lineage = json!({
                "training_data": "inline",
                "rows": fitted.model.n_samples(),
                "sha256": digest,
            });
            let (loaded, promotion) = state
                .registry
                .register_and_roll_out(
                    fitted.model,
                    Registration {
                        tenant: caller.tenant.clone(),
                        model_name: name.clone(),
                        feature_names,
                        training_time_ms,
                        job_id: None,
                        metrics: None,
                        lineage: Some(lineage),
                    },
                    Some(reference),
                    &rollout,
                    validation.as_ref(),
                    &caller.label(),
                )
                .instrument(store)
                .await?;
            state.metrics.set_data_quality(&name, 1.0);
            let mut out = serde_json::to_value(&*loaded.version).map_err(ApiError::internal)?;
            out["anomaly_count"] = json!(anomaly_count);
            out["warnings"] = json!(fitted.warnings);
            out["promotion"] = serde_json::to_value(&promotion).map_err(ApiError::internal)?;
            Ok((StatusCode::CREATED, axum::Json(out)).into_response())
        }
    }
}

/// The training job of a request naming a data source: its label column, rollout and
/// detector, the source checked to exist where sources may be.
///
/// # Errors
/// 422 naming what is wrong.
pub(crate) fn source_train_spec(
    state: &AppState,
    trained_by: &str,
    name: &str,
    uri: String,
    body: &mut RequestBody,
) -> Result<TrainSpec, ApiError> {
    let label_column = body.take_str("label_column")?;
    let (rollout, validation) = take_rollout(body, state.limits.max_cells)?;
    let config = detector_config(body)?;
    state.sources.locate(&uri)?;
    let (validation, validation_source) = match validation {
        None => (None, None),
        Some(Validation::Rows(set)) => (Some(set), None),
        Some(Validation::Source {
            source,
            label_column: label,
        }) => {
            let v = Validation::source(source, label, label_column.as_deref())?;
            state.sources.locate(&v.source)?;
            (None, Some(v))
        }
    };
    Ok(TrainSpec {
        model_name: name.to_string(),
        training_data: uri,
        detector: config,
        label_column,
        rollout,
        validation,
        validation_source,
        trained_by: Some(trained_by.to_string()),
    })
}

async fn train_from_source(
    state: &AppState,
    tenant: &str,
    trained_by: &str,
    headers: &HeaderMap,
    name: String,
    uri: String,
    mut body: RequestBody,
) -> Result<Response, ApiError> {
    let spec = source_train_spec(state, trained_by, &name, uri, &mut body)?;
    let (job, _created) = state
        .queue
        .submit(NewJob {
            tenant: tenant.to_string(),
            kind: JobKind::Train,
            spec: traced_spec(&spec)?,
            progress: json!({"rows_processed": 0, "sources_done": 0, "sources_total": 1}),
            idempotency_key: idempotency_key(headers)?,
        })
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(json!({
            "job_id": job.id,
            "status": job.status.as_str(),
            "model_name": name,
            "status_url": format!("/api/v1/jobs/{}", job.id),
        })),
    )
        .into_response())
}

/// List models
#[utoipa::path(
    get,
    path = "/api/v1/models",
    operation_id = "list_models",
    tag = "models",
    params(crate::routes::PageQuery),
    responses((status = 200, description = "Models, by name", body = crate::openapi_doc::types::ModelList)),
    security(("bearer" = ["read"])),
)]
async fn list(
    State(state): State<AppState>,
    ReadAccess(caller): ReadAccess,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<axum::Json<Value>, ApiError> {
    let page = q.page()?;
    let (models, total) = state.meta.list_models(&caller.tenant, page).await?;
    let list = serde_json::to_value(models).map_err(ApiError::internal)?;
    Ok(axum::Json(page_json("models", list, total, page)))
}

/// A model's versions
#[utoipa::path(
    get,
    path = "/api/v1/models/{name}",
    operation_id = "get_model",
    tag = "models",
    params(("name" = String, Path, description = "The model's name")),
    responses(
        (status = 200, description = "Every version, oldest first", body = crate::openapi_doc::types::ModelVersions),
        (status = 404, description = "not_found: no such model", body = crate::openapi_doc::types::Error),
    ),
    security(("bearer" = ["read"])),
)]
async fn versions(
    State(state): State<AppState>,
    ReadAccess(caller): ReadAccess,
    Path(name): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    let versions = state.registry.versions(&caller.tenant, &name).await?;
    let Some(latest) = versions.last() else {
        return Err(model_not_found(&name, None));
    };
    let production = versions
        .iter()
        .find(|v| v.stage == "production")
        .map(|v| v.version);
    Ok(axum::Json(json!({
        "model_name": name,
        "algorithm": latest.algorithm,
        "latest_version": latest.version,
        "production_version": production,
        "versions": versions,
    })))
}

pub(crate) fn parse_version(s: &str) -> Result<i64, ApiError> {
    s.parse::<i64>().ok().filter(|v| *v >= 1).ok_or_else(|| {
        ApiError::invalid_with(
            format!("version must be an integer >= 1, got '{s}'"),
            json!({"field": "version"}),
        )
    })
}

/// One model version
#[utoipa::path(
    get,
    path = "/api/v1/models/{name}/versions/{version}",
    operation_id = "get_model_version",
    tag = "models",
    params(("name" = String, Path, description = "The model's name"), ("version" = i64, Path, minimum = 1, description = "A version of the model")),
    responses(
        (status = 200, description = "The version", body = crate::openapi_doc::types::ModelVersion),
        (status = 404, description = "not_found: no such model or version", body = crate::openapi_doc::types::Error),
    ),
    security(("bearer" = ["read"])),
)]
async fn version(
    State(state): State<AppState>,
    ReadAccess(caller): ReadAccess,
    Path((name, version)): Path<(String, String)>,
) -> Result<axum::Json<Value>, ApiError> {
    let v = parse_version(&version)?;
    let found = state.meta.model_version(&caller.tenant, &name, v).await?;
    let found = found.ok_or_else(|| model_not_found(&name, Some(v)))?;
    Ok(axum::Json(
        serde_json::to_value(found).map_err(ApiError::internal)?,
    ))
}

/// Delete a model and every version
#[utoipa::path(
    delete,
    path = "/api/v1/models/{name}",
    operation_id = "delete_model",
    tag = "models",
    params(("name" = String, Path, description = "The model's name")),
    responses(
        (status = 200, description = "Deleted", body = crate::openapi_doc::types::ModelDeleted),
        (status = 404, description = "not_found: no such model", body = crate::openapi_doc::types::Error),
    ),
    security(("bearer" = ["write"])),
)]
async fn delete(
    State(state): State<AppState>,
    WriteAccess(caller): WriteAccess,
    Path(name): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    let deleted = state.registry.delete(&caller.tenant, &name).await?;
    if deleted.is_empty() {
        return Err(model_not_found(&name, None));
    }
    state.metrics.forget_model(&name);
    Ok(axum::Json(json!({
        "model_name": name,
        "deleted": true,
        "deleted_versions": deleted.iter().map(|v| v.version).collect::<Vec<_>>(),
    })))
}

/// Score rows with a trained model
///
/// The production version answers unless the body names a `version`; during a canary
/// rollout the routing key (the body's `routing_key`, else `X-Routing-Key`, else the
/// request id) decides whether the candidate answers.
#[utoipa::path(
    post,
    path = "/api/v1/models/{name}/predict",
    operation_id = "predict",
    tag = "models",
    params(
        ("name" = String, Path, description = "The model's name"),
        ("X-Routing-Key" = Option<String>, Header, description = "Decides which version a canary rollout gives this request: one key, one version"),
    ),
    request_body = PredictRequest,
    responses(
        (status = 200, description = "Labels and scores, with model_name, model_version and variant", body = crate::openapi_doc::types::Detection),
        (status = 404, description = "not_found: no such model or version", body = crate::openapi_doc::types::Error),
    ),
    security(("bearer" = ["read"])),
)]
async fn predict(
    State(state): State<AppState>,
    ReadAccess(caller): ReadAccess,
    Path(name): Path<String>,
    headers: HeaderMap,
    ApiJson(mut body): ApiJson<RequestBody>,
) -> Result<Response, ApiError> {
    let started = Instant::now();
    let version = body.take_i64("version")?;
    let routing_key = body.take_str("routing_key")?;
    let explain = crate::explain::take_explain(&mut body)?;
    body.reject_rest(&["data", "version", "routing_key", "explain"])?;
    let rows = body
        .data
        .take()
        .ok_or_else(|| ApiError::invalid_with("'data' is required", json!({"field": "data"})))?;
    check_cells(&rows, state.limits.max_cells)?;
    // A rollout takes part only in predicts that name no version.
    let rollout = match version {
        Some(_) => None,
        None => state.registry.rollout(&caller.tenant, &name).await?,
    };
    let to_candidate = rollout.as_ref().is_some_and(|r| {
        r.policy.mode == RolloutMode::Canary && {
            let key = routing_key
                .clone()
                .or_else(|| header_str(&headers, ROUTING_KEY_HEADER))
                .unwrap_or_else(current_request_id);
            r.policy.routes_to_candidate(&key)
        }
    });
    let (asked, variant) = match (&rollout, version) {
        (_, Some(v)) => (Some(v), "requested"),
        (Some(r), None) if to_candidate => (Some(r.policy.version), "canary"),
        _ => (None, "production"),
    };
    let loaded = state
        .registry
        .load(&caller.tenant, &name, asked)
        .await?
        .ok_or_else(|| model_not_found(&name, version))?;
    let x = rows.into_matrix()?;
    let n_rows = x.nrows();
    // Rows of the wrong width are the model's error (with both widths), not top_k's.
    let top_k = match explain {
        Some(e) if x.ncols() == loaded.model.n_features() => Some(e.top_k(x.ncols())?),
        _ => None,
    };
    let model = std::sync::Arc::clone(&loaded.model);
    let inline = n_rows <= cpu::INLINE_ROWS;
    let score = if inline {
        crate::telemetry::ml_inline(loaded.model.algorithm(), n_rows)
    } else {
        ml_span("score", &loaded.version.algorithm, n_rows)
    };
    // Many rows: their drift accounting runs with the scoring, off the async threads.
    // A few: after it, in place, without another handle on the windows to count.
    let drift = if inline { None } else { loaded.drift.clone() };
    let scored = cpu::run(&state, inline, move || {
        let t = Instant::now();
        let detection = model.predict(x.view())?;
        let inference = t.elapsed();
        let explained = top_k.map(|k| model.explain(x.view(), k)).transpose()?;
        if let Some(drift) = drift {
            drift.observe(x.view(), detection.anomaly_count, unix_now());
        }
        Ok::<_, detect_core::DetectError>((detection, inference, x, explained))
    })
    .instrument(score.clone())
    .await?;
    // A bake watches the production version it names as its candidate.
    let baked = rollout.as_ref().is_some_and(|r| {
        r.policy.mode == RolloutMode::Bake
            && version.is_none()
            && r.policy.version == loaded.version.version
    });
    let side = if to_candidate || baked {
        Variant::Candidate
    } else {
        Variant::Production
    };
    let candidate_drift = if side == Variant::Candidate {
        loaded.drift.clone()
    } else {
        None
    };
    let (detection, inference, x, explained) = match scored {
        Ok(scored) => scored,
        Err(e) => {
            if let Some(r) = &rollout {
                observe(
                    &state,
                    &caller.tenant,
                    &name,
                    r,
                    side,
                    (0, 0),
                    started.elapsed(),
                    true,
                    None,
                );
            }
            return Err(e.into());
        }
    };
    crate::telemetry::record_anomalies(&score, detection.anomaly_count);
    if let (true, Some(drift)) = (inline, &loaded.drift) {
        drift.observe(x.view(), detection.anomaly_count, unix_now());
    }
    let meta = &loaded.version;
    let names =
        crate::explain::feature_names(meta.feature_names.as_deref(), loaded.model.n_features());
    state.metrics.observe_inference(
        &meta.algorithm,
        &meta.model_name,
        n_rows,
        detection.anomaly_count,
        inference,
    );
    state.metrics.observe_variant(
        &meta.model_name,
        meta.version,
        variant,
        n_rows,
        detection.anomaly_count,
    );
    crate::telemetry::record_variant(meta.version, variant);
    if let Some(r) = &rollout {
        let counts = (n_rows, detection.anomaly_count);
        // The latency guard compares what each side's callers waited (the request so far),
        // not the scoring alone: a canary's model, serving a tenth of the 1-row predicts,
        // scores from colder caches than production's, which is not what its callers see.
        observe(
            &state,
            &caller.tenant,
            &name,
            r,
            side,
            counts,
            started.elapsed(),
            false,
            candidate_drift.as_ref(),
        );
        if r.policy.mode == RolloutMode::Shadow
            && r.policy.routes_to_candidate(&current_request_id())
        {
            shadow(&state, &caller.tenant, &name, r, x, &detection);
        }
    }
    Ok(axum::Json(DetectionResponse {
        predictions: &detection.predictions,
        scores: &detection.scores,
        threshold: detection.threshold,
        anomaly_count: detection.anomaly_count,
        algorithm: &meta.algorithm,
        parameters: &meta.parameters,
        contamination: &meta.contamination,
        n_samples: n_rows,
        n_features: loaded.model.n_features(),
        processing_time_ms: started.elapsed().as_secs_f64() * 1e3,
        model_name: Some(&meta.model_name),
        model_version: Some(meta.version),
        variant: Some(variant),
        warnings: &[],
        explanations: explained
            .as_ref()
            .map(|rows| crate::explain::NamedExplanations {
                rows,
                names: &names,
            }),
    })
    .into_response())
}

/// The body of a model's predict (the handler reads it as a [`RequestBody`], which keeps
/// `data` flat, and refuses any other field).
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct PredictRequest {
    #[schema(schema_with = predict_rows)]
    data: Vec<Vec<f64>>,
    /// A version (default: the production version, or a rollout's candidate).
    #[schema(minimum = 1)]
    version: Option<i64>,
    /// Decides which version a canary rollout gives this request (as X-Routing-Key).
    routing_key: Option<String>,
    /// Each row's top features (`true`: 3), in `explanations`.
    #[schema(value_type = Option<crate::openapi_doc::Explain>)]
    explain: Option<Value>,
}

fn predict_rows() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    crate::openapi_doc::params::rows(
        "Rows of finite numbers, as many columns as the model was trained on",
        1,
    )
}

/// The header naming a predict's routing key (see [`RolloutPolicy::routes_to_candidate`]).
const ROUTING_KEY_HEADER: &str = "x-routing-key";

fn header_str(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)?
        .to_str()
        .ok()
        .filter(|v| !v.is_empty())
        .map(str::to_string)
}

/// Records one side of a rollout's comparison; a guard's breach ends the rollout, off the
/// response path.
#[allow(clippy::too_many_arguments)]
fn observe(
    state: &AppState,
    tenant: &str,
    name: &str,
    rollout: &Arc<ActiveRollout>,
    side: Variant,
    (rows, anomalies): (usize, usize),
    latency: std::time::Duration,
    failed: bool,
    candidate_drift: Option<&Arc<pynomaly_models::ModelDrift>>,
) {
    let breach = rollout
        .observe(side, rows, anomalies, latency, failed)
        .or_else(|| {
            let drift = candidate_drift?;
            rollout.judge_drift(drift, &state.registry.drift().config().thresholds)
        });
    let Some(breach) = breach else {
        return;
    };
    let (registry, rollout) = (Arc::clone(&state.registry), Arc::clone(rollout));
    let (tenant, name) = (tenant.to_string(), name.to_string());
    tokio::spawn(async move {
        registry
            .roll_back_rollout(&tenant, &name, &rollout, &breach)
            .await
    });
}

/// Hands the rows a shadow rollout's candidate scores to the shadow thread
/// ([`crate::shadow`]), off the response path.
fn shadow(
    state: &AppState,
    tenant: &str,
    name: &str,
    rollout: &Arc<ActiveRollout>,
    x: ndarray::Array2<f64>,
    production: &detect_core::Detection,
) {
    state.shadow.submit(crate::shadow::ShadowJob {
        state: state.clone(),
        tenant: tenant.to_string(),
        name: name.to_string(),
        rollout: Arc::clone(rollout),
        x,
        production: (production.predictions.clone(), production.scores.clone()),
    });
}

/// Scores the rows of one rollout's shadowed predicts with its candidate, in one call, and
/// records each predict's comparison (on the shadow thread: `runtime` runs the registry's
/// lookups).
pub(crate) fn score_shadow(jobs: Vec<crate::shadow::ShadowJob>, runtime: &tokio::runtime::Handle) {
    let Some(first) = jobs.first() else {
        return;
    };
    let (state, tenant, name) = (
        first.state.clone(),
        first.tenant.clone(),
        first.name.clone(),
    );
    let rollout = Arc::clone(&first.rollout);
    let version = rollout.policy.version;
    let candidate = match runtime.block_on(state.registry.load(&tenant, &name, Some(version))) {
        Ok(Some(c)) => c,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(error = %e, model = name, version, "cannot load the shadow candidate");
            return;
        }
    };
    let views: Vec<_> = jobs.iter().map(|j| j.x.view()).collect();
    // One predict's side of the comparison (rows and anomalies, CPU time, failed or not).
    let record = |counts, took, failed, drift| {
        observe(
            &state,
            &tenant,
            &name,
            &rollout,
            Variant::Candidate,
            counts,
            took,
            failed,
            drift,
        );
    };
    let failed = |n: usize| {
        for _ in 0..n {
            record((0, 0), Duration::ZERO, true, None);
        }
    };
    // One rollout's predicts have production's width (stacking fails only if production
    // changed width between them); a candidate of another width fails them all in
    // `predict`.
    let Ok(x) = ndarray::concatenate(ndarray::Axis(0), &views) else {
        return failed(jobs.len());
    };
    // The scoring's CPU time: on the shadow thread's low priority, wall time would count
    // the waits for a core.
    let cpu_before = crate::shadow::thread_cpu_time();
    let scored = candidate.model.predict(x.view());
    let took = crate::shadow::thread_cpu_time().saturating_sub(cpu_before);
    let Ok(d) = scored else {
        return failed(jobs.len());
    };
    // The candidate's drift windows see what it scored (its drift guard reads them).
    if let Some(drift) = &candidate.drift {
        drift.observe(x.view(), d.anomaly_count, unix_now());
    }
    let total = x.nrows().max(1);
    let mut from = 0;
    for job in &jobs {
        let rows = job.x.nrows();
        let (predictions, scores) = (
            &d.predictions[from..from + rows],
            &d.scores[from..from + rows],
        );
        from += rows;
        let anomalies = predictions.iter().filter(|&&p| p == -1).count();
        rollout.compare(
            (&job.production.0, &job.production.1),
            (predictions, scores),
        );
        state
            .metrics
            .observe_variant(&name, version, "shadow", rows, anomalies);
        // Each predict's share of the batch's scoring time.
        let share = took.mul_f64(rows as f64 / total as f64);
        record((rows, anomalies), share, false, candidate.drift.as_ref());
    }
}
