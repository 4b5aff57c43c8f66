//! Opening what a process works with, the same way in every process (`serve`, `worker`,
//! `stream`, `keys`, `migrate`): the metadata store, the artifact store, the model
//! registry and the job queue the settings name.
//!
//! Configuration picks the parts: `DATABASE_URL` opens Postgres (migrating at start-up
//! under an advisory lock) instead of SQLite; `REDIS_URL` delivers jobs through Redis
//! instead of the in-process queue, and announces model changes to the other instances.
//!
//! Every Redis pool of a process — the queue's two ([`RedisQueue::pools`], sized and
//! timed for its blocking reads), the model events', the rate limiter's ([`redis_pool`])
//! — is built here, on the one server or the Redis Cluster the settings name
//! ([`QueueSettings::redis_target`](crate::QueueSettings::redis_target)), and handed to the
//! part that uses it.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use pynomaly_jobs::{
    BatchObserver, InProcessQueue, JobQueue, JobRunner, QueueError, RedisQueue, RedisQueueConfig,
    RunnerConfig, SourceResolver,
};
use pynomaly_models::{ModelEvents, ModelEventsError, ModelRegistry};
use pynomaly_redis::{RedisPool, RedisTarget};
use pynomaly_store::{ArtifactStore, DynMetadataStore, PostgresStore, SqliteStore};
use thiserror::Error;
use tokio_util::sync::CancellationToken;

use crate::settings::Settings;

/// Why a process could not start or stopped with an error.
#[derive(Debug, Error)]
pub enum StartupError {
    #[error("cannot prepare the data directory {path}")]
    DataDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot open the metadata store")]
    Store(#[from] pynomaly_store::StoreError),
    #[error("cannot recover the job queue")]
    Queue(#[from] QueueError),
    #[error("cannot subscribe to model changes")]
    ModelEvents(#[from] ModelEventsError),
    #[error("cannot set up a Redis connection pool")]
    RedisPool(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("REDIS_URL cannot be used")]
    RedisUrl(#[from] pynomaly_redis::RedisUrlError),
    #[error("cannot create the admin key")]
    AdminKey(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("REDIS_URL is not set: worker processes take their jobs from the Redis queue")]
    NeedsRedis,
    #[error("DATABASE_URL is not set: migrations apply to the Postgres store")]
    NeedsDatabase,
    #[error("cannot serve HTTPS (PYNOMALY_TLS_CERT, PYNOMALY_TLS_KEY)")]
    Tls(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl StartupError {
    /// An I/O error on the data directory (or another directory a setting names).
    pub fn data_dir(path: &Path) -> impl FnOnce(std::io::Error) -> Self + '_ {
        move |source| StartupError::DataDir {
            path: path.display().to_string(),
            source,
        }
    }
}

/// Opens the metadata store the settings name: Postgres (`DATABASE_URL`, migrated under
/// an advisory lock) or the data directory's SQLite.
///
/// # Errors
/// The database cannot be reached or migrated.
pub async fn open_metadata(settings: &Settings) -> Result<DynMetadataStore, StartupError> {
    Ok(match &settings.database.url {
        Some(url) => {
            Arc::new(PostgresStore::connect(url.expose(), settings.database.max_connections).await?)
        }
        None => {
            let dir = &settings.storage.data_dir;
            std::fs::create_dir_all(dir).map_err(StartupError::data_dir(dir))?;
            Arc::new(SqliteStore::open(dir).await?)
        }
    })
}

/// Opens the artifact store the settings name (`PYNOMALY_STORAGE_URL`), encrypting with
/// the configured keys (`PYNOMALY_ENCRYPTION_*`), and says once whether artifacts are
/// encrypted at rest. Every process that reads or writes artifacts opens them through
/// this, so they all seal and open alike.
///
/// # Errors
/// The store cannot be opened.
pub fn open_artifacts(settings: &Settings) -> Result<ArtifactStore, StartupError> {
    let storage = &settings.storage;
    let mut artifacts = ArtifactStore::from_url(&storage.artifacts_url)?;
    match &storage.encryption {
        Some(ring) => {
            tracing::info!(
                key_id = ring.current_id().unwrap_or("none: existing objects are only read"),
                keyring = ?ring,
                "artifacts are encrypted at rest (AES-256-GCM)"
            );
            artifacts = artifacts.with_encryption(ring.clone());
        }
        None => tracing::warn!(
            storage = %storage.artifacts_url,
            "artifacts (models, job outputs) are stored unencrypted: set PYNOMALY_ENCRYPTION_KEY \
             (64 hex digits) to encrypt them at rest"
        ),
    }
    Ok(artifacts)
}

/// Opens the model registry over these stores, with the settings' cache size and drift
/// monitoring. With `REDIS_URL` it shares model changes with the other instances until
/// `stop` (see [`ModelRegistry::follow_changes`]).
///
/// # Errors
/// The Redis URL is unusable.
pub async fn open_registry(
    settings: &Settings,
    meta: &DynMetadataStore,
    artifacts: &ArtifactStore,
    stop: &CancellationToken,
) -> Result<Arc<ModelRegistry>, StartupError> {
    let registry = Arc::new(
        ModelRegistry::new(
            Arc::clone(meta),
            artifacts.clone(),
            settings.storage.model_cache_bytes,
        )
        .with_drift(settings.drift),
    );
    if let Some(target) = settings.queue.redis_target()? {
        let pool = redis_pool(&target, Duration::from_secs(5), 4)?;
        let events = ModelEvents::new(target, pool, &settings.queue.redis_prefix);
        registry.follow_changes(events, stop.clone()).await;
    }
    Ok(registry)
}

/// Everything a process that runs jobs works with (the server and `pynomaly worker`).
#[derive(Debug)]
pub struct JobParts {
    pub meta: DynMetadataStore,
    pub artifacts: ArtifactStore,
    pub sources: SourceResolver,
    pub registry: Arc<ModelRegistry>,
    pub queue: Arc<dyn JobQueue>,
    /// The in-process queue, when the settings name no Redis (tests step through it).
    pub in_process: Option<Arc<InProcessQueue>>,
    /// Stops the background listeners (model changes from other instances).
    pub background: CancellationToken,
}

/// Opens the stores, the registry and the job queue the settings name. Batch jobs run
/// here report to `observer` (the process's metrics). The in-process queue requeues the
/// jobs a previous process left running.
///
/// # Errors
/// A store or Redis cannot be opened or reached.
pub async fn open_jobs(
    settings: &Settings,
    observer: Option<Arc<dyn BatchObserver>>,
) -> Result<JobParts, StartupError> {
    let data_dir = &settings.storage.data_dir;
    std::fs::create_dir_all(data_dir).map_err(StartupError::data_dir(data_dir))?;
    let meta = open_metadata(settings).await?;
    let artifacts = open_artifacts(settings)?;
    let sources_dir = &settings.storage.sources_dir;
    let sources = SourceResolver::new(sources_dir).map_err(StartupError::data_dir(sources_dir))?;
    let background = CancellationToken::new();
    let registry = open_registry(settings, &meta, &artifacts, &background).await?;
    let mut runner = JobRunner::new(
        Arc::clone(&registry),
        artifacts.clone(),
        sources.clone(),
        RunnerConfig {
            chunk_rows: settings.queue.batch_chunk_rows,
            ..RunnerConfig::default()
        },
    );
    if let Some(observer) = observer {
        runner = runner.with_observer(observer);
    }
    let runner = Arc::new(runner);
    let q = &settings.queue;
    let (queue, in_process): (Arc<dyn JobQueue>, _) = match q.redis_target()? {
        Some(target) => {
            let config = RedisQueueConfig {
                prefix: q.redis_prefix.clone(),
                lease: q.job_lease,
                heartbeat: (q.job_lease / 10)
                    .clamp(Duration::from_millis(100), Duration::from_secs(5)),
                max_attempts: q.job_max_attempts,
                ..RedisQueueConfig::default()
            };
            let (commands, blocking) = RedisQueue::pools(&target, &config)?;
            let queue =
                RedisQueue::with_pools(commands, blocking, config, Arc::clone(&meta), runner)
                    .await?;
            (queue, None)
        }
        None => {
            let queue = InProcessQueue::new(Arc::clone(&meta), runner);
            queue.recover().await?;
            (Arc::clone(&queue) as Arc<dyn JobQueue>, Some(queue))
        }
    };
    Ok(JobParts {
        meta,
        artifacts,
        sources,
        registry,
        queue,
        in_process,
        background,
    })
}

/// A pool of Redis connections, to one server or a Redis Cluster: each command
/// answered within `response_timeout` (longer than any blocking read the pool is for), at
/// most `max_size` connections, a connection within 10 s or an error (callers decide what
/// an unreachable Redis means for them).
///
/// # Errors
/// The client rejects the target.
pub fn redis_pool(
    target: &RedisTarget,
    response_timeout: Duration,
    max_size: usize,
) -> Result<RedisPool, StartupError> {
    target
        .pool(response_timeout, max_size)
        .map_err(|e| StartupError::RedisPool(Box::new(e)))
}

/// `pynomaly migrate`: applies the Postgres migrations (under the same advisory lock as
/// start-up) and returns how many were applied.
///
/// # Errors
/// `DATABASE_URL` is unset, or the database cannot be reached or migrated.
pub async fn migrate(settings: &Settings) -> Result<usize, StartupError> {
    let Some(url) = &settings.database.url else {
        return Err(StartupError::NeedsDatabase);
    };
    let store = PostgresStore::connect_without_migrating(url.expose(), 1).await?;
    let applied = store.migrate().await;
    pynomaly_store::MetadataStore::close(&store).await;
    Ok(applied?)
}

/// Completes on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
