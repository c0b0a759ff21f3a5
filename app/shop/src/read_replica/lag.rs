//! How far a standby is behind, in seconds, from WAL positions alone.
//!
//! Every check samples the primary's current position with the time it was
//! read. The standby's lag is then the age of the oldest sample it has not
//! replayed yet: it has everything the primary had just before that moment,
//! and nothing written since. Zero when it has replayed every sample, so an
//! idle primary (no new WAL) reads as no lag, and a standby that lost its
//! connection while the primary keeps writing reads as a growing one. No
//! clock of either server is involved.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::lsn::Lsn;

/// The samples kept at most. When full, the two oldest-but-one are merged
/// into one that keeps the earlier time: the estimate may then read a little
/// high, never low.
const CAPACITY: usize = 600;

/// The primary's positions over time, oldest first.
#[derive(Debug, Default)]
pub struct LagTracker {
    samples: VecDeque<(Lsn, Instant)>,
}

impl LagTracker {
    /// Records the primary's position `lsn`, read at `at`.
    pub fn primary_at(&mut self, lsn: Lsn, at: Instant) {
        if self.samples.back().is_some_and(|(last, _)| *last >= lsn) {
            // Nothing new was written: the older sample is the one that counts.
            return;
        }
        if self.samples.len() >= CAPACITY {
            // Merge samples 1 and 2: the later position, the earlier time.
            if let (Some((_, t1)), Some((l2, _))) = (self.samples.remove(1), self.samples.remove(1))
            {
                self.samples.insert(1, (l2, t1));
            }
        }
        self.samples.push_back((lsn, at));
    }

    /// The lag of a standby that has replayed up to `replayed`, at `now`;
    /// forgets the samples it has replayed.
    pub fn lag(&mut self, replayed: Lsn, now: Instant) -> Duration {
        while self
            .samples
            .front()
            .is_some_and(|(lsn, _)| *lsn <= replayed)
        {
            self.samples.pop_front();
        }
        self.samples
            .front()
            .map_or(Duration::ZERO, |(_, at)| now.saturating_duration_since(*at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn a_standby_that_replayed_everything_has_no_lag() {
        let t0 = Instant::now();
        let mut lag = LagTracker::default();
        lag.primary_at(Lsn(100), t0);
        assert_eq!(lag.lag(Lsn(100), t0 + secs(30)), Duration::ZERO);
        // An idle primary: the same position again, still no lag.
        lag.primary_at(Lsn(100), t0 + secs(31));
        assert_eq!(lag.lag(Lsn(100), t0 + secs(60)), Duration::ZERO);
    }

    #[test]
    fn the_lag_is_the_age_of_the_oldest_position_not_replayed() {
        let t0 = Instant::now();
        let mut lag = LagTracker::default();
        for (i, lsn) in [10, 20, 30, 40].into_iter().enumerate() {
            lag.primary_at(Lsn(lsn), t0 + secs(i as u64));
        }
        // Paused at 15: it lacks what the primary wrote from t0 + 1 s on.
        assert_eq!(lag.lag(Lsn(15), t0 + secs(10)), secs(9));
        assert_eq!(lag.lag(Lsn(15), t0 + secs(12)), secs(11));
        // Replay resumes up to 30: only the sample of t0 + 3 s is missing.
        assert_eq!(lag.lag(Lsn(30), t0 + secs(12)), secs(9));
        assert_eq!(lag.lag(Lsn(40), t0 + secs(12)), Duration::ZERO);
    }

    #[test]
    fn a_full_tracker_reads_high_never_low() {
        let t0 = Instant::now();
        let mut lag = LagTracker::default();
        let n = CAPACITY as u64 + 50;
        for i in 0..n {
            lag.primary_at(Lsn(i + 1), t0 + secs(i));
        }
        assert!(lag.samples.len() <= CAPACITY);
        let now = t0 + secs(n);
        // The oldest sample is exact.
        assert_eq!(lag.lag(Lsn(0), now), secs(n));
        // Past merged samples the estimate is at least the truth.
        for replayed in [1, 2, 10, 51, 52, 300, n - 1] {
            let truth = now - (t0 + secs(replayed));
            let estimate = lag.lag(Lsn(replayed), now);
            assert!(
                estimate >= truth,
                "replayed {replayed}: {estimate:?} < {truth:?}"
            );
        }
    }
}
