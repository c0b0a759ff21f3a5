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
        "DependencyLatencyRising firing",
        "DependencyLatencyRising pending",
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
    assert_eq!(image.dimensions(), plot::SIZE);
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
