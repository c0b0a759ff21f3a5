//! The run: issues the planned requests (open or closed loop), records what
//! came back, hands a [`Window`] to the observer every window, and builds the
//! [`Report`].

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use reqwest::Method;
use serde::Deserialize;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::client::{Answer, Exchange, Http, HttpRequest};
use crate::config::{Config, ConfigError, Mode};
use crate::mix::{Op, Planner, Route, Step};
use crate::report::{
    AcknowledgedOrder, FailedRequest, IdempotencyViolation, REPORT_SCHEMA, Report, StoppedBy,
    Window,
};
use crate::schedule::{LATE_AFTER, Timetable};
use crate::stats::{Outcome, Recorder, Sample, round};
use crate::tokens::Wallet;

/// Why a run could not start. Once started, a run always ends with a report.
#[derive(Debug, thiserror::Error)]
pub enum LoadgenError {
    /// The configuration is unusable.
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Client(#[from] reqwest::Error),
    /// A histogram could not be created.
    #[error("cannot create a latency histogram: {0}")]
    Histogram(#[from] hdrhistogram::CreationError),
    /// The customers' tokens could not be minted.
    #[error("cannot mint the customers' tokens: {0}")]
    Tokens(#[from] faultline_auth::KeyError),
}

/// Receives the stats of each window while the run goes on.
///
/// Implemented for closures `FnMut(&Window) + Send`; to get windows on a
/// channel, pass `move |w: &Window| { let _ = tx.send(w.clone()); }`.
pub trait Observer: Send {
    /// Called at the end of every window, and once for the last partial one.
    fn on_window(&mut self, window: &Window);
}

impl<F: FnMut(&Window) + Send> Observer for F {
    fn on_window(&mut self, window: &Window) {
        self(window);
    }
}

/// An observer that ignores every window.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoObserver;

impl Observer for NoObserver {
    fn on_window(&mut self, _: &Window) {}
}

/// Acknowledged order ids remembered for lookups (a ring of the latest).
const MAX_ORDERS_REMEMBERED: usize = 10_000;

/// An acknowledged order, and the customer who placed it.
#[derive(Debug, Clone)]
struct PlacedOrder {
    id: String,
    /// The customer's index in the wallet; `None` without customers.
    owner: Option<usize>,
}

/// State shared by every request of a run.
#[derive(Debug)]
struct Shared {
    http: Http,
    /// The customers' tokens; `None`: no request carries one.
    wallet: Option<Wallet>,
    recorder: Mutex<Recorder>,
    /// Product ids from the last successful listing.
    catalog: RwLock<Vec<i64>>,
    fallback_products: u32,
    /// Acknowledged orders, for `GET /api/orders/{id}` (read back with the
    /// token of the customer who placed them).
    orders: Mutex<Vec<PlacedOrder>>,
    orders_pushed: AtomicUsize,
    start: Instant,
    started_at_unix_ms: u64,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs the load described by `config` until its duration or request count
/// is reached, or `cancel` fires; then waits for the requests in flight
/// (each bounded by the timeout) and returns the report.
///
/// `observer` gets the stats of every window of `config.window`.
pub async fn run(
    config: Config,
    cancel: CancellationToken,
    mut observer: impl Observer,
) -> Result<Report, LoadgenError> {
    config.validate()?;
    let seed = config.seed.unwrap_or_else(rand::random);
    let http = Http::new(&config)?;
    let wallet = config
        .customers
        .as_ref()
        .map(Wallet::mint_all)
        .transpose()?;
    let started_at_unix_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(0));
    let recorder = Recorder::new(
        started_at_unix_ms,
        config.max_failed_kept,
        config.keep_windows,
    )?;
    let start = Instant::now();
    let shared = Arc::new(Shared {
        http,
        wallet,
        recorder: Mutex::new(recorder),
        catalog: RwLock::new(Vec::new()),
        fallback_products: config.fallback_products,
        orders: Mutex::new(Vec::new()),
        orders_pushed: AtomicUsize::new(0),
        start,
        started_at_unix_ms,
    });
    let planner = Planner::new(
        seed,
        config.mix,
        config.retry_ratio,
        config.max_items,
        config.max_quantity,
    );
    let limits = Limits {
        deadline: config.duration.map(|d| start + d),
        requests: config.requests,
    };

    let driver = async {
        match config.mode {
            Mode::Open { rate } => {
                open_loop(&shared, planner, rate, config.concurrency, limits, &cancel).await
            }
            Mode::Closed => {
                closed_loop(&shared, planner, config.concurrency, limits, &cancel).await
            }
        }
    };
    tokio::pin!(driver);
    let mut ticker = tokio::time::interval_at(start + config.window, config.window);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let (stopped_by, planned) = loop {
        tokio::select! {
            result = &mut driver => break result,
            _ = ticker.tick() => {
                let window = lock(&shared.recorder).close_window(start.elapsed());
                observer.on_window(&window);
            }
        }
    };
    let elapsed = start.elapsed();
    let recorded = {
        let mut recorder = lock(&shared.recorder);
        let last = recorder.close_window(elapsed);
        observer.on_window(&last);
        recorder.finish(elapsed)
    };
    let seconds = elapsed.as_secs_f64();
    let achieved_rate = if seconds > 0.0 {
        round(recorded.totals.count as f64 / seconds, 3)
    } else {
        0.0
    };
    Ok(Report {
        schema: REPORT_SCHEMA,
        target: config.target.to_string(),
        mode: config.mode,
        concurrency: config.concurrency,
        seed,
        mix: config.mix,
        timeout_ms: u64::try_from(config.timeout.as_millis()).unwrap_or(u64::MAX),
        started_at_unix_ms,
        elapsed_s: round(seconds, 6),
        stopped_by,
        planned,
        achieved_rate,
        totals: recorded.totals,
        routes: recorded.routes,
        checkouts: recorded.checkouts,
        failed_requests_total: recorded.failed_total,
        failed_requests: recorded.failed,
        acknowledged_orders: recorded.acknowledged,
        windows: recorded.windows,
    })
}

#[derive(Debug, Clone, Copy)]
struct Limits {
    deadline: Option<Instant>,
    requests: Option<u64>,
}

/// Sends on the timetable; drops what cannot be sent for lack of a slot.
async fn open_loop(
    shared: &Arc<Shared>,
    mut planner: Planner,
    rate: f64,
    concurrency: usize,
    limits: Limits,
    cancel: &CancellationToken,
) -> (StoppedBy, u64) {
    let timetable = Timetable::new(shared.start, rate);
    let slots = Arc::new(Semaphore::new(concurrency));
    let mut tasks = JoinSet::new();
    let mut index = 0u64;
    let stopped_by = loop {
        if limits.requests.is_some_and(|n| index >= n) {
            break StoppedBy::Requests;
        }
        let intended = timetable.at(index);
        if let Some(deadline) = limits.deadline.filter(|d| intended >= *d) {
            // Nothing more is due: the run still lasts its full duration.
            tokio::select! {
                biased;
                () = cancel.cancelled() => break StoppedBy::Cancelled,
                () = tokio::time::sleep_until(deadline) => break StoppedBy::Duration,
            }
        }
        tokio::select! {
            biased;
            () = cancel.cancelled() => break StoppedBy::Cancelled,
            () = tokio::time::sleep_until(intended) => {}
        }
        index += 1;
        let step = planner.next_step();
        match Arc::clone(&slots).try_acquire_owned() {
            Ok(slot) => {
                let late = intended.elapsed() > LATE_AFTER;
                let shared = Arc::clone(shared);
                tasks.spawn(async move {
                    execute(&shared, step, intended, late).await;
                    drop(slot);
                });
            }
            Err(_) => lock(&shared.recorder).record_dropped(step.op.route()),
        }
        while tasks.try_join_next().is_some() {}
    };
    while tasks.join_next().await.is_some() {}
    (stopped_by, index)
}

/// `concurrency` workers, each sending its next request when the last one
/// finished.
async fn closed_loop(
    shared: &Arc<Shared>,
    planner: Planner,
    concurrency: usize,
    limits: Limits,
    cancel: &CancellationToken,
) -> (StoppedBy, u64) {
    // The planner and the number of requests planned so far.
    let plan = Arc::new(Mutex::new((planner, 0u64)));
    let mut tasks = JoinSet::new();
    for _ in 0..concurrency {
        let (shared, plan, cancel) = (Arc::clone(shared), Arc::clone(&plan), cancel.clone());
        tasks.spawn(async move {
            loop {
                if cancel.is_cancelled() || limits.deadline.is_some_and(|d| Instant::now() >= d) {
                    break;
                }
                let step = {
                    let mut plan = lock(&plan);
                    if limits.requests.is_some_and(|n| plan.1 >= n) {
                        break;
                    }
                    plan.1 += 1;
                    plan.0.next_step()
                };
                execute(&shared, step, Instant::now(), false).await;
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    let planned = lock(&plan).1;
    let stopped_by = if cancel.is_cancelled() {
        StoppedBy::Cancelled
    } else if limits.requests.is_some_and(|n| planned >= n) {
        StoppedBy::Requests
    } else {
        StoppedBy::Duration
    };
    (stopped_by, planned)
}

#[derive(Deserialize)]
struct ProductList {
    products: Vec<ProductRef>,
}

#[derive(Deserialize)]
struct ProductRef {
    id: i64,
}

#[derive(Deserialize)]
struct OrderAnswer {
    id: serde_json::Value,
    #[serde(default)]
    status: String,
}

/// `(order id, order status)` from a checkout answer.
/// The trace id sent, or empty when the load sent no `traceparent`.
fn trace_id(trace: Option<&crate::client::TraceContext>) -> String {
    trace.map_or_else(String::new, crate::client::TraceContext::trace_id_hex)
}

fn parse_order(body: &[u8]) -> Option<(String, String)> {
    let answer: OrderAnswer = serde_json::from_slice(body).ok()?;
    let id = match answer.id {
        serde_json::Value::String(s) if !s.is_empty() => s,
        serde_json::Value::Number(n) => n.to_string(),
        _ => return None,
    };
    Some((id, answer.status))
}

#[derive(Deserialize)]
struct Problem {
    title: Option<String>,
    detail: Option<String>,
}

/// A short description of an error answer: the problem's title and detail,
/// or the start of the body.
fn describe(body: &[u8]) -> Option<String> {
    if let Ok(problem) = serde_json::from_slice::<Problem>(body) {
        let text = match (problem.title, problem.detail) {
            (Some(t), Some(d)) => format!("{t}: {d}"),
            (Some(s), None) | (None, Some(s)) => s,
            (None, None) => return None,
        };
        return Some(text);
    }
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    (!text.is_empty()).then(|| text.chars().take(200).collect())
}

fn is_success(exchange: &Exchange) -> bool {
    matches!(
        exchange.answer,
        Answer::Response {
            status: 200..=299,
            ..
        }
    )
}

fn body_of(exchange: &Exchange) -> &[u8] {
    match &exchange.answer {
        Answer::Response { body, .. } => body,
        Answer::Failed { .. } => &[],
    }
}

fn status(exchange: &Exchange) -> Option<u16> {
    match exchange.answer {
        Answer::Response { status, .. } => Some(status),
        Answer::Failed { .. } => None,
    }
}

impl Shared {
    fn product_id(&self, pick: u32) -> i64 {
        let catalog = self.catalog.read().unwrap_or_else(PoisonError::into_inner);
        match catalog.get(pick as usize % catalog.len().max(1)) {
            Some(id) => *id,
            None => i64::from(1 + pick % self.fallback_products),
        }
    }

    fn order(&self, pick: u32) -> Option<PlacedOrder> {
        let orders = lock(&self.orders);
        orders.get(pick as usize % orders.len().max(1)).cloned()
    }

    /// The customer a step's pick stands for (none without customers).
    fn customer(&self, pick: u32) -> Option<usize> {
        self.wallet.as_ref().map(|wallet| wallet.customer(pick))
    }

    /// The token of `customer`.
    fn token(&self, customer: Option<usize>) -> Option<Arc<str>> {
        self.wallet.as_ref()?.token(customer?)
    }

    /// The token a product read carries: the customer's when reads are
    /// authenticated, else none.
    fn read_token(&self, pick: u32) -> Option<Arc<str>> {
        let wallet = self.wallet.as_ref()?;
        if wallet.authenticated_reads() {
            wallet.token(wallet.customer(pick))
        } else {
            None
        }
    }

    fn remember_order(&self, order: PlacedOrder) {
        let n = self.orders_pushed.fetch_add(1, Ordering::Relaxed);
        let mut orders = lock(&self.orders);
        if orders.len() < MAX_ORDERS_REMEMBERED {
            orders.push(order);
        } else {
            orders[n % MAX_ORDERS_REMEMBERED] = order;
        }
    }

    /// Counts `exchange`; `invalid_body` marks a 2xx we could not understand.
    fn record(
        &self,
        request: &HttpRequest,
        exchange: &Exchange,
        intended: Instant,
        late: bool,
        invalid_body: bool,
    ) {
        let outcome = match &exchange.answer {
            Answer::Response {
                status, degraded, ..
            } => Outcome::Answered {
                status: *status,
                degraded: *degraded,
                invalid_body,
            },
            Answer::Failed { failure, .. } => Outcome::Failed(*failure),
        };
        let sample = Sample {
            route: request.route,
            latency: exchange.latency,
            outcome,
            late,
        };
        let failure = outcome.error_kind().map(|kind| {
            let offset = intended.saturating_duration_since(self.start);
            let at_offset_ms = u64::try_from(offset.as_millis()).unwrap_or(u64::MAX / 2);
            FailedRequest {
                trace_id: trace_id(exchange.trace.as_ref()),
                route: request.route,
                status: status(exchange),
                error: kind.to_owned(),
                detail: match &exchange.answer {
                    Answer::Response { body, .. } => describe(body),
                    Answer::Failed { message, .. } => Some(message.clone()),
                },
                idempotency_key: request.idempotency_key,
                at_unix_ms: self.started_at_unix_ms + at_offset_ms,
                at_offset_ms,
            }
        });
        lock(&self.recorder).record(&sample, failure);
    }
}

fn get(route: Route, path: String, bearer: Option<Arc<str>>) -> HttpRequest {
    HttpRequest {
        route,
        method: Method::GET,
        path,
        body: None,
        idempotency_key: None,
        bearer,
    }
}

/// Sends `step` (and its retry), and records everything about it.
async fn execute(shared: &Shared, step: Step, intended: Instant, late: bool) {
    let Step { op, customer } = step;
    match op {
        Op::ListProducts => list_products(shared, customer, intended, late).await,
        Op::GetProduct { pick } => {
            let request = get(
                Route::GetProduct,
                format!("/api/products/{}", shared.product_id(pick)),
                shared.read_token(customer),
            );
            let exchange = shared.http.send(&request, intended).await;
            shared.record(&request, &exchange, intended, late, false);
        }
        Op::GetOrder { pick } => match shared.order(pick) {
            // Read back as the customer who placed it: anyone else gets 404.
            Some(order) => {
                let request = get(
                    Route::GetOrder,
                    format!("/api/orders/{}", order.id),
                    shared.token(order.owner),
                );
                let exchange = shared.http.send(&request, intended).await;
                shared.record(&request, &exchange, intended, late, false);
            }
            // No order yet to look up: browse instead.
            None => list_products(shared, customer, intended, late).await,
        },
        Op::Checkout { items, retry } => {
            let customer = shared.customer(customer);
            checkout(shared, &items, retry, customer, intended, late).await;
        }
    }
}

async fn list_products(shared: &Shared, customer: u32, intended: Instant, late: bool) {
    let request = get(
        Route::ListProducts,
        "/api/products".to_owned(),
        shared.read_token(customer),
    );
    let exchange = shared.http.send(&request, intended).await;
    let mut invalid = false;
    if is_success(&exchange) {
        match serde_json::from_slice::<ProductList>(body_of(&exchange)) {
            Ok(list) if !list.products.is_empty() => {
                let ids = list.products.iter().map(|p| p.id).collect();
                *shared
                    .catalog
                    .write()
                    .unwrap_or_else(PoisonError::into_inner) = ids;
            }
            Ok(_) => {}
            Err(err) => {
                tracing::debug!(%err, "product listing did not parse");
                invalid = true;
            }
        }
    }
    shared.record(&request, &exchange, intended, late, invalid);
}

async fn checkout(
    shared: &Shared,
    items: &[(u32, u32)],
    retry: bool,
    customer: Option<usize>,
    intended: Instant,
    late: bool,
) {
    // Picks may resolve to the same product: merge them.
    let mut lines: Vec<(i64, u32)> = Vec::with_capacity(items.len());
    for &(pick, quantity) in items {
        let id = shared.product_id(pick);
        match lines.iter_mut().find(|(p, _)| *p == id) {
            Some(line) => line.1 += quantity,
            None => lines.push((id, quantity)),
        }
    }
    let body = serde_json::json!({
        "items": lines
            .iter()
            .map(|(id, quantity)| serde_json::json!({"product_id": id, "quantity": quantity}))
            .collect::<Vec<_>>()
    });
    let key = Uuid::new_v4();
    let request = HttpRequest {
        route: Route::CreateOrder,
        method: Method::POST,
        path: "/api/orders".to_owned(),
        body: Some(body),
        idempotency_key: Some(key),
        bearer: shared.token(customer),
    };

    let first = shared.http.send(&request, intended).await;
    let first_order = is_success(&first)
        .then(|| parse_order(body_of(&first)))
        .flatten();
    let invalid = is_success(&first) && first_order.is_none();
    shared.record(&request, &first, intended, late, invalid);
    if let Some((id, order_status)) = &first_order {
        acknowledge(shared, key, id, order_status, status(&first), customer);
    }
    if !retry {
        return;
    }

    // A client that did not trust the first answer sends the same request.
    lock(&shared.recorder).retried();
    let sent = Instant::now();
    let second = shared.http.send(&request, sent).await;
    let second_order = is_success(&second)
        .then(|| parse_order(body_of(&second)))
        .flatten();
    let invalid = is_success(&second) && second_order.is_none();
    shared.record(&request, &second, sent, false, invalid);

    match (&first_order, &second_order, status(&second)) {
        // Acknowledged, then answered again: it must be the same order.
        (Some((first_id, _)), Some((second_id, _)), Some(retry_status)) => {
            let violation = (first_id != second_id).then(|| IdempotencyViolation {
                idempotency_key: key,
                first_order_id: first_id.clone(),
                retry_order_id: Some(second_id.clone()),
                retry_status,
                retry_trace_id: trace_id(second.trace.as_ref()),
            });
            lock(&shared.recorder).checked(violation);
        }
        // Acknowledged, then rejected as a new checkout would be.
        (Some((first_id, _)), None, Some(retry_status @ (402 | 409))) => {
            lock(&shared.recorder).checked(Some(IdempotencyViolation {
                idempotency_key: key,
                first_order_id: first_id.clone(),
                retry_order_id: None,
                retry_status,
                retry_trace_id: trace_id(second.trace.as_ref()),
            }));
        }
        // The first answer was lost or refused; the retry got the order.
        (None, Some((id, order_status)), _) => {
            acknowledge(shared, key, id, order_status, status(&second), customer);
        }
        // Nothing to compare (the retry failed, was rate limited, ...).
        _ => {}
    }
}

fn acknowledge(
    shared: &Shared,
    key: Uuid,
    id: &str,
    order_status: &str,
    http_status: Option<u16>,
    owner: Option<usize>,
) {
    shared.remember_order(PlacedOrder {
        id: id.to_owned(),
        owner,
    });
    let subject = owner
        .and_then(|index| shared.wallet.as_ref()?.subject(index))
        .map(|subject| subject.to_string());
    lock(&shared.recorder).acknowledge(AcknowledgedOrder {
        order_id: id.to_owned(),
        idempotency_key: key,
        status: order_status.to_owned(),
        http_status: http_status.unwrap_or_default(),
        subject,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_orders_with_string_or_number_ids() {
        assert_eq!(
            parse_order(br#"{"id":"a-b","status":"paid","total_cents":1}"#),
            Some(("a-b".to_owned(), "paid".to_owned()))
        );
        assert_eq!(
            parse_order(br#"{"id":7}"#),
            Some(("7".to_owned(), String::new()))
        );
        assert_eq!(parse_order(br#"{"id":""}"#), None);
        assert_eq!(parse_order(b"nope"), None);
    }

    #[test]
    fn describes_problems_and_bodies() {
        assert_eq!(
            describe(
                br#"{"type":"about:blank","title":"Unavailable","status":503,"detail":"db down"}"#
            )
            .as_deref(),
            Some("Unavailable: db down")
        );
        assert_eq!(describe(b" oops \n").as_deref(), Some("oops"));
        assert_eq!(describe(b""), None);
    }
}
