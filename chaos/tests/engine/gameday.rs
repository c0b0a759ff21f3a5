//! Game days without containers: tiny experiments whose fault is an HTTP
//! call to an in-process fake that turns a fake alert on (and its undo,
//! off), run through the real runner with short durations.

use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use faultline_chaos::gameday::{self, GameDay, GameDayReport, StopReason, order};
use faultline_chaos::journal::Verdict;
use faultline_chaos::runner::{Bindings, LedgerDir};
use faultline_chaos::testing::FakeAlerts;

/// The fake system: `POST /faults` fires `TinyAlert`, `DELETE /faults`
/// resolves it, `GET /health` answers.
async fn fake_system() -> (String, FakeAlerts) {
    let alerts = FakeAlerts::default();
    let app = Router::new()
        .route(
            "/faults",
            post(|State(alerts): State<FakeAlerts>| async move {
                alerts.set(&[("TinyAlert", "firing")]);
                StatusCode::CREATED
            })
            .delete(|State(alerts): State<FakeAlerts>| async move {
                alerts.set(&[]);
                StatusCode::NO_CONTENT
            }),
        )
        .route("/health", get(|| async { "ok" }))
        .with_state(alerts.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, alerts)
}

/// A passing experiment: a 1 s method with a 500 ms fault that fires the
/// alert; expected at most 1 s (method) + 1 s (recovery) = 2 s.
fn passing(name: &str, url: &str) -> String {
    format!(
        r#"
title = "tiny {name}"
description = "A fault that fires TinyAlert for half a second."

[target]
fault_admin = {{ app = "{url}" }}

[settings]
probe_interval = "50ms"
alert_poll_interval = "50ms"

[[steady_state.probes]]
name = "answers"
type = "http"
url = "${{fault_admin.app}}/health"

[method]
duration = "1s"

[[method.faults]]
name = "fire the alert"
type = "http"
url = "${{fault_admin.app}}/faults"
expect = [201]
undo = {{ method = "DELETE", url = "${{fault_admin.app}}/faults", expect = [204] }}
at = "100ms"
duration = "500ms"

[recovery]
deadline = "1s"

[[expected_alerts]]
alert = "TinyAlert"
state = "firing"
within = "800ms"
"#
    )
}

/// A failing experiment: its steady state does not hold (a 404), so it
/// fails at once.
fn failing(url: &str) -> String {
    format!(
        r#"
title = "tiny broken"
description = "The steady state never holds."

[target]
fault_admin = {{ app = "{url}" }}

[[steady_state.probes]]
name = "a page that is not there"
type = "http"
url = "${{fault_admin.app}}/missing"

[method]
duration = "1s"

[recovery]
deadline = "1s"
"#
    )
}

fn write(dir: &Path, files: &[(&str, String)]) -> Vec<PathBuf> {
    files
        .iter()
        .map(|(name, text)| {
            let path = dir.join(format!("{name}.toml"));
            std::fs::write(&path, text).unwrap();
            path
        })
        .collect()
}

fn bindings_with(alerts: &FakeAlerts, ledger: &Path) -> impl Fn(&str) -> Bindings {
    let alerts = alerts.clone();
    let ledger = ledger.to_owned();
    move |_experiment: &str| Bindings {
        ledger: LedgerDir::At(ledger.clone()),
        alerts: Some(std::sync::Arc::new(alerts.clone())),
        ..Bindings::default()
    }
}

async fn run_day(day: &GameDay, alerts: &FakeAlerts, ledger: &Path) -> GameDayReport {
    tokio::time::timeout(
        Duration::from_secs(60),
        gameday::run(day, bindings_with(alerts, ledger)),
    )
    .await
    .unwrap()
    .unwrap()
}

#[test]
fn the_order_is_pinned_by_the_seed() {
    // Pinned: a change here changes every recorded game day's order.
    assert_eq!(order::shuffle(6, 42), order::shuffle(6, 42));
    // Checked against an independent implementation of SplitMix64 + Fisher-Yates.
    assert_eq!(order::shuffle(6, 42), [4, 3, 0, 2, 5, 1]);
    assert_ne!(order::shuffle(6, 42), order::shuffle(6, 43));
    let distinct: std::collections::BTreeSet<Vec<usize>> =
        (0..20).map(|seed| order::shuffle(5, seed)).collect();
    assert!(distinct.len() > 10, "seeds spread: {distinct:?}");
}

#[tokio::test]
async fn the_same_seed_gives_the_same_order_and_another_seed_another() {
    let (url, alerts) = fake_system().await;
    let dir = tempfile::tempdir().unwrap();
    let names = ["alpha", "bravo", "charlie", "delta", "echo"];
    let files: Vec<(&str, String)> = names.iter().map(|n| (*n, passing(n, &url))).collect();
    let experiments = write(dir.path(), &files);
    // No budget: nothing runs, but the order is decided and reported.
    let day = |seed| GameDay {
        seed,
        duration: Duration::ZERO,
        cooldown: Duration::ZERO,
        experiments: experiments.clone(),
        report_dir: dir.path().join(format!("day-{seed}")),
        ..GameDay::default()
    };
    let first = run_day(&day(7), &alerts, dir.path()).await;
    let again = run_day(&day(7), &alerts, dir.path()).await;
    let other = run_day(&day(8), &alerts, dir.path()).await;
    assert!(first.runs.is_empty());
    assert_eq!(first.stopped, StopReason::Budget);
    assert_eq!(first.order, again.order);
    assert_ne!(first.order, other.order);
    let mut sorted = first.order.clone();
    sorted.sort();
    assert_eq!(sorted, names);
    // The order is the pinned shuffle of the files as given.
    let expected: Vec<&str> = order::shuffle(5, 7).iter().map(|&i| names[i]).collect();
    assert_eq!(first.order, expected);
}

#[tokio::test]
async fn a_day_keeps_to_its_budget_and_cools_down_between_runs() {
    let (url, alerts) = fake_system().await;
    let dir = tempfile::tempdir().unwrap();
    let files: Vec<(&str, String)> = ["one", "two", "three", "four"]
        .iter()
        .map(|n| (*n, passing(n, &url)))
        .collect();
    let experiments = write(dir.path(), &files);
    let report_dir = dir.path().join("report");
    let cooldown = Duration::from_millis(400);
    let budget = Duration::from_secs(7);
    let day = GameDay {
        seed: 3,
        duration: budget,
        cooldown,
        experiments,
        report_dir: report_dir.clone(),
        ..GameDay::default()
    };
    let report = run_day(&day, &alerts, dir.path()).await;
    assert!(report.runs.len() >= 2, "{report:#?}");
    assert_eq!(report.stopped, StopReason::Budget);
    for run in &report.runs {
        assert_eq!(run.verdict, Verdict::Passed, "{:?}", run.deviations);
        assert!((run.estimate_s - 2.0).abs() < 1e-9, "{}", run.estimate_s);
        assert!(
            run.start_s + run.estimate_s <= budget.as_secs_f64(),
            "run {} started at {} s, expected to take {} s, past the budget",
            run.index,
            run.start_s,
            run.estimate_s
        );
    }
    for pair in report.runs.windows(2) {
        let gap = pair[1].start_s - pair[0].end_s;
        assert!(
            gap >= cooldown.as_secs_f64(),
            "gap {gap} s after run {}",
            pair[0].index
        );
    }
    // Runs follow the order, cycling.
    for (i, run) in report.runs.iter().enumerate() {
        assert_eq!(run.experiment, report.order[i % report.order.len()]);
    }
    assert!(!report.skipped.is_empty(), "the day ended on the budget");
    // Each run's time to fire.
    for run in &report.runs {
        let alert = &run.alerts[0];
        assert_eq!(
            (alert.alert.as_str(), alert.state.as_str()),
            ("TinyAlert", "firing")
        );
        assert!(alert.met && alert.after_s.unwrap() < 0.8, "{alert:?}");
    }

    // The combined report, and each run's own.
    let markdown = std::fs::read_to_string(report_dir.join("gameday.md")).unwrap();
    for run in &report.runs {
        assert!(
            markdown.contains(&format!(
                "| {} | tiny {} (`{}`) |",
                run.index, run.experiment, run.experiment
            )),
            "run {} missing in\n{markdown}",
            run.index
        );
        let journal = report_dir.join(run.journal.as_ref().unwrap());
        assert!(journal.is_file(), "{}", journal.display());
        assert!(report_dir.join(run.report.as_ref().unwrap()).is_file());
        assert!(
            markdown.contains(run.report.as_ref().unwrap()),
            "links the run's report"
        );
    }
    assert!(markdown.contains("TinyAlert"), "{markdown}");
    assert!(markdown.contains("![timeline](gameday.svg)"));
    let saved: GameDayReport =
        serde_json::from_str(&std::fs::read_to_string(report_dir.join("gameday.json")).unwrap())
            .unwrap();
    assert_eq!(saved, report);
    let svg = std::fs::read_to_string(report_dir.join("gameday.svg")).unwrap();
    assert!(
        svg.contains("1. ") && svg.contains("TinyAlert"),
        "run and alert lanes"
    );
    let png = image::open(report_dir.join("gameday.png"))
        .unwrap()
        .to_rgb8();
    assert_eq!(png.dimensions(), gameday::timeline::size(&report));
}

#[tokio::test]
async fn stop_on_failure_ends_the_day_at_the_first_failing_run() {
    let (url, alerts) = fake_system().await;
    let dir = tempfile::tempdir().unwrap();
    let experiments = write(
        dir.path(),
        &[("good", passing("good", &url)), ("broken", failing(&url))],
    );
    let day = |stop_on_failure| GameDay {
        seed: 1,
        duration: Duration::from_secs(8),
        cooldown: Duration::from_millis(100),
        experiments: experiments.clone(),
        stop_on_failure,
        report_dir: dir.path().join(format!("stop-{stop_on_failure}")),
        ..GameDay::default()
    };
    let stopped = run_day(&day(true), &alerts, dir.path()).await;
    assert_eq!(stopped.stopped, StopReason::Failure);
    let last = stopped.runs.last().unwrap();
    assert_eq!(last.experiment, "broken");
    assert_eq!(last.verdict, Verdict::Failed);
    assert!(
        stopped.runs[..stopped.runs.len() - 1]
            .iter()
            .all(|r| r.verdict == Verdict::Passed)
    );
    assert!(!last.deviations.is_empty());
    let markdown = std::fs::read_to_string(dir.path().join("stop-true/gameday.md")).unwrap();
    assert!(markdown.contains("## What deviated"), "{markdown}");
}

#[tokio::test]
async fn without_stop_on_failure_the_day_carries_on() {
    let (url, alerts) = fake_system().await;
    let dir = tempfile::tempdir().unwrap();
    let experiments = write(dir.path(), &[("broken", failing(&url))]);
    let day = GameDay {
        seed: 1,
        duration: Duration::from_secs(6),
        cooldown: Duration::from_millis(200),
        experiments,
        report_dir: dir.path().join("carry-on"),
        ..GameDay::default()
    };
    let report = run_day(&day, &alerts, dir.path()).await;
    assert_eq!(report.stopped, StopReason::Budget);
    assert!(report.runs.len() >= 2, "{report:#?}");
    assert!(report.runs.iter().all(|r| r.verdict == Verdict::Failed));
}

#[tokio::test]
async fn cancelling_interrupts_the_run_and_ends_the_day() {
    let (url, alerts) = fake_system().await;
    let dir = tempfile::tempdir().unwrap();
    let experiments = write(dir.path(), &[("one", passing("one", &url))]);
    let day = GameDay {
        seed: 1,
        duration: Duration::from_secs(30),
        cooldown: Duration::from_secs(5),
        experiments,
        report_dir: dir.path().join("cancelled"),
        ..GameDay::default()
    };
    let cancel = day.cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(400)).await;
        cancel.cancel();
    });
    let report = run_day(&day, &alerts, dir.path()).await;
    assert_eq!(report.stopped, StopReason::Interrupted);
    assert_eq!(report.runs.len(), 1);
    assert_eq!(report.runs[0].verdict, Verdict::Interrupted);
    assert!(dir.path().join("cancelled/gameday.md").is_file());
}
