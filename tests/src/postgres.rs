//! PostgreSQL in a container (a primary, or a hot standby of one), one
//! database per test, and the PostgreSQL exporter.

use std::time::Duration;

use anyhow::Context;
use sqlx::Connection;
use sqlx::postgres::PgConnection;
use testcontainers::core::{ContainerPort, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};

use crate::images;
use crate::stack::{LabelledTarget, Network, SERVICE_LABEL, log_to_stderr};

/// The port PostgreSQL listens on inside its container.
pub const PORT: u16 = 5432;
/// The port the exporter serves `/metrics` on.
pub const EXPORTER_PORT: u16 = 9187;
/// How often Prometheus scrapes the exporters, with a timeout as long: not
/// the 1 s of the other jobs, because the exporter answers a scrape of a
/// server it cannot reach only after a second (postgres_exporter 0.11 sleeps
/// 1 s before giving up on a failed connection), and a 1 s timeout would
/// turn `pg_up 0` into a failed scrape (`up 0`, no `pg_up` at all). As in
/// compose/prometheus/prometheus.yml.
pub const EXPORTER_SCRAPE_INTERVAL: Duration = Duration::from_secs(2);
/// The service label of the read replica (a hot standby), as in compose.
pub const REPLICA_SERVICE: &str = "postgres-replica";
/// The replica's replication slot on the primary, and its `application_name`
/// in the primary's `pg_stat_replication`.
pub const REPLICA_SLOT: &str = "replica_1";

/// What a primary logs once it accepts connections.
const PRIMARY_READY: &str = "database system is ready to accept connections";
/// What a hot standby logs once it accepts (read-only) connections.
const STANDBY_READY: &str = "database system is ready to accept read-only connections";

/// A running PostgreSQL container on a test network.
#[derive(Debug)]
pub struct Postgres {
    pub container: ContainerAsync<GenericImage>,
    /// Its name on the network, which other containers use as host name.
    pub host: String,
    /// `postgres://postgres@127.0.0.1:<mapped port>` for the test process.
    pub admin_url: String,
}

impl Postgres {
    /// Starts PostgreSQL as `host` on `network`; returns once it accepts connections.
    ///
    /// fsync is off: a test database need not survive a power cut, and killing
    /// the server process loses nothing either way (the OS keeps the writes).
    pub async fn start(network: &Network, host: &str) -> anyhow::Result<Self> {
        Self::start_on(network, host, None).await
    }

    /// Like [`Postgres::start`], on a fixed host port when `host_port` is
    /// given: Docker gives a restarted container a new random port, so a test
    /// that kills and restarts PostgreSQL needs one that stays.
    pub async fn start_on(
        network: &Network,
        host: &str,
        host_port: Option<u16>,
    ) -> anyhow::Result<Self> {
        Self::start_container(network, host, host_port, "postgres", &[], PRIMARY_READY).await
    }

    /// Starts a hot standby of `primary` as `host`, labelled as service
    /// [`REPLICA_SERVICE`]: the image's entrypoint clones the primary with
    /// `pg_basebackup` through the replication slot [`REPLICA_SLOT`] (made
    /// on the primary, or reused) and names the standby after it in
    /// `pg_stat_replication`. Returns once it accepts read-only connections;
    /// [`Postgres::wait_streaming`] on the primary waits for it to stream.
    ///
    /// Killed and started again (`docker kill`, `docker start`), it keeps its
    /// data, starts as a standby again and catches up through its slot. On
    /// `host_port` when given, so that its host URL outlives such a restart.
    pub async fn start_standby(
        network: &Network,
        host: &str,
        primary: &Postgres,
        host_port: Option<u16>,
    ) -> anyhow::Result<Self> {
        let env = [
            ("FAULTLINE_PG_PRIMARY_HOST", primary.host.clone()),
            ("FAULTLINE_PG_PRIMARY_PORT", PORT.to_string()),
            ("FAULTLINE_PG_SLOT", REPLICA_SLOT.to_owned()),
        ];
        Self::start_container(
            network,
            host,
            host_port,
            REPLICA_SERVICE,
            &env,
            STANDBY_READY,
        )
        .await
        .with_context(|| format!("cannot start the standby {host} of {}", primary.host))
    }

    async fn start_container(
        network: &Network,
        host: &str,
        host_port: Option<u16>,
        service: &str,
        env: &[(&str, String)],
        ready: &str,
    ) -> anyhow::Result<Self> {
        // A standby needs at least its primary's max_connections: both get
        // the same arguments.
        let mut request = GenericImage::new(images::POSTGRES.name, images::POSTGRES.tag)
            .with_exposed_port(ContainerPort::Tcp(PORT))
            .with_wait_for(WaitFor::message_on_stderr(ready))
            .with_cmd(["-c", "fsync=off", "-c", "max_connections=200"])
            .with_network(network.name())
            .with_container_name(host)
            .with_labels(network.labels())
            // Chaos experiments pick it by service, as in compose.
            .with_label(SERVICE_LABEL, service)
            .with_label(crate::stack::REPLICA_LABEL, "1")
            .with_log_consumer(log_to_stderr(host))
            .with_startup_timeout(Duration::from_secs(60));
        for (name, value) in env {
            request = request.with_env_var(*name, value.clone());
        }
        if let Some(port) = host_port {
            request = request.with_mapped_port(port, ContainerPort::Tcp(PORT));
        }
        let container = request
            .start()
            .await
            .with_context(|| format!("cannot start PostgreSQL container {host}"))?;
        let port = container.get_host_port_ipv4(PORT).await?;
        Ok(Self {
            container,
            host: host.to_owned(),
            admin_url: format!("postgres://postgres@127.0.0.1:{port}"),
        })
    }

    /// Waits until the standby named `application_name` streams from this
    /// server (its row in `pg_stat_replication` is in state `streaming`).
    pub async fn wait_streaming(
        &self,
        application_name: &str,
        within: Duration,
    ) -> anyhow::Result<()> {
        let url = format!("{}/postgres", self.admin_url);
        crate::eventually(
            &format!("standby {application_name} to stream from {}", self.host),
            within,
            || async {
                let mut conn = PgConnection::connect(&url).await?;
                let state: Option<String> = sqlx::query_scalar(
                    "SELECT state FROM pg_stat_replication WHERE application_name = $1",
                )
                .bind(application_name)
                .fetch_optional(&mut conn)
                .await?;
                conn.close().await?;
                anyhow::ensure!(
                    state.as_deref() == Some("streaming"),
                    "its state in pg_stat_replication: {state:?}"
                );
                Ok(())
            },
        )
        .await
    }

    /// The URL another container on the network uses to reach `database`.
    pub fn url_in_network(&self, database: &str) -> String {
        format!("postgres://postgres@{}:{PORT}/{database}", self.host)
    }

    /// Creates a fresh, uniquely named database for one test.
    pub async fn create_database(&self, prefix: &str) -> anyhow::Result<TestDatabase> {
        let name = TestDatabase::unique_name(prefix);
        create_database(&self.admin_url, &name).await?;
        Ok(TestDatabase {
            url: format!("{}/{name}", self.admin_url),
            name,
        })
    }
}

/// One test's own database.
#[derive(Debug, Clone)]
pub struct TestDatabase {
    pub name: String,
    /// The URL the test process connects with.
    pub url: String,
}

impl TestDatabase {
    /// `prefix` plus a random suffix, lower case so it needs no quoting.
    pub fn unique_name(prefix: &str) -> String {
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        let prefix: String = prefix
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .take(40)
            .collect();
        format!("{prefix}_{}", &suffix[..12])
    }
}

/// `CREATE DATABASE name` through the server's `postgres` database.
pub async fn create_database(admin_url: &str, name: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
        "database name {name:?} must be ASCII letters, digits and underscores"
    );
    let mut conn = PgConnection::connect(&format!("{admin_url}/postgres"))
        .await
        .with_context(|| format!("cannot connect to {admin_url} to create database {name}"))?;
    // The name was checked above: it cannot break out of the quotes.
    sqlx::query(sqlx::AssertSqlSafe(format!(r#"CREATE DATABASE "{name}""#)))
        .execute(&mut conn)
        .await
        .with_context(|| format!("CREATE DATABASE {name}"))?;
    conn.close().await?;
    Ok(())
}

/// Which server a PostgreSQL exporter watches: its `role` target label in
/// Prometheus (job `postgres`), and its `instance` label there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PostgresRole {
    Primary,
    Replica,
}

impl PostgresRole {
    /// The `role` label: `primary` or `replica`.
    pub fn label(self) -> &'static str {
        match self {
            Self::Primary => "primary",
            Self::Replica => "replica",
        }
    }

    /// The `instance` label: the server's compose service name.
    pub fn instance(self) -> &'static str {
        match self {
            Self::Primary => "postgres",
            Self::Replica => REPLICA_SERVICE,
        }
    }
}

/// Debian's prometheus-postgres-exporter, watching one server, with
/// faultline's replication queries (`pg_replica_*`, `pg_replication_*`).
#[derive(Debug)]
pub struct PostgresExporter {
    pub container: ContainerAsync<GenericImage>,
    pub host: String,
    pub role: PostgresRole,
}

impl PostgresExporter {
    /// Starts the exporter as `host`, reading the server `server` (its host
    /// name on the network) through its `postgres` database.
    pub async fn start(
        network: &Network,
        host: &str,
        server: &str,
        role: PostgresRole,
    ) -> anyhow::Result<Self> {
        let container = GenericImage::new(
            images::POSTGRES_EXPORTER.name,
            images::POSTGRES_EXPORTER.tag,
        )
        .with_exposed_port(ContainerPort::Tcp(EXPORTER_PORT))
        .with_wait_for(WaitFor::message_on_either_std("Listening on"))
        .with_env_var(
            "DATA_SOURCE_NAME",
            format!("postgresql://postgres@{server}:{PORT}/postgres?sslmode=disable"),
        )
        .with_network(network.name())
        .with_container_name(host)
        .with_labels(network.labels())
        .with_label(SERVICE_LABEL, format!("{}-exporter", role.instance()))
        .with_log_consumer(log_to_stderr(host))
        .with_startup_timeout(Duration::from_secs(30))
        .start()
        .await
        .with_context(|| format!("cannot start the PostgreSQL exporter {host}"))?;
        Ok(Self {
            container,
            host: host.to_owned(),
            role,
        })
    }

    /// The `host:port` Prometheus scrapes it at.
    pub fn metrics_target(&self) -> String {
        format!("{}:{EXPORTER_PORT}", self.host)
    }

    /// Its target in job `postgres`, labelled with its role and a readable
    /// instance, as in compose/prometheus/prometheus.yml.
    pub fn labelled_target(&self) -> LabelledTarget {
        LabelledTarget {
            address: self.metrics_target(),
            labels: vec![
                ("role".to_owned(), self.role.label().to_owned()),
                ("instance".to_owned(), self.role.instance().to_owned()),
            ],
        }
    }
}
