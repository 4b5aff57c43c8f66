//! The `pynomaly` binary's integration tests, one binary, a module per area:
//!
//! - `cli`: `pynomaly detect` on small temporary files;
//! - `scale_out_cli`: `pynomaly migrate`, `worker` and `keys` with the scale-out settings;
//! - `stream`: `pynomaly stream` against real brokers, one suite run on Redis and Kafka;
//! - `observability`: traces over OTLP to a receiver in the test, and (ignored by default)
//!   a real Prometheus scraping the service;
//! - `cluster` (ignored by default): two instances, two workers and nginx on Postgres,
//!   Redis and S3, with processes killed under load;
//! - `chaos` (ignored by default): Redis and Postgres of the test's own crashed or stopped
//!   under load; nothing accepted is lost.
//!
//! `.ci/run` runs the ignored ones by module, e.g.
//! `cargo test -p pynomaly --test pynomaly -- --ignored --nocapture cluster::`.
//! Services come from `PYNOMALY_TEST_*` variables (see the `testkit` crate); a test whose
//! service is not configured skips, saying why.

mod chaos;
mod cli;
mod cluster;
mod observability;
mod scale_out_cli;
mod stream;

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::path::Path;
use std::process::Command;

use testkit::Proc;

/// The environment of a `pynomaly` child process: exactly these variables, and PATH.
#[derive(Debug, Clone, Default)]
struct Env(BTreeMap<String, OsString>);

impl Env {
    /// This environment with `name` set to `value`.
    fn set(mut self, name: &str, value: impl AsRef<OsStr>) -> Env {
        self.0
            .insert(name.to_string(), value.as_ref().to_os_string());
        self
    }
}

/// Starts `pynomaly ARGS` with exactly `env` (and PATH) in its environment, its output in
/// `root/NAME.log`.
fn pynomaly(name: &str, args: &[&str], env: &Env, root: &Path) -> Proc {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pynomaly"));
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(&env.0);
    Proc::spawn(name, &mut cmd, &root.join(format!("{name}.log")))
}
