//! Health: `/health` (what the guide's `HealthCheck().check_dependencies()` reports),
//! `/health/live` (the process answers) and `/health/ready` (dependencies reachable).
//! No auth: load balancers and probes call these.

use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::error::ApiError;
use crate::state::AppState;

pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(health))
        .routes(routes!(live))
        .routes(routes!(ready))
}

/// Probes give up on a dependency after this long.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

async fn probe<T, E: std::fmt::Display>(f: impl Future<Output = Result<T, E>>) -> (bool, Value) {
    let start = Instant::now();
    match tokio::time::timeout(PROBE_TIMEOUT, f).await {
        Ok(Ok(_)) => (
            true,
            json!({"status": "up", "latency_ms": ms(start.elapsed())}),
        ),
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "health probe failed");
            (
                false,
                json!({"status": "down", "latency_ms": ms(start.elapsed())}),
            )
        }
        Err(_) => (false, json!({"status": "down", "error": "timeout"})),
    }
}

/// Dependencies' health
///
/// The database, queue, artifact store and workers, each with its status.
#[utoipa::path(
    get,
    path = "/health",
    operation_id = "health",
    tag = "meta",
    responses(
        (status = 200, description = "healthy or degraded", body = crate::openapi_doc::types::Health),
        (status = 503, description = "unhealthy: the database is down", body = crate::openapi_doc::types::Health),
    ),
)]
async fn health(State(state): State<AppState>) -> (StatusCode, axum::Json<Value>) {
    let (db_up, database) = probe(state.meta.ping()).await;
    let (artifacts_up, artifact_store) = probe(state.artifacts.ping()).await;
    let kind = state.queue.kind();
    let start = Instant::now();
    let counted = tokio::time::timeout(PROBE_TIMEOUT, async {
        state.queue.ping().await.map_err(|e| e.to_string())?;
        state.meta.job_counts().await.map_err(|e| e.to_string())
    })
    .await
    .unwrap_or_else(|_| Err("timeout".into()));
    let (queue_up, queued, queue) = match counted {
        Ok((queued, running)) => (
            true,
            queued,
            json!({"status": "up", "latency_ms": ms(start.elapsed()), "kind": kind,
                   "queued": queued, "running": running}),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "queue health probe failed");
            (false, 0, json!({"status": "down", "kind": kind}))
        }
    };
    // In-process: this server's worker tasks; Redis: worker processes with a recent
    // heartbeat, wherever they run.
    let workers = match tokio::time::timeout(PROBE_TIMEOUT, state.queue.live_workers()).await {
        Ok(Ok(n)) => n,
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "worker count failed");
            0
        }
        Err(_) => 0,
    };
    let mut reasons = Vec::new();
    if !db_up {
        reasons.push("the metadata database is unreachable".to_string());
    }
    if !artifacts_up {
        reasons.push("the artifact store is unreachable".to_string());
    }
    if !queue_up && kind == "redis" {
        // Named, so that an operator knows which server to look at; submissions still
        // answer 202 (the job is stored) and are delivered when Redis returns.
        reasons.push(
            "Redis (the job queue) is unreachable: jobs submitted meanwhile are kept in \
             the metadata store and delivered when it returns"
                .to_string(),
        );
    } else if !queue_up {
        reasons.push("the job queue is unreachable".to_string());
    }
    // Jobs delivered through Redis run only in `pynomaly worker` processes: with none
    // alive, queued jobs wait. (The in-process queue's workers are this server's own.)
    if kind == "redis" && workers == 0 && queued > 0 {
        reasons.push(format!(
            "no live worker: {queued} queued job(s) wait for a `pynomaly worker`"
        ));
    }
    let status = if !db_up {
        "unhealthy"
    } else if reasons.is_empty() {
        "healthy"
    } else {
        "degraded"
    };
    let code = if status == "unhealthy" {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    (
        code,
        axum::Json(json!({
            "status": status,
            "reasons": reasons,
            "version": env!("CARGO_PKG_VERSION"),
            "uptime_s": (state.started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
            "checks": {
                "database": database,
                "queue": queue,
                "artifact_store": artifact_store,
                "workers": {"status": if workers > 0 { "up" } else { "none" },
                            "active": workers, "busy": state.queue.busy()},
            },
        })),
    )
}

/// Liveness: the process answers
#[utoipa::path(
    get,
    path = "/health/live",
    operation_id = "live",
    tag = "meta",
    responses((status = 200, description = "Alive", body = crate::openapi_doc::types::Status)),
)]
async fn live() -> axum::Json<Value> {
    axum::Json(json!({"status": "alive"}))
}

/// Readiness: dependencies reachable
#[utoipa::path(
    get,
    path = "/health/ready",
    operation_id = "ready",
    tag = "meta",
    responses((status = 200, description = "Ready", body = crate::openapi_doc::types::Status)),
)]
async fn ready(State(state): State<AppState>) -> Result<axum::Json<Value>, ApiError> {
    let (db_up, _) = probe(state.meta.ping()).await;
    let (artifacts_up, _) = probe(state.artifacts.ping()).await;
    let (queue_up, _) = probe(state.queue.ping()).await;
    if db_up && artifacts_up && queue_up {
        Ok(axum::Json(json!({"status": "ready"})))
    } else {
        Err(ApiError::Unavailable {
            message: "not ready: a dependency is unreachable (see GET /health)".into(),
            retry_after_s: Some(5),
        })
    }
}
