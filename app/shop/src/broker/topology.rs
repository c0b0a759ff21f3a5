//! The exchanges and queues, declared by whoever connects first (each
//! declaration is idempotent), so that no message is published before the
//! queue that keeps it exists.
//!
//! ```text
//! relay ──publish──▶ faultline.orders (topic) ──order.#──▶ worker.order-events ──▶ workers
//!                                                            │ ▲            │ reject after
//!                       worker.order-events.retry.<ms> ◀─────┘ └─ TTL ──────┘ max attempts
//!                       (one queue per delay)                       ▼
//!                                  faultline.orders.dead (fanout) ──▶ worker.order-events.dead
//! ```
//!
//! A failed event is published by the worker to the retry queue of its
//! delay; when its TTL expires the broker dead-letters it back to the main
//! queue. An event that fails for good is rejected, and the main queue's
//! dead-letter exchange keeps it in `worker.order-events.dead` until someone
//! replays it (`faultline-shop dead-letters`).

use std::time::Duration;

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{Channel, ExchangeKind};

/// The exchange the relay publishes every outbox event to, routed by kind.
pub const EXCHANGE: &str = "faultline.orders";
/// The workers' queue: every `order.*` event.
pub const QUEUE: &str = "worker.order-events";
/// Where rejected events go.
pub const DEAD_LETTER_EXCHANGE: &str = "faultline.orders.dead";
/// The dead letters, kept until replayed.
pub const DEAD_LETTER_QUEUE: &str = "worker.order-events.dead";
/// The prefix of the retry queues (`worker.order-events.retry.<delay ms>`),
/// and the destination label of the metrics of retries.
pub const RETRY_QUEUE_PREFIX: &str = "worker.order-events.retry";
/// The binding of [`QUEUE`].
pub const ROUTING_PATTERN: &str = "order.#";

/// The retry queue for a delay.
pub fn retry_queue(delay: Duration) -> String {
    format!("{RETRY_QUEUE_PREFIX}.{}", delay.as_millis())
}

fn durable_queue() -> QueueDeclareOptions {
    QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    }
}

fn durable_exchange() -> ExchangeDeclareOptions {
    ExchangeDeclareOptions {
        durable: true,
        ..ExchangeDeclareOptions::default()
    }
}

fn string(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value))
}

fn arguments(pairs: &[(&str, AMQPValue)]) -> FieldTable {
    let mut table = FieldTable::default();
    for (key, value) in pairs {
        table.insert(ShortString::from(*key), value.clone());
    }
    table
}

/// Declares the exchange, the workers' queue and the dead letters: what the
/// relay needs before its first publish.
pub async fn declare_main(channel: &Channel) -> lapin::Result<()> {
    channel
        .exchange_declare(
            EXCHANGE.into(),
            ExchangeKind::Topic,
            durable_exchange(),
            FieldTable::default(),
        )
        .await?;
    channel
        .exchange_declare(
            DEAD_LETTER_EXCHANGE.into(),
            ExchangeKind::Fanout,
            durable_exchange(),
            FieldTable::default(),
        )
        .await?;
    channel
        .queue_declare(
            DEAD_LETTER_QUEUE.into(),
            durable_queue(),
            FieldTable::default(),
        )
        .await?;
    channel
        .queue_bind(
            DEAD_LETTER_QUEUE.into(),
            DEAD_LETTER_EXCHANGE.into(),
            "".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    channel
        .queue_declare(
            QUEUE.into(),
            durable_queue(),
            arguments(&[("x-dead-letter-exchange", string(DEAD_LETTER_EXCHANGE))]),
        )
        .await?;
    channel
        .queue_bind(
            QUEUE.into(),
            EXCHANGE.into(),
            ROUTING_PATTERN.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await?;
    Ok(())
}

/// Declares one retry queue per delay: messages wait there for their delay,
/// then the broker dead-letters them back to [`QUEUE`].
pub async fn declare_retries(channel: &Channel, delays: &[Duration]) -> lapin::Result<()> {
    for delay in delays {
        let ttl = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
        channel
            .queue_declare(
                retry_queue(*delay).into(),
                durable_queue(),
                arguments(&[
                    ("x-message-ttl", AMQPValue::LongLongInt(ttl)),
                    ("x-dead-letter-exchange", string("")),
                    ("x-dead-letter-routing-key", string(QUEUE)),
                ]),
            )
            .await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_retry_queue_is_named_by_its_delay() {
        assert_eq!(
            retry_queue(Duration::from_millis(1500)),
            "worker.order-events.retry.1500"
        );
    }
}
