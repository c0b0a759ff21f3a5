//! The whole shop in containers on one network: PostgreSQL, payments, catalog,
//! orders, worker and gateway, each one replica, all ready.

use std::time::Duration;

use crate::postgres::{Postgres, TestDatabase};
use crate::stack::{Network, Shop};

/// How long the stack gets to become ready: generous, two noisy cores.
pub const READY_WITHIN: Duration = Duration::from_secs(60);

/// Knobs of a stack.
#[derive(Debug, Clone)]
pub struct StackOptions {
    /// Export spans to this OTLP/gRPC port on the Docker host.
    pub otlp_port: Option<u16>,
    /// How many orders replicas the gateway balances over.
    pub orders_replicas: usize,
    /// Turn on every role's fault admin API (port 9100).
    pub fault_admin: bool,
    /// Extra environment for the payments role (latency, decline ratio, ...).
    pub payments_env: Vec<(&'static str, String)>,
    /// Extra environment for the gateway (rate limits, ...).
    pub gateway_env: Vec<(&'static str, String)>,
    /// Extra environment for the orders replicas.
    pub orders_env: Vec<(&'static str, String)>,
}

impl Default for StackOptions {
    fn default() -> Self {
        Self {
            otlp_port: None,
            orders_replicas: 1,
            fault_admin: false,
            payments_env: Vec::new(),
            gateway_env: Vec::new(),
            orders_env: Vec::new(),
        }
    }
}

/// A running shop.
#[derive(Debug)]
pub struct ShopStack {
    pub network: Network,
    pub postgres: Postgres,
    pub database: TestDatabase,
    pub payments: Shop,
    pub catalog: Shop,
    /// The orders replicas.
    pub orders: Vec<Shop>,
    pub worker: Shop,
    pub gateway: Shop,
}

impl ShopStack {
    /// Starts every role and waits until all are ready.
    pub async fn start(test: &str, options: StackOptions) -> anyhow::Result<Self> {
        let network = Network::new(test);
        let postgres = Postgres::start(&network, &network.host("postgres")).await?;
        let database = postgres.create_database("shop").await?;
        let database_url = postgres.url_in_network(&database.name);
        let mut common: Vec<(&str, String)> = vec![("OTEL_BSP_SCHEDULE_DELAY", "200".into())];
        if options.fault_admin {
            common.push(("FAULTLINE_FAULT_ADMIN_ADDR", "0.0.0.0:9100".into()));
        }
        if let Some(port) = options.otlp_port {
            common.push(("OTEL_TRACES_EXPORTER", "otlp".into()));
            common.push((
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                format!("http://host.docker.internal:{port}"),
            ));
        }
        let with = |extra: Vec<(&'static str, String)>| {
            let mut env = common.clone();
            env.extend(extra);
            env
        };
        let host = |role: &str| network.host(role);

        let mut payments_env = options.payments_env.clone();
        payments_env.push(("OTEL_SERVICE_NAME", "payments".into()));
        let payments =
            Shop::start(&network, &host("payments"), "payments", &with(payments_env)).await?;
        let catalog = Shop::start(
            &network,
            &host("catalog"),
            "catalog",
            &with(vec![("DATABASE_URL", database_url.clone())]),
        )
        .await?;
        // Catalog applies the migrations; the others would too, under the same lock.
        catalog.wait_ready(READY_WITHIN).await?;
        let upstreams = vec![
            ("FAULTLINE_CATALOG_URLS", catalog.url_in_network()),
            ("FAULTLINE_PAYMENTS_URLS", payments.url_in_network()),
        ];
        let mut orders_env = upstreams.clone();
        orders_env.push(("DATABASE_URL", database_url.clone()));
        orders_env.extend(options.orders_env.clone());
        let mut orders = Vec::new();
        for replica in 1..=options.orders_replicas.max(1) {
            let name = host(&format!("orders-{replica}"));
            orders.push(Shop::start(&network, &name, "orders", &with(orders_env.clone())).await?);
        }
        let orders_urls = orders
            .iter()
            .map(Shop::url_in_network)
            .collect::<Vec<_>>()
            .join(",");
        let mut worker_env = upstreams;
        worker_env.push(("DATABASE_URL", database_url.clone()));
        let worker = Shop::start(&network, &host("worker"), "worker", &with(worker_env)).await?;
        let mut gateway_env = vec![
            ("FAULTLINE_CATALOG_URLS", catalog.url_in_network()),
            ("FAULTLINE_ORDERS_URLS", orders_urls),
        ];
        gateway_env.extend(options.gateway_env.clone());
        let gateway =
            Shop::start(&network, &host("gateway"), "gateway", &with(gateway_env)).await?;
        for service in orders.iter().chain([&payments, &worker, &gateway]) {
            service.wait_ready(READY_WITHIN).await?;
        }
        Ok(Self {
            network,
            postgres,
            database,
            payments,
            catalog,
            orders,
            worker,
            gateway,
        })
    }

    /// Every role's container, for scraping them all.
    pub fn services(&self) -> Vec<&Shop> {
        let mut services = vec![&self.gateway, &self.catalog, &self.payments, &self.worker];
        services.extend(self.orders.iter());
        services
    }

    /// The gateway's public base URL for the test process.
    pub fn gateway_url(&self) -> &str {
        &self.gateway.http_url
    }

    /// A connection pool to the shop's database, for checking invariants.
    pub async fn db(&self) -> anyhow::Result<sqlx::PgPool> {
        Ok(sqlx::postgres::PgPoolOptions::new()
            .max_connections(4)
            .connect(&self.database.url)
            .await?)
    }
}
