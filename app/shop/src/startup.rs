//! `Application::build(config)`: binds the listeners and wires the routers, so
//! that tests can start a service on port 0 and learn the ports it got.

use std::future::Future;
use std::net::SocketAddr;

use axum::Router;
use faultline_telemetry::Metrics;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::admin::{self, AdminState};
use crate::config::ServeConfig;
use crate::db::{self, DbConfigError};
use crate::health::Health;
use crate::problem;

/// Why a service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error(transparent)]
    Database(#[from] DbConfigError),
    #[error("cannot set up metrics: {0}")]
    Metrics(#[from] faultline_telemetry::MetricsError),
    #[error("cannot listen on {addr} ({which}): {source}")]
    Bind {
        which: &'static str,
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read the bound address: {0}")]
    LocalAddr(#[source] std::io::Error),
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
#[derive(Debug)]
pub struct Application {
    config: ServeConfig,
    http: TcpListener,
    admin: TcpListener,
    http_addr: SocketAddr,
    admin_addr: SocketAddr,
    health: Health,
    pool: sqlx::PgPool,
    metrics: Metrics,
}

impl Application {
    /// Binds both listeners and prepares the (lazy) database pool.
    ///
    /// Installs the process-wide metrics recorder on first use; services built
    /// in the same process (as tests do) share it.
    pub async fn build(config: ServeConfig) -> Result<Self, StartupError> {
        let metrics = Metrics::install()?;
        let pool = db::lazy_pool(&config.database)?;
        db::describe_pool_metrics();
        let health = Health::new(pool.clone(), config.database.ready_timeout);
        let http = bind("http", config.http_addr).await?;
        let admin = bind("admin", config.admin_addr).await?;
        let http_addr = http.local_addr().map_err(StartupError::LocalAddr)?;
        let admin_addr = admin.local_addr().map_err(StartupError::LocalAddr)?;
        Ok(Self {
            config,
            http,
            admin,
            http_addr,
            admin_addr,
            health,
            pool,
            metrics,
        })
    }

    /// Where the public API listens.
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// Where health, readiness and metrics listen.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// Serves until `shutdown` resolves, then drains:
    /// readiness fails at once, new connections are refused after the drain
    /// delay, in-flight requests get the shutdown grace, and the pool closes.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), RunError> {
        let stop_accepting = CancellationToken::new();
        let mut servers = JoinSet::new();
        let public = Router::new().fallback(problem::not_found);
        let admin = admin::router(AdminState {
            health: self.health.clone(),
            metrics: self.metrics.clone(),
            pool: self.pool.clone(),
        });
        spawn_server(&mut servers, "http", self.http, public, &stop_accepting);
        spawn_server(&mut servers, "admin", self.admin, admin, &stop_accepting);
        let upkeep = tokio::spawn(run_upkeep(self.metrics.clone(), stop_accepting.clone()));
        tracing::info!(
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
            servers.abort_all();
            result??;
            return Ok(());
        }
        tracing::info!(drain_delay = ?self.config.drain_delay, "draining");
        tokio::time::sleep(self.config.drain_delay).await;
        stop_accepting.cancel();
        let grace = self.config.shutdown_grace;
        let finished = tokio::time::timeout(grace, async {
            while let Some(result) = servers.join_next().await {
                result??;
            }
            Ok::<(), RunError>(())
        })
        .await;
        upkeep.abort();
        self.pool.close().await;
        match finished {
            Ok(result) => {
                tracing::info!("stopped");
                result
            }
            Err(_) => {
                tracing::warn!(?grace, "in-flight requests did not finish in time");
                Ok(())
            }
        }
    }
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
        axum::serve(listener, router)
            .with_graceful_shutdown(stop)
            .await
            .map_err(|source| RunError::Serve { which, source })
    });
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
