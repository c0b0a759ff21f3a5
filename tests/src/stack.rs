//! The stack under test: a private Docker network with the shop, PostgreSQL and
//! Prometheus on it. Containers find each other by name; the test process
//! reaches them through mapped ports on 127.0.0.1.
//!
//! Every container is removed when its handle drops (and by testcontainers'
//! watchdog when the test process is interrupted); the network goes with the
//! last container on it.

use std::collections::HashMap;
use std::time::Duration;

use anyhow::Context;
use testcontainers::core::logs::LogFrame;
use testcontainers::core::{ContainerPort, Host, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};

use crate::images;
use crate::prom_text::Exposition;
use crate::prometheus::PrometheusClient;

/// The label every test container carries, so leftovers are easy to find:
/// `docker ps -a --filter label=org.faultline.test`.
pub const TEST_LABEL: &str = "org.faultline.test";

/// A uniquely named network for one test.
#[derive(Debug, Clone)]
pub struct Network {
    name: String,
    test: String,
}

impl Network {
    /// A fresh network name; `test` names the test in container labels.
    pub fn new(test: &str) -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        Self {
            name: format!("faultline-{}", &id[..10]),
            test: test.to_owned(),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// A container name on this network, unique across concurrent tests.
    pub fn host(&self, role: &str) -> String {
        format!("{}-{role}", self.name)
    }

    /// Labels for every container of this test.
    pub fn labels(&self) -> HashMap<String, String> {
        HashMap::from([
            (TEST_LABEL.to_owned(), self.test.clone()),
            ("org.faultline.network".to_owned(), self.name.clone()),
        ])
    }
}

/// Forwards a container's output to the test's stderr, prefixed with its name;
/// the test runner shows it when a test fails.
pub fn log_to_stderr(name: &str) -> impl Fn(&LogFrame) + Send + Sync + 'static {
    let name = name.to_owned();
    move |frame: &LogFrame| {
        let text = String::from_utf8_lossy(frame.bytes());
        for line in text.lines() {
            eprintln!("[{name}] {line}");
        }
    }
}

/// The label naming a container's service (role), here and in the compose demo.
pub const SERVICE_LABEL: &str = "org.faultline.service";
/// The label numbering a container among its service's replicas, from 1.
pub const REPLICA_LABEL: &str = "org.faultline.replica";

/// The ports of the shop image.
pub const SHOP_HTTP_PORT: u16 = 8080;
pub const SHOP_ADMIN_PORT: u16 = 9000;
/// The fault admin API's port, when a test turns it on.
pub const SHOP_FAULT_ADMIN_PORT: u16 = 9100;
/// Every shop container's memory limit: 128 MiB, the `mem_limit` of every shop
/// service in compose/docker-compose.yml. The shop exports it as
/// `process_resident_memory_limit_bytes`.
pub const SHOP_MEMORY_LIMIT_BYTES: i64 = 128 * 1024 * 1024;

/// A faultline shop service in a container.
#[derive(Debug)]
pub struct Shop {
    pub container: ContainerAsync<GenericImage>,
    pub host: String,
    /// `http://127.0.0.1:<port>` of the admin listener, for the test process.
    pub admin_url: String,
    /// `http://127.0.0.1:<port>` of the public API, for the test process.
    pub http_url: String,
    /// `http://127.0.0.1:<port>` of the fault admin API, when it is on.
    pub fault_admin_url: Option<String>,
    /// The bearer token its fault admin API requires, when it is on (the
    /// `FAULTLINE_FAULT_ADMIN_TOKEN` it was started with).
    pub fault_admin_token: Option<String>,
    http: reqwest::Client,
}

impl Shop {
    /// Starts `faultline-shop <role>` as `host` with `env`, limited to
    /// [`SHOP_MEMORY_LIMIT_BYTES`]; returns once it listens (not once it is ready). `host.docker.internal` resolves to the
    /// Docker host, where the test process runs its OTLP receiver.
    pub async fn start(
        network: &Network,
        host: &str,
        role: &str,
        env: &[(&str, String)],
    ) -> anyhow::Result<Self> {
        Self::start_replica(network, host, role, 1, env).await
    }

    /// Like [`Shop::start`], for replica `replica` of the role: containers carry
    /// `org.faultline.service=<role>` and `org.faultline.replica=<n>`, as the
    /// compose demo's do, so chaos experiments pick replicas the same way.
    pub async fn start_replica(
        network: &Network,
        host: &str,
        role: &str,
        replica: usize,
        env: &[(&str, String)],
    ) -> anyhow::Result<Self> {
        let mut request = GenericImage::new(images::FAULTLINE.name, images::FAULTLINE.tag)
            .with_exposed_port(ContainerPort::Tcp(SHOP_HTTP_PORT))
            .with_exposed_port(ContainerPort::Tcp(SHOP_ADMIN_PORT))
            .with_exposed_port(ContainerPort::Tcp(SHOP_FAULT_ADMIN_PORT))
            .with_wait_for(WaitFor::message_on_stdout(r#""message":"serving""#))
            .with_cmd([role])
            .with_env_var("RUST_LOG", "info,sqlx=warn")
            .with_env_var("OTEL_TRACES_EXPORTER", "none")
            .with_host("host.docker.internal", Host::HostGateway)
            .with_network(network.name())
            .with_container_name(host)
            .with_labels(network.labels())
            .with_label(SERVICE_LABEL, role)
            .with_label(REPLICA_LABEL, replica.to_string())
            .with_log_consumer(log_to_stderr(host))
            .with_host_config_modifier(|host_config| {
                host_config.memory = Some(SHOP_MEMORY_LIMIT_BYTES);
            })
            .with_startup_timeout(Duration::from_secs(30));
        for (name, value) in env {
            request = request.with_env_var(*name, value.clone());
        }
        let container = request
            .start()
            .await
            .with_context(|| format!("cannot start {role} container {host}"))?;
        let admin_port = container.get_host_port_ipv4(SHOP_ADMIN_PORT).await?;
        let http_port = container.get_host_port_ipv4(SHOP_HTTP_PORT).await?;
        let fault_admin = env
            .iter()
            .any(|(name, _)| *name == "FAULTLINE_FAULT_ADMIN_ADDR");
        let fault_admin_url = if fault_admin {
            let port = container.get_host_port_ipv4(SHOP_FAULT_ADMIN_PORT).await?;
            Some(format!("http://127.0.0.1:{port}"))
        } else {
            None
        };
        let fault_admin_token = env
            .iter()
            .find(|(name, _)| *name == "FAULTLINE_FAULT_ADMIN_TOKEN")
            .map(|(_, token)| token.clone())
            .filter(|_| fault_admin);
        Ok(Self {
            container,
            host: host.to_owned(),
            admin_url: format!("http://127.0.0.1:{admin_port}"),
            http_url: format!("http://127.0.0.1:{http_port}"),
            fault_admin_url,
            fault_admin_token,
            http: crate::http_client()?,
        })
    }

    /// `http://127.0.0.1:<port>` of the admin listener as Docker maps it
    /// now: a container killed and started again (as the broker test and
    /// the consumer-killed experiment do) gets another host port than the
    /// one in [`Shop::admin_url`].
    pub async fn admin_url_now(&self) -> anyhow::Result<String> {
        let port = self.container.get_host_port_ipv4(SHOP_ADMIN_PORT).await?;
        Ok(format!("http://127.0.0.1:{port}"))
    }

    /// The status and body of `GET /health/ready`.
    pub async fn readiness(&self) -> anyhow::Result<(u16, String)> {
        let response = self
            .http
            .get(format!("{}/health/ready", self.admin_url_now().await?))
            .send()
            .await?;
        let status = response.status().as_u16();
        Ok((status, response.text().await?))
    }

    /// The URL other containers on the network use for its public API.
    pub fn url_in_network(&self) -> String {
        format!("http://{}:{SHOP_HTTP_PORT}", self.host)
    }

    /// Waits until `/health/ready` answers 200.
    pub async fn wait_ready(&self, within: Duration) -> anyhow::Result<()> {
        crate::eventually(&format!("{} to be ready", self.host), within, || async {
            let (status, body) = self.readiness().await?;
            anyhow::ensure!(status == 200, "answered {status}: {body}");
            Ok(())
        })
        .await
    }

    /// The parsed `/metrics` page (of the container as it runs now, see
    /// [`Shop::admin_url_now`]).
    pub async fn metrics(&self) -> anyhow::Result<Exposition> {
        let text = self
            .http
            .get(format!("{}/metrics", self.admin_url_now().await?))
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?;
        Ok(Exposition::parse(&text)?)
    }
}

/// The port of the Prometheus image.
pub const PROMETHEUS_PORT: u16 = 9090;

/// A Prometheus server in a container.
#[derive(Debug)]
pub struct Prometheus {
    pub container: ContainerAsync<GenericImage>,
    pub client: PrometheusClient,
}

impl Prometheus {
    /// Starts Prometheus as `host` with `config` as its prometheus.yml and
    /// `files` copied in beside it (rule files, say), each as (path, content).
    /// It is labelled `service=prometheus`, so that experiments can pick it.
    pub async fn start(
        network: &Network,
        host: &str,
        config: &str,
        files: &[(&str, String)],
    ) -> anyhow::Result<Self> {
        let mut request = GenericImage::new(images::PROMETHEUS.name, images::PROMETHEUS.tag)
            .with_exposed_port(ContainerPort::Tcp(PROMETHEUS_PORT))
            .with_wait_for(WaitFor::message_on_stderr(
                "Server is ready to receive web requests.",
            ))
            .with_network(network.name())
            .with_container_name(host)
            .with_labels(network.labels())
            .with_label(SERVICE_LABEL, "prometheus")
            .with_log_consumer(log_to_stderr(host))
            .with_startup_timeout(Duration::from_secs(60))
            .with_copy_to("/etc/prometheus/prometheus.yml", config.as_bytes().to_vec());
        for (path, content) in files {
            request = request.with_copy_to(*path, content.as_bytes().to_vec());
        }
        let container = request
            .start()
            .await
            .with_context(|| format!("cannot start Prometheus container {host}"))?;
        let port = container.get_host_port_ipv4(PROMETHEUS_PORT).await?;
        Ok(Self {
            container,
            client: PrometheusClient::new(
                format!("http://127.0.0.1:{port}"),
                crate::http_client()?,
            ),
        })
    }
}

/// A prometheus.yml that scrapes each `(job, targets)` every `interval`.
pub fn prometheus_config(interval: Duration, jobs: &[(&str, Vec<String>)]) -> String {
    let seconds = interval.as_secs().max(1);
    let mut yaml = format!(
        "global:\n  scrape_interval: {seconds}s\n  evaluation_interval: {seconds}s\n  scrape_timeout: {seconds}s\nscrape_configs:\n"
    );
    for (job, targets) in jobs {
        let targets = targets
            .iter()
            .map(|target| format!("'{target}'"))
            .collect::<Vec<_>>()
            .join(", ");
        yaml.push_str(&format!(
            "  - job_name: '{job}'\n    static_configs:\n      - targets: [{targets}]\n"
        ));
    }
    yaml
}

/// A scrape target with labels of its own (a `role`, a readable `instance`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabelledTarget {
    /// `host:port`.
    pub address: String,
    /// Target labels, as (name, value).
    pub labels: Vec<(String, String)>,
}

/// One scrape job whose targets carry labels of their own, as YAML to append
/// to the `scrape_configs` of [`prometheus_config`] (before anything else is
/// appended after it). With `every`, the job is scraped at that interval,
/// with a timeout as long, instead of the global one.
pub fn labelled_scrape_job(
    job: &str,
    every: Option<Duration>,
    targets: &[LabelledTarget],
) -> String {
    let mut yaml = format!("  - job_name: '{job}'\n");
    if let Some(every) = every {
        let seconds = every.as_secs().max(1);
        yaml.push_str(&format!(
            "    scrape_interval: {seconds}s\n    scrape_timeout: {seconds}s\n"
        ));
    }
    yaml.push_str("    static_configs:\n");
    for target in targets {
        yaml.push_str(&format!("      - targets: ['{}']\n", target.address));
        if !target.labels.is_empty() {
            yaml.push_str("        labels:\n");
            for (name, value) in &target.labels {
                yaml.push_str(&format!("          {name}: '{value}'\n"));
            }
        }
    }
    yaml
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_labelled_job_continues_the_scrape_configs() {
        let mut yaml =
            prometheus_config(Duration::from_secs(1), &[("shop", vec!["a:9000".into()])]);
        yaml.push_str(&labelled_scrape_job(
            "postgres",
            Some(Duration::from_secs(2)),
            &[LabelledTarget {
                address: "x:9187".into(),
                labels: vec![("role".into(), "primary".into())],
            }],
        ));
        let parsed: serde_yaml_ng::Value = serde_yaml_ng::from_str(&yaml).unwrap();
        let jobs = parsed["scrape_configs"].as_sequence().unwrap();
        assert_eq!(jobs.len(), 2, "{yaml}");
        assert_eq!(jobs[1]["job_name"], "postgres");
        assert_eq!(jobs[1]["scrape_timeout"], "2s");
        let config = &jobs[1]["static_configs"][0];
        assert_eq!(config["targets"][0], "x:9187");
        assert_eq!(config["labels"]["role"], "primary");
    }

    #[test]
    fn prometheus_config_lists_every_job() {
        let yaml = prometheus_config(
            Duration::from_secs(1),
            &[("shop", vec!["a:9000".into(), "b:9000".into()])],
        );
        assert!(yaml.contains("scrape_interval: 1s"), "{yaml}");
        assert!(yaml.contains("job_name: 'shop'"), "{yaml}");
        assert!(yaml.contains("targets: ['a:9000', 'b:9000']"), "{yaml}");
    }

    #[test]
    fn hosts_are_unique_per_network() {
        let a = Network::new("t");
        let b = Network::new("t");
        assert_ne!(a.host("pg"), b.host("pg"));
        assert!(a.host("pg").starts_with(a.name()));
    }
}
