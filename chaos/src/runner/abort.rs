//! `[[abort_when]]`: limits evaluated all through the method. The first one
//! crossed ends the method at once (the faults still to come are never
//! injected), and the rollback reverts the injected ones.

use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use tokio::time::Instant;

use super::{PlannedAbort, Run, observe, probe_outcome};
use crate::journal::{Activity, ActivityType};
use crate::probes::{Observation, ProbeError};

/// A limit that was crossed.
#[derive(Debug)]
pub(crate) struct Tripped {
    /// For the journal's reasons: the condition and the value.
    pub reason: String,
    /// The evaluation that crossed it.
    pub activity: Activity,
}

/// Evaluates every condition every `every` from now on; returns the first
/// that is crossed. Never returns when there is none, or none is crossed.
pub(crate) async fn watch(run: &Run, method_start_s: f64) -> Tripped {
    let mut guards: FuturesUnordered<_> = run
        .plan
        .abort_when
        .iter()
        .map(|condition| guard(run, condition, method_start_s))
        .collect();
    match guards.next().await {
        Some(tripped) => tripped,
        None => futures::future::pending().await,
    }
}

/// A failed observation that says nothing: a query with no sample.
fn no_data(observation: &Observation) -> bool {
    !observation.ok && observation.value.as_array().is_some_and(Vec::is_empty)
}

async fn guard(run: &Run, condition: &PlannedAbort, method_start_s: f64) -> Tripped {
    let clock = run.recorder.clock;
    let timeout = run
        .plan
        .settings
        .probe_timeout
        .min(condition.every.max(Duration::from_secs(1)) * 5);
    let mut next = Instant::now();
    let mut reported_error = false;
    loop {
        tokio::time::sleep_until(next).await;
        next = (next + condition.every).max(Instant::now());
        let start_s = clock.now_s();
        // Built each time: it learns when the first fault went in.
        let cx = run.cx(method_start_s);
        match observe(&condition.probe, &cx, timeout).await {
            Ok(observation) if observation.ok || no_data(&observation) => {}
            Ok(observation) => {
                let reason = format!(
                    "aborted: abort_when {:?} ({}) tripped: {}",
                    condition.name,
                    condition.probe.kind(),
                    observation.detail
                );
                let activity = run.recorder.activity(
                    ActivityType::Probe,
                    &condition.name,
                    condition.probe.kind(),
                    "abort_when",
                    start_s,
                    probe_outcome(Ok(observation), 1),
                );
                return Tripped { reason, activity };
            }
            Err(ProbeError::NoData(_)) => {}
            Err(err) => {
                // Not a crossing: say so once, and keep trying.
                if !reported_error {
                    reported_error = true;
                    run.recorder.note(&format!(
                        "abort_when {:?} could not be evaluated: {err}",
                        condition.name
                    ));
                }
            }
        }
    }
}
