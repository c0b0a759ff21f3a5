//! RabbitMQ in a container, for stacks whose outbox is relayed to a broker:
//! the orders replicas publish to it, the workers consume from it.
//!
//! The image (`compose/images/rabbitmq`) has the `rabbitmq_prometheus`
//! plugin on, with one series per queue, and a fixed node name, so that a
//! container killed and started again finds its durable queues and
//! persistent messages.

use std::time::Duration;

use anyhow::{Context, ensure};
use testcontainers::core::{ContainerPort, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};

use crate::images;
use crate::stack::{Network, REPLICA_LABEL, SERVICE_LABEL, log_to_stderr};

/// The AMQP 0-9-1 port inside the container.
pub const AMQP_PORT: u16 = 5672;
/// The port the Prometheus plugin serves `/metrics` on.
pub const METRICS_PORT: u16 = 15692;
/// The user and password the image creates (rabbitmq.conf).
pub const USER: &str = "faultline";
pub const PASSWORD: &str = "faultline";
/// How often Prometheus scrapes the plugin (job `rabbitmq`), here and in
/// compose: its queue series change once a second at most (the broker's
/// `collect_statistics_interval`), and a page with one series per queue
/// costs more than a role's.
pub const SCRAPE_INTERVAL: Duration = Duration::from_secs(2);
/// How long a start (or a start after a kill) gets: the Erlang VM boots in
/// about 5 s on two idle cores, 10 s on busy ones.
pub const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// A running RabbitMQ, labelled `org.faultline.service=rabbitmq` as in
/// compose, so that experiments stop and start it by its labels.
#[derive(Debug)]
pub struct RabbitMq {
    pub container: ContainerAsync<GenericImage>,
    /// Its name on the network.
    pub host: String,
    http: reqwest::Client,
}

impl RabbitMq {
    /// Starts RabbitMQ as `host` on `network`; returns once it accepts AMQP
    /// connections and serves its metrics.
    pub async fn start(network: &Network, host: &str) -> anyhow::Result<Self> {
        let container = GenericImage::new(images::RABBITMQ.name, images::RABBITMQ.tag)
            .with_exposed_port(ContainerPort::Tcp(AMQP_PORT))
            .with_exposed_port(ContainerPort::Tcp(METRICS_PORT))
            // Logged once the listeners run; a node that fails to boot
            // exits, which ends the wait at once.
            .with_wait_for(WaitFor::message_on_stdout("Server startup complete"))
            .with_network(network.name())
            .with_container_name(host)
            .with_labels(network.labels())
            .with_label(SERVICE_LABEL, "rabbitmq")
            .with_label(REPLICA_LABEL, "1")
            .with_log_consumer(log_to_stderr(host))
            .with_startup_timeout(STARTUP_TIMEOUT)
            .start()
            .await
            .with_context(|| format!("cannot start RabbitMQ container {host}"))?;
        let broker = Self {
            container,
            host: host.to_owned(),
            http: crate::http_client()?,
        };
        broker.wait_ready(STARTUP_TIMEOUT).await?;
        Ok(broker)
    }

    /// `amqp://faultline:faultline@<host>:5672/%2f`: the default vhost `/`,
    /// for the containers on the network.
    pub fn amqp_url_in_network(&self) -> String {
        amqp_url(&format!("{}:{AMQP_PORT}", self.host))
    }

    /// The same for the test process, through the mapped port. Asked anew
    /// each time: Docker maps another port when the container is stopped and
    /// started again.
    pub async fn amqp_url(&self) -> anyhow::Result<String> {
        Ok(amqp_url(&self.amqp_address().await?))
    }

    /// `127.0.0.1:<mapped port>` of AMQP, for the test process; asked anew
    /// each time, like [`RabbitMq::amqp_url`].
    pub async fn amqp_address(&self) -> anyhow::Result<String> {
        let port = self.container.get_host_port_ipv4(AMQP_PORT).await?;
        Ok(format!("127.0.0.1:{port}"))
    }

    /// The `host:port` Prometheus scrapes the plugin at.
    pub fn metrics_target(&self) -> String {
        format!("{}:{METRICS_PORT}", self.host)
    }

    /// `http://127.0.0.1:<mapped port>/metrics`, asked anew each time.
    pub async fn metrics_url(&self) -> anyhow::Result<String> {
        let port = self.container.get_host_port_ipv4(METRICS_PORT).await?;
        Ok(format!("http://127.0.0.1:{port}/metrics"))
    }

    /// Polls until the broker answers an AMQP handshake and its metrics
    /// page: after [`RabbitMq::start`], or after the container was killed
    /// and started again.
    pub async fn wait_ready(&self, within: Duration) -> anyhow::Result<()> {
        crate::eventually(&format!("{} to be ready", self.host), within, || async {
            amqp_handshake(&self.amqp_address().await?).await?;
            let status = self
                .http
                .get(self.metrics_url().await?)
                .send()
                .await?
                .status();
            ensure!(status.is_success(), "/metrics answered {status}");
            Ok(())
        })
        .await
    }

    /// Runs `rabbitmqctl <args>` in the container (as the rabbitmq user, with
    /// the image's node name and cookie); its stdout, or an error with its
    /// output when it exits non-zero. Each call starts an Erlang VM: about a
    /// second.
    pub async fn ctl(&self, args: &[&str]) -> anyhow::Result<String> {
        let command: Vec<&str> = std::iter::once("rabbitmqctl")
            .chain(args.iter().copied())
            .collect();
        crate::docker::exec(&self.container, &command)
            .await
            .with_context(|| format!("rabbitmqctl in {}", self.host))
    }

    /// Declares the durable queue `queue` in the default vhost (if it is
    /// missing) and publishes `count` persistent messages to it through the
    /// default exchange, each with the AMQP `timestamp` property set to
    /// `timestamp` (seconds since the epoch), waiting for the broker's
    /// publisher confirms. It runs in the broker (`rabbitmqctl eval`, with
    /// the Erlang AMQP client it ships), so the test process needs no AMQP
    /// client.
    pub async fn publish(&self, queue: &str, count: u32, timestamp: u64) -> anyhow::Result<()> {
        ensure!(
            !queue.is_empty()
                && queue
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)),
            "queue name {queue:?}: letters, digits, '-', '_' and '.' only"
        );
        // Erlang records as tuples (eval has no record definitions):
        // queue.declare {ticket, queue, passive, durable, exclusive,
        // auto_delete, nowait, arguments}, P_basic {content_type,
        // content_encoding, headers, delivery_mode (2: persistent), priority,
        // correlation_id, reply_to, expiration, message_id, timestamp, type,
        // user_id, app_id, cluster_id}, basic.publish {ticket, exchange,
        // routing_key, mandatory, immediate}.
        let u = "undefined";
        let expr = format!(
            r#"{{ok, C}} = amqp_connection:start({{amqp_params_direct, <<"{USER}">>, <<"{PASSWORD}">>, <<"/">>, node(), none, []}}),
{{ok, Ch}} = amqp_connection:open_channel(C),
{{'confirm.select_ok'}} = amqp_channel:call(Ch, {{'confirm.select', false}}),
{{'queue.declare_ok', _, _, _}} = amqp_channel:call(Ch, {{'queue.declare', 0, <<"{queue}">>, false, true, false, false, false, []}}),
Props = {{'P_basic', {u}, {u}, {u}, 2, {u}, {u}, {u}, {u}, {u}, {timestamp}, {u}, {u}, {u}, {u}}},
[ok = amqp_channel:call(Ch, {{'basic.publish', 0, <<"">>, <<"{queue}">>, false, false}}, {{amqp_msg, Props, <<"probe">>}}) || _ <- lists:seq(1, {count})],
Confirmed = amqp_channel:wait_for_confirms(Ch, 10000),
amqp_connection:close(C),
Confirmed."#
        );
        let out = self.ctl(&["eval", &expr]).await?;
        ensure!(
            out.trim() == "true",
            "the broker did not confirm the messages to {queue}: {out}"
        );
        Ok(())
    }

    /// The number of messages (ready and unacknowledged) in `queue` of the
    /// default vhost, as the broker counts them now; `None` when there is no
    /// such queue.
    pub async fn queue_messages(&self, queue: &str) -> anyhow::Result<Option<u64>> {
        let out = self
            .ctl(&[
                "list_queues",
                "--quiet",
                "--no-table-headers",
                "name",
                "messages",
            ])
            .await?;
        for line in out.lines() {
            let mut fields = line.split('\t');
            if fields.next() == Some(queue) {
                let count = fields.next().context("no message count")?.trim();
                return Ok(Some(
                    count
                        .parse()
                        .with_context(|| format!("message count {count:?} of {queue}"))?,
                ));
            }
        }
        Ok(None)
    }
}

/// `amqp://faultline:faultline@<address>/%2f`: the URL for a broker (or a
/// proxy in front of one) at `address` (`host:port`).
pub fn amqp_url(address: &str) -> String {
    format!("amqp://{USER}:{PASSWORD}@{address}/%2f")
}

/// Whether a broker answers an AMQP handshake at `address` (`host:port`),
/// within 2 s: see [`faultline_shop::broker::probe::answers_amqp`].
pub async fn amqp_handshake(address: &str) -> anyhow::Result<()> {
    faultline_shop::broker::probe::answers_amqp(address, Duration::from_secs(2)).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_url_names_the_default_vhost_encoded() {
        assert_eq!(
            amqp_url("rabbitmq:5672"),
            "amqp://faultline:faultline@rabbitmq:5672/%2f"
        );
    }
}
