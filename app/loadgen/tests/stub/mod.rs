//! An in-process stand-in for the gateway's public API, with failures on
//! demand, that remembers everything it served.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use faultline_auth::{AuthError, Verifier};
use serde_json::{Value, json};
use url::Url;
use uuid::Uuid;

pub const LIST: &str = "GET /api/products";
pub const PRODUCT: &str = "GET /api/products/{id}";
pub const CHECKOUT: &str = "POST /api/orders";
pub const ORDER: &str = "GET /api/orders/{id}";

/// How the stub misbehaves.
#[derive(Debug, Clone, Default)]
pub struct Behaviour {
    /// Every Nth listing (1-based, per route) answers 500.
    pub list_fail_every: Option<u64>,
    /// Every Nth checkout answers 503 problem+json (and creates nothing).
    pub checkout_fail_every: Option<u64>,
    /// Every Nth checkout answers 409 out of stock.
    pub checkout_reject_every: Option<u64>,
    /// Listings carry `X-Degraded: stale-catalog`.
    pub degraded_list: bool,
    /// Product details take this long.
    pub product_delay: Option<Duration>,
    /// A replayed Idempotency-Key gets a new order anyway.
    pub break_idempotency: bool,
    /// Order routes require a bearer token this verifier accepts (401
    /// otherwise), as the gateway does, and an order is served only to the
    /// customer who placed it (404 to anyone else). Product routes verify a
    /// token when one is sent.
    pub auth: Option<Verifier>,
}

/// One request as the stub saw it.
#[derive(Debug, Clone)]
pub struct Served {
    pub route: &'static str,
    pub path: String,
    pub status: u16,
    pub degraded: bool,
    pub trace_id: Option<String>,
    pub traceparent_ok: bool,
    pub idempotency_key: Option<String>,
    /// Whether the request carried an `Authorization` header.
    pub authorization: bool,
    /// The subject of its token, when [`Behaviour::auth`] verified one.
    pub subject: Option<String>,
}

#[derive(Debug, Default)]
pub struct Stub {
    behaviour: Behaviour,
    counters: [AtomicU64; 4],
    served: Mutex<Vec<Served>>,
    /// Idempotency key -> order id.
    orders_by_key: Mutex<HashMap<String, String>>,
    /// Every order created, in order.
    orders: Mutex<Vec<String>>,
    /// Order id -> the subject that placed it (with [`Behaviour::auth`]).
    owners: Mutex<HashMap<String, String>>,
}

impl Stub {
    /// Everything served so far.
    pub fn served(&self) -> Vec<Served> {
        self.served.lock().unwrap().clone()
    }

    /// Every order id created (duplicates would mean double processing).
    pub fn orders(&self) -> Vec<String> {
        self.orders.lock().unwrap().clone()
    }

    /// The subject that placed each order (with [`Behaviour::auth`]).
    pub fn owners(&self) -> HashMap<String, String> {
        self.owners.lock().unwrap().clone()
    }

    fn nth(&self, route: usize) -> u64 {
        self.counters[route].fetch_add(1, Ordering::SeqCst) + 1
    }

    /// With [`Behaviour::auth`]: `Ok(Some(subject))` for a good token,
    /// `Ok(None)` for none when `required` is false, else why it is a 401.
    fn authenticate(
        &self,
        headers: &HeaderMap,
        required: bool,
    ) -> Result<Option<String>, AuthError> {
        let Some(verifier) = &self.behaviour.auth else {
            return Ok(None);
        };
        let value = headers.get("authorization").map(|v| v.as_bytes());
        if value.is_none() && !required {
            return Ok(None);
        }
        verifier
            .verify_header(value)
            .map(|identity| Some(identity.subject))
    }

    fn record(
        &self,
        route: &'static str,
        path: String,
        headers: &HeaderMap,
        status: u16,
        degraded: bool,
    ) {
        self.record_as(route, path, headers, status, degraded, None);
    }

    fn record_as(
        &self,
        route: &'static str,
        path: String,
        headers: &HeaderMap,
        status: u16,
        degraded: bool,
        subject: Option<String>,
    ) {
        let traceparent = headers
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let parts: Vec<&str> = traceparent.split('-').collect();
        let traceparent_ok = parts.len() == 4
            && parts[0] == "00"
            && parts[1].len() == 32
            && parts[2].len() == 16
            && parts[3] == "01"
            && parts[1..3].iter().all(|p| {
                p.chars()
                    .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
            });
        self.served.lock().unwrap().push(Served {
            route,
            path,
            status,
            degraded,
            trace_id: parts.get(1).map(|s| (*s).to_owned()),
            traceparent_ok,
            idempotency_key: headers
                .get("idempotency-key")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            authorization: headers.contains_key("authorization"),
            subject,
        });
    }
}

fn hit(every: Option<u64>, n: u64) -> bool {
    every.is_some_and(|every| n.is_multiple_of(every))
}

fn problem(status: StatusCode, title: &str) -> Response {
    let body =
        json!({"type": "about:blank", "title": title, "status": status.as_u16(), "detail": "stub"});
    (
        status,
        [("content-type", "application/problem+json")],
        body.to_string(),
    )
        .into_response()
}

const PRODUCTS: [i64; 5] = [1, 2, 3, 4, 5];

async fn list(State(stub): State<Arc<Stub>>, headers: HeaderMap) -> Response {
    let n = stub.nth(0);
    let degraded = stub.behaviour.degraded_list;
    let subject = match stub.authenticate(&headers, false) {
        Ok(subject) => subject,
        Err(refused) => {
            stub.record(LIST, "/api/products".into(), &headers, 401, false);
            return problem(StatusCode::UNAUTHORIZED, refused.reason());
        }
    };
    if hit(stub.behaviour.list_fail_every, n) {
        stub.record_as(LIST, "/api/products".into(), &headers, 500, false, subject);
        return (StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response();
    }
    stub.record_as(
        LIST,
        "/api/products".into(),
        &headers,
        200,
        degraded,
        subject,
    );
    let products: Vec<Value> = PRODUCTS
        .iter()
        .map(|id| json!({"id": id, "sku": format!("SKU-{id}"), "name": "thing", "price_cents": 1299, "stock": 10}))
        .collect();
    let mut response = axum::Json(json!({ "products": products })).into_response();
    if degraded {
        response
            .headers_mut()
            .insert("x-degraded", "stale-catalog".parse().unwrap());
    }
    response
}

async fn product(
    State(stub): State<Arc<Stub>>,
    Path(id): Path<i64>,
    headers: HeaderMap,
) -> Response {
    stub.nth(1);
    let subject = match stub.authenticate(&headers, false) {
        Ok(subject) => subject,
        Err(refused) => {
            stub.record(PRODUCT, format!("/api/products/{id}"), &headers, 401, false);
            return problem(StatusCode::UNAUTHORIZED, refused.reason());
        }
    };
    let status = if PRODUCTS.contains(&id) { 200 } else { 404 };
    stub.record_as(
        PRODUCT,
        format!("/api/products/{id}"),
        &headers,
        status,
        false,
        subject,
    );
    if let Some(delay) = stub.behaviour.product_delay {
        // The server being slow, not a synchronisation.
        tokio::time::sleep(delay).await;
    }
    if status == 404 {
        return problem(StatusCode::NOT_FOUND, "Not Found");
    }
    axum::Json(json!({"id": id, "sku": format!("SKU-{id}"), "name": "thing", "price_cents": 1299, "stock": 10}))
        .into_response()
}

async fn checkout(State(stub): State<Arc<Stub>>, headers: HeaderMap, body: String) -> Response {
    let n = stub.nth(2);
    let path = "/api/orders".to_owned();
    let subject = match stub.authenticate(&headers, true) {
        Ok(subject) => subject,
        Err(refused) => {
            stub.record(CHECKOUT, path, &headers, 401, false);
            return problem(StatusCode::UNAUTHORIZED, refused.reason());
        }
    };
    let body: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let items_ok = body["items"]
        .as_array()
        .is_some_and(|items| !items.is_empty() && items.len() <= 3);
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .and_then(|k| Uuid::parse_str(k).ok());
    let (Some(key), true) = (key, items_ok) else {
        stub.record_as(CHECKOUT, path, &headers, 422, false, subject);
        return problem(StatusCode::UNPROCESSABLE_ENTITY, "Invalid");
    };
    // As the shop does, an Idempotency-Key belongs to its customer, and a
    // replay gets the first answer whatever else happens meanwhile.
    let scoped_key = format!("{}/{key}", subject.as_deref().unwrap_or_default());
    let replayed = if stub.behaviour.break_idempotency {
        None
    } else {
        stub.orders_by_key.lock().unwrap().get(&scoped_key).cloned()
    };
    let id = match replayed {
        Some(id) => id,
        None => {
            if hit(stub.behaviour.checkout_fail_every, n) {
                stub.record_as(CHECKOUT, path, &headers, 503, false, subject);
                return problem(StatusCode::SERVICE_UNAVAILABLE, "Unavailable");
            }
            if hit(stub.behaviour.checkout_reject_every, n) {
                stub.record_as(CHECKOUT, path, &headers, 409, false, subject);
                return problem(StatusCode::CONFLICT, "Out of stock");
            }
            let id = Uuid::new_v4().to_string();
            stub.orders_by_key
                .lock()
                .unwrap()
                .insert(scoped_key, id.clone());
            stub.orders.lock().unwrap().push(id.clone());
            if let Some(subject) = &subject {
                stub.owners
                    .lock()
                    .unwrap()
                    .insert(id.clone(), subject.clone());
            }
            id
        }
    };
    stub.record_as(CHECKOUT, path, &headers, 201, false, subject);
    (
        StatusCode::CREATED,
        axum::Json(json!({"id": id, "status": "paid", "items": body["items"]})),
    )
        .into_response()
}

async fn order(
    State(stub): State<Arc<Stub>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    stub.nth(3);
    let subject = match stub.authenticate(&headers, true) {
        Ok(subject) => subject,
        Err(refused) => {
            stub.record(ORDER, format!("/api/orders/{id}"), &headers, 401, false);
            return problem(StatusCode::UNAUTHORIZED, refused.reason());
        }
    };
    let known = stub.orders.lock().unwrap().contains(&id);
    // Another customer's order is not found, as at the gateway.
    let theirs = match &subject {
        Some(subject) => stub.owners.lock().unwrap().get(&id) == Some(subject),
        None => true,
    };
    let known = known && theirs;
    let status = if known { 200 } else { 404 };
    stub.record_as(
        ORDER,
        format!("/api/orders/{id}"),
        &headers,
        status,
        false,
        subject,
    );
    if known {
        axum::Json(json!({"id": id, "status": "paid"})).into_response()
    } else {
        problem(StatusCode::NOT_FOUND, "Not Found")
    }
}

/// Serves the stub on 127.0.0.1 with an ephemeral port.
pub async fn start(behaviour: Behaviour) -> (Url, Arc<Stub>) {
    let stub = Arc::new(Stub {
        behaviour,
        ..Stub::default()
    });
    let app = Router::new()
        .route("/api/products", get(list))
        .route("/api/products/{id}", get(product))
        .route("/api/orders", post(checkout))
        .route("/api/orders/{id}", get(order))
        .with_state(Arc::clone(&stub));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (Url::parse(&format!("http://{addr}")).unwrap(), stub)
}
