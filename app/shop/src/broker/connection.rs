//! Opening a connection to the broker, again and again while it is away.

use std::time::Duration;

use lapin::uri::AMQPUri;
use lapin::{Connection, ConnectionProperties};
use tokio_util::sync::CancellationToken;

use super::{BrokerConfig, CONNECTED, SYSTEM};

/// Opens a connection named `name` (shown in the broker's connection list),
/// each attempt bounded by `connect_timeout`, retrying with a doubling wait
/// up to `reconnect_max`; `None` once `stop` fires.
/// Sets [`CONNECTED`] to 1 when it succeeds; the caller sets it back to 0
/// when it loses the connection ([`disconnected`]).
pub async fn connect(
    uri: &AMQPUri,
    name: &str,
    config: &BrokerConfig,
    stop: &CancellationToken,
) -> Option<Connection> {
    let max_wait = config.reconnect_max;
    let mut wait = Duration::from_millis(100);
    let mut failures: u64 = 0;
    loop {
        let properties = ConnectionProperties::default().with_connection_name(name.into());
        // The whole handshake is bounded: a link that swallows packets
        // (a partition) would otherwise hold the attempt forever.
        let attempt = tokio::select! {
            attempt = tokio::time::timeout(config.connect_timeout, Connection::connect_uri(uri.clone(), properties)) => attempt,
            () = stop.cancelled() => return None,
        };
        match attempt
            .map_err(|_| "no handshake within FAULTLINE_AMQP_CONNECT_TIMEOUT".to_owned())
            .and_then(|attempt| attempt.map_err(|err| err.to_string()))
        {
            Ok(connection) => {
                if failures > 0 {
                    tracing::info!(failures, "connected to the broker again");
                }
                metrics::gauge!(CONNECTED, "messaging_system" => SYSTEM).set(1.0);
                return Some(connection);
            }
            Err(err) => {
                failures += 1;
                // The first failure, then ever more rarely: a long outage
                // does not flood the log.
                if failures.is_power_of_two() {
                    tracing::warn!(error = %err, failures, retry_in = ?wait, "cannot connect to the broker");
                }
            }
        }
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = stop.cancelled() => return None,
        }
        wait = wait.saturating_mul(2).min(max_wait);
    }
}

/// A client's name in the broker: the role and the host, so an operator
/// looking at the broker's connections and consumers knows which replica
/// each is.
pub fn client_name(role: &str) -> String {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| std::process::id().to_string());
    format!("faultline-{role}@{host}")
}

/// Records that the connection is gone.
pub fn disconnected(reason: &dyn std::fmt::Display) {
    metrics::gauge!(CONNECTED, "messaging_system" => SYSTEM).set(0.0);
    tracing::warn!(error = %reason, "lost the broker connection; reconnecting");
}

/// Closes `connection` politely (unacknowledged deliveries go back to their
/// queue at once rather than after the heartbeat times out).
pub async fn close(connection: &Connection) {
    metrics::gauge!(CONNECTED, "messaging_system" => SYSTEM).set(0.0);
    if let Err(err) = connection.close(200, "shutting down".into()).await {
        tracing::debug!(error = %err, "closing the broker connection");
    }
}
