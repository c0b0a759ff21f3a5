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
    for sub in ["run", "validate", "list", "report", "cleanup"] {
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
