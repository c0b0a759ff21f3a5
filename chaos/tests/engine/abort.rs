//! `[[abort_when]]`: a limit crossed mid-method cancels the faults still to
//! come, rolls back the injected ones at once, and the verdict is `aborted`.

use std::sync::Arc;
use std::time::Duration;

use faultline_chaos::experiment::{SliMetric, SliOver, SliProbe, Tolerance};
use faultline_chaos::journal::{Status, Verdict};
use faultline_chaos::probes::sli::SliCheck;
use faultline_chaos::runner::{Bindings, LedgerDir, Plan, PlannedAbort, PlannedFault, run_plan};
use faultline_chaos::testing::{CallLog, FakeFault, SyntheticLoad};

/// When the synthetic load starts failing, seconds after it started.
const ERRORS_FROM_S: f64 = 0.5;

#[tokio::test]
async fn a_crossed_limit_cancels_later_faults_and_rolls_back_at_once() {
    let log = CallLog::default();
    let mut plan = Plan::new("abort");
    plan.settings.probe_interval = Duration::from_millis(20);
    plan.method_duration = Duration::from_secs(20);
    plan.recovery_deadline = Duration::from_secs(5);
    plan.faults = vec![
        PlannedFault {
            name: "early".into(),
            at: Duration::ZERO,
            duration: Some(Duration::from_secs(15)),
            fault: Arc::new(FakeFault::new("early", &log)),
        },
        PlannedFault {
            name: "late".into(),
            at: Duration::from_secs(10),
            duration: None,
            fault: Arc::new(FakeFault::new("late", &log)),
        },
    ];
    // 80% errors after half a second of load.
    plan.load = Some(Arc::new(SyntheticLoad {
        window: Duration::from_millis(100),
        requests_per_window: 100,
        shape: Arc::new(|t| {
            if t > ERRORS_FROM_S {
                (10.0, 20.0, 0.8)
            } else {
                (10.0, 20.0, 0.0)
            }
        }),
    }));
    plan.abort_when = vec![PlannedAbort {
        name: "error ratio over 50%".into(),
        every: Duration::from_millis(50),
        probe: Arc::new(SliCheck {
            spec: SliProbe {
                metric: SliMetric::ErrorRatio,
                routes: Vec::new(),
                over: SliOver::Window,
                min_requests: 1,
                tolerance: Tolerance::AtMost(0.5),
            },
        }),
    }];
    let bindings = Bindings {
        ledger: LedgerDir::Disabled,
        ..Bindings::default()
    };
    let journal = tokio::time::timeout(Duration::from_secs(15), run_plan(plan, bindings))
        .await
        .expect("aborted well before the method's 20 s");

    assert_eq!(journal.verdict, Verdict::Aborted, "{:?}", journal.reasons);
    assert_eq!(journal.status, Status::Aborted);
    assert_eq!(journal.verdict.exit_code(), 3);
    let reason = journal
        .reasons
        .iter()
        .find(|r| r.contains("abort_when"))
        .unwrap_or_else(|| panic!("{:?}", journal.reasons));
    assert!(
        reason.contains("error ratio over 50%") && reason.contains("0.8000"),
        "names the limit and the value: {reason}"
    );
    // The later fault never went in; the early one was reverted once, at
    // once rather than at its planned end (15 s).
    assert_eq!(log.count("inject late"), 0, "{:?}", log.entries());
    assert_eq!(log.count("revert early"), 1, "{:?}", log.entries());
    let revert = journal
        .run
        .iter()
        .find(|a| a.activity.name == "early" && a.activity.step == "revert")
        .unwrap();
    let method = journal.phases.iter().find(|p| p.name == "method").unwrap();
    assert!(
        revert.end_s - method.start_s < 5.0,
        "reverted {:.1} s into the method",
        revert.end_s - method.start_s
    );
    // The evaluation that tripped is in the journal.
    assert!(
        journal
            .steady_states
            .during
            .iter()
            .any(|a| a.activity.step == "abort_when"),
        "{:?}",
        journal.steady_states.during
    );
    // Recovery still runs after the rollback.
    assert!(journal.phases.iter().any(|p| p.name == "recovery"));
}
