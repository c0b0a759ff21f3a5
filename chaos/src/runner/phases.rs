//! [`run_plan`], phase by phase.
//!
//! Each phase is a function that reads the [`Run`], adds what it did to the
//! [`Findings`] (the journal's parts) and what went wrong to the
//! [`Verdicts`]. [`run_plan`] calls them in order:
//!
//! 1. [`Background::start`]: the load and the alert watcher, for the whole run;
//! 2. [`warmup`];
//! 3. [`steady_state_before`]: the hypothesis, and the alerts right before
//!    the faults; the method runs only if both hold;
//! 4. [`method_and_rollback`]: the faults on their schedule, then their
//!    reverts and the rollback actions, under a [`RollbackGuard`];
//! 5. [`recovery`]: the steady state again, within the recovery deadline;
//! 6. [`expected_alerts`]: each expected alert decided;
//! 7. [`Background::stop_load`]: the load's report;
//! 8. [`after`]: the after-probes, which may read that report;
//! 9. [`Background::stop_alerts`]: the evidence, then the unexpected alerts;
//! 10. [`Findings::into_journal`]: the verdict and the journal.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use futures::FutureExt;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::alerts::{self, AlertLog, Anchors, Decision};
use super::guard::{ActiveSet, RollbackGuard};
use super::method::{self, MethodEnd, MethodResult};
use super::record::{Clock, Recorder};
use super::{Bindings, LedgerDir, Plan, Run, RunEvent, panic_message};
use crate::journal::*;
use crate::ledger::Ledger;
use crate::probes::Timeline;
use crate::probes::prometheus::AlertSource;

/// Runs a plan to the end and returns its journal.
pub async fn run_plan(plan: Plan, bindings: Bindings) -> Journal {
    let clock = Clock::start();
    let recorder = Recorder::new(clock, bindings.events.clone());
    let run_id = format!(
        "{}-{}",
        clock.start_unix_ms() / 1000,
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let ledger = Arc::new(open_ledger(&bindings.ledger, &run_id, &plan.info.title));
    let run = Run {
        plan,
        recorder,
        timeline: Timeline::default(),
        cancel: bindings.cancel.clone(),
        ledger,
        active: ActiveSet::default(),
        fault_start_s: std::sync::OnceLock::new(),
        guardian: bindings.guardian.clone(),
    };
    let mut verdicts = Verdicts::default();
    let mut findings = Findings::default();

    let mut background = Background::start(&run, &bindings);
    warmup(&run, &mut verdicts).await;
    let method_ran = !verdicts.interrupted
        && steady_state_before(&run, &background, &mut findings, &mut verdicts).await;
    if method_ran {
        let (anchors, rollback_end_s) =
            method_and_rollback(&run, &mut findings, &mut verdicts).await;
        if !verdicts.interrupted {
            recovery(&run, rollback_end_s, &mut findings, &mut verdicts).await;
        }
        if !run.plan.expected_alerts.is_empty() {
            expected_alerts(
                &run,
                &background.alert_log,
                anchors,
                &mut findings,
                &mut verdicts,
            )
            .await;
        }
    }
    let report = background
        .stop_load(&run, &mut findings, &mut verdicts)
        .await;
    if method_ran && !verdicts.interrupted && !run.plan.after.is_empty() {
        after(&run, report, &mut findings, &mut verdicts).await;
    }
    background
        .stop_alerts(&run, &mut findings, &mut verdicts)
        .await;
    findings.into_journal(&run, run_id, verdicts)
}

/// The run's ledger: where [`LedgerDir`] says, or nowhere.
fn open_ledger(dir: &LedgerDir, run_id: &str, title: &str) -> Ledger {
    let dir = match dir {
        LedgerDir::Default => Some(crate::ledger::default_dir()),
        LedgerDir::Disabled => None,
        LedgerDir::At(dir) => Some(dir.clone()),
    };
    Ledger::new(dir.as_deref(), run_id, title)
}

/// How the run is going.
#[derive(Debug, Default)]
struct Verdicts {
    deviated: bool,
    failed: bool,
    aborted: bool,
    /// An `[[abort_when]]` limit was crossed.
    tripped: bool,
    interrupted: bool,
    reasons: Vec<String>,
}

impl Verdicts {
    fn deviate(&mut self, reason: String) {
        self.deviated = true;
        self.failed = true;
        self.reasons.push(reason);
    }
    fn fail(&mut self, reason: String) {
        self.failed = true;
        self.reasons.push(reason);
    }
    fn abort(&mut self, reason: String) {
        self.aborted = true;
        self.reasons.push(reason);
    }
    fn trip(&mut self, reason: String) {
        self.tripped = true;
        self.reasons.push(reason);
    }
    fn interrupt(&mut self) {
        if !self.interrupted {
            self.interrupted = true;
            self.reasons.push("interrupted".to_owned());
        }
    }

    fn status(&self) -> (Status, Verdict) {
        if self.interrupted {
            (Status::Interrupted, Verdict::Interrupted)
        } else if self.tripped {
            (Status::Aborted, Verdict::Aborted)
        } else if self.aborted {
            (Status::Aborted, Verdict::Error)
        } else if self.failed {
            (Status::Failed, Verdict::Failed)
        } else {
            (Status::Completed, Verdict::Passed)
        }
    }
}

/// What the phases found: the parts of the journal.
#[derive(Debug, Default)]
struct Findings {
    steady_states: SteadyStates,
    run: Vec<Activity>,
    rollbacks: Vec<Activity>,
    after: Vec<Activity>,
    fault_window: Option<Interval>,
    recovery: Option<RecoveryRecord>,
    expectations: Vec<AlertExpectationRecord>,
    load: Option<LoadRecord>,
    failed_requests: Vec<FailedRequestRecord>,
    evidence: Option<Evidence>,
    alerts_seen: Vec<AlertSeen>,
    unexpected_alerts: Vec<UnexpectedAlert>,
}

impl Findings {
    /// The verdict, and the journal of the run.
    fn into_journal(self, run: &Run, run_id: String, verdicts: Verdicts) -> Journal {
        let recorder = &run.recorder;
        let (status, verdict) = verdicts.status();
        let phases = recorder.phases();
        let end_s = recorder.clock.now_s();
        let journal = Journal {
            schema: JOURNAL_SCHEMA,
            faultline_version: env!("CARGO_PKG_VERSION").to_owned(),
            run_id,
            experiment: run.plan.info.clone(),
            // Database URLs may hold passwords: the journal shows them as ***.
            environment: run.plan.environment.redacted(),
            start: recorder.clock.rfc3339(0.0),
            end: recorder.clock.rfc3339(end_s),
            start_unix_ms: recorder.clock.start_unix_ms(),
            duration: end_s,
            status,
            deviated: verdicts.deviated,
            verdict,
            reasons: verdicts.reasons,
            notes: recorder.notes(),
            guardian: run.guardian.clone(),
            steady_states: self.steady_states,
            run: self.run,
            rollbacks: self.rollbacks,
            after: self.after,
            phases,
            fault_window: self.fault_window,
            expected_alerts: self.expectations,
            alerts_seen: self.alerts_seen,
            unexpected_alerts: self.unexpected_alerts,
            recovery: self.recovery,
            load: self.load,
            failed_requests: self.failed_requests,
            evidence: self.evidence,
        };
        recorder.emit(RunEvent::Note(format!("verdict: {}", verdict.as_str())));
        journal
    }
}

/// What runs for the whole experiment: the load and the alert watcher.
struct Background {
    load_cancel: CancellationToken,
    load_task: Option<JoinHandle<Result<faultline_loadgen::Report, String>>>,
    alert_source: Option<Arc<dyn AlertSource>>,
    alert_log: AlertLog,
    alert_stop: CancellationToken,
    watcher: Option<JoinHandle<()>>,
}

impl Background {
    fn start(run: &Run, bindings: &Bindings) -> Self {
        let plan = &run.plan;
        let load_cancel = CancellationToken::new();
        let load_task = plan.load.clone().map(|load| {
            let timeline = run.timeline.clone();
            let recorder = run.recorder.clone();
            let cancel = load_cancel.clone();
            tokio::spawn(async move {
                let sink = Box::new(move |window: &faultline_loadgen::Window| {
                    recorder.emit(RunEvent::Load(load_point(window, &recorder.clock)));
                    timeline.push(window.clone());
                });
                load.run(cancel, sink).await
            })
        });
        let alert_log = AlertLog::default();
        let alert_stop = CancellationToken::new();
        let alert_source = bindings.alerts.clone().or_else(|| plan.alerts.clone());
        let watcher = alert_source.clone().map(|source| {
            tokio::spawn(alerts::watch(
                source,
                plan.settings.alert_poll_interval,
                alert_log.clone(),
                run.recorder.clone(),
                alert_stop.clone(),
            ))
        });
        Self {
            load_cancel,
            load_task,
            alert_source,
            alert_log,
            alert_stop,
            watcher,
        }
    }

    /// Stops the load and records it; returns its report, which feeds the
    /// after-probes.
    async fn stop_load(
        &mut self,
        run: &Run,
        findings: &mut Findings,
        verdicts: &mut Verdicts,
    ) -> Option<Arc<faultline_loadgen::Report>> {
        self.load_cancel.cancel();
        let task = self.load_task.take()?;
        let clock = run.recorder.clock;
        let timeline: Vec<LoadPoint> = run
            .timeline
            .snapshot()
            .iter()
            .map(|w| load_point(w, &clock))
            .collect();
        let result = match task.await {
            Ok(result) => result,
            Err(err) => Err(format!("the load task failed: {err}")),
        };
        let mut record = LoadRecord {
            timeline,
            totals: None,
            routes: Default::default(),
            acknowledged_orders: 0,
            idempotency_violations: 0,
            failed_requests_total: 0,
            error: None,
        };
        let mut report = None;
        match result {
            Ok(loadgen_report) => {
                record.totals = Some(loadgen_report.totals.clone());
                record.routes = loadgen_report
                    .routes
                    .iter()
                    .map(|(route, summary)| (route.template().to_owned(), summary.clone()))
                    .collect();
                record.acknowledged_orders = loadgen_report.checkouts.acknowledged;
                record.idempotency_violations = loadgen_report.checkouts.idempotency_violations;
                record.failed_requests_total = loadgen_report.failed_requests_total;
                findings.failed_requests = loadgen_report
                    .failed_requests
                    .iter()
                    .map(|f| FailedRequestRecord {
                        trace_id: f.trace_id.clone(),
                        route: f.route.template().to_owned(),
                        status: f.status,
                        error: f.error.clone(),
                        detail: f.detail.clone(),
                        at_s: (f.at_unix_ms as f64 - clock.start_unix_ms() as f64) / 1000.0,
                    })
                    .collect();
                report = Some(Arc::new(loadgen_report));
            }
            Err(err) => {
                verdicts.abort(format!("the load failed: {err}"));
                record.error = Some(err);
            }
        }
        findings.load = Some(record);
        report
    }

    /// Gathers the evidence, stops the alert watcher, and fails the run on
    /// alerts that fired unexpected.
    async fn stop_alerts(self, run: &Run, findings: &mut Findings, verdicts: &mut Verdicts) {
        let plan = &run.plan;
        findings.evidence = crate::evidence::gather(
            &plan.environment,
            &findings.expectations,
            &self.alert_log.seen(),
            run.recorder.clock.start_unix_ms(),
            &run.cancel,
        )
        .await;
        self.alert_stop.cancel();
        let watched = self.watcher.is_some();
        if let Some(watcher) = self.watcher {
            let _ = watcher.await;
        }
        findings.alerts_seen = self.alert_log.seen();
        findings.unexpected_alerts = if watched {
            alerts::unexpected(
                &findings.alerts_seen,
                &plan.expected_alerts,
                &plan.allowed_alerts,
            )
        } else {
            Vec::new()
        };
        if !verdicts.interrupted {
            for alert in &findings.unexpected_alerts {
                verdicts.fail(alerts::unexpected_reason(alert));
            }
        }
    }
}

/// Waits out the warmup, if any.
async fn warmup(run: &Run, verdicts: &mut Verdicts) {
    if run.plan.settings.warmup.is_zero() {
        return;
    }
    run.recorder.phase("warmup");
    tokio::select! {
        () = run.cancel.cancelled() => verdicts.interrupt(),
        () = tokio::time::sleep(run.plan.settings.warmup) => {}
    }
}

/// The steady state before the faults, then the alerts as they stand right
/// before them: an expected alert already firing then proves nothing.
/// Whether the method may run.
async fn steady_state_before(
    run: &Run,
    background: &Background,
    findings: &mut Findings,
    verdicts: &mut Verdicts,
) -> bool {
    run.recorder.phase("steady_state");
    let Some(before) = run.steady_state("steady_state_before").await else {
        verdicts.interrupt();
        return false;
    };
    if !before.steady_state_met {
        verdicts.fail("the steady state did not hold before the faults".to_owned());
    }
    let met = before.steady_state_met;
    findings.steady_states.before = Some(before);
    if !met {
        return false;
    }
    if let Some(source) = &background.alert_source
        && let Err(reason) = background
            .alert_log
            .read_before_faults(source, &run.recorder, run.plan.settings.probe_timeout)
            .await
    {
        verdicts.fail(reason);
        return false;
    }
    true
}

/// The method, then the rollback: every active fault reverted, then the
/// rollback actions. A [`RollbackGuard`] reverts them if the run is dropped
/// in between. Returns the alerts' anchors and when the rollback ended.
async fn method_and_rollback(
    run: &Run,
    findings: &mut Findings,
    verdicts: &mut Verdicts,
) -> (Anchors, f64) {
    let plan = &run.plan;
    let mut guard = RollbackGuard::new(
        run.active.clone(),
        plan.rollbacks.clone(),
        run.ledger.clone(),
        plan.settings.action_timeout,
    );
    // Leases are renewed while the method runs, and no longer: the
    // rollback reverts the faults at once after it.
    let stop_leases = CancellationToken::new();
    let (method, ()) = tokio::join!(
        async {
            let method = method(run, findings, verdicts).await;
            stop_leases.cancel();
            method
        },
        super::lease::keep(run, stop_leases.clone())
    );

    run.recorder.phase("rollback");
    let (reverts, rollbacks, problems, not_effective) = run.roll_back(method.ran_to_the_end).await;
    guard.disarm();
    let last_revert_s = reverts
        .iter()
        .map(|a| a.end_s)
        .fold(method.last_revert_s, |a, b| {
            Some(a.map_or(b, |a: f64| a.max(b)))
        });
    findings.run.extend(reverts);
    findings.rollbacks = rollbacks;
    for problem in problems {
        verdicts.abort(problem);
    }
    for reason in not_effective {
        verdicts.deviate(reason);
    }
    let rollback_end_s = run.recorder.clock.now_s();
    let anchors = Anchors {
        fault_start_s: method.first_injection_s,
        rollback_end_s: Some(rollback_end_s),
        faults_end_s: last_revert_s,
    };
    if let (Some(start_s), Some(end_s)) = (anchors.fault_start_s, last_revert_s) {
        findings.fault_window = Some(Interval {
            name: "faults".to_owned(),
            start_s,
            end_s,
        });
    }
    (anchors, rollback_end_s)
}

/// The faults on their schedule, with the probes during them; a panic is an
/// abort. Returns what the method did, its activities already recorded.
async fn method(run: &Run, findings: &mut Findings, verdicts: &mut Verdicts) -> MethodResult {
    run.recorder.phase("method");
    let method = AssertUnwindSafe(method::run_method(run))
        .catch_unwind()
        .await;
    let mut method = match method {
        Ok(method) => method,
        Err(panic) => MethodResult {
            end: MethodEnd::Aborted(format!(
                "the method panicked: {}",
                panic_message(panic.as_ref())
            )),
            ..MethodResult::default()
        },
    };
    findings.run.append(&mut method.actions);
    findings.steady_states.during.append(&mut method.probes);
    method.ran_to_the_end = matches!(method.end, MethodEnd::Completed | MethodEnd::Deviated(_));
    match std::mem::take(&mut method.end) {
        MethodEnd::Completed => {}
        MethodEnd::Deviated(reasons) => {
            for reason in reasons {
                verdicts.deviate(reason);
            }
        }
        MethodEnd::Aborted(reason) => verdicts.abort(reason),
        MethodEnd::Tripped(reason) => verdicts.trip(reason),
        MethodEnd::Interrupted => verdicts.interrupt(),
    }
    method
}

/// The steady state (and the recovery probes) again, until it holds or the
/// recovery deadline passes.
async fn recovery(
    run: &Run,
    rollback_end_s: f64,
    findings: &mut Findings,
    verdicts: &mut Verdicts,
) {
    run.recorder.phase("recovery");
    match run.recover(rollback_end_s).await {
        None => verdicts.interrupt(),
        Some((after, record)) => {
            if !record.recovered {
                verdicts.deviate(format!(
                    "the steady state did not come back within {}",
                    crate::experiment::duration::render(run.plan.recovery_deadline)
                ));
            }
            findings.steady_states.after = Some(after);
            findings.recovery = Some(record);
        }
    }
}

/// Waits until each expected alert is decided (or the run is interrupted),
/// and records each one, then their order.
async fn expected_alerts(
    run: &Run,
    alert_log: &AlertLog,
    anchors: Anchors,
    findings: &mut Findings,
    verdicts: &mut Verdicts,
) {
    let plan = &run.plan;
    let grace = plan.settings.alert_poll_interval.as_secs_f64();
    let decisions = loop {
        let now = run.recorder.clock.now_s();
        let seen = alert_log.seen();
        let decisions: Vec<Decision> = plan
            .expected_alerts
            .iter()
            .map(|e| alerts::decide(e, &seen, anchors, now, grace))
            .collect();
        if verdicts.interrupted || decisions.iter().all(|d| *d != Decision::Undecided) {
            break decisions;
        }
        tokio::select! {
            () = run.cancel.cancelled() => verdicts.interrupt(),
            () = tokio::time::sleep(plan.settings.alert_poll_interval) => {}
        }
    };
    for (expect, decision) in plan.expected_alerts.iter().zip(&decisions) {
        let record = alerts::record(expect, decision, anchors);
        if !record.met && !verdicts.interrupted {
            let mut reason = format!(
                "alert {} was not {} within {}: {}",
                record.alert,
                record.state,
                crate::experiment::duration::render(expect.within),
                record.note
            );
            if let Some(err) = alert_log.last_error() {
                reason.push_str(&format!(" (last error reading alerts: {err})"));
            }
            verdicts.fail(reason);
        }
        findings.expectations.push(record);
    }
    if !verdicts.interrupted {
        for reason in alerts::check_order(&mut findings.expectations) {
            verdicts.fail(reason);
        }
    }
}

/// The after-probes, each until it passes within its `within` (the recovery
/// deadline by default); they may read the load's final `report`.
async fn after(
    run: &Run,
    report: Option<Arc<faultline_loadgen::Report>>,
    findings: &mut Findings,
    verdicts: &mut Verdicts,
) {
    let plan = &run.plan;
    run.recorder.phase("after");
    let start_s = run.recorder.clock.now_s();
    let mut cx = run.cx(start_s);
    cx.report = report;
    let checks = plan.after.iter().map(|probe| {
        run.until_passes(
            probe,
            Some(probe.within.unwrap_or(plan.recovery_deadline)),
            "after",
            &cx,
        )
    });
    let Some(activities) = futures::future::join_all(checks)
        .await
        .into_iter()
        .collect::<Option<Vec<_>>>()
    else {
        verdicts.interrupt();
        return;
    };
    for activity in activities
        .iter()
        .filter(|a| a.status == ActivityStatus::Failed)
    {
        verdicts.deviate(format!(
            "after-probe {} failed: {}",
            activity.activity.name,
            activity
                .exception
                .clone()
                .unwrap_or_else(|| activity.detail.clone())
        ));
    }
    findings.after = activities;
}

/// One load window as a point of the journal's load timeline.
fn load_point(window: &faultline_loadgen::Window, clock: &Clock) -> LoadPoint {
    let end_unix_ms = window.start_unix_ms as f64
        + (window.end_offset_s - window.start_offset_s).max(0.0) * 1000.0;
    let t_s = (end_unix_ms - clock.start_unix_ms() as f64) / 1000.0;
    let totals = &window.totals;
    LoadPoint {
        t_s,
        requests: totals.count,
        errors: totals.errors,
        error_ratio: totals.error_ratio,
        p50_ms: totals.latency_ms.p50,
        p95_ms: totals.latency_ms.p95,
        p99_ms: totals.latency_ms.p99,
        rate_limited: totals.rate_limited,
        degraded: totals.degraded,
    }
}
