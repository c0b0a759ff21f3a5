//! Reports: Markdown, and the timeline plot as SVG and PNG.

use std::sync::Arc;
use std::time::Duration;

use faultline_chaos::Journal;
use faultline_chaos::experiment::{ExpectedAlert, ExpectedState};
use faultline_chaos::journal::Verdict;
use faultline_chaos::report::{self, markdown, plot};
use faultline_chaos::runner::{Bindings, LedgerDir, Plan, PlannedFault, PlannedProbe, run_plan};
use faultline_chaos::testing::{
    Behaviour, CallLog, FakeAlerts, FakeFault, SwitchProbe, SyntheticLoad,
};

/// A run with synthetic load whose latency rises while the fault is in, and
/// an alert that goes pending, fires, then resolves; the method lasts 0.9 s.
async fn journal() -> Result<Journal, tokio::time::error::Elapsed> {
    let ms = Duration::from_millis;
    let log = CallLog::default();
    let mut plan = Plan::new("Synthetic latency fault");
    plan.settings.probe_interval = Duration::from_millis(20);
    plan.settings.alert_poll_interval = Duration::from_millis(20);
    plan.method_duration = ms(900);
    plan.recovery_deadline = Duration::from_secs(5);
    let fault = FakeFault::new("latency", &log);
    let injected = fault.injected.clone();
    plan.faults = vec![PlannedFault {
        name: "latency".into(),
        at: ms(300),
        duration: Some(ms(500)),
        fault: Arc::new(fault),
    }];
    plan.steady_state = vec![PlannedProbe {
        name: "ok".into(),
        within: None,
        probe: Arc::new(SwitchProbe::new(Behaviour::Succeed)),
    }];
    plan.load = Some(Arc::new(SyntheticLoad {
        window: ms(50),
        requests_per_window: 40,
        shape: Arc::new(|t| {
            // Latency climbs while the fault is in, errors spike at its start.
            if (0.35..0.8).contains(&t) {
                let climb = ((t - 0.35) / 0.15).min(1.0);
                let errors = if t < 0.5 { 0.08 } else { 0.01 };
                (8.0 + 112.0 * climb, 25.0 + 455.0 * climb, errors)
            } else {
                (
                    8.0 + (t * 50.0).sin().abs(),
                    25.0 + 5.0 * (t * 30.0).cos().abs(),
                    0.0,
                )
            }
        }),
    }));
    let alerts = FakeAlerts::default();
    plan.alerts = Some(Arc::new(alerts.clone()));
    plan.expected_alerts = vec![ExpectedAlert {
        alert: "DependencyLatencyRising".into(),
        state: ExpectedState::Firing,
        within: ms(5000),
        labels: Default::default(),
        before: None,
    }];
    // The alert's life, paced by the runner's polls (every 20 ms): pending
    // once the fault is in, firing after the runner has seen it pending a few
    // times, resolved after it has seen it firing a dozen times.
    tokio::spawn(async move {
        injected.notified().await;
        alerts.polled(3).await;
        alerts.set(&[("DependencyLatencyRising", "pending")]);
        alerts.polled(7).await;
        alerts.set(&[("DependencyLatencyRising", "firing")]);
        alerts.polled(12).await;
        alerts.set(&[]);
    });
    let bindings = Bindings {
        ledger: LedgerDir::Disabled,
        ..Bindings::default()
    };
    tokio::time::timeout(Duration::from_secs(30), run_plan(plan, bindings)).await
}

#[tokio::test]
async fn markdown_names_what_happened() {
    let journal = journal().await.unwrap();
    assert_eq!(journal.verdict, Verdict::Passed, "{:?}", journal.reasons);
    let md = markdown::render(&journal, Some("run.svg"));
    for needle in [
        "# Synthetic latency fault",
        "PASSED",
        "![timeline](run.svg)",
        "## Method",
        "| latency | fake | inject |",
        "## Expected alerts",
        "DependencyLatencyRising",
        "## Recovery",
        "## Load",
    ] {
        assert!(md.contains(needle), "{needle:?} missing in\n{md}");
    }
}

#[tokio::test]
async fn svg_has_the_series_window_and_alerts() {
    let journal = journal().await.unwrap();
    assert!(journal.load.as_ref().unwrap().timeline.len() > 5);
    let svg = plot::render_svg(&journal).unwrap();
    assert!(svg.starts_with("<svg"), "{}", &svg[..100]);
    for needle in [
        "Synthetic latency fault",
        "p50",
        "p95",
        "p99",
        "fault window",
        "DependencyLatencyRising",
        "Alerts",
        "pending",
        "firing",
        "resolved",
        "Error ratio",
        "seconds since start",
    ] {
        assert!(svg.contains(needle), "{needle:?} missing from the SVG");
    }
    assert!(svg.contains("<polyline"), "lines are drawn");
}

#[tokio::test]
async fn png_is_written_and_not_blank() {
    let journal = journal().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let files = report::write(&journal, dir.path(), "run").unwrap();
    let image = image::open(&files.png).unwrap().to_rgb8();
    assert_eq!(image.dimensions(), plot::size(&journal));
    assert!(
        plot::size(&journal).1 > plot::SIZE.1,
        "the alert lanes add height"
    );
    let mut colours = std::collections::BTreeSet::new();
    let mut fault_shade = 0;
    let mut dark = 0;
    for pixel in image.pixels() {
        colours.insert(pixel.0);
        let [r, g, b] = pixel.0;
        if r > 240 && (200..235).contains(&g) && (200..235).contains(&b) {
            fault_shade += 1;
        }
        if r < 80 && g < 80 && b < 80 {
            dark += 1;
        }
    }
    assert!(colours.len() > 50, "only {} colours", colours.len());
    assert!(
        fault_shade > 5_000,
        "the fault window is shaded ({fault_shade} pixels)"
    );
    assert!(dark > 2_000, "text and axes are drawn ({dark} dark pixels)");
    assert!(
        std::fs::read_to_string(&files.markdown)
            .unwrap()
            .contains("run.svg")
    );
}

/// A text element of an SVG: its box, estimated from its position, anchor,
/// font size and length (0.62 em a character, which DejaVu Sans stays under
/// for these labels).
#[derive(Debug, Clone)]
struct TextBox {
    text: String,
    x0: f64,
    y0: f64,
    x1: f64,
    y1: f64,
}

fn attribute(tag: &str, name: &str) -> Option<String> {
    let start = tag.find(&format!(" {name}=\""))? + name.len() + 3;
    let end = tag[start..].find('"')? + start;
    Some(tag[start..end].to_owned())
}

fn text_boxes(svg: &str) -> Vec<TextBox> {
    let mut boxes = Vec::new();
    for piece in svg.split("<text").skip(1) {
        let Some(tag_end) = piece.find('>') else {
            continue;
        };
        let tag = &piece[..tag_end];
        let text = piece[tag_end + 1..]
            .split("</text>")
            .next()
            .unwrap_or("")
            .trim()
            .to_owned();
        if text.is_empty() {
            continue;
        }
        let number = |name| {
            attribute(tag, name)
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap()
        };
        let (x, y, size) = (number("x"), number("y"), number("font-size"));
        let width = text.chars().count() as f64 * size * 0.62;
        let (x0, x1) = match attribute(tag, "text-anchor").as_deref() {
            Some("end") => (x - width, x),
            Some("middle") => (x - width / 2.0, x + width / 2.0),
            _ => (x, x + width),
        };
        let (y0, y1) = match attribute(tag, "dy").as_deref() {
            Some("0.76em") => (y, y + size),
            Some("-0.5ex") => (y - size, y),
            _ => (y - size / 2.0, y + size / 2.0),
        };
        let rotated = attribute(tag, "transform")
            .is_some_and(|t| t.starts_with("rotate(90") || t.starts_with("rotate(270"));
        let (x0, y0, x1, y1) = if rotated {
            // Turned a quarter around (x, y): width and height swap.
            let (w, h) = (x1 - x0, y1 - y0);
            (x - h / 2.0, y - w / 2.0, x + h / 2.0, y + w / 2.0)
        } else {
            (x0, y0, x1, y1)
        };
        boxes.push(TextBox {
            text,
            x0,
            y0,
            x1,
            y1,
        });
    }
    boxes
}

fn overlap(a: &TextBox, b: &TextBox) -> bool {
    a.x0 < b.x1 && b.x0 < a.x1 && a.y0 < b.y1 && b.y0 < a.y1
}

/// Five alerts, one with two series, with long names and transitions close
/// together: the journal above with its alerts replaced.
fn with_five_alerts(mut journal: Journal) -> Journal {
    use faultline_chaos::journal::{AlertSeen, AlertTransition};
    let series = |alert: &str, labels: &[(&str, &str)], transitions: &[(&str, f64)]| AlertSeen {
        alert: alert.to_owned(),
        labels: labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        transitions: transitions
            .iter()
            .map(|(state, at_s)| AlertTransition {
                state: (*state).to_owned(),
                at_s: *at_s,
            })
            .collect(),
    };
    let window = journal.fault_window.clone().unwrap();
    let (a, b) = (window.start_s, window.end_s);
    journal.alerts_seen = vec![
        series(
            "DependencyLatencyRising",
            &[],
            &[("pending", a), ("firing", a + 0.05), ("inactive", b)],
        ),
        series(
            "CircuitBreakerOpen",
            &[("peer_service", "payments")],
            &[("firing", a + 0.01), ("inactive", b + 0.01)],
        ),
        series(
            "CircuitBreakerOpen",
            &[("peer_service", "catalog")],
            &[("pending", a + 0.02), ("inactive", a + 0.1)],
        ),
        series(
            "ErrorBudgetBurnFastWithAVeryLongNameThatWouldNotFitTheLabelArea",
            &[],
            &[("pending", a + 0.02), ("firing", a + 0.03)],
        ),
        series(
            "ReplicasBelowDesired",
            &[],
            &[("firing", a), ("inactive", a + 0.02)],
        ),
    ];
    journal
}

#[tokio::test]
async fn alert_lanes_have_one_label_per_row_and_no_text_overlaps() {
    let journal = with_five_alerts(journal().await.unwrap());
    let svg = plot::render_svg(&journal).unwrap();
    let boxes = text_boxes(&svg);
    for (i, a) in boxes.iter().enumerate() {
        for b in &boxes[i + 1..] {
            assert!(!overlap(a, b), "{a:?} overlaps {b:?}");
        }
    }
    let labels: Vec<&str> = boxes.iter().map(|b| b.text.as_str()).collect();
    for label in [
        "DependencyLatencyRising",
        "ReplicasBelowDesired",
        "CircuitBreakerOpen (payments)",
        "CircuitBreakerOpen (catalog)",
    ] {
        assert_eq!(
            labels.iter().filter(|l| **l == label).count(),
            1,
            "{label} once in {labels:?}"
        );
    }
    assert_eq!(
        labels
            .iter()
            .filter(|l| l.starts_with("ErrorBudgetBurnFast"))
            .count(),
        1,
        "the long name is cut, once: {labels:?}"
    );
    // The rows are stacked: their labels share one x and have distinct ys.
    let rows: Vec<&TextBox> = boxes
        .iter()
        .filter(|b| {
            b.text.starts_with("CircuitBreaker")
                || b.text.starts_with("Dependency")
                || b.text.starts_with("ErrorBudget")
                || b.text.starts_with("Replicas")
        })
        .collect();
    assert_eq!(rows.len(), 5, "{labels:?}");
    assert!(rows.iter().all(|r| (r.x0 - rows[0].x0).abs() < 0.5));
    let (_, height) = plot::size(&journal);
    assert!(
        svg.contains(&format!("height=\"{height}\"")),
        "the plot grows with the rows"
    );

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("five.png");
    plot::write_png(&journal, &path).unwrap();
    if let Ok(keep) = std::env::var("FAULTLINE_KEEP_PLOT") {
        std::fs::copy(&path, keep).unwrap();
    }
    let image = image::open(&path).unwrap().to_rgb8();
    assert_eq!(image.dimensions(), plot::size(&journal));
    let firing = image
        .pixels()
        .filter(|p| {
            let [r, g, b] = p.0;
            r > 180 && g < 60 && b < 60
        })
        .count();
    assert!(firing > 500, "firing segments are drawn ({firing} pixels)");
}

#[tokio::test]
async fn a_journal_without_alerts_has_no_lanes() {
    let mut journal = journal().await.unwrap();
    journal.alerts_seen.clear();
    assert_eq!(plot::size(&journal), plot::SIZE);
    let svg = plot::render_svg(&journal).unwrap();
    assert!(!svg.contains(">Alerts"), "no alert panel");
}

/// A during-probe evaluation of `name`, failed unless `ok`, at `end_s`;
/// with `deadline`, an eventually-probe's.
fn evaluation(
    name: &str,
    ok: bool,
    deadline: Option<f64>,
    end_s: f64,
) -> faultline_chaos::journal::Activity {
    let mut activity: faultline_chaos::journal::Activity =
        serde_json::from_value(serde_json::json!({
            "activity": {"type": "probe", "name": name, "kind": "promql", "step": "during"},
            "status": if ok { "succeeded" } else { "failed" },
            "start": "", "end": "", "start_s": end_s, "end_s": end_s, "duration": 0.0,
            "output": null, "detail": format!("at {end_s}"),
        }))
        .unwrap();
    activity.deadline_s = deadline;
    activity
}

#[tokio::test]
async fn markdown_counts_waiting_apart_from_failing() {
    let mut journal = journal().await.unwrap();
    journal.steady_states.during = vec![
        evaluation("ejected", false, Some(40.0), 1.0),
        evaluation("ejected", false, Some(40.0), 2.0),
        evaluation("ejected", true, Some(40.0), 3.0),
        evaluation("never", false, Some(40.0), 1.0),
        evaluation("never", false, Some(40.0), 40.0),
        evaluation("always", false, None, 1.0),
    ];
    let md = markdown::render(&journal, None);
    let row = |probe: &str| {
        md.lines()
            .find(|l| l.starts_with(&format!("| {probe} |")))
            .unwrap_or_default()
            .to_owned()
    };
    assert!(
        row("ejected").starts_with("| ejected | 3 | 2 | 0 |"),
        "{md}"
    );
    assert!(row("never").starts_with("| never | 2 | 1 | 1 |"), "{md}");
    assert!(row("never").contains("at 40"), "{md}");
    assert!(row("always").starts_with("| always | 1 | 0 | 1 |"), "{md}");
}
