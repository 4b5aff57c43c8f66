//! Building and running the application.
//!
//! [`Application::build`] opens the stores (creating the data directory, applying
//! migrations), requeues jobs a previous process left running, creates the admin key on a
//! first start, and binds the listener, so a caller knows the port before serving (port 0
//! in tests). [`Application::run_until`] serves until the given future completes (SIGTERM
//! or Ctrl-C in production, a test's signal in tests), then stops accepting, lets in-flight
//! requests finish for at most the drain timeout, and stops the job workers, whose running
//! jobs return to the queue to resume on the next start.
//!
//! Configuration picks the parts: `DATABASE_URL` opens Postgres (migrating at start-up
//! under an advisory lock) instead of SQLite; `REDIS_URL` delivers jobs through Redis
//! instead of the in-process queue, and then `serve` runs no jobs itself unless asked
//! (`serve --workers N`): `pynomaly worker` processes ([`WorkerProcess`]) run them.
//!
//! `PYNOMALY_METRICS_BIND` opens a second listener serving only `GET /metrics`: a
//! worker's only port, and for an instance a metrics port beside the API's (which keeps
//! its own `/metrics`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use pynomaly_jobs::{
    BatchObserver, InProcessQueue, JobQueue, JobRunner, ModelEvents, ModelRegistry, RedisQueue,
    RedisQueueConfig, RunnerConfig, SourceResolver,
};
use pynomaly_store::{ArtifactStore, DynMetadataStore, PostgresStore, SqliteStore};
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::audit::AuditLog;
use crate::auth::{AuthConfig, AuthService, KeyHasher};
use crate::metrics::Metrics;
use crate::ops_metrics::{MetricsSources, metrics_router};
use crate::ratelimit::RateLimiter;
use crate::settings::Settings;
use crate::state::{AppState, Limits, Shared};

/// Why the service could not start or stopped with an error.
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
    Queue(#[from] pynomaly_jobs::QueueError),
    #[error("cannot create the admin key")]
    AdminKey(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("server error")]
    Serve(#[source] std::io::Error),
    #[error("REDIS_URL is not set: worker processes take their jobs from the Redis queue")]
    NeedsRedis,
    #[error("DATABASE_URL is not set: migrations apply to the Postgres store")]
    NeedsDatabase,
}

/// The job queue this process uses, by kind (each has its own worker control).
#[derive(Debug, Clone)]
enum Queue {
    InProcess(Arc<InProcessQueue>),
    Redis(Arc<RedisQueue>),
}

impl Queue {
    fn as_dyn(&self) -> Arc<dyn JobQueue> {
        match self {
            Queue::InProcess(q) => Arc::clone(q) as Arc<dyn JobQueue>,
            Queue::Redis(q) => Arc::clone(q) as Arc<dyn JobQueue>,
        }
    }

    fn start_workers(&self, n: usize) -> Vec<tokio::task::JoinHandle<()>> {
        match self {
            Queue::InProcess(q) => q.start_workers(n),
            Queue::Redis(q) => q.start_workers(n),
        }
    }

    fn shutdown(&self) {
        match self {
            Queue::InProcess(q) => q.shutdown(),
            Queue::Redis(q) => q.shutdown(),
        }
    }
}

/// Opens the metadata store the settings name: Postgres (`DATABASE_URL`, migrated under
/// an advisory lock) or the data directory's SQLite.
///
/// # Errors
/// The database cannot be reached or migrated.
pub async fn open_metadata(settings: &Settings) -> Result<DynMetadataStore, StartupError> {
    Ok(match &settings.database_url {
        Some(url) => {
            Arc::new(PostgresStore::connect(url.expose(), settings.database_max_connections).await?)
        }
        None => {
            std::fs::create_dir_all(&settings.data_dir)
                .map_err(data_dir_error(&settings.data_dir))?;
            Arc::new(SqliteStore::open(&settings.data_dir).await?)
        }
    })
}

/// Opens the artifact store the settings name (`PYNOMALY_STORAGE_URL`), encrypting with
/// the configured keys (`PYNOMALY_ENCRYPTION_*`), and says once whether artifacts are
/// encrypted at rest. Every process that reads or writes artifacts (serve, worker, stream)
/// opens them through this, so they all seal and open alike.
///
/// # Errors
/// The store cannot be opened.
pub fn open_artifacts(settings: &Settings) -> Result<ArtifactStore, StartupError> {
    let mut artifacts = ArtifactStore::from_url(&settings.storage_url)?;
    match &settings.encryption {
        Some(ring) => {
            tracing::info!(
                key_id = ring.current_id().unwrap_or("none: existing objects are only read"),
                keyring = ?ring,
                "artifacts are encrypted at rest (AES-256-GCM)"
            );
            artifacts = artifacts.with_encryption(ring.clone());
        }
        None => tracing::warn!(
            storage = %settings.storage_url,
            "artifacts (models, job outputs) are stored unencrypted: set PYNOMALY_ENCRYPTION_KEY \
             (64 hex digits) to encrypt them at rest"
        ),
    }
    Ok(artifacts)
}

/// What both the server and a worker process run jobs with.
struct JobParts {
    meta: DynMetadataStore,
    artifacts: ArtifactStore,
    sources: SourceResolver,
    registry: Arc<ModelRegistry>,
    queue: Queue,
    /// Stops the background listeners (model changes from other instances).
    background: CancellationToken,
}

async fn job_parts(
    settings: &Settings,
    observer: Option<Arc<dyn BatchObserver>>,
) -> Result<JobParts, StartupError> {
    std::fs::create_dir_all(&settings.data_dir).map_err(data_dir_error(&settings.data_dir))?;
    let meta = open_metadata(settings).await?;
    let artifacts = open_artifacts(settings)?;
    let sources = SourceResolver::new(&settings.sources_dir)
        .map_err(data_dir_error(&settings.sources_dir))?;
    let registry = Arc::new(
        ModelRegistry::new(
            Arc::clone(&meta),
            artifacts.clone(),
            settings.model_cache_bytes,
        )
        .with_drift(settings.drift),
    );
    let mut runner = JobRunner::new(
        Arc::clone(&registry),
        artifacts.clone(),
        sources.clone(),
        RunnerConfig {
            chunk_rows: settings.batch_chunk_rows,
            ..RunnerConfig::default()
        },
    );
    if let Some(observer) = observer {
        runner = runner.with_observer(observer);
    }
    let runner = Arc::new(runner);
    let background = CancellationToken::new();
    let queue = match &settings.redis_url {
        Some(url) => {
            let config = RedisQueueConfig {
                prefix: settings.redis_prefix.clone(),
                lease: settings.job_lease,
                heartbeat: (settings.job_lease / 10).clamp(
                    std::time::Duration::from_millis(100),
                    std::time::Duration::from_secs(5),
                ),
                max_attempts: settings.job_max_attempts,
                ..RedisQueueConfig::default()
            };
            // Every instance and worker serves the same models: announce changes, and drop
            // the ones announced by others.
            let events = ModelEvents::new(url.expose(), &settings.redis_prefix)?;
            registry.announce_changes(Arc::clone(&events));
            events
                .subscribe(Arc::clone(&registry), background.clone())
                .await;
            Queue::Redis(
                RedisQueue::connect(url.expose(), config, Arc::clone(&meta), runner).await?,
            )
        }
        None => {
            let queue = InProcessQueue::new(Arc::clone(&meta), runner);
            queue.recover().await?;
            Queue::InProcess(queue)
        }
    };
    Ok(JobParts {
        meta,
        artifacts,
        sources,
        registry,
        queue,
        background,
    })
}

/// A bound metrics listener and what it serves.
#[derive(Debug)]
struct MetricsPort {
    listener: TcpListener,
    addr: SocketAddr,
    sources: MetricsSources,
}

impl MetricsPort {
    async fn bind(
        settings: &Settings,
        sources: MetricsSources,
    ) -> Result<Option<Self>, StartupError> {
        let Some(bind) = settings.metrics_bind else {
            return Ok(None);
        };
        let error = |source| StartupError::Bind { addr: bind, source };
        let listener = TcpListener::bind(bind).await.map_err(error)?;
        let addr = listener.local_addr().map_err(error)?;
        Ok(Some(Self {
            listener,
            addr,
            sources,
        }))
    }

    /// Serves until `stop` is cancelled.
    fn spawn(self, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
        let router = metrics_router(self.sources);
        tokio::spawn(async move {
            tracing::info!(addr = %self.addr, "serving /metrics");
            let served = axum::serve(self.listener, router)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "the metrics listener failed");
            }
        })
    }
}

fn metadata_kind(settings: &Settings) -> &'static str {
    if settings.database_url.is_some() {
        "postgres"
    } else {
        "sqlite"
    }
}

/// The service, bound and ready to run.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    addr: SocketAddr,
    metrics_port: Option<MetricsPort>,
    router: Router,
    queue: Queue,
    meta: DynMetadataStore,
    settings: Settings,
    admin_key: Option<String>,
    background: CancellationToken,
}

fn data_dir_error(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> StartupError + '_ {
    move |source| StartupError::DataDir {
        path: path.display().to_string(),
        source,
    }
}

impl Application {
    /// Opens everything and binds `settings.bind`.
    ///
    /// # Errors
    /// See [`StartupError`].
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        // Batch jobs run in this process (embedded queue, or `serve --workers`) count their
        // anomalies in this process's metrics.
        let metrics = Arc::new(Metrics::new());
        let JobParts {
            meta,
            artifacts,
            sources,
            registry,
            queue,
            background,
        } = job_parts(
            &settings,
            Some(Arc::clone(&metrics) as Arc<dyn BatchObserver>),
        )
        .await?;
        let hasher =
            KeyHasher::for_settings(&settings).map_err(data_dir_error(&settings.data_dir))?;
        let privacy = Arc::new(pynomaly_privacy::Privacy::new(
            &settings.pii,
            hasher.derive_key("pynomaly-pii-hash-v1"),
        ));
        // Rate limits shared through Redis when the deployment has it, else in process.
        let limiter = match &queue {
            Queue::Redis(q) => RateLimiter::redis(q.pool().clone(), &settings.redis_prefix),
            Queue::InProcess(_) => RateLimiter::local(),
        };
        let auth = Arc::new(AuthService::with(
            Arc::clone(&meta),
            hasher,
            AuthConfig::from_settings(&settings),
            limiter,
        ));
        let audit = AuditLog::start(Arc::clone(&meta), settings.trust_forwarded_for);
        let admin_key = auth
            .ensure_admin_key(&settings.data_dir)
            .await
            .map_err(StartupError::AdminKey)?;
        metrics
            .ops()
            .set_build_info("api", queue.as_dyn().kind(), metadata_kind(&settings));
        let metrics_port = MetricsPort::bind(
            &settings,
            MetricsSources {
                metrics: Arc::clone(&metrics),
                meta: Arc::clone(&meta),
                queue: queue.as_dyn(),
                registry: Arc::clone(&registry),
            },
        )
        .await?;
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let state_meta = Arc::clone(&meta);
        let state = AppState::new(Shared {
            meta,
            registry,
            queue: queue.as_dyn(),
            artifacts,
            sources: Arc::new(sources),
            auth,
            audit,
            metrics,
            limits: Limits {
                max_cells: settings.max_cells,
                max_body_bytes: settings.max_body_bytes,
                request_timeout: settings.request_timeout,
            },
            started: Instant::now(),
            heavy: Arc::new(Semaphore::new(cores * 2)),
            privacy,
        });
        let router = crate::routes::api_router()
            .layer(axum::middleware::from_fn_with_state(
                state.clone(),
                crate::audit::record,
            ))
            .layer(axum::middleware::from_fn_with_state(
                state.clone(),
                crate::middleware::observe,
            ))
            .layer(DefaultBodyLimit::max(settings.max_body_bytes))
            .layer(axum::middleware::from_fn(
                crate::security_headers::security_headers,
            ))
            .with_state(state);
        let listener =
            TcpListener::bind(settings.bind)
                .await
                .map_err(|source| StartupError::Bind {
                    addr: settings.bind,
                    source,
                })?;
        let addr = listener.local_addr().map_err(|source| StartupError::Bind {
            addr: settings.bind,
            source,
        })?;
        Ok(Self {
            listener,
            addr,
            metrics_port,
            router,
            queue,
            meta: state_meta,
            settings,
            admin_key,
            background,
        })
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The metrics port's address, when `PYNOMALY_METRICS_BIND` opened one.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_port.as_ref().map(|p| p.addr)
    }

    /// The admin key, when this start created it (first start only).
    pub fn admin_key(&self) -> Option<&str> {
        self.admin_key.as_deref()
    }

    /// The job queue, whichever kind (tests drive it with `try_execute_job`).
    pub fn queue(&self) -> Arc<dyn JobQueue> {
        self.queue.as_dyn()
    }

    /// The in-process queue, when this deployment uses it (tests claim jobs step by step
    /// with it); `None` with Redis.
    pub fn in_process_queue(&self) -> Option<Arc<InProcessQueue>> {
        match &self.queue {
            Queue::InProcess(q) => Some(Arc::clone(q)),
            Queue::Redis(_) => None,
        }
    }

    /// Serves until `shutdown` completes, then drains (see the module docs).
    ///
    /// # Errors
    /// The server failed.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), StartupError> {
        let Self {
            listener,
            addr,
            metrics_port,
            router,
            queue,
            meta,
            settings,
            background,
            ..
        } = self;
        let metrics_task = metrics_port.map(|p| p.spawn(background.clone()));
        let n_workers = match queue {
            Queue::InProcess(_) => settings.worker_concurrency,
            Queue::Redis(_) if settings.serve_runs_jobs => settings.worker_concurrency,
            // Jobs are run by `pynomaly worker` processes.
            Queue::Redis(_) => 0,
        };
        let workers = queue.start_workers(n_workers);
        tracing::info!(%addr, workers = n_workers, queue = queue.as_dyn().kind(), "pynomaly is serving");
        let queue_for_signal = queue.clone();
        let graceful = async move {
            shutdown.await;
            tracing::info!("shutting down: no new connections; draining in-flight requests");
            queue_for_signal.shutdown();
        };
        let drain = settings.shutdown_timeout;
        let limits = crate::server::ConnectionLimits {
            max_header_bytes: settings.max_header_bytes,
            header_read_timeout: settings.header_read_timeout,
        };
        crate::server::serve(listener, router, limits, graceful, drain).await;
        queue.shutdown();
        for w in workers {
            if tokio::time::timeout(drain, w).await.is_err() {
                tracing::warn!("a job worker did not stop within the drain timeout");
            }
        }
        background.cancel();
        if let Some(task) = metrics_task {
            let _ = tokio::time::timeout(drain, task).await;
        }
        meta.close().await;
        tracing::info!("stopped");
        Ok(())
    }
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

/// `pynomaly worker`: a process that runs jobs delivered through Redis, and nothing else.
///
/// It reports itself alive every heartbeat (what `/health` counts as `workers.active`).
/// On SIGTERM its running jobs stop at their next chunk and go straight back to the queue
/// for another worker; a worker killed outright loses its lease instead, and its jobs are
/// taken over once the lease expires.
#[derive(Debug)]
pub struct WorkerProcess {
    queue: Arc<RedisQueue>,
    metrics_port: Option<MetricsPort>,
    meta: DynMetadataStore,
    background: CancellationToken,
    concurrency: usize,
    drain: std::time::Duration,
}

impl WorkerProcess {
    /// Opens the stores and connects to Redis; `concurrency` jobs run at once.
    ///
    /// # Errors
    /// `REDIS_URL` (or `DATABASE_URL`) is unset, or a dependency cannot be reached.
    pub async fn build(settings: &Settings, concurrency: usize) -> Result<Self, StartupError> {
        if settings.redis_url.is_none() {
            return Err(StartupError::NeedsRedis);
        }
        // Jobs run here count into this process's metrics, served on PYNOMALY_METRICS_BIND.
        let metrics = Arc::new(Metrics::new());
        let parts = job_parts(
            settings,
            Some(Arc::clone(&metrics) as Arc<dyn BatchObserver>),
        )
        .await?;
        let Queue::Redis(queue) = parts.queue else {
            return Err(StartupError::NeedsRedis);
        };
        metrics
            .ops()
            .set_build_info("worker", "redis", metadata_kind(settings));
        let metrics_port = MetricsPort::bind(
            settings,
            MetricsSources {
                metrics,
                meta: Arc::clone(&parts.meta),
                queue: Arc::clone(&queue) as Arc<dyn JobQueue>,
                registry: Arc::clone(&parts.registry),
            },
        )
        .await?;
        Ok(Self {
            queue,
            metrics_port,
            meta: parts.meta,
            background: parts.background,
            concurrency: concurrency.max(1),
            drain: settings.shutdown_timeout,
        })
    }

    /// This worker's id (in logs, and in the jobs it runs).
    pub fn worker_id(&self) -> &str {
        self.queue.worker_id()
    }

    /// The metrics port's address, when `PYNOMALY_METRICS_BIND` opened one.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_port.as_ref().map(|p| p.addr)
    }

    /// Runs jobs until `shutdown` completes, then hands running jobs back and stops.
    pub async fn run_until(mut self, shutdown: impl Future<Output = ()> + Send + 'static) {
        let metrics_task = self
            .metrics_port
            .take()
            .map(|p| p.spawn(self.background.clone()));
        let handles = self.queue.start_workers(self.concurrency);
        tracing::info!(
            worker = self.queue.worker_id(),
            concurrency = self.concurrency,
            "pynomaly worker is running jobs"
        );
        shutdown.await;
        tracing::info!("shutting down: handing running jobs back to the queue");
        self.queue.shutdown();
        for h in handles {
            if tokio::time::timeout(self.drain, h).await.is_err() {
                tracing::warn!("a job worker did not stop within the drain timeout");
            }
        }
        self.background.cancel();
        if let Some(task) = metrics_task {
            let _ = tokio::time::timeout(self.drain, task).await;
        }
        self.meta.close().await;
        tracing::info!("worker stopped");
    }
}

/// `pynomaly migrate`: applies the Postgres migrations (under the same advisory lock as
/// start-up) and returns how many were applied.
///
/// # Errors
/// `DATABASE_URL` is unset, or the database cannot be reached or migrated.
pub async fn migrate(settings: &Settings) -> Result<usize, StartupError> {
    let Some(url) = &settings.database_url else {
        return Err(StartupError::NeedsDatabase);
    };
    let store = PostgresStore::connect_without_migrating(url.expose(), 1).await?;
    let applied = store.migrate().await;
    pynomaly_store::MetadataStore::close(&store).await;
    Ok(applied?)
}
