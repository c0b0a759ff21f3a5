//! `faultline proxy` in a container, on a test network: the fault proxy that
//! chaos experiments drive through its Toxiproxy-compatible API. Its API
//! listens on 0.0.0.0 (the test process reaches it through a mapped port),
//! so it gets a token of its own, random per proxy, which every call but
//! `GET /version` and `GET /metrics` must carry.

use std::time::Duration;

use anyhow::Context;
use testcontainers::core::{ContainerPort, Host, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};

use crate::images;
use crate::stack::{Network, SERVICE_LABEL, log_to_stderr};

/// The control API's port.
pub const API_PORT: u16 = 8474;

/// A running fault proxy.
#[derive(Debug)]
pub struct FaultProxy {
    pub container: ContainerAsync<GenericImage>,
    /// Its name on the network.
    pub host: String,
    /// `http://127.0.0.1:<port>` of the control API, for the test process.
    pub api_url: String,
    /// The bearer token the control API requires
    /// (`FAULTLINE_PROXY_API_TOKEN`).
    pub api_token: String,
}

impl FaultProxy {
    /// Starts the proxy as `host` with no proxies yet.
    pub async fn start(network: &Network, host: &str) -> anyhow::Result<Self> {
        let api_token = format!("proxy-{}", uuid::Uuid::new_v4().simple());
        let container = GenericImage::new(images::FAULTLINE.name, images::FAULTLINE.tag)
            .with_entrypoint("/usr/local/bin/faultline")
            .with_exposed_port(ContainerPort::Tcp(API_PORT))
            .with_wait_for(WaitFor::message_on_stdout("faultline proxy ready"))
            .with_cmd(["proxy", "--listen", "0.0.0.0:8474"])
            .with_env_var("FAULTLINE_PROXY_API_TOKEN", api_token.clone())
            .with_network(network.name())
            .with_container_name(host)
            .with_labels(network.labels())
            .with_label(SERVICE_LABEL, "proxy")
            // For links to a server the test process runs (an OTLP receiver).
            .with_host("host.docker.internal", Host::HostGateway)
            .with_log_consumer(log_to_stderr(host))
            .with_startup_timeout(Duration::from_secs(30))
            .start()
            .await
            .with_context(|| format!("cannot start the fault proxy {host}"))?;
        let port = container.get_host_port_ipv4(API_PORT).await?;
        Ok(Self {
            container,
            host: host.to_owned(),
            api_url: format!("http://127.0.0.1:{port}"),
            api_token,
        })
    }

    /// Adds a proxy `name` listening on `port` (inside the network) in front of
    /// `upstream` (`host:port`); returns the address other containers use.
    pub async fn add(&self, name: &str, port: u16, upstream: &str) -> anyhow::Result<String> {
        crate::http_client()?
            .post(format!("{}/proxies", self.api_url))
            .bearer_auth(&self.api_token)
            .json(&serde_json::json!({
                "name": name,
                "listen": format!("0.0.0.0:{port}"),
                "upstream": upstream,
            }))
            .send()
            .await?
            .error_for_status()
            .with_context(|| format!("cannot create proxy {name}"))?;
        Ok(format!("{}:{port}", self.host))
    }

    /// The `host:port` Prometheus scrapes the proxy's `/metrics` at.
    pub fn metrics_target(&self) -> String {
        format!("{}:{API_PORT}", self.host)
    }
}
