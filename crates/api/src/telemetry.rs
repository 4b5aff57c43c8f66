//! Logs as JSON lines, level from `LOG_LEVEL`.

use tracing_subscriber::EnvFilter;

/// Installs the global JSON-lines subscriber at `level` (a tracing filter such as `info`
/// or `pynomaly_api=debug,info`). A second call does nothing.
pub fn init_tracing(level: &str) {
    let filter = EnvFilter::try_new(level).unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_target(true)
        .with_env_filter(filter)
        .try_init();
}
