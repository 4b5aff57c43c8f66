//! # pynomaly-api: the HTTP service
//!
//! The `/api/v1` contract (`docs/api.md`) over axum: one router per resource in
//! [`routes`], merged in one `api_router()`; one [`ApiError`](error::ApiError) mapping
//! every failure to the contract's error shape; API-key auth with scopes checked by an
//! extractor in each handler's signature; request ids, JSON logs, Prometheus metrics and
//! request timeouts in one middleware; CPU work (fitting, scoring large inputs) off the
//! async threads.
//!
//! [`Application::build`] wires the parts the settings name (opened by
//! `pynomaly-runtime`: the embedded default — SQLite metadata, local artifacts,
//! in-process job queue — or the scale-out shape — Postgres, S3, Redis-delivered jobs,
//! model changes announced across instances), binds (port 0 in tests) and reports its
//! port; [`Application::run_until`] serves until a shutdown future completes, then drains.
//! [`MetricsPort`] serves `/metrics` alone, for `pynomaly worker` too. This crate holds
//! HTTP only: no process setup, no SQL.

mod access;
mod audit;
pub mod auth;
mod cpu;
mod disk;
pub mod error;
mod explain;
mod exposition;
mod extract;
mod metrics;
mod middleware;
mod openapi_doc;
mod ops_metrics;
mod ratelimit;
mod request_id;
pub mod routes;
mod security_headers;
mod server;
mod shadow;
mod startup;
mod state;
mod telemetry;
mod tls;
mod unread_body;
mod users;

pub use auth::CreatedKey;
pub use metrics::Metrics;
pub use startup::{Application, MetricsPort};
pub use state::AppState;
pub use tls::{Tls, TlsError};
