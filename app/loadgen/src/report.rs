//! The report of a run and of each stats window: plain data, serialisable,
//! with a human summary table.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::config::Mode;
use crate::mix::{Mix, Route};

/// Version of the JSON shape; bumped on incompatible changes.
pub const REPORT_SCHEMA: u32 = 1;

/// The result of a run. Field names are stable; see the crate docs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// [`REPORT_SCHEMA`].
    pub schema: u32,
    /// The base URL under load.
    pub target: String,
    /// Open loop (with its rate) or closed loop.
    pub mode: Mode,
    /// In-flight cap (open loop) or workers (closed loop).
    pub concurrency: usize,
    /// The seed of the mix: rerun with it to replay the same plan.
    pub seed: u64,
    /// The weights used.
    pub mix: Mix,
    /// Per-request timeout.
    pub timeout_ms: u64,
    /// Wall-clock start, milliseconds since the Unix epoch.
    pub started_at_unix_ms: u64,
    /// From the start until the last request finished.
    pub elapsed_s: f64,
    /// What ended the run.
    pub stopped_by: StoppedBy,
    /// Planned requests: sent plus dropped (checkout retries not included).
    pub planned: u64,
    /// Requests sent (retries included) per second of `elapsed_s`.
    pub achieved_rate: f64,
    /// All routes together.
    pub totals: RouteSummary,
    /// Per route template, e.g. `"POST /api/orders"`.
    pub routes: BTreeMap<Route, RouteSummary>,
    /// Checkout outcomes and idempotency checks.
    pub checkouts: Checkouts,
    /// How many requests failed (equals `totals.errors`).
    pub failed_requests_total: u64,
    /// The first failed requests (bounded), to look up in traces.
    pub failed_requests: Vec<FailedRequest>,
    /// Every order the shop acknowledged (2xx with an id), once per key.
    pub acknowledged_orders: Vec<AcknowledgedOrder>,
    /// Every stats window, when the run was asked to keep them.
    pub windows: Vec<Window>,
}

/// What ended a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StoppedBy {
    /// The configured duration elapsed.
    Duration,
    /// The configured number of requests was planned.
    Requests,
    /// The cancellation token fired (Ctrl-C, or the caller).
    Cancelled,
}

impl fmt::Display for StoppedBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            StoppedBy::Duration => "duration",
            StoppedBy::Requests => "requests",
            StoppedBy::Cancelled => "cancelled",
        })
    }
}

/// Counts and latency of one route (or all of them) over a period.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RouteSummary {
    /// Requests sent and finished (answered or failed); dropped excluded.
    pub count: u64,
    /// `count` per second of the period.
    pub rate: f64,
    /// Answers by status class, and failures by kind.
    pub classes: StatusClasses,
    /// Answers by exact status code.
    pub status_codes: BTreeMap<u16, u64>,
    /// 5xx + timeout + connect_error + other_error + invalid_body.
    pub errors: u64,
    /// `errors / count` (0 when `count` is 0).
    pub error_ratio: f64,
    /// 429 answers (also in `classes.4xx`, not errors).
    pub rate_limited: u64,
    /// Answers carrying an `X-Degraded` header.
    pub degraded: u64,
    /// 2xx answers whose body could not be understood (errors).
    pub invalid_body: u64,
    /// Open loop: planned requests not sent because `concurrency` requests
    /// were already in flight.
    pub dropped: u64,
    /// Open loop: requests sent more than 10 ms after their intended time.
    pub late: u64,
    /// Latency percentiles, measured from the intended send time.
    pub latency_ms: Latency,
}

/// Answers by status class, failures by kind.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusClasses {
    /// 2xx answers.
    #[serde(rename = "2xx")]
    pub s2xx: u64,
    /// 3xx answers (redirects are not followed).
    #[serde(rename = "3xx")]
    pub s3xx: u64,
    /// 4xx answers, 429 included.
    #[serde(rename = "4xx")]
    pub s4xx: u64,
    /// 5xx answers.
    #[serde(rename = "5xx")]
    pub s5xx: u64,
    /// The per-request timeout fired.
    pub timeout: u64,
    /// No connection could be made.
    pub connect_error: u64,
    /// Any other transport failure (reset mid-request, bad HTTP).
    pub other_error: u64,
}

/// Latency percentiles in milliseconds (microsecond resolution, 3
/// significant figures), over every finished request, failures included.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 95th percentile.
    pub p95: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
    /// Mean.
    pub mean: f64,
}

/// Checkout outcomes.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Checkouts {
    /// Distinct idempotency keys acknowledged with an order id.
    pub acknowledged: u64,
    /// Checkouts sent a second time with the same key and body.
    pub retried: u64,
    /// Retries whose answer could be compared with an acknowledged first answer.
    pub idempotency_checks: u64,
    /// Retries of an acknowledged checkout answered with a different order
    /// id, or rejected with 402/409 (the shop ran the checkout twice).
    pub idempotency_violations: u64,
    /// The first violations (bounded).
    pub violations: Vec<IdempotencyViolation>,
}

/// A retried checkout that did not return the first answer's order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotencyViolation {
    /// The key both requests carried.
    pub idempotency_key: Uuid,
    /// The order id of the first answer.
    pub first_order_id: String,
    /// The order id of the retry's answer, if it had one.
    pub retry_order_id: Option<String>,
    /// The retry's HTTP status.
    pub retry_status: u16,
    /// The retry's trace id.
    pub retry_trace_id: String,
}

/// A failed request (an error in the sense of [`RouteSummary::errors`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedRequest {
    /// The trace id sent in `traceparent` (32 hex digits; empty when the
    /// load sends none, `Config::traceparent` off).
    pub trace_id: String,
    /// The route template.
    pub route: Route,
    /// The HTTP status, when there was an answer.
    pub status: Option<u16>,
    /// `5xx`, `timeout`, `connect_error`, `other_error` or `invalid_body`.
    pub error: String,
    /// The problem's title and detail, or the transport error.
    pub detail: Option<String>,
    /// The checkout's idempotency key.
    pub idempotency_key: Option<Uuid>,
    /// When the request was meant to be sent, ms since the Unix epoch.
    pub at_unix_ms: u64,
    /// The same, in ms since the start of the run.
    pub at_offset_ms: u64,
}

/// An order the shop acknowledged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcknowledgedOrder {
    /// The `id` of the answer.
    pub order_id: String,
    /// The key the checkout carried.
    pub idempotency_key: Uuid,
    /// The `status` of the answer (`paid`, `confirmed`, `payment_pending`, ...).
    pub status: String,
    /// The HTTP status (201 or 202).
    pub http_status: u16,
    /// The subject of the customer who placed it (absent without customers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
}

/// Stats of one window of time, as the observer sees them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Window {
    /// 0 for the first window.
    pub index: u64,
    /// Wall-clock start of the window, ms since the Unix epoch.
    pub start_unix_ms: u64,
    /// Start, seconds since the start of the run.
    pub start_offset_s: f64,
    /// End, seconds since the start of the run.
    pub end_offset_s: f64,
    /// All routes together, this window only. Requests are attributed to
    /// the window in which they finished (dropped ones to when they were due).
    pub totals: RouteSummary,
    /// Per route, this window only.
    pub routes: BTreeMap<Route, RouteSummary>,
    /// Requests finished since the start of the run.
    pub cumulative_requests: u64,
    /// Errors since the start of the run.
    pub cumulative_errors: u64,
}

impl Report {
    /// The human summary table printed at the end of a CLI run.
    pub fn summary_text(&self) -> String {
        let mut out = String::new();
        let _ = self.write_summary(&mut out);
        out
    }

    fn write_summary(&self, out: &mut String) -> fmt::Result {
        let mode = match self.mode {
            Mode::Open { rate } => format!("open loop at {rate} req/s"),
            Mode::Closed => "closed loop".to_owned(),
        };
        writeln!(
            out,
            "faultline loadgen: {mode}, concurrency {}, target {}, seed {}",
            self.concurrency, self.target, self.seed
        )?;
        writeln!(
            out,
            "{:.2} s, {} requests ({:.1} req/s), {} dropped, {} late, stopped by {}",
            self.elapsed_s,
            self.totals.count,
            self.achieved_rate,
            self.totals.dropped,
            self.totals.late,
            self.stopped_by
        )?;
        writeln!(out)?;
        writeln!(
            out,
            "{:<24} {:>7} {:>7} {:>6} {:>6} {:>6} {:>5} {:>5} {:>6} {:>7} {:>7} {:>8} {:>8} {:>8} {:>8}",
            "route",
            "count",
            "2xx",
            "4xx",
            "5xx",
            "t/o",
            "conn",
            "429",
            "degr",
            "errors",
            "err%",
            "p50 ms",
            "p95 ms",
            "p99 ms",
            "max ms"
        )?;
        let rows = self
            .routes
            .iter()
            .map(|(route, s)| (route.template(), s))
            .chain([("total", &self.totals)]);
        for (name, s) in rows {
            writeln!(
                out,
                "{:<24} {:>7} {:>7} {:>6} {:>6} {:>6} {:>5} {:>5} {:>6} {:>7} {:>7.2} {:>8.1} {:>8.1} {:>8.1} {:>8.1}",
                name,
                s.count,
                s.classes.s2xx,
                s.classes.s4xx,
                s.classes.s5xx,
                s.classes.timeout,
                s.classes.connect_error,
                s.rate_limited,
                s.degraded,
                s.errors,
                s.error_ratio * 100.0,
                s.latency_ms.p50,
                s.latency_ms.p95,
                s.latency_ms.p99,
                s.latency_ms.max
            )?;
        }
        writeln!(out)?;
        let c = &self.checkouts;
        writeln!(
            out,
            "checkouts: {} acknowledged, {} retried with the same key, {} checked, {} idempotency violations",
            c.acknowledged, c.retried, c.idempotency_checks, c.idempotency_violations
        )?;
        for v in &c.violations {
            writeln!(
                out,
                "  key {}: first order {}, retry answered {} with {} (trace {})",
                v.idempotency_key,
                v.first_order_id,
                v.retry_status,
                v.retry_order_id.as_deref().unwrap_or("no order"),
                v.retry_trace_id
            )?;
        }
        if self.failed_requests_total > 0 {
            writeln!(
                out,
                "failed requests: {} (first {} below)",
                self.failed_requests_total,
                self.failed_requests.len()
            )?;
            for f in &self.failed_requests {
                let status = f.status.map(|s| s.to_string()).unwrap_or_default();
                writeln!(
                    out,
                    "  +{:>9.3}s  {:<24} {:<13} {:>3}  trace {}  {}",
                    ms_to_s(f.at_offset_ms),
                    f.route.template(),
                    f.error,
                    status,
                    f.trace_id,
                    f.detail.as_deref().unwrap_or("")
                )?;
            }
        }
        Ok(())
    }
}

fn ms_to_s(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.summary_text())
    }
}
