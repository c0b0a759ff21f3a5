//! The roles. Each is a unit: its folder owns its handlers, its queries, and a
//! `build` that turns its settings into a [`Role`] (the public router, the
//! background tasks, the database and the upstreams it uses), and registers
//! its metrics. The generic lifecycle (bind, serve, drain) is
//! [`crate::startup`]'s.
//!
//! To add a role: a folder here with its `build`, and one arm in
//! [`RoleConfig`] (its variant, its name and its build).

pub mod catalog;
pub mod gateway;
pub mod orders;
pub mod payments;
pub mod worker;

use std::time::Duration;

use axum::Router;
use sqlx::PgPool;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{DatabaseConfig, ServeConfig};
use crate::health::Health;
use crate::http::Upstream;
use crate::http::outbound::Upstreams;
use crate::resilience::rate_limit::RateLimit;
use crate::startup::StartupError;

/// Which role to run, with its settings: one subcommand each.
#[derive(Debug, Clone, clap::Subcommand)]
pub enum RoleConfig {
    /// The public API: forwards to catalog and orders.
    Gateway(gateway::GatewayConfig),
    /// Products, stock and reservations.
    Catalog(catalog::CatalogConfig),
    /// Checkout: orders, idempotency and the outbox.
    Orders(orders::OrdersConfig),
    /// A simulated payment provider.
    Payments(payments::PaymentsConfig),
    /// Drains the outbox: settles payments, releases stock, notifies.
    Worker(worker::WorkerConfig),
}

impl RoleConfig {
    /// The role's name: the default `service.name` and the build_info label.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Gateway(_) => gateway::NAME,
            Self::Catalog(_) => catalog::NAME,
            Self::Orders(_) => orders::NAME,
            Self::Payments(_) => payments::NAME,
            Self::Worker(_) => worker::NAME,
        }
    }

    /// Builds the role: its router, tasks and clients, and its metrics
    /// registered. Nothing is bound or started yet.
    pub fn build(&self) -> Result<Role, StartupError> {
        match self {
            Self::Gateway(c) => gateway::build(c),
            Self::Catalog(c) => catalog::build(c),
            Self::Orders(c) => orders::build(c),
            Self::Payments(c) => payments::build(c),
            Self::Worker(c) => worker::build(c),
        }
    }
}

/// What the generic lifecycle gives a background task when it starts it.
#[derive(Debug, Clone)]
pub struct TaskContext {
    /// Fires when the service stops.
    pub stop: CancellationToken,
    /// The service's readiness, to learn whether the schema is migrated.
    pub health: Health,
    /// The injected faults, when the fault admin API is on (the worker
    /// applies the latency fault to every event it handles).
    pub faults: Option<crate::faults::Faults>,
}

/// A background task of a role, started by the lifecycle once serving.
pub type Background = Box<dyn FnOnce(TaskContext) -> JoinHandle<()> + Send>;

/// A role's database: the (lazy) pool, and how long readiness waits for it.
#[derive(Debug, Clone)]
pub struct Database {
    pub pool: PgPool,
    pub ready_timeout: Duration,
}

impl Database {
    /// The pool of `role` (its connections' application name), not connected yet.
    pub fn connect_lazy(config: &DatabaseConfig, role: &'static str) -> Result<Self, StartupError> {
        Ok(Self {
            pool: crate::db::lazy_pool(config, role)?,
            ready_timeout: config.ready_timeout,
        })
    }
}

/// A role, built.
pub struct Role {
    /// The public API (the lifecycle adds the server stack around it).
    pub public: Router,
    /// How the role is served.
    pub serve: ServeConfig,
    /// The role's database, migrated at start by the lifecycle.
    pub database: Option<Database>,
    /// The upstreams it calls, whose gauges the lifecycle refreshes.
    pub upstreams: Vec<Upstream>,
    /// The per-client rate limit on the public API, if any.
    pub rate_limit: Option<RateLimit>,
    /// Bearer-token authentication on the public API, if any.
    pub auth: Option<crate::auth::Authenticator>,
    /// Tasks beside the servers.
    pub background: Vec<Background>,
}

impl std::fmt::Debug for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Role")
            .field("serve", &self.serve)
            .field("database", &self.database.is_some())
            .field("upstreams", &self.upstreams.len())
            .field("background", &self.background.len())
            .finish_non_exhaustive()
    }
}

impl Role {
    /// A role serving `public` with `serve`, and nothing else yet.
    pub fn new(public: Router, serve: &ServeConfig) -> Self {
        Self {
            public,
            serve: serve.clone(),
            database: None,
            upstreams: Vec::new(),
            rate_limit: None,
            auth: None,
            background: Vec::new(),
        }
    }

    /// The role calls `upstreams`: the lifecycle refreshes their gauges, and
    /// a background task resolves their names again and again.
    pub fn call(&mut self, upstreams: Upstreams) {
        let (upstreams, every) = upstreams.into_parts();
        for upstream in upstreams.iter().filter(|u| u.has_names()).cloned() {
            self.background.push(Box::new(move |task: TaskContext| {
                tokio::spawn(rediscover(upstream, every, task.stop))
            }));
        }
        self.upstreams = upstreams;
    }
}

/// The shortest time between two lookups of an upstream's names when
/// connections fail: a dead replica's callers do not flood the resolver.
const MIN_LOOKUP_INTERVAL: Duration = Duration::from_secs(1);

/// Resolves the upstream's names at once, then every `every` and whenever a
/// connection to one of its replicas failed (at most once per
/// [`MIN_LOOKUP_INTERVAL`]), until `stop`.
async fn rediscover(upstream: Upstream, every: Duration, stop: CancellationToken) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = None::<tokio::time::Instant>;
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            () = upstream.went_stale() => {
                if let Some(at) = last {
                    tokio::select! {
                        () = tokio::time::sleep_until(at + MIN_LOOKUP_INTERVAL) => {}
                        () = stop.cancelled() => return,
                    }
                }
            }
            () = stop.cancelled() => return,
        }
        upstream.rediscover().await;
        last = Some(tokio::time::Instant::now());
    }
}
