//! The outbox's SQL: orders writes an event in its checkout transaction; the
//! worker takes due events with `FOR UPDATE SKIP LOCKED`, marks them processed
//! in its own transaction (with a row in `processed_events`, so each is
//! processed once), or schedules a retry.

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
    /// The row's id.
    pub id: i64,
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

type EventRow = (i64, Uuid, String, Uuid, Value, Value, i32);

/// Takes the next due event, locking it for the transaction; `None` when none is due.
#[tracing::instrument(name = "SELECT outbox", skip_all, fields(otel.kind = "client", db.system.name = "postgresql", db.operation.name = "SELECT", db.collection.name = "outbox"))]
pub async fn take_due(
    tx: &mut Transaction<'_, Postgres>,
) -> Result<Option<StoredEvent>, sqlx::Error> {
    let row: Option<EventRow> = timed(
        "SELECT",
        "outbox",
        sqlx::query_as(
            "SELECT id, event_id, kind, aggregate_id, payload, trace_context, attempts FROM outbox \
             WHERE processed_at IS NULL AND available_at <= now() \
             ORDER BY available_at, id LIMIT 1 FOR UPDATE SKIP LOCKED",
        )
        .fetch_optional(&mut **tx),
    )
    .await?;
    Ok(row.map(
        |(id, event_id, kind, aggregate_id, payload, trace_context, attempts)| StoredEvent {
            id,
            event_id,
            kind,
            aggregate_id,
            payload,
            trace_context: serde_json::from_value(trace_context).unwrap_or_default(),
            attempts,
        },
    ))
}

/// Marks `event` processed, in the transaction that committed its effects.
#[tracing::instrument(name = "UPDATE outbox", skip_all, fields(otel.kind = "client", db.system.name = "postgresql", db.operation.name = "UPDATE", db.collection.name = "outbox"))]
pub async fn mark_processed(
    tx: &mut Transaction<'_, Postgres>,
    event: &StoredEvent,
) -> Result<(), sqlx::Error> {
    timed(
        "INSERT",
        "processed_events",
        sqlx::query("INSERT INTO processed_events (event_id, kind) VALUES ($1, $2)")
            .bind(event.event_id)
            .bind(&event.kind)
            .execute(&mut **tx),
    )
    .await?;
    timed(
        "UPDATE",
        "outbox",
        sqlx::query(
            "UPDATE outbox SET processed_at = now(), attempts = attempts + 1 WHERE id = $1",
        )
        .bind(event.id)
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
             available_at = now() + make_interval(secs => $3) WHERE id = $1",
        )
        .bind(event.id)
        .bind(error)
        .bind(backoff.as_secs_f64())
        .execute(pool),
    )
    .await?;
    Ok(())
}
