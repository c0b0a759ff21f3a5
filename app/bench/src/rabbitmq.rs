//! RabbitMQ, the broker orders' relay publishes the outbox to and the worker
//! consumes from (`FAULTLINE_AMQP_URL`), in a container of the locally built
//! image (see [`crate::container`]) with its configuration as deployed: the
//! user `faultline`, the Prometheus plugin on [`METRICS_PORT`] with one series
//! per queue, the memory alarm at 256 MiB.

use std::time::{Duration, Instant};

use crate::container::{Container, ContainerSpec};
use crate::error::BenchError;

/// The locally built image (`compose/build-images`).
pub const IMAGE: &str = "faultline-local/rabbitmq:3.10";

/// AMQP 0-9-1 inside the container.
pub const AMQP_PORT: u16 = 5672;

/// Where the `rabbitmq_prometheus` plugin serves `/metrics` inside the
/// container.
pub const METRICS_PORT: u16 = 15692;

/// The user and password the image creates (its `rabbitmq.conf`).
const USER: &str = "faultline";
const PASSWORD: &str = "faultline";

/// The workers' queue (`faultline_shop::broker::topology::QUEUE`).
pub const QUEUE: &str = faultline_shop::broker::topology::QUEUE;

/// How long the broker gets, once it logged its start, to answer an AMQP
/// handshake and serve its metrics. The Erlang VM boots in 6–10 s; the log
/// line comes once its listeners run, so this is a margin.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// A running RabbitMQ container; removed when dropped.
#[derive(Debug)]
pub struct RabbitMq {
    container: Container,
    /// `amqp://faultline:faultline@127.0.0.1:<port>/%2f`, for
    /// `FAULTLINE_AMQP_URL`.
    pub url: String,
    /// `127.0.0.1:<port>` of AMQP.
    amqp_address: String,
    /// `http://127.0.0.1:<port>/metrics`: the Prometheus plugin.
    pub metrics_url: String,
}

/// What a scrape of the plugin found.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Scrape {
    /// `rabbitmq_queue_consumers` of the workers' queue ([`QUEUE`]).
    pub consumers: Option<f64>,
    /// `rabbitmq_connections`: client connections (the relay's, the
    /// consumer's).
    pub connections: Option<f64>,
}

impl RabbitMq {
    /// Starts RabbitMQ with the image's configuration, pinned to `cpu` when
    /// given, and returns once it logged its start, answers an AMQP
    /// handshake and serves its metrics (polled, with a deadline).
    pub async fn start(cpu: Option<usize>, client: &reqwest::Client) -> Result<Self, BenchError> {
        let container = Container::start(&ContainerSpec {
            what: "RabbitMQ",
            image: IMAGE,
            port: AMQP_PORT,
            more_ports: &[METRICS_PORT],
            args: &[],
            env: &[],
            ready_line: "Server startup complete",
            cpu,
        })
        .await?;
        let amqp_address = format!("127.0.0.1:{}", container.host_port);
        let metrics_port = container.host_port_of(METRICS_PORT).ok_or_else(|| {
            BenchError::Docker(format!(
                "RabbitMQ's metrics port {METRICS_PORT} was not published"
            ))
        })?;
        let broker = Self {
            url: amqp_url(&amqp_address),
            amqp_address,
            metrics_url: format!("http://127.0.0.1:{metrics_port}/metrics"),
            container,
        };
        broker.wait_ready(client).await?;
        Ok(broker)
    }

    /// Polls until an AMQP handshake works and the plugin serves its page: a
    /// published port accepts TCP connections before anything listens
    /// behind it, so only the handshake says the broker does.
    async fn wait_ready(&self, client: &reqwest::Client) -> Result<(), BenchError> {
        let started = Instant::now();
        let mut last = String::from("not tried yet");
        while started.elapsed() < READY_TIMEOUT {
            match faultline_shop::broker::probe::answers_amqp(&self.amqp_address, HANDSHAKE_TIMEOUT)
                .await
            {
                Ok(()) => match self.scrape(client).await {
                    Ok(_) => return Ok(()),
                    Err(err) => last = err.to_string(),
                },
                Err(err) => last = format!("AMQP handshake: {err}"),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Err(BenchError::NotReady {
            what: "RabbitMQ".to_owned(),
            waited: READY_TIMEOUT,
            last,
        })
    }

    /// Scrapes the plugin's `/metrics` once, as Prometheus does (each scrape
    /// makes the broker collect its per-queue series).
    pub async fn scrape(&self, client: &reqwest::Client) -> Result<Scrape, BenchError> {
        let context = "scraping RabbitMQ's Prometheus plugin";
        let text = client
            .get(&self.metrics_url)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|err| BenchError::http(context, err))?
            .text()
            .await
            .map_err(|err| BenchError::http(context, err))?;
        Ok(parse_scrape(&text))
    }

    /// The container.
    pub fn container(&self) -> &Container {
        &self.container
    }
}

/// `amqp://faultline:faultline@<address>/%2f`: the default vhost `/`.
pub fn amqp_url(address: &str) -> String {
    format!("amqp://{USER}:{PASSWORD}@{address}/%2f")
}

/// How long one handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(2);

/// The consumers of [`QUEUE`] and the connections, from the Prometheus
/// text format.
fn parse_scrape(text: &str) -> Scrape {
    let queue = format!("queue=\"{QUEUE}\"");
    let mut scrape = Scrape::default();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.trim().parse::<f64>() else {
            continue;
        };
        let (name, labels) = series
            .split_once('{')
            .map_or((series, ""), |(name, labels)| {
                (name, labels.trim_end_matches('}'))
            });
        match name {
            "rabbitmq_queue_consumers" if labels.split(',').any(|l| l == queue) => {
                scrape.consumers = Some(value);
            }
            "rabbitmq_connections" => scrape.connections = Some(value),
            _ => {}
        }
    }
    scrape
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_names_the_default_vhost_encoded() {
        assert_eq!(
            amqp_url("127.0.0.1:32768"),
            "amqp://faultline:faultline@127.0.0.1:32768/%2f"
        );
    }

    #[test]
    fn reads_the_workers_consumers_and_the_connections() {
        let text = "# TYPE rabbitmq_queue_consumers gauge\n\
                    rabbitmq_queue_consumers{vhost=\"/\",queue=\"worker.order-events.dead\"} 0\n\
                    rabbitmq_queue_consumers{vhost=\"/\",queue=\"worker.order-events\"} 1\n\
                    rabbitmq_queue_consumers{vhost=\"/\",queue=\"worker.order-events.retry.500\"} 0\n\
                    # HELP rabbitmq_connections Connections currently open\n\
                    rabbitmq_connections 2\n";
        assert_eq!(
            parse_scrape(text),
            Scrape {
                consumers: Some(1.0),
                connections: Some(2.0)
            }
        );
        assert_eq!(parse_scrape("rabbitmq_connections 0\n").consumers, None);
    }
}
