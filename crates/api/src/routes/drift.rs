//! `GET /api/v1/models/{name}/drift` (scope `read`): how what a model version has scored
//! on this instance compares with its training data, and the drift and data-quality
//! gauges exported at each scrape.
//!
//! The comparison itself is [`detect_core::drift`]; the windows are
//! [`pynomaly_models::ModelDrift`]. A version trained before reference profiles existed has
//! none: the answer says so (`"monitoring": "no_reference"`), it is not an error.

use axum::extract::{Path, State};
use detect_core::drift::{DriftReport, compare};
use pynomaly_models::{ModelDrift, WindowView, unix_now};
use serde::Deserialize;
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::access::ReadAccess;
use crate::error::ApiError;
use crate::routes::ApiQuery;
use crate::state::AppState;

/// Features exported per model in `pynomaly_data_drift_score` (the ones with the highest
/// PSI), so a wide model cannot flood Prometheus with series.
pub(crate) const MAX_METRIC_FEATURES: usize = 20;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(drift))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct DriftQuery {
    /// A version (default: the production version).
    #[param(value_type = Option<i64>, minimum = 1)]
    version: Option<String>,
}

/// Drift of a model version
///
/// What this instance scored in the current window against the training data: per-feature
/// PSI and KS with verdicts, the anomaly rate against training, data quality. Windows are
/// in memory, per instance, aligned on multiples of PYNOMALY_DRIFT_WINDOW_SECONDS.
#[utoipa::path(
    get,
    path = "/api/v1/models/{name}/drift",
    operation_id = "model_drift",
    tag = "models",
    params(("name" = String, Path, description = "The model's name"), DriftQuery),
    responses(
        (status = 200, description = "The drift report", body = crate::openapi_doc::types::DriftReport),
        (status = 404, description = "not_found: no such model or version", body = crate::openapi_doc::types::Error),
    ),
    security(("bearer" = ["read"])),
)]
async fn drift(
    State(state): State<AppState>,
    ReadAccess(caller): ReadAccess,
    Path(name): Path<String>,
    ApiQuery(q): ApiQuery<DriftQuery>,
) -> Result<axum::Json<Value>, ApiError> {
    let version = match q.version.as_deref() {
        None => None,
        Some(v) => Some(v.parse::<i64>().ok().filter(|v| *v >= 1).ok_or_else(|| {
            ApiError::invalid_with(
                format!("version must be an integer >= 1, got '{v}'"),
                json!({"field": "version"}),
            )
        })?),
    };
    let loaded = state
        .registry
        .load(&caller.tenant, &name, version)
        .await?
        .ok_or_else(|| match version {
            Some(v) => ApiError::NotFound(format!("model '{name}' has no version {v}")),
            None => ApiError::NotFound(format!("model '{name}' not found")),
        })?;
    let meta = &loaded.version;
    let config = state.registry.drift().config();
    let mut out = json!({
        "model_name": meta.model_name,
        "model_version": meta.version,
        "algorithm": meta.algorithm,
        "contamination": meta.contamination,
    });
    let Some(drift) = &loaded.drift else {
        let (monitoring, message) = if config.enabled {
            (
                "no_reference",
                "this version was trained before reference statistics were kept: train it again to watch its drift",
            )
        } else {
            (
                "disabled",
                "drift monitoring is off on this instance (PYNOMALY_DRIFT_MONITORING)",
            )
        };
        out["monitoring"] = json!(monitoring);
        out["message"] = json!(message);
        out["verdict"] = Value::Null;
        return Ok(axum::Json(out));
    };
    let thresholds = config.thresholds;
    let window = drift.reported_window(unix_now(), thresholds.min_samples);
    let report = compare(drift.reference(), &window.stats, &thresholds);
    out["monitoring"] = json!("active");
    fill(&mut out, drift, &window, &report);
    out["thresholds"] = json!({
        "psi_moderate": thresholds.psi_moderate,
        "psi_drift": thresholds.psi_drift,
        "ks_moderate": thresholds.ks_moderate,
        "ks_drift": thresholds.ks_drift,
        "min_samples": thresholds.min_samples,
        "significance": 0.001,
    });
    Ok(axum::Json(out))
}

fn fill(out: &mut Value, drift: &ModelDrift, window: &WindowView, report: &DriftReport) {
    out["verdict"] = json!(report.verdict.as_str());
    out["window"] = json!({
        "start": rfc3339(window.start),
        "end": rfc3339(window.end),
        "complete": window.complete,
        "length_seconds": drift.window_seconds(),
        "n_samples": report.rows,
    });
    out["reference_n_samples"] = json!(drift.reference().n_samples);
    out["anomaly_rate"] = json!(report.anomaly_rate);
    out["training_anomaly_rate"] = json!(report.training_anomaly_rate);
    out["anomaly_rate_verdict"] = json!(report.anomaly_rate_verdict);
    out["data_quality"] = json!(report.data_quality);
    let names = drift.feature_names();
    out["features"] = report
        .features
        .iter()
        .map(|f| {
            let mut v = serde_json::to_value(f).unwrap_or(Value::Null);
            v["feature"] = json!(names.get(f.index));
            v["verdict"] = json!(f.verdict.as_str());
            v
        })
        .collect();
}

fn rfc3339(unix: u64) -> String {
    chrono::DateTime::from_timestamp(unix as i64, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}

/// Sets `pynomaly_data_drift_score{model,feature}` (PSI) and
/// `pynomaly_data_quality_score{dataset=model}` from each model's reported window, for
/// windows that are running or just ended (older data is not current: not exported).
/// Several versions (or tenants) of one name: the most recent window wins.
pub(crate) fn export_metrics(
    registry: &pynomaly_models::ModelRegistry,
    metrics: &crate::metrics::Metrics,
) {
    let monitor = registry.drift();
    let thresholds = monitor.config().thresholds;
    let now = unix_now();
    let mut best: std::collections::HashMap<String, Exported> = std::collections::HashMap::new();
    for ((_tenant, name, version), drift) in monitor.models() {
        let window = drift.reported_window(now, thresholds.min_samples);
        let current_start = now - now % drift.window_seconds();
        if window.stats.rows == 0 || window.end < current_start {
            continue;
        }
        if best
            .get(&name)
            .is_some_and(|e| (e.start, e.version) >= (window.start, version))
        {
            continue;
        }
        let report = compare(drift.reference(), &window.stats, &thresholds);
        let mut scores: Vec<(String, f64)> = report
            .features
            .iter()
            .filter(|f| f.current_count > 0)
            .map(|f| (drift.feature_names()[f.index].clone(), f.psi))
            .collect();
        scores.sort_by(|a, b| b.1.total_cmp(&a.1));
        scores.truncate(MAX_METRIC_FEATURES);
        let exported = Exported {
            start: window.start,
            version,
            scores,
            quality: report.data_quality,
        };
        best.insert(name, exported);
    }
    let exported = best
        .into_iter()
        .map(|(name, e)| (name, e.scores, e.quality));
    metrics.set_drift(exported);
}

/// What one model name exports.
struct Exported {
    start: u64,
    version: i64,
    /// (feature, PSI), highest first.
    scores: Vec<(String, f64)>,
    quality: f64,
}
