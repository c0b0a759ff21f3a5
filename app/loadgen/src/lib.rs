//! The faultline load generator: realistic traffic against the shop's public
//! API, with HDR-histogram latency, per-route error ratios, and the evidence a
//! chaos experiment needs (trace ids of failed requests, acknowledged orders,
//! idempotency checks).
//!
//! Two ways in:
//! - the command line, `faultline-shop loadgen [FLAGS]`: [`LoadgenArgs`] and
//!   [`run_cli`];
//! - the library, for the chaos engine: [`run`] with a [`Config`], a
//!   [`CancellationToken`](tokio_util::sync::CancellationToken) to stop early,
//!   and an [`Observer`] that receives a [`Window`] of stats every
//!   [`Config::window`]. It returns a [`Report`].
//!
//! # Traffic
//!
//! The [`Mix`] weighs `GET /api/products` (60), `GET /api/products/{id}` (25),
//! `POST /api/orders` (10) and `GET /api/orders/{id}` (5). Product ids come
//! from the last successful listing (`1..=fallback_products` before that);
//! order lookups pick among acknowledged orders (a listing is sent while there
//! are none). Each checkout has 1 to `max_items` items and a fresh UUID v4
//! `Idempotency-Key`; with probability `retry_ratio` it is sent a second time
//! with the same key and body, and the two answers are compared. The seed fixes
//! the sequence of routes, picks, quantities and retries; idempotency keys and
//! trace ids are always fresh, so reruns never collide with earlier orders.
//!
//! Every request carries a `traceparent` header (`00-<32 hex>-<16 hex>-01`)
//! made up by the generator, so a failed request can be found in the traces.
//!
//! # Customers and their tokens
//!
//! With [`Config::customers`] (a [`Customers`]: a
//! [`Minter`](faultline_auth::Minter), a count and a subject prefix), the load
//! acts as that many distinct customers, `<prefix>-1` to `<prefix>-<count>`
//! (one customer is the prefix itself). Each gets a bearer token (role
//! `customer`, valid for [`Customers::ttl`], an hour by default) minted before
//! the first request, and minted again once half of its life has passed.
//! Each checkout is sent as a customer the seed picks, with
//! `Authorization: Bearer <token>`; an order is read back with the token of
//! the customer who placed it (another customer would get 404), and the
//! report names that customer ([`AcknowledgedOrder::subject`]). Product reads
//! are anonymous unless [`Customers::authenticated_reads`] (which
//! [`Customers::one`], one named client, sets): then they carry the picked
//! customer's token too, and the gateway's rate limit keys them by subject.
//! Without customers no request carries an `Authorization` header.
//!
//! # Modes
//!
//! - **Open loop** ([`Mode::Open`]): requests leave on a fixed timetable at
//!   `rate` per second. Latency is measured from the *intended* send time, so a
//!   stalled server shows up as latency rather than as a slower client
//!   (coordinated omission). At most `concurrency` requests are in flight; a
//!   request due while all slots are busy is not sent and counts as `dropped`.
//!   One sent more than 10 ms late counts as `late`.
//! - **Closed loop** ([`Mode::Closed`]): `concurrency` workers send back to
//!   back, for peak throughput.
//!
//! # What counts as an error
//!
//! Errors are 5xx answers, timeouts, connection errors, other transport
//! errors, and 2xx answers whose body could not be parsed where it is needed
//! (listing, checkout). 429 is counted as `rate_limited`; 402, 404, 409 and
//! other 4xx are business outcomes, not errors. Latency percentiles cover every
//! finished request, failures included (a timeout counts as the time it took).
//!
//! An *idempotency violation* is a retried checkout whose first answer was
//! acknowledged (2xx with an id) and whose retry came back 2xx with another id,
//! or 402/409 (the shop ran the checkout again). Retries that fail or are rate
//! limited are not compared.
//!
//! # The JSON report
//!
//! `--json` prints [`Report`] (schema [`REPORT_SCHEMA`] = 1). Times are
//! milliseconds since the Unix epoch (`*_unix_ms`), seconds (`*_s`) or
//! milliseconds (`*_ms`) since the start of the run.
//!
//! ```text
//! {
//!   "schema": 1,
//!   "target": "http://127.0.0.1:8080/",
//!   "mode": {"kind": "open", "rate": 50.0},       // or {"kind": "closed"}
//!   "concurrency": 32, "seed": 42,
//!   "mix": {"list": 60, "product": 25, "checkout": 10, "order": 5},
//!   "timeout_ms": 2000, "started_at_unix_ms": 1767225600000,
//!   "elapsed_s": 10.01, "stopped_by": "duration",  // | "requests" | "cancelled"
//!   "planned": 500, "achieved_rate": 49.9,
//!   "totals": RouteSummary,
//!   "routes": {"GET /api/products": RouteSummary, "GET /api/products/{id}": ..,
//!              "POST /api/orders": .., "GET /api/orders/{id}": ..},
//!   "checkouts": {"acknowledged": 48, "retried": 3, "idempotency_checks": 3,
//!                 "idempotency_violations": 0,
//!                 "violations": [{"idempotency_key", "first_order_id",
//!                                 "retry_order_id", "retry_status", "retry_trace_id"}]},
//!   "failed_requests_total": 2,
//!   "failed_requests": [{"trace_id": "4bf9…", "route": "POST /api/orders",
//!                        "status": 503, "error": "5xx", "detail": "Unavailable: …",
//!                        "idempotency_key": "…", "at_unix_ms": …, "at_offset_ms": 1234}],
//!   "acknowledged_orders": [{"order_id": "…", "idempotency_key": "…",
//!                            "status": "paid", "http_status": 201,
//!                            "subject": "customer-7"}],  // subject: with customers
//!   "windows": [Window]                              // only with --timeline
//! }
//!
//! RouteSummary = {
//!   "count": 300, "rate": 30.0,
//!   "classes": {"2xx": 290, "3xx": 0, "4xx": 8, "5xx": 2,
//!               "timeout": 0, "connect_error": 0, "other_error": 0},
//!   "status_codes": {"200": 290, "404": 8, "503": 2},
//!   "errors": 2, "error_ratio": 0.0067, "rate_limited": 0, "degraded": 0,
//!   "invalid_body": 0, "dropped": 0, "late": 0,
//!   "latency_ms": {"p50": 3.1, "p95": 9.8, "p99": 20.4, "max": 35.0, "mean": 4.2}
//! }
//!
//! Window = {
//!   "index": 0, "start_unix_ms": …, "start_offset_s": 0.0, "end_offset_s": 1.0,
//!   "totals": RouteSummary, "routes": {…}, "cumulative_requests": 50,
//!   "cumulative_errors": 0
//! }
//! ```
//!
//! A request belongs to the window in which it finished.

mod args;
mod client;
mod config;
mod engine;
mod mix;
mod progress;
mod report;
mod schedule;
mod stats;
mod tokens;

pub use args::{LoadgenArgs, exit_code, run_cli};
pub use client::{DEGRADED_HEADER, TraceContext};
pub use config::{Config, ConfigError, Customers, Mode};
pub use engine::{LoadgenError, NoObserver, Observer, run};
pub use mix::{Mix, MixError, Route};
pub use progress::Progress;
pub use report::{
    AcknowledgedOrder, Checkouts, FailedRequest, IdempotencyViolation, Latency, REPORT_SCHEMA,
    Report, RouteSummary, StatusClasses, StoppedBy, Window,
};
