//! The open-loop timetable: when each request is meant to leave.
//!
//! Send times are computed from the start and the request's index, never by
//! adding periods to the previous send, so they do not drift and a stalled
//! client catches up with the schedule instead of shifting it.

use std::time::Duration;

use tokio::time::Instant;

/// How late a send may be before it counts as `late` in the report.
pub(crate) const LATE_AFTER: Duration = Duration::from_millis(10);

/// Intended send times at a constant rate.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timetable {
    start: Instant,
    rate: f64,
}

impl Timetable {
    /// `rate` requests per second from `start`; `rate` must be positive
    /// (checked by [`crate::Config::validate`]).
    pub(crate) fn new(start: Instant, rate: f64) -> Self {
        Self { start, rate }
    }

    /// When request number `index` (from 0) is meant to be sent.
    pub(crate) fn at(&self, index: u64) -> Instant {
        // Precision loss only matters beyond 2^53 requests.
        let offset = index as f64 / self.rate;
        self.start + Duration::try_from_secs_f64(offset).unwrap_or(Duration::MAX / 4)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_follow_the_rate_without_drift() {
        let start = Instant::now();
        let t = Timetable::new(start, 3.0);
        assert_eq!(t.at(0), start);
        assert_eq!(t.at(3) - start, Duration::from_secs(1));
        let late = t.at(3_000_000) - start;
        assert!(late.abs_diff(Duration::from_secs(1_000_000)) < Duration::from_millis(1));
    }
}
