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

/// Queued jobs that have not drained for this long while no job runs make `/health`
/// `degraded` (longer than the Redis queue's retry backoffs, during which a job waits
/// queued on purpose).
const DRAIN_STALL: Duration = Duration::from_secs(120);

/// What `/health` saw of the deployment's queue: since when jobs have waited with none
/// running and none leaving the queue.
#[derive(Debug, Default)]
pub(crate) struct DrainWatch(std::sync::Mutex<Option<(Instant, i64)>>);

impl DrainWatch {
    /// Records a count of `queued` and `running` jobs; returns how long the queue has been
    /// stalled (jobs waiting, none running, the count not falling) as far as the probes saw.
    fn observe(&self, queued: i64, running: i64) -> Option<Duration> {
        let mut seen = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if queued == 0 || running > 0 {
            *seen = None;
            return None;
        }
        match *seen {
            Some((since, before)) if queued >= before => {
                // More may have arrived; none left: still stalled since then.
                *seen = Some((since, queued));
                Some(since.elapsed())
            }
            _ => {
                // First seen waiting, or some left the queue since: count from now.
                *seen = Some((Instant::now(), queued));
                Some(Duration::ZERO)
            }
        }
    }
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
    let (queue_up, queued, running, queue) = match counted {
        Ok((queued, running)) => (
            true,
            queued,
            running,
            json!({"status": "up", "latency_ms": ms(start.elapsed()), "kind": kind,
                   "queued": queued, "running": running}),
        ),
        Err(e) => {
            tracing::warn!(error = %e, "queue health probe failed");
            (false, 0, 0, json!({"status": "down", "kind": kind}))
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
        // Named, so that an operator knows which server to look at.
        reasons.push(
            "Redis (the job queue) is unreachable: job submissions are answered 503 until \
             it returns; predicts keep serving"
                .to_string(),
        );
    } else if !queue_up {
        reasons.push("the job queue is unreachable".to_string());
    }
    // Jobs delivered through Redis run only in `pynomaly worker` processes: with none
    // alive, queued jobs wait. (The in-process queue's workers are this server's own.)
    let no_worker = kind == "redis" && workers == 0 && queued > 0;
    if no_worker {
        reasons.push(format!(
            "no live worker: {queued} queued job(s) wait for a `pynomaly worker`"
        ));
    }
    // Workers alive but the queue does not move: jobs the queue does not deliver.
    let stalled = if queue_up {
        state.drain.observe(queued, running)
    } else {
        None
    };
    if let Some(stalled) = stalled
        && stalled >= DRAIN_STALL
        && !no_worker
    {
        reasons.push(format!(
            "{queued} queued job(s) have not drained for {}s while no job runs \
             ({workers} live worker(s) idle)",
            stalled.as_secs()
        ));
    }
    if let (_, Some(e)) = state.queue.reconcile_failures() {
        reasons.push(format!(
            "the job-queue reconciler (which re-sends jobs Redis lost) cannot run: {e}"
        ));
    }
    let disk = match crate::disk::free_bytes(&state.data_dir) {
        Ok(space) => {
            state.metrics.ops().set_data_dir_space(space);
            if space.is_low() {
                reasons.push(format!(
                    "the data directory {} is nearly full: {} bytes free of {}; writes \
                     may answer 507",
                    state.data_dir.display(),
                    space.available,
                    space.total
                ));
            }
            json!({"status": if space.is_low() { "low" } else { "ok" },
                   "path": state.data_dir.display().to_string(),
                   "free_bytes": space.available, "total_bytes": space.total})
        }
        Err(e) => {
            reasons.push(format!(
                "the data directory {} cannot be examined: {e}",
                state.data_dir.display()
            ));
            json!({"status": "unknown", "path": state.data_dir.display().to_string(),
                   "error": e.to_string()})
        }
    };
    let ops = state.metrics.ops();
    ops.set_dependency_up("database", db_up);
    ops.set_dependency_up("queue", queue_up);
    ops.set_dependency_up("artifact_store", artifacts_up);
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
                "disk": disk,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_queue_stalls_while_jobs_wait_none_runs_and_none_leaves() {
        let watch = DrainWatch::default();
        assert_eq!(watch.observe(0, 0), None, "nothing waits");
        assert_eq!(watch.observe(3, 0), Some(Duration::ZERO), "first seen");
        std::thread::sleep(Duration::from_millis(20));
        let stalled = watch.observe(3, 0).unwrap();
        assert!(stalled >= Duration::from_millis(20), "{stalled:?}");
        // More arrive: still stalled since the first sight.
        assert!(watch.observe(5, 0).unwrap() >= stalled);
        // One leaves the queue: progress, counted from now.
        assert!(watch.observe(4, 0).unwrap() < stalled);
        // A job runs: not stalled.
        assert_eq!(watch.observe(4, 1), None);
        assert_eq!(watch.observe(4, 0), Some(Duration::ZERO));
    }
}
