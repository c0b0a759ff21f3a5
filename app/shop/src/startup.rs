//! `Application::build(config)`: the generic lifecycle. The role builds itself
//! ([`RoleConfig::build`]); this adds what every role has (migrations, the
//! server stack, health, metrics, the fault admin API), binds the listeners,
//! serves and drains, so that tests can start any role on port 0 and learn the
//! ports it got.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use faultline_telemetry::Metrics;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::admin::{self, AdminState};
use crate::config::ServeConfig;
use crate::db::{self, DbConfigError};
use crate::faults::{self, Faults};
use crate::health::Health;
use crate::http::server::ServerPolicy;
use crate::http::{self, Upstream};
use crate::problem;
use crate::resilience::{self, rate_limit::RateLimit};
pub use crate::roles::RoleConfig;
use crate::roles::{Background, TaskContext, payments};

/// Why a service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Database(#[from] DbConfigError),
    #[error("cannot set up metrics: {0}")]
    Metrics(#[from] faultline_telemetry::MetricsError),
    #[error(transparent)]
    Catalog(#[from] faultline_telemetry::CatalogError),
    #[error("cannot build the HTTP client: {0}")]
    Client(#[source] reqwest::Error),
    #[error("invalid payments simulation settings: {0}")]
    Payments(#[from] payments::SimulationError),
    #[error("cannot listen on {addr} ({which}): {source}")]
    Bind {
        which: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Redis(#[from] crate::redis_client::RedisConfigError),
    #[error(transparent)]
    Broker(#[from] crate::broker::BrokerConfigError),
    #[error(transparent)]
    Auth(#[from] crate::auth::AuthConfigError),
    #[error("cannot read the bound address: {0}")]
    LocalAddr(#[source] std::io::Error),
    #[error(
        "the fault admin API is on ({addr}) but has no token: set FAULTLINE_FAULT_ADMIN_TOKEN \
         (--fault-admin-token), the bearer token its callers must send, or unset \
         FAULTLINE_FAULT_ADMIN_ADDR"
    )]
    FaultAdminToken { addr: SocketAddr },
}

/// Why a running service stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("the {which} server failed: {source}")]
    Serve {
        which: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("a server task panicked or was cancelled: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// A service with its listeners bound, ready to run.
pub struct Application {
    role: &'static str,
    serve: ServeConfig,
    http: TcpListener,
    admin: TcpListener,
    http_addr: SocketAddr,
    admin_addr: SocketAddr,
    health: Health,
    pool: Option<PgPool>,
    metrics: Metrics,
    public: Router,
    background: Vec<Background>,
    fault_admin: Option<(TcpListener, SocketAddr, Router)>,
    /// The injected faults, with the fault admin API on.
    faults: Option<Faults>,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("role", &self.role)
            .field("http_addr", &self.http_addr)
            .field("admin_addr", &self.admin_addr)
            .finish_non_exhaustive()
    }
}

/// The `source` of the shop's metrics in the metric catalog.
const SHOP_METRICS: &str = "shop";

/// How often endpoint gauges are refreshed and idle rate-limit keys dropped.
const HOUSEKEEPING_INTERVAL: Duration = Duration::from_secs(1);

impl Application {
    /// Binds both listeners, prepares the (lazy) database pool and the role.
    ///
    /// Installs the process-wide metrics recorder on first use; services built
    /// in the same process (as tests do) share it.
    pub async fn build(config: RoleConfig) -> Result<Self, StartupError> {
        let metrics = Metrics::install()?;
        let role = config.name();
        register_metrics()?;
        let built = config.build()?;
        let pool = built
            .database
            .as_ref()
            .map(|database| database.pool.clone());
        let health = Health::new(
            built
                .database
                .map(|database| (database.pool, database.ready_timeout)),
        );
        let mut background: Vec<Background> = Vec::new();
        if let Some(pool) = pool.clone() {
            // Migrations first: the worker's loop just retries until the schema exists.
            background.push(Box::new(move |task: TaskContext| {
                tokio::spawn(async move {
                    if db::migrate_until_done(&pool, &task.stop).await {
                        task.health.set_migrated();
                    }
                })
            }));
        }
        background.extend(built.background);
        let (upstreams, rate_limit) = (built.upstreams, built.rate_limit);
        let public = built.public;
        let serve = built.serve;
        let faults = serve.fault_admin_addr.map(|_| Faults::new(pool.clone()));
        let public = http::server::stack(
            public
                .fallback(problem::not_found)
                .method_not_allowed_fallback(problem::method_not_allowed),
            ServerPolicy {
                request_timeout: serve.request_timeout,
                max_in_flight: serve.max_in_flight,
                rate_limit: rate_limit.clone(),
                auth: built.auth,
                faults: faults.clone(),
            },
        );
        let task_faults = faults.clone();
        background.push(Box::new(move |task: TaskContext| {
            tokio::spawn(housekeeping(upstreams, rate_limit, task.stop))
        }));
        let fault_admin = match (serve.fault_admin_addr, faults) {
            (Some(addr), Some(faults)) => {
                let token = serve
                    .fault_admin_token()
                    .cloned()
                    .ok_or(StartupError::FaultAdminToken { addr })?;
                let listener = bind("fault admin", addr).await?;
                let bound = listener.local_addr().map_err(StartupError::LocalAddr)?;
                Some((listener, bound, faults::router(faults, token)))
            }
            _ => None,
        };
        let http_listener = bind("http", serve.http_addr).await?;
        let admin_listener = bind("admin", serve.admin_addr).await?;
        let http_addr = http_listener
            .local_addr()
            .map_err(StartupError::LocalAddr)?;
        let admin_addr = admin_listener
            .local_addr()
            .map_err(StartupError::LocalAddr)?;
        faultline_telemetry::metrics::record_build_info(role, env!("CARGO_PKG_VERSION"));
        Ok(Self {
            role,
            serve,
            http: http_listener,
            admin: admin_listener,
            http_addr,
            admin_addr,
            health,
            pool,
            metrics,
            public,
            background,
            fault_admin,
            faults: task_faults,
        })
    }

    /// Where the fault admin API listens, when it is on.
    pub fn fault_admin_addr(&self) -> Option<SocketAddr> {
        self.fault_admin.as_ref().map(|(_, addr, _)| *addr)
    }

    /// Where the public API listens.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// Where health, readiness and metrics listen.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// Serves until `shutdown` resolves, then drains: readiness fails at once,
    /// new connections are refused after the drain delay, in-flight requests
    /// get the shutdown grace, background tasks stop, and the pool closes.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), RunError> {
        let stop_accepting = CancellationToken::new();
        let stop_background = CancellationToken::new();
        let mut servers = JoinSet::new();
        let admin = admin::router(AdminState {
            health: self.health.clone(),
            metrics: self.metrics.clone(),
            pool: self.pool.clone(),
        });
        spawn_server(
            &mut servers,
            "http",
            self.http,
            self.public,
            &stop_accepting,
        );
        spawn_server(&mut servers, "admin", self.admin, admin, &stop_accepting);
        if let Some((listener, addr, router)) = self.fault_admin {
            tracing::warn!(%addr, "fault admin API is on: never expose this port");
            spawn_server(
                &mut servers,
                "fault admin",
                listener,
                router,
                &stop_accepting,
            );
        }
        let mut tasks: Vec<_> = self
            .background
            .into_iter()
            .map(|start| {
                start(TaskContext {
                    stop: stop_background.clone(),
                    health: self.health.clone(),
                    faults: self.faults.clone(),
                })
            })
            .collect();
        tasks.push(tokio::spawn(run_upkeep(
            self.metrics.clone(),
            stop_background.clone(),
        )));
        tracing::info!(
            role = self.role,
            http_addr = %self.http_addr,
            admin_addr = %self.admin_addr,
            "serving"
        );

        let failed = tokio::select! {
            () = shutdown => None,
            Some(result) = servers.join_next() => Some(result),
        };
        self.health.start_draining();
        if let Some(result) = failed {
            stop_accepting.cancel();
            stop_background.cancel();
            servers.abort_all();
            result??;
            return Ok(());
        }
        tracing::info!(drain_delay = ?self.serve.drain_delay, "draining");
        tokio::time::sleep(self.serve.drain_delay).await;
        stop_accepting.cancel();
        stop_background.cancel();
        let grace = self.serve.shutdown_grace;
        let finished = tokio::time::timeout(grace, async {
            while let Some(result) = servers.join_next().await {
                result??;
            }
            for task in tasks {
                task.await?;
            }
            Ok::<(), RunError>(())
        })
        .await;
        if let Some(pool) = &self.pool {
            pool.close().await;
        }
        match finished {
            Ok(result) => {
                tracing::info!("stopped");
                result
            }
            Err(_) => {
                tracing::warn!(?grace, "in-flight work did not finish in time");
                Ok(())
            }
        }
    }
}

/// Describes the shop's metrics from the catalog (`# HELP` is each one's
/// meaning in metrics.toml) and starts the counters every role has at zero;
/// each role's `build` starts its own.
fn register_metrics() -> Result<(), StartupError> {
    faultline_telemetry::catalog::describe_source(SHOP_METRICS)?;
    resilience::register_metrics();
    faults::register_metrics();
    Ok(())
}

async fn bind(which: &'static str, addr: SocketAddr) -> Result<TcpListener, StartupError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartupError::Bind {
            which,
            addr,
            source,
        })
}

fn spawn_server(
    servers: &mut JoinSet<Result<(), RunError>>,
    which: &'static str,
    listener: TcpListener,
    router: Router,
    stop_accepting: &CancellationToken,
) {
    let stop = stop_accepting.clone().cancelled_owned();
    servers.spawn(async move {
        // The peer address is the rate limiter's key for clients without an id.
        let service = router.into_make_service_with_connect_info::<SocketAddr>();
        axum::serve(listener, service)
            .with_graceful_shutdown(stop)
            .await
            .map_err(|source| RunError::Serve { which, source })
    });
}

/// Refreshes the endpoint gauges and forgets idle rate-limit clients.
async fn housekeeping(
    upstreams: Vec<Upstream>,
    rate_limit: Option<RateLimit>,
    stop: CancellationToken,
) {
    let mut every = tokio::time::interval(HOUSEKEEPING_INTERVAL);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            () = stop.cancelled() => return,
        }
        for upstream in &upstreams {
            upstream.refresh_metrics();
        }
        if let Some(rate_limit) = &rate_limit {
            rate_limit.forget_idle_clients();
        }
    }
}

async fn run_upkeep(metrics: Metrics, stop: CancellationToken) {
    let mut every = tokio::time::interval(faultline_telemetry::metrics::UPKEEP_INTERVAL);
    loop {
        tokio::select! {
            _ = every.tick() => metrics.run_upkeep(),
            () = stop.cancelled() => return,
        }
    }
}
