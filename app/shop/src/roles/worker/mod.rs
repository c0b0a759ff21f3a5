//! worker: drains the outbox. Each event is taken with `FOR UPDATE SKIP LOCKED`
//! (so any number of workers can run), its effects commit together with a row
//! in `processed_events` (so it is processed once), and a failure is retried
//! with exponential backoff (so nothing is lost). It settles `payment_pending`
//! orders, gives back the stock of declined payments, and sends notifications.

use std::collections::HashMap;
use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue, StatusCode};
use serde_json::Value;
use sqlx::{PgPool, Postgres, Transaction};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

use crate::db::timed;
use crate::domain::{Authorization, AuthorizationRequest, OrderId};
use crate::http::Upstream;
use crate::outbox;

/// How often the backlog gauges are refreshed.
const BACKLOG_INTERVAL: Duration = Duration::from_secs(1);

/// What the worker needs.
#[derive(Debug, Clone)]
pub struct Worker {
    pub pool: PgPool,
    pub payments: Upstream,
    pub catalog: Upstream,
    pub poll_interval: Duration,
    pub max_backoff: Duration,
}

/// An event taken from the outbox.
#[derive(Debug, Clone)]
struct Event {
    id: i64,
    event_id: Uuid,
    kind: String,
    aggregate_id: Uuid,
    payload: Value,
    trace_context: HashMap<String, String>,
    attempts: i32,
}

/// Why handling an event failed; it will be retried.
#[derive(Debug, thiserror::Error)]
enum HandleError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("{0}")]
    Upstream(String),
    #[error("event {0} has an unknown kind {1:?}")]
    UnknownKind(Uuid, String),
}

/// Describes the worker metrics once.
pub fn describe_metrics() {
    metrics::describe_gauge!("outbox_backlog_events", "Outbox events not processed yet.");
    outbox::describe_metrics();
    metrics::describe_counter!(
        "outbox_events_processed_total",
        "Outbox events handled by the worker, by kind and outcome (processed, retry)."
    );
    for kind in ["order.placed", "order.payment_declined"] {
        for outcome in ["processed", "retry"] {
            metrics::counter!("outbox_events_processed_total", "kind" => kind, "outcome" => outcome)
                .absolute(0);
        }
    }
    for status in ["settled", "payment_failed"] {
        metrics::counter!("orders_total", "status" => status).absolute(0);
    }
}

impl Worker {
    /// Drains the outbox until `stop` fires.
    pub async fn run(self, stop: CancellationToken) {
        let backlog = tokio::spawn(report_backlog(self.pool.clone(), stop.clone()));
        while !stop.is_cancelled() {
            let found = match self.process_one().await {
                Ok(found) => found,
                Err(err) => {
                    tracing::warn!(error = %err, "cannot read the outbox");
                    false
                }
            };
            if !found {
                tokio::select! {
                    () = tokio::time::sleep(self.poll_interval) => {}
                    () = stop.cancelled() => {}
                }
            }
        }
        backlog.abort();
    }

    /// Takes one due event and handles it; false when none is due.
    async fn process_one(&self) -> Result<bool, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let Some(event) = take_due_event(&mut tx).await? else {
            tx.commit().await?;
            return Ok(false);
        };
        let span = tracing::info_span!(
            "outbox.process",
            otel.name = format!("process {}", event.kind),
            otel.kind = "consumer",
            messaging.system = "postgresql-outbox",
            messaging.operation.type = "process",
            messaging.message.id = %event.event_id,
            messaging.destination.name = %event.kind,
            order_id = %event.aggregate_id,
        );
        let producer = faultline_telemetry::propagation::from_carrier(&event.trace_context);
        faultline_telemetry::propagation::add_link(&span, &producer);
        faultline_telemetry::propagation::set_remote_parent(&span, producer);
        let outcome = match self.handle(&mut tx, &event).instrument(span.clone()).await {
            Ok(()) => {
                mark_processed(&mut tx, &event)
                    .instrument(span.clone())
                    .await?;
                tx.commit().await?;
                "processed"
            }
            Err(err) => {
                let backoff = backoff(event.attempts, self.max_backoff);
                span.in_scope(|| {
                    tracing::warn!(error = %err, attempts = event.attempts + 1, retry_in = ?backoff, "event failed; will retry");
                });
                // Its effects so far roll back; the attempt is recorded on its own.
                tx.rollback().await?;
                schedule_retry(&self.pool, &event, backoff, &err.to_string())
                    .instrument(span)
                    .await?;
                "retry"
            }
        };
        metrics::counter!("outbox_events_processed_total", "kind" => event.kind, "outcome" => outcome)
            .increment(1);
        Ok(true)
    }

    async fn handle(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        event: &Event,
    ) -> Result<(), HandleError> {
        let order_id = OrderId(event.aggregate_id);
        match event.kind.as_str() {
            "order.placed" => {
                let pending =
                    event.payload.get("status").and_then(Value::as_str) == Some("payment_pending");
                if pending {
                    self.settle(tx, order_id, &event.payload).await?;
                }
                notify(tx, event, "order_confirmation").await?;
                Ok(())
            }
            "order.payment_declined" => {
                self.release_stock(order_id).await?;
                notify(tx, event, "payment_declined").await?;
                Ok(())
            }
            other => Err(HandleError::UnknownKind(event.event_id, other.to_owned())),
        }
    }

    /// Asks payments again for a `payment_pending` order.
    async fn settle(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        order_id: OrderId,
        payload: &Value,
    ) -> Result<(), HandleError> {
        let amount_cents = payload
            .get("amount_cents")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        let mut headers = HeaderMap::new();
        if let Ok(value) = HeaderValue::from_str(&order_id.to_string()) {
            headers.insert(crate::roles::orders::IDEMPOTENCY_KEY, value);
        }
        let path = "/api/payments/authorizations";
        let response = self
            .payments
            .post_json(
                path,
                headers,
                &AuthorizationRequest {
                    order_id,
                    amount_cents,
                },
            )
            .await
            .map_err(|err| HandleError::Upstream(err.to_string()))?;
        if response.status == StatusCode::PAYMENT_REQUIRED {
            set_order_status(tx, order_id, "payment_failed", None).await?;
            self.release_stock(order_id).await?;
            metrics::counter!("orders_total", "status" => "payment_failed").increment(1);
            return Ok(());
        }
        if !response.status.is_success() {
            return Err(HandleError::Upstream(format!(
                "payments answered {}",
                response.status
            )));
        }
        let authorization: Authorization = response
            .json(self.payments.name(), path)
            .map_err(|err| HandleError::Upstream(err.to_string()))?;
        set_order_status(tx, order_id, "paid", Some(&authorization.id)).await?;
        metrics::counter!("orders_total", "status" => "settled").increment(1);
        Ok(())
    }

    async fn release_stock(&self, order_id: OrderId) -> Result<(), HandleError> {
        let response = self
            .catalog
            .delete(&format!("/api/reservations/{order_id}"))
            .await
            .map_err(|err| HandleError::Upstream(err.to_string()))?;
        if response.status.is_success() {
            Ok(())
        } else {
            Err(HandleError::Upstream(format!(
                "catalog answered {} to a release",
                response.status
            )))
        }
    }
}

/// Exponential backoff: 0.5 s, 1 s, 2 s, ... up to `max`.
fn backoff(attempts: i32, max: Duration) -> Duration {
    let exponent = u32::try_from(attempts.clamp(0, 16)).unwrap_or(16);
    Duration::from_millis(500)
        .saturating_mul(2_u32.saturating_pow(exponent))
        .min(max)
}

type EventRow = (i64, Uuid, String, Uuid, Value, Value, i32);

#[tracing::instrument(name = "SELECT outbox", skip_all, fields(otel.kind = "client", db.system.name = "postgresql", db.operation.name = "SELECT", db.collection.name = "outbox"))]
async fn take_due_event(tx: &mut Transaction<'_, Postgres>) -> Result<Option<Event>, sqlx::Error> {
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
        |(id, event_id, kind, aggregate_id, payload, trace_context, attempts)| Event {
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

#[tracing::instrument(name = "UPDATE outbox", skip_all, fields(otel.kind = "client", db.system.name = "postgresql", db.operation.name = "UPDATE", db.collection.name = "outbox"))]
async fn mark_processed(
    tx: &mut Transaction<'_, Postgres>,
    event: &Event,
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

#[tracing::instrument(name = "UPDATE outbox", skip_all, fields(otel.kind = "client", db.system.name = "postgresql", db.operation.name = "UPDATE", db.collection.name = "outbox"))]
async fn schedule_retry(
    pool: &PgPool,
    event: &Event,
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

#[tracing::instrument(name = "UPDATE orders", skip(tx), fields(otel.kind = "client", db.system.name = "postgresql", db.operation.name = "UPDATE", db.collection.name = "orders"))]
async fn set_order_status(
    tx: &mut Transaction<'_, Postgres>,
    order_id: OrderId,
    status: &str,
    payment_id: Option<&str>,
) -> Result<(), sqlx::Error> {
    timed(
        "UPDATE",
        "orders",
        sqlx::query(
            "UPDATE orders SET status = $2, payment_id = COALESCE($3, payment_id), updated_at = now() \
             WHERE id = $1",
        )
        .bind(order_id.0)
        .bind(status)
        .bind(payment_id)
        .execute(&mut **tx),
    )
    .await?;
    Ok(())
}

/// Records a notification; the unique event id makes a second send a no-op.
#[tracing::instrument(name = "INSERT notifications", skip(tx, event), fields(otel.kind = "client", db.system.name = "postgresql", db.operation.name = "INSERT", db.collection.name = "notifications"))]
async fn notify(
    tx: &mut Transaction<'_, Postgres>,
    event: &Event,
    kind: &str,
) -> Result<(), sqlx::Error> {
    timed(
        "INSERT",
        "notifications",
        sqlx::query(
            "INSERT INTO notifications (event_id, order_id, kind) VALUES ($1, $2, $3) \
             ON CONFLICT (event_id) DO NOTHING",
        )
        .bind(event.event_id)
        .bind(event.aggregate_id)
        .bind(kind)
        .execute(&mut **tx),
    )
    .await?;
    Ok(())
}

/// Refreshes the backlog gauges every second until `stop` fires.
async fn report_backlog(pool: PgPool, stop: CancellationToken) {
    let mut every = tokio::time::interval(BACKLOG_INTERVAL);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            () = stop.cancelled() => return,
        }
        match outbox::backlog(&pool).await {
            Ok(backlog) => {
                #[allow(clippy::cast_precision_loss)]
                metrics::gauge!("outbox_backlog_events").set(backlog.events as f64);
                metrics::gauge!(outbox::OLDEST_EVENT_AGE).set(backlog.oldest_age_seconds);
            }
            Err(err) => tracing::debug!(error = %err, "cannot measure the outbox backlog"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let max = Duration::from_secs(30);
        assert_eq!(backoff(0, max), Duration::from_millis(500));
        assert_eq!(backoff(1, max), Duration::from_secs(1));
        assert_eq!(backoff(3, max), Duration::from_secs(4));
        assert_eq!(backoff(20, max), max);
        assert_eq!(backoff(-1, max), Duration::from_millis(500));
    }
}
