//! Redis and its Prometheus exporter in containers, for stacks that share the
//! gateway's cache and rate limit.

use std::time::Duration;

use anyhow::Context;
use testcontainers::core::{ContainerPort, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};

use crate::images;
use crate::stack::{Network, REPLICA_LABEL, SERVICE_LABEL, log_to_stderr};

/// The port Redis listens on inside its container.
pub const PORT: u16 = 6379;
/// The port the exporter serves `/metrics` on.
pub const EXPORTER_PORT: u16 = 9121;

/// A running Redis, labelled `org.faultline.service=redis` as in compose, so
/// that experiments stop and start it by its labels.
#[derive(Debug)]
pub struct Redis {
    pub container: ContainerAsync<GenericImage>,
    /// Its name on the network.
    pub host: String,
}

impl Redis {
    /// Starts Redis as `host` on `network`; returns once it accepts connections.
    pub async fn start(network: &Network, host: &str) -> anyhow::Result<Self> {
        let container = GenericImage::new(images::REDIS.name, images::REDIS.tag)
            .with_exposed_port(ContainerPort::Tcp(PORT))
            .with_wait_for(WaitFor::message_on_stdout("Ready to accept connections"))
            .with_network(network.name())
            .with_container_name(host)
            .with_labels(network.labels())
            .with_label(SERVICE_LABEL, "redis")
            .with_label(REPLICA_LABEL, "1")
            .with_log_consumer(log_to_stderr(host))
            .with_startup_timeout(Duration::from_secs(30))
            .start()
            .await
            .with_context(|| format!("cannot start Redis container {host}"))?;
        Ok(Self {
            container,
            host: host.to_owned(),
        })
    }

    /// `redis://127.0.0.1:<mapped port>` for the test process. Asked anew
    /// each time: Docker maps another port when the container is stopped
    /// and started again (as the redis-down experiment does).
    pub async fn url(&self) -> anyhow::Result<String> {
        let port = self.container.get_host_port_ipv4(PORT).await?;
        Ok(format!("redis://127.0.0.1:{port}"))
    }

    /// The `host:port` other containers reach it at.
    pub fn address_in_network(&self) -> String {
        format!("{}:{PORT}", self.host)
    }
}

/// Debian's prometheus-redis-exporter, watching one Redis.
#[derive(Debug)]
pub struct RedisExporter {
    pub container: ContainerAsync<GenericImage>,
    pub host: String,
}

impl RedisExporter {
    /// Starts the exporter as `host`, reading `redis` (`host:port`).
    pub async fn start(network: &Network, host: &str, redis: &str) -> anyhow::Result<Self> {
        let container = GenericImage::new(images::REDIS_EXPORTER.name, images::REDIS_EXPORTER.tag)
            .with_exposed_port(ContainerPort::Tcp(EXPORTER_PORT))
            .with_wait_for(WaitFor::message_on_either_std("Providing metrics at"))
            .with_env_var("REDIS_ADDR", format!("redis://{redis}"))
            .with_network(network.name())
            .with_container_name(host)
            .with_labels(network.labels())
            .with_label(SERVICE_LABEL, "redis-exporter")
            .with_log_consumer(log_to_stderr(host))
            .with_startup_timeout(Duration::from_secs(30))
            .start()
            .await
            .with_context(|| format!("cannot start the Redis exporter {host}"))?;
        Ok(Self {
            container,
            host: host.to_owned(),
        })
    }

    /// The `host:port` Prometheus scrapes it at.
    pub fn metrics_target(&self) -> String {
        format!("{}:{EXPORTER_PORT}", self.host)
    }
}
