//! The relay: publishes the outbox to the broker, at least once.
//!
//! It runs in every orders replica, beside the checkouts that write the
//! events: a checkout wakes its replica's relay as it commits, so an event
//! usually leaves within milliseconds, and a tick every
//! `FAULTLINE_RELAY_INTERVAL` picks up what any replica left behind.
//! Each round takes a batch with `FOR UPDATE SKIP LOCKED`, publishes it with
//! publisher confirms, and marks published, in the same transaction, only
//! what the broker confirmed. Relays running at once take disjoint batches,
//! so they do not publish an event twice in the normal case; a relay that
//! dies between the confirm and the commit leaves its batch unpublished, to
//! be sent again (the consumers are idempotent). Nothing is lost: an event
//! is marked only after the broker has written it to disk.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lapin::options::ConfirmSelectOptions;
use lapin::uri::AMQPUri;
use lapin::{Channel, Connection};
use sqlx::PgPool;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::StoredEvent;
use crate::broker::publish::{self, SendError};
use crate::broker::{BrokerConfig, SYSTEM, connection, message, topology};
use crate::health::Health;

/// Why a relay round stopped.
#[derive(Debug, thiserror::Error)]
enum RelayError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Send(#[from] SendError),
    #[error("broker: {0}")]
    Broker(#[from] lapin::Error),
}

/// Wakes the relay of this process (a checkout just wrote an event).
#[derive(Debug, Clone, Default)]
pub struct RelayWaker(Arc<Notify>);

impl RelayWaker {
    /// Asks for a round now.
    pub fn wake(&self) {
        self.0.notify_one();
    }
}

/// The relay of one orders replica.
#[derive(Debug)]
pub struct Relay {
    pub pool: PgPool,
    pub uri: AMQPUri,
    pub broker: BrokerConfig,
    /// The connection's name in the broker.
    pub name: String,
    /// Events per round (and per transaction).
    pub batch: i64,
    /// How often it looks without being woken.
    pub interval: Duration,
    pub waker: RelayWaker,
}

impl Relay {
    /// Relays until `stop` fires, reconnecting whenever the broker goes away.
    pub async fn run(self, health: Health, stop: CancellationToken) {
        loop {
            let Some(connection) =
                connection::connect(&self.uri, &self.name, &self.broker, &stop).await
            else {
                return;
            };
            match self.session(&connection, &health, &stop).await {
                Ok(()) => {
                    connection::close(&connection).await;
                    return;
                }
                Err(err) => connection::disconnected(&err),
            }
        }
    }

    /// One connection's life: rounds until `stop` (Ok) or a broker error.
    async fn session(
        &self,
        connection: &Connection,
        health: &Health,
        stop: &CancellationToken,
    ) -> Result<(), RelayError> {
        let channel = connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        topology::declare_main(&channel).await?;
        let mut every = tokio::time::interval(self.interval);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = every.tick() => {}
                () = self.waker.0.notified() => {}
                () = stop.cancelled() => return Ok(()),
            }
            if !health.is_migrated() {
                continue;
            }
            loop {
                match self.round(&channel).await {
                    // A full batch, all confirmed: there may be more.
                    Ok(full) if full => {}
                    Ok(_) => break,
                    Err(RelayError::Database(err)) => {
                        tracing::warn!(error = %err, "the relay cannot read the outbox");
                        break;
                    }
                    Err(RelayError::Send(err)) if !err.needs_reconnect() => {
                        tracing::warn!(error = %err, "the broker did not take every event; they stay in the outbox");
                        break;
                    }
                    Err(err) => return Err(err),
                }
            }
        }
    }

    /// Publishes one batch; true when it was full and all confirmed.
    async fn round(&self, channel: &Channel) -> Result<bool, RelayError> {
        let mut tx = self.pool.begin().await?;
        let events = super::queue::take_unpublished(&mut tx, self.batch).await?;
        if events.is_empty() {
            tx.commit().await?;
            return Ok(false);
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        let mut pending = Vec::with_capacity(events.len());
        for event in &events {
            let span = publish_span(event);
            let sent = async {
                let carrier = faultline_telemetry::propagation::current_carrier();
                let properties = message::properties(event, 1, &carrier, now);
                let body = serde_json::to_vec(&event.payload).unwrap_or_default();
                publish::send(
                    channel,
                    topology::EXCHANGE,
                    message::routing_key(&event.kind),
                    &body,
                    properties,
                    topology::EXCHANGE,
                )
                .await
            }
            .instrument(span.clone())
            .await;
            // A failed send leaves the whole batch unpublished (the
            // transaction rolls back as it drops).
            pending.push((event.event_id, sent?, span));
        }
        let deadline = Instant::now() + self.broker.confirm_timeout;
        let mut confirmed = Vec::with_capacity(pending.len());
        let mut failure = None;
        for (event_id, sent, span) in pending {
            match sent.confirmed(deadline).instrument(span.clone()).await {
                Ok(()) => confirmed.push(event_id),
                Err(err) => {
                    span.record("error.type", err.error_type());
                    span.record("otel.status_code", "ERROR");
                    failure.get_or_insert(err);
                }
            }
        }
        super::queue::mark_published(&mut tx, &confirmed).await?;
        tx.commit().await?;
        match failure {
            Some(err) => Err(err.into()),
            None => Ok(i64::try_from(events.len()).unwrap_or(i64::MAX) >= self.batch),
        }
    }
}

/// The producer span of one event: a child of the checkout that wrote it, so
/// the checkout's trace goes on through the broker.
fn publish_span(event: &StoredEvent) -> tracing::Span {
    let checkout = faultline_telemetry::propagation::from_carrier(&event.trace_context);
    faultline_telemetry::propagation::child_of_remote(checkout, || {
        tracing::info_span!(
            "publish",
            otel.name = concat!("publish ", "faultline.orders"),
            otel.kind = "producer",
            otel.status_code = tracing::field::Empty,
            error.type = tracing::field::Empty,
            messaging.system = SYSTEM,
            messaging.operation.type = "send",
            messaging.operation.name = "publish",
            messaging.destination.name = topology::EXCHANGE,
            messaging.rabbitmq.destination.routing_key = %event.kind,
            messaging.message.id = %event.event_id,
            order_id = %event.aggregate_id,
        )
    })
}
