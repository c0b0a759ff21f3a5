//! The `faultline` binary: exit codes, validation output, reports.

use std::process::Command;

fn faultline() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_faultline"));
    command.env("NO_COLOR", "1");
    command
}

#[test]
fn validate_accepts_the_shipped_experiments() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/experiments");
    let output = faultline().args(["validate", dir]).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("ok ") && stdout.contains("kill-replica.toml"),
        "{stdout}"
    );
    assert!(!stdout.contains('\u{1b}'), "NO_COLOR: no escape codes");
}

#[test]
fn validate_names_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, "title = \"x\"\n[method]\nduraton = \"1s\"\n").unwrap();
    let output = faultline().args(["validate"]).arg(&path).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(2), "{stdout}");
    assert!(
        stdout.contains("bad.toml:3:1: method.duraton: unknown field"),
        "{stdout}"
    );
}

#[test]
fn run_of_a_missing_file_is_an_error() {
    let output = faultline()
        .args(["run", "/nonexistent.toml"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("/nonexistent.toml"));
}

#[test]
fn help_has_examples() {
    for sub in ["run", "validate", "list", "report", "cleanup", "coverage"] {
        let output = faultline().args([sub, "--help"]).output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(stdout.contains("Examples:"), "{sub}: {stdout}");
    }
}

#[test]
fn cleanup_with_nothing_left_behind() {
    let dir = tempfile::tempdir().unwrap();
    let output = faultline()
        .args(["cleanup", "--ledger-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&output.stdout).contains("nothing to clean up"));
}

/// A journal as `faultline run` writes it, with one met firing expectation.
fn journal_with_alert(path: &str, alert: &str, fired_after_s: f64) -> serde_json::Value {
    serde_json::json!({
        "schema": 1,
        "faultline_version": "0.1.0",
        "run_id": "1-abc",
        "experiment": {"title": "t", "path": path},
        "environment": {},
        "start": "2026-01-01T00:00:00Z",
        "end": "2026-01-01T00:01:00Z",
        "start_unix_ms": 1_000,
        "duration": 60.0,
        "status": "completed",
        "deviated": false,
        "verdict": "passed",
        "steady_states": {},
        "run": [],
        "rollbacks": [],
        "expected_alerts": [{
            "alert": alert, "state": "firing", "within_s": 30.0, "met": true,
            "at_s": fired_after_s + 5.0, "detection_time_s": fired_after_s,
        }],
    })
}

#[test]
fn coverage_prints_or_writes_the_table() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("e2e");
    std::fs::create_dir_all(&sub).unwrap();
    std::fs::write(
        sub.join("kill.journal.json"),
        journal_with_alert(
            "chaos/experiments/kill-replica.toml",
            "ReplicasBelowDesired",
            6.0,
        )
        .to_string(),
    )
    .unwrap();
    let output = faultline()
        .arg("coverage")
        .arg(dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("| ReplicasBelowDesired | t (`kill-replica`) | 6.0 s | — | 0 | passed |"),
        "{stdout}"
    );

    let out = dir.path().join("reports/coverage.md");
    let output = faultline()
        .arg("coverage")
        .arg(sub.join("kill.journal.json"))
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    assert!(
        std::fs::read_to_string(&out)
            .unwrap()
            .contains("ReplicasBelowDesired")
    );

    let empty = tempfile::tempdir().unwrap();
    let output = faultline()
        .arg("coverage")
        .arg(empty.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("no *.journal.json"), "{stderr}");
    assert!(
        stderr.contains(&empty.path().display().to_string()),
        "{stderr}"
    );
}
