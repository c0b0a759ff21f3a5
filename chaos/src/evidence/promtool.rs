//! A promtool unit test (`promtool test rules`) from a journal's evidence:
//! the raw series Prometheus held during the run as `input_series`, and, for
//! every alert series that fired, a `promql_expr_test` asserting that
//! `ALERTS{alertstate="firing"}` holds it when it fired live.
//!
//! `promql_expr_test` rather than `alert_rule_test`: the latter compares
//! annotations too, which quote `$value`, and the value depends on exactly
//! when the rule is evaluated.

use std::path::{Component, Path, PathBuf};

use serde::Serialize;

use crate::journal::{Evidence, EvidenceAlert, EvidenceSeries, Journal};

/// Why no test could be written.
#[derive(Debug, thiserror::Error)]
pub enum RegressError {
    #[error(
        "it has no evidence: the run had no Prometheus (target.prometheus), no expected alert \
         fired, or it was written before faultline gathered evidence"
    )]
    NoEvidence,
    #[error("its evidence holds no alert that fired")]
    NoAlerts,
    #[error("its evidence holds no series{}", notes(.0))]
    NoSeries(Vec<String>),
    #[error("cannot write YAML: {0}")]
    Yaml(#[from] serde_yaml_ng::Error),
}

fn notes(notes: &[String]) -> String {
    if notes.is_empty() {
        String::new()
    } else {
        format!(" ({})", notes.join("; "))
    }
}

#[derive(Serialize)]
struct TestFile {
    rule_files: Vec<String>,
    evaluation_interval: String,
    tests: Vec<TestGroup>,
}

#[derive(Serialize)]
struct TestGroup {
    name: String,
    interval: String,
    input_series: Vec<InputSeries>,
    promql_expr_test: Vec<ExprTest>,
}

#[derive(Serialize)]
struct InputSeries {
    series: String,
    values: String,
}

#[derive(Serialize)]
struct ExprTest {
    expr: String,
    eval_time: String,
    exp_samples: Vec<ExpSample>,
}

#[derive(Serialize)]
struct ExpSample {
    labels: String,
    value: f64,
}

/// A label value as a PromQL string literal.
fn quoted(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `name{a="1", b="2"}`: `__name__` as the name, other labels sorted.
fn series_selector<'a>(
    name: &str,
    labels: impl IntoIterator<Item = (&'a String, &'a String)>,
) -> String {
    let inner: Vec<String> = labels
        .into_iter()
        .filter(|(k, _)| k.as_str() != "__name__")
        .map(|(k, v)| format!("{k}={}", quoted(v)))
        .collect();
    format!("{name}{{{}}}", inner.join(", "))
}

/// A sample value as promtool reads it.
fn number(value: f64) -> String {
    if value.is_nan() {
        "NaN".to_owned()
    } else if value.is_infinite() {
        if value > 0.0 { "Inf" } else { "-Inf" }.to_owned()
    } else {
        format!("{value}")
    }
}

/// promtool's series notation: `_` for a missing value, runs of one value
/// as `v+0xN` (N + 1 values), runs of missing values as `_xN` (N values);
/// trailing missing values dropped.
pub fn series_values(values: &[Option<f64>]) -> String {
    let end = values
        .iter()
        .rposition(Option::is_some)
        .map_or(0, |i| i + 1);
    let values = &values[..end];
    let mut items = Vec::new();
    let mut i = 0;
    while i < values.len() {
        let run = values[i..]
            .iter()
            .take_while(|v| v.map(f64::to_bits) == values[i].map(f64::to_bits))
            .count();
        items.push(match (values[i], run) {
            (None, 1) => "_".to_owned(),
            (None, n) => format!("_x{n}"),
            (Some(v), 1) => number(v),
            (Some(v), n) => format!("{}+0x{}", number(v), n - 1),
        });
        i += run;
    }
    items.join(" ")
}

/// A Prometheus duration for `steps * step_s` seconds.
fn duration(seconds: f64) -> String {
    let ms = (seconds * 1000.0).round() as u64;
    if ms.is_multiple_of(1000) {
        format!("{}s", ms / 1000)
    } else {
        format!("{ms}ms")
    }
}

/// Where to check an alert: in the middle of the steps it was seen firing
/// live, from one step after the step at or after it was first seen firing
/// to the last step before it was seen resolved (or the evidence's last
/// step, `last_step`, if it never was). The live rule evaluations and scrapes
/// are not aligned with the evidence's steps, and a replayed rate differs
/// from the live one by a few percent, most near the edges where the alert's
/// expression crosses its threshold: the middle is the step farthest from
/// both edges.
pub fn eval_step(alert: &EvidenceAlert, step_s: f64, last_step: u64) -> u64 {
    let first = (alert.firing_at_s / step_s - 1e-9).ceil().max(0.0) as u64;
    let last_firing = match alert.resolved_at_s {
        Some(resolved) => ((resolved / step_s).floor() as u64)
            .saturating_sub(1)
            .min(last_step),
        None => last_step,
    };
    let from = first + 1;
    if last_firing < from {
        return last_firing.max(first);
    }
    from + (last_firing - from) / 2
}

fn expr_test(alert: &EvidenceAlert, step_s: f64, last_step: u64) -> ExprTest {
    let mut labels = alert.labels.clone();
    labels.insert("alertname".to_owned(), alert.alert.clone());
    labels.insert("alertstate".to_owned(), "firing".to_owned());
    let selector = series_selector("ALERTS", &labels);
    ExprTest {
        expr: selector.clone(),
        eval_time: duration(eval_step(alert, step_s, last_step) as f64 * step_s),
        exp_samples: vec![ExpSample {
            labels: selector,
            value: 1.0,
        }],
    }
}

/// Whether a metric's values are Unix times in seconds (by the Prometheus
/// naming conventions: `process_start_time_seconds`, `*_timestamp_seconds`;
/// and RabbitMQ's `rabbitmq_queue_head_message_timestamp`, an AMQP
/// timestamp, which is in seconds too).
fn is_unix_time(name: &str) -> bool {
    name.ends_with("_time_seconds")
        || name.ends_with("_timestamp_seconds")
        || name.ends_with("_timestamp")
}

/// A series as promtool input. promtool's clock starts at 0, so Unix times
/// are rebased to it: `start_s` (the first step, in Unix seconds) becomes 0,
/// and `time() - process_start_time_seconds` means in the replay what it
/// meant live.
fn input_series(series: &EvidenceSeries, start_s: f64) -> Option<InputSeries> {
    let name = series.labels.get("__name__").map_or("", String::as_str);
    let values = if is_unix_time(name) {
        let rebased: Vec<Option<f64>> = series
            .values
            .iter()
            .map(|v| v.map(|v| v - start_s))
            .collect();
        series_values(&rebased)
    } else {
        series_values(&series.values)
    };
    if values.is_empty() {
        return None;
    }
    Some(InputSeries {
        series: series_selector(name, &series.labels),
        values,
    })
}

/// The promtool test file of `journal`'s evidence, loading `rule_files`
/// (paths as the test file should name them: relative to its directory).
pub fn promtool_test(journal: &Journal, rule_files: &[String]) -> Result<String, RegressError> {
    let evidence: &Evidence = journal.evidence.as_ref().ok_or(RegressError::NoEvidence)?;
    if evidence.alerts.is_empty() {
        return Err(RegressError::NoAlerts);
    }
    let start_s = evidence.start_unix_ms as f64 / 1000.0;
    let input_series: Vec<InputSeries> = evidence
        .series
        .iter()
        .filter_map(|s| input_series(s, start_s))
        .collect();
    if input_series.is_empty() {
        return Err(RegressError::NoSeries(evidence.notes.clone()));
    }
    let step = duration(evidence.step_s);
    let last_step = evidence
        .series
        .iter()
        .map(|s| s.values.len().saturating_sub(1) as u64)
        .max()
        .unwrap_or(0);
    let file = TestFile {
        rule_files: rule_files.to_vec(),
        evaluation_interval: step.clone(),
        tests: vec![TestGroup {
            name: format!(
                "{}: {} fire{} as in run {}",
                journal.experiment.title,
                evidence
                    .alerts
                    .iter()
                    .map(|a| a.alert.as_str())
                    .collect::<std::collections::BTreeSet<_>>()
                    .into_iter()
                    .collect::<Vec<_>>()
                    .join(", "),
                if evidence.alerts.len() == 1 { "s" } else { "" },
                journal.run_id
            ),
            interval: step,
            input_series,
            promql_expr_test: evidence
                .alerts
                .iter()
                .map(|alert| expr_test(alert, evidence.step_s, last_step))
                .collect(),
        }],
    };
    let mut header = format!(
        "# Generated by `faultline regress` from run {} of {:?}",
        journal.run_id, journal.experiment.title
    );
    // From chaos/experiments/ on: the same wherever the checkout lives.
    if let Some(path) = &journal.experiment.path {
        let shown = path
            .find("chaos/experiments/")
            .map_or(path.as_str(), |at| &path[at..]);
        header.push_str(&format!(" ({shown})"));
    }
    header.push_str(
        ".\n# The raw series Prometheus held during the run, one value per step from its start;\n\
         # each alert must fire on them as it did live. Run: promtool test rules <this file>\n",
    );
    for note in &evidence.notes {
        header.push_str(&format!("# note: {}\n", note.replace('\n', " ")));
    }
    Ok(header + &serde_yaml_ng::to_string(&file)?)
}

/// `path` relative to the directory `base`, both made absolute from the
/// current directory first, lexically (symbolic links are not resolved).
pub fn relative_path(path: &Path, base: &Path) -> PathBuf {
    fn normal(path: &Path) -> Vec<Component<'_>> {
        let mut parts: Vec<Component<'_>> = Vec::new();
        for part in path.components() {
            match part {
                Component::CurDir => {}
                Component::ParentDir
                    if parts
                        .last()
                        .is_some_and(|p| matches!(p, Component::Normal(_))) =>
                {
                    parts.pop();
                }
                other => parts.push(other),
            }
        }
        parts
    }
    let (Ok(path_abs), Ok(base_abs)) = (std::path::absolute(path), std::path::absolute(base))
    else {
        return path.to_path_buf();
    };
    let (to, from) = (normal(&path_abs), normal(&base_abs));
    let common = to.iter().zip(&from).take_while(|(a, b)| a == b).count();
    let mut relative = PathBuf::new();
    for _ in common..from.len() {
        relative.push("..");
    }
    for part in &to[common..] {
        relative.push(part.as_os_str());
    }
    if relative.as_os_str().is_empty() {
        relative.push(".");
    }
    relative
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::collections::BTreeMap;

    use serde_json::json;

    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn journal(evidence: Option<Evidence>) -> Journal {
        let mut journal: Journal = serde_json::from_value(json!({
            "schema": 1,
            "faultline_version": "0.1.0",
            "run_id": "1700000000-abcd1234",
            "experiment": {"title": "Kill one of three orders replicas",
                           "path": "chaos/experiments/kill-replica.toml"},
            "environment": {},
            "start": "2026-01-01T00:00:00Z",
            "end": "2026-01-01T00:01:00Z",
            "start_unix_ms": 1_700_000_000_000_u64,
            "duration": 60.0,
            "status": "completed",
            "deviated": false,
            "verdict": "passed",
            "steady_states": {},
            "run": [],
            "rollbacks": [],
        }))
        .unwrap();
        journal.evidence = evidence;
        journal
    }

    fn evidence() -> Evidence {
        Evidence {
            step_s: 1.0,
            start_unix_ms: 1_700_000_000_000,
            alerts: vec![EvidenceAlert {
                alert: "ReplicasBelowDesired".into(),
                labels: labels(&[("peer_service", "orders"), ("severity", "ticket")]),
                firing_at_s: 11.4,
                resolved_at_s: Some(40.2),
                metrics: vec!["replicas_desired".into(), "upstream_endpoints".into()],
            }],
            series: vec![
                EvidenceSeries {
                    labels: labels(&[
                        ("__name__", "upstream_endpoints"),
                        ("job", "gateway"),
                        ("peer_service", "orders"),
                        ("state", "healthy"),
                        ("odd", "a \"quoted\" \\ value: {x}"),
                    ]),
                    values: vec![
                        Some(3.0),
                        Some(3.0),
                        Some(3.0),
                        Some(2.0),
                        None,
                        None,
                        Some(0.5),
                        None,
                    ],
                },
                EvidenceSeries {
                    labels: labels(&[("__name__", "replicas_desired"), ("peer_service", "orders")]),
                    values: vec![Some(3.0); 4],
                },
                EvidenceSeries {
                    labels: labels(&[("__name__", "gone"), ("job", "x")]),
                    values: vec![None, None],
                },
            ],
            notes: vec!["no series of something during the run".into()],
        }
    }

    #[test]
    fn values_use_promtool_notation() {
        assert_eq!(
            series_values(&[
                Some(1.0),
                Some(1.0),
                Some(1.0),
                None,
                Some(-2.5),
                None,
                None,
                Some(1e-7),
                None
            ]),
            "1+0x2 _ -2.5 _x2 0.0000001"
        );
        assert_eq!(series_values(&[None, None]), "");
        assert_eq!(
            series_values(&[
                Some(f64::INFINITY),
                Some(f64::NEG_INFINITY),
                Some(f64::NAN),
                Some(f64::NAN)
            ]),
            "Inf -Inf NaN+0x1"
        );
        assert_eq!(series_values(&[Some(0.0), Some(-0.0)]), "0 -0");
    }

    #[test]
    fn unix_time_names_follow_the_conventions() {
        for name in [
            "process_start_time_seconds",
            "kube_pod_created_timestamp_seconds",
            "rabbitmq_queue_head_message_timestamp",
        ] {
            assert!(is_unix_time(name), "{name}");
        }
        for name in [
            "rabbitmq_queue_messages",
            "http_server_request_duration_seconds",
        ] {
            assert!(!is_unix_time(name), "{name}");
        }
    }

    #[test]
    fn unix_times_are_rebased_to_promtools_clock() {
        let started = EvidenceSeries {
            labels: labels(&[("__name__", "process_start_time_seconds"), ("job", "x")]),
            values: vec![Some(1_700_000_000.0); 3],
        };
        let input = input_series(&started, 1_700_000_100.0).unwrap();
        assert_eq!(input.values, "-100+0x2");
        let other = EvidenceSeries {
            labels: labels(&[("__name__", "up"), ("job", "x")]),
            values: vec![Some(1.0); 2],
        };
        assert_eq!(
            input_series(&other, 1_700_000_100.0).unwrap().values,
            "1+0x1"
        );
    }

    #[test]
    fn checks_in_the_middle_of_the_live_firing() {
        let mut alert = evidence().alerts[0].clone();
        alert.firing_at_s = 12.0;
        alert.resolved_at_s = Some(31.0);
        // Firing from step 12 to step 30: from 13 on, the middle is 21.
        assert_eq!(eval_step(&alert, 1.0, 60), 21);
        // Never resolved: up to the evidence's last step.
        alert.resolved_at_s = None;
        assert_eq!(eval_step(&alert, 1.0, 40), 26);
        assert_eq!(eval_step(&alert, 0.5, 80), 52);
        // Seen firing between two steps: the step after.
        alert.firing_at_s = 11.6;
        assert_eq!(eval_step(&alert, 1.0, 13), 13);
        // Firing for one step only: that step.
        alert.firing_at_s = 12.0;
        alert.resolved_at_s = Some(13.5);
        assert_eq!(eval_step(&alert, 1.0, 60), 12);
    }

    #[test]
    fn renders_a_promtool_test_file() {
        let rules = vec!["../../alerts/compressed/dependencies.rules.yml".to_owned()];
        let text = promtool_test(&journal(Some(evidence())), &rules).unwrap();
        assert!(
            text.starts_with(
                "# Generated by `faultline regress` from run 1700000000-abcd1234 of \"Kill one of three orders replicas\" (chaos/experiments/kill-replica.toml).\n"
            ),
            "{text}"
        );
        assert!(text.contains("# note: no series of something during the run\n"));
        let yaml: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
        assert_eq!(yaml["rule_files"][0].as_str(), Some(rules[0].as_str()));
        assert_eq!(yaml["evaluation_interval"].as_str(), Some("1s"));
        let test = &yaml["tests"][0];
        assert_eq!(test["interval"].as_str(), Some("1s"));
        assert_eq!(
            test["name"].as_str(),
            Some(
                "Kill one of three orders replicas: ReplicasBelowDesired fires as in run 1700000000-abcd1234"
            )
        );
        let series = test["input_series"].as_sequence().unwrap();
        assert_eq!(series.len(), 2, "a series without values is left out");
        assert_eq!(
            series[0]["series"].as_str(),
            Some(
                "upstream_endpoints{job=\"gateway\", odd=\"a \\\"quoted\\\" \\\\ value: {x}\", peer_service=\"orders\", state=\"healthy\"}"
            )
        );
        assert_eq!(series[0]["values"].as_str(), Some("3+0x2 2 _x2 0.5"));
        assert_eq!(
            series[1]["series"].as_str(),
            Some("replicas_desired{peer_service=\"orders\"}")
        );
        assert_eq!(series[1]["values"].as_str(), Some("3+0x3"));
        let check = &test["promql_expr_test"][0];
        let alerts = "ALERTS{alertname=\"ReplicasBelowDesired\", alertstate=\"firing\", peer_service=\"orders\", severity=\"ticket\"}";
        assert_eq!(check["expr"].as_str(), Some(alerts));
        // Its evidence ends at step 6, before it fired: the step it fired.
        assert_eq!(check["eval_time"].as_str(), Some("12s"));
        assert_eq!(check["exp_samples"][0]["labels"].as_str(), Some(alerts));
        assert_eq!(check["exp_samples"][0]["value"].as_f64(), Some(1.0));
    }

    #[test]
    fn refuses_journals_without_evidence() {
        let err = promtool_test(&journal(None), &[]).unwrap_err();
        assert!(matches!(err, RegressError::NoEvidence), "{err}");
        let mut empty = evidence();
        empty.alerts.clear();
        assert!(matches!(
            promtool_test(&journal(Some(empty)), &[]).unwrap_err(),
            RegressError::NoAlerts
        ));
        let mut no_series = evidence();
        no_series.series.truncate(0);
        let err = promtool_test(&journal(Some(no_series)), &[]).unwrap_err();
        assert!(err.to_string().contains("no series of something"), "{err}");
    }

    #[test]
    fn rule_files_are_named_relative_to_the_test_file() {
        assert_eq!(
            relative_path(
                Path::new("/repo/alerts/compressed/a.rules.yml"),
                Path::new("/repo/target/regress")
            ),
            PathBuf::from("../../alerts/compressed/a.rules.yml")
        );
        assert_eq!(
            relative_path(Path::new("/repo/./x/../a.yml"), Path::new("/repo")),
            PathBuf::from("a.yml")
        );
        assert_eq!(
            relative_path(Path::new("/repo"), Path::new("/repo")),
            PathBuf::from(".")
        );
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(
            relative_path(Path::new("alerts/a.yml"), &cwd.join("out")),
            PathBuf::from("../alerts/a.yml")
        );
    }
}
