//! `FAULTLINE_METRICS=off` and `FAULTLINE_LOGS=off`, each checked in a child
//! process of this test binary: the environment, the metrics recorder and the
//! tracing subscriber are all per process.

use std::process::{Command, Output};

/// Set on the child: run the check instead of spawning.
const CHILD: &str = "FAULTLINE_SWITCH_TEST_CHILD";

/// What the child logs, to look for on its stdout.
const MARKER: &str = "switch-check-line";

fn run_child(test: &str, env: &[(&str, &str)]) -> std::io::Result<Output> {
    let exe = std::env::current_exe()?;
    let mut command = Command::new(exe);
    command
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .env("OTEL_TRACES_EXPORTER", "none")
        .env("RUST_LOG", "info");
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command.output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "child {test} with {env:?} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // A renamed test would leave the child nothing to run, and exit 0.
    assert!(
        ran_exactly(&stdout, test),
        "the child did not run exactly {test} with {env:?}:\n{stdout}"
    );
    Ok(output)
}

/// Whether libtest's output says it ran `test`, and only it, and it passed
/// (with `--nocapture` the test's own output may follow its `test ... ` line).
fn ran_exactly(stdout: &str, test: &str) -> bool {
    stdout.lines().any(|line| line == "running 1 test")
        && stdout.contains(&format!("test {test} ... "))
        && stdout.contains("test result: ok. 1 passed;")
}

#[test]
fn metrics_off_installs_no_recorder() {
    if std::env::var_os(CHILD).is_some() {
        let on = std::env::var("FAULTLINE_METRICS").unwrap() == "on";
        let metrics = faultline_telemetry::Metrics::install().unwrap();
        metrics::counter!("switch_check_total").increment(1);
        let text = metrics.render();
        assert_eq!(text.contains("switch_check_total 1"), on, "{text}");
        assert_eq!(text.contains("process_resident_memory_bytes"), on, "{text}");
        return;
    }
    run_child(
        "metrics_off_installs_no_recorder",
        &[("FAULTLINE_METRICS", "on")],
    )
    .unwrap();
    run_child(
        "metrics_off_installs_no_recorder",
        &[("FAULTLINE_METRICS", "off")],
    )
    .unwrap();
}

#[test]
fn logs_off_prints_no_log_lines() {
    if std::env::var_os(CHILD).is_some() {
        let telemetry = faultline_telemetry::Telemetry::init("switch-check", "0.0.0").unwrap();
        tracing::info_span!("check").in_scope(|| tracing::info!("{MARKER}"));
        telemetry.shutdown();
        return;
    }
    let on = run_child("logs_off_prints_no_log_lines", &[("FAULTLINE_LOGS", "on")]).unwrap();
    let stdout = String::from_utf8_lossy(&on.stdout);
    let line = stdout
        .lines()
        .find(|line| line.contains(MARKER))
        .unwrap_or_else(|| panic!("no log line with logs on:\n{stdout}"));
    let json: serde_json::Value = serde_json::from_str(line).unwrap();
    assert!(json["trace_id"].is_string(), "{line}");

    let off = run_child("logs_off_prints_no_log_lines", &[("FAULTLINE_LOGS", "off")]).unwrap();
    let stdout = String::from_utf8_lossy(&off.stdout);
    assert!(
        !stdout.contains(MARKER),
        "a log line with logs off:\n{stdout}"
    );
}

#[test]
fn an_invalid_switch_fails_the_start() {
    if std::env::var_os(CHILD).is_some() {
        let err = faultline_telemetry::Metrics::install().unwrap_err();
        assert!(err.to_string().contains("FAULTLINE_METRICS"), "{err}");
        let err = faultline_telemetry::Telemetry::init("switch-check", "0.0.0").unwrap_err();
        assert!(err.to_string().contains("FAULTLINE_LOGS"), "{err}");
        return;
    }
    run_child(
        "an_invalid_switch_fails_the_start",
        &[
            ("FAULTLINE_METRICS", "maybe"),
            ("FAULTLINE_LOGS", "perhaps"),
        ],
    )
    .unwrap();
}

/// At any sampling ratio a log line carries its trace id, and says whether
/// the trace was kept: that is how an unsampled failure is found.
#[test]
fn unsampled_lines_keep_their_trace_id_and_say_so() {
    if std::env::var_os(CHILD).is_some() {
        let telemetry = faultline_telemetry::Telemetry::init("switch-check", "0.0.0").unwrap();
        tracing::info_span!("check").in_scope(|| tracing::info!("{MARKER}"));
        telemetry.shutdown();
        return;
    }
    for (ratio, sampled) in [("0", false), ("1", true)] {
        let output = run_child(
            "unsampled_lines_keep_their_trace_id_and_say_so",
            &[
                ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
                ("OTEL_TRACES_SAMPLER_ARG", ratio),
            ],
        )
        .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let line = stdout
            .lines()
            .find(|line| line.contains(MARKER))
            .unwrap_or_else(|| panic!("no log line at ratio {ratio}:\n{stdout}"));
        let json: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(json["trace_id"].as_str().map(str::len), Some(32), "{line}");
        assert_eq!(json["trace_sampled"], sampled, "ratio {ratio}: {line}");
    }
}

#[test]
fn an_invalid_sampler_fails_the_start() {
    if std::env::var_os(CHILD).is_some() {
        let err = faultline_telemetry::Telemetry::init("switch-check", "0.0.0").unwrap_err();
        assert!(err.to_string().contains("OTEL_TRACES_SAMPLER_ARG"), "{err}");
        return;
    }
    run_child(
        "an_invalid_sampler_fails_the_start",
        &[
            ("OTEL_TRACES_SAMPLER", "traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "10%"),
        ],
    )
    .unwrap();
}
