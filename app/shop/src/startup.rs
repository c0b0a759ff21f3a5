//! `Application::build(config)`: binds the listeners and wires a role's routers
//! and background tasks, so that tests can start any role on port 0 and learn
//! the ports it got.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use faultline_telemetry::Metrics;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use url::Url;

use crate::admin::{self, AdminState};
use crate::clients::{CatalogClient, PaymentsClient};
use crate::config::{
    CatalogConfig, ClientConfig, DatabaseConfig, GatewayConfig, OrdersConfig, PaymentsConfig,
    ServeConfig, WorkerConfig,
};
use crate::db::{self, DbConfigError};
use crate::faults::{self, Faults};
use crate::health::Health;
use crate::http::client::UpstreamPolicy;
use crate::http::server::ServerPolicy;
use crate::http::{self, Upstream};
use crate::outbox;
use crate::problem;
use crate::resilience::{self, rate_limit::RateLimit};
use crate::roles::{catalog, gateway, orders, payments, worker};

/// Which role to run, with its settings.
#[derive(Debug, Clone)]
pub enum RoleConfig {
    Gateway(GatewayConfig),
    Catalog(CatalogConfig),
    Orders(OrdersConfig),
    Payments(PaymentsConfig),
    Worker(WorkerConfig),
}

impl RoleConfig {
    /// The role's name: the default `service.name` and the build_info label.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Gateway(_) => "gateway",
            Self::Catalog(_) => "catalog",
            Self::Orders(_) => "orders",
            Self::Payments(_) => "payments",
            Self::Worker(_) => "worker",
        }
    }

    pub fn serve(&self) -> &ServeConfig {
        match self {
            Self::Gateway(c) => &c.serve,
            Self::Catalog(c) => &c.serve,
            Self::Orders(c) => &c.serve,
            Self::Payments(c) => &c.serve,
            Self::Worker(c) => &c.serve,
        }
    }

    /// How the role calls other services; `None` for roles that call none.
    pub fn client(&self) -> Option<&ClientConfig> {
        match self {
            Self::Gateway(c) => Some(&c.client),
            Self::Orders(c) => Some(&c.client),
            Self::Worker(c) => Some(&c.client),
            Self::Catalog(_) | Self::Payments(_) => None,
        }
    }

    pub fn database(&self) -> Option<&DatabaseConfig> {
        match self {
            Self::Catalog(c) => Some(&c.database),
            Self::Orders(c) => Some(&c.database),
            Self::Worker(c) => Some(&c.database),
            Self::Gateway(_) | Self::Payments(_) => None,
        }
    }
}

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

/// A background task of a role, started by [`Application::run_until_stopped`].
type Background = Box<dyn FnOnce(CancellationToken) -> tokio::task::JoinHandle<()> + Send>;

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

/// The longest wait for a TCP connection to another service.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(250);

/// How often endpoint gauges are refreshed and idle rate-limit keys dropped.
const HOUSEKEEPING_INTERVAL: Duration = Duration::from_secs(1);

fn upstream(
    name: &'static str,
    endpoints: &[Url],
    timeout: Duration,
    http: &reqwest::Client,
    upstreams: &mut Vec<Upstream>,
) -> Upstream {
    let policy = UpstreamPolicy::with_timeout(timeout);
    let upstream = Upstream::new(name, endpoints.to_vec(), policy, http.clone());
    upstreams.push(upstream.clone());
    upstream
}

/// The one client every outbound call goes through. Without `keepalive`
/// (`FAULTLINE_UPSTREAM_KEEPALIVE=off`) no idle connection is kept, so every
/// call opens its own.
pub(crate) fn http_client(keepalive: bool) -> reqwest::Result<reqwest::Client> {
    // One TLS provider for the whole process (ring, as sqlx and bollard use);
    // an error means one is installed already, which is just as good.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut builder = reqwest::Client::builder()
        .pool_idle_timeout(Duration::from_secs(30))
        // Replicas are on the same network: a connection that takes longer
        // than this is to a replica that is gone, which gets ejected.
        .connect_timeout(CONNECT_TIMEOUT);
    if !keepalive {
        builder = builder.pool_max_idle_per_host(0);
    }
    builder.build()
}

impl Application {
    /// Binds both listeners, prepares the (lazy) database pool and the role.
    ///
    /// Installs the process-wide metrics recorder on first use; services built
    /// in the same process (as tests do) share it.
    pub async fn build(config: RoleConfig) -> Result<Self, StartupError> {
        let metrics = Metrics::install()?;
        let role = config.name();
        register_metrics(&config)?;
        let keepalive = config.client().is_none_or(|c| c.upstream_keepalive);
        let client = http_client(keepalive).map_err(StartupError::Client)?;
        let mut background: Vec<Background> = Vec::new();
        let mut upstreams: Vec<Upstream> = Vec::new();
        let mut rate_limit = None;
        let (public, pool) = match &config {
            RoleConfig::Gateway(c) => {
                rate_limit = Some(RateLimit::new(c.rate_limit_per_second, c.rate_limit_burst));
                let state = gateway::GatewayState {
                    cache: gateway::CatalogCache::new(c.catalog_cache_entries, c.catalog_cache_ttl),
                    catalog: upstream(
                        "catalog",
                        &c.catalog_urls,
                        c.client.upstream_timeout,
                        &client,
                        &mut upstreams,
                    ),
                    orders: upstream(
                        "orders",
                        &c.orders_urls,
                        c.client.upstream_timeout,
                        &client,
                        &mut upstreams,
                    ),
                };
                (gateway::router(state), None)
            }
            RoleConfig::Catalog(c) => {
                let pool = db::lazy_pool(&c.database, role)?;
                let state = catalog::CatalogState { pool: pool.clone() };
                (catalog::router(state), Some(pool))
            }
            RoleConfig::Orders(c) => {
                let pool = db::lazy_pool(&c.database, role)?;
                let state = orders::OrdersState {
                    pool: pool.clone(),
                    catalog: CatalogClient::new(upstream(
                        "catalog",
                        &c.catalog_urls,
                        c.client.upstream_timeout,
                        &client,
                        &mut upstreams,
                    )),
                    payments: PaymentsClient::new(upstream(
                        "payments",
                        &c.payments_urls,
                        c.payment_timeout,
                        &client,
                        &mut upstreams,
                    )),
                    payment_timeout: c.payment_timeout,
                };
                (orders::router(state), Some(pool))
            }
            RoleConfig::Payments(c) => (payments::router(payments::Simulator::new(c)?), None),
            RoleConfig::Worker(c) => {
                let pool = db::lazy_pool(&c.database, role)?;
                let worker = worker::Worker {
                    pool: pool.clone(),
                    payments: PaymentsClient::new(upstream(
                        "payments",
                        &c.payments_urls,
                        c.client.upstream_timeout,
                        &client,
                        &mut upstreams,
                    )),
                    catalog: CatalogClient::new(upstream(
                        "catalog",
                        &c.catalog_urls,
                        c.client.upstream_timeout,
                        &client,
                        &mut upstreams,
                    )),
                    poll_interval: c.poll_interval,
                    max_backoff: c.max_backoff,
                };
                background.push(Box::new(move |stop| tokio::spawn(worker.run(stop))));
                (Router::new(), Some(pool))
            }
        };
        let ready_timeout = config.database().map(|database| database.ready_timeout);
        let health = Health::new(pool.clone().zip(ready_timeout));
        if let Some(pool) = pool.clone() {
            let health = health.clone();
            // Migrations first: the worker's loop just retries until the schema exists.
            background.insert(
                0,
                Box::new(move |stop| {
                    tokio::spawn(async move {
                        if db::migrate_until_done(&pool, &stop).await {
                            health.set_migrated();
                        }
                    })
                }),
            );
        }
        if let (RoleConfig::Orders(_), Some(pool)) = (&config, pool.clone()) {
            // The outbox's age, visible here too while no worker runs.
            let health = health.clone();
            background.push(Box::new(move |stop| {
                tokio::spawn(outbox::report_oldest_age(pool, health, stop))
            }));
        }
        let serve = config.serve().clone();
        let faults = serve.fault_admin_addr.map(|_| Faults::new(pool.clone()));
        let public = http::server::stack(
            public.fallback(problem::not_found),
            ServerPolicy {
                request_timeout: serve.request_timeout,
                max_in_flight: serve.max_in_flight,
                rate_limit: rate_limit.clone(),
                faults: faults.clone(),
            },
        );
        background.push(Box::new(move |stop| {
            tokio::spawn(housekeeping(upstreams, rate_limit, stop))
        }));
        let fault_admin = match (serve.fault_admin_addr, faults) {
            (Some(addr), Some(faults)) => {
                let listener = bind("fault admin", addr).await?;
                let bound = listener.local_addr().map_err(StartupError::LocalAddr)?;
                Some((listener, bound, faults::router(faults)))
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
            .map(|start| start(stop_background.clone()))
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
/// meaning in metrics.toml) and starts the role's counters at zero.
fn register_metrics(config: &RoleConfig) -> Result<(), StartupError> {
    faultline_telemetry::catalog::describe_source(SHOP_METRICS)?;
    resilience::register_metrics();
    faults::register_metrics();
    match config {
        RoleConfig::Orders(_) => orders::register_metrics(),
        RoleConfig::Payments(_) => payments::register_metrics(),
        RoleConfig::Worker(_) => worker::register_metrics(),
        RoleConfig::Gateway(_) => gateway::cache::register_metrics(),
        RoleConfig::Catalog(_) => {}
    }
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// An HTTP/1.1 server that answers every request with an empty 200 and
    /// counts the connections it accepted.
    async fn counting_server() -> (SocketAddr, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                counter.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buffer = [0_u8; 1024];
                    while let Ok(read) = stream.read(&mut buffer).await {
                        if read == 0 {
                            return;
                        }
                        request.extend_from_slice(&buffer[..read]);
                        if request.windows(4).any(|w| w == b"\r\n\r\n") {
                            request.clear();
                            let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
                            if stream.write_all(answer).await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        (addr, accepted)
    }

    async fn connections_for_three_calls(keepalive: bool) -> usize {
        let (addr, accepted) = counting_server().await;
        let client = http_client(keepalive).unwrap();
        for _ in 0..3 {
            let response = client.get(format!("http://{addr}/")).send().await.unwrap();
            assert!(response.status().is_success());
            response.bytes().await.unwrap();
        }
        accepted.load(Ordering::SeqCst)
    }

    #[tokio::test]
    async fn with_keepalive_calls_share_a_connection() {
        assert_eq!(connections_for_three_calls(true).await, 1);
    }

    #[tokio::test]
    async fn without_keepalive_every_call_opens_a_connection() {
        assert_eq!(connections_for_three_calls(false).await, 3);
    }
}
