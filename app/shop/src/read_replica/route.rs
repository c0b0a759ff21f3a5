//! Whether reads go to the standby: a small state machine fed by the checks,
//! with hysteresis so that a standby near its lag bound does not flap.
//!
//! - In use, a check that finds the lag over the bound, or the standby
//!   unreachable, takes it out of use at once (and so does a failed read).
//! - Out of use, it comes back only after `recover_after` checks in a row
//!   that reach it with a lag of at most half the bound.
//! - At start one such check is enough: there is nothing to flap from yet.

use std::time::Duration;

/// Why reads go where they go: the `reason` label of
/// `db_client_read_routes_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// To the standby: it answers and is within its lag bound.
    ReplicaHealthy,
    /// To the primary: the standby is further behind than the bound.
    ReplicaLagging,
    /// To the primary: the standby does not answer (or has not been checked yet).
    ReplicaUnavailable,
    /// To the primary: this read failed or timed out on the standby.
    ReplicaFailed,
    /// To the primary: the caller needs a write the standby has not replayed.
    ReadYourWrites,
    /// To the primary: no standby is configured.
    NoReplica,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ReplicaHealthy => "replica_healthy",
            Self::ReplicaLagging => "replica_lagging",
            Self::ReplicaUnavailable => "replica_unavailable",
            Self::ReplicaFailed => "replica_failed",
            Self::ReadYourWrites => "read_your_writes",
            Self::NoReplica => "no_replica",
        }
    }
}

/// What one check found.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Check {
    /// The standby answered; its lag.
    Reached(Duration),
    /// The standby did not answer in time, failed, or is not a standby.
    Unreachable,
}

/// The routing state, owned by the check task.
#[derive(Debug)]
pub struct Route {
    max_lag: Duration,
    recover_after: u32,
    /// `None` while in use; else why not.
    avoided: Option<Reason>,
    /// Healthy checks in a row while avoided.
    streak: u32,
    /// Healthy checks needed to come back (1 before the first use).
    needed: u32,
}

impl Route {
    pub fn new(max_lag: Duration, recover_after: u32) -> Self {
        Self {
            max_lag,
            recover_after: recover_after.max(1),
            avoided: Some(Reason::ReplicaUnavailable),
            streak: 0,
            needed: 1,
        }
    }

    /// `None` when reads go to the standby, else the reason they don't.
    pub fn avoided(&self) -> Option<Reason> {
        self.avoided
    }

    /// Takes the standby out of use for `reason`.
    pub fn avoid(&mut self, reason: Reason) {
        self.avoided = Some(reason);
        self.streak = 0;
        self.needed = self.recover_after;
    }

    /// Applies a check; true when the routing changed.
    pub fn observe(&mut self, check: Check) -> bool {
        let before = self.avoided;
        match (check, self.avoided) {
            (Check::Unreachable, _) => self.avoid(Reason::ReplicaUnavailable),
            (Check::Reached(lag), _) if lag > self.max_lag => self.avoid(Reason::ReplicaLagging),
            (Check::Reached(_), None) => {}
            (Check::Reached(lag), Some(_)) if lag <= self.max_lag / 2 => {
                self.streak += 1;
                if self.streak >= self.needed {
                    self.avoided = None;
                    self.streak = 0;
                }
            }
            // Between half the bound and the bound: not yet good enough to return.
            (Check::Reached(_), Some(_)) => {
                self.streak = 0;
                self.avoided = Some(Reason::ReplicaLagging);
            }
        }
        before != self.avoided
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: Duration = Duration::from_secs(4);

    fn ms(ms: u64) -> Check {
        Check::Reached(Duration::from_millis(ms))
    }

    #[test]
    fn one_good_check_at_start_puts_the_standby_in_use() {
        let mut route = Route::new(MAX, 3);
        assert_eq!(route.avoided(), Some(Reason::ReplicaUnavailable));
        assert!(route.observe(ms(10)));
        assert_eq!(route.avoided(), None);
    }

    #[test]
    fn lag_over_the_bound_moves_reads_away_at_once() {
        let mut route = Route::new(MAX, 3);
        route.observe(ms(0));
        assert!(!route.observe(ms(4_000)), "at the bound is still within it");
        assert!(route.observe(ms(4_001)));
        assert_eq!(route.avoided(), Some(Reason::ReplicaLagging));
    }

    #[test]
    fn coming_back_needs_several_checks_well_within_the_bound() {
        let mut route = Route::new(MAX, 3);
        route.observe(ms(0));
        route.observe(Check::Unreachable);
        assert_eq!(route.avoided(), Some(Reason::ReplicaUnavailable));
        // Within the bound but over half of it: not yet, and it resets the streak.
        assert!(route.observe(ms(3_000)));
        assert_eq!(route.avoided(), Some(Reason::ReplicaLagging));
        route.observe(ms(100));
        route.observe(ms(100));
        route.observe(ms(2_500));
        route.observe(ms(100));
        route.observe(ms(100));
        assert_eq!(route.avoided(), Some(Reason::ReplicaLagging));
        assert!(route.observe(ms(100)));
        assert_eq!(route.avoided(), None);
    }

    #[test]
    fn a_standby_at_the_edge_of_its_bound_does_not_flap() {
        let mut route = Route::new(MAX, 3);
        route.observe(ms(0));
        let mut changes = 0;
        // The lag oscillates around the bound: out once, then stays out.
        for lag in [4_100, 3_900, 4_100, 3_900, 4_100, 3_900, 4_100, 3_900] {
            changes += usize::from(route.observe(ms(lag)));
        }
        assert_eq!(changes, 1);
        assert_eq!(route.avoided(), Some(Reason::ReplicaLagging));
    }

    #[test]
    fn a_failed_read_counts_as_losing_the_standby() {
        let mut route = Route::new(MAX, 2);
        route.observe(ms(0));
        route.avoid(Reason::ReplicaUnavailable);
        assert!(!route.observe(ms(0)));
        assert!(route.observe(ms(0)));
    }
}
