//! worker: handles the outbox's events. It settles `payment_pending` orders,
//! gives back the stock of declined payments, and sends notifications.
//!
//! Each event's effects commit together with its row in `processed_events`
//! (so it is processed once), and a failure is retried with exponential
//! backoff (so nothing is lost). The events arrive one of two ways:
//! - [`consume`]: from RabbitMQ, when `FAULTLINE_AMQP_URL` is set (orders
//!   relays the outbox there);
//! - [`poll`]: from the outbox table itself, otherwise.

mod config;
pub mod consume;
mod poll;

pub use config::WorkerConfig;

use std::time::Duration;

use axum::http::StatusCode;
use sqlx::{PgPool, Postgres, Transaction};

use crate::clients::{Authorized, CatalogClient, CatalogError, PaymentsClient, PaymentsError};
use crate::db::timed;
use crate::domain::{OrderId, OrderStatus};
use crate::http::outbound::Upstreams;
use crate::outbox::{self, MalformedEvent, OrderEvent, OrderPlaced, StoredEvent};
use crate::roles::{Database, Role, TaskContext};
use crate::startup::StartupError;

/// The role's name.
pub const NAME: &str = "worker";

/// Builds the worker: no public API, one background task handling the
/// events, from the broker or from the outbox table.
pub fn build(config: &WorkerConfig) -> Result<Role, StartupError> {
    register_metrics();
    let uri = config.broker.uri().map_err(StartupError::Broker)?;
    let database = Database::connect_lazy(&config.database, NAME)?;
    let timeout = config.client.upstream_timeout;
    let mut upstreams = Upstreams::new(&config.client).map_err(StartupError::Client)?;
    let worker = Worker {
        pool: database.pool.clone(),
        payments: PaymentsClient::new(upstreams.add(
            "payments",
            config.payments.replicas(),
            timeout,
        )),
        catalog: CatalogClient::new(upstreams.add("catalog", config.catalog.replicas(), timeout)),
        poll_interval: config.poll_interval,
        max_backoff: config.max_backoff,
    };
    let mut role = Role::new(axum::Router::new(), &config.serve);
    match uri {
        Some(uri) => {
            crate::broker::register_consumer_metrics();
            let consumer = consume::Consumer {
                worker,
                uri,
                broker: config.broker.clone(),
                name: crate::broker::connection::client_name(NAME),
                prefetch: config.prefetch,
                max_attempts: config.max_attempts,
            };
            role.background.push(Box::new(move |task: TaskContext| {
                tokio::spawn(consumer.run(task))
            }));
        }
        None => role.background.push(Box::new(move |task: TaskContext| {
            tokio::spawn(worker.poll(task.stop))
        })),
    }
    role.database = Some(database);
    role.call(upstreams);
    Ok(role)
}

/// Counts the events the worker handled, by kind and outcome.
pub const PROCESSED: &str = "outbox_events_processed_total";

/// Every `outcome` of [`PROCESSED`].
pub const OUTCOMES: [&str; 4] = ["processed", "duplicate", "retry", "dead_letter"];

/// Counts the events the worker could not read (`reason`: unknown_kind or
/// invalid_payload); they stay in the outbox and are retried with backoff.
pub const MALFORMED_EVENTS: &str = "outbox_events_malformed_total";

/// What the worker needs.
#[derive(Debug, Clone)]
pub struct Worker {
    pub pool: PgPool,
    pub payments: PaymentsClient,
    pub catalog: CatalogClient,
    pub poll_interval: Duration,
    pub max_backoff: Duration,
}

/// Why handling an event failed; it will be retried.
#[derive(Debug, thiserror::Error)]
enum HandleError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Payments(#[from] PaymentsError),
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    #[error("event {event_id} {source}")]
    Malformed {
        event_id: uuid::Uuid,
        #[source]
        source: MalformedEvent,
    },
}

/// Starts the worker counters at zero.
pub fn register_metrics() {
    for kind in OrderEvent::KINDS.into_iter().chain(["unknown"]) {
        for outcome in OUTCOMES {
            metrics::counter!(PROCESSED, "kind" => kind, "outcome" => outcome).absolute(0);
        }
    }
    for status in ["settled", "payment_failed"] {
        metrics::counter!("orders_total", "status" => status).absolute(0);
    }
    for reason in MalformedEvent::REASONS {
        metrics::counter!(MALFORMED_EVENTS, "reason" => reason).absolute(0);
    }
}

impl Worker {
    /// Processes `event` in `tx`: claims it, applies its effects and marks it
    /// processed. `Ok(false)`: it was processed already (a redelivery), and
    /// nothing changed. The caller commits.
    async fn process_in(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        event: &StoredEvent,
    ) -> Result<bool, HandleError> {
        if !outbox::queue::claim(tx, event).await? {
            return Ok(false);
        }
        self.handle(tx, event).await?;
        outbox::queue::mark_processed(tx, event).await?;
        Ok(true)
    }

    async fn handle(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        stored: &StoredEvent,
    ) -> Result<(), HandleError> {
        let order_id = OrderId(stored.aggregate_id);
        let event = OrderEvent::decode(&stored.kind, stored.payload.clone()).map_err(|source| {
            HandleError::Malformed {
                event_id: stored.event_id,
                source,
            }
        })?;
        match event {
            OrderEvent::Placed(placed) => {
                if placed.status == OrderStatus::PaymentPending {
                    self.settle(tx, order_id, &placed).await?;
                }
                notify(tx, stored, "order_confirmation").await?;
            }
            OrderEvent::PaymentDeclined(_) => {
                self.catalog.release(order_id).await?;
                notify(tx, stored, "payment_declined").await?;
            }
        }
        Ok(())
    }

    /// Asks payments again for a `payment_pending` order.
    async fn settle(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        order_id: OrderId,
        placed: &OrderPlaced,
    ) -> Result<(), HandleError> {
        match self
            .payments
            .authorize(order_id, placed.amount_cents)
            .await?
        {
            Authorized::Declined(_) => {
                set_order_status(tx, order_id, OrderStatus::PaymentFailed, None).await?;
                self.catalog.release(order_id).await?;
                metrics::counter!("orders_total", "status" => "payment_failed").increment(1);
            }
            Authorized::Yes(authorization) => {
                set_order_status(tx, order_id, OrderStatus::Paid, Some(&authorization.id)).await?;
                metrics::counter!("orders_total", "status" => "settled").increment(1);
            }
        }
        Ok(())
    }
}

impl HandleError {
    /// Whether a retry cannot cure it: the event is malformed, or an
    /// upstream refused it (a 4xx other than 408 and 429). A database or an
    /// upstream that is unavailable, slow or failing is not permanent.
    fn is_permanent(&self) -> bool {
        let refused = |status: StatusCode| {
            status.is_client_error()
                && status != StatusCode::REQUEST_TIMEOUT
                && status != StatusCode::TOO_MANY_REQUESTS
        };
        match self {
            Self::Malformed { .. } => true,
            Self::Payments(PaymentsError::Status(status))
            | Self::Catalog(CatalogError::Status { status, .. }) => refused(*status),
            Self::Database(_) | Self::Payments(_) | Self::Catalog(_) => false,
        }
    }
}

/// The span of handling one event: a consumer span continuing the trace of
/// whoever sent it (the relay's publish, or the checkout that wrote it), and
/// linked to it.
fn process_span(event: &StoredEvent, system: &'static str) -> tracing::Span {
    let producer = faultline_telemetry::propagation::from_carrier(&event.trace_context);
    let span = faultline_telemetry::propagation::child_of_remote(producer.clone(), || {
        tracing::info_span!(
            "outbox.process",
            otel.name = format!("process {}", event.kind),
            otel.kind = "consumer",
            messaging.system = system,
            messaging.operation.type = "process",
            messaging.operation.name = "process",
            messaging.message.id = %event.event_id,
            messaging.destination.name = %event.kind,
            messaging.rabbitmq.message.delivery_tag = tracing::field::Empty,
            messaging.message.delivery_count = tracing::field::Empty,
            order_id = %event.aggregate_id,
        )
    });
    faultline_telemetry::propagation::add_link(&span, &producer);
    span
}

/// Exponential backoff: 0.5 s, 1 s, 2 s, ... up to `max`.
fn backoff(attempts: i32, max: Duration) -> Duration {
    let exponent = u32::try_from(attempts.clamp(0, 16)).unwrap_or(16);
    Duration::from_millis(500)
        .saturating_mul(2_u32.saturating_pow(exponent))
        .min(max)
}

#[tracing::instrument(name = "UPDATE orders", skip(tx, status), fields(status = ?status.as_str(), otel.kind = "client", db.system.name = "postgresql", db.operation.name = "UPDATE", db.collection.name = "orders"))]
async fn set_order_status(
    tx: &mut Transaction<'_, Postgres>,
    order_id: OrderId,
    status: OrderStatus,
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
        .bind(status.as_str())
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
    event: &StoredEvent,
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

    #[test]
    fn the_malformed_counter_is_in_the_catalog() {
        let catalog = faultline_telemetry::Catalog::embedded().unwrap();
        let spec = catalog.get(MALFORMED_EVENTS).unwrap();
        assert_eq!(spec.labels, ["reason"]);
        assert_eq!(spec.used_by, ["worker"]);
    }
}
