//! The run loop with fake faults, probes, actions, alerts and load: the
//! verdict on every path, and rollback on every exit path.

use std::sync::Arc;
use std::time::Duration;

use faultline_chaos::actions::UndoRecord;
use faultline_chaos::experiment::{AllowedAlert, ExpectedAlert, ExpectedState, Must, Settings};
use faultline_chaos::journal::{ActivityStatus, Status, Verdict};
use faultline_chaos::runner::{
    Bindings, LedgerDir, Plan, PlannedAction, PlannedDuring, PlannedFault, PlannedProbe, RunEvent,
    run_plan,
};
use faultline_chaos::testing::{
    Behaviour, CallLog, FakeAction, FakeAlerts, FakeFault, SwitchProbe,
};
use tokio_util::sync::CancellationToken;

/// Generous bound for a whole run: the plans below take about a second.
const RUN_BOUND: Duration = Duration::from_secs(30);

fn settings() -> Settings {
    Settings {
        probe_interval: Duration::from_millis(20),
        alert_poll_interval: Duration::from_millis(20),
        action_timeout: Duration::from_secs(5),
        ..Settings::default()
    }
}

fn fault(fault: FakeFault, at_ms: u64, duration_ms: Option<u64>) -> PlannedFault {
    PlannedFault {
        name: fault.name.clone(),
        at: Duration::from_millis(at_ms),
        duration: duration_ms.map(Duration::from_millis),
        fault: Arc::new(fault),
    }
}

fn probe(name: &str, probe: &SwitchProbe) -> PlannedProbe {
    PlannedProbe {
        name: name.to_owned(),
        within: None,
        probe: Arc::new(probe.clone()),
    }
}

fn during(name: &str, probe: &SwitchProbe, must: Must) -> PlannedDuring {
    PlannedDuring {
        name: name.to_owned(),
        every: Duration::from_millis(20),
        must,
        abort: true,
        probe: Arc::new(probe.clone()),
    }
}

fn rollback(name: &str, log: &CallLog) -> PlannedAction {
    PlannedAction {
        name: name.to_owned(),
        action: Arc::new(FakeAction {
            name: name.to_owned(),
            log: log.clone(),
        }),
    }
}

/// Two faults (one timed), a steady-state probe, a during probe, a rollback.
fn plan(log: &CallLog, healthy: &SwitchProbe, during_probe: &SwitchProbe) -> Plan {
    let mut plan = Plan::new("fake");
    plan.settings = settings();
    plan.method_duration = Duration::from_millis(400);
    plan.recovery_deadline = Duration::from_secs(5);
    plan.faults = vec![
        fault(FakeFault::new("a", log), 0, Some(200)),
        fault(FakeFault::new("b", log), 50, None),
    ];
    plan.steady_state = vec![probe("healthy", healthy)];
    plan.during = vec![during("holds", during_probe, Must::Always)];
    plan.rollbacks = vec![rollback("reset", log)];
    plan
}

fn bindings() -> Bindings {
    Bindings {
        ledger: LedgerDir::Disabled,
        ..Bindings::default()
    }
}

async fn run(
    plan: Plan,
    bindings: Bindings,
) -> Result<faultline_chaos::Journal, tokio::time::error::Elapsed> {
    tokio::time::timeout(RUN_BOUND, run_plan(plan, bindings)).await
}

/// Every injected fault was reverted exactly once, and the rollback ran.
fn assert_rolled_back(log: &CallLog, faults: &[&str]) {
    for fault in faults {
        if log.count(&format!("inject {fault}")) > 0 {
            assert_eq!(
                log.count(&format!("revert {fault}")),
                1,
                "{fault}: {:?}",
                log.entries()
            );
        }
    }
    assert_eq!(log.count("rollback reset"), 1, "{:?}", log.entries());
    let entries = log.entries();
    let last_revert = entries.iter().rposition(|e| e.starts_with("revert"));
    let rollback = entries.iter().position(|e| e == "rollback reset");
    assert!(
        last_revert < rollback,
        "faults are reverted before the rollbacks: {entries:?}"
    );
}

#[tokio::test]
async fn a_healthy_run_passes() {
    let log = CallLog::default();
    let ok = SwitchProbe::new(Behaviour::Succeed);
    let journal = run(plan(&log, &ok, &ok), bindings()).await.unwrap();
    assert_eq!(journal.verdict, Verdict::Passed, "{:?}", journal.reasons);
    assert_eq!(journal.status, Status::Completed);
    assert!(!journal.deviated);
    assert_eq!(
        log.entries(),
        [
            "inject a",
            "inject b",
            "revert a",
            "revert b",
            "rollback reset"
        ],
        "a is reverted on schedule, b at the rollback"
    );
    let steps: Vec<_> = journal
        .run
        .iter()
        .map(|a| (a.activity.name.as_str(), a.activity.step.as_str()))
        .collect();
    assert_eq!(
        steps,
        [
            ("a", "inject"),
            ("b", "inject"),
            ("a", "effect"),
            ("a", "revert"),
            ("b", "effect"),
            ("b", "revert")
        ]
    );
    assert!(
        journal
            .steady_states
            .before
            .as_ref()
            .unwrap()
            .steady_state_met
    );
    assert!(
        journal
            .steady_states
            .after
            .as_ref()
            .unwrap()
            .steady_state_met
    );
    assert!(!journal.steady_states.during.is_empty());
    let window = journal.fault_window.as_ref().unwrap();
    assert!(window.end_s > window.start_s);
    assert!(journal.recovery.as_ref().unwrap().recovered);
    let phases: Vec<_> = journal.phases.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(phases, ["steady_state", "method", "rollback", "recovery"]);
}

/// A fault injected late, behind a slow one, still acts for its whole
/// duration: its revert counts from when it was injected, not from when it
/// was planned.
#[tokio::test]
async fn a_fault_injected_late_still_lasts_its_whole_duration() {
    let log = CallLog::default();
    let ok = SwitchProbe::new(Behaviour::Succeed);
    let mut plan = plan(&log, &ok, &ok);
    plan.method_duration = Duration::from_millis(300);
    let slow = FakeFault {
        inject_takes: Duration::from_millis(500),
        ..FakeFault::new("a", &log)
    };
    plan.faults = vec![
        fault(slow, 0, Some(300)),
        fault(FakeFault::new("b", &log), 0, Some(300)),
    ];
    let journal = run(plan, bindings()).await.unwrap();
    assert_eq!(journal.verdict, Verdict::Passed, "{:?}", journal.reasons);
    let start = |name: &str, step: &str| {
        journal
            .run
            .iter()
            .find(|a| a.activity.name == name && a.activity.step == step)
            .map(|a| a.start_s)
            .unwrap_or_else(|| panic!("no {step} of {name}: {:#?}", journal.run))
    };
    for name in ["a", "b"] {
        let lasted = start(name, "revert") - start(name, "inject");
        assert!(
            lasted >= 0.3,
            "{name} was reverted {lasted:.3}s after its injection"
        );
    }
    // b's injection waited for a's, so b had less than its window left.
    assert!(start("b", "inject") - start("a", "inject") >= 0.5);
    assert_rolled_back(&log, &["a", "b"]);
}

#[tokio::test]
async fn a_failing_probe_aborts_the_method_and_rolls_back() {
    let log = CallLog::default();
    let ok = SwitchProbe::new(Behaviour::Succeed);
    let flaky = SwitchProbe::new(Behaviour::Succeed);
    let mut plan = plan(&log, &ok, &flaky);
    plan.method_duration = Duration::from_secs(20);
    plan.faults[0].duration = None;
    let injected = Arc::new(tokio::sync::Notify::new());
    let b = FakeFault {
        injected: injected.clone(),
        ..FakeFault::new("b", &log)
    };
    plan.faults[1] = fault(b, 50, None);
    let flip = flaky.clone();
    tokio::spawn(async move {
        injected.notified().await;
        flip.set(Behaviour::Fail);
    });
    let journal = run(plan, bindings()).await.unwrap();
    assert_eq!(journal.verdict, Verdict::Failed);
    assert_eq!(journal.status, Status::Failed);
    assert!(journal.deviated);
    assert!(
        journal
            .reasons
            .iter()
            .any(|r| r.contains("probe holds failed")),
        "{:?}",
        journal.reasons
    );
    assert!(
        journal.duration < 15.0,
        "the method stopped early: {}",
        journal.duration
    );
    assert_rolled_back(&log, &["a", "b"]);
}

#[tokio::test]
async fn an_action_error_rolls_back_what_was_injected() {
    let log = CallLog::default();
    let ok = SwitchProbe::new(Behaviour::Succeed);
    let mut plan = plan(&log, &ok, &ok);
    plan.faults[0].duration = None;
    plan.faults[1] = fault(
        FakeFault {
            inject: Behaviour::Fail,
            ..FakeFault::new("b", &log)
        },
        50,
        None,
    );
    let journal = run(plan, bindings()).await.unwrap();
    assert_eq!(journal.verdict, Verdict::Error);
    assert_eq!(journal.status, Status::Aborted);
    assert!(
        journal
            .reasons
            .iter()
            .any(|r| r.contains("b cannot be injected")),
        "{:?}",
        journal.reasons
    );
    assert_rolled_back(&log, &["a", "b"]);
    let failed: Vec<_> = journal
        .failed_activities()
        .map(|a| a.activity.name.clone())
        .collect();
    assert_eq!(failed, ["b"]);
}

#[tokio::test]
async fn a_panicking_action_rolls_back() {
    let log = CallLog::default();
    let ok = SwitchProbe::new(Behaviour::Succeed);
    let mut plan = plan(&log, &ok, &ok);
    plan.faults[1] = fault(
        FakeFault {
            inject: Behaviour::Panic,
            ..FakeFault::new("b", &log)
        },
        50,
        None,
    );
    let journal = run(plan, bindings()).await.unwrap();
    assert_eq!(journal.status, Status::Aborted);
    assert!(
        journal.reasons.iter().any(|r| r.contains("panicked")),
        "{:?}",
        journal.reasons
    );
    assert_rolled_back(&log, &["a", "b"]);
}

#[tokio::test]
async fn a_panicking_probe_fails_the_run_and_rolls_back() {
    let log = CallLog::default();
    let ok = SwitchProbe::new(Behaviour::Succeed);
    let panicking = SwitchProbe::new(Behaviour::Panic);
    let journal = run(plan(&log, &ok, &panicking), bindings()).await.unwrap();
    assert_eq!(journal.verdict, Verdict::Failed);
    let during = &journal.steady_states.during[0];
    assert!(
        during
            .exception
            .as_deref()
            .unwrap_or("")
            .contains("panicked"),
        "{during:?}"
    );
    assert_rolled_back(&log, &["a", "b"]);
}

#[tokio::test]
async fn cancellation_interrupts_and_rolls_back() {
    let log = CallLog::default();
    let ok = SwitchProbe::new(Behaviour::Succeed);
    let mut plan = plan(&log, &ok, &ok);
    plan.method_duration = Duration::from_secs(60);
    let injected = Arc::new(tokio::sync::Notify::new());
    plan.faults[1] = fault(
        FakeFault {
            injected: injected.clone(),
            ..FakeFault::new("b", &log)
        },
        50,
        None,
    );
    let cancel = CancellationToken::new();
    let trigger = cancel.clone();
    tokio::spawn(async move {
        injected.notified().await;
        trigger.cancel();
    });
    let journal = run(
        plan,
        Bindings {
            cancel,
            ..bindings()
        },
    )
    .await
    .unwrap();
    assert_eq!(journal.status, Status::Interrupted);
    assert_eq!(journal.verdict, Verdict::Interrupted);
    assert_eq!(journal.verdict.exit_code(), 2);
    assert!(
        journal.recovery.is_none(),
        "no recovery check after an interruption"
    );
    assert_rolled_back(&log, &["a", "b"]);
}

#[tokio::test]
async fn dropping_the_run_rolls_back_synchronously() {
    let log = CallLog::default();
    let ok = SwitchProbe::new(Behaviour::Succeed);
    let mut plan = plan(&log, &ok, &ok);
    plan.method_duration = Duration::from_secs(60);
    let injected = Arc::new(tokio::sync::Notify::new());
    plan.faults[1] = fault(
        FakeFault {
            injected: injected.clone(),
            ..FakeFault::new("b", &log)
        },
        50,
        None,
    );
    let run = run_plan(plan, bindings());
    tokio::select! {
        _ = run => panic!("the run should still be going"),
        () = injected.notified() => {}
    }
    // The run's future is dropped at the end of the select: the guard has
    // reverted both faults and run the rollback by now.
    assert_rolled_back(&log, &["a", "b"]);
    assert_eq!(
        log.entries(),
        [
            "inject a",
            "inject b",
            "revert b",
            "revert a",
            "rollback reset"
        ]
    );
}

#[tokio::test]
async fn a_failed_steady_state_injects_nothing() {
    let log = CallLog::default();
    let sick = SwitchProbe::new(Behaviour::Fail);
    let ok = SwitchProbe::new(Behaviour::Succeed);
    let journal = run(plan(&log, &sick, &ok), bindings()).await.unwrap();
    assert_eq!(journal.verdict, Verdict::Failed);
    assert!(!journal.deviated);
    assert!(log.entries().is_empty(), "{:?}", log.entries());
    assert!(
        !journal
            .steady_states
            .before
            .as_ref()
            .unwrap()
            .steady_state_met
    );
}

#[tokio::test]
async fn recovery_must_happen_within_the_deadline() {
    let log = CallLog::default();
    let steady = SwitchProbe::new(Behaviour::Succeed);
    let ok = SwitchProbe::new(Behaviour::Succeed);
    let mut plan = plan(&log, &steady, &ok);
    plan.recovery_deadline = Duration::from_millis(300);
    // The steady state breaks once the faults are in and never comes back.
    let b = FakeFault::new("b", &log);
    let injected = b.injected.clone();
    plan.faults[1] = fault(b, 50, None);
    let breaker = steady.clone();
    tokio::spawn(async move {
        injected.notified().await;
        breaker.set(Behaviour::Fail);
    });
    let journal = run(plan, bindings()).await.unwrap();
    assert_eq!(journal.verdict, Verdict::Failed);
    assert!(journal.deviated);
    let recovery = journal.recovery.as_ref().unwrap();
    assert!(!recovery.recovered);
    assert!(
        journal
            .reasons
            .iter()
            .any(|r| r.contains("did not come back"))
    );
    assert_rolled_back(&log, &["a", "b"]);
}

#[tokio::test]
async fn eventually_probes_must_pass_once() {
    let log = CallLog::default();
    let ok = SwitchProbe::new(Behaviour::Succeed);
    let never = SwitchProbe::new(Behaviour::Fail);
    let mut plan = plan(&log, &ok, &ok);
    plan.during = vec![during("eventually", &never, Must::Eventually)];
    let journal = run(plan, bindings()).await.unwrap();
    assert_eq!(journal.verdict, Verdict::Failed);
    assert!(
        journal.reasons.iter().any(|r| r.contains("never passed")),
        "{:?}",
        journal.reasons
    );
    // Not aborted: the whole schedule ran.
    assert_eq!(log.count("revert a"), 1);
}

/// An eventually-probe's failed evaluations carry its deadline (they are
/// waiting, not failing), and missing the deadline is one `Missed` event.
#[tokio::test]
async fn eventually_probes_wait_until_their_deadline() {
    let log = CallLog::default();
    let ok = SwitchProbe::new(Behaviour::Succeed);
    let never = SwitchProbe::new(Behaviour::Fail);
    let mut plan = plan(&log, &ok, &ok);
    plan.during = vec![
        during("never", &never, Must::Eventually),
        during("holds", &ok, Must::Always),
    ];
    let (events, mut receiver) = tokio::sync::mpsc::unbounded_channel();
    let bindings = Bindings {
        events: Some(events),
        ..bindings()
    };
    let journal = run(plan, bindings).await.unwrap();
    assert_eq!(journal.verdict, Verdict::Failed);
    let method = journal.phases.iter().find(|p| p.name == "method").unwrap();
    let evaluations: Vec<_> = journal
        .steady_states
        .during
        .iter()
        .filter(|a| a.activity.name == "never")
        .collect();
    assert!(evaluations.len() > 2, "{evaluations:?}");
    for evaluation in &evaluations {
        let deadline = evaluation.deadline_s.unwrap();
        assert!(
            (deadline - (method.start_s + 0.4)).abs() < 0.05,
            "{deadline}"
        );
        assert!(evaluation.is_waiting());
    }
    assert!(
        journal
            .steady_states
            .during
            .iter()
            .filter(|a| a.activity.name == "holds")
            .all(|a| a.deadline_s.is_none() && !a.is_waiting()),
        "always-probes have no deadline"
    );
    let mut missed = Vec::new();
    while let Ok(event) = receiver.try_recv() {
        if let RunEvent::Missed { name, at_s, .. } = event {
            missed.push((name, at_s));
        }
    }
    assert_eq!(missed.len(), 1, "{missed:?}");
    assert_eq!(missed[0].0, "never");
    assert!(missed[0].1 >= evaluations[0].deadline_s.unwrap() - 0.01);
}

#[tokio::test]
async fn ramps_run_on_schedule() {
    let log = CallLog::default();
    let ok = SwitchProbe::new(Behaviour::Succeed);
    let mut plan = plan(&log, &ok, &ok);
    plan.faults = vec![fault(
        FakeFault {
            ramp_every: Some((Duration::from_millis(30), 3)),
            ..FakeFault::new("ramp", &log)
        },
        0,
        Some(200),
    )];
    let journal = run(plan, bindings()).await.unwrap();
    assert_eq!(journal.verdict, Verdict::Passed, "{:?}", journal.reasons);
    assert_eq!(
        log.entries(),
        [
            "inject ramp",
            "ramp ramp 1",
            "ramp ramp 2",
            "ramp ramp 3",
            "revert ramp",
            "rollback reset"
        ]
    );
}

#[tokio::test]
async fn expected_alerts_get_detection_times() {
    let log = CallLog::default();
    let ok = SwitchProbe::new(Behaviour::Succeed);
    let mut plan = plan(&log, &ok, &ok);
    let alerts = FakeAlerts::default();
    plan.alerts = Some(Arc::new(alerts.clone()));
    plan.expected_alerts = vec![
        ExpectedAlert {
            alert: "SomethingBroke".into(),
            state: ExpectedState::Firing,
            within: Duration::from_secs(10),
            labels: Default::default(),
            before: None,
        },
        ExpectedAlert {
            alert: "NeverFires".into(),
            state: ExpectedState::Firing,
            within: Duration::from_millis(500),
            labels: Default::default(),
            before: None,
        },
    ];
    let b = FakeFault::new("b", &log);
    let injected = b.injected.clone();
    plan.faults[1] = fault(b, 50, None);
    let firing = alerts.clone();
    tokio::spawn(async move {
        injected.notified().await;
        firing.set(&[("SomethingBroke", "pending")]);
        tokio::task::yield_now().await;
        firing.set(&[("SomethingBroke", "firing")]);
    });
    let journal = run(plan, bindings()).await.unwrap();
    assert_eq!(journal.verdict, Verdict::Failed, "NeverFires makes it fail");
    let broke = &journal.expected_alerts[0];
    assert!(broke.met, "{broke:?}");
    let detection = broke.detection_time_s.unwrap();
    assert!((0.0..10.0).contains(&detection), "{detection}");
    assert!(!journal.expected_alerts[1].met);
    assert!(
        journal.reasons.iter().any(|r| r.contains("NeverFires")),
        "{:?}",
        journal.reasons
    );
    let seen = journal
        .alerts_seen
        .iter()
        .find(|a| a.alert == "SomethingBroke")
        .unwrap();
    assert_eq!(seen.transitions.last().unwrap().state, "firing");
}

#[tokio::test]
async fn the_ledger_holds_active_faults_until_they_are_reverted() {
    let dir = tempfile::tempdir().unwrap();
    let log = CallLog::default();
    let ok = SwitchProbe::new(Behaviour::Succeed);
    let mut plan = plan(&log, &ok, &ok);
    let undo = UndoRecord::EnableProxy {
        api: "http://127.0.0.1:1".into(),
        proxy: "p".into(),
        token: None,
    };
    let b = FakeFault {
        undo: vec![undo.clone()],
        ..FakeFault::new("b", &log)
    };
    let injected = b.injected.clone();
    plan.faults[1] = fault(b, 50, None);
    plan.method_duration = Duration::from_secs(60);
    let cancel = CancellationToken::new();
    let ledger_dir = dir.path().to_owned();
    let checker = {
        let cancel = cancel.clone();
        tokio::spawn(async move {
            injected.notified().await;
            let runs = faultline_chaos::ledger::read_all(&ledger_dir).unwrap();
            cancel.cancel();
            runs
        })
    };
    let journal = run(
        plan,
        Bindings {
            cancel,
            ledger: LedgerDir::At(dir.path().to_owned()),
            ..Bindings::default()
        },
    )
    .await
    .unwrap();
    let during = checker.await.unwrap();
    assert_eq!(during.len(), 1);
    assert_eq!(during[0].1.faults["b"], vec![undo]);
    assert_eq!(during[0].1.run_id, journal.run_id);
    assert!(
        faultline_chaos::ledger::read_all(dir.path())
            .unwrap()
            .is_empty(),
        "cleared after the rollback"
    );
}

#[tokio::test]
async fn a_failing_revert_is_an_error_and_stays_in_the_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let log = CallLog::default();
    let ok = SwitchProbe::new(Behaviour::Succeed);
    let mut plan = plan(&log, &ok, &ok);
    plan.faults[1] = fault(
        FakeFault {
            revert: Behaviour::Fail,
            undo: vec![UndoRecord::EnableProxy {
                api: "http://127.0.0.1:1".into(),
                proxy: "p".into(),
                token: None,
            }],
            ..FakeFault::new("b", &log)
        },
        50,
        None,
    );
    let journal = run(
        plan,
        Bindings {
            ledger: LedgerDir::At(dir.path().to_owned()),
            ..Bindings::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(journal.status, Status::Aborted);
    assert!(
        journal
            .rollbacks
            .iter()
            .all(|a| a.status == ActivityStatus::Succeeded)
    );
    let left = faultline_chaos::ledger::read_all(dir.path()).unwrap();
    assert_eq!(left.len(), 1, "cleanup can still revert b");
    assert!(left[0].1.faults.contains_key("b"));
}

#[tokio::test]
async fn the_run_future_is_send() {
    let log = CallLog::default();
    let ok = SwitchProbe::new(Behaviour::Succeed);
    let handle = tokio::spawn(run_plan(plan(&log, &ok, &ok), bindings()));
    let journal = tokio::time::timeout(RUN_BOUND, handle)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(journal.verdict, Verdict::Passed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_run_on_a_multi_threaded_runtime_rolls_back_too() {
    let log = CallLog::default();
    let ok = SwitchProbe::new(Behaviour::Succeed);
    let mut plan = plan(&log, &ok, &ok);
    plan.method_duration = Duration::from_secs(60);
    let b = FakeFault::new("b", &log);
    let injected = b.injected.clone();
    plan.faults[1] = fault(b, 50, None);
    let run = run_plan(plan, bindings());
    tokio::select! {
        _ = run => panic!("the run should still be going"),
        () = injected.notified() => {}
    }
    assert_rolled_back(&log, &["a", "b"]);
}

fn expect_firing(alert: &str) -> ExpectedAlert {
    ExpectedAlert {
        alert: alert.into(),
        state: ExpectedState::Firing,
        within: Duration::from_secs(10),
        labels: Default::default(),
        before: None,
    }
}

#[tokio::test]
async fn an_expected_alert_already_firing_before_the_fault_fails_the_run() {
    let log = CallLog::default();
    let ok = SwitchProbe::new(Behaviour::Succeed);
    let mut plan = plan(&log, &ok, &ok);
    let alerts = FakeAlerts::default();
    // A rule that fires whatever happens: it must not pass as detection.
    alerts.set(&[("AlwaysFiring", "firing")]);
    plan.alerts = Some(Arc::new(alerts));
    plan.expected_alerts = vec![expect_firing("AlwaysFiring")];
    let journal = run(plan, bindings()).await.unwrap();
    assert_eq!(journal.verdict, Verdict::Failed, "{:?}", journal.reasons);
    assert!(!journal.expected_alerts[0].met);
    assert!(
        journal
            .reasons
            .iter()
            .any(|r| r.contains("AlwaysFiring") && r.contains("already firing before the fault")),
        "{:?}",
        journal.reasons
    );
}

#[tokio::test]
async fn an_alert_neither_expected_nor_allowed_fails_the_run() {
    let log = CallLog::default();
    let ok = SwitchProbe::new(Behaviour::Succeed);
    let alerts = FakeAlerts::default();
    let with_alerts = |allowed: Vec<AllowedAlert>| {
        let mut plan = plan(&log, &ok, &ok);
        plan.alerts = Some(Arc::new(alerts.clone()));
        plan.allowed_alerts = allowed;
        plan
    };
    alerts.set(&[("Watchdog", "firing"), ("SideEffect", "firing")]);
    let journal = run(with_alerts(Vec::new()), bindings()).await.unwrap();
    assert_eq!(journal.verdict, Verdict::Failed, "{:?}", journal.reasons);
    assert_eq!(
        journal.unexpected_alerts.len(),
        1,
        "Watchdog is never unexpected"
    );
    assert_eq!(journal.unexpected_alerts[0].alert, "SideEffect");
    assert!(
        journal.reasons.iter().any(|r| r.contains("SideEffect")),
        "{:?}",
        journal.reasons
    );
    let allowed = AllowedAlert {
        alert: "SideEffect".into(),
        labels: Default::default(),
        reason: "a true side effect".into(),
    };
    let journal = run(with_alerts(vec![allowed]), bindings()).await.unwrap();
    assert_eq!(journal.verdict, Verdict::Passed, "{:?}", journal.reasons);
    assert!(journal.unexpected_alerts.is_empty());
}

#[tokio::test]
async fn eventually_probes_are_due_from_the_first_injection() {
    let log = CallLog::default();
    let ok = SwitchProbe::new(Behaviour::Succeed);
    let mut plan = plan(&log, &ok, &ok);
    plan.faults = vec![fault(FakeFault::new("late", &log), 200, Some(100))];
    plan.during = vec![during("effect seen", &ok, Must::Eventually)];
    let journal = run(plan, bindings()).await.unwrap();
    assert_eq!(journal.verdict, Verdict::Passed, "{:?}", journal.reasons);
    let fault_start = journal.fault_window.as_ref().unwrap().start_s;
    let first = journal
        .steady_states
        .during
        .iter()
        .find(|a| a.activity.name == "effect seen")
        .unwrap();
    assert!(
        first.start_s >= fault_start,
        "evaluated at {} s, before the fault at {fault_start} s",
        first.start_s
    );
}

/// A probe that measures from the fault: it fails when evaluated before one
/// was injected, as a query on `$__fault_range` would.
#[derive(Debug)]
struct SinceTheFault;

#[async_trait::async_trait]
impl faultline_chaos::probes::Probe for SinceTheFault {
    fn kind(&self) -> &'static str {
        "fake"
    }

    async fn check(
        &self,
        cx: &faultline_chaos::probes::ProbeContext,
    ) -> Result<faultline_chaos::probes::Observation, faultline_chaos::probes::ProbeError> {
        Ok(faultline_chaos::probes::Observation::new(
            cx.fault_start_unix_ms.is_some(),
            serde_json::Value::Null,
            "since the fault",
        ))
    }

    fn counts_from_the_fault(&self) -> bool {
        true
    }
}

#[tokio::test]
async fn always_probes_that_count_from_the_fault_are_due_from_the_first_injection() {
    let log = CallLog::default();
    let ok = SwitchProbe::new(Behaviour::Succeed);
    let mut plan = plan(&log, &ok, &ok);
    plan.faults = vec![fault(FakeFault::new("late", &log), 200, Some(100))];
    plan.during = vec![PlannedDuring {
        name: "nothing since the fault".to_owned(),
        every: Duration::from_millis(20),
        must: Must::Always,
        abort: true,
        probe: Arc::new(SinceTheFault),
    }];
    let journal = run(plan, bindings()).await.unwrap();
    assert_eq!(journal.verdict, Verdict::Passed, "{:?}", journal.reasons);
    let fault_start = journal.fault_window.as_ref().unwrap().start_s;
    let evaluations: Vec<f64> = journal
        .steady_states
        .during
        .iter()
        .filter(|a| a.activity.name == "nothing since the fault")
        .map(|a| a.start_s)
        .collect();
    assert!(!evaluations.is_empty(), "it was evaluated");
    assert!(
        evaluations.iter().all(|&at| at >= fault_start),
        "evaluated at {evaluations:?}, the fault at {fault_start} s"
    );
}
