//! `pynomaly migrate`: applies the Postgres migrations (`DATABASE_URL`) and exits, for a
//! deployment step before instances start. Instances also migrate at start-up, under the
//! same advisory lock, so running both is safe.

use anyhow::Context;

/// Arguments of `pynomaly migrate` (none: the database is `DATABASE_URL`).
#[derive(Debug, clap::Args)]
pub struct MigrateArgs {}

/// Applies the pending migrations and reports how many.
///
/// # Errors
/// `DATABASE_URL` unset or invalid (exit status 2), or the database refuses.
pub fn run(_args: &MigrateArgs) -> anyhow::Result<()> {
    let settings = crate::cli::serve::settings(None)?;
    if settings.database.url.is_none() {
        return Err(crate::cli::InputError(
            "DATABASE_URL is not set: migrations apply to the Postgres store (the embedded \
             SQLite store migrates itself at start-up)"
                .into(),
        )
        .into());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let applied = runtime
        .block_on(pynomaly_runtime::migrate(&settings))
        .context("cannot migrate the database")?;
    println!("applied {applied} migration(s); the database is up to date");
    Ok(())
}
