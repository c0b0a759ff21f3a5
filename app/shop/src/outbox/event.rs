//! What orders tells the worker through the outbox: one typed event per kind,
//! its payload read back with serde, so a missing field is an error, never a
//! default.

use serde::{Deserialize, Serialize};

use crate::domain::{OrderId, OrderStatus};

/// An order was placed: paid, or pending for the worker to settle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderPlaced {
    pub order_id: OrderId,
    pub status: OrderStatus,
    pub amount_cents: i64,
}

/// Checkout's payment was declined: no order, and the stock is to be given back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentDeclined {
    pub order_id: OrderId,
}

/// An event in the outbox. Serialised, it is the payload alone; the kind is
/// stored beside it ([`OrderEvent::kind`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum OrderEvent {
    Placed(OrderPlaced),
    PaymentDeclined(PaymentDeclined),
}

/// Why a stored event cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum MalformedEvent {
    #[error("has an unknown kind {0:?}")]
    UnknownKind(String),
    #[error("has an invalid {kind} payload: {source}")]
    Payload {
        kind: &'static str,
        #[source]
        source: serde_json::Error,
    },
}

impl MalformedEvent {
    /// Every value of [`MalformedEvent::reason`].
    pub const REASONS: [&'static str; 2] = ["unknown_kind", "invalid_payload"];

    /// The bounded `reason` label of `outbox_events_malformed_total`.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::UnknownKind(_) => Self::REASONS[0],
            Self::Payload { .. } => Self::REASONS[1],
        }
    }
}

impl OrderEvent {
    /// The kind of [`OrderEvent::Placed`].
    pub const PLACED: &'static str = "order.placed";
    /// The kind of [`OrderEvent::PaymentDeclined`].
    pub const PAYMENT_DECLINED: &'static str = "order.payment_declined";
    /// Every kind, for the metrics' label values.
    pub const KINDS: [&'static str; 2] = [Self::PLACED, Self::PAYMENT_DECLINED];

    /// The kind stored with the event (`messaging.destination.name`).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Placed(_) => Self::PLACED,
            Self::PaymentDeclined(_) => Self::PAYMENT_DECLINED,
        }
    }

    /// The order the event is about (the outbox's `aggregate_id`).
    pub fn order_id(&self) -> OrderId {
        match self {
            Self::Placed(placed) => placed.order_id,
            Self::PaymentDeclined(declined) => declined.order_id,
        }
    }

    /// Reads a stored event back from its kind and payload.
    pub fn decode(kind: &str, payload: serde_json::Value) -> Result<Self, MalformedEvent> {
        fn payload_of<T: serde::de::DeserializeOwned>(
            kind: &'static str,
            payload: serde_json::Value,
        ) -> Result<T, MalformedEvent> {
            serde_json::from_value(payload)
                .map_err(|source| MalformedEvent::Payload { kind, source })
        }
        match kind {
            Self::PLACED => payload_of(Self::PLACED, payload).map(Self::Placed),
            Self::PAYMENT_DECLINED => {
                payload_of(Self::PAYMENT_DECLINED, payload).map(Self::PaymentDeclined)
            }
            other => Err(MalformedEvent::UnknownKind(other.to_owned())),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn payloads_are_what_orders_always_wrote() {
        let order_id = OrderId::new();
        let placed = OrderEvent::Placed(OrderPlaced {
            order_id,
            status: OrderStatus::PaymentPending,
            amount_cents: 1250,
        });
        assert_eq!(
            serde_json::to_value(&placed).unwrap(),
            json!({ "order_id": order_id, "status": "payment_pending", "amount_cents": 1250 })
        );
        let declined = OrderEvent::PaymentDeclined(PaymentDeclined { order_id });
        assert_eq!(
            serde_json::to_value(&declined).unwrap(),
            json!({ "order_id": order_id })
        );
    }

    #[test]
    fn events_round_trip_through_kind_and_payload() {
        let order_id = OrderId::new();
        for event in [
            OrderEvent::Placed(OrderPlaced {
                order_id,
                status: OrderStatus::Paid,
                amount_cents: 7,
            }),
            OrderEvent::PaymentDeclined(PaymentDeclined { order_id }),
        ] {
            let payload = serde_json::to_value(&event).unwrap();
            assert_eq!(OrderEvent::decode(event.kind(), payload).unwrap(), event);
            assert_eq!(event.order_id(), order_id);
        }
    }

    #[test]
    fn a_missing_amount_is_an_error_not_zero() {
        let payload = json!({ "order_id": OrderId::new(), "status": "payment_pending" });
        let err = OrderEvent::decode(OrderEvent::PLACED, payload).unwrap_err();
        assert_eq!(err.reason(), "invalid_payload");
        assert!(err.to_string().contains("amount_cents"), "{err}");
    }

    #[test]
    fn an_unknown_status_or_kind_is_an_error() {
        let payload = json!({ "order_id": OrderId::new(), "status": "lost", "amount_cents": 1 });
        assert!(OrderEvent::decode(OrderEvent::PLACED, payload).is_err());
        let err = OrderEvent::decode("order.shipped", json!({})).unwrap_err();
        assert_eq!(err.reason(), "unknown_kind");
        assert_eq!(err.to_string(), r#"has an unknown kind "order.shipped""#);
    }
}
