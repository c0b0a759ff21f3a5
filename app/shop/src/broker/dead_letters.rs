//! The dead letters: what is in `worker.order-events.dead`, and sending it
//! back to the workers (`faultline-shop dead-letters list|replay`).
//!
//! Listing takes the messages without acknowledging them and closes the
//! channel, so the broker puts every one back where it was. Replaying
//! publishes a message to the exchange again, as a first attempt, and
//! acknowledges the dead letter only once the broker confirmed the copy: a
//! failed replay loses nothing, and a replayed event that was processed in
//! the meantime is a duplicate the workers skip.

use std::collections::BTreeSet;
use std::time::Instant;

use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicGetOptions, ConfirmSelectOptions};
use lapin::types::AMQPValue;
use lapin::uri::AMQPUri;
use lapin::{Channel, Connection, ConnectionProperties};
use serde::Serialize;

use super::publish::{self, SendError};
use super::{message, topology};

/// One dead letter, as an operator reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeadLetter {
    /// The outbox event id (the message id), if it has one.
    pub event_id: Option<String>,
    /// The event kind (the message type), if it has one.
    pub kind: Option<String>,
    /// The order it is about.
    pub aggregate_id: Option<String>,
    /// The attempt at which it was given up.
    pub attempt: u32,
    /// Why the broker dead-lettered it (`rejected`, `expired`, ...), and from
    /// which queue, from its `x-death` header.
    pub reason: Option<String>,
    pub queue: Option<String>,
    /// The body, as text (lossy).
    pub body: String,
}

/// What a replay did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Replayed {
    /// Event ids sent back to the workers.
    pub replayed: Vec<String>,
    /// Dead letters left in place (not selected).
    pub kept: usize,
}

/// Why a dead-letter command failed.
#[derive(Debug, thiserror::Error)]
pub enum DeadLetterError {
    #[error("cannot reach the broker: {0}")]
    Broker(#[from] lapin::Error),
    #[error("cannot replay {event}: {source}")]
    Replay {
        event: String,
        #[source]
        source: SendError,
    },
}

async fn open(uri: &AMQPUri) -> Result<(Connection, Channel), lapin::Error> {
    let properties = ConnectionProperties::default()
        .with_connection_name(super::connection::client_name("dead-letters").into());
    let connection = Connection::connect_uri(uri.clone(), properties).await?;
    let channel = connection.create_channel().await?;
    topology::declare_main(&channel).await?;
    Ok((connection, channel))
}

fn x_death_field(delivery: &Delivery, field: &str) -> Option<String> {
    let headers = delivery.properties.headers().as_ref()?;
    let AMQPValue::FieldArray(deaths) = headers.inner().get("x-death")? else {
        return None;
    };
    let AMQPValue::FieldTable(first) = deaths.as_slice().first()? else {
        return None;
    };
    match first.inner().get(field)? {
        AMQPValue::LongString(value) => Some(value.to_string()),
        AMQPValue::ShortString(value) => Some(value.as_str().to_owned()),
        _ => None,
    }
}

fn describe(delivery: &Delivery) -> DeadLetter {
    let properties = &delivery.properties;
    let aggregate_id = match properties
        .headers()
        .as_ref()
        .and_then(|headers| headers.inner().get(message::AGGREGATE_ID))
    {
        Some(AMQPValue::LongString(value)) => Some(value.to_string()),
        _ => None,
    };
    DeadLetter {
        event_id: properties.message_id().as_ref().map(|id| id.to_string()),
        kind: properties.kind().as_ref().map(|kind| kind.to_string()),
        aggregate_id,
        attempt: message::attempt(properties),
        reason: x_death_field(delivery, "reason"),
        queue: x_death_field(delivery, "queue"),
        body: String::from_utf8_lossy(&delivery.data).into_owned(),
    }
}

/// The next dead letter, taken without acknowledging it (so it goes back
/// to the queue unless acknowledged); `None` once every one was taken.
async fn next(channel: &Channel) -> Result<Option<Delivery>, lapin::Error> {
    let got = channel
        .basic_get(
            topology::DEAD_LETTER_QUEUE.into(),
            BasicGetOptions::default(),
        )
        .await?;
    Ok(got.map(|got| got.delivery))
}

/// Up to `limit` dead letters, oldest first; they all stay in the queue.
pub async fn list(uri: &AMQPUri, limit: usize) -> Result<Vec<DeadLetter>, DeadLetterError> {
    let (connection, channel) = open(uri).await?;
    let mut letters = Vec::new();
    while letters.len() < limit {
        let Some(delivery) = next(&channel).await? else {
            break;
        };
        letters.push(describe(&delivery));
    }
    // Unacknowledged, they go back to the queue as the connection closes.
    connection.close(200, "listed".into()).await?;
    Ok(letters)
}

/// Sends dead letters back to the workers: those whose event id is in
/// `only`, or every one when `only` is empty; at most `limit`.
pub async fn replay(
    uri: &AMQPUri,
    only: &BTreeSet<String>,
    limit: usize,
) -> Result<Replayed, DeadLetterError> {
    let (connection, channel) = open(uri).await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let mut report = Replayed::default();
    while report.replayed.len() < limit {
        let Some(delivery) = next(&channel).await? else {
            break;
        };
        let letter = describe(&delivery);
        let event = letter.event_id.clone().unwrap_or_default();
        if !only.is_empty() && !only.contains(&event) {
            report.kept += 1;
            continue;
        }
        let mut properties = delivery.properties.clone();
        let mut headers = properties.headers().clone().unwrap_or_default();
        headers.insert(message::ATTEMPT.into(), AMQPValue::LongLongInt(1));
        properties = properties.with_headers(headers);
        let kind = letter.kind.clone().unwrap_or_default();
        let confirmed = async {
            publish::send(
                &channel,
                topology::EXCHANGE,
                message::routing_key(&kind),
                &delivery.data,
                properties,
                topology::EXCHANGE,
            )
            .await?
            .confirmed(Instant::now() + std::time::Duration::from_secs(10))
            .await
        }
        .await;
        confirmed.map_err(|source| DeadLetterError::Replay {
            event: event.clone(),
            source,
        })?;
        delivery.acker.ack(BasicAckOptions::default()).await?;
        report.replayed.push(event);
    }
    connection.close(200, "replayed".into()).await?;
    Ok(report)
}
