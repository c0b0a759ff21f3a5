//! orders: checkout. An order and its outbox event are written in one
//! transaction; an `Idempotency-Key` makes a checkout safe to retry; when
//! payments is slow or failing the order is accepted as `payment_pending` and
//! the worker settles it later.

mod config;

pub use config::OrdersConfig;

pub mod store;

use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::PgPool;

use crate::auth::Caller;
use crate::clients::{Authorized, CatalogClient, CatalogError, PaymentsClient, Reserved};
use crate::domain::{
    Authorization, Checkout, CheckoutBody, IdempotencyKey, Order, OrderId, OrderStatus, Reservation,
};
use crate::headers::{IDEMPOTENCY_KEY, IDEMPOTENT_REPLAYED};
use crate::http::outbound::Upstreams;
use crate::http::{ApiJson, ApiPath};
use crate::outbox;
use crate::outbox::relay::{Relay, RelayWaker};
use crate::outbox::{NewEvent, OrderEvent, OrderPlaced, PaymentDeclined};
use crate::problem::{PROBLEM_JSON, Problem};
use crate::resilience::deadline;
use crate::roles::{Database, Role, TaskContext};
use crate::startup::StartupError;
use store::{Claim, Completion, OwnedKey};

/// The role's name.
pub const NAME: &str = "orders";

/// Builds orders: checkout over its database, the catalog and payments; the
/// outbox's age measured here too, so it shows while no worker runs; and,
/// with a broker, the relay that publishes the outbox to it.
pub fn build(config: &OrdersConfig) -> Result<Role, StartupError> {
    register_metrics();
    let broker = config.broker.uri().map_err(StartupError::Broker)?;
    let database = Database::connect_lazy(&config.database, NAME)?;
    let mut upstreams = Upstreams::new(&config.client).map_err(StartupError::Client)?;
    let catalog = upstreams.add(
        "catalog",
        config.catalog.replicas(),
        config.client.upstream_timeout,
    );
    let payments = upstreams.add(
        "payments",
        config.payments.replicas(),
        config.payment_timeout,
    );
    let state = OrdersState {
        pool: database.pool.clone(),
        catalog: CatalogClient::new(catalog),
        payments: PaymentsClient::new(payments),
        payment_timeout: config.payment_timeout,
        relay: RelayWaker::default(),
    };
    let waker = state.relay.clone();
    let (auth, refresh) = crate::auth::Authenticator::start(&config.auth)?;
    let mut role = Role::new(router(state), &config.serve);
    role.auth = Some(auth);
    role.background.extend(refresh);
    let pool = database.pool.clone();
    role.background.push(Box::new(move |task: TaskContext| {
        tokio::spawn(outbox::report_oldest_age(pool, task.health, task.stop))
    }));
    if let Some(uri) = broker {
        crate::broker::register_publisher_metrics();
        let relay = Relay {
            pool: database.pool.clone(),
            uri,
            broker: config.broker.clone(),
            name: crate::broker::connection::client_name("orders-relay"),
            batch: config.relay_batch,
            interval: config.relay_interval,
            waker,
        };
        role.background.push(Box::new(move |task: TaskContext| {
            tokio::spawn(relay.run(task.health, task.stop))
        }));
    }
    role.database = Some(database);
    role.call(upstreams);
    Ok(role)
}

/// How long a checkout holds its key before a retry may take over.
const KEY_LEASE: Duration = Duration::from_secs(10);
/// How long a duplicate waits for the first request to finish.
const DUPLICATE_WAIT: Duration = Duration::from_secs(3);

/// What the orders handlers share.
#[derive(Debug, Clone)]
pub struct OrdersState {
    pub pool: PgPool,
    pub catalog: CatalogClient,
    pub payments: PaymentsClient,
    /// How long checkout waits for payments before accepting the order as pending.
    pub payment_timeout: Duration,
    /// Wakes this replica's relay when a checkout wrote an event (a no-op
    /// without a broker).
    pub relay: RelayWaker,
}

/// Starts the orders counters at zero.
pub fn register_metrics() {
    // Series exist from the start, so rate() and alerts see zeros, not gaps.
    for status in [
        "paid",
        "payment_pending",
        "declined",
        "out_of_stock",
        "unknown_product",
    ] {
        metrics::counter!("orders_total", "status" => status).absolute(0);
    }
    metrics::counter!("degraded_responses_total", "reason" => "payment_pending").absolute(0);
}

/// The orders API.
pub fn router(state: OrdersState) -> Router {
    Router::new()
        .route("/api/orders", post(checkout))
        .route("/api/orders/{id}", get(get_order))
        .with_state(state)
}

fn unavailable(detail: impl Into<String>) -> Problem {
    Problem::new(StatusCode::SERVICE_UNAVAILABLE).with_detail(detail)
}

fn database_unavailable(err: &sqlx::Error) -> Problem {
    tracing::warn!(error = %err, "database operation failed");
    unavailable("the database is unavailable; retry later with the same Idempotency-Key")
}

/// An order, to its owner or an admin. Another customer's order is 404,
/// exactly like a missing one, so that order ids cannot be probed.
#[tracing::instrument(level = "debug", skip(state, caller), fields(enduser.id = %caller.0.subject))]
async fn get_order(
    State(state): State<OrdersState>,
    caller: Caller,
    ApiPath(id): ApiPath<uuid::Uuid>,
) -> Result<Response, Problem> {
    match store::get_order(&state.pool, OrderId(id)).await {
        Ok(Some(owned)) if caller.may_read(&owned.owner) => {
            Ok(axum::Json(owned.order).into_response())
        }
        Ok(_) => Err(Problem::new(StatusCode::NOT_FOUND).with_detail(format!("no order {id}"))),
        Err(err) => Err(database_unavailable(&err)),
    }
}

/// The sha-256 of the canonical (validated, sorted) checkout.
fn request_hash(checkout: &Checkout) -> String {
    let canonical = serde_json::to_vec(checkout).unwrap_or_default();
    format!("{:x}", Sha256::digest(canonical))
}

/// A stored or fresh outcome as an HTTP response.
fn respond(status: u16, body: &Value, order_id: Option<OrderId>, replayed: bool) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, axum::Json(body.clone())).into_response();
    let headers = response.headers_mut();
    if !status.is_success() {
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    }
    if let Some(id) = order_id.filter(|_| status.is_success())
        && let Ok(location) = HeaderValue::from_str(&format!("/api/orders/{id}"))
    {
        headers.insert(header::LOCATION, location);
    }
    if replayed {
        headers.insert(IDEMPOTENT_REPLAYED, HeaderValue::from_static("true"));
    }
    response
}

fn problem_body(status: StatusCode, detail: String) -> Value {
    serde_json::to_value(Problem::new(status).with_detail(detail)).unwrap_or_default()
}

#[tracing::instrument(skip_all, fields(idempotency_key, order_id, enduser.id = %caller.0.subject))]
async fn checkout(
    State(state): State<OrdersState>,
    caller: Caller,
    headers: HeaderMap,
    ApiJson(body): ApiJson<CheckoutBody>,
) -> Result<Response, Problem> {
    let key = headers
        .get(&IDEMPOTENCY_KEY)
        .ok_or_else(|| {
            Problem::new(StatusCode::BAD_REQUEST)
                .with_detail("the Idempotency-Key header is required: send a unique value per checkout, and the same value when retrying it")
        })?
        .to_str()
        .map_err(|_| {
            Problem::new(StatusCode::BAD_REQUEST)
                .with_detail("Idempotency-Key must be visible ASCII characters without spaces")
        })
        .and_then(|raw| {
            IdempotencyKey::parse(raw)
                .map_err(|err| Problem::new(StatusCode::BAD_REQUEST).with_detail(err.0))
        })?;
    tracing::Span::current().record("idempotency_key", key.as_str());
    let key = OwnedKey {
        owner: caller.0.subject,
        key,
    };
    let checkout = Checkout::parse(&body)
        .map_err(|err| Problem::new(StatusCode::UNPROCESSABLE_ENTITY).with_detail(err.0))?;
    let hash = request_hash(&checkout);

    let order_id = match claim(&state.pool, &key, &hash).await? {
        Ok(order_id) => order_id,
        Err(replay) => return Ok(replay),
    };
    tracing::Span::current().record("order_id", tracing::field::display(order_id));
    match place(&state, &key, order_id, &checkout).await {
        Ok(response) => Ok(response),
        Err(problem) => {
            // Let the client's retry take over at once, with the same order id.
            if let Err(err) = store::release_key(&state.pool, &key).await {
                tracing::warn!(error = %err, "cannot release the idempotency key");
            }
            Err(problem)
        }
    }
}

/// Claims the key: `Ok(order id)` to do the work, or `Err(response)` to replay.
async fn claim(
    pool: &PgPool,
    key: &OwnedKey,
    hash: &str,
) -> Result<Result<OrderId, Response>, Problem> {
    let deadline = tokio::time::Instant::now() + DUPLICATE_WAIT;
    loop {
        let record = match store::claim_key(pool, key, hash, KEY_LEASE)
            .await
            .map_err(|err| database_unavailable(&err))?
        {
            Claim::Owned(order_id) => return Ok(Ok(order_id)),
            Claim::Existing(record) => record,
        };
        if record.request_hash != hash {
            return Err(Problem::new(StatusCode::UNPROCESSABLE_ENTITY).with_detail(
                "this Idempotency-Key was already used with a different request body; use a new key for a new checkout",
            ));
        }
        if record.completed {
            let status = record
                .response_status
                .and_then(|s| u16::try_from(s).ok())
                .unwrap_or(500);
            let body = record.response_body.unwrap_or(Value::Null);
            return Ok(Err(respond(status, &body, Some(record.order_id), true)));
        }
        if record.lease_expired {
            if let Some(order_id) = store::take_over_key(pool, key, KEY_LEASE)
                .await
                .map_err(|err| database_unavailable(&err))?
            {
                return Ok(Ok(order_id));
            }
            continue;
        }
        if tokio::time::Instant::now() >= deadline {
            let mut response = Problem::new(StatusCode::CONFLICT)
                .with_detail(
                    "a request with this Idempotency-Key is still in progress; retry shortly",
                )
                .into_response();
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            return Ok(Err(response));
        }
        // Another request with this key is working: wait for its outcome.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Reserves stock, asks for payment and records the outcome.
async fn place(
    state: &OrdersState,
    key: &OwnedKey,
    order_id: OrderId,
    checkout: &Checkout,
) -> Result<Response, Problem> {
    let reservation = match reserve(&state.catalog, order_id, checkout).await? {
        Ok(reservation) => reservation,
        Err((status, detail, outcome)) => {
            let body = problem_body(status, detail);
            store::complete(
                &state.pool,
                Completion {
                    key,
                    order: None,
                    event: None,
                    response_status: status.as_u16(),
                    response_body: body.clone(),
                },
            )
            .await
            .map_err(|err| database_unavailable(&err))?;
            metrics::counter!("orders_total", "status" => outcome).increment(1);
            return Ok(respond(status.as_u16(), &body, None, false));
        }
    };
    let amount_cents: i64 = reservation
        .items
        .iter()
        .map(|item| i64::from(item.quantity) * item.unit_price_cents)
        .sum();
    // The payment timeout bounds the whole step, retries included.
    let payment = deadline::within(
        state.payment_timeout,
        authorize(&state.payments, order_id, amount_cents),
    )
    .await;
    let trace_context = faultline_telemetry::propagation::current_carrier();
    let (status, order, event, outcome) = match payment {
        Payment::Declined(detail) => {
            // No order; the worker gives the stock back.
            let event = NewEvent {
                event: OrderEvent::PaymentDeclined(PaymentDeclined { order_id }),
                trace_context,
            };
            (
                StatusCode::PAYMENT_REQUIRED,
                None,
                event,
                ("declined", detail),
            )
        }
        Payment::Authorized(authorization) => {
            let order = Order {
                id: order_id,
                status: OrderStatus::Paid,
                amount_cents,
                items: reservation.items,
                payment_id: Some(authorization.id),
            };
            let event = placed_event(&order, trace_context);
            (
                StatusCode::CREATED,
                Some(order),
                event,
                ("paid", String::new()),
            )
        }
        Payment::Pending(reason) => {
            tracing::info!(%reason, "payments unavailable: accepting as payment_pending");
            metrics::counter!("degraded_responses_total", "reason" => "payment_pending")
                .increment(1);
            let order = Order {
                id: order_id,
                status: OrderStatus::PaymentPending,
                amount_cents,
                items: reservation.items,
                payment_id: None,
            };
            let event = placed_event(&order, trace_context);
            (
                StatusCode::ACCEPTED,
                Some(order),
                event,
                ("payment_pending", String::new()),
            )
        }
    };
    let body = match &order {
        Some(order) => serde_json::to_value(order).unwrap_or_default(),
        None => problem_body(status, outcome.1.clone()),
    };
    store::complete(
        &state.pool,
        Completion {
            key,
            order: order.as_ref(),
            event: Some(event),
            response_status: status.as_u16(),
            response_body: body.clone(),
        },
    )
    .await
    .map_err(|err| database_unavailable(&err))?;
    state.relay.wake();
    metrics::counter!("orders_total", "status" => outcome.0).increment(1);
    Ok(respond(status.as_u16(), &body, order.map(|o| o.id), false))
}

fn placed_event(
    order: &Order,
    trace_context: std::collections::HashMap<String, String>,
) -> NewEvent {
    NewEvent {
        event: OrderEvent::Placed(OrderPlaced {
            order_id: order.id,
            status: order.status,
            amount_cents: order.amount_cents,
        }),
        trace_context,
    }
}

type Rejection = (StatusCode, String, &'static str);

/// Asks the catalog to hold the stock: the reservation, a business rejection
/// to store and answer, or a problem when the catalog cannot answer.
async fn reserve(
    catalog: &CatalogClient,
    order_id: OrderId,
    checkout: &Checkout,
) -> Result<Result<Reservation, Rejection>, Problem> {
    match catalog.reserve(order_id, &checkout.items).await {
        Ok(Reserved::Yes(reservation)) => Ok(Ok(reservation)),
        Ok(Reserved::UnknownProduct(detail)) => Ok(Err((
            StatusCode::UNPROCESSABLE_ENTITY,
            detail,
            "unknown_product",
        ))),
        Ok(Reserved::OutOfStock(detail)) => Ok(Err((StatusCode::CONFLICT, detail, "out_of_stock"))),
        Err(CatalogError::Status { status, .. }) => Err(unavailable(format!(
            "the catalog answered {status}; retry later"
        ))),
        Err(CatalogError::Upstream(err)) => {
            tracing::warn!(error = %err, "upstream call failed");
            Err(unavailable(format!(
                "{err}; retry later with the same Idempotency-Key"
            )))
        }
    }
}

/// What payments said, or did not say in time.
#[derive(Debug)]
enum Payment {
    Authorized(Authorization),
    Declined(String),
    Pending(String),
}

async fn authorize(payments: &PaymentsClient, order_id: OrderId, amount_cents: i64) -> Payment {
    match payments.authorize(order_id, amount_cents).await {
        Ok(Authorized::Yes(authorization)) => Payment::Authorized(authorization),
        Ok(Authorized::Declined(detail)) => Payment::Declined(detail),
        Err(err) => Payment::Pending(err.to_string()),
    }
}
