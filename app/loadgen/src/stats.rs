//! Counting: per-route counters and HDR histograms, for the whole run and
//! for the current window.

use std::collections::BTreeMap;
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::client::Failure;
use crate::mix::Route;
use crate::report::{
    AcknowledgedOrder, Checkouts, FailedRequest, IdempotencyViolation, Latency, RouteSummary,
    StatusClasses, Window,
};

/// Highest trackable latency: one hour, in microseconds. Longer values are
/// recorded as one hour.
const MAX_MICROS: u64 = 3_600_000_000;

/// How the histograms are built: microseconds, 3 significant figures.
pub(crate) fn new_histogram() -> Result<Histogram<u64>, hdrhistogram::CreationError> {
    Histogram::new_with_bounds(1, MAX_MICROS, 3)
}

/// What one finished request amounted to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Answered {
        status: u16,
        degraded: bool,
        /// A 2xx whose body we needed but could not parse.
        invalid_body: bool,
    },
    Failed(Failure),
}

impl Outcome {
    /// The error kind, when this counts as an error.
    pub(crate) fn error_kind(self) -> Option<&'static str> {
        match self {
            Outcome::Answered { status, .. } if status >= 500 => Some("5xx"),
            Outcome::Answered {
                invalid_body: true, ..
            } => Some("invalid_body"),
            Outcome::Answered { .. } => None,
            Outcome::Failed(Failure::Timeout) => Some("timeout"),
            Outcome::Failed(Failure::Connect) => Some("connect_error"),
            Outcome::Failed(Failure::Other) => Some("other_error"),
        }
    }
}

/// One finished request.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sample {
    pub(crate) route: Route,
    pub(crate) latency: Duration,
    pub(crate) outcome: Outcome,
    /// Sent noticeably after its intended time (open loop).
    pub(crate) late: bool,
}

#[derive(Debug, Clone)]
struct RouteStats {
    histogram: Histogram<u64>,
    classes: StatusClasses,
    status_codes: BTreeMap<u16, u64>,
    count: u64,
    errors: u64,
    rate_limited: u64,
    degraded: u64,
    invalid_body: u64,
    dropped: u64,
    late: u64,
}

impl RouteStats {
    fn new(histogram: Histogram<u64>) -> Self {
        Self {
            histogram,
            classes: StatusClasses::default(),
            status_codes: BTreeMap::new(),
            count: 0,
            errors: 0,
            rate_limited: 0,
            degraded: 0,
            invalid_body: 0,
            dropped: 0,
            late: 0,
        }
    }

    fn record(&mut self, sample: &Sample) {
        self.count += 1;
        let micros = u64::try_from(sample.latency.as_micros()).unwrap_or(u64::MAX);
        self.histogram.saturating_record(micros.min(MAX_MICROS));
        self.late += u64::from(sample.late);
        if sample.outcome.error_kind().is_some() {
            self.errors += 1;
        }
        match sample.outcome {
            Outcome::Answered {
                status,
                degraded,
                invalid_body,
            } => {
                *self.status_codes.entry(status).or_default() += 1;
                match status {
                    200..=299 => self.classes.s2xx += 1,
                    300..=399 => self.classes.s3xx += 1,
                    400..=499 => self.classes.s4xx += 1,
                    500..=599 => self.classes.s5xx += 1,
                    _ => {}
                }
                self.rate_limited += u64::from(status == 429);
                self.degraded += u64::from(degraded);
                self.invalid_body += u64::from(invalid_body);
            }
            Outcome::Failed(Failure::Timeout) => self.classes.timeout += 1,
            Outcome::Failed(Failure::Connect) => self.classes.connect_error += 1,
            Outcome::Failed(Failure::Other) => self.classes.other_error += 1,
        }
    }

    fn merge(&mut self, other: &RouteStats) {
        // Same bounds everywhere, so adding cannot fail.
        let _ = self.histogram.add(&other.histogram);
        let (a, b) = (&mut self.classes, &other.classes);
        a.s2xx += b.s2xx;
        a.s3xx += b.s3xx;
        a.s4xx += b.s4xx;
        a.s5xx += b.s5xx;
        a.timeout += b.timeout;
        a.connect_error += b.connect_error;
        a.other_error += b.other_error;
        for (code, n) in &other.status_codes {
            *self.status_codes.entry(*code).or_default() += n;
        }
        self.count += other.count;
        self.errors += other.errors;
        self.rate_limited += other.rate_limited;
        self.degraded += other.degraded;
        self.invalid_body += other.invalid_body;
        self.dropped += other.dropped;
        self.late += other.late;
    }

    fn reset(&mut self) {
        self.histogram.reset();
        self.classes = StatusClasses::default();
        self.status_codes.clear();
        self.count = 0;
        self.errors = 0;
        self.rate_limited = 0;
        self.degraded = 0;
        self.invalid_body = 0;
        self.dropped = 0;
        self.late = 0;
    }

    fn summary(&self, seconds: f64) -> RouteSummary {
        let ms = |micros: u64| to_f64(micros) / 1000.0;
        let h = &self.histogram;
        let latency_ms = if h.is_empty() {
            Latency::default()
        } else {
            Latency {
                p50: ms(h.value_at_quantile(0.50)),
                p95: ms(h.value_at_quantile(0.95)),
                p99: ms(h.value_at_quantile(0.99)),
                max: ms(h.max()),
                mean: round(h.mean() / 1000.0, 3),
            }
        };
        RouteSummary {
            count: self.count,
            rate: if seconds > 0.0 {
                round(to_f64(self.count) / seconds, 3)
            } else {
                0.0
            },
            classes: self.classes.clone(),
            status_codes: self.status_codes.clone(),
            errors: self.errors,
            error_ratio: if self.count > 0 {
                round(to_f64(self.errors) / to_f64(self.count), 9)
            } else {
                0.0
            },
            rate_limited: self.rate_limited,
            degraded: self.degraded,
            invalid_body: self.invalid_body,
            dropped: self.dropped,
            late: self.late,
            latency_ms,
        }
    }
}

fn to_f64(n: u64) -> f64 {
    n as f64
}

/// Rounds to `decimals` places, so that reports print short numbers and
/// read back from JSON exactly.
pub(crate) fn round(x: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (x * scale).round() / scale
}

/// Stats of every route over one period.
#[derive(Debug, Clone)]
struct StatsSet {
    routes: [RouteStats; 4],
}

impl StatsSet {
    fn new(histogram: &Histogram<u64>) -> Self {
        Self {
            routes: Route::ALL.map(|_| RouteStats::new(histogram.clone())),
        }
    }

    fn route(&mut self, route: Route) -> &mut RouteStats {
        &mut self.routes[route.index()]
    }

    /// Per-route summaries, and the totals.
    fn summaries(&self, seconds: f64) -> (BTreeMap<Route, RouteSummary>, RouteSummary) {
        let mut total = RouteStats::new(Histogram::new_from(&self.routes[0].histogram));
        let mut routes = BTreeMap::new();
        for (route, stats) in Route::ALL.into_iter().zip(&self.routes) {
            total.merge(stats);
            routes.insert(route, stats.summary(seconds));
        }
        (routes, total.summary(seconds))
    }

    fn reset(&mut self) {
        self.routes.iter_mut().for_each(RouteStats::reset);
    }
}

/// Everything a run counts, shared by its requests behind a mutex.
#[derive(Debug)]
pub(crate) struct Recorder {
    total: StatsSet,
    window: StatsSet,
    window_index: u64,
    window_start: Duration,
    started_at_unix_ms: u64,
    failed_total: u64,
    failed: Vec<FailedRequest>,
    max_failed: usize,
    acknowledged: Vec<AcknowledgedOrder>,
    checkouts: Checkouts,
    windows: Vec<Window>,
    keep_windows: bool,
}

/// The most idempotency violations kept in detail.
const MAX_VIOLATIONS_KEPT: usize = 50;

/// What a finished recorder hands to the report.
#[derive(Debug)]
pub(crate) struct Recorded {
    pub(crate) routes: BTreeMap<Route, RouteSummary>,
    pub(crate) totals: RouteSummary,
    pub(crate) checkouts: Checkouts,
    pub(crate) failed_total: u64,
    pub(crate) failed: Vec<FailedRequest>,
    pub(crate) acknowledged: Vec<AcknowledgedOrder>,
    pub(crate) windows: Vec<Window>,
}

impl Recorder {
    pub(crate) fn new(
        started_at_unix_ms: u64,
        max_failed: usize,
        keep_windows: bool,
    ) -> Result<Self, hdrhistogram::CreationError> {
        let histogram = new_histogram()?;
        Ok(Self {
            total: StatsSet::new(&histogram),
            window: StatsSet::new(&histogram),
            window_index: 0,
            window_start: Duration::ZERO,
            started_at_unix_ms,
            failed_total: 0,
            failed: Vec::new(),
            max_failed,
            acknowledged: Vec::new(),
            checkouts: Checkouts::default(),
            windows: Vec::new(),
            keep_windows,
        })
    }

    /// Counts a finished request; `failure` describes it when it is an error.
    pub(crate) fn record(&mut self, sample: &Sample, failure: Option<FailedRequest>) {
        self.total.route(sample.route).record(sample);
        self.window.route(sample.route).record(sample);
        if sample.outcome.error_kind().is_some() {
            self.failed_total += 1;
            if let Some(failure) = failure
                && self.failed.len() < self.max_failed
            {
                self.failed.push(failure);
            }
        }
    }

    /// Counts a planned request that was not sent.
    pub(crate) fn record_dropped(&mut self, route: Route) {
        self.total.route(route).dropped += 1;
        self.window.route(route).dropped += 1;
    }

    pub(crate) fn acknowledge(&mut self, order: AcknowledgedOrder) {
        self.checkouts.acknowledged += 1;
        self.acknowledged.push(order);
    }

    pub(crate) fn retried(&mut self) {
        self.checkouts.retried += 1;
    }

    pub(crate) fn checked(&mut self, violation: Option<IdempotencyViolation>) {
        self.checkouts.idempotency_checks += 1;
        if let Some(violation) = violation {
            self.checkouts.idempotency_violations += 1;
            if self.checkouts.violations.len() < MAX_VIOLATIONS_KEPT {
                self.checkouts.violations.push(violation);
            }
        }
    }

    /// Ends the current window at `now` (since the start) and starts the next.
    pub(crate) fn close_window(&mut self, now: Duration) -> Window {
        let seconds = now.saturating_sub(self.window_start).as_secs_f64();
        let (routes, totals) = self.window.summaries(seconds);
        let cumulative = self
            .total
            .routes
            .iter()
            .fold((0, 0), |(n, e), r| (n + r.count, e + r.errors));
        let window = Window {
            index: self.window_index,
            start_unix_ms: self.started_at_unix_ms
                + u64::try_from(self.window_start.as_millis()).unwrap_or(u64::MAX / 2),
            start_offset_s: round(self.window_start.as_secs_f64(), 6),
            end_offset_s: round(now.as_secs_f64(), 6),
            totals,
            routes,
            cumulative_requests: cumulative.0,
            cumulative_errors: cumulative.1,
        };
        self.window.reset();
        self.window_index += 1;
        self.window_start = now;
        if self.keep_windows {
            self.windows.push(window.clone());
        }
        window
    }

    /// The totals over `elapsed`, and everything kept.
    pub(crate) fn finish(&mut self, elapsed: Duration) -> Recorded {
        let (routes, totals) = self.total.summaries(elapsed.as_secs_f64());
        Recorded {
            routes,
            totals,
            checkouts: std::mem::take(&mut self.checkouts),
            failed_total: self.failed_total,
            failed: std::mem::take(&mut self.failed),
            acknowledged: std::mem::take(&mut self.acknowledged),
            windows: std::mem::take(&mut self.windows),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(route: Route, ms: u64, outcome: Outcome) -> Sample {
        Sample {
            route,
            latency: Duration::from_millis(ms),
            outcome,
            late: false,
        }
    }

    fn answered(status: u16) -> Outcome {
        Outcome::Answered {
            status,
            degraded: false,
            invalid_body: false,
        }
    }

    #[test]
    fn classifies_errors_and_business_outcomes() {
        let mut r = Recorder::new(0, 10, true).unwrap();
        for status in [200, 201, 402, 404, 409, 429, 500, 503] {
            r.record(&sample(Route::CreateOrder, 10, answered(status)), None);
        }
        r.record(
            &sample(Route::CreateOrder, 2000, Outcome::Failed(Failure::Timeout)),
            None,
        );
        r.record(
            &sample(Route::CreateOrder, 1, Outcome::Failed(Failure::Connect)),
            None,
        );
        r.record_dropped(Route::CreateOrder);
        let done = r.finish(Duration::from_secs(10));
        let s = &done.routes[&Route::CreateOrder];
        assert_eq!(s.count, 10);
        assert_eq!(s.classes.s2xx, 2);
        assert_eq!(s.classes.s4xx, 4);
        assert_eq!(s.classes.s5xx, 2);
        assert_eq!(s.classes.timeout, 1);
        assert_eq!(s.classes.connect_error, 1);
        assert_eq!(s.errors, 4);
        assert_eq!(s.rate_limited, 1);
        assert_eq!(s.dropped, 1);
        assert!((s.error_ratio - 0.4).abs() < 1e-9);
        assert!((s.rate - 1.0).abs() < 1e-9);
        assert_eq!(s.status_codes[&409], 1);
        assert_eq!(done.totals.count, 10);
        assert_eq!(done.failed_total, 4);
        assert_eq!(done.routes[&Route::GetOrder].count, 0);
    }

    #[test]
    fn percentiles_are_in_milliseconds() {
        let mut r = Recorder::new(0, 10, false).unwrap();
        for ms in 1..=100 {
            r.record(&sample(Route::ListProducts, ms, answered(200)), None);
        }
        let done = r.finish(Duration::from_secs(1));
        let l = &done.totals.latency_ms;
        assert!((l.p50 - 50.0).abs() < 0.1, "{l:?}");
        assert!((l.p99 - 99.0).abs() < 0.1, "{l:?}");
        assert!((l.max - 100.0).abs() < 0.1, "{l:?}");
    }

    #[test]
    fn windows_reset_but_totals_accumulate() {
        let mut r = Recorder::new(1_000, 10, true).unwrap();
        r.record(&sample(Route::GetProduct, 5, answered(500)), None);
        let w0 = r.close_window(Duration::from_secs(1));
        r.record(&sample(Route::GetProduct, 5, answered(200)), None);
        r.record(&sample(Route::GetProduct, 5, answered(200)), None);
        let w1 = r.close_window(Duration::from_secs(2));
        assert_eq!((w0.index, w0.totals.count, w0.totals.errors), (0, 1, 1));
        assert_eq!((w1.index, w1.totals.count, w1.totals.errors), (1, 2, 0));
        assert_eq!((w1.cumulative_requests, w1.cumulative_errors), (3, 1));
        assert_eq!(w1.start_unix_ms, 2_000);
        let done = r.finish(Duration::from_secs(2));
        assert_eq!(done.windows, vec![w0, w1]);
        assert_eq!(done.totals.count, 3);
    }

    #[test]
    fn keeps_only_the_first_failures() {
        let mut r = Recorder::new(0, 2, false).unwrap();
        for i in 0..5 {
            let failure = FailedRequest {
                trace_id: format!("{i:032x}"),
                route: Route::ListProducts,
                status: Some(500),
                error: "5xx".to_owned(),
                detail: None,
                idempotency_key: None,
                at_unix_ms: 0,
                at_offset_ms: 0,
            };
            r.record(
                &sample(Route::ListProducts, 1, answered(500)),
                Some(failure),
            );
        }
        let done = r.finish(Duration::from_secs(1));
        assert_eq!(done.failed_total, 5);
        assert_eq!(done.failed.len(), 2);
        assert_eq!(done.failed[1].trace_id, format!("{:032x}", 1));
    }
}
