//! Evidence for offline regression: at the end of a run, the raw series
//! behind every expected alert that fired, read back from Prometheus, so
//! that a live proof becomes a `promtool test rules` file
//! ([`promtool::promtool_test`], `faultline regress`).
//!
//! For each alert series that fired as expected, the alerting rule is
//! looked up in `/api/v1/rules`; the names its expression reads
//! ([`promql::metric_names`]) are followed through recording rules down to
//! raw metrics; each raw metric is read with `/api/v1/query_range`
//! (`{__name__="m"}`) from the start of the run to now, every [`STEP_S`].
//! Nothing here fails a run: what cannot be gathered becomes a note.

pub mod promql;
pub mod promtool;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

use crate::environment::Environment;
use crate::journal::{AlertExpectationRecord, AlertSeen, Evidence, EvidenceAlert, EvidenceSeries};
use crate::probes::prometheus::{LoadedRule, PrometheusClient, labels_match};

pub use promql::metric_names;
pub use promtool::{RegressError, promtool_test};

/// Seconds between two values of a series: the compressed rules' scrape
/// and evaluation interval.
pub const STEP_S: f64 = 1.0;

/// Prometheus refuses range queries of more than 11,000 points per series.
const MAX_POINTS: u64 = 11_000;

/// Series Prometheus writes itself from rules: never input.
const RULE_OUTPUT: [&str; 2] = ["ALERTS", "ALERTS_FOR_STATE"];

/// The alert series that reached `firing` as an expectation required:
/// first firing time and the next time they were seen inactive. A firing
/// already there when the run started (seen at 0 s) is left out: the run's
/// series hold none of the history that made it fire, so no replay could
/// show it; the next firing, if any, is taken instead.
pub fn fired_as_expected(
    expectations: &[AlertExpectationRecord],
    seen: &[AlertSeen],
) -> Vec<EvidenceAlert> {
    let mut fired: Vec<EvidenceAlert> = Vec::new();
    for expect in expectations.iter().filter(|e| e.met && e.state == "firing") {
        let series = seen
            .iter()
            .filter(|s| s.alert == expect.alert && labels_match(&s.labels, &expect.labels));
        for s in series {
            let Some(firing) = s
                .transitions
                .iter()
                .position(|t| t.state == "firing" && t.at_s > 0.0)
            else {
                continue;
            };
            if fired
                .iter()
                .any(|f| f.alert == s.alert && f.labels == s.labels)
            {
                continue;
            }
            fired.push(EvidenceAlert {
                alert: s.alert.clone(),
                labels: s.labels.clone(),
                firing_at_s: s.transitions[firing].at_s,
                resolved_at_s: s.transitions[firing..]
                    .iter()
                    .find(|t| t.state == "inactive")
                    .map(|t| t.at_s),
                metrics: Vec::new(),
            });
        }
    }
    fired
}

/// The raw metrics alert `alert` reads, following recording rules; `None`
/// when Prometheus has no alerting rule of that name.
pub fn raw_metrics(alert: &str, rules: &[LoadedRule]) -> Option<BTreeSet<String>> {
    let mut stack: Vec<String> = rules
        .iter()
        .filter(|r| r.alerting && r.name == alert)
        .flat_map(|r| metric_names(&r.query))
        .collect();
    if !rules.iter().any(|r| r.alerting && r.name == alert) {
        return None;
    }
    let mut recorded: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for rule in rules.iter().filter(|r| !r.alerting) {
        recorded
            .entry(rule.name.as_str())
            .or_default()
            .push(rule.query.as_str());
    }
    let mut visited = BTreeSet::new();
    let mut raw = BTreeSet::new();
    while let Some(name) = stack.pop() {
        if !visited.insert(name.clone()) {
            continue;
        }
        match recorded.get(name.as_str()) {
            Some(queries) => stack.extend(queries.iter().flat_map(|q| metric_names(q))),
            None if RULE_OUTPUT.contains(&name.as_str()) => {}
            None => {
                raw.insert(name);
            }
        }
    }
    Some(raw)
}

/// Lays a range query's samples out on the grid `start + k * step`, `len` steps.
fn on_grid(samples: &[(f64, f64)], start: f64, step: f64, len: usize) -> Vec<Option<f64>> {
    let mut values = vec![None; len];
    for (t, value) in samples {
        let k = ((t - start) / step).round();
        if k >= 0.0 && (k as usize) < len && value.is_finite() {
            values[k as usize] = Some(*value);
        }
    }
    values
}

/// The evidence of a run, gathered at its end; `None` when no expected
/// alert fired, or there is no Prometheus to ask.
pub async fn gather(
    environment: &Environment,
    expectations: &[AlertExpectationRecord],
    seen: &[AlertSeen],
    start_unix_ms: u64,
    cancel: &CancellationToken,
) -> Option<Evidence> {
    let alerts = fired_as_expected(expectations, seen);
    let base = environment.prometheus.as_deref()?;
    if alerts.is_empty() || cancel.is_cancelled() {
        return None;
    }
    let mut evidence = Evidence {
        step_s: STEP_S,
        start_unix_ms,
        alerts,
        series: Vec::new(),
        notes: Vec::new(),
    };
    tokio::select! {
        () = cancel.cancelled() => evidence.notes.push("interrupted while gathering".to_owned()),
        () = fill(&mut evidence, base) => {}
    }
    Some(evidence)
}

/// Reads the rules and the raw series into `evidence`, noting failures.
async fn fill(evidence: &mut Evidence, base: &str) {
    faultline_signal::install_crypto_provider();
    let http = match reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(3))
        .build()
    {
        Ok(http) => http,
        Err(err) => {
            evidence
                .notes
                .push(format!("cannot build the HTTP client: {err}"));
            return;
        }
    };
    let client = PrometheusClient::new(base, http);
    let rules = match client.rules().await {
        Ok(rules) => rules,
        Err(err) => {
            evidence.notes.push(format!("cannot read the rules: {err}"));
            return;
        }
    };
    let mut metrics = BTreeSet::new();
    for alert in &mut evidence.alerts {
        match raw_metrics(&alert.alert, &rules) {
            Some(raw) => {
                alert.metrics = raw.iter().cloned().collect();
                metrics.extend(raw);
            }
            None => evidence.notes.push(format!(
                "Prometheus at {base} has no alerting rule {}",
                alert.alert
            )),
        }
    }
    let now_ms = crate::journal::unix_ms(SystemTime::now());
    let step_ms = (evidence.step_s * 1000.0) as u64;
    let mut start_ms = evidence.start_unix_ms;
    let mut points = now_ms.saturating_sub(start_ms) / step_ms + 1;
    if points > MAX_POINTS {
        // Keep the end, where the alerts fired, and move the start.
        let shift = (points - MAX_POINTS) * step_ms;
        start_ms += shift;
        points = MAX_POINTS;
        let shift_s = shift as f64 / 1000.0;
        for alert in &mut evidence.alerts {
            alert.firing_at_s -= shift_s;
            alert.resolved_at_s = alert.resolved_at_s.map(|t| t - shift_s);
        }
        evidence.notes.push(format!(
            "the run is longer than {MAX_POINTS} steps: the series start {shift_s} s after it"
        ));
        evidence.start_unix_ms = start_ms;
    }
    let start = start_ms as f64 / 1000.0;
    let end = start + (points - 1) as f64 * evidence.step_s;
    let queries = metrics.iter().map(|metric| {
        let client = &client;
        let step = evidence.step_s;
        async move {
            let query = format!("{{__name__=\"{metric}\"}}");
            (metric, client.query_range(&query, start, end, step).await)
        }
    });
    for (metric, result) in futures::future::join_all(queries).await {
        match result {
            Ok(series) if series.is_empty() => evidence
                .notes
                .push(format!("no series of {metric} during the run")),
            Ok(series) => {
                for s in series {
                    let values = on_grid(&s.samples, start, evidence.step_s, points as usize);
                    evidence.series.push(EvidenceSeries {
                        labels: s.labels,
                        values,
                    });
                }
            }
            Err(err) => evidence
                .notes
                .push(format!("cannot read the series of {metric}: {err}")),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use std::sync::{Arc, Mutex};

    use axum::extract::{Query, State};
    use axum::routing::get;
    use axum::{Json, Router};
    use serde_json::{Value, json};

    use super::*;
    use crate::environment::Environment;
    use crate::journal::AlertTransition;

    fn rule(name: &str, query: &str, alerting: bool) -> LoadedRule {
        LoadedRule {
            name: name.into(),
            query: query.into(),
            alerting,
        }
    }

    #[test]
    fn follows_recording_rules_down_to_raw_metrics() {
        let rules = [
            rule("job:a:rate5m", "sum by (job) (rate(a_total[5s]))", false),
            rule(
                "job:a:rate5m_avg1h",
                "avg_over_time(job:a:rate5m[1m])",
                false,
            ),
            rule("job:b:ratio", "job:a:rate5m / on (job) b", false),
            rule(
                "A",
                "job:a:rate5m > 2 * job:a:rate5m_avg1h and job:b:ratio > 0.1 and up == 1",
                true,
            ),
            rule("A", "ALERTS{alertname=\"Other\"} and c", true),
            rule("W", "vector(1)", true),
        ];
        let raw: Vec<String> = raw_metrics("A", &rules).unwrap().into_iter().collect();
        assert_eq!(raw, ["a_total", "b", "c", "up"]);
        assert_eq!(raw_metrics("W", &rules), Some(BTreeSet::new()));
        assert_eq!(raw_metrics("Missing", &rules), None);
        // A recording rule is not an alert.
        assert_eq!(raw_metrics("job:b:ratio", &rules), None);
    }

    fn transition(state: &str, at_s: f64) -> AlertTransition {
        AlertTransition {
            state: state.into(),
            at_s,
        }
    }

    fn seen(alert: &str, job: &str, transitions: Vec<AlertTransition>) -> AlertSeen {
        AlertSeen {
            alert: alert.into(),
            labels: BTreeMap::from([
                ("job".to_owned(), job.to_owned()),
                ("severity".to_owned(), "ticket".to_owned()),
            ]),
            transitions,
        }
    }

    fn expectation(alert: &str, state: &str, met: bool) -> AlertExpectationRecord {
        AlertExpectationRecord {
            alert: alert.into(),
            state: state.into(),
            within_s: 30.0,
            labels: BTreeMap::new(),
            met,
            at_s: None,
            detection_time_s: None,
            note: String::new(),
            before: None,
            lead_time_s: None,
        }
    }

    #[test]
    fn keeps_the_series_that_fired_as_expected() {
        let seen = [
            seen(
                "A",
                "orders",
                vec![
                    transition("pending", 3.0),
                    transition("firing", 5.0),
                    transition("inactive", 20.0),
                    transition("firing", 30.0),
                ],
            ),
            seen("A", "gateway", vec![transition("pending", 4.0)]),
            seen("B", "orders", vec![transition("firing", 7.0)]),
            seen("C", "orders", vec![transition("firing", 8.0)]),
        ];
        let mut labelled = expectation("A", "firing", true);
        labelled.labels = BTreeMap::from([("job".to_owned(), "orders".to_owned())]);
        let expectations = [
            expectation("A", "firing", true),
            labelled,
            expectation("A", "resolved", true),
            expectation("B", "firing", false),
            expectation("C", "pending", true),
        ];
        let fired = fired_as_expected(&expectations, &seen);
        assert_eq!(fired.len(), 1, "{fired:?}");
        assert_eq!(fired[0].alert, "A");
        assert_eq!(fired[0].labels["job"], "orders");
        assert_eq!(fired[0].firing_at_s, 5.0);
        assert_eq!(fired[0].resolved_at_s, Some(20.0));
    }

    #[test]
    fn a_firing_inherited_from_before_the_run_is_not_replayed() {
        let seen = [
            seen(
                "A",
                "orders",
                vec![
                    transition("firing", 0.0),
                    transition("inactive", 1.0),
                    transition("pending", 17.0),
                    transition("firing", 18.0),
                    transition("inactive", 35.0),
                ],
            ),
            seen("B", "orders", vec![transition("firing", 0.0)]),
        ];
        let expectations = [
            expectation("A", "firing", true),
            expectation("B", "firing", true),
        ];
        let fired = fired_as_expected(&expectations, &seen);
        assert_eq!(fired.len(), 1, "{fired:?}");
        assert_eq!(fired[0].firing_at_s, 18.0);
        assert_eq!(fired[0].resolved_at_s, Some(35.0));
    }

    #[test]
    fn samples_land_on_the_grid() {
        let samples = [
            (100.0, 1.0),
            (101.0, 2.0),
            (103.0, f64::NAN),
            (104.0, 4.0),
            (99.0, 0.0),
        ];
        assert_eq!(
            on_grid(&samples, 100.0, 1.0, 5),
            [Some(1.0), Some(2.0), None, None, Some(4.0)]
        );
    }

    type Calls = Arc<Mutex<Vec<BTreeMap<String, String>>>>;

    /// A Prometheus that knows one alert over one recording rule.
    async fn fake_prometheus(calls: Calls) -> String {
        async fn rules() -> Json<Value> {
            Json(json!({"status": "success", "data": {"groups": [{
            "name": "g", "file": "x.rules.yml", "rules": [
                {"name": "job:a:rate5m", "query": "sum by (job) (rate(a_total[5s]))",
                 "type": "recording", "health": "ok", "labels": {}},
                {"name": "A", "query": "job:a:rate5m > 1", "duration": 2,
                 "type": "alerting", "health": "ok", "labels": {"severity": "ticket"},
                 "annotations": {}, "alerts": []},
            ]}]}}))
        }
        async fn query_range(
            State(calls): State<Calls>,
            Query(params): Query<BTreeMap<String, String>>,
        ) -> Json<Value> {
            let start: f64 = params["start"].parse().unwrap();
            calls.lock().unwrap().push(params);
            Json(
                json!({"status": "success", "data": {"resultType": "matrix", "result": [
                    {"metric": {"__name__": "a_total", "job": "orders"},
                     "values": [[start, "1"], [start + 1.0, "3"], [start + 3.0, "NaN"]]},
                    {"metric": {"__name__": "a_total", "job": "gateway"},
                     "values": [[start + 1.0, "7"]]},
                ]}}),
            )
        }
        let app = Router::new()
            .route("/api/v1/rules", get(rules))
            .route("/api/v1/query_range", get(query_range))
            .with_state(calls);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        url
    }

    fn environment(prometheus: Option<String>) -> Environment {
        Environment {
            prometheus,
            ..Environment::default()
        }
    }

    #[tokio::test]
    async fn gathers_the_raw_series_from_prometheus() {
        let calls = Calls::default();
        let url = fake_prometheus(calls.clone()).await;
        let expectations = [expectation("A", "firing", true)];
        let seen = [seen("A", "orders", vec![transition("firing", 2.5)])];
        let start_ms = crate::journal::unix_ms(SystemTime::now()) - 4_000;
        let cancel = CancellationToken::new();
        let evidence = gather(
            &environment(Some(url)),
            &expectations,
            &seen,
            start_ms,
            &cancel,
        )
        .await
        .unwrap();
        assert!(evidence.notes.is_empty(), "{:?}", evidence.notes);
        assert_eq!(evidence.step_s, 1.0);
        assert_eq!(evidence.start_unix_ms, start_ms);
        assert_eq!(evidence.alerts.len(), 1);
        assert_eq!(evidence.alerts[0].metrics, ["a_total"]);
        assert_eq!(evidence.alerts[0].firing_at_s, 2.5);
        assert_eq!(evidence.series.len(), 2);
        assert_eq!(evidence.series[0].labels["__name__"], "a_total");
        assert_eq!(
            evidence.series[0].values[..4],
            [Some(1.0), Some(3.0), None, None]
        );
        assert!(evidence.series[0].values.len() >= 5);
        assert_eq!(evidence.series[1].values[..2], [None, Some(7.0)]);
        let calls = calls.lock().unwrap();
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0]["query"], "{__name__=\"a_total\"}");
        assert_eq!(calls[0]["step"], "1");
        assert_eq!(
            calls[0]["start"],
            format!("{:.3}", start_ms as f64 / 1000.0)
        );
    }

    #[tokio::test]
    async fn failures_become_notes_and_nothing_is_gathered_without_prometheus() {
        let expectations = [expectation("A", "firing", true)];
        let seen = [seen("A", "orders", vec![transition("firing", 2.5)])];
        let cancel = CancellationToken::new();
        assert_eq!(
            gather(&environment(None), &expectations, &seen, 0, &cancel).await,
            None
        );
        assert_eq!(
            gather(
                &environment(Some("http://127.0.0.1:9".into())),
                &[],
                &seen,
                0,
                &cancel
            )
            .await,
            None
        );
        // Nothing listens on port 9 (discard) here: a note, not an error.
        let evidence = gather(
            &environment(Some("http://127.0.0.1:9".into())),
            &expectations,
            &seen,
            0,
            &cancel,
        )
        .await
        .unwrap();
        assert_eq!(evidence.alerts.len(), 1);
        assert!(evidence.series.is_empty());
        assert!(
            evidence.notes[0].starts_with("cannot read the rules"),
            "{:?}",
            evidence.notes
        );
    }
}
