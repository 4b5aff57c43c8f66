//! # pynomaly-api: the HTTP service
//!
//! The `/api/v1` contract (`shared/api-contract.md`) over axum: one router per resource in
//! [`routes`], merged in one `api_router()`; one [`ApiError`](error::ApiError) mapping
//! every failure to the contract's error shape; API-key auth with scopes checked by an
//! extractor in each handler's signature; request ids, JSON logs, Prometheus metrics and
//! request timeouts in one middleware; CPU work (fitting, scoring large inputs) off the
//! async threads.
//!
//! [`Application::build`] wires the parts [`Settings`] name — the embedded default
//! (SQLite metadata, local artifacts, in-process job queue) or the scale-out shape
//! (Postgres, S3, Redis-delivered jobs, model changes announced across instances) — binds
//! (port 0 in tests) and reports its port; [`Application::run_until`] serves until a
//! shutdown future completes, then drains. [`WorkerProcess`] is `pynomaly worker`: the
//! same parts, running jobs and serving nothing; [`migrate`] is `pynomaly migrate`.

mod audit;
pub mod auth;
mod cpu;
pub mod error;
mod extract;
mod metrics;
mod middleware;
mod openapi_doc;
mod ops_metrics;
mod ratelimit;
pub mod routes;
mod security_headers;
mod server;
pub mod settings;
mod startup;
mod state;
mod telemetry;
mod users;

pub use auth::{CreatedKey, create_api_key};
pub use settings::{Secret, Settings, SettingsError};
pub use startup::{
    Application, StartupError, WorkerProcess, migrate, open_artifacts, open_metadata,
    shutdown_signal,
};
pub use state::AppState;
pub use telemetry::{
    TelemetryError, TelemetryGuard, TraceSampler, TraceSettings, init_telemetry, init_tracing,
};
