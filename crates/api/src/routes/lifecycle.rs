//! Model lifecycle: promote a version to production, archive one, roll back to the
//! previous production version; canary and shadow rollouts; and the rollout fields of a
//! training request (`promote`, `gate_metric`, `min_improvement`, `validation_data`). The registry does the changes
//! (`pynomaly_models`'s lifecycle and rollout modules); this is their HTTP form.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::IntoResponse;
use pynomaly_jobs::{RetrainSchedule, ValidationSource, next_slot, parse_cron};
use pynomaly_models::{
    GateMetric, Guards, NewRollout, PromotePolicy, Registration, Rollout, RolloutMode,
    ValidationSet,
};
use pynomaly_store::{ARCHIVED, ModelSchedule, NewStage, PRODUCTION, StageChange};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::access::{ReadAccess, WriteAccess};
use crate::auth::Principal;
use crate::error::ApiError;
use crate::extract::{ApiJson, RequestBody, Rows, diagnose_rows, parse};
use crate::request_id::current_request_id;
use crate::routes::models::{parse_version, source_train_spec};
use crate::routes::{ApiQuery, check_model_name};
use crate::state::AppState;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(promote))
        .routes(routes!(archive))
        .routes(routes!(rollback))
        .routes(routes!(upload))
        .routes(routes!(start_canary, canary, end_canary))
        .routes(routes!(promote_canary))
        .routes(routes!(set_schedule, schedule, delete_schedule))
}

fn schedule_json(s: &ModelSchedule) -> Value {
    let mut out = s.schedule.clone();
    out["model_name"] = json!(s.model_name);
    out["next_run_at"] = json!(s.next_run_at);
    out["last_run_at"] = json!(s.last_run_at);
    out["last_job_id"] = json!(s.last_job_id);
    out
}

/// `PUT /api/v1/models/{name}/schedule`: `cron` and `training_data`, with what a training
/// from a data source takes (algorithm, parameters, contamination, label_column, promote,
/// gate_metric, min_improvement, validation_data).
#[utoipa::path(
    put,
    path = "/api/v1/models/{name}/schedule",
    operation_id = "set_schedule",
    tag = "lifecycle",
    summary = "Retrain on a schedule",
    description = "Cron (UTC): each slot submits a training job from training_data, once across instances.",
    params(("name" = String, Path, description = "The model's name")),
    request_body = crate::openapi_doc::ScheduleRequest,
    responses(
        (status = 200, description = "The schedule", body = crate::openapi_doc::types::Schedule),
        (status = 404, description = "not_found: the data source does not exist", body = crate::openapi_doc::types::Error),
    ),
    security(("bearer" = ["write"])),
)]
async fn set_schedule(
    State(state): State<AppState>,
    WriteAccess(caller): WriteAccess,
    Path(name): Path<String>,
    ApiJson(mut body): ApiJson<RequestBody>,
) -> Result<axum::Json<Value>, ApiError> {
    check_model_name(&name)?;
    let expression = body
        .take_str("cron")?
        .ok_or_else(|| invalid("cron", "'cron' is required (e.g. \"0 3 * * *\")".into()))?;
    let cron = parse_cron(&expression)
        .map_err(|e| invalid("cron", format!("'cron' is not a cron expression: {e}")))?;
    let uri = body.take_str("training_data")?.ok_or_else(|| {
        invalid(
            "training_data",
            "'training_data' (a data source) is required".into(),
        )
    })?;
    if body.data.is_some() {
        return Err(invalid(
            "data",
            "a schedule trains from 'training_data', not inline 'data'".into(),
        ));
    }
    let by = caller.label();
    let spec = source_train_spec(&state, &by, &name, uri, &mut body)?;
    let now = chrono::Utc::now();
    let next = next_slot(&cron, now)
        .ok_or_else(|| invalid("cron", format!("'{expression}' has no slot after now")))?;
    let stored = RetrainSchedule {
        cron: expression,
        spec,
        created_by: by,
    };
    let stored = serde_json::to_value(&stored).map_err(ApiError::internal)?;
    let saved = state
        .meta
        .set_schedule(&caller.tenant, &name, &stored, next)
        .await?;
    Ok(axum::Json(schedule_json(&saved)))
}

/// A model's retraining schedule
#[utoipa::path(
    get,
    path = "/api/v1/models/{name}/schedule",
    operation_id = "get_schedule",
    tag = "lifecycle",
    params(("name" = String, Path, description = "The model's name")),
    responses(
        (status = 200, description = "The schedule", body = crate::openapi_doc::types::Schedule),
        (status = 404, description = "not_found: the model has no schedule", body = crate::openapi_doc::types::Error),
    ),
    security(("bearer" = ["read"])),
)]
async fn schedule(
    State(state): State<AppState>,
    ReadAccess(caller): ReadAccess,
    Path(name): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    check_model_name(&name)?;
    let found = state.meta.schedule(&caller.tenant, &name).await?;
    let found =
        found.ok_or_else(|| ApiError::NotFound(format!("model '{name}' has no schedule")))?;
    Ok(axum::Json(schedule_json(&found)))
}

/// Remove a model's retraining schedule
#[utoipa::path(
    delete,
    path = "/api/v1/models/{name}/schedule",
    operation_id = "delete_schedule",
    tag = "lifecycle",
    params(("name" = String, Path, description = "The model's name")),
    responses(
        (status = 200, description = "Removed", body = crate::openapi_doc::types::ScheduleDeleted),
        (status = 404, description = "not_found: the model has no schedule", body = crate::openapi_doc::types::Error),
    ),
    security(("bearer" = ["write"])),
)]
async fn delete_schedule(
    State(state): State<AppState>,
    WriteAccess(caller): WriteAccess,
    Path(name): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    check_model_name(&name)?;
    if !state.meta.delete_schedule(&caller.tenant, &name).await? {
        return Err(ApiError::NotFound(format!(
            "model '{name}' has no schedule"
        )));
    }
    Ok(axum::Json(json!({"model_name": name, "deleted": true})))
}

/// `PUT /api/v1/models/{name}/canary`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CanaryRequest {
    /// A staging version.
    #[schema(minimum = 1)]
    version: i64,
    /// Share of predicts (naming no version) the candidate answers (canary, default 10) or
    /// shadows (shadow, default 100).
    #[schema(exclusive_minimum = 0, maximum = 100)]
    traffic_percent: Option<f64>,
    #[serde(default)]
    #[schema(value_type = crate::openapi_doc::types::RolloutMode, default = "canary")]
    mode: RolloutMode,
    #[serde(default)]
    #[schema(value_type = crate::openapi_doc::types::Guards)]
    guards: Guards,
    /// After `POST …/canary/promote`, how long the promoted version is watched by these
    /// guards against its own training rate, and rolled back on a breach (0: not watched).
    #[serde(default)]
    #[schema(minimum = 0, maximum = 2592000, default = 0)]
    bake_seconds: u64,
}

/// The longest bake asked for (30 days).
const MAX_BAKE_SECONDS: u64 = 30 * 24 * 3600;

fn check_bake(seconds: u64) -> Result<u64, ApiError> {
    if seconds > MAX_BAKE_SECONDS {
        return Err(invalid(
            "bake_seconds",
            format!("'bake_seconds' must be from 0 to {MAX_BAKE_SECONDS} (30 days), got {seconds}"),
        ));
    }
    Ok(seconds)
}

/// The guards' figures within their ranges.
fn check_guards(g: &Guards) -> Result<(), ApiError> {
    let ratios = [
        (
            "guards.max_anomaly_rate_ratio",
            g.max_anomaly_rate_ratio,
            1.0,
            1e6,
        ),
        ("guards.max_anomaly_rate", g.max_anomaly_rate, 0.0, 1.0),
        ("guards.max_error_rate", g.max_error_rate, 0.0, 1.0),
        ("guards.max_latency_ratio", g.max_latency_ratio, 1.0, 1e6),
    ];
    for (field, value, min, max) in ratios {
        if !(value.is_finite() && (min..=max).contains(&value)) {
            return Err(invalid(
                field,
                format!("'{field}' must be from {min} to {max}, got {value}"),
            ));
        }
    }
    if !(MIN_WINDOW_S..=MAX_WINDOW_S).contains(&g.window_seconds) {
        return Err(invalid(
            "guards.window_seconds",
            format!(
                "'guards.window_seconds' must be from {MIN_WINDOW_S} to {MAX_WINDOW_S}, got {}",
                g.window_seconds
            ),
        ));
    }
    Ok(())
}

/// The shortest and longest sliding window the guards judge (seconds).
const MIN_WINDOW_S: u64 = 10;
const MAX_WINDOW_S: u64 = 86_400;

/// Start (or replace) a canary or shadow rollout of a staging version
#[utoipa::path(
    put,
    path = "/api/v1/models/{name}/canary",
    operation_id = "start_canary",
    tag = "lifecycle",
    params(("name" = String, Path, description = "The model's name")),
    request_body = CanaryRequest,
    responses(
        (status = 200, description = "The rollout, with this instance's comparison", body = crate::openapi_doc::types::Canary),
        (status = 404, description = "not_found: no such model or version", body = crate::openapi_doc::types::Error),
        (status = 409, description = "conflict: the version is not staging, or the model has no production version", body = crate::openapi_doc::types::Error),
    ),
    security(("bearer" = ["write"])),
)]
async fn start_canary(
    State(state): State<AppState>,
    WriteAccess(caller): WriteAccess,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<axum::Json<Value>, ApiError> {
    check_model_name(&name)?;
    let request: CanaryRequest = parse(&body)?;
    let percent = request.traffic_percent.unwrap_or(match request.mode {
        RolloutMode::Canary => 10.0,
        RolloutMode::Shadow => 100.0,
        RolloutMode::Bake => {
            return Err(invalid(
                "mode",
                "'mode' must be canary or shadow (a bake follows a promotion that asks for \
                 bake_seconds)"
                    .into(),
            ));
        }
    });
    if request.mode == RolloutMode::Bake {
        return Err(invalid(
            "mode",
            "'mode' must be canary or shadow (a bake follows a promotion that asks for \
             bake_seconds)"
                .into(),
        ));
    }
    if !(percent > 0.0 && percent <= 100.0) {
        return Err(invalid(
            "traffic_percent",
            format!("'traffic_percent' must be above 0 and at most 100, got {percent}"),
        ));
    }
    check_guards(&request.guards)?;
    if request.version < 1 {
        return Err(invalid(
            "version",
            format!("'version' must be an integer >= 1, got {}", request.version),
        ));
    }
    let new = NewRollout {
        version: request.version,
        traffic_percent: percent,
        mode: request.mode,
        guards: request.guards,
        bake_seconds: check_bake(request.bake_seconds)?,
    };
    let active = state
        .registry
        .start_rollout(&caller.tenant, &name, new, &caller.label())
        .await?;
    Ok(axum::Json(active.report()))
}

/// The rollout and its live comparison with production (this instance)
#[utoipa::path(
    get,
    path = "/api/v1/models/{name}/canary",
    operation_id = "get_canary",
    tag = "lifecycle",
    params(("name" = String, Path, description = "The model's name")),
    responses(
        (status = 200, description = "The rollout", body = crate::openapi_doc::types::Canary),
        (status = 404, description = "not_found: the model has no rollout", body = crate::openapi_doc::types::Error),
    ),
    security(("bearer" = ["read"])),
)]
async fn canary(
    State(state): State<AppState>,
    ReadAccess(caller): ReadAccess,
    Path(name): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    check_model_name(&name)?;
    let active = state.registry.rollout(&caller.tenant, &name).await?;
    let active =
        active.ok_or_else(|| ApiError::NotFound(format!("model '{name}' has no canary")))?;
    Ok(axum::Json(active.report()))
}

/// End the rollout
#[utoipa::path(
    delete,
    path = "/api/v1/models/{name}/canary",
    operation_id = "end_canary",
    tag = "lifecycle",
    params(("name" = String, Path, description = "The model's name")),
    responses(
        (status = 200, description = "Ended", body = crate::openapi_doc::types::CanaryEnded),
        (status = 404, description = "not_found: the model has no rollout", body = crate::openapi_doc::types::Error),
    ),
    security(("bearer" = ["write"])),
)]
async fn end_canary(
    State(state): State<AppState>,
    WriteAccess(caller): WriteAccess,
    Path(name): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    check_model_name(&name)?;
    let ended = state
        .registry
        .end_rollout(&caller.tenant, &name, &caller.label(), "ended", Value::Null)
        .await?;
    let ended = ended.ok_or_else(|| ApiError::NotFound(format!("model '{name}' has no canary")))?;
    Ok(axum::Json(
        json!({"model_name": name, "ended": true, "canary": ended}),
    ))
}

/// Promote the rollout's candidate to production (ends the rollout)
#[utoipa::path(
    post,
    path = "/api/v1/models/{name}/canary/promote",
    operation_id = "promote_canary",
    tag = "lifecycle",
    params(("name" = String, Path, description = "The model's name")),
    request_body(content = Option<PromoteRequest>, description = "Optional: why (recorded in the stage history and the audit log), and the bake (default: the canary's)"),
    responses(
        (status = 200, description = "The version as it is now", body = crate::openapi_doc::StageChange),
        (status = 404, description = "not_found: the model has no rollout", body = crate::openapi_doc::types::Error),
        (status = 409, description = "conflict: the change does not apply to the version's stage", body = crate::openapi_doc::types::Error),
    ),
    security(("bearer" = ["write"])),
)]
async fn promote_canary(
    State(state): State<AppState>,
    WriteAccess(caller): WriteAccess,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<axum::Json<Value>, ApiError> {
    model_change(&state, &caller, &name, &body, ModelChange::PromoteCanary).await
}

/// `POST /api/v1/models/{name}/versions`'s query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct UploadQuery {
    /// `always` (production at once) or `manual` (staging until promoted).
    #[param(value_type = Option<UploadPromote>, inline)]
    promote: Option<String>,
}

/// Registers a model fitted elsewhere (the Python package's estimators, `to_bytes()`): the
/// body is the model file, the same bytes the service stores. `?promote=manual` keeps it in
/// staging; `always` (default) puts it in production.
/// `promote` of an upload.
#[derive(utoipa::ToSchema)]
#[schema(rename_all = "snake_case")]
#[allow(dead_code)]
enum UploadPromote {
    Always,
    Manual,
}

/// Register a model fitted elsewhere as the next version
///
/// The body is a model file: the Python estimators' `to_bytes()`.
#[utoipa::path(
    post,
    path = "/api/v1/models/{name}/versions",
    operation_id = "upload_model",
    tag = "lifecycle",
    params(("name" = String, Path, description = "The model's name"), UploadQuery),
    request_body(content = inline(crate::openapi_doc::ModelFile), content_type = "application/octet-stream", description = "A pynomaly model file"),
    responses((status = 201, description = "The new version, with its promotion", body = crate::openapi_doc::types::ModelVersion)),
    security(("bearer" = ["write"])),
)]
async fn upload(
    State(state): State<AppState>,
    WriteAccess(caller): WriteAccess,
    Path(name): Path<String>,
    ApiQuery(q): ApiQuery<UploadQuery>,
    body: Bytes,
) -> Result<axum::response::Response, ApiError> {
    check_model_name(&name)?;
    let promote = match q.promote.as_deref() {
        None | Some("always") => PromotePolicy::Always,
        Some("manual") => PromotePolicy::Manual,
        Some(other) => {
            return Err(invalid(
                "promote",
                format!("'promote' must be always or manual for an uploaded model, got '{other}'"),
            ));
        }
    };
    let model = detect_core::FittedModel::from_bytes(&body).map_err(|e| {
        invalid(
            "body",
            format!("the body is not a pynomaly model file ({e}); send the bytes of to_bytes()"),
        )
    })?;
    let lineage = json!({
        "training_data": "uploaded",
        "rows": model.n_samples(),
        "sha256": hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&body)),
    });
    let reg = Registration {
        lineage: Some(lineage),
        ..Registration::new(caller.tenant.clone(), name)
    };
    let rollout = Rollout {
        promote,
        ..Rollout::default()
    };
    let (loaded, promotion) = state
        .registry
        .register_and_roll_out(model, reg, None, &rollout, None, &caller.label())
        .await?;
    let mut out = serde_json::to_value(&*loaded.version).map_err(ApiError::internal)?;
    out["promotion"] = serde_json::to_value(&promotion).map_err(ApiError::internal)?;
    Ok((axum::http::StatusCode::CREATED, axum::Json(out)).into_response())
}

/// The optional body of a stage change: why, in the caller's words.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = StageChangeRequest)]
struct StageRequest {
    /// Why, recorded in the stage history and the audit log.
    #[schema(
        min_length = 1,
        max_length = 1000,
        pattern = "[^\\t\\n\\x0b\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]"
    )]
    reason: Option<String>,
}

/// The body of a promotion: why, and the bake that follows it.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct PromoteRequest {
    /// Why, recorded in the stage history and the audit log.
    #[schema(
        min_length = 1,
        max_length = 1000,
        pattern = "[^\\t\\n\\x0b\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000]"
    )]
    reason: Option<String>,
    /// How long the promoted version is watched by `guards` against its own training
    /// rate, and rolled back on a breach (0: not watched). A canary's promotion defaults
    /// to the canary's `bake_seconds`.
    #[schema(minimum = 0, maximum = 2592000)]
    bake_seconds: Option<u64>,
    /// The bake's guards (default: a canary's own, else the defaults).
    #[schema(value_type = Option<crate::openapi_doc::types::Guards>)]
    guards: Option<Guards>,
}

/// The body's `reason` (none without a body).
fn reason(body: &Bytes) -> Result<Option<String>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(None);
    }
    let request: StageRequest = parse(body)?;
    check_reason(request.reason)
}

fn check_reason(reason: Option<String>) -> Result<Option<String>, ApiError> {
    match reason {
        Some(r) if r.trim().is_empty() || r.chars().count() > 1000 => Err(ApiError::invalid_with(
            "'reason' must hold 1 to 1,000 characters",
            json!({"field": "reason"}),
        )),
        r => Ok(r),
    }
}

/// A promotion's body (all optional; none without a body), checked.
fn promote_body(body: &Bytes) -> Result<PromoteRequest, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(PromoteRequest::default());
    }
    let mut request: PromoteRequest = parse(body)?;
    request.reason = check_reason(request.reason.take())?;
    request.bake_seconds.map(check_bake).transpose()?;
    if let Some(g) = &request.guards {
        check_guards(g)?;
    }
    Ok(request)
}

fn changed(name: &str, c: StageChange) -> Result<axum::Json<Value>, ApiError> {
    let mut out = serde_json::to_value(&c.version).map_err(ApiError::internal)?;
    out["model_name"] = json!(name);
    out["previous_stage"] = json!(c.from);
    out["replaced_version"] = json!(c.replaced);
    Ok(axum::Json(out))
}

async fn change(
    state: &AppState,
    caller: &Principal,
    name: &str,
    version: &str,
    to: &str,
    why: &str,
    body: &Bytes,
) -> Result<axum::Json<Value>, ApiError> {
    check_model_name(name)?;
    let version = parse_version(version)?;
    let (note, bake) = if to == PRODUCTION {
        let request = promote_body(body)?;
        let guards = request.guards.unwrap_or_default();
        (request.reason, request.bake_seconds.map(|s| (s, guards)))
    } else {
        (reason(body)?, None)
    };
    let change = NewStage {
        to: to.into(),
        by: caller.label(),
        reason: why.into(),
        note,
    };
    let c = state
        .registry
        .change_stage(
            &caller.tenant,
            name,
            version,
            change,
            Some(current_request_id()),
        )
        .await?;
    if let Some((seconds, guards)) = bake
        && c.replaced.is_some()
    {
        state
            .registry
            .start_bake(
                &caller.tenant,
                name,
                version,
                c.replaced,
                seconds,
                guards,
                &caller.label(),
            )
            .await?;
    }
    changed(name, c)
}

/// Make a version production (the production version it replaces is archived)
#[utoipa::path(
    post,
    path = "/api/v1/models/{name}/versions/{version}/promote",
    operation_id = "promote_version",
    tag = "lifecycle",
    params(("name" = String, Path, description = "The model's name"), ("version" = i64, Path, minimum = 1, description = "A version of the model")),
    request_body(content = Option<PromoteRequest>, description = "Optional: why (recorded in the stage history and the audit log), and a bake"),
    responses(
        (status = 200, description = "The version as it is now", body = crate::openapi_doc::StageChange),
        (status = 404, description = "not_found: no such model or version", body = crate::openapi_doc::types::Error),
        (status = 409, description = "conflict: the change does not apply to the version's stage", body = crate::openapi_doc::types::Error),
    ),
    security(("bearer" = ["write"])),
)]
async fn promote(
    State(state): State<AppState>,
    WriteAccess(caller): WriteAccess,
    Path((name, version)): Path<(String, String)>,
    body: Bytes,
) -> Result<axum::Json<Value>, ApiError> {
    change(
        &state, &caller, &name, &version, PRODUCTION, "promote", &body,
    )
    .await
}

/// Archive a version that is not production
#[utoipa::path(
    post,
    path = "/api/v1/models/{name}/versions/{version}/archive",
    operation_id = "archive_version",
    tag = "lifecycle",
    params(("name" = String, Path, description = "The model's name"), ("version" = i64, Path, minimum = 1, description = "A version of the model")),
    request_body(content = Option<StageRequest>, description = "Optional: why, recorded in the stage history and the audit log"),
    responses(
        (status = 200, description = "The version as it is now", body = crate::openapi_doc::StageChange),
        (status = 404, description = "not_found: no such model or version", body = crate::openapi_doc::types::Error),
        (status = 409, description = "conflict: the change does not apply to the version's stage", body = crate::openapi_doc::types::Error),
    ),
    security(("bearer" = ["write"])),
)]
async fn archive(
    State(state): State<AppState>,
    WriteAccess(caller): WriteAccess,
    Path((name, version)): Path<(String, String)>,
    body: Bytes,
) -> Result<axum::Json<Value>, ApiError> {
    change(&state, &caller, &name, &version, ARCHIVED, "archive", &body).await
}

/// Put the previous production version back
#[utoipa::path(
    post,
    path = "/api/v1/models/{name}/rollback",
    operation_id = "rollback",
    tag = "lifecycle",
    params(("name" = String, Path, description = "The model's name")),
    request_body(content = Option<StageRequest>, description = "Optional: why, recorded in the stage history and the audit log"),
    responses(
        (status = 200, description = "The version as it is now", body = crate::openapi_doc::StageChange),
        (status = 404, description = "not_found: no such model", body = crate::openapi_doc::types::Error),
        (status = 409, description = "conflict: there is no previous production version", body = crate::openapi_doc::types::Error),
    ),
    security(("bearer" = ["write"])),
)]
async fn rollback(
    State(state): State<AppState>,
    WriteAccess(caller): WriteAccess,
    Path(name): Path<String>,
    body: Bytes,
) -> Result<axum::Json<Value>, ApiError> {
    model_change(&state, &caller, &name, &body, ModelChange::Rollback).await
}

/// A stage change asked of a model rather than of one of its versions.
enum ModelChange {
    Rollback,
    PromoteCanary,
}

async fn model_change(
    state: &AppState,
    caller: &Principal,
    name: &str,
    body: &Bytes,
    what: ModelChange,
) -> Result<axum::Json<Value>, ApiError> {
    check_model_name(name)?;
    let (tenant, by, request) = (&caller.tenant, caller.label(), Some(current_request_id()));
    let c = match what {
        ModelChange::Rollback => {
            let note = reason(body)?;
            state
                .registry
                .rollback(tenant, name, by, "rollback", note, request)
                .await?
        }
        ModelChange::PromoteCanary => {
            let p = promote_body(body)?;
            let bake = (p.bake_seconds, p.guards);
            state
                .registry
                .promote_rollout(tenant, name, &by, p.reason, request, bake)
                .await?
        }
    };
    changed(name, c)
}

fn invalid(field: &str, message: String) -> ApiError {
    ApiError::invalid_with(message, json!({"field": field}))
}

/// The rollout fields of a training request: the policy, its gate and the validation rows.
///
/// # Errors
/// 422 naming the field: an unknown policy or metric, a negative or non-finite
/// `min_improvement`, validation rows that are not rows of numbers, labels that are not
/// 0/1 (or booleans) one per row, or `if_better` without validation rows.
pub(crate) fn take_rollout(
    body: &mut RequestBody,
    max_cells: usize,
) -> Result<(Rollout, Option<Validation>), ApiError> {
    let promote = match body.take_str("promote")?.as_deref() {
        None | Some("always") => PromotePolicy::Always,
        Some("manual") => PromotePolicy::Manual,
        Some("if_better") => PromotePolicy::IfBetter,
        Some(other) => {
            return Err(invalid(
                "promote",
                format!("'promote' must be always, manual or if_better, got '{other}'"),
            ));
        }
    };
    let gate_metric = match body.take_str("gate_metric")?.as_deref() {
        None | Some("roc_auc") => GateMetric::RocAuc,
        Some("average_precision") => GateMetric::AveragePrecision,
        Some("precision_at_contamination") => GateMetric::PrecisionAtContamination,
        Some(other) => {
            return Err(invalid(
                "gate_metric",
                format!(
                    "'gate_metric' must be roc_auc, average_precision or \
                     precision_at_contamination, got '{other}'"
                ),
            ));
        }
    };
    let min_improvement = match body.take("min_improvement") {
        None => 0.0,
        Some(v) => v
            .as_f64()
            .filter(|m| m.is_finite() && (0.0..=1.0).contains(m))
            .ok_or_else(|| {
                invalid(
                    "min_improvement",
                    format!("'min_improvement' must be a number from 0 to 1, got {v}"),
                )
            })?,
    };
    let bake_seconds = match body.take("bake_seconds") {
        None => 0,
        Some(v) => v.as_u64().filter(|s| *s <= MAX_BAKE_SECONDS).ok_or_else(|| {
            invalid(
                "bake_seconds",
                format!("'bake_seconds' must be an integer from 0 to {MAX_BAKE_SECONDS} (30 days), got {v}"),
            )
        })?,
    };
    let validation = body
        .take("validation_data")
        .map(|v| validation(v, max_cells))
        .transpose()?;
    if promote == PromotePolicy::IfBetter && validation.is_none() {
        return Err(invalid(
            "validation_data",
            "'promote': 'if_better' needs 'validation_data': {\"data\": rows, \"labels\": \
             [0 or 1 per row]}, or a data source: {\"source\": \"val.csv\", \"label_column\": \
             \"label\"}"
                .into(),
        ));
    }
    let rollout = Rollout {
        promote,
        gate_metric,
        min_improvement,
        bake_seconds,
    };
    Ok((rollout, validation))
}

/// A training's validation data: labelled rows, or a data source of them (its label
/// column, if the request named one).
pub(crate) enum Validation {
    Rows(ValidationSet),
    Source {
        source: String,
        label_column: Option<String>,
    },
}

impl Validation {
    /// The data source, with its label column (`validation_data.label_column`, else the
    /// training's).
    ///
    /// # Errors
    /// 422 naming `validation_data.label_column` when neither names one.
    pub(crate) fn source(
        source: String,
        label_column: Option<String>,
        training_label: Option<&str>,
    ) -> Result<ValidationSource, ApiError> {
        let label_column = label_column
            .or(training_label.map(str::to_string))
            .ok_or_else(|| {
                invalid(
                    "validation_data.label_column",
                    "a validation data source needs its label column: \
                     {\"source\": …, \"label_column\": \"label\"} (or the training's 'label_column')"
                        .into(),
                )
            })?;
        Ok(ValidationSource {
            source,
            label_column,
        })
    }
}

/// `validation_data`: `{"data", "labels"}` rows; `{"source", "label_column"}`; or a data
/// source's name alone.
fn validation(v: Value, max_cells: usize) -> Result<Validation, ApiError> {
    let source = |source: String, label_column: Option<String>| {
        if source.trim().is_empty() {
            return Err(invalid(
                "validation_data.source",
                "'validation_data.source' must name a data source".into(),
            ));
        }
        Ok(Validation::Source {
            source,
            label_column,
        })
    };
    match v {
        Value::String(uri) => source(uri, None),
        Value::Object(mut o) if o.contains_key("source") => {
            if let Some(extra) = o.keys().find(|k| *k != "source" && *k != "label_column") {
                return Err(invalid(
                    "validation_data",
                    format!(
                        "a validation data source takes 'source' and 'label_column', not '{extra}'"
                    ),
                ));
            }
            let field = |o: &mut serde_json::Map<String, Value>, name: &str| match o.remove(name) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s)),
                Some(other) => Err(invalid(
                    &format!("validation_data.{name}"),
                    format!("'validation_data.{name}' must be a string, got {other}"),
                )),
            };
            let uri = field(&mut o, "source")?.unwrap_or_default();
            let label = field(&mut o, "label_column")?;
            source(uri, label)
        }
        v => validation_set(v, max_cells).map(Validation::Rows),
    }
}

fn validation_set(v: Value, max_cells: usize) -> Result<ValidationSet, ApiError> {
    let Value::Object(mut v) = v else {
        return Err(invalid(
            "validation_data",
            "'validation_data' must be an object: {\"data\": rows, \"labels\": [0 or 1 per row]}"
                .into(),
        ));
    };
    if let Some(extra) = v.keys().find(|k| *k != "data" && *k != "labels") {
        return Err(invalid(
            "validation_data",
            format!("'validation_data' takes 'data' and 'labels', not '{extra}'"),
        ));
    }
    let data = v.remove("data").unwrap_or(Value::Null);
    let rows: Rows = serde_json::from_value(data.clone()).map_err(|_| {
        diagnose_rows(&data).unwrap_or_else(|| {
            invalid(
                "validation_data.data",
                "'validation_data.data' must be an array of rows of numbers".into(),
            )
        })
    })?;
    if rows.cells() > max_cells {
        return Err(invalid(
            "validation_data.data",
            format!("'validation_data.data' holds more than {max_cells} values"),
        ));
    }
    let x = rows.into_matrix()?;
    let labels = v
        .remove("labels")
        .and_then(|l| match l {
            Value::Array(items) => items
                .iter()
                .map(|i| match i {
                    Value::Bool(b) => Some(*b),
                    Value::Number(n) if n.as_f64() == Some(0.0) => Some(false),
                    Value::Number(n) if n.as_f64() == Some(1.0) => Some(true),
                    _ => None,
                })
                .collect::<Option<Vec<bool>>>(),
            _ => None,
        })
        .ok_or_else(|| {
            invalid(
                "validation_data.labels",
                "'validation_data.labels' must be an array of 0/1 (or true/false), one per row"
                    .into(),
            )
        })?;
    if labels.len() != x.nrows() {
        return Err(invalid(
            "validation_data.labels",
            format!(
                "'validation_data.labels' has {} labels for {} rows",
                labels.len(),
                x.nrows()
            ),
        ));
    }
    Ok(ValidationSet { data: x, labels })
}
