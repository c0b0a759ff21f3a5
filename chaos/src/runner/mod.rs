//! The run loop: check the steady state → inject the faults on their
//! schedule while probing → roll back → check recovery within the deadline →
//! run the after-probes → verdict, recorded in a [`Journal`].
//!
//! Rollback always happens once the method has started: after a failed
//! probe, an action error, a cancellation (Ctrl-C, SIGTERM, the caller's
//! token), a panic in an action or probe (each call runs under
//! `catch_unwind`), and when the run's future is dropped (a
//! [`guard::RollbackGuard`] reverts synchronously). Faults are written to the
//! [`Ledger`] before they are injected, so `faultline cleanup` can revert a
//! run that was killed outright.
//!
//! [`compile`] turns an [`Experiment`] into a [`Plan`] of trait objects;
//! tests can build a [`Plan`] from fakes and call [`run_plan`].

pub mod alerts;
pub mod compile;
pub mod guard;
mod method;
pub mod record;

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use serde_json::Value;
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

use crate::actions::load::LoadSource;
use crate::actions::{Action, ActionError, Fault};
use crate::environment::Environment;
use crate::experiment::{AllowedAlert, ExpectedAlert, Experiment, ExperimentError, Must, Settings};
use crate::journal::*;
use crate::ledger::Ledger;
use crate::platform::Platform;
use crate::probes::prometheus::AlertSource;
use crate::probes::{Observation, Probe, ProbeContext, ProbeError, Timeline};
use alerts::{AlertLog, Anchors, Decision};
use guard::{ActiveSet, RollbackGuard};
use record::{Clock, Outcome, Recorder};

pub use compile::{CompileError, compile};

/// A probe with its name and retry window.
#[derive(Debug, Clone)]
pub struct PlannedProbe {
    pub name: String,
    /// Retry until it passes for this long; `None`: once.
    pub within: Option<Duration>,
    pub probe: Arc<dyn Probe>,
}

/// A probe evaluated during the method.
#[derive(Debug, Clone)]
pub struct PlannedDuring {
    pub name: String,
    pub every: Duration,
    pub must: Must,
    pub abort: bool,
    pub probe: Arc<dyn Probe>,
}

/// A fault on the method's schedule.
#[derive(Debug, Clone)]
pub struct PlannedFault {
    pub name: String,
    pub at: Duration,
    pub duration: Option<Duration>,
    pub fault: Arc<dyn Fault>,
}

/// A rollback action.
#[derive(Debug, Clone)]
pub struct PlannedAction {
    pub name: String,
    pub action: Arc<dyn Action>,
}

/// An experiment ready to run: every probe and action resolved.
#[derive(Debug, Clone)]
pub struct Plan {
    pub info: ExperimentInfo,
    pub environment: Environment,
    pub settings: Settings,
    pub load: Option<Arc<dyn LoadSource>>,
    pub steady_state: Vec<PlannedProbe>,
    pub method_duration: Duration,
    pub faults: Vec<PlannedFault>,
    pub during: Vec<PlannedDuring>,
    pub rollbacks: Vec<PlannedAction>,
    pub recovery_deadline: Duration,
    pub recovery: Vec<PlannedProbe>,
    pub after: Vec<PlannedProbe>,
    pub expected_alerts: Vec<ExpectedAlert>,
    /// Alerts that may fire besides the expected ones.
    pub allowed_alerts: Vec<AllowedAlert>,
    pub alerts: Option<Arc<dyn AlertSource>>,
}

impl Plan {
    /// An empty plan: no probes, no faults, a 1 s method, default settings.
    pub fn new(title: &str) -> Self {
        Self {
            info: ExperimentInfo {
                title: title.to_owned(),
                description: String::new(),
                tags: Vec::new(),
                path: None,
                spec: Value::Null,
            },
            environment: Environment::default(),
            settings: Settings::default(),
            load: None,
            steady_state: Vec::new(),
            method_duration: Duration::from_secs(1),
            faults: Vec::new(),
            during: Vec::new(),
            rollbacks: Vec::new(),
            recovery_deadline: Duration::from_secs(60),
            recovery: Vec::new(),
            after: Vec::new(),
            expected_alerts: Vec::new(),
            allowed_alerts: Vec::new(),
            alerts: None,
        }
    }
}

/// Progress of a run, for live output.
#[derive(Debug, Clone)]
pub enum RunEvent {
    Phase {
        name: String,
        at_s: f64,
    },
    Activity(Box<Activity>),
    Alert {
        alert: String,
        state: String,
        at_s: f64,
    },
    Load(LoadPoint),
    Note(String),
}

/// Where the ledger of active faults goes.
#[derive(Debug, Clone, Default)]
pub enum LedgerDir {
    /// [`crate::ledger::default_dir`].
    #[default]
    Default,
    /// Keep nothing on disk.
    Disabled,
    At(PathBuf),
}

/// What the caller binds a run to: endpoint overrides, cancellation, where
/// to report progress. A test harness fills `environment` with the ports of
/// the stack it started.
#[derive(Debug, Clone, Default)]
pub struct Bindings {
    /// Overrides of the experiment's `[target]`.
    pub environment: Environment,
    /// Cancels the run (rollback still happens).
    pub cancel: CancellationToken,
    pub ledger: LedgerDir,
    /// Progress events.
    pub events: Option<UnboundedSender<RunEvent>>,
    /// Container platform to use instead of connecting to Docker.
    pub platform: Option<Arc<dyn Platform>>,
    /// Alert source to use instead of the target's Prometheus.
    pub alerts: Option<Arc<dyn AlertSource>>,
}

/// An experiment to run: a file, or one already parsed.
#[derive(Debug, Clone)]
pub enum ExperimentSource {
    Path(PathBuf),
    Experiment(Box<Experiment>),
}

impl From<PathBuf> for ExperimentSource {
    fn from(path: PathBuf) -> Self {
        ExperimentSource::Path(path)
    }
}
impl From<&std::path::Path> for ExperimentSource {
    fn from(path: &std::path::Path) -> Self {
        ExperimentSource::Path(path.to_owned())
    }
}
impl From<&str> for ExperimentSource {
    fn from(path: &str) -> Self {
        ExperimentSource::Path(PathBuf::from(path))
    }
}
impl From<Experiment> for ExperimentSource {
    fn from(experiment: Experiment) -> Self {
        ExperimentSource::Experiment(Box::new(experiment))
    }
}

/// Why a run could not start. Once started, a run always gives a journal.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Experiment(#[from] ExperimentError),
    #[error(transparent)]
    Compile(#[from] CompileError),
}

/// Loads, compiles and runs an experiment against the bound environment.
pub async fn run_experiment(
    source: impl Into<ExperimentSource>,
    bindings: Bindings,
) -> Result<Journal, RunError> {
    let (experiment, path) = match source.into() {
        ExperimentSource::Path(path) => (Experiment::load(&path)?, Some(path)),
        ExperimentSource::Experiment(experiment) => (*experiment, None),
    };
    let plan = compile(&experiment, path.as_deref(), &bindings)?;
    Ok(run_plan(plan, bindings).await)
}

/// Runs `future` with a timeout, turning a panic into an error.
pub(crate) async fn invoke<T>(
    timeout: Duration,
    future: impl Future<Output = Result<T, ActionError>>,
) -> Result<T, ActionError> {
    match tokio::time::timeout(timeout, AssertUnwindSafe(future).catch_unwind()).await {
        Ok(Ok(result)) => result,
        Ok(Err(panic)) => Err(ActionError::Panicked(panic_message(panic.as_ref()))),
        Err(_) => Err(ActionError::Timeout(timeout)),
    }
}

pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = panic.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = panic.downcast_ref::<String>() {
        text.clone()
    } else {
        "panic".to_owned()
    }
}

/// Evaluates a probe once, with a timeout, a panic turned into an error.
pub(crate) async fn observe(
    probe: &Arc<dyn Probe>,
    cx: &ProbeContext,
    timeout: Duration,
) -> Result<Observation, ProbeError> {
    let probe = probe.clone();
    match tokio::time::timeout(timeout, AssertUnwindSafe(probe.check(cx)).catch_unwind()).await {
        Ok(Ok(result)) => result,
        Ok(Err(panic)) => Err(ProbeError::Panicked(panic_message(panic.as_ref()))),
        Err(_) => Err(ProbeError::Timeout(timeout)),
    }
}

pub(crate) fn probe_outcome(result: Result<Observation, ProbeError>, attempts: u32) -> Outcome {
    match result {
        Ok(observation) => Outcome {
            ok: observation.ok,
            output: observation.value,
            detail: if attempts > 1 {
                format!("{} (attempt {attempts})", observation.detail)
            } else {
                observation.detail
            },
            exception: None,
            tolerance_met: Some(observation.ok),
        },
        Err(err) => Outcome {
            ok: false,
            output: Value::Null,
            detail: if attempts > 1 {
                format!("attempt {attempts}")
            } else {
                String::new()
            },
            exception: Some(err.to_string()),
            tolerance_met: Some(false),
        },
    }
}

/// Shared state of one run.
pub(crate) struct Run {
    pub plan: Plan,
    pub recorder: Recorder,
    pub timeline: Timeline,
    pub cancel: CancellationToken,
    pub ledger: Arc<Ledger>,
    pub active: ActiveSet,
    /// When the first fault was injected (seconds since the start).
    pub fault_start_s: std::sync::OnceLock<f64>,
}

impl Run {
    pub fn cx(&self, phase_start_s: f64) -> ProbeContext {
        ProbeContext {
            timeline: self.timeline.clone(),
            phase_start_unix_ms: self.recorder.clock.unix_ms_at(phase_start_s),
            report: None,
            fault_start_unix_ms: self
                .fault_start_s
                .get()
                .map(|s| self.recorder.clock.unix_ms_at(*s)),
        }
    }

    /// Evaluates a probe until it passes or `within` ends (once without
    /// one). `None` when cancelled.
    async fn until_passes(
        &self,
        probe: &PlannedProbe,
        within: Option<Duration>,
        step: &str,
        cx: &ProbeContext,
    ) -> Option<Activity> {
        let clock = self.recorder.clock;
        let started = clock.now_s();
        let deadline = within.map(|w| clock.instant(started) + w);
        let mut attempts = 0;
        loop {
            attempts += 1;
            let start_s = clock.now_s();
            let result = tokio::select! {
                () = self.cancel.cancelled() => return None,
                result = observe(&probe.probe, cx, self.plan.settings.probe_timeout) => result,
            };
            let outcome = probe_outcome(result, attempts);
            let done = outcome.ok
                || deadline.is_none_or(|d| {
                    tokio::time::Instant::now() + self.plan.settings.probe_interval > d
                });
            if done {
                return Some(self.recorder.activity(
                    ActivityType::Probe,
                    &probe.name,
                    probe.probe.kind(),
                    step,
                    start_s,
                    outcome,
                ));
            }
            tokio::select! {
                () = self.cancel.cancelled() => return None,
                () = tokio::time::sleep(self.plan.settings.probe_interval) => {}
            }
        }
    }

    /// The steady-state probes, each until it passes within its `within`.
    async fn steady_state(&self, step: &str) -> Option<SteadyStateRecord> {
        let start_s = self.recorder.clock.now_s();
        let cx = self.cx(start_s);
        let checks = self
            .plan
            .steady_state
            .iter()
            .map(|probe| self.until_passes(probe, probe.within, step, &cx));
        let probes: Option<Vec<Activity>> = futures::future::join_all(checks)
            .await
            .into_iter()
            .collect();
        let probes = probes?;
        Some(SteadyStateRecord {
            steady_state_met: probes.iter().all(|a| a.status == ActivityStatus::Succeeded),
            probes,
        })
    }

    /// Reverts every active fault, then runs the rollbacks; never cancelled.
    async fn roll_back(&self) -> (Vec<Activity>, Vec<Activity>, Vec<String>) {
        let timeout = self.plan.settings.action_timeout;
        let mut reverts = Vec::new();
        let mut problems = Vec::new();
        for active in self.active.drain_reversed() {
            let start_s = self.recorder.clock.now_s();
            let fault = active.fault.clone();
            let prepared = active.prepared.clone();
            let result = invoke(timeout, async move { fault.revert(&prepared).await }).await;
            if result.is_ok()
                && let Err(err) = self.ledger.clear(&active.name)
            {
                problems.push(err.to_string());
            }
            if let Err(err) = &result {
                problems.push(format!("reverting {} failed: {err}", active.name));
            }
            reverts.push(self.recorder.activity(
                ActivityType::Action,
                &active.name,
                active.fault.kind(),
                "revert",
                start_s,
                action_outcome(result),
            ));
        }
        let mut rollbacks = Vec::new();
        for rollback in &self.plan.rollbacks {
            let start_s = self.recorder.clock.now_s();
            let action = rollback.action.clone();
            let result = invoke(timeout, async move { action.run().await }).await;
            if let Err(err) = &result {
                problems.push(format!("rollback {} failed: {err}", rollback.name));
            }
            rollbacks.push(self.recorder.activity(
                ActivityType::Action,
                &rollback.name,
                rollback.action.kind(),
                "rollback",
                start_s,
                action_outcome(result),
            ));
        }
        (reverts, rollbacks, problems)
    }

    /// Steady-state and recovery probes, round after round, until all pass
    /// in one round or the deadline. `None` when cancelled.
    async fn recover(&self, from_s: f64) -> Option<(SteadyStateRecord, RecoveryRecord)> {
        let clock = self.recorder.clock;
        let deadline = clock.instant(from_s) + self.plan.recovery_deadline;
        let probes: Vec<&PlannedProbe> = self
            .plan
            .steady_state
            .iter()
            .chain(self.plan.recovery.iter())
            .collect();
        let mut attempts = 0;
        loop {
            attempts += 1;
            // SLI probes look at the load since the rollbacks ended.
            let cx = self.cx(from_s);
            let evaluations = probes.iter().map(|probe| {
                let cx = &cx;
                async move {
                    let start_s = clock.now_s();
                    let result = observe(&probe.probe, cx, self.plan.settings.probe_timeout).await;
                    (start_s, probe_outcome(result, attempts))
                }
            });
            let results = tokio::select! {
                () = self.cancel.cancelled() => return None,
                results = futures::future::join_all(evaluations) => results,
            };
            let met = results.iter().all(|(_, outcome)| outcome.ok);
            let last_round =
                tokio::time::Instant::now() + self.plan.settings.probe_interval > deadline;
            if met || last_round {
                let now = clock.now_s();
                let activities = probes
                    .iter()
                    .zip(results)
                    .map(|(probe, (start_s, outcome))| {
                        self.recorder.activity(
                            ActivityType::Probe,
                            &probe.name,
                            probe.probe.kind(),
                            "recovery",
                            start_s,
                            outcome,
                        )
                    })
                    .collect();
                return Some((
                    SteadyStateRecord {
                        steady_state_met: met,
                        probes: activities,
                    },
                    RecoveryRecord {
                        deadline_s: self.plan.recovery_deadline.as_secs_f64(),
                        recovered: met,
                        recovery_time_s: met.then(|| record::round_us((now - from_s).max(0.0))),
                    },
                ));
            }
            tokio::select! {
                () = self.cancel.cancelled() => return None,
                () = tokio::time::sleep(self.plan.settings.probe_interval) => {}
            }
        }
    }
}

fn action_outcome(result: Result<Value, ActionError>) -> Outcome {
    match result {
        Ok(output) => Outcome {
            ok: true,
            output,
            detail: String::new(),
            exception: None,
            tolerance_met: None,
        },
        Err(err) => Outcome {
            ok: false,
            output: Value::Null,
            detail: String::new(),
            exception: Some(err.to_string()),
            tolerance_met: None,
        },
    }
}

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

/// How the run is going.
#[derive(Debug, Default)]
struct Verdicts {
    deviated: bool,
    failed: bool,
    aborted: bool,
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
    fn interrupt(&mut self) {
        if !self.interrupted {
            self.interrupted = true;
            self.reasons.push("interrupted".to_owned());
        }
    }
}

/// Runs a plan to the end and returns its journal.
pub async fn run_plan(plan: Plan, bindings: Bindings) -> Journal {
    let clock = Clock::start();
    let recorder = Recorder::new(clock, bindings.events.clone());
    let run_id = format!(
        "{}-{}",
        clock.start_unix_ms() / 1000,
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let ledger_dir = match &bindings.ledger {
        LedgerDir::Default => Some(crate::ledger::default_dir()),
        LedgerDir::Disabled => None,
        LedgerDir::At(dir) => Some(dir.clone()),
    };
    let ledger = Arc::new(Ledger::new(
        ledger_dir.as_deref(),
        &run_id,
        &plan.info.title,
    ));
    let run = Run {
        plan,
        recorder: recorder.clone(),
        timeline: Timeline::default(),
        cancel: bindings.cancel.clone(),
        ledger,
        active: ActiveSet::default(),
        fault_start_s: std::sync::OnceLock::new(),
    };
    let plan = &run.plan;
    let mut verdicts = Verdicts::default();

    // The load and the alert watcher run for the whole experiment.
    let load_cancel = CancellationToken::new();
    let load_task = plan.load.clone().map(|load| {
        let timeline = run.timeline.clone();
        let recorder = recorder.clone();
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
            recorder.clone(),
            alert_stop.clone(),
        ))
    });

    let mut steady_states = SteadyStates::default();
    let mut run_activities = Vec::new();
    let mut rollback_activities = Vec::new();
    let mut after_activities = Vec::new();
    let mut fault_window = None;
    let mut recovery = None;
    let mut expectations = Vec::new();

    if !plan.settings.warmup.is_zero() {
        recorder.phase("warmup");
        tokio::select! {
            () = run.cancel.cancelled() => verdicts.interrupt(),
            () = tokio::time::sleep(plan.settings.warmup) => {}
        }
    }

    let mut method_ran = false;
    let mut anchors = Anchors {
        fault_start_s: None,
        rollback_end_s: None,
        faults_end_s: None,
    };
    if !verdicts.interrupted {
        recorder.phase("steady_state");
        match run.steady_state("steady_state_before").await {
            None => verdicts.interrupt(),
            Some(before) => {
                if !before.steady_state_met {
                    verdicts.fail("the steady state did not hold before the faults".to_owned());
                }
                let mut met = before.steady_state_met;
                steady_states.before = Some(before);
                // The alerts as they stand right before the faults: an
                // expected alert already firing then proves nothing.
                if met
                    && let Some(source) = &alert_source
                    && let Err(reason) = alert_log
                        .read_before_faults(source, &recorder, plan.settings.probe_timeout)
                        .await
                {
                    met = false;
                    verdicts.fail(reason);
                }
                if met {
                    method_ran = true;
                }
            }
        }
    }

    if method_ran {
        let mut guard = RollbackGuard::new(
            run.active.clone(),
            plan.rollbacks.clone(),
            run.ledger.clone(),
            plan.settings.action_timeout,
        );
        recorder.phase("method");
        let method = AssertUnwindSafe(method::run_method(&run))
            .catch_unwind()
            .await;
        let method = match method {
            Ok(method) => method,
            Err(panic) => method::MethodResult {
                end: method::MethodEnd::Aborted(format!(
                    "the method panicked: {}",
                    panic_message(panic.as_ref())
                )),
                ..method::MethodResult::default()
            },
        };
        run_activities.extend(method.actions);
        steady_states.during.extend(method.probes);
        anchors.fault_start_s = method.first_injection_s;
        match method.end {
            method::MethodEnd::Completed => {}
            method::MethodEnd::Deviated(reasons) => {
                for reason in reasons {
                    verdicts.deviate(reason);
                }
            }
            method::MethodEnd::Aborted(reason) => verdicts.abort(reason),
            method::MethodEnd::Interrupted => verdicts.interrupt(),
        }

        recorder.phase("rollback");
        let (reverts, rollbacks, problems) = run.roll_back().await;
        guard.disarm();
        let last_revert_s = reverts
            .iter()
            .map(|a| a.end_s)
            .fold(method.last_revert_s, |a, b| {
                Some(a.map_or(b, |a: f64| a.max(b)))
            });
        run_activities.extend(reverts);
        rollback_activities = rollbacks;
        for problem in problems {
            verdicts.abort(problem);
        }
        let rollback_end_s = recorder.clock.now_s();
        anchors.rollback_end_s = Some(rollback_end_s);
        anchors.faults_end_s = last_revert_s;
        if let (Some(start_s), Some(end_s)) = (anchors.fault_start_s, last_revert_s) {
            fault_window = Some(Interval {
                name: "faults".to_owned(),
                start_s,
                end_s,
            });
        }

        if !verdicts.interrupted {
            recorder.phase("recovery");
            match run.recover(rollback_end_s).await {
                None => verdicts.interrupt(),
                Some((after, record)) => {
                    if !record.recovered {
                        verdicts.deviate(format!(
                            "the steady state did not come back within {}",
                            crate::experiment::duration::render(plan.recovery_deadline)
                        ));
                    }
                    steady_states.after = Some(after);
                    recovery = Some(record);
                }
            }
        }

        // Expected alerts: wait until each is decided (or interrupted).
        if !plan.expected_alerts.is_empty() {
            let grace = plan.settings.alert_poll_interval.as_secs_f64();
            let decisions = loop {
                let now = recorder.clock.now_s();
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
                expectations.push(record);
            }
            if !verdicts.interrupted {
                for reason in alerts::check_order(&mut expectations) {
                    verdicts.fail(reason);
                }
            }
        }
    }

    // Stop the load; its report feeds the after-probes.
    load_cancel.cancel();
    let mut load_record = None;
    let mut failed_requests = Vec::new();
    let mut report = None;
    if let Some(task) = load_task {
        let timeline: Vec<LoadPoint> = run
            .timeline
            .snapshot()
            .iter()
            .map(|w| load_point(w, &recorder.clock))
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
                failed_requests = loadgen_report
                    .failed_requests
                    .iter()
                    .map(|f| FailedRequestRecord {
                        trace_id: f.trace_id.clone(),
                        route: f.route.template().to_owned(),
                        status: f.status,
                        error: f.error.clone(),
                        detail: f.detail.clone(),
                        at_s: (f.at_unix_ms as f64 - recorder.clock.start_unix_ms() as f64)
                            / 1000.0,
                    })
                    .collect();
                report = Some(Arc::new(loadgen_report));
            }
            Err(err) => {
                verdicts.abort(format!("the load failed: {err}"));
                record.error = Some(err);
            }
        }
        load_record = Some(record);
    }

    if method_ran && !verdicts.interrupted && !plan.after.is_empty() {
        recorder.phase("after");
        let start_s = recorder.clock.now_s();
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
        match futures::future::join_all(checks)
            .await
            .into_iter()
            .collect::<Option<Vec<_>>>()
        {
            None => verdicts.interrupt(),
            Some(activities) => {
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
                after_activities = activities;
            }
        }
    }

    let evidence = crate::evidence::gather(
        &plan.environment,
        &expectations,
        &alert_log.seen(),
        recorder.clock.start_unix_ms(),
        &run.cancel,
    )
    .await;
    alert_stop.cancel();
    let watched = watcher.is_some();
    if let Some(watcher) = watcher {
        let _ = watcher.await;
    }
    let alerts_seen = alert_log.seen();
    let unexpected_alerts = if watched {
        alerts::unexpected(&alerts_seen, &plan.expected_alerts, &plan.allowed_alerts)
    } else {
        Vec::new()
    };
    if !verdicts.interrupted {
        for alert in &unexpected_alerts {
            verdicts.fail(alerts::unexpected_reason(alert));
        }
    }

    let (status, verdict) = if verdicts.interrupted {
        (Status::Interrupted, Verdict::Interrupted)
    } else if verdicts.aborted {
        (Status::Aborted, Verdict::Error)
    } else if verdicts.failed {
        (Status::Failed, Verdict::Failed)
    } else {
        (Status::Completed, Verdict::Passed)
    };
    let phases = recorder.phases();
    let end_s = recorder.clock.now_s();
    let journal = Journal {
        schema: JOURNAL_SCHEMA,
        faultline_version: env!("CARGO_PKG_VERSION").to_owned(),
        run_id,
        experiment: plan.info.clone(),
        environment: plan.environment.clone(),
        start: recorder.clock.rfc3339(0.0),
        end: recorder.clock.rfc3339(end_s),
        start_unix_ms: recorder.clock.start_unix_ms(),
        duration: end_s,
        status,
        deviated: verdicts.deviated,
        verdict,
        reasons: verdicts.reasons,
        steady_states,
        run: run_activities,
        rollbacks: rollback_activities,
        after: after_activities,
        phases,
        fault_window,
        expected_alerts: expectations,
        alerts_seen,
        unexpected_alerts,
        recovery,
        load: load_record,
        failed_requests,
        evidence,
    };
    recorder.emit(RunEvent::Note(format!("verdict: {}", verdict.as_str())));
    journal
}
