//! The journal of a run: JSON, in Chaos Toolkit's vocabulary where it fits
//! (`status`, `deviated`, `steady_states.before/after`, `run`, `rollbacks`,
//! activities with `start`/`end`/`status`/`output`), plus what faultline
//! adds: the verdict, the fault window, alert detection times, the recovery
//! time, the load timeline and the trace ids of failed requests.
//!
//! Times are RFC 3339 strings (`start`, `end`) and seconds since the start
//! of the run (`*_s`), which the report plots.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::environment::Environment;

/// Version of the journal's shape.
pub const JOURNAL_SCHEMA: u32 = 1;

/// How the run ended, in Chaos Toolkit's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Everything ran and every expectation held.
    Completed,
    /// The hypothesis did not hold (steady state, probes, alerts, recovery).
    Failed,
    /// An action failed or the run loop hit an error (or a panic), or an
    /// `[[abort_when]]` limit stopped it (verdict `aborted`).
    Aborted,
    /// Ctrl-C, SIGTERM or the caller cancelled it.
    Interrupted,
}

impl Status {
    /// The word the journal uses.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Completed => "completed",
            Status::Failed => "failed",
            Status::Aborted => "aborted",
            Status::Interrupted => "interrupted",
        }
    }
}

/// faultline's verdict, which the exit code follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Exit code 0.
    Passed,
    /// The hypothesis failed: exit code 1.
    Failed,
    /// The run could not be carried out: exit code 2.
    Error,
    /// Stopped by a signal or the caller: exit code 2.
    Interrupted,
    /// An `[[abort_when]]` limit was crossed: the faults were rolled back
    /// early. Exit code 3.
    Aborted,
}

impl Verdict {
    /// The CLI's exit code for this verdict.
    pub fn exit_code(self) -> u8 {
        match self {
            Verdict::Passed => 0,
            Verdict::Failed => 1,
            Verdict::Error | Verdict::Interrupted => 2,
            Verdict::Aborted => 3,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Passed => "passed",
            Verdict::Failed => "failed",
            Verdict::Error => "error",
            Verdict::Interrupted => "interrupted",
            Verdict::Aborted => "aborted",
        }
    }
}

/// `"action"` or `"probe"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActivityType {
    Action,
    Probe,
}

/// What an activity was.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActivityInfo {
    #[serde(rename = "type")]
    pub activity_type: ActivityType,
    pub name: String,
    /// The fault, action or probe kind (`toxic`, `container`, `sli`...).
    pub kind: String,
    /// `inject`, `ramp`, `revert`, `rollback` for actions; the phase for probes.
    pub step: String,
}

/// `"succeeded"` or `"failed"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActivityStatus {
    Succeeded,
    Failed,
}

/// One action or probe evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Activity {
    pub activity: ActivityInfo,
    pub status: ActivityStatus,
    pub start: String,
    pub end: String,
    pub start_s: f64,
    pub end_s: f64,
    /// Seconds.
    pub duration: f64,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub output: Value,
    /// For probes: whether the tolerance was met.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tolerance_met: Option<bool>,
    /// A human line (probe detail).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
    /// The error, when it failed with one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exception: Option<String>,
    /// For a `must = "eventually"` during-probe: when one of its evaluations
    /// must have passed by (the end of the method), seconds since the start.
    /// A failed evaluation before then is the probe still waiting for the
    /// fault's effect, not a failure; only missing the deadline fails the
    /// run. Absent in journals written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline_s: Option<f64>,
}

impl Activity {
    /// A failed evaluation of a `must = "eventually"` probe: it was still
    /// waiting (its deadline decides, not this evaluation).
    pub fn is_waiting(&self) -> bool {
        self.deadline_s.is_some() && self.status == ActivityStatus::Failed
    }
}

/// One steady-state check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SteadyStateRecord {
    pub steady_state_met: bool,
    pub probes: Vec<Activity>,
}

/// The steady-state checks.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SteadyStates {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<SteadyStateRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<SteadyStateRecord>,
    /// Evaluations of the `[[during]]` probes.
    #[serde(default)]
    pub during: Vec<Activity>,
}

/// A span of the run, in seconds since its start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    pub name: String,
    pub start_s: f64,
    pub end_s: f64,
}

/// Whether an expected alert reached its state in time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertExpectationRecord {
    pub alert: String,
    /// `pending`, `firing` or `resolved`.
    pub state: String,
    pub within_s: f64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    pub met: bool,
    /// When it reached the state, seconds since the start of the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_s: Option<f64>,
    /// From the first fault (or, for `resolved`, from the last fault
    /// reverted) to the state: the detection (resolution) time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detection_time_s: Option<f64>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub note: String,
    /// With `before`: the alert it had to lead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<String>,
    /// With `before`: how long before that alert this one reached its state.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lead_time_s: Option<f64>,
}

/// A state change of one alert series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertTransition {
    /// `pending`, `firing` or `inactive`.
    pub state: String,
    pub at_s: f64,
}

/// An alert series seen during the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertSeen {
    pub alert: String,
    pub labels: BTreeMap<String, String>,
    pub transitions: Vec<AlertTransition>,
}

/// An alert series that fired during the run although the experiment
/// neither expects nor allows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UnexpectedAlert {
    pub alert: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// When it first fired, seconds since the start of the run.
    pub first_firing_s: f64,
}

/// The recovery phase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecoveryRecord {
    pub deadline_s: f64,
    pub recovered: bool,
    /// From the end of the rollbacks until the steady state held again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery_time_s: Option<f64>,
}

/// One load window, reduced for plotting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadPoint {
    /// End of the window, seconds since the start of the run.
    pub t_s: f64,
    pub requests: u64,
    pub errors: u64,
    pub error_ratio: f64,
    pub p50_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub rate_limited: u64,
    pub degraded: u64,
}

/// The harness's own load.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoadRecord {
    pub timeline: Vec<LoadPoint>,
    /// The loadgen report's totals, once the load stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub totals: Option<faultline_loadgen::RouteSummary>,
    /// Per route template.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub routes: BTreeMap<String, faultline_loadgen::RouteSummary>,
    pub acknowledged_orders: u64,
    pub idempotency_violations: u64,
    pub failed_requests_total: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A failed request of the load, to look up in the traces.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FailedRequestRecord {
    pub trace_id: String,
    pub route: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    pub error: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    pub at_s: f64,
}

/// The raw series behind the alerts that fired: enough to replay them
/// offline (`faultline regress` writes a promtool test from it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// Seconds between two values of a series.
    pub step_s: f64,
    /// The time of every series' first value (the start of the run).
    pub start_unix_ms: u64,
    /// The alert series that fired, as expected.
    pub alerts: Vec<EvidenceAlert>,
    /// Every series of the raw metrics those alerts read.
    pub series: Vec<EvidenceSeries>,
    /// What could not be gathered.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

/// An alert series that fired during the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvidenceAlert {
    pub alert: String,
    /// The series' labels, `alertname` excluded.
    pub labels: BTreeMap<String, String>,
    /// When it was first seen firing, seconds since the evidence's start.
    pub firing_at_s: f64,
    /// When it was next seen inactive, if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_at_s: Option<f64>,
    /// The raw metrics its expression reads, through recording rules.
    #[serde(default)]
    pub metrics: Vec<String>,
}

/// One raw series, sampled every `step_s` from the evidence's start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvidenceSeries {
    /// With `__name__`.
    pub labels: BTreeMap<String, String>,
    /// One per step; `None` where the series had no value (NaN and
    /// infinities also come back as `None` from JSON).
    pub values: Vec<Option<f64>>,
}

/// What ran, from the experiment file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExperimentInfo {
    pub title: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The whole experiment, as parsed.
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub spec: Value,
}

/// The guardian process of a run (`faultline run` starts one; see
/// `crate::guardian`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuardianRecord {
    pub pid: u32,
    /// Its log file (kept only when it had something to revert).
    pub log: String,
}

/// The journal of one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Journal {
    pub schema: u32,
    pub faultline_version: String,
    pub run_id: String,
    pub experiment: ExperimentInfo,
    /// The endpoints used, after every override (passwords in URLs as `***`).
    pub environment: Environment,
    pub start: String,
    pub end: String,
    pub start_unix_ms: u64,
    pub duration: f64,
    pub status: Status,
    pub deviated: bool,
    pub verdict: Verdict,
    /// Why it did not pass, one line each.
    #[serde(default)]
    pub reasons: Vec<String>,
    /// What happened besides the activities: a safeguard that could not be
    /// evaluated, a lease that could not be renewed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    /// The process that reverts the faults if this one dies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guardian: Option<GuardianRecord>,
    pub steady_states: SteadyStates,
    /// The method's actions (inject, ramp, revert).
    pub run: Vec<Activity>,
    pub rollbacks: Vec<Activity>,
    /// The `[[after]]` probes.
    #[serde(default)]
    pub after: Vec<Activity>,
    /// Phases of the run (warmup, steady_state, method, rollback, recovery, after).
    #[serde(default)]
    pub phases: Vec<Interval>,
    /// From the first injection to the last revert.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault_window: Option<Interval>,
    #[serde(default)]
    pub expected_alerts: Vec<AlertExpectationRecord>,
    #[serde(default)]
    pub alerts_seen: Vec<AlertSeen>,
    /// Alerts that fired although neither expected nor allowed: each fails
    /// the run.
    #[serde(default)]
    pub unexpected_alerts: Vec<UnexpectedAlert>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub recovery: Option<RecoveryRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load: Option<LoadRecord>,
    #[serde(default)]
    pub failed_requests: Vec<FailedRequestRecord>,
    /// The raw series behind the expected alerts that fired, from
    /// Prometheus; `None` without a Prometheus or when none fired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub evidence: Option<Evidence>,
}

/// Why a journal could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("cannot read {path}: {error}")]
    Read { path: String, error: std::io::Error },
    #[error("cannot write {path}: {error}")]
    Write { path: String, error: std::io::Error },
    #[error("{path} is not a faultline journal: {error}")]
    Parse {
        path: String,
        error: serde_json::Error,
    },
}

impl Journal {
    /// Reads a journal file.
    pub fn load(path: &Path) -> Result<Self, JournalError> {
        let text = std::fs::read(path).map_err(|error| JournalError::Read {
            path: path.display().to_string(),
            error,
        })?;
        serde_json::from_slice(&text).map_err(|error| JournalError::Parse {
            path: path.display().to_string(),
            error,
        })
    }

    /// Writes it as pretty JSON.
    pub fn save(&self, path: &Path) -> Result<(), JournalError> {
        let write = |error| JournalError::Write {
            path: path.display().to_string(),
            error,
        };
        let json = serde_json::to_vec_pretty(self).map_err(|err| write(err.into()))?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(write)?;
        }
        std::fs::write(path, json).map_err(write)
    }

    /// Every activity with a failed status, for summaries.
    pub fn failed_activities(&self) -> impl Iterator<Item = &Activity> {
        self.steady_states
            .before
            .iter()
            .chain(self.steady_states.after.iter())
            .flat_map(|s| s.probes.iter())
            .chain(self.steady_states.during.iter())
            .chain(self.run.iter())
            .chain(self.rollbacks.iter())
            .chain(self.after.iter())
            .filter(|a| a.status == ActivityStatus::Failed)
    }
}

/// Milliseconds since the Unix epoch, as the journal's `*_unix_ms` fields
/// count time (0 before the epoch).
pub fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
