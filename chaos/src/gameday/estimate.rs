//! How long a run is expected to take at most, so that a game day starts
//! no run that does not fit what is left of its budget.

use std::time::Duration;

use crate::runner::Plan;

/// The longest a run of `plan` should take: the warm-up, the longest
/// steady-state `within`, the method, then the longer of the recovery
/// deadline and the longest expected-alert `within` (expected alerts are
/// decided after the recovery, resolutions counting from the revert), then
/// the longest after-probe `within` (default: the recovery deadline). The
/// phases run one after the other; probes within a phase run together.
pub fn estimate(plan: &Plan) -> Duration {
    let longest = |withins: &mut dyn Iterator<Item = Duration>| withins.max().unwrap_or_default();
    let steady_state = longest(&mut plan.steady_state.iter().filter_map(|p| p.within));
    let alerts = longest(&mut plan.expected_alerts.iter().map(|a| a.within));
    let after = longest(
        &mut plan
            .after
            .iter()
            .map(|p| p.within.unwrap_or(plan.recovery_deadline)),
    );
    plan.settings.warmup
        + steady_state
        + plan.method_duration
        + plan.recovery_deadline.max(alerts)
        + after
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::runner::PlannedProbe;
    use crate::testing::{Behaviour, SwitchProbe};

    fn probe(within: Option<u64>) -> PlannedProbe {
        PlannedProbe {
            name: "p".to_owned(),
            within: within.map(Duration::from_secs),
            probe: Arc::new(SwitchProbe::new(Behaviour::Succeed)),
        }
    }

    #[test]
    fn adds_up_the_phases() {
        let mut plan = Plan::new("x");
        plan.settings.warmup = Duration::from_secs(5);
        plan.steady_state = vec![probe(Some(20)), probe(Some(30)), probe(None)];
        plan.method_duration = Duration::from_secs(40);
        plan.recovery_deadline = Duration::from_secs(60);
        plan.after = vec![probe(None), probe(Some(10))];
        assert_eq!(estimate(&plan), Duration::from_secs(5 + 30 + 40 + 60 + 60));
        plan.after.clear();
        assert_eq!(estimate(&plan), Duration::from_secs(5 + 30 + 40 + 60));
    }
}
