//! The game day's report: what ran, in which order, how each run ended,
//! each expected alert's time to its state, and what deviated. Saved as
//! `gameday.json` beside `gameday.md` and the timeline.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::journal::{AlertSeen, Interval, Journal, Verdict};

/// Why the day ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// No experiment fits what is left of the budget.
    Budget,
    /// A run failed (or could not be carried out) and the day stops on failure.
    Failure,
    /// Ctrl-C, SIGTERM or the caller's token.
    Interrupted,
}

impl StopReason {
    pub fn describe(self) -> &'static str {
        match self {
            StopReason::Budget => "the budget is spent",
            StopReason::Failure => "a run failed (stop on failure)",
            StopReason::Interrupted => "interrupted",
        }
    }
}

/// An expected alert of one run, and how long it took to reach its state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertTiming {
    pub alert: String,
    /// `pending`, `firing` or `resolved`.
    pub state: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    pub met: bool,
    /// From the first injection (for `resolved`: from the last revert) to
    /// the state: for `firing`, the time to fire.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after_s: Option<f64>,
}

/// One run of the day. Times are seconds since the day started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GameDayRun {
    /// 1, 2, ... in the order run.
    pub index: usize,
    /// The experiment's file stem.
    pub experiment: String,
    pub path: String,
    pub title: String,
    pub verdict: Verdict,
    pub start_s: f64,
    pub end_s: f64,
    /// What the run was expected to take at most ([`super::estimate`]).
    pub estimate_s: f64,
    /// The run's journal, relative to the report directory (none when the
    /// run could not start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub journal: Option<String>,
    /// The run's own report (Markdown), relative to the report directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report: Option<String>,
    /// When faults were in, seconds since the day started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault_window: Option<Interval>,
    #[serde(default)]
    pub alerts: Vec<AlertTiming>,
    /// Every alert series the run saw, its transitions in seconds since the
    /// run started (for the timeline).
    #[serde(default)]
    pub alerts_seen: Vec<AlertSeen>,
    /// Why it did not pass.
    #[serde(default)]
    pub deviations: Vec<String>,
}

impl GameDayRun {
    /// Whether the run counts as a failure of the day: anything but passed
    /// or interrupted (failed, error, and any verdict added later, such as
    /// an abort by a safeguard).
    pub fn failed(&self) -> bool {
        !matches!(self.verdict, Verdict::Passed | Verdict::Interrupted)
    }

    /// The record of a run from its journal; `start_s` is when it started
    /// in the day.
    pub fn from_journal(
        index: usize,
        experiment: &str,
        path: &Path,
        journal: &Journal,
        start_s: f64,
        end_s: f64,
        estimate_s: f64,
    ) -> Self {
        GameDayRun {
            index,
            experiment: experiment.to_owned(),
            path: path.display().to_string(),
            title: journal.experiment.title.clone(),
            verdict: journal.verdict,
            start_s,
            end_s,
            estimate_s,
            journal: None,
            report: None,
            fault_window: journal.fault_window.as_ref().map(|w| Interval {
                name: w.name.clone(),
                start_s: start_s + w.start_s,
                end_s: start_s + w.end_s,
            }),
            alerts: journal
                .expected_alerts
                .iter()
                .map(|e| AlertTiming {
                    alert: e.alert.clone(),
                    state: e.state.clone(),
                    labels: e.labels.clone(),
                    met: e.met,
                    after_s: e.detection_time_s,
                })
                .collect(),
            alerts_seen: journal.alerts_seen.clone(),
            deviations: journal.reasons.clone(),
        }
    }
}

/// An experiment the day did not start, because it would not have fitted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Skipped {
    pub experiment: String,
    /// When it was its turn, seconds since the day started.
    pub at_s: f64,
    pub estimate_s: f64,
    /// What was left of the budget then, the cool-down taken off.
    pub left_s: f64,
}

/// The report of a game day.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GameDayReport {
    pub seed: u64,
    pub budget_s: f64,
    pub cooldown_s: f64,
    pub stop_on_failure: bool,
    /// The experiments' stems in the seeded order (repeated while time is left).
    pub order: Vec<String>,
    /// RFC 3339.
    pub start: String,
    pub start_unix_ms: u64,
    pub elapsed_s: f64,
    pub stopped: StopReason,
    pub runs: Vec<GameDayRun>,
    #[serde(default)]
    pub skipped: Vec<Skipped>,
}

impl GameDayReport {
    /// How many runs had each verdict, in a fixed order.
    pub fn tally(&self) -> Vec<(&'static str, usize)> {
        let mut counts: BTreeMap<&'static str, usize> = BTreeMap::new();
        for run in &self.runs {
            *counts.entry(run.verdict.as_str()).or_default() += 1;
        }
        counts.into_iter().collect()
    }
}
