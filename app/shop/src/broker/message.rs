//! An outbox event as an AMQP message, and back.
//!
//! | AMQP | outbox |
//! |---|---|
//! | `message_id` | `event_id` |
//! | `type`, routing key | `kind` |
//! | header `x-faultline-aggregate-id` | `aggregate_id` (the order) |
//! | header `x-faultline-attempt` | the attempt this delivery is (1 first) |
//! | headers `traceparent`, `tracestate` | the W3C context of the publish span |
//! | `timestamp` | when the relay published it (the broker's head-message age) |
//! | body | `payload` (JSON) |

use std::collections::HashMap;

use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use uuid::Uuid;

use crate::outbox::StoredEvent;

/// The header holding the order an event is about.
pub const AGGREGATE_ID: &str = "x-faultline-aggregate-id";
/// The header counting attempts: 1 for the first delivery, +1 per retry.
pub const ATTEMPT: &str = "x-faultline-attempt";
/// Persistent: the broker writes the message to disk before it confirms it.
const PERSISTENT: u8 = 2;

/// Why a delivery is not an outbox event. Such a message can never be
/// handled, so it goes to the dead letters at once.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum NotAnEvent {
    #[error("has no message_id that is a UUID")]
    MessageId,
    #[error("has no {AGGREGATE_ID} header that is a UUID")]
    AggregateId,
    #[error("has no type")]
    Kind,
    #[error("has a body that is not JSON")]
    Body,
}

/// The properties of `event`'s message, at `attempt`, carrying `trace`.
pub fn properties(
    event: &StoredEvent,
    attempt: u32,
    trace: &HashMap<String, String>,
    published_at_unix: u64,
) -> BasicProperties {
    let mut headers = FieldTable::default();
    headers.insert(
        ShortString::from(AGGREGATE_ID),
        AMQPValue::LongString(LongString::from(event.aggregate_id.to_string())),
    );
    headers.insert(
        ShortString::from(ATTEMPT),
        AMQPValue::LongLongInt(i64::from(attempt)),
    );
    for (key, value) in trace {
        if let Ok(key) = ShortString::try_new(key.as_str()) {
            headers.insert(key, AMQPValue::LongString(LongString::from(value.as_str())));
        }
    }
    BasicProperties::default()
        .with_message_id(event.event_id.to_string().into())
        .with_type(kind_string(&event.kind))
        .with_content_type("application/json".into())
        .with_delivery_mode(PERSISTENT)
        .with_timestamp(published_at_unix)
        .with_headers(headers)
}

/// A kind longer than an AMQP short string cannot be a real one: it is cut,
/// and the consumer will find it unknown.
fn kind_string(kind: &str) -> ShortString {
    ShortString::try_new(kind).unwrap_or_else(|_| ShortString::from("invalid"))
}

/// The routing key of `kind`: the kind itself, or `invalid` when too long.
pub fn routing_key(kind: &str) -> ShortString {
    kind_string(kind)
}

fn header<'a>(properties: &'a BasicProperties, key: &str) -> Option<&'a AMQPValue> {
    properties.headers().as_ref()?.inner().get(key)
}

fn header_string(properties: &BasicProperties, key: &str) -> Option<String> {
    match header(properties, key)? {
        AMQPValue::LongString(value) => {
            Some(String::from_utf8_lossy(value.as_bytes()).into_owned())
        }
        AMQPValue::ShortString(value) => Some(value.as_str().to_owned()),
        _ => None,
    }
}

/// The attempt a delivery is: its header, 1 when absent or odd.
pub fn attempt(properties: &BasicProperties) -> u32 {
    let value = match header(properties, ATTEMPT) {
        Some(AMQPValue::LongLongInt(n)) => *n,
        Some(AMQPValue::LongInt(n)) => i64::from(*n),
        Some(AMQPValue::ShortInt(n)) => i64::from(*n),
        _ => 1,
    };
    u32::try_from(value).unwrap_or(1).max(1)
}

/// The W3C carrier in the headers (`traceparent`, `tracestate`).
pub fn trace_carrier(properties: &BasicProperties) -> HashMap<String, String> {
    ["traceparent", "tracestate"]
        .into_iter()
        .filter_map(|key| Some((key.to_owned(), header_string(properties, key)?)))
        .collect()
}

/// The event a delivery carries (`attempts` are the attempts before this one).
pub fn event(properties: &BasicProperties, body: &[u8]) -> Result<StoredEvent, NotAnEvent> {
    let event_id = properties
        .message_id()
        .as_ref()
        .and_then(|id| Uuid::parse_str(id.as_str()).ok())
        .ok_or(NotAnEvent::MessageId)?;
    let aggregate_id = header_string(properties, AGGREGATE_ID)
        .and_then(|id| Uuid::parse_str(&id).ok())
        .ok_or(NotAnEvent::AggregateId)?;
    let kind = properties
        .kind()
        .as_ref()
        .map(|kind| kind.as_str().to_owned())
        .ok_or(NotAnEvent::Kind)?;
    let payload = serde_json::from_slice(body).map_err(|_| NotAnEvent::Body)?;
    Ok(StoredEvent {
        event_id,
        kind,
        aggregate_id,
        payload,
        trace_context: trace_carrier(properties),
        attempts: i32::try_from(attempt(properties).saturating_sub(1)).unwrap_or(i32::MAX),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn stored() -> StoredEvent {
        StoredEvent {
            event_id: Uuid::new_v4(),
            kind: "order.placed".into(),
            aggregate_id: Uuid::new_v4(),
            payload: json!({ "order_id": "x" }),
            trace_context: HashMap::new(),
            attempts: 0,
        }
    }

    #[test]
    fn an_event_round_trips_through_its_message() {
        let event = stored();
        let trace = HashMap::from([(
            "traceparent".to_owned(),
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".to_owned(),
        )]);
        let properties = properties(&event, 3, &trace, 1_700_000_000);
        let body = serde_json::to_vec(&event.payload).unwrap();
        let back = super::event(&properties, &body).unwrap();
        assert_eq!(back.event_id, event.event_id);
        assert_eq!(back.kind, event.kind);
        assert_eq!(back.aggregate_id, event.aggregate_id);
        assert_eq!(back.payload, event.payload);
        assert_eq!(back.trace_context, trace);
        assert_eq!(back.attempts, 2);
        assert_eq!(attempt(&properties), 3);
        assert_eq!(properties.timestamp(), &Some(1_700_000_000));
        assert_eq!(properties.delivery_mode(), &Some(PERSISTENT));
    }

    #[test]
    fn a_message_that_is_not_an_event_says_why() {
        let event = stored();
        let good = properties(&event, 1, &HashMap::new(), 0);
        assert_eq!(
            super::event(&BasicProperties::default(), b"{}").unwrap_err(),
            NotAnEvent::MessageId
        );
        assert_eq!(
            super::event(&good, b"not json").unwrap_err(),
            NotAnEvent::Body
        );
        let no_kind = BasicProperties::default()
            .with_message_id(event.event_id.to_string().into())
            .with_headers(good.headers().clone().unwrap());
        assert_eq!(super::event(&no_kind, b"{}").unwrap_err(), NotAnEvent::Kind);
    }

    #[test]
    fn a_missing_or_odd_attempt_header_is_the_first_attempt() {
        assert_eq!(attempt(&BasicProperties::default()), 1);
        let mut headers = FieldTable::default();
        headers.insert(ATTEMPT.into(), AMQPValue::LongLongInt(-4));
        assert_eq!(
            attempt(&BasicProperties::default().with_headers(headers)),
            1
        );
    }

    #[test]
    fn an_overlong_kind_routes_as_invalid() {
        assert_eq!(routing_key(&"k".repeat(300)).as_str(), "invalid");
        assert_eq!(routing_key("order.placed").as_str(), "order.placed");
    }
}
