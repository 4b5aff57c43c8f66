//! Building and running the HTTP service.
//!
//! [`Application::build`] opens what the settings name (through `pynomaly-runtime`: the
//! stores, the registry and the job queue, requeueing jobs a previous process left
//! running), creates the admin key on a first start, and binds the listener, so a caller
//! knows the port before serving (port 0 in tests). [`Application::run_until`] serves
//! until the given future completes (SIGTERM or Ctrl-C in production, a test's signal in
//! tests), then stops accepting, lets in-flight requests finish for at most the drain
//! timeout, and stops the job workers, whose running jobs return to the queue.
//!
//! With `REDIS_URL`, `serve` runs no jobs itself unless asked (`serve --workers N`):
//! `pynomaly worker` processes run them. `PYNOMALY_METRICS_BIND` opens a second listener
//! serving only `GET /metrics` ([`MetricsPort`]): a worker's only port, and for an
//! instance a metrics port beside the API's (which keeps its own `/metrics`).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use pynomaly_jobs::{BatchObserver, InProcessQueue, JobQueue};
use pynomaly_runtime::{JobParts, KeyHasher, Settings, StartupError, open_jobs, redis_pool};
use pynomaly_store::DynMetadataStore;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::audit::AuditLog;
use crate::auth::{AuthConfig, AuthService};
use crate::exposition::{MetricsSources, metrics_router};
use crate::metrics::Metrics;
use crate::ratelimit::RateLimiter;
use crate::state::{AppState, Limits, Shared};
use crate::tls::Tls;

/// A bound metrics listener (`PYNOMALY_METRICS_BIND`) and what it serves.
#[derive(Debug)]
pub struct MetricsPort {
    listener: TcpListener,
    addr: SocketAddr,
    sources: MetricsSources,
    limits: crate::server::ConnectionLimits,
    tls: Option<Tls>,
}

impl MetricsPort {
    /// Binds the settings' metrics address, if they name one, to serve the metrics of
    /// `process` (`api` or `worker`) over these parts.
    ///
    /// # Errors
    /// The address cannot be bound.
    pub async fn bind(
        settings: &Settings,
        process: &'static str,
        metrics: Arc<Metrics>,
        parts: &JobParts,
    ) -> Result<Option<Self>, StartupError> {
        metrics
            .ops()
            .set_build_info(process, parts.queue.kind(), settings.database.kind());
        let Some(bind) = settings.server.metrics_bind else {
            return Ok(None);
        };
        let tls = load_tls(settings)?;
        let error = |source| StartupError::Bind { addr: bind, source };
        let listener = TcpListener::bind(bind).await.map_err(error)?;
        let addr = listener.local_addr().map_err(error)?;
        Ok(Some(Self {
            listener,
            addr,
            limits: crate::server::ConnectionLimits::of(settings),
            tls,
            sources: MetricsSources {
                metrics,
                meta: Arc::clone(&parts.meta),
                queue: Arc::clone(&parts.queue),
                registry: Arc::clone(&parts.registry),
                artifacts: parts.artifacts.clone(),
                data_dir: Some(settings.storage.data_dir.clone()),
            },
        }))
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Whether the port serves HTTPS (`PYNOMALY_TLS_CERT`).
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Serves until `stop` is cancelled.
    pub fn spawn(self, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
        let router = metrics_router(self.sources);
        let acceptor = self.tls.as_ref().map(|tls| {
            tls.spawn_reloader(stop.clone());
            tls.acceptor()
        });
        tokio::spawn(async move {
            tracing::info!(addr = %self.addr, tls = acceptor.is_some(), "serving /metrics");
            crate::server::serve(
                self.listener,
                router,
                self.limits,
                acceptor,
                stop.cancelled_owned(),
                METRICS_DRAIN,
            )
            .await;
        })
    }
}

/// How long the metrics port waits for a scrape in flight when it stops.
const METRICS_DRAIN: Duration = Duration::from_secs(5);

/// The certificate the settings name, loaded (a start with one that cannot be served fails).
fn load_tls(settings: &Settings) -> Result<Option<Tls>, StartupError> {
    settings
        .server
        .tls
        .as_ref()
        .map(|files| Tls::load(files).map_err(|e| StartupError::Tls(Box::new(e))))
        .transpose()
}

/// The service, bound and ready to run.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    tls: Option<Tls>,
    addr: SocketAddr,
    metrics_port: Option<MetricsPort>,
    router: Router,
    queue: Arc<dyn JobQueue>,
    in_process: Option<Arc<InProcessQueue>>,
    meta: DynMetadataStore,
    settings: Settings,
    admin_key: Option<String>,
    background: CancellationToken,
}

impl Application {
    /// Opens everything and binds `settings.server.bind`.
    ///
    /// # Errors
    /// See [`StartupError`].
    pub async fn build(settings: Settings) -> Result<Self, StartupError> {
        // Batch jobs run in this process (embedded queue, or `serve --workers`) count their
        // anomalies in this process's metrics.
        let metrics = Arc::new(Metrics::new());
        let parts = open_jobs(
            &settings,
            Some(Arc::clone(&metrics) as Arc<dyn BatchObserver>),
        )
        .await?;
        let data_dir = &settings.storage.data_dir;
        let hasher =
            KeyHasher::for_settings(&settings).map_err(StartupError::data_dir(data_dir))?;
        let privacy = Arc::new(pynomaly_runtime::privacy(&settings, &hasher));
        // Rate limits shared through Redis when the deployment has it, else in process.
        let limiter = match settings.queue.redis_target()? {
            Some(target) => RateLimiter::redis(
                redis_pool(&target, Duration::from_secs(5), 32)?,
                &settings.queue.redis_prefix,
            ),
            None => RateLimiter::local(),
        };
        let auth = Arc::new(AuthService::with(
            Arc::clone(&parts.meta),
            hasher,
            AuthConfig::from_settings(&settings.security),
            limiter,
        ));
        let audit = AuditLog::start(
            Arc::clone(&parts.meta),
            settings.security.trust_forwarded_for,
        );
        let admin_key = auth
            .ensure_admin_key(data_dir)
            .await
            .map_err(StartupError::AdminKey)?;
        let metrics_port =
            MetricsPort::bind(&settings, "api", Arc::clone(&metrics), &parts).await?;
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        let (meta, queue) = (Arc::clone(&parts.meta), Arc::clone(&parts.queue));
        let server = &settings.server;
        let state = AppState::new(Shared {
            meta: Arc::clone(&meta),
            registry: parts.registry,
            queue: Arc::clone(&queue),
            artifacts: parts.artifacts,
            sources: Arc::new(parts.sources),
            auth,
            audit,
            metrics,
            limits: Limits {
                max_cells: server.max_cells,
                max_body_bytes: server.max_body_bytes,
                request_timeout: server.request_timeout,
            },
            started: Instant::now(),
            heavy: Arc::new(Semaphore::new(cores * 2)),
            privacy,
            data_dir: settings.storage.data_dir.clone(),
            drain: crate::routes::health::DrainWatch::default(),
            shadow: crate::shadow::ShadowScorer::default(),
        });
        let router = crate::routes::api_router()
            .layer(axum::middleware::from_fn_with_state(
                state.clone(),
                crate::middleware::audit,
            ))
            .layer(axum::middleware::from_fn_with_state(
                state.clone(),
                crate::middleware::observe,
            ))
            .layer(DefaultBodyLimit::max(server.max_body_bytes))
            .layer(axum::middleware::from_fn(
                crate::security_headers::security_headers,
            ))
            .layer(axum::middleware::from_fn_with_state(
                state.clone(),
                crate::unread_body::finish_body,
            ))
            .with_state(state);
        let bind_error = |source| StartupError::Bind {
            addr: server.bind,
            source,
        };
        let tls = load_tls(&settings)?;
        let listener = TcpListener::bind(server.bind).await.map_err(bind_error)?;
        let addr = listener.local_addr().map_err(bind_error)?;
        Ok(Self {
            listener,
            tls,
            addr,
            metrics_port,
            router,
            queue,
            in_process: parts.in_process,
            meta,
            settings,
            admin_key,
            background: parts.background,
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

    /// `https` when the listeners serve TLS (`PYNOMALY_TLS_CERT`), else `http`.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
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
        Arc::clone(&self.queue)
    }

    /// The in-process queue, when this deployment uses it (tests claim jobs step by step
    /// with it); `None` with Redis.
    pub fn in_process_queue(&self) -> Option<Arc<InProcessQueue>> {
        self.in_process.clone()
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
            tls,
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
        let q = &settings.queue;
        // With Redis, jobs are run by `pynomaly worker` processes unless asked here too.
        let n_workers = if q.redis_url.is_none() || q.serve_runs_jobs {
            q.worker_concurrency
        } else {
            0
        };
        let workers = Arc::clone(&queue).start_workers(n_workers);
        // Scheduled retraining: every instance checks; a slot's job is submitted once.
        let scheduler = Arc::new(pynomaly_jobs::Scheduler::new(
            Arc::clone(&meta),
            Arc::clone(&queue),
        ));
        let scheduler = scheduler.spawn(std::time::Duration::from_secs(10), background.clone());
        tracing::info!(%addr, workers = n_workers, queue = queue.kind(), "pynomaly is serving");
        let queue_for_signal = Arc::clone(&queue);
        let graceful = async move {
            shutdown.await;
            tracing::info!("shutting down: no new connections; draining in-flight requests");
            queue_for_signal.shutdown();
        };
        let drain = settings.server.shutdown_timeout;
        let limits = crate::server::ConnectionLimits::of(&settings);
        let acceptor = tls.as_ref().map(|tls| {
            tls.spawn_reloader(background.clone());
            tls.acceptor()
        });
        crate::server::serve(listener, router, limits, acceptor, graceful, drain).await;
        queue.shutdown();
        for w in workers {
            if tokio::time::timeout(drain, w).await.is_err() {
                tracing::warn!("a job worker did not stop within the drain timeout");
            }
        }
        background.cancel();
        let _ = tokio::time::timeout(drain, scheduler).await;
        if let Some(task) = metrics_task {
            let _ = tokio::time::timeout(drain, task).await;
        }
        meta.close().await;
        tracing::info!("stopped");
        Ok(())
    }
}
