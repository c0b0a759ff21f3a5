//! Publishing with a confirm: timed and counted in one place, for the relay
//! and for the workers' retries.

use std::time::Instant;

use lapin::options::BasicPublishOptions;
use lapin::types::ShortString;
use lapin::{BasicProperties, Channel, Confirmation, PublisherConfirm};

use super::{OPERATION_DURATION, SENT, SYSTEM};

/// Why a message does not count as sent.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("the broker connection failed: {0}")]
    Connection(#[from] lapin::Error),
    #[error("the broker refused the message (nack)")]
    Nack,
    #[error("the broker could not route the message (returned)")]
    Returned,
    #[error("no confirm from the broker in time")]
    Timeout,
}

impl SendError {
    /// The `error_type` label.
    pub fn error_type(&self) -> &'static str {
        match self {
            Self::Connection(_) => "connection",
            Self::Nack => "nack",
            Self::Returned => "returned",
            Self::Timeout => "timeout",
        }
    }

    /// Whether the channel can still be trusted: after a connection error or
    /// a missing confirm, start over with a new connection.
    pub fn needs_reconnect(&self) -> bool {
        matches!(self, Self::Connection(_) | Self::Timeout)
    }
}

/// A message sent, its confirm awaited by [`Pending::confirmed`].
#[must_use]
#[derive(Debug)]
pub struct Pending {
    confirm: PublisherConfirm,
    started: Instant,
    destination: &'static str,
}

fn record(destination: &'static str, started: Instant, error_type: &'static str) {
    metrics::counter!(SENT, "messaging_system" => SYSTEM, "messaging_destination_name" => destination, "error_type" => error_type)
        .increment(1);
    metrics::histogram!(OPERATION_DURATION, "messaging_system" => SYSTEM, "messaging_operation_name" => "publish", "messaging_destination_name" => destination, "error_type" => error_type)
        .record(started.elapsed().as_secs_f64());
}

/// Publishes `body` (mandatory: an unroutable message comes back as an
/// error rather than vanishing); `destination` is the metrics' label.
pub async fn send(
    channel: &Channel,
    exchange: &str,
    routing_key: ShortString,
    body: &[u8],
    properties: BasicProperties,
    destination: &'static str,
) -> Result<Pending, SendError> {
    let started = Instant::now();
    let options = BasicPublishOptions {
        mandatory: true,
        ..BasicPublishOptions::default()
    };
    match channel
        .basic_publish(exchange.into(), routing_key, options, body, properties)
        .await
    {
        Ok(confirm) => Ok(Pending {
            confirm,
            started,
            destination,
        }),
        Err(err) => {
            record(destination, started, "connection");
            Err(SendError::Connection(err))
        }
    }
}

impl Pending {
    /// Waits for the broker's confirm until `deadline`.
    pub async fn confirmed(self, deadline: Instant) -> Result<(), SendError> {
        let outcome = match tokio::time::timeout_at(deadline.into(), self.confirm).await {
            Err(_) => Err(SendError::Timeout),
            Ok(Err(err)) => Err(SendError::Connection(err)),
            Ok(Ok(Confirmation::Ack(Some(_)))) => Err(SendError::Returned),
            Ok(Ok(Confirmation::Ack(None) | Confirmation::NotRequested)) => Ok(()),
            Ok(Ok(Confirmation::Nack(_))) => Err(SendError::Nack),
        };
        let error_type = outcome.as_ref().err().map_or("", SendError::error_type);
        record(self.destination, self.started, error_type);
        outcome
    }
}
