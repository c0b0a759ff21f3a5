//! PostgreSQL in a container, and one database per test.

use std::time::Duration;

use anyhow::Context;
use sqlx::Connection;
use sqlx::postgres::PgConnection;
use testcontainers::core::{ContainerPort, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};

use crate::images;
use crate::stack::{Network, log_to_stderr};

/// The port PostgreSQL listens on inside its container.
pub const PORT: u16 = 5432;

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
        let mut request = GenericImage::new(images::POSTGRES.name, images::POSTGRES.tag)
            .with_exposed_port(ContainerPort::Tcp(PORT))
            .with_wait_for(WaitFor::message_on_stderr(
                "database system is ready to accept connections",
            ))
            .with_cmd(["-c", "fsync=off", "-c", "max_connections=200"])
            .with_network(network.name())
            .with_container_name(host)
            .with_labels(network.labels())
            // Chaos experiments pick it by service, as in compose.
            .with_label(crate::stack::SERVICE_LABEL, "postgres")
            .with_label(crate::stack::REPLICA_LABEL, "1")
            .with_log_consumer(log_to_stderr(host))
            .with_startup_timeout(Duration::from_secs(60));
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
