//! Building and running the application.
//!
//! [`Application::build`] opens the stores (creating the data directory, applying
//! migrations), requeues jobs a previous process left running, creates the admin key on a
//! first start, and binds the listener, so a caller knows the port before serving (port 0
//! in tests). [`Application::run_until`] serves until the given future completes (SIGTERM
//! or Ctrl-C in production, a test's signal in tests), then stops accepting, lets in-flight
//! requests finish for at most the drain timeout, and stops the job workers, whose running
//! jobs return to the queue to resume on the next start.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use pynomaly_jobs::{InProcessQueue, JobRunner, ModelRegistry, RunnerConfig, SourceResolver};
use pynomaly_store::{ArtifactStore, DynMetadataStore, SqliteStore};
use thiserror::Error;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::auth::{AuthService, KeyHasher};
use crate::metrics::Metrics;
use crate::settings::Settings;
use crate::state::{AppState, Limits};

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
}

/// The service, bound and ready to run.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    addr: SocketAddr,
    router: Router,
    queue: Arc<InProcessQueue>,
    meta: SqliteStore,
    settings: Settings,
    admin_key: Option<String>,
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
        std::fs::create_dir_all(&settings.data_dir).map_err(data_dir_error(&settings.data_dir))?;
        let sqlite = SqliteStore::open(&settings.data_dir).await?;
        let meta: DynMetadataStore = Arc::new(sqlite.clone());
        let artifacts = ArtifactStore::from_url(&settings.storage_url)?;
        let sources = SourceResolver::new(&settings.sources_dir)
            .map_err(data_dir_error(&settings.sources_dir))?;
        let registry = Arc::new(ModelRegistry::new(
            Arc::clone(&meta),
            artifacts.clone(),
            settings.model_cache_bytes,
        ));
        let runner = Arc::new(JobRunner::new(
            Arc::clone(&registry),
            artifacts.clone(),
            sources.clone(),
            RunnerConfig {
                chunk_rows: settings.batch_chunk_rows,
                ..RunnerConfig::default()
            },
        ));
        let queue = InProcessQueue::new(Arc::clone(&meta), runner);
        queue.recover().await?;
        let hasher = KeyHasher::load_or_create(&settings.data_dir)
            .map_err(data_dir_error(&settings.data_dir))?;
        let auth = Arc::new(AuthService::new(Arc::clone(&meta), hasher));
        let admin_key = auth
            .ensure_admin_key(&settings.data_dir)
            .await
            .map_err(StartupError::AdminKey)?;
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let state = AppState {
            meta,
            registry,
            queue: Arc::clone(&queue) as Arc<dyn pynomaly_jobs::JobQueue>,
            artifacts,
            sources: Arc::new(sources),
            auth,
            metrics: Arc::new(Metrics::new()),
            limits: Limits {
                max_cells: settings.max_cells,
                max_body_bytes: settings.max_body_bytes,
                request_timeout: settings.request_timeout,
            },
            started: Instant::now(),
            heavy: Arc::new(Semaphore::new(cores * 2)),
        };
        let router = crate::routes::api_router()
            .layer(axum::middleware::from_fn_with_state(
                state.clone(),
                crate::middleware::observe,
            ))
            .layer(DefaultBodyLimit::max(settings.max_body_bytes))
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
            router,
            queue,
            meta: sqlite,
            settings,
            admin_key,
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

    /// The admin key, when this start created it (first start only).
    pub fn admin_key(&self) -> Option<&str> {
        self.admin_key.as_deref()
    }

    /// The job queue (tests drive it with `try_execute_job`).
    pub fn queue(&self) -> Arc<InProcessQueue> {
        Arc::clone(&self.queue)
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
            router,
            queue,
            meta,
            settings,
            ..
        } = self;
        let workers = queue.start_workers(settings.worker_concurrency);
        tracing::info!(%addr, workers = settings.worker_concurrency, "pynomaly is serving");
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let queue_for_signal = Arc::clone(&queue);
        let graceful = async move {
            shutdown.await;
            tracing::info!("shutting down: no new connections; draining in-flight requests");
            queue_for_signal.shutdown();
            let _ = stop_tx.send(());
        };
        let server = axum::serve(listener, router).with_graceful_shutdown(graceful);
        let drain = settings.shutdown_timeout;
        let deadline = async move {
            if stop_rx.await.is_ok() {
                tokio::time::sleep(drain).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            served = server => served.map_err(StartupError::Serve)?,
            () = deadline => tracing::warn!(
                drain_s = drain.as_secs(),
                "drain timeout: closing the connections still open"
            ),
        }
        queue.shutdown();
        for w in workers {
            if tokio::time::timeout(drain, w).await.is_err() {
                tracing::warn!("a job worker did not stop within the drain timeout");
            }
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
