//! # pynomaly-api: the HTTP service
//!
//! The `/api/v1` contract (`shared/api-contract.md`) over axum: one router per resource in
//! [`routes`], merged in one `api_router()`; one [`ApiError`](error::ApiError) mapping
//! every failure to the contract's error shape; API-key auth with scopes checked by an
//! extractor in each handler's signature; request ids, JSON logs, Prometheus metrics and
//! request timeouts in one middleware; CPU work (fitting, scoring large inputs) off the
//! async threads.
//!
//! [`Application::build`] wires the embedded default (SQLite metadata, local artifacts,
//! in-process job queue) from [`Settings`], binds (port 0 in tests) and reports its port;
//! [`Application::run_until`] serves until a shutdown future completes, then drains.

pub mod auth;
mod cpu;
pub mod error;
mod extract;
mod metrics;
mod middleware;
mod openapi_doc;
pub mod routes;
pub mod settings;
mod startup;
mod state;
mod telemetry;

pub use auth::{CreatedKey, create_api_key};
pub use settings::{Settings, SettingsError};
pub use startup::{Application, StartupError, shutdown_signal};
pub use state::AppState;
pub use telemetry::init_tracing;
