//! The orders' queries: idempotency records, orders with their items, and the
//! outbox event written in the same transaction.

use std::time::Duration;

use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use crate::db::timed;
use crate::domain::{IdempotencyKey, Order, OrderId, OrderItem, OrderStatus, ProductId};
use crate::outbox::{self, NewEvent};

/// An `Idempotency-Key` as one customer sent it: keys are scoped by owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedKey {
    /// The subject of the token that sent it.
    pub owner: String,
    pub key: IdempotencyKey,
}

/// A stored idempotency record.
#[derive(Debug, Clone)]
pub struct KeyRecord {
    pub request_hash: String,
    pub order_id: OrderId,
    pub completed: bool,
    pub lease_expired: bool,
    pub response_status: Option<i16>,
    pub response_body: Option<Value>,
}

/// What claiming a key gave.
#[derive(Debug, Clone)]
pub enum Claim {
    /// This request owns the key and does the work for `order_id`.
    Owned(OrderId),
    /// The key was already there.
    Existing(KeyRecord),
}

/// Claims `key` for a new request, holding it for `lease`.
#[tracing::instrument(name = "INSERT idempotency_keys", skip_all, fields(otel.kind = "client", db.system.name = "postgresql", db.operation.name = "INSERT", db.collection.name = "idempotency_keys"))]
pub async fn claim_key(
    pool: &PgPool,
    key: &OwnedKey,
    request_hash: &str,
    lease: Duration,
) -> Result<Claim, sqlx::Error> {
    let candidate = OrderId::new();
    let inserted: Option<Uuid> = timed(
        "INSERT",
        "idempotency_keys",
        sqlx::query_scalar(
            "INSERT INTO idempotency_keys (owner, key, request_hash, order_id, state, locked_until) \
             VALUES ($5, $1, $2, $3, 'in_progress', now() + make_interval(secs => $4)) \
             ON CONFLICT (owner, key) DO NOTHING RETURNING order_id",
        )
        .bind(key.key.as_str())
        .bind(request_hash)
        .bind(candidate.0)
        .bind(lease.as_secs_f64())
        .bind(&key.owner)
        .fetch_optional(pool),
    )
    .await?;
    if let Some(order_id) = inserted {
        return Ok(Claim::Owned(OrderId(order_id)));
    }
    Ok(match read_key(pool, key).await? {
        Some(record) => Claim::Existing(record),
        // Deleted in between (it never is today): treat as owned on retry.
        None => Claim::Owned(candidate),
    })
}

type KeyRow = (String, Uuid, String, bool, Option<i16>, Option<Value>);

/// Reads a key's record.
#[tracing::instrument(name = "SELECT idempotency_keys", skip_all, fields(otel.kind = "client", db.system.name = "postgresql", db.operation.name = "SELECT", db.collection.name = "idempotency_keys"))]
pub async fn read_key(pool: &PgPool, key: &OwnedKey) -> Result<Option<KeyRecord>, sqlx::Error> {
    let row: Option<KeyRow> = timed(
        "SELECT",
        "idempotency_keys",
        sqlx::query_as(
            "SELECT request_hash, order_id, state, locked_until < now(), response_status, response_body \
             FROM idempotency_keys WHERE key = $1 AND owner = $2",
        )
        .bind(key.key.as_str())
        .bind(&key.owner)
        .fetch_optional(pool),
    )
    .await?;
    Ok(row.map(
        |(request_hash, order_id, state, lease_expired, response_status, response_body)| {
            KeyRecord {
                request_hash,
                order_id: OrderId(order_id),
                completed: state == "completed",
                lease_expired,
                response_status,
                response_body,
            }
        },
    ))
}

/// Takes over a key whose owner's lease ran out (it crashed or gave up).
#[tracing::instrument(name = "UPDATE idempotency_keys", skip_all, fields(otel.kind = "client", db.system.name = "postgresql", db.operation.name = "UPDATE", db.collection.name = "idempotency_keys"))]
pub async fn take_over_key(
    pool: &PgPool,
    key: &OwnedKey,
    lease: Duration,
) -> Result<Option<OrderId>, sqlx::Error> {
    let order_id: Option<Uuid> = timed(
        "UPDATE",
        "idempotency_keys",
        sqlx::query_scalar(
            "UPDATE idempotency_keys SET locked_until = now() + make_interval(secs => $2) \
             WHERE key = $1 AND owner = $3 AND state = 'in_progress' AND locked_until < now() RETURNING order_id",
        )
        .bind(key.key.as_str())
        .bind(lease.as_secs_f64())
        .bind(&key.owner)
        .fetch_optional(pool),
    )
    .await?;
    Ok(order_id.map(OrderId))
}

/// Gives up the lease at once, so the client's retry can take over.
#[tracing::instrument(name = "UPDATE idempotency_keys", skip_all, fields(otel.kind = "client", db.system.name = "postgresql", db.operation.name = "UPDATE", db.collection.name = "idempotency_keys"))]
pub async fn release_key(pool: &PgPool, key: &OwnedKey) -> Result<(), sqlx::Error> {
    timed(
        "UPDATE",
        "idempotency_keys",
        sqlx::query(
            "UPDATE idempotency_keys SET locked_until = now() WHERE key = $1 AND owner = $2 AND state = 'in_progress'",
        )
        .bind(key.key.as_str())
        .bind(&key.owner)
        .execute(pool),
    )
    .await?;
    Ok(())
}

/// How a checkout ended, written in one transaction.
#[derive(Debug, Clone)]
pub struct Completion<'a> {
    pub key: &'a OwnedKey,
    pub order: Option<&'a Order>,
    pub event: Option<NewEvent>,
    pub response_status: u16,
    pub response_body: Value,
}

/// Writes the order (if any), its outbox event (if any) and the stored response,
/// atomically: an acknowledged order always has its event.
#[tracing::instrument(name = "INSERT orders", skip_all, fields(otel.kind = "client", db.system.name = "postgresql", db.operation.name = "INSERT", db.collection.name = "orders"))]
pub async fn complete(pool: &PgPool, completion: Completion<'_>) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    if let Some(order) = completion.order {
        timed(
            "INSERT",
            "orders",
            sqlx::query(
                "INSERT INTO orders (id, idempotency_key, status, amount_cents, payment_id, owner) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(order.id.0)
            .bind(completion.key.key.as_str())
            .bind(order.status.as_str())
            .bind(order.amount_cents)
            .bind(order.payment_id.as_deref())
            .bind(&completion.key.owner)
            .execute(&mut *tx),
        )
        .await?;
        for item in &order.items {
            timed(
                "INSERT",
                "order_items",
                sqlx::query(
                    "INSERT INTO order_items (order_id, product_id, quantity, unit_price_cents) \
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(order.id.0)
                .bind(item.product_id.get())
                .bind(item.quantity)
                .bind(item.unit_price_cents)
                .execute(&mut *tx),
            )
            .await?;
        }
    }
    if let Some(event) = completion.event {
        outbox::queue::insert(&mut tx, event).await?;
    }
    let status = i16::try_from(completion.response_status).unwrap_or(500);
    timed(
        "UPDATE",
        "idempotency_keys",
        sqlx::query(
            "UPDATE idempotency_keys SET state = 'completed', response_status = $2, \
             response_body = $3, completed_at = now() WHERE key = $1 AND owner = $4",
        )
        .bind(completion.key.key.as_str())
        .bind(status)
        .bind(completion.response_body)
        .bind(&completion.key.owner)
        .execute(&mut *tx),
    )
    .await?;
    tx.commit().await
}

/// An order and who placed it.
#[derive(Debug, Clone)]
pub struct OwnedOrder {
    /// The subject of the token that placed it ('' before identity existed).
    pub owner: String,
    pub order: Order,
}

/// One order with its items, and its owner.
#[tracing::instrument(name = "SELECT orders", skip(pool), fields(otel.kind = "client", db.system.name = "postgresql", db.operation.name = "SELECT", db.collection.name = "orders"))]
pub async fn get_order(pool: &PgPool, id: OrderId) -> Result<Option<OwnedOrder>, sqlx::Error> {
    let row: Option<(String, i64, Option<String>, String)> = timed(
        "SELECT",
        "orders",
        sqlx::query_as("SELECT status, amount_cents, payment_id, owner FROM orders WHERE id = $1")
            .bind(id.0)
            .fetch_optional(pool),
    )
    .await?;
    let Some((status, amount_cents, payment_id, owner)) = row else {
        return Ok(None);
    };
    let items: Vec<(i64, i32, i64)> = timed(
        "SELECT",
        "order_items",
        sqlx::query_as(
            "SELECT product_id, quantity, unit_price_cents FROM order_items \
             WHERE order_id = $1 ORDER BY product_id",
        )
        .bind(id.0)
        .fetch_all(pool),
    )
    .await?;
    let order = Order {
        id,
        status: OrderStatus::parse(&status).unwrap_or(OrderStatus::PaymentPending),
        amount_cents,
        payment_id,
        items: items
            .into_iter()
            .map(|(product_id, quantity, unit_price_cents)| OrderItem {
                product_id: ProductId::from_db(product_id),
                quantity,
                unit_price_cents,
            })
            .collect(),
    };
    Ok(Some(OwnedOrder { owner, order }))
}
