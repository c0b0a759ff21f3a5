//! The detection coverage table: which alert each experiment proved, how
//! fast it fired and resolved, and what else fired meanwhile.
//!
//! Built from journals ([`Coverage::from_journals`], or every
//! `*.journal.json` under a directory with [`Coverage::from_dir`]); one row
//! per (alert, experiment), for every alert an experiment's
//! `[[expected_alerts]]` name. When several journals of the same experiment
//! are given, the latest run (by `start_unix_ms`) is the one shown.
//!
//! - *fires after*: the detection time of the met `firing` expectation, from
//!   the first injection;
//! - *resolves after*: the detection time of the met `resolved`
//!   expectation, from the end of the rollbacks;
//! - *unexpected*: the alerts the journal's `unexpected_alerts` names (0
//!   when none, and in journals written before that field existed);
//! - *verdict*: the run's verdict.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::journal::{AlertExpectationRecord, Journal, JournalError, Verdict};

/// The suffix of the journal files [`Coverage::from_dir`] reads.
pub const JOURNAL_SUFFIX: &str = ".journal.json";

/// Why journals could not be gathered.
#[derive(Debug, thiserror::Error)]
pub enum CoverageError {
    #[error(transparent)]
    Journal(#[from] JournalError),
    #[error("cannot list {path}: {error}")]
    List { path: String, error: std::io::Error },
    #[error("no *{JOURNAL_SUFFIX} file under {0}")]
    NoJournals(String),
}

/// How one expectation kind (firing or resolved) of an alert turned out.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Expectation {
    /// The experiment does not assert it.
    NotAsserted,
    /// Asserted, and met after this many seconds.
    Met(f64),
    /// Asserted, and not met.
    NotMet,
}

impl Expectation {
    /// Combines the records of one state: met when one of them is (the
    /// fastest), not met when all were asserted and none was.
    fn of<'a>(records: impl Iterator<Item = &'a AlertExpectationRecord>) -> Self {
        records.fold(Expectation::NotAsserted, |acc, record| {
            let this = match (record.met, record.detection_time_s) {
                (true, Some(t)) => Expectation::Met(t),
                (true, None) => Expectation::Met(0.0),
                (false, _) => Expectation::NotMet,
            };
            match (acc, this) {
                (Expectation::Met(a), Expectation::Met(b)) => Expectation::Met(a.min(b)),
                (Expectation::Met(a), _) | (_, Expectation::Met(a)) => Expectation::Met(a),
                (Expectation::NotMet, _) | (_, Expectation::NotMet) => Expectation::NotMet,
                _ => Expectation::NotAsserted,
            }
        })
    }

    fn cell(self) -> String {
        match self {
            Expectation::NotAsserted => "—".to_owned(),
            Expectation::Met(t) => format!("{t:.1} s"),
            Expectation::NotMet => "**not met**".to_owned(),
        }
    }
}

/// One (alert, experiment) row.
#[derive(Debug, Clone, PartialEq)]
pub struct CoverageRow {
    pub alert: String,
    /// The experiment's title.
    pub title: String,
    /// The experiment file's stem (`kill-replica`), or the title when the
    /// journal has no path.
    pub experiment: String,
    /// Time to fire, from the first injection.
    pub firing: Expectation,
    /// Time to resolve, from the end of the rollbacks.
    pub resolved: Expectation,
    /// Names of the alerts that fired without being expected, sorted.
    pub unexpected_alerts: Vec<String>,
    pub verdict: Verdict,
    /// The run it comes from.
    pub run_id: String,
}

/// The coverage table.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Coverage {
    /// Sorted by alert, then experiment.
    pub rows: Vec<CoverageRow>,
}

/// The file stem of an experiment path: `chaos/experiments/x.toml` → `x`.
fn stem(path: &str) -> Option<String> {
    Path::new(path)
        .file_stem()
        .and_then(|s| s.to_str())
        .map(str::to_owned)
}

/// The names in a journal's `unexpected_alerts`, each once (journals
/// written before the field existed have none).
fn unexpected_names(journal: &Journal) -> Vec<String> {
    let names: BTreeSet<&str> = journal
        .unexpected_alerts
        .iter()
        .map(|u| u.alert.as_str())
        .collect();
    names.into_iter().map(str::to_owned).collect()
}

impl Coverage {
    /// The table of these journals.
    pub fn from_journals(journals: &[Journal]) -> Self {
        let entries: Vec<(&Journal, Vec<String>)> = journals
            .iter()
            .map(|journal| (journal, unexpected_names(journal)))
            .collect();
        Self::from_entries(&entries)
    }

    /// The table of every `*.journal.json` under `dir`, recursively.
    pub fn from_dir(dir: &Path) -> Result<Self, CoverageError> {
        let mut files = Vec::new();
        collect_journals(dir, &mut files)?;
        if files.is_empty() {
            return Err(CoverageError::NoJournals(dir.display().to_string()));
        }
        Self::from_files(&files)
    }

    /// The table of journal files and directories of them (searched as
    /// [`Coverage::from_dir`] does).
    pub fn from_paths(paths: &[PathBuf]) -> Result<Self, CoverageError> {
        let mut files = Vec::new();
        for path in paths {
            if path.is_dir() {
                let before = files.len();
                collect_journals(path, &mut files)?;
                if files.len() == before {
                    return Err(CoverageError::NoJournals(path.display().to_string()));
                }
            } else {
                files.push(path.clone());
            }
        }
        Self::from_files(&files)
    }

    fn from_files(files: &[PathBuf]) -> Result<Self, CoverageError> {
        let mut loaded = Vec::new();
        for file in files {
            let path = file.display().to_string();
            let bytes = std::fs::read(file).map_err(|error| JournalError::Read {
                path: path.clone(),
                error,
            })?;
            let parse = |error| JournalError::Parse {
                path: path.clone(),
                error,
            };
            let journal: Journal = serde_json::from_slice(&bytes).map_err(parse)?;
            let unexpected = unexpected_names(&journal);
            loaded.push((journal, unexpected));
        }
        let entries: Vec<(&Journal, Vec<String>)> = loaded
            .iter()
            .map(|(journal, unexpected)| (journal, unexpected.clone()))
            .collect();
        Ok(Self::from_entries(&entries))
    }

    fn from_entries(entries: &[(&Journal, Vec<String>)]) -> Self {
        // The latest run of each experiment.
        let mut latest: BTreeMap<String, &(&Journal, Vec<String>)> = BTreeMap::new();
        for entry in entries {
            let journal = entry.0;
            let key = journal
                .experiment
                .path
                .as_deref()
                .and_then(stem)
                .unwrap_or_else(|| journal.experiment.title.clone());
            match latest.get(&key) {
                Some(kept) if kept.0.start_unix_ms > journal.start_unix_ms => {}
                _ => {
                    latest.insert(key, entry);
                }
            }
        }
        let mut rows = Vec::new();
        for (experiment, (journal, unexpected)) in latest {
            let alerts: BTreeSet<&str> = journal
                .expected_alerts
                .iter()
                .map(|e| e.alert.as_str())
                .collect();
            for alert in alerts {
                let of_state = |state: &'static str| {
                    journal
                        .expected_alerts
                        .iter()
                        .filter(move |e| e.alert == alert && e.state == state)
                };
                rows.push(CoverageRow {
                    alert: alert.to_owned(),
                    title: journal.experiment.title.clone(),
                    experiment: experiment.clone(),
                    firing: Expectation::of(of_state("firing")),
                    resolved: Expectation::of(of_state("resolved")),
                    unexpected_alerts: unexpected.clone(),
                    verdict: journal.verdict,
                    run_id: journal.run_id.clone(),
                });
            }
        }
        rows.sort_by(|a, b| (&a.alert, &a.experiment).cmp(&(&b.alert, &b.experiment)));
        Self { rows }
    }

    /// The alerts some experiment asserted `firing`, and saw fire in time.
    pub fn firing_alerts(&self) -> BTreeSet<String> {
        self.rows
            .iter()
            .filter(|row| matches!(row.firing, Expectation::Met(_)))
            .map(|row| row.alert.clone())
            .collect()
    }

    /// The table as Markdown.
    pub fn render_markdown(&self) -> String {
        let mut out = String::from(
            "| alert | experiment | fires after | resolves after | unexpected alerts | verdict |\n\
             |---|---|---:|---:|---|---|\n",
        );
        for row in &self.rows {
            let experiment = if row.experiment == row.title {
                cell(&row.title)
            } else {
                format!("{} (`{}`)", cell(&row.title), cell(&row.experiment))
            };
            let unexpected = if row.unexpected_alerts.is_empty() {
                "0".to_owned()
            } else {
                cell(&row.unexpected_alerts.join(", "))
            };
            let _ = writeln!(
                out,
                "| {} | {experiment} | {} | {} | {unexpected} | {} |",
                cell(&row.alert),
                row.firing.cell(),
                row.resolved.cell(),
                row.verdict.as_str(),
            );
        }
        out
    }
}

/// Text safe inside a table cell.
fn cell(text: &str) -> String {
    text.replace(['\n', '\r'], " ").replace('|', "\\|")
}

/// Every `*.journal.json` under `dir`, recursively, sorted.
fn collect_journals(dir: &Path, files: &mut Vec<PathBuf>) -> Result<(), CoverageError> {
    let list = |error| CoverageError::List {
        path: dir.display().to_string(),
        error,
    };
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(list)?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(list)?;
    entries.sort();
    for path in entries {
        if path.is_dir() {
            collect_journals(&path, files)?;
        } else if path
            .file_name()
            .and_then(|n| n.to_str())
            .is_some_and(|n| n.ends_with(JOURNAL_SUFFIX))
        {
            files.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    /// A journal as `faultline run` writes it, with these expectations
    /// (`(alert, state, met, detection_time_s)`) and unexpected alerts.
    fn journal_json(
        path: &str,
        title: &str,
        start_unix_ms: u64,
        verdict: &str,
        expected: &[(&str, &str, bool, Option<f64>)],
        unexpected: &[&str],
    ) -> Value {
        let expected: Vec<Value> = expected
            .iter()
            .map(|(alert, state, met, t)| {
                let mut record = json!({
                    "alert": alert, "state": state, "within_s": 30.0, "met": met,
                });
                if let Some(t) = t {
                    record["detection_time_s"] = json!(t);
                    record["at_s"] = json!(t + 10.0);
                }
                record
            })
            .collect();
        let unexpected: Vec<Value> = unexpected
            .iter()
            .map(|alert| json!({"alert": alert, "labels": {"job": "x"}, "first_firing_s": 12.5}))
            .collect();
        json!({
            "schema": 1,
            "faultline_version": "0.1.0",
            "run_id": format!("run-{start_unix_ms}"),
            "experiment": {"title": title, "path": path},
            "environment": {},
            "start": "2026-01-01T00:00:00Z",
            "end": "2026-01-01T00:01:00Z",
            "start_unix_ms": start_unix_ms,
            "duration": 60.0,
            "status": if verdict == "passed" { "completed" } else { "failed" },
            "deviated": false,
            "verdict": verdict,
            "steady_states": {},
            "run": [],
            "rollbacks": [],
            "expected_alerts": expected,
            "unexpected_alerts": unexpected,
        })
    }

    fn journal(value: &Value) -> Journal {
        serde_json::from_value(value.clone()).unwrap()
    }

    fn kill_replica(start: u64, verdict: &str, fired: bool) -> Value {
        journal_json(
            "chaos/experiments/kill-replica.toml",
            "Kill one of three orders replicas",
            start,
            verdict,
            &[
                (
                    "ReplicasBelowDesired",
                    "firing",
                    fired,
                    fired.then_some(6.2),
                ),
                ("ReplicasBelowDesired", "resolved", true, Some(3.04)),
            ],
            &["ErrorBudgetBurnFast", "ErrorBudgetBurnFast", "TargetDown"],
        )
    }

    fn payments(unexpected: &[&str]) -> Value {
        journal_json(
            "/abs/chaos/experiments/payments-latency.toml",
            "+800 ms | orders → payments",
            1_000,
            "passed",
            &[
                ("DependencyLatencyRising", "firing", true, Some(15.0)),
                ("CircuitBreakerOpen", "pending", true, Some(2.0)),
                ("CircuitBreakerOpen", "firing", true, Some(5.0)),
            ],
            unexpected,
        )
    }

    #[test]
    fn one_row_per_alert_and_experiment_sorted_by_alert() {
        let coverage =
            Coverage::from_files_values(&[kill_replica(1_000, "passed", true), payments(&[])]);
        let keys: Vec<(&str, &str)> = coverage
            .rows
            .iter()
            .map(|r| (r.alert.as_str(), r.experiment.as_str()))
            .collect();
        assert_eq!(
            keys,
            [
                ("CircuitBreakerOpen", "payments-latency"),
                ("DependencyLatencyRising", "payments-latency"),
                ("ReplicasBelowDesired", "kill-replica"),
            ]
        );
        let replicas = &coverage.rows[2];
        assert_eq!(replicas.firing, Expectation::Met(6.2));
        assert_eq!(replicas.resolved, Expectation::Met(3.04));
        assert_eq!(
            replicas.unexpected_alerts,
            ["ErrorBudgetBurnFast", "TargetDown"]
        );
        assert_eq!(replicas.title, "Kill one of three orders replicas");
        assert_eq!(coverage.rows[1].resolved, Expectation::NotAsserted);
        assert_eq!(
            coverage.firing_alerts(),
            BTreeSet::from([
                "CircuitBreakerOpen".to_owned(),
                "DependencyLatencyRising".to_owned(),
                "ReplicasBelowDesired".to_owned()
            ])
        );
    }

    #[test]
    fn markdown_shows_times_unexpected_alerts_and_verdicts() {
        let coverage = Coverage::from_files_values(&[
            kill_replica(1_000, "failed", false),
            payments(&["TargetDown"]),
        ]);
        let markdown = coverage.render_markdown();
        let lines: Vec<&str> = markdown.lines().collect();
        assert_eq!(
            lines[0],
            "| alert | experiment | fires after | resolves after | unexpected alerts | verdict |"
        );
        assert_eq!(
            lines[2],
            "| CircuitBreakerOpen | +800 ms \\| orders → payments (`payments-latency`) | 5.0 s | — | TargetDown | passed |"
        );
        assert_eq!(
            lines[4],
            "| ReplicasBelowDesired | Kill one of three orders replicas (`kill-replica`) | **not met** | 3.0 s | ErrorBudgetBurnFast, TargetDown | failed |"
        );
        assert_eq!(lines.len(), 5);
        // Not met: not in the proven set.
        assert!(!coverage.firing_alerts().contains("ReplicasBelowDesired"));
    }

    #[test]
    fn the_latest_run_of_an_experiment_wins() {
        let coverage = Coverage::from_files_values(&[
            kill_replica(2_000, "passed", true),
            kill_replica(1_000, "failed", false),
        ]);
        assert_eq!(coverage.rows.len(), 1);
        assert_eq!(coverage.rows[0].verdict, Verdict::Passed);
        assert_eq!(coverage.rows[0].run_id, "run-2000");
    }

    #[test]
    fn journals_without_unexpected_alerts_or_a_path_still_count() {
        let mut old = journal_json(
            "",
            "ad hoc",
            1,
            "passed",
            &[("TargetDown", "firing", true, Some(1.0))],
            &[],
        );
        let map = old.as_object_mut().unwrap();
        map.remove("unexpected_alerts");
        map["experiment"].as_object_mut().unwrap().remove("path");
        let coverage = Coverage::from_journals(&[journal(&old)]);
        assert_eq!(coverage.rows.len(), 1);
        assert_eq!(coverage.rows[0].experiment, "ad hoc");
        assert!(coverage.rows[0].unexpected_alerts.is_empty());
        assert!(
            coverage
                .render_markdown()
                .contains("| TargetDown | ad hoc | 1.0 s | — | 0 | passed |")
        );
    }

    #[test]
    fn from_dir_reads_every_journal_recursively() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("e2e/kill");
        std::fs::create_dir_all(&nested).unwrap();
        std::fs::write(
            nested.join("kill-replica.journal.json"),
            serde_json::to_vec(&kill_replica(1_000, "passed", true)).unwrap(),
        )
        .unwrap();
        std::fs::write(
            dir.path().join("payments-latency.journal.json"),
            serde_json::to_vec(&payments(&["TargetDown"])).unwrap(),
        )
        .unwrap();
        std::fs::write(dir.path().join("notes.json"), b"not a journal").unwrap();
        let coverage = Coverage::from_dir(dir.path()).unwrap();
        assert_eq!(coverage.rows.len(), 3);
        // Unexpected alerts come from the file even before the journal type has them.
        assert_eq!(coverage.rows[0].unexpected_alerts, ["TargetDown"]);

        let empty = tempfile::tempdir().unwrap();
        let err = Coverage::from_dir(empty.path()).unwrap_err();
        assert!(err.to_string().contains("no *.journal.json"), "{err}");

        let bad = dir.path().join("bad.journal.json");
        std::fs::write(&bad, b"{}").unwrap();
        let err = Coverage::from_dir(dir.path()).unwrap_err();
        assert!(err.to_string().contains("bad.journal.json"), "{err}");
    }

    impl Coverage {
        /// As [`Coverage::from_files`], from the files' JSON.
        fn from_files_values(values: &[Value]) -> Self {
            let loaded: Vec<(Journal, Vec<String>)> = values
                .iter()
                .map(|v| {
                    let journal = journal(v);
                    let unexpected = unexpected_names(&journal);
                    (journal, unexpected)
                })
                .collect();
            let entries: Vec<(&Journal, Vec<String>)> =
                loaded.iter().map(|(j, u)| (j, u.clone())).collect();
            Self::from_entries(&entries)
        }
    }
}
