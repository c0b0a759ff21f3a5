//! The whole shop in containers on one network: PostgreSQL, payments, catalog,
//! orders, worker and gateway (orders, workers and gateway in as many
//! replicas as asked), Redis, RabbitMQ and a PostgreSQL read replica when
//! asked, all ready.

use std::time::Duration;

use crate::alertmanager::{Alertmanager, Webhooks, routing_config};
use crate::fault_proxy::FaultProxy;
use crate::identity::{JwksServer, StackKeys};
use crate::images::{self, LocalImage};
use crate::otlp::OtlpReceiver;
use crate::postgres::{
    EXPORTER_SCRAPE_INTERVAL, Postgres, PostgresExporter, PostgresRole, REPLICA_SERVICE,
    REPLICA_SLOT, TestDatabase,
};
use crate::rabbitmq::RabbitMq;
use crate::redis::{Redis, RedisExporter};
use crate::stack::{
    LabelledTarget, Network, Prometheus, Shop, labelled_scrape_job, prometheus_config,
};

/// How long the stack gets to become ready: generous, two noisy cores.
pub const READY_WITHIN: Duration = Duration::from_secs(60);

/// Knobs of a stack.
#[derive(Debug, Clone)]
pub struct StackOptions {
    /// Export spans to this OTLP/gRPC port on the Docker host.
    pub otlp_port: Option<u16>,
    /// How many orders replicas the gateway balances over.
    pub orders_replicas: usize,
    /// Turn on every role's fault admin API (port 9100), behind a token
    /// random per stack ([`ShopStack::fault_admin_token`]).
    pub fault_admin: bool,
    /// Extra environment for the payments role (latency, decline ratio, ...).
    pub payments_env: Vec<(&'static str, String)>,
    /// Extra environment for the gateway (rate limits, ...).
    pub gateway_env: Vec<(&'static str, String)>,
    /// Extra environment for the orders replicas.
    pub orders_env: Vec<(&'static str, String)>,
    /// Put the fault proxy between orders and payments (a proxy named
    /// `payments`, as in the compose demo).
    pub payments_through_proxy: bool,
    /// Put the fault proxy between the gateway and orders replica 1 (a proxy
    /// named `orders`).
    pub orders_through_proxy: bool,
    /// Put the fault proxy between the gateway and catalog (a proxy named
    /// `catalog`); orders still calls catalog directly.
    pub catalog_through_proxy: bool,
    /// Run an OTLP receiver in the test process and have every role export
    /// its spans to it through the fault proxy (a proxy named `otlp`).
    pub otlp_through_proxy: bool,
    /// Publish PostgreSQL on a fixed host port, so that the test process
    /// reaches it again after an experiment kills and restarts it.
    pub postgres_fixed_port: bool,
    /// Run Prometheus, scraping every role (each its own job) and itself
    /// every second, with the compressed alert rules of `alerts/compressed`
    /// and the drop-in rules of [`DROP_IN_RULES`], as in compose.
    pub prometheus: bool,
    /// Run Alertmanager with the repository's routing (its timers compressed
    /// 60x), Prometheus notifying and scraping it, and its page, ticket and
    /// dead man's switch receivers notifying webhooks in the test process
    /// through the fault proxy (a proxy named `webhooks`). Needs `prometheus`.
    pub alertmanager: bool,
    /// Run Redis (and its exporter, scraped as job `redis` with
    /// `prometheus`): the gateway replicas share their catalog cache and rate
    /// limit in it, and the catalog drops what a stock change makes wrong.
    pub redis: bool,
    /// Put the fault proxy between the gateways and Redis (a proxy named
    /// `redis`, as in compose); the catalog still reaches Redis directly.
    /// Needs `redis`.
    pub redis_through_proxy: bool,
    /// How many gateway replicas run (each told the count, for its share of
    /// the rate limit while Redis is unavailable).
    pub gateway_replicas: usize,
    /// Run a PostgreSQL read replica: a hot standby of the primary (service
    /// `postgres-replica`, slot and `application_name` `replica_1`), started
    /// and streaming before the shop, which the catalog reads from
    /// (`FAULTLINE_DATABASE_READ_URL`: the same database and user as
    /// `DATABASE_URL`, on the replica). It is published on a fixed host port,
    /// so that [`ShopStack::replica_url`] still reaches it after an
    /// experiment kills and starts it again. With it, one PostgreSQL exporter
    /// per server (services `postgres-exporter`, `postgres-replica-exporter`),
    /// scraped with `prometheus` as job `postgres`, each target labelled
    /// `role="primary"` or `role="replica"` and `instance="postgres"` or
    /// `instance="postgres-replica"`, as in compose.
    pub read_replica: bool,
    /// Run RabbitMQ (service `rabbitmq`), the broker the orders replicas
    /// relay the outbox to and every worker consumes from: each of them is
    /// given `FAULTLINE_AMQP_URL`. With `prometheus`, its plugin is scraped
    /// as job `rabbitmq` every [`crate::rabbitmq::SCRAPE_INTERVAL`], as in
    /// compose.
    pub broker: bool,
    /// Put the fault proxy between the workers and RabbitMQ (a proxy named
    /// `rabbitmq`, as in compose); the orders replicas still reach it
    /// directly. Needs `broker`.
    pub broker_through_proxy: bool,
    /// How many worker replicas run: hosts `worker-1`, `worker-2`, ...,
    /// labelled replica 1, 2, ... as in compose.
    pub worker_replicas: usize,
    /// Serve the stack's JWKS over HTTP from the test process (re-read on
    /// every fetch, and fetched every second by the gateway and orders), so
    /// that a key rotated in [`ShopStack::keys`] is picked up live; without
    /// it the JWKS is passed inline.
    pub jwks_served: bool,
}

/// Where Prometheus also reads rule files: a directory in its own writable
/// data directory, empty normally, as in compose/prometheus/prometheus.yml.
pub const DROP_IN_RULES: &str = "/prometheus/rules.d/*.rules.yml";

impl Default for StackOptions {
    fn default() -> Self {
        Self {
            otlp_port: None,
            orders_replicas: 1,
            fault_admin: false,
            payments_env: Vec::new(),
            gateway_env: Vec::new(),
            orders_env: Vec::new(),
            payments_through_proxy: false,
            orders_through_proxy: false,
            catalog_through_proxy: false,
            postgres_fixed_port: false,
            otlp_through_proxy: false,
            prometheus: false,
            alertmanager: false,
            redis: false,
            redis_through_proxy: false,
            gateway_replicas: 1,
            read_replica: false,
            broker: false,
            broker_through_proxy: false,
            worker_replicas: 1,
            jwks_served: false,
        }
    }
}

impl StackOptions {
    /// The local images a stack with these options starts: what to give
    /// [`crate::docker::preflight`] first.
    pub fn images(&self) -> Vec<LocalImage> {
        let mut images = vec![images::POSTGRES, images::FAULTLINE];
        if self.prometheus {
            images.push(images::PROMETHEUS);
        }
        if self.alertmanager {
            images.push(images::ALERTMANAGER);
        }
        if self.redis {
            images.extend([images::REDIS, images::REDIS_EXPORTER]);
        }
        if self.read_replica {
            images.push(images::POSTGRES_EXPORTER);
        }
        if self.broker {
            images.push(images::RABBITMQ);
        }
        images
    }
}

/// A running shop.
#[derive(Debug)]
pub struct ShopStack {
    pub network: Network,
    pub postgres: Postgres,
    pub database: TestDatabase,
    /// The read replica (a hot standby of `postgres`), with `read_replica`.
    pub replica: Option<Postgres>,
    /// The PostgreSQL exporters, with `read_replica`: the primary's, then
    /// the replica's.
    pub postgres_exporters: Vec<PostgresExporter>,
    /// The shop's database on the replica, for the test process.
    replica_url: Option<String>,
    pub payments: Shop,
    pub catalog: Shop,
    /// The orders replicas.
    pub orders: Vec<Shop>,
    /// The worker replicas (one unless `worker_replicas` says more).
    pub workers: Vec<Shop>,
    /// Gateway replica 1.
    pub gateway: Shop,
    /// Gateway replicas 2 and on, with `gateway_replicas`.
    pub more_gateways: Vec<Shop>,
    /// Redis and its exporter, with `redis`.
    pub redis: Option<(Redis, RedisExporter)>,
    /// RabbitMQ, with `broker`.
    pub rabbitmq: Option<RabbitMq>,
    /// The fault proxy, when a `*_through_proxy` option asked for it (its
    /// control API requires its `api_token`).
    pub proxy: Option<FaultProxy>,
    /// The bearer token of every role's fault admin API, with `fault_admin`.
    pub fault_admin_token: Option<String>,
    /// The stack's signing keys: [`StackKeys::token`] mints a token the
    /// gateway and orders accept.
    pub keys: StackKeys,
    /// The JWKS server, with `jwks_served`.
    pub jwks_server: Option<JwksServer>,
    /// The OTLP receiver, with `otlp_through_proxy`.
    pub otlp: Option<OtlpReceiver>,
    /// Prometheus, when asked for.
    pub prometheus: Option<Prometheus>,
    /// Alertmanager, when asked for.
    pub alertmanager: Option<Alertmanager>,
    /// The webhooks Alertmanager notifies, with `alertmanager`.
    pub webhooks: Option<Webhooks>,
}

/// The port of the proxied payments link inside the network.
pub const PAYMENTS_PROXY_PORT: u16 = 18080;
/// The port of the proxied gateway → orders link inside the network.
pub const ORDERS_PROXY_PORT: u16 = 18081;
/// The port of the proxied gateway → catalog link inside the network.
pub const CATALOG_PROXY_PORT: u16 = 18082;
/// The port of the proxied link to the test's OTLP receiver.
pub const OTLP_PROXY_PORT: u16 = 18083;
/// The port of the proxied link from Alertmanager to the test's webhooks.
pub const WEBHOOKS_PROXY_PORT: u16 = 18084;
/// The port of the proxied gateway → Redis link inside the network.
pub const REDIS_PROXY_PORT: u16 = 18085;
/// The port of the proxied workers → RabbitMQ link inside the network.
pub const RABBITMQ_PROXY_PORT: u16 = 18086;

impl ShopStack {
    /// Starts every role and waits until all are ready.
    pub async fn start(test: &str, options: StackOptions) -> anyhow::Result<Self> {
        let network = Network::new(test);
        let fixed_port = if options.postgres_fixed_port {
            Some(crate::host_port::free()?)
        } else {
            None
        };
        let postgres = Postgres::start_on(&network, &network.host("postgres"), fixed_port).await?;
        let database = postgres.create_database("shop").await?;
        let database_url = postgres.url_in_network(&database.name);
        // The standby clones the primary once the shop's database exists;
        // what the shop writes later reaches it by streaming.
        let replica = if options.read_replica {
            let replica = Postgres::start_standby(
                &network,
                &network.host(REPLICA_SERVICE),
                &postgres,
                Some(crate::host_port::free()?),
            )
            .await?;
            postgres.wait_streaming(REPLICA_SLOT, READY_WITHIN).await?;
            Some(replica)
        } else {
            None
        };
        let mut postgres_exporters = Vec::new();
        if let Some(replica) = &replica {
            for (server, role) in [
                (&postgres, PostgresRole::Primary),
                (replica, PostgresRole::Replica),
            ] {
                let host = network.host(&format!("{}-exporter", role.instance()));
                postgres_exporters
                    .push(PostgresExporter::start(&network, &host, &server.host, role).await?);
            }
        }
        let read_url = replica
            .as_ref()
            .map(|replica| replica.url_in_network(&database.name));
        let replica_url = replica
            .as_ref()
            .map(|replica| format!("{}/{}", replica.admin_url, database.name));
        let mut common: Vec<(&str, String)> = vec![
            ("OTEL_BSP_SCHEDULE_DELAY", "200".into()),
            // Every request traced, whoever sends it: the trace tests need
            // the whole of each trace (the shop's default samples 10% of new
            // traces).
            ("OTEL_TRACES_SAMPLER", "parentbased_always_on".into()),
        ];
        let proxy = if options.payments_through_proxy
            || options.orders_through_proxy
            || options.catalog_through_proxy
            || options.otlp_through_proxy
            || options.alertmanager
            || options.redis_through_proxy
            || options.broker_through_proxy
        {
            Some(FaultProxy::start(&network, &network.host("proxy")).await?)
        } else {
            None
        };
        let mut otlp = None;
        if let (true, Some(proxy)) = (options.otlp_through_proxy, &proxy) {
            let receiver = OtlpReceiver::start().await?;
            let upstream = format!("host.docker.internal:{}", receiver.port());
            let link = proxy.add("otlp", OTLP_PROXY_PORT, &upstream).await?;
            common.push(("OTEL_TRACES_EXPORTER", "otlp".into()));
            common.push(("OTEL_EXPORTER_OTLP_ENDPOINT", format!("http://{link}")));
            // A receiver that is gone must show as failed exports within
            // seconds, not after the default 10 s timeout.
            common.push(("OTEL_EXPORTER_OTLP_TIMEOUT", "1000".into()));
            otlp = Some(receiver);
        }
        let fault_admin_token = options
            .fault_admin
            .then(|| format!("fault-admin-{}", uuid::Uuid::new_v4().simple()));
        if let Some(token) = &fault_admin_token {
            common.push(("FAULTLINE_FAULT_ADMIN_ADDR", "0.0.0.0:9100".into()));
            common.push(("FAULTLINE_FAULT_ADMIN_TOKEN", token.clone()));
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
        anyhow::ensure!(
            options.redis || !options.redis_through_proxy,
            "a stack with its gateways reaching Redis through the proxy needs Redis"
        );
        let redis = if options.redis {
            let redis = Redis::start(&network, &host("redis")).await?;
            let exporter = RedisExporter::start(
                &network,
                &host("redis-exporter"),
                &redis.address_in_network(),
            )
            .await?;
            Some((redis, exporter))
        } else {
            None
        };
        let redis_url = redis
            .as_ref()
            .map(|(redis, _)| format!("redis://{}", redis.address_in_network()));
        anyhow::ensure!(
            options.broker || !options.broker_through_proxy,
            "a stack with its workers reaching RabbitMQ through the proxy needs RabbitMQ"
        );
        let rabbitmq = if options.broker {
            Some(RabbitMq::start(&network, &host("rabbitmq")).await?)
        } else {
            None
        };

        // No random declines unless a test asks: a declined checkout would make
        // tests that expect an order flaky (the default ratio is 2%).
        let mut payments_env = vec![("FAULTLINE_PAYMENTS_DECLINE_RATIO", "0".to_owned())];
        payments_env.extend(options.payments_env.clone());
        payments_env.push(("OTEL_SERVICE_NAME", "payments".into()));
        let payments =
            Shop::start(&network, &host("payments"), "payments", &with(payments_env)).await?;
        let catalog = Shop::start(
            &network,
            &host("catalog"),
            "catalog",
            &with(
                [("DATABASE_URL", database_url.clone())]
                    .into_iter()
                    .chain(redis_url.clone().map(|url| ("FAULTLINE_REDIS_URL", url)))
                    .chain(read_url.map(|url| ("FAULTLINE_DATABASE_READ_URL", url)))
                    .collect(),
            ),
        )
        .await?;
        // Catalog applies the migrations; the others would too, under the same lock.
        catalog.wait_ready(READY_WITHIN).await?;
        let upstreams = vec![
            ("FAULTLINE_CATALOG_URLS", catalog.url_in_network()),
            ("FAULTLINE_PAYMENTS_URLS", payments.url_in_network()),
        ];
        let keys = StackKeys::new()?;
        let jwks_server = if options.jwks_served {
            Some(JwksServer::start(keys.dir()).await?)
        } else {
            None
        };
        let auth_env = match &jwks_server {
            Some(server) => vec![
                ("FAULTLINE_AUTH_JWKS", server.url_in_network()),
                ("FAULTLINE_AUTH_JWKS_REFRESH", "1s".to_owned()),
            ],
            None => vec![("FAULTLINE_AUTH_JWKS", keys.jwks_json()?)],
        };
        let mut orders_env = upstreams.clone();
        orders_env.extend(auth_env.clone());
        if let (true, Some(proxy)) = (options.payments_through_proxy, &proxy) {
            let upstream = format!("{}:8080", payments.host);
            let link = proxy
                .add("payments", PAYMENTS_PROXY_PORT, &upstream)
                .await?;
            orders_env.retain(|(name, _)| *name != "FAULTLINE_PAYMENTS_URLS");
            orders_env.push(("FAULTLINE_PAYMENTS_URLS", format!("http://{link}")));
        }
        orders_env.push(("DATABASE_URL", database_url.clone()));
        if let Some(rabbitmq) = &rabbitmq {
            orders_env.push(("FAULTLINE_AMQP_URL", rabbitmq.amqp_url_in_network()));
        }
        orders_env.extend(options.orders_env.clone());
        let mut orders = Vec::new();
        for replica in 1..=options.orders_replicas.max(1) {
            let name = host(&format!("orders-{replica}"));
            orders.push(
                Shop::start_replica(
                    &network,
                    &name,
                    "orders",
                    replica,
                    &with(orders_env.clone()),
                )
                .await?,
            );
        }
        let mut orders_urls: Vec<String> = orders.iter().map(Shop::url_in_network).collect();
        if let (true, Some(proxy), Some(first)) =
            (options.orders_through_proxy, &proxy, orders.first())
        {
            let link = proxy
                .add("orders", ORDERS_PROXY_PORT, &format!("{}:8080", first.host))
                .await?;
            orders_urls[0] = format!("http://{link}");
        }
        let orders_urls = orders_urls.join(",");
        let mut catalog_url = catalog.url_in_network();
        if let (true, Some(proxy)) = (options.catalog_through_proxy, &proxy) {
            let link = proxy
                .add(
                    "catalog",
                    CATALOG_PROXY_PORT,
                    &format!("{}:8080", catalog.host),
                )
                .await?;
            catalog_url = format!("http://{link}");
        }
        let mut worker_env = upstreams;
        worker_env.push(("DATABASE_URL", database_url.clone()));
        if let Some(rabbitmq) = &rabbitmq {
            let mut url = rabbitmq.amqp_url_in_network();
            if let (true, Some(proxy)) = (options.broker_through_proxy, &proxy) {
                let link = proxy
                    .add(
                        "rabbitmq",
                        RABBITMQ_PROXY_PORT,
                        &format!("{}:{}", rabbitmq.host, crate::rabbitmq::AMQP_PORT),
                    )
                    .await?;
                url = crate::rabbitmq::amqp_url(&link);
            }
            worker_env.push(("FAULTLINE_AMQP_URL", url));
        }
        let mut workers = Vec::new();
        for replica in 1..=options.worker_replicas.max(1) {
            let name = host(&format!("worker-{replica}"));
            workers.push(
                Shop::start_replica(
                    &network,
                    &name,
                    "worker",
                    replica,
                    &with(worker_env.clone()),
                )
                .await?,
            );
        }
        let replicas = options.gateway_replicas.max(1);
        let mut gateway_env = vec![
            ("FAULTLINE_CATALOG_URLS", catalog_url),
            ("FAULTLINE_ORDERS_URLS", orders_urls),
            ("FAULTLINE_GATEWAY_REPLICAS", replicas.to_string()),
        ];
        gateway_env.extend(auth_env);
        if let Some((redis, _)) = &redis {
            let mut address = redis.address_in_network();
            if let (true, Some(proxy)) = (options.redis_through_proxy, &proxy) {
                address = proxy.add("redis", REDIS_PROXY_PORT, &address).await?;
            }
            gateway_env.push(("FAULTLINE_REDIS_URL", format!("redis://{address}")));
        }
        gateway_env.extend(options.gateway_env.clone());
        let gateway = Shop::start_replica(
            &network,
            &host("gateway"),
            "gateway",
            1,
            &with(gateway_env.clone()),
        )
        .await?;
        let mut more_gateways = Vec::new();
        for replica in 2..=replicas {
            let name = host(&format!("gateway-{replica}"));
            more_gateways.push(
                Shop::start_replica(
                    &network,
                    &name,
                    "gateway",
                    replica,
                    &with(gateway_env.clone()),
                )
                .await?,
            );
        }
        for service in orders
            .iter()
            .chain(&workers)
            .chain([&payments, &gateway])
            .chain(&more_gateways)
        {
            service.wait_ready(READY_WITHIN).await?;
        }
        anyhow::ensure!(
            options.prometheus || !options.alertmanager,
            "a stack with Alertmanager needs Prometheus"
        );
        let (mut alertmanager, mut webhooks) = (None, None);
        if let (true, Some(proxy)) = (options.alertmanager, &proxy) {
            let sink = Webhooks::start().await?;
            let upstream = format!("host.docker.internal:{}", sink.port());
            let link = proxy
                .add("webhooks", WEBHOOKS_PROXY_PORT, &upstream)
                .await?;
            let config = routing_config(&format!("http://{link}"))?;
            alertmanager =
                Some(Alertmanager::start(&network, &host("alertmanager"), &config).await?);
            webhooks = Some(sink);
        }
        let prometheus = if options.prometheus {
            let target = |shop: &Shop| format!("{}:9000", shop.host);
            let mut jobs: Vec<(&str, Vec<String>)> = vec![
                ("prometheus", vec!["localhost:9090".to_owned()]),
                (
                    "gateway",
                    std::iter::once(&gateway)
                        .chain(&more_gateways)
                        .map(target)
                        .collect(),
                ),
                ("catalog", vec![target(&catalog)]),
                ("orders", orders.iter().map(target).collect()),
                ("payments", vec![target(&payments)]),
                ("worker", workers.iter().map(target).collect()),
            ];
            if let Some(proxy) = &proxy {
                jobs.push(("proxy", vec![proxy.metrics_target()]));
            }
            if let Some(alertmanager) = &alertmanager {
                jobs.push(("alertmanager", vec![alertmanager.address()]));
            }
            if let Some((_, exporter)) = &redis {
                jobs.push(("redis", vec![exporter.metrics_target()]));
            }
            let mut config = prometheus_config(Duration::from_secs(1), &jobs);
            config.push_str(&postgres_scrape_job(&postgres_exporters));
            config.push_str(&rabbitmq_scrape_job(rabbitmq.as_ref()));
            config.push_str(&format!(
                "rule_files:\n  - /etc/prometheus/rules/*.rules.yml\n  - {DROP_IN_RULES}\n"
            ));
            if let Some(alertmanager) = &alertmanager {
                config.push_str(&format!(
                    "alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['{}']\n",
                    alertmanager.address()
                ));
            }
            let rules = compressed_rules()?;
            let files: Vec<(&str, String)> = rules
                .iter()
                .map(|(path, text)| (path.as_str(), text.clone()))
                .collect();
            let prometheus =
                Prometheus::start(&network, &host("prometheus"), &config, &files).await?;
            wait_quiet(&prometheus).await?;
            Some(prometheus)
        } else {
            None
        };
        Ok(Self {
            network,
            postgres,
            database,
            replica,
            postgres_exporters,
            replica_url,
            payments,
            catalog,
            orders,
            workers,
            gateway,
            more_gateways,
            redis,
            rabbitmq,
            proxy,
            fault_admin_token,
            keys,
            jwks_server,
            otlp,
            prometheus,
            alertmanager,
            webhooks,
        })
    }

    /// Every role's container, for scraping them all.
    pub fn services(&self) -> Vec<&Shop> {
        let mut services = vec![&self.gateway, &self.catalog, &self.payments];
        services.extend(self.workers.iter());
        services.extend(self.orders.iter());
        services.extend(self.more_gateways.iter());
        services
    }

    /// The gateway's public base URL for the test process.
    pub fn gateway_url(&self) -> &str {
        &self.gateway.http_url
    }

    /// A bearer token (a JWT, to send as `Authorization: Bearer <token>`)
    /// of a customer named `subject`, signed with the stack's current key
    /// (`None` only if the key directory broke).
    pub fn bearer_for(&self, subject: &str) -> Option<String> {
        self.keys
            .token(subject, faultline_auth::Role::Customer)
            .ok()
    }

    /// An HTTP client acting as the customer `subject` (every request
    /// carries its token).
    pub fn customer(&self, subject: &str) -> anyhow::Result<reqwest::Client> {
        self.keys.client_as(subject, faultline_auth::Role::Customer)
    }

    /// `count` load-generator customers with tokens the stack accepts.
    pub fn customers(&self, count: u32) -> anyhow::Result<faultline_loadgen::Customers> {
        self.keys.customers(count, "customer")
    }

    /// The shop's database on the read replica, for the test process:
    /// `postgres://postgres@127.0.0.1:<port>/<database>`, with
    /// `read_replica`. The port is fixed, so the URL still holds after the
    /// replica is killed and started again.
    pub fn replica_url(&self) -> Option<&str> {
        self.replica_url.as_deref()
    }

    /// Waits until the read replica streams from the primary again (after a
    /// restart of either), with `read_replica`.
    pub async fn wait_replica_streaming(&self, within: Duration) -> anyhow::Result<()> {
        anyhow::ensure!(self.replica.is_some(), "the stack has no read replica");
        self.postgres.wait_streaming(REPLICA_SLOT, within).await
    }

    /// Job `postgres` of the exporters, as YAML to append to the
    /// `scrape_configs` of a prometheus.yml; empty without `read_replica`.
    pub fn postgres_scrape_job(&self) -> String {
        postgres_scrape_job(&self.postgres_exporters)
    }

    /// Job `rabbitmq` of the broker's plugin, as YAML to append to the
    /// `scrape_configs` of a prometheus.yml; empty without `broker`.
    pub fn rabbitmq_scrape_job(&self) -> String {
        rabbitmq_scrape_job(self.rabbitmq.as_ref())
    }

    /// A connection pool to the shop's database, for checking invariants.
    pub async fn db(&self) -> anyhow::Result<sqlx::PgPool> {
        Ok(sqlx::postgres::PgPoolOptions::new()
            .max_connections(4)
            .connect(&self.database.url)
            .await?)
    }
}

/// Job `postgres`: one target per exporter, labelled with its role.
fn postgres_scrape_job(exporters: &[PostgresExporter]) -> String {
    if exporters.is_empty() {
        return String::new();
    }
    let targets: Vec<_> = exporters
        .iter()
        .map(PostgresExporter::labelled_target)
        .collect();
    labelled_scrape_job("postgres", Some(EXPORTER_SCRAPE_INTERVAL), &targets)
}

/// Job `rabbitmq`: the broker's plugin, every
/// [`crate::rabbitmq::SCRAPE_INTERVAL`]; nothing without a broker.
fn rabbitmq_scrape_job(rabbitmq: Option<&RabbitMq>) -> String {
    let Some(rabbitmq) = rabbitmq else {
        return String::new();
    };
    let target = LabelledTarget {
        address: rabbitmq.metrics_target(),
        labels: Vec::new(),
    };
    labelled_scrape_job(
        "rabbitmq",
        Some(crate::rabbitmq::SCRAPE_INTERVAL),
        &[target],
    )
}

/// Waits until Prometheus has scraped every target and no alert but the
/// Watchdog is pending or firing: until then, its first evaluations see roles
/// with no sample yet (MetricsAbsent goes pending), and an experiment started
/// then would count that start-up as an effect of its faults.
async fn wait_quiet(prometheus: &Prometheus) -> anyhow::Result<()> {
    crate::eventually(
        "Prometheus to scrape every target",
        READY_WITHIN,
        || async {
            let targets = prometheus.client.targets().await?;
            let down: Vec<&str> = targets
                .iter()
                .filter(|t| t.health != "up")
                .map(|t| t.scrape_url.as_str())
                .collect();
            anyhow::ensure!(
                !targets.is_empty() && down.is_empty(),
                "not up yet: {down:?}"
            );
            Ok(())
        },
    )
    .await?;
    crate::eventually("no alert but the Watchdog", READY_WITHIN, || async {
        let active: Vec<String> = prometheus
            .client
            .alerts()
            .await?
            .into_iter()
            .filter_map(|a| a.labels.get("alertname").cloned())
            .filter(|name| name != "Watchdog")
            .collect();
        anyhow::ensure!(active.is_empty(), "still active: {active:?}");
        Ok(())
    })
    .await
}

/// The compressed rule files, as (path in the Prometheus container, text).
fn compressed_rules() -> anyhow::Result<Vec<(String, String)>> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../alerts/compressed");
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&dir)? {
        let path = entry?.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if name.ends_with(".rules.yml") {
            files.push((
                format!("/etc/prometheus/rules/{name}"),
                std::fs::read_to_string(&path)?,
            ));
        }
    }
    anyhow::ensure!(!files.is_empty(), "no rule files in {}", dir.display());
    Ok(files)
}
