//! SLI probes during the method: the load's windows are reported only when
//! they close, so a probe that must always hold waits for its first window,
//! even one that closes after the method's last moment.

use std::sync::Arc;
use std::time::Duration;

use faultline_chaos::experiment::{Must, SliMetric, SliOver, SliProbe, Tolerance};
use faultline_chaos::journal::{Journal, Verdict};
use faultline_chaos::probes::sli::SliCheck;
use faultline_chaos::runner::{Bindings, LedgerDir, Plan, PlannedDuring, run_plan};
use faultline_chaos::testing::SyntheticLoad;

const RUN_BOUND: Duration = Duration::from_secs(30);

fn no_errors() -> PlannedDuring {
    PlannedDuring {
        name: "no request fails".into(),
        every: Duration::from_millis(100),
        must: Must::Always,
        abort: true,
        probe: Arc::new(SliCheck {
            spec: SliProbe {
                metric: SliMetric::Errors,
                routes: Vec::new(),
                over: SliOver::Phase,
                min_requests: 1,
                tolerance: Tolerance::Equals(0.0),
            },
        }),
    }
}

async fn run(plan: Plan) -> Journal {
    let bindings = Bindings {
        ledger: LedgerDir::Disabled,
        ..Bindings::default()
    };
    tokio::time::timeout(RUN_BOUND, run_plan(plan, bindings))
        .await
        .expect("the run ends")
}

/// A 1 s method and 1.5 s windows, `error_ratio` of the requests failing:
/// no window that began in the method has closed by its end.
async fn late_window(error_ratio: f64) -> Journal {
    let mut plan = Plan::new("late window");
    plan.method_duration = Duration::from_secs(1);
    plan.load = Some(Arc::new(SyntheticLoad {
        window: Duration::from_millis(1500),
        requests_per_window: 10,
        shape: Arc::new(move |_| (10.0, 20.0, error_ratio)),
    }));
    plan.during = vec![no_errors()];
    run(plan).await
}

fn assert_failed_with(journal: &Journal, reason: &str) {
    assert_eq!(journal.verdict, Verdict::Failed, "{:?}", journal.reasons);
    assert!(
        journal.reasons.iter().any(|r| r.contains(reason)),
        "{:?}",
        journal.reasons
    );
}

/// The probe is judged on the first window that closes after the method
/// (within a window and a second), not failed for want of data.
#[tokio::test]
async fn a_window_that_closes_after_the_method_still_counts() {
    let journal = late_window(0.0).await;
    assert_eq!(journal.verdict, Verdict::Passed, "{:?}", journal.reasons);
    assert!(
        journal
            .steady_states
            .during
            .iter()
            .any(|a| a.activity.name == "no request fails"),
        "the probe was evaluated on data: {:?}",
        journal.steady_states.during
    );
}

/// The grace is for windows still to close, not a pass for no data: with
/// failing requests in that late window, the probe fails.
#[tokio::test]
async fn a_late_window_with_errors_fails_the_probe() {
    let journal = late_window(0.5).await;
    assert_failed_with(&journal, "no request fails failed during the method");
}

/// With no load at all there is nothing to wait for: the probe never had
/// data, and the experiment says so.
#[tokio::test]
async fn without_load_the_probe_never_has_data() {
    let mut plan = Plan::new("no load");
    plan.method_duration = Duration::from_millis(500);
    plan.during = vec![no_errors()];
    let journal = run(plan).await;
    assert_failed_with(
        &journal,
        "no request fails never had data during the method",
    );
}
