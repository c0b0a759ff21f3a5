//! RabbitMQ: how the outbox reaches the workers.
//!
//! The outbox table stays the source of truth. Orders' relay
//! ([`crate::outbox::relay`]) publishes each event with a publisher confirm
//! and marks it sent only once confirmed (at least once); the workers'
//! consumers ([`crate::roles::worker`]) record each event id in the
//! transaction of its effects and acknowledge after the commit (so a
//! redelivery changes nothing).
//!
//! - [`config`]: the `FAULTLINE_AMQP_*` settings;
//! - [`connection`]: connecting again and again while the broker is away;
//! - [`topology`]: the exchanges and queues, retries and dead letters;
//! - [`message`]: an outbox event as a message (ids, attempt, trace context);
//! - [`publish`]: publishing with a confirm, timed and counted;
//! - [`probe`]: whether a broker answers at an address (readiness checks);
//! - [`dead_letters`]: listing and replaying dead letters.

pub mod config;
pub mod connection;
pub mod dead_letters;
pub mod message;
pub mod probe;
pub mod publish;
pub mod topology;

pub use config::{BrokerConfig, BrokerConfigError};

use crate::outbox::OrderEvent;

/// `messaging.system`.
pub const SYSTEM: &str = "rabbitmq";

/// Gauge: 1 while the service holds a connection to the broker.
pub const CONNECTED: &str = "messaging_client_connected";
/// Counter: messages published, by destination and `error_type` (empty when
/// the broker confirmed it; `nack`, `returned`, `timeout` or `connection`).
pub const SENT: &str = "messaging_client_sent_messages_total";
/// Histogram: from publish to the broker's confirm.
pub const OPERATION_DURATION: &str = "messaging_client_operation_duration_seconds";
/// Counter: deliveries received, by queue.
pub const CONSUMED: &str = "messaging_client_consumed_messages_total";
/// Counter: deliveries that are not the first of their event, by `reason`:
/// `broker` (a consumer died or disconnected before acknowledging) or
/// `retry` (back from a retry queue).
pub const REDELIVERIES: &str = "messaging_client_redeliveries_total";
/// Counter: events a worker sent to the dead letters, by event kind
/// (`unknown` when it is not one).
pub const DEAD_LETTERS: &str = "messaging_client_dead_letters_total";

/// The `kind` label of an event kind: one of [`OrderEvent::KINDS`] or `unknown`.
pub fn kind_label(kind: &str) -> &'static str {
    OrderEvent::KINDS
        .into_iter()
        .find(|known| *known == kind)
        .unwrap_or("unknown")
}

/// The `error_type` values of [`SENT`] and [`OPERATION_DURATION`].
pub const SEND_ERRORS: [&str; 5] = ["", "nack", "returned", "timeout", "connection"];

/// Starts the relay's series at zero (orders).
pub fn register_publisher_metrics() {
    metrics::gauge!(CONNECTED, "messaging_system" => SYSTEM).set(0.0);
    for error_type in SEND_ERRORS {
        metrics::counter!(SENT, "messaging_system" => SYSTEM, "messaging_destination_name" => topology::EXCHANGE, "error_type" => error_type)
            .absolute(0);
    }
}

/// Starts the consumers' series at zero (worker).
pub fn register_consumer_metrics() {
    metrics::gauge!(CONNECTED, "messaging_system" => SYSTEM).set(0.0);
    metrics::counter!(CONSUMED, "messaging_system" => SYSTEM, "messaging_destination_name" => topology::QUEUE)
        .absolute(0);
    for reason in ["broker", "retry"] {
        metrics::counter!(REDELIVERIES, "messaging_system" => SYSTEM, "messaging_destination_name" => topology::QUEUE, "reason" => reason)
            .absolute(0);
    }
    for kind in OrderEvent::KINDS.into_iter().chain(["unknown"]) {
        metrics::counter!(DEAD_LETTERS, "messaging_system" => SYSTEM, "messaging_destination_name" => topology::DEAD_LETTER_QUEUE, "kind" => kind)
            .absolute(0);
    }
    for error_type in SEND_ERRORS {
        metrics::counter!(SENT, "messaging_system" => SYSTEM, "messaging_destination_name" => topology::RETRY_QUEUE_PREFIX, "error_type" => error_type)
            .absolute(0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_kinds_share_one_label() {
        assert_eq!(kind_label("order.placed"), "order.placed");
        assert_eq!(kind_label("order.poison"), "unknown");
    }
}
