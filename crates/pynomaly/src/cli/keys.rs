//! `pynomaly keys create`: creates an API key in the data directory's store and prints
//! it (the only time it is shown; only its keyed hash is stored).

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use pynomaly_runtime::{KeyHasher, Settings, create_api_key, open_metadata};
use pynomaly_store::{ApiKey, Scope};

use crate::cli::InputError;

/// Arguments of `pynomaly keys`.
#[derive(Debug, clap::Args)]
pub struct KeysArgs {
    #[command(subcommand)]
    pub command: KeysCommand,
}

/// What to do with keys.
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create an API key and print it (shown once)
    Create(CreateKeyArgs),
}

/// Arguments of `pynomaly keys create`.
#[derive(Debug, clap::Args)]
pub struct CreateKeyArgs {
    /// A name to recognise the key by
    #[arg(long)]
    pub name: String,
    /// Comma-separated scopes: read, write, admin
    #[arg(long, value_delimiter = ',', required = true)]
    pub scopes: Vec<String>,
    /// The tenant the key belongs to
    #[arg(long, default_value = pynomaly_store::DEFAULT_TENANT)]
    pub tenant: String,
    /// Data directory [env: PYNOMALY_DATA_DIR; default ./pynomaly-data]
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
}

/// Runs `pynomaly keys …`.
///
/// # Errors
/// Unknown scopes or bad settings (exit status 2), or the store cannot be opened.
pub fn run(args: &KeysArgs) -> anyhow::Result<()> {
    match &args.command {
        KeysCommand::Create(create) => create_key(create),
    }
}

fn create_key(args: &CreateKeyArgs) -> anyhow::Result<()> {
    let mut scopes = Vec::new();
    for s in &args.scopes {
        let scope = Scope::parse(s).ok_or_else(|| {
            InputError(format!("unknown scope '{s}'; accepted: read, write, admin"))
        })?;
        if !scopes.contains(&scope) {
            scopes.push(scope);
        }
    }
    let settings = crate::cli::serve::settings(args.data_dir.as_ref())?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let (created, key) = runtime
        .block_on(create(&settings, &args.name, scopes, &args.tenant))
        .context("cannot create the key")?;
    let scopes: Vec<&str> = created.scopes.iter().map(|s| s.as_str()).collect();
    eprintln!(
        "created key '{}' (id {}, tenant {}, scopes {}); it is shown only once:",
        created.name,
        created.id,
        created.tenant,
        scopes.join(",")
    );
    println!("{key}");
    Ok(())
}

/// Creates the key in the metadata store the settings name (Postgres with
/// `DATABASE_URL`, else the data directory's SQLite), hashed with the server secret.
async fn create(
    settings: &Settings,
    name: &str,
    scopes: Vec<Scope>,
    tenant: &str,
) -> anyhow::Result<(ApiKey, String)> {
    let store = open_metadata(settings).await?;
    let hasher = KeyHasher::for_settings(settings)
        .context("cannot read the server secret (PYNOMALY_SECRET_KEY or <data dir>/secret.key)")?;
    let created = create_api_key(store.as_ref(), &hasher, tenant, name, scopes, None, None).await;
    store.close().await;
    Ok(created?)
}
