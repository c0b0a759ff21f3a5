//! The `faultline` binary: exit codes, validation output, reports.

use crate::support::faultline;

/// `faultline regress JOURNAL --rules RULES`, run to the end.
fn regress(journal: &std::path::Path, rules: &std::path::Path) -> std::process::Output {
    faultline()
        .arg("regress")
        .arg(journal)
        .arg("--rules")
        .arg(rules)
        .output()
        .unwrap()
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
    for sub in [
        "run", "validate", "list", "report", "cleanup", "coverage", "regress", "gameday",
    ] {
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

#[test]
fn regress_writes_a_promtool_test_next_to_its_rule_files() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("alerts/a.rules.yml");
    std::fs::create_dir_all(rules.parent().unwrap()).unwrap();
    std::fs::write(
        &rules,
        "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: m > 1\n    for: 2s\n",
    )
    .unwrap();
    let mut journal = journal_with_alert("chaos/experiments/a.toml", "A", 3.0);
    journal["evidence"] = serde_json::json!({
        "step_s": 1.0,
        "start_unix_ms": 1_000,
        "alerts": [{"alert": "A", "labels": {"job": "x"}, "firing_at_s": 6.5, "metrics": ["m"]}],
        "series": [{"labels": {"__name__": "m", "job": "x"},
                    "values": [0.0, 0.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0, null]}],
    });
    let path = dir.path().join("a.journal.json");
    std::fs::write(&path, journal.to_string()).unwrap();

    let out = dir.path().join("regress/a.test.yml");
    let output = faultline()
        .arg("regress")
        .arg(&path)
        .arg("--rules")
        .arg(&rules)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(
        text.contains("rule_files:\n- ../alerts/a.rules.yml\n"),
        "{text}"
    );
    assert!(text.contains("values: 0+0x1 2+0x6"), "{text}");
    assert!(text.contains("eval_time: 8s"), "{text}");

    // Without --out: on stdout, rule files relative to the current directory.
    let output = faultline()
        .current_dir(dir.path())
        .args(["regress", "a.journal.json", "--rules", "alerts/a.rules.yml"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&output.stdout).contains("- alerts/a.rules.yml\n"));

    // An alert the rule files do not define; a missing rule file; no evidence.
    std::fs::write(&rules, "groups: []\n").unwrap();
    let output = regress(&path, &rules);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("a.journal.json: evidence.alerts: A defined in none of")
            && stderr.contains("a.rules.yml"),
        "{stderr}"
    );
    let output = faultline()
        .arg("regress")
        .arg(&path)
        .args(["--rules", "/nonexistent/x.rules.yml"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&output.stderr).contains("/nonexistent/x.rules.yml"));
    journal.as_object_mut().unwrap().remove("evidence");
    std::fs::write(&path, journal.to_string()).unwrap();
    std::fs::write(&rules, "groups: []\n").unwrap();
    let output = regress(&path, &rules);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("a.journal.json") && stderr.contains("no evidence"),
        "{stderr}"
    );
}

/// `report --format chaostoolkit` writes Chaos Toolkit's journal shape to
/// `--out`, or to stdout.
#[tokio::test]
async fn report_in_chaos_toolkit_shape() {
    let mut plan = faultline_chaos::runner::Plan::new("exported");
    plan.method_duration = std::time::Duration::from_millis(50);
    let bindings = faultline_chaos::runner::Bindings {
        ledger: faultline_chaos::runner::LedgerDir::Disabled,
        ..Default::default()
    };
    let journal = faultline_chaos::run_plan(plan, bindings).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.json");
    journal.save(&path).unwrap();
    let out = dir.path().join("ctk/run.json");
    let output = faultline()
        .args(["report", "--format", "chaostoolkit"])
        .arg(&path)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(written["status"], "completed");
    assert_eq!(written["experiment"]["title"], "exported");
    let output = faultline()
        .args(["report", "--format", "chaostoolkit"])
        .arg(&path)
        .output()
        .unwrap();
    let printed: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(printed, written);
}
