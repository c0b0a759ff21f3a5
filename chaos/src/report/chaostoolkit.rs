//! A journal in Chaos Toolkit's journal shape, so that its tooling (`chaos
//! report`, dashboards that read its journals) can read our runs.
//!
//! The shape is the one `chaos run` writes (chaostoolkit-lib, the
//! `chaoslib` package: `run.py`, `activity.py`, `hypothesis.py`) and its
//! journal specification; `chaos/schemas/chaostoolkit-journal.schema.json`
//! writes down what this module relies on, and the tests check the export
//! against it. What maps how (chaos/README.md has the table):
//!
//! - `status` and `deviated`: in Chaos Toolkit, a run whose hypothesis did
//!   not hold after the method is `completed` with `deviated: true`
//!   (`failed` is for an activity that could not run). So a `failed`
//!   verdict is `completed` + deviated once the method ran; when the
//!   steady state did not hold before it (nothing was injected), the run is
//!   `failed`, not deviated. `error` is `aborted`, `interrupted` is
//!   `interrupted`, `passed` is `completed`.
//! - Probes: a probe that ran but missed its tolerance has status
//!   `succeeded` and `tolerance_met: false`; `failed` (with `exception`) is
//!   for a probe that could not be evaluated (an error, a timeout).
//! - `exception` is a list of strings (Chaos Toolkit writes traceback lines).
//! - `steady_states.before` is the steady state before the method;
//!   `after` is the recovery's last round plus the `[[after]]` probes;
//!   `during` has one record per evaluation of a `[[during]]` probe.
//! - `run` is the method's actions: `inject` under the fault's name, the
//!   other steps (`ramp N`, `effect`, `revert`) as `<fault> (<step>)`.
//! - `experiment` lists those activities with a provider of type
//!   `faultline` (the `kind` says which): they are not runnable by Chaos
//!   Toolkit. faultline's own findings (verdict, reasons, alerts, recovery,
//!   the experiment as parsed) are in `experiment.extensions`, under the
//!   name `faultline`.
//! - `chaoslib-version`, `platform` and `node` are `null`: chaoslib did not
//!   write the run, and faultline's journal does not record the host.

use serde::Serialize;
use serde_json::{Value, json};

use crate::journal::{Activity, ActivityStatus, ActivityType, Journal, SteadyStateRecord, Verdict};

/// A Chaos Toolkit journal.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CtkJournal {
    #[serde(rename = "chaoslib-version")]
    pub chaoslib_version: Option<String>,
    pub platform: Option<String>,
    pub node: Option<String>,
    pub experiment: CtkExperiment,
    pub start: String,
    pub end: String,
    /// Seconds.
    pub duration: f64,
    /// `completed`, `failed`, `aborted` or `interrupted`.
    pub status: &'static str,
    pub deviated: bool,
    pub steady_states: CtkSteadyStates,
    pub run: Vec<CtkRun>,
    pub rollbacks: Vec<CtkRun>,
}

/// The experiment, as Chaos Toolkit describes one.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CtkExperiment {
    pub title: String,
    pub description: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(
        rename = "steady-state-hypothesis",
        skip_serializing_if = "Option::is_none"
    )]
    pub steady_state_hypothesis: Option<CtkHypothesis>,
    pub method: Vec<CtkActivity>,
    pub rollbacks: Vec<CtkActivity>,
    pub extensions: Vec<Value>,
}

/// `steady-state-hypothesis`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CtkHypothesis {
    pub title: String,
    pub probes: Vec<CtkActivity>,
}

/// An activity's definition.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CtkActivity {
    /// `probe` or `action`.
    #[serde(rename = "type")]
    pub activity_type: &'static str,
    pub name: String,
    pub provider: CtkProvider,
}

/// Where an activity comes from: faultline, of a kind.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CtkProvider {
    /// Always `faultline`.
    #[serde(rename = "type")]
    pub provider_type: &'static str,
    /// `toxic`, `container`, `sli`, `promql`...
    pub kind: String,
}

/// One run of an activity.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CtkRun {
    pub activity: CtkActivity,
    /// `succeeded` or `failed`.
    pub status: &'static str,
    pub start: String,
    pub end: String,
    /// Seconds.
    pub duration: f64,
    pub output: Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exception: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tolerance_met: Option<bool>,
}

/// One evaluation of the hypothesis.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CtkSteadyState {
    pub steady_state_met: bool,
    pub probes: Vec<CtkRun>,
}

/// `steady_states`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CtkSteadyStates {
    pub before: Option<CtkSteadyState>,
    pub after: Option<CtkSteadyState>,
    pub during: Vec<CtkSteadyState>,
}

/// Chaos Toolkit's `status` and `deviated` for a journal.
pub fn status(journal: &Journal) -> (&'static str, bool) {
    let method_ran = journal.phases.iter().any(|p| p.name == "method");
    match journal.verdict {
        Verdict::Passed => ("completed", false),
        // The hypothesis did not hold once the system was perturbed: what
        // Chaos Toolkit calls a deviation of a completed run.
        Verdict::Failed if method_ran => ("completed", true),
        // Nothing was injected: the gate failed, nothing deviated.
        Verdict::Failed => ("failed", false),
        Verdict::Error => ("aborted", journal.deviated),
        // A safeguard stopped it: Chaos Toolkit's own word for that.
        Verdict::Aborted => ("aborted", journal.deviated),
        Verdict::Interrupted => ("interrupted", journal.deviated),
    }
}

fn activity_name(activity: &Activity) -> String {
    match (
        activity.activity.activity_type,
        activity.activity.step.as_str(),
    ) {
        (ActivityType::Action, "inject" | "rollback") | (ActivityType::Probe, _) => {
            activity.activity.name.clone()
        }
        (ActivityType::Action, step) => format!("{} ({step})", activity.activity.name),
    }
}

fn definition(activity: &Activity) -> CtkActivity {
    CtkActivity {
        activity_type: match activity.activity.activity_type {
            ActivityType::Action => "action",
            ActivityType::Probe => "probe",
        },
        name: activity_name(activity),
        provider: CtkProvider {
            provider_type: "faultline",
            kind: activity.activity.kind.clone(),
        },
    }
}

/// One activity as Chaos Toolkit records a run of it.
pub fn run(activity: &Activity) -> CtkRun {
    let probe = activity.activity.activity_type == ActivityType::Probe;
    let failed = activity.status == ActivityStatus::Failed;
    // A probe fails in Chaos Toolkit only when it could not be evaluated; a
    // result out of tolerance is a succeeded run with tolerance_met false.
    let status = if failed && (!probe || activity.exception.is_some()) {
        "failed"
    } else {
        "succeeded"
    };
    let output = match (&activity.output, activity.detail.is_empty()) {
        (Value::Null, false) => Value::String(activity.detail.clone()),
        (output, _) => output.clone(),
    };
    CtkRun {
        activity: definition(activity),
        status,
        start: activity.start.clone(),
        end: activity.end.clone(),
        duration: activity.duration,
        output,
        exception: activity.exception.as_ref().map(|e| vec![e.clone()]),
        tolerance_met: if probe {
            Some(activity.tolerance_met.unwrap_or(!failed))
        } else {
            None
        },
    }
}

fn steady_state(record: &SteadyStateRecord) -> CtkSteadyState {
    CtkSteadyState {
        steady_state_met: record.steady_state_met,
        probes: record.probes.iter().map(run).collect(),
    }
}

/// Each definition once, in order of first run.
fn definitions<'a>(activities: impl IntoIterator<Item = &'a Activity>) -> Vec<CtkActivity> {
    let mut seen = Vec::new();
    for activity in activities {
        let definition = definition(activity);
        if !seen.contains(&definition) {
            seen.push(definition);
        }
    }
    seen
}

/// `journal` in Chaos Toolkit's journal shape.
pub fn export(journal: &Journal) -> CtkJournal {
    let (status, deviated) = status(journal);
    let before = journal.steady_states.before.as_ref().map(steady_state);
    let after = match (&journal.steady_states.after, journal.after.is_empty()) {
        (None, true) => None,
        (recovery, _) => {
            let probes: Vec<CtkRun> = recovery
                .iter()
                .flat_map(|r| r.probes.iter())
                .chain(journal.after.iter())
                .map(run)
                .collect();
            Some(CtkSteadyState {
                steady_state_met: recovery.as_ref().is_none_or(|r| r.steady_state_met)
                    && journal
                        .after
                        .iter()
                        .all(|a| a.status == ActivityStatus::Succeeded),
                probes,
            })
        }
    };
    let during = journal
        .steady_states
        .during
        .iter()
        .map(|evaluation| CtkSteadyState {
            steady_state_met: evaluation.status == ActivityStatus::Succeeded,
            probes: vec![run(evaluation)],
        })
        .collect();
    let hypothesis_probes = definitions(
        journal
            .steady_states
            .before
            .iter()
            .chain(journal.steady_states.after.iter())
            .flat_map(|r| r.probes.iter())
            .chain(journal.after.iter()),
    );
    let experiment = CtkExperiment {
        title: journal.experiment.title.clone(),
        description: if journal.experiment.description.trim().is_empty() {
            journal.experiment.title.clone()
        } else {
            journal.experiment.description.clone()
        },
        tags: journal.experiment.tags.clone(),
        steady_state_hypothesis: (!hypothesis_probes.is_empty()).then(|| CtkHypothesis {
            title: format!("{}: the steady state holds", journal.experiment.title),
            probes: hypothesis_probes,
        }),
        method: definitions(&journal.run),
        rollbacks: definitions(&journal.rollbacks),
        extensions: vec![json!({
            "name": "faultline",
            "faultline_version": journal.faultline_version,
            "run_id": journal.run_id,
            "verdict": journal.verdict.as_str(),
            "reasons": journal.reasons,
            "path": journal.experiment.path,
            "during": definitions(&journal.steady_states.during),
            "fault_window": journal.fault_window,
            "recovery": journal.recovery,
            "expected_alerts": journal.expected_alerts,
            "unexpected_alerts": journal.unexpected_alerts,
            "spec": journal.experiment.spec,
        })],
    };
    CtkJournal {
        chaoslib_version: None,
        platform: None,
        node: None,
        experiment,
        start: journal.start.clone(),
        end: journal.end.clone(),
        duration: journal.duration,
        status,
        deviated,
        steady_states: CtkSteadyStates {
            before,
            after,
            during,
        },
        run: journal.run.iter().map(run).collect(),
        rollbacks: journal.rollbacks.iter().map(run).collect(),
    }
}

/// `journal` in Chaos Toolkit's shape, as pretty JSON.
pub fn to_json(journal: &Journal) -> Result<String, serde_json::Error> {
    serde_json::to_string_pretty(&export(journal))
}
