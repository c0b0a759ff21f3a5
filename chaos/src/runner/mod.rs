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

mod abort;
pub mod alerts;
pub mod compile;
pub mod guard;
mod lease;
mod method;
mod phases;
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

use guard::ActiveSet;
use record::{Outcome, Recorder};

pub use compile::{CompileError, compile};
pub use phases::run_plan;

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

/// An `[[abort_when]]` limit: `probe` passes while it holds.
#[derive(Debug, Clone)]
pub struct PlannedAbort {
    pub name: String,
    pub every: Duration,
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
    /// Limits that stop the method when crossed.
    pub abort_when: Vec<PlannedAbort>,
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
            abort_when: Vec::new(),
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
    /// A `must = "eventually"` during-probe reached its deadline (the end of
    /// the method) without passing: until then its failed evaluations were
    /// waiting ([`Activity::deadline_s`]); now it fails the run.
    Missed {
        name: String,
        at_s: f64,
        /// The last evaluation's detail or error.
        last: String,
    },
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
    /// The guardian process watching this run, for the journal.
    pub guardian: Option<GuardianRecord>,
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
        ExperimentSource::Path(path) => (
            Experiment::load_with(&path, &bindings.environment)?,
            Some(path),
        ),
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
    pub guardian: Option<GuardianRecord>,
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
    /// With `read_effects` (the method ran to its end), what each fault did
    /// is read first; the reasons of those that did nothing come back last.
    async fn roll_back(
        &self,
        read_effects: bool,
    ) -> (Vec<Activity>, Vec<Activity>, Vec<String>, Vec<String>) {
        let timeout = self.plan.settings.action_timeout;
        let mut reverts = Vec::new();
        let mut problems = Vec::new();
        let mut not_effective = Vec::new();
        for active in self.active.drain_reversed() {
            if read_effects {
                let (activity, reason) = method::read_effect(self, &active).await;
                reverts.push(activity);
                not_effective.extend(reason);
            }
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
        (reverts, rollbacks, problems, not_effective)
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
