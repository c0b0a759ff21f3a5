//! The lease keeper: while the method runs, every active fault injected
//! with a lease is renewed every lease/3, so that it outlives no process of
//! the run by more than its lease. A renewal that fails is a journal note:
//! the fault may be gone already (its lease ran out), and the revert that
//! follows tolerates that.

use std::collections::BTreeSet;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{Run, invoke};

/// The shortest renewal interval, whatever the lease.
const MIN_INTERVAL: Duration = Duration::from_millis(100);

/// Renews the leases of the active faults until `stop` is cancelled.
pub(crate) async fn keep(run: &Run, stop: CancellationToken) {
    let every = (run.plan.settings.lease / 3).max(MIN_INTERVAL);
    // Faults whose last renewal failed: noted once until one succeeds.
    let mut failing: BTreeSet<String> = BTreeSet::new();
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
        for active in run.active.snapshot() {
            if active.fault.lease().is_none() {
                continue;
            }
            let fault = active.fault.clone();
            let prepared = active.prepared.clone();
            let timeout = every.min(run.plan.settings.action_timeout);
            let result = tokio::select! {
                () = stop.cancelled() => return,
                result = invoke(timeout, async move { fault.renew(&prepared).await }) => result,
            };
            match result {
                Ok(_) => {
                    if failing.remove(&active.name) {
                        run.recorder
                            .note(&format!("the lease of {} is renewed again", active.name));
                    }
                }
                Err(err) => {
                    if failing.insert(active.name.clone()) {
                        run.recorder.note(&format!(
                            "renewing the lease of {} failed: {err}; the fault may be gone",
                            active.name
                        ));
                    }
                }
            }
        }
    }
}
