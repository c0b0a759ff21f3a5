//! Alertmanager in a container, with the repository's routing
//! (compose/alertmanager/alertmanager.yml), and the webhook receiver it
//! notifies: an HTTP server in the test process that records every alert it
//! is sent.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, ensure};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::post;
use serde_json::Value as JsonValue;
use serde_yaml_ng::{Mapping, Value as Yaml};
use testcontainers::core::{ContainerPort, Host, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};
use tokio::sync::oneshot;

use crate::images;
use crate::rules::{format_duration, parse_duration};
use crate::stack::{Network, SERVICE_LABEL, log_to_stderr};

/// Alertmanager's port.
pub const ALERTMANAGER_PORT: u16 = 9093;

/// The receivers of the routing configuration that get a webhook; the
/// fourth, `nowhere`, must never have one.
pub const RECEIVERS: [&str; 3] = ["page", "ticket", "deadmansswitch"];

/// One alert as a webhook received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The receiver, from the webhook's path.
    pub receiver: String,
    pub alertname: String,
    /// `firing` or `resolved`.
    pub status: String,
    /// When the webhook received it.
    pub at: SystemTime,
}

/// The webhooks of every receiver: one HTTP server in the test process, one
/// path per receiver (`/<receiver>`), reached from the containers as
/// host.docker.internal.
#[derive(Debug)]
pub struct Webhooks {
    port: u16,
    deliveries: Arc<Mutex<Vec<Delivery>>>,
    stop: Option<oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn receive(
    State(deliveries): State<Arc<Mutex<Vec<Delivery>>>>,
    Path(receiver): Path<String>,
    Json(body): Json<JsonValue>,
) -> StatusCode {
    let alerts = body["alerts"].as_array().cloned().unwrap_or_default();
    let Ok(mut deliveries) = deliveries.lock() else {
        return StatusCode::INTERNAL_SERVER_ERROR;
    };
    let at = SystemTime::now();
    for alert in alerts {
        deliveries.push(Delivery {
            receiver: receiver.clone(),
            alertname: alert["labels"]["alertname"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            status: alert["status"].as_str().unwrap_or_default().to_owned(),
            at,
        });
    }
    StatusCode::OK
}

impl Webhooks {
    /// Listens on every interface, on a free port.
    pub async fn start() -> Result<Self> {
        let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await?;
        let port = listener.local_addr()?.port();
        let deliveries = Arc::new(Mutex::new(Vec::new()));
        let app = axum::Router::new()
            .route("/{receiver}", post(receive))
            .with_state(Arc::clone(&deliveries));
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
        });
        Ok(Self {
            port,
            deliveries,
            stop: Some(stop),
            server,
        })
    }

    /// Its port on the Docker host.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its base URL for containers (`host.docker.internal` must resolve to
    /// the Docker host in them).
    pub fn base_url(&self) -> String {
        format!("http://host.docker.internal:{}", self.port)
    }

    /// Every alert received so far, in order.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.deliveries
            .lock()
            .map(|d| d.clone())
            .unwrap_or_default()
    }

    /// The receivers `alertname` reached with `status`.
    pub fn receivers_of(&self, alertname: &str, status: &str) -> Vec<String> {
        let mut receivers: Vec<String> = self
            .deliveries()
            .into_iter()
            .filter(|d| d.alertname == alertname && d.status == status)
            .map(|d| d.receiver)
            .collect();
        receivers.sort();
        receivers.dedup();
        receivers
    }

    /// Stops listening and closes every connection: from now on, Alertmanager's
    /// webhook notifications fail.
    pub async fn stop(mut self) -> Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(10), &mut self.server)
            .await
            .context("the webhook server did not stop within 10 s")???;
        Ok(())
    }
}

impl Drop for Webhooks {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// How much faster than real time the test configuration runs: the factor of
/// the compressed alert rules (alerts/compressed).
const COMPRESSION: u64 = 60;

/// The repository's routing configuration with a webhook for each receiver
/// in [`RECEIVERS`], at `<webhooks_base_url>/<receiver>`, and its timers
/// (group_wait, group_interval, repeat_interval) divided by 60, as the
/// compressed rules' are, but not under 1 s: a Watchdog repeated every
/// minute is repeated every second. Routes, receivers and inhibitions are
/// the file's.
pub fn routing_config(webhooks_base_url: &str) -> Result<String> {
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../compose/alertmanager/alertmanager.yml");
    let text =
        std::fs::read_to_string(&file).with_context(|| format!("read {}", file.display()))?;
    let mut config: Yaml = serde_yaml_ng::from_str(&text).context("parse alertmanager.yml")?;
    let receivers = config
        .get_mut("receivers")
        .and_then(Yaml::as_sequence_mut)
        .context("alertmanager.yml has no receivers")?;
    let mut found = Vec::new();
    for receiver in receivers.iter_mut() {
        let name = receiver["name"].as_str().unwrap_or_default().to_owned();
        let mapping = receiver
            .as_mapping_mut()
            .context("a receiver is not a mapping")?;
        let integrations: Vec<String> = mapping
            .keys()
            .filter_map(Yaml::as_str)
            .filter(|key| key.ends_with("_configs"))
            .map(str::to_owned)
            .collect();
        ensure!(
            integrations.is_empty(),
            "receiver {name} has integrations in the repository ({integrations:?}); the demo sends nothing"
        );
        if RECEIVERS.contains(&name.as_str()) {
            let mut webhook = Mapping::new();
            webhook.insert("url".into(), format!("{webhooks_base_url}/{name}").into());
            webhook.insert("send_resolved".into(), true.into());
            mapping.insert(
                "webhook_configs".into(),
                Yaml::Sequence(vec![Yaml::Mapping(webhook)]),
            );
            found.push(name);
        }
    }
    found.sort_unstable();
    let mut wanted = RECEIVERS.map(str::to_owned).to_vec();
    wanted.sort_unstable();
    ensure!(
        found == wanted,
        "alertmanager.yml has receivers {found:?}, the test expects {wanted:?}"
    );
    let route = config
        .get_mut("route")
        .context("alertmanager.yml has no route")?;
    compress_timers(route)?;
    Ok(serde_yaml_ng::to_string(&config)?)
}

/// Divides every timer of `route` and its children by [`COMPRESSION`], with
/// 1 s as the floor (0s stays 0s).
fn compress_timers(route: &mut Yaml) -> Result<()> {
    let mapping = route.as_mapping_mut().context("a route is not a mapping")?;
    for key in ["group_wait", "group_interval", "repeat_interval"] {
        let Some(value) = mapping.get_mut(key) else {
            continue;
        };
        let text = value
            .as_str()
            .with_context(|| format!("{key} is not a duration: {value:?}"))?;
        let real_ms = parse_duration(text).with_context(|| format!("{key}: {text:?}"))?;
        let compressed_ms = if real_ms == 0 {
            0
        } else {
            (real_ms / COMPRESSION).max(1_000)
        };
        *value = format_duration(compressed_ms).into();
    }
    if let Some(children) = mapping.get_mut("routes").and_then(Yaml::as_sequence_mut) {
        for child in children {
            compress_timers(child)?;
        }
    }
    Ok(())
}

/// A running Alertmanager.
#[derive(Debug)]
pub struct Alertmanager {
    pub container: ContainerAsync<GenericImage>,
    /// Its name on the network.
    pub host: String,
    /// `http://127.0.0.1:<port>` of its API, for the test process.
    pub api_url: String,
}

impl Alertmanager {
    /// Starts Alertmanager as `host` on `network` with `config` as its
    /// alertmanager.yml, labelled `service=alertmanager`; `host.docker.internal`
    /// resolves to the Docker host in it.
    pub async fn start(network: &Network, host: &str, config: &str) -> Result<Self> {
        let container = GenericImage::new(images::ALERTMANAGER.name, images::ALERTMANAGER.tag)
            .with_exposed_port(ContainerPort::Tcp(ALERTMANAGER_PORT))
            .with_wait_for(WaitFor::message_on_stderr("Listening on"))
            .with_network(network.name())
            .with_container_name(host)
            .with_labels(network.labels())
            .with_label(SERVICE_LABEL, "alertmanager")
            .with_host("host.docker.internal", Host::HostGateway)
            .with_log_consumer(log_to_stderr(host))
            .with_copy_to(
                "/etc/alertmanager/alertmanager.yml",
                config.as_bytes().to_vec(),
            )
            .with_startup_timeout(Duration::from_secs(30))
            .start()
            .await
            .with_context(|| format!("cannot start Alertmanager container {host}"))?;
        let port = container.get_host_port_ipv4(ALERTMANAGER_PORT).await?;
        Ok(Self {
            container,
            host: host.to_owned(),
            api_url: format!("http://127.0.0.1:{port}"),
        })
    }

    /// The `host:port` Prometheus scrapes and notifies it at.
    pub fn address(&self) -> String {
        format!("{}:{ALERTMANAGER_PORT}", self.host)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timers_are_compressed_with_a_floor_of_one_second() {
        let mut route: Yaml = serde_yaml_ng::from_str(
            "group_wait: 5s\ngroup_interval: 30s\nrepeat_interval: 4h\nroutes:\n  - group_wait: 0s\n    group_interval: 1m\n    repeat_interval: 12h\n",
        )
        .unwrap();
        compress_timers(&mut route).unwrap();
        assert_eq!(route["group_wait"].as_str(), Some("1s"));
        assert_eq!(route["group_interval"].as_str(), Some("1s"));
        assert_eq!(route["repeat_interval"].as_str(), Some("4m"));
        let child = &route["routes"][0];
        assert_eq!(child["group_wait"].as_str(), Some("0s"));
        assert_eq!(child["group_interval"].as_str(), Some("1s"));
        assert_eq!(child["repeat_interval"].as_str(), Some("12m"));
    }

    #[test]
    fn the_repository_routing_gets_a_webhook_per_receiver() {
        let yaml = routing_config("http://sink:1234").unwrap();
        for receiver in RECEIVERS {
            assert!(
                yaml.contains(&format!("http://sink:1234/{receiver}")),
                "{yaml}"
            );
        }
        assert!(!yaml.contains("sink:1234/nowhere"), "{yaml}");
    }
}
