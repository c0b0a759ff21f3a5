//! Leases: a fault that undoes itself when its controller stops renewing it.
//!
//! A [`Lease`] is a deadline and one tokio timer task. When the deadline
//! passes, the task runs the expiry the registry gave it; the registry, under
//! its lock, acts only if the lease it finds is still the one with this
//! lease's id. Renewing replaces the lease (a new id, a new timer) and drops
//! the old one, which cancels its timer. So a renewal and an expiry that race
//! are ordered by the registry's lock: the first to take it wins, and the
//! other finds either a new lease (the expiry does nothing) or no toxic (the
//! renewal gets a 404). Dropping a lease (deleting its toxic or proxy,
//! `/reset`) cancels it the same way.

use std::future::Future;
use std::time::Duration;

use tokio::task::AbortHandle;
use tokio::time::Instant;

/// One armed lease. Dropping it cancels its timer.
#[derive(Debug)]
pub(crate) struct Lease {
    id: u64,
    deadline: Instant,
    timer: Option<AbortHandle>,
}

impl Lease {
    /// Arms a lease of `ttl` from now: when it runs out, `expire` runs
    /// (unless the lease was dropped first). `id` must be unique among the
    /// registry's leases; `expire` checks it before acting.
    pub(crate) fn arm<F>(id: u64, ttl: Duration, expire: F) -> Self
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let deadline = Instant::now().checked_add(ttl).unwrap_or_else(far_future);
        let task = tokio::spawn(async move {
            tokio::time::sleep_until(deadline).await;
            expire.await;
        });
        Self {
            id,
            deadline,
            timer: Some(task.abort_handle()),
        }
    }

    /// The id the expiry checks.
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// Whole milliseconds left, rounded up, as documents show them (0 once due).
    pub(crate) fn remaining_ms(&self, now: Instant) -> u64 {
        let left = self.deadline.saturating_duration_since(now);
        let ms = left.as_nanos().div_ceil(1_000_000);
        u64::try_from(ms).unwrap_or(u64::MAX)
    }

    /// Ends a lease from within its own expiry, without cancelling the task
    /// that is running that expiry.
    pub(crate) fn expired(mut self) {
        self.timer = None;
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(timer) = self.timer.take() {
            timer.abort();
        }
    }
}

/// A deadline no lease reaches (about 30 years away).
fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86400 * 365 * 30)
}

#[cfg(test)]
mod tests {
    use tokio::sync::oneshot;

    use super::*;

    /// A lease whose expiry reports on a channel.
    fn armed(id: u64, ttl: Duration) -> (Lease, oneshot::Receiver<Instant>) {
        let (tx, rx) = oneshot::channel();
        let lease = Lease::arm(id, ttl, async move {
            let _ = tx.send(Instant::now());
        });
        (lease, rx)
    }

    #[tokio::test]
    async fn a_lease_fires_at_its_deadline() {
        let start = Instant::now();
        let (lease, fired) = armed(1, Duration::from_millis(100));
        assert!(lease.remaining_ms(Instant::now()) <= 100);
        assert!(lease.remaining_ms(Instant::now()) > 50);
        let at = tokio::time::timeout(Duration::from_secs(5), fired)
            .await
            .unwrap()
            .unwrap();
        assert!(at - start >= Duration::from_millis(100));
        assert_eq!(lease.remaining_ms(Instant::now()), 0);
        lease.expired();
    }

    #[tokio::test]
    async fn dropping_a_lease_cancels_its_timer() {
        let (early, early_fired) = armed(1, Duration::from_millis(20));
        drop(early);
        // Timers fire in deadline order: once the later one has fired, the
        // earlier one would have too.
        let (later, later_fired) = armed(2, Duration::from_millis(100));
        tokio::time::timeout(Duration::from_secs(5), later_fired)
            .await
            .unwrap()
            .unwrap();
        assert!(early_fired.await.is_err(), "the dropped lease fired");
        later.expired();
    }
}
