//! # pynomaly-runtime: what every pynomaly process needs to start
//!
//! Each binary — `serve`, `worker`, `stream`, `keys`, `migrate` — starts the same way,
//! through this crate, and none of them reaches into the HTTP crate to do it:
//!
//! - [`Settings`]: typed, grouped by what they configure, read from the environment and
//!   validated once, with one error naming every bad variable ([`SettingsError`]).
//! - [`telemetry`]: JSON-line logs and OpenTelemetry traces ([`init_telemetry`]).
//! - [`KeyHasher`]: the server secret, the keyed hashes API keys are stored as, and keys
//!   derived from it; [`create_api_key`]; [`write_private`] for files only the owner reads.
//! - [`open_metadata`], [`open_artifacts`], [`open_registry`], [`open_jobs`]: the stores,
//!   the model registry and the job queue the settings name; [`migrate`];
//!   [`shutdown_signal`].
//!
//! It sits above the store, models and jobs crates and below the transports (HTTP, CLI,
//! stream), which it knows nothing of.

mod keys;
mod open;
mod settings;
pub mod telemetry;

pub use keys::{KeyHasher, create_api_key, privacy, write_private};
pub use open::{
    JobParts, StartupError, migrate, open_artifacts, open_jobs, open_metadata, open_registry,
    redis_pool, shutdown_signal,
};
pub use settings::{
    DatabaseSettings, Problem, QueueSettings, Secret, SecuritySettings, ServerSettings, Settings,
    SettingsError, StorageSettings, TelemetrySettings, TlsFiles, TraceSampler, TraceSettings,
    UnknownVariable, VARIABLES, unknown_variables,
};
pub use telemetry::{TelemetryError, TelemetryGuard, init_telemetry, init_tracing};
