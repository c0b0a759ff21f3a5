//! The outbox's SQL: orders writes an event in its checkout transaction.
//!
//! - With a broker, orders' relay takes unpublished events with
//!   `FOR UPDATE SKIP LOCKED` ([`take_unpublished`]) and marks them published
//!   once the broker confirmed them ([`mark_published`]); workers claim each
//!   delivered event ([`claim`]) in the transaction of its effects.
//! - Without one, the worker takes due events itself ([`take_due`]), claims
//!   them the same way, or schedules a retry ([`schedule_retry`]).
//!
//! Either way an event's row in `processed_events` commits with its effects,
//! so it is processed once.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;
use sqlx::{PgPool, Postgres, Transaction};
use uuid::Uuid;

use super::OrderEvent;
use crate::db::timed;

/// An event to write, with the trace context of the checkout that wrote it.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub event: OrderEvent,
    pub trace_context: HashMap<String, String>,
}

/// An event taken from the outbox, not decoded yet.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub event_id: Uuid,
    pub kind: String,
    pub aggregate_id: Uuid,
    pub payload: Value,
    pub trace_context: HashMap<String, String>,
    /// Attempts made before this one.
    pub attempts: i32,
}

/// Writes `event` in the caller's transaction.
pub async fn insert(tx: &mut Transaction<'_, Postgres>, new: NewEvent) -> Result<(), sqlx::Error> {
    let trace_context = serde_json::to_value(&new.trace_context).unwrap_or_default();
    timed(
        "INSERT",
        "outbox",
        sqlx::query(
            "INSERT INTO outbox (event_id, kind, aggregate_id, payload, trace_context) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(Uuid::new_v4())
        .bind(new.event.kind())
        .bind(new.event.order_id().0)
        .bind(sqlx::types::Json(&new.event))
        .bind(trace_context)
        .execute(&mut **tx),
    )
    .await?;
    Ok(())
}

type EventRow = (Uuid, String, Uuid, Value, Value, i32);

fn stored(
    (event_id, kind, aggregate_id, payload, trace_context, attempts): EventRow,
) -> StoredEvent {
    StoredEvent {
        event_id,
        kind,
        aggregate_id,
        payload,
        trace_context: serde_json::from_value(trace_context).unwrap_or_default(),
        attempts,
    }
}

/// Takes the next due event, locking it for the transaction; `None` when none is due.
#[tracing::instrument(name = "SELECT outbox", skip_all, fields(otel.kind = "client", db.system.name = "postgresql", db.operation.name = "SELECT", db.collection.name = "outbox"))]
pub async fn take_due(
    tx: &mut Transaction<'_, Postgres>,
) -> Result<Option<StoredEvent>, sqlx::Error> {
    let row: Option<EventRow> = timed(
        "SELECT",
        "outbox",
        sqlx::query_as(
            "SELECT event_id, kind, aggregate_id, payload, trace_context, attempts FROM outbox \
             WHERE processed_at IS NULL AND available_at <= now() \
             ORDER BY available_at, id LIMIT 1 FOR UPDATE SKIP LOCKED",
        )
        .fetch_optional(&mut **tx),
    )
    .await?;
    Ok(row.map(stored))
}

/// Takes up to `limit` events not published yet, oldest first, locking them
/// for the transaction: relays running at once take disjoint batches.
#[tracing::instrument(name = "SELECT outbox", skip_all, fields(otel.kind = "client", db.system.name = "postgresql", db.operation.name = "SELECT", db.collection.name = "outbox"))]
pub async fn take_unpublished(
    tx: &mut Transaction<'_, Postgres>,
    limit: i64,
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    let rows: Vec<EventRow> = timed(
        "SELECT",
        "outbox",
        sqlx::query_as(
            "SELECT event_id, kind, aggregate_id, payload, trace_context, attempts FROM outbox \
             WHERE published_at IS NULL ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED",
        )
        .bind(limit)
        .fetch_all(&mut **tx),
    )
    .await?;
    Ok(rows.into_iter().map(stored).collect())
}

/// Marks events published (the broker confirmed them).
#[tracing::instrument(name = "UPDATE outbox", skip_all, fields(otel.kind = "client", db.system.name = "postgresql", db.operation.name = "UPDATE", db.collection.name = "outbox", events = event_ids.len()))]
pub async fn mark_published(
    tx: &mut Transaction<'_, Postgres>,
    event_ids: &[Uuid],
) -> Result<(), sqlx::Error> {
    if event_ids.is_empty() {
        return Ok(());
    }
    timed(
        "UPDATE",
        "outbox",
        sqlx::query("UPDATE outbox SET published_at = now() WHERE event_id = ANY($1)")
            .bind(event_ids)
            .execute(&mut **tx),
    )
    .await?;
    Ok(())
}

/// Claims `event` for this transaction: false when it was processed already
/// (a redelivery). A second worker handed the same event at the same time
/// waits here until the first commits or rolls back.
#[tracing::instrument(name = "INSERT processed_events", skip_all, fields(otel.kind = "client", db.system.name = "postgresql", db.operation.name = "INSERT", db.collection.name = "processed_events"))]
pub async fn claim(
    tx: &mut Transaction<'_, Postgres>,
    event: &StoredEvent,
) -> Result<bool, sqlx::Error> {
    let inserted = timed(
        "INSERT",
        "processed_events",
        sqlx::query(
            "INSERT INTO processed_events (event_id, kind) VALUES ($1, $2) \
             ON CONFLICT (event_id) DO NOTHING",
        )
        .bind(event.event_id)
        .bind(&event.kind)
        .execute(&mut **tx),
    )
    .await?;
    Ok(inserted.rows_affected() == 1)
}

/// Marks `event` processed in the outbox, in the transaction that claimed
/// it and committed its effects. (Processed implies published: a relay
/// started later does not publish what was processed without it.)
#[tracing::instrument(name = "UPDATE outbox", skip_all, fields(otel.kind = "client", db.system.name = "postgresql", db.operation.name = "UPDATE", db.collection.name = "outbox"))]
pub async fn mark_processed(
    tx: &mut Transaction<'_, Postgres>,
    event: &StoredEvent,
) -> Result<(), sqlx::Error> {
    timed(
        "UPDATE",
        "outbox",
        sqlx::query(
            "UPDATE outbox SET processed_at = now(), attempts = attempts + 1, \
             published_at = COALESCE(published_at, now()) WHERE event_id = $1",
        )
        .bind(event.event_id)
        .execute(&mut **tx),
    )
    .await?;
    Ok(())
}

/// Records a failed attempt and makes `event` due again after `backoff`.
#[tracing::instrument(name = "UPDATE outbox", skip_all, fields(otel.kind = "client", db.system.name = "postgresql", db.operation.name = "UPDATE", db.collection.name = "outbox"))]
pub async fn schedule_retry(
    pool: &PgPool,
    event: &StoredEvent,
    backoff: Duration,
    error: &str,
) -> Result<(), sqlx::Error> {
    timed(
        "UPDATE",
        "outbox",
        sqlx::query(
            "UPDATE outbox SET attempts = attempts + 1, last_error = $2, \
             available_at = now() + make_interval(secs => $3) WHERE event_id = $1",
        )
        .bind(event.event_id)
        .bind(error)
        .bind(backoff.as_secs_f64())
        .execute(pool),
    )
    .await?;
    Ok(())
}
