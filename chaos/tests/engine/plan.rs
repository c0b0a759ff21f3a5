//! `faultline run --dry-run`, `--var-file` and `--var`: the plan printed with
//! nothing injected, and one experiment file run against any environment.

use crate::support::{FaultProxy, faultline, toxic_experiment, write};

#[tokio::test]
async fn dry_run_prints_the_plan_and_injects_nothing() {
    let proxy = FaultProxy::start().await;
    let dir = tempfile::tempdir().unwrap();
    let extra = r#"
[[method.faults]]
name = "kill an orders replica"
type = "container"
action = "kill"
target = { service = "orders", replica = 2 }
at = "2s"

[[abort_when]]
name = "error ratio over 50%"
type = "sli"
metric = "error_ratio"
tolerance = { at_most = 0.5 }

[[abort_when]]
name = "someone gets paged"
type = "alert"
severity = "page"

[[expected_alerts]]
alert = "DependencyLatencyRising"
within = "45s"
"#;
    let text = toxic_experiment(&proxy.api_url(), "5m", extra).replace(
        "[target]\n",
        "[target]\nprometheus = \"http://127.0.0.1:1\"\n",
    );
    let experiment = write(dir.path(), "plan.toml", &text);
    let ledger = dir.path().join("ledger");
    let output = faultline()
        .arg("run")
        .arg(&experiment)
        .arg("--dry-run")
        .arg("--ledger-dir")
        .arg(&ledger)
        // No Docker here: the selector cannot be resolved, which is said.
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for expected in [
        &format!("proxy_api = {}", proxy.api_url()),
        "\"payments latency\" [toxic] at 0s for 5m",
        "\"kill an orders replica\" [container] at 2s until the method ends",
        "could not resolve the containers",
        "\"error ratio over 50%\" [sli] every 1s",
        "any alert{severity=\"page\"} is Firing",
        "DependencyLatencyRising Firing within 45s",
    ] {
        assert!(stdout.contains(expected), "{expected:?} in:\n{stdout}");
    }
    assert!(proxy.toxics().await.is_empty(), "nothing was injected");
    assert!(!ledger.exists(), "no ledger, no guardian");
    proxy.stop().await;
}

#[test]
fn var_files_override_the_environment_and_vars_override_them() {
    let dir = tempfile::tempdir().unwrap();
    let experiment = write(
        dir.path(),
        "x.toml",
        &toxic_experiment("http://from-experiment:1", "1s", ""),
    );
    let vars = write(
        dir.path(),
        "staging.toml",
        "proxy_api = \"http://from-file:1\"\nfault_admin = { orders = \"http://orders:9100\" }\n\
         [vars]\nrate = \"20\"\nx = \"file\"\n",
    );
    let output = faultline()
        .arg("run")
        .arg(&experiment)
        .arg("--dry-run")
        .arg("--var-file")
        .arg(&vars)
        .args(["--var", "vars.x=cli", "--set", "gateway=http://gw:1"])
        .env("FAULTLINE_TARGET_PROXY_API", "http://from-env:1")
        .env("FAULTLINE_TARGET_DATABASE", "postgres://from-env")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for expected in [
        "proxy_api = http://from-file:1",
        "database = postgres://from-env",
        "fault_admin.orders = http://orders:9100",
        "vars.rate = 20",
        "vars.x = cli",
        "gateway = http://gw:1",
    ] {
        assert!(stdout.contains(expected), "{expected:?} in:\n{stdout}");
    }
}

#[test]
fn a_bad_var_file_names_the_file_line_and_field() {
    let dir = tempfile::tempdir().unwrap();
    let experiment = write(
        dir.path(),
        "x.toml",
        &toxic_experiment("http://127.0.0.1:1", "1s", ""),
    );
    let vars = write(
        dir.path(),
        "staging.toml",
        "gateway = \"http://gw:1\"\n[docker]\nprojct = \"shop\"\n",
    );
    let output = faultline()
        .arg("run")
        .arg(&experiment)
        .arg("--dry-run")
        .arg("--var-file")
        .arg(&vars)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("staging.toml:3:1: docker.projct: unknown field"),
        "{stderr}"
    );
}
