//! The guardian: a `faultline run` killed outright still has its faults
//! reverted, by the process it started beside it.

use std::path::Path;
use std::process::{Child, Stdio};

use faultline_chaos::guardian::{self, Guardian, GuardianError};
use faultline_chaos::journal::Journal;
use faultline_chaos::ledger;

use crate::support::{
    DEADLINE, FaultProxy, eventually, exit_status, faultline, files, toxic_experiment, write,
};

/// `faultline run <experiment> --ledger-dir <dir>/ledger`, its output in
/// `<dir>/stdout` and `<dir>/stderr`.
pub fn spawn_run(dir: &Path, experiment: &Path, extra: &[&str]) -> Child {
    let out = std::fs::File::create(dir.join("stdout")).unwrap();
    let err = std::fs::File::create(dir.join("stderr")).unwrap();
    faultline()
        .arg("run")
        .arg(experiment)
        .arg("--ledger-dir")
        .arg(dir.join("ledger"))
        .arg("--journal")
        .arg(dir.join("journal.json"))
        .args(extra)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap()
}

/// What the run printed on stderr.
pub fn stderr_of(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("stderr")).unwrap_or_default()
}

#[tokio::test]
async fn a_killed_run_is_reverted_by_its_guardian() {
    let proxy = FaultProxy::start().await;
    let dir = tempfile::tempdir().unwrap();
    let ledger_dir = dir.path().join("ledger");
    let experiment = write(
        dir.path(),
        "long.toml",
        &toxic_experiment(&proxy.api_url(), "5m", ""),
    );
    let mut run = spawn_run(dir.path(), &experiment, &[]);
    eventually("the toxic is injected", DEADLINE, || async {
        (!proxy.toxics().await.is_empty()).then_some(())
    })
    .await;
    let left = ledger::read_all(&ledger_dir).unwrap();
    assert_eq!(left.len(), 1, "{left:?}");
    assert_eq!(left[0].1.pid, run.id());
    let stderr = stderr_of(dir.path());
    assert!(
        stderr.contains("guardian pid") && stderr.contains("guardian-"),
        "the startup line says where the guardian logs: {stderr}"
    );

    // SIGKILL, to the run only: no rollback of its own.
    run.kill().unwrap();
    run.wait().unwrap();
    eventually("the guardian removes the toxic", DEADLINE, || async {
        proxy.toxics().await.is_empty().then_some(())
    })
    .await;
    eventually("the guardian removes the ledger file", DEADLINE, || async {
        ledger::read_all(&ledger_dir)
            .unwrap()
            .is_empty()
            .then_some(())
    })
    .await;
    let pid_file = guardian::pid_path(&ledger_dir, run.id());
    eventually("the guardian exits", DEADLINE, || async {
        (!pid_file.exists()).then_some(())
    })
    .await;
    let log = std::fs::read_to_string(guardian::log_path(&ledger_dir, run.id())).unwrap();
    assert!(
        log.contains("done remove toxic faultline_payments_latency from proxy payments"),
        "{log}"
    );
    proxy.stop().await;
}

#[tokio::test]
async fn a_run_that_ends_normally_leaves_nothing_beside_the_ledger() {
    let proxy = FaultProxy::start().await;
    let dir = tempfile::tempdir().unwrap();
    // A proxy taken down: a fault that is effective without traffic.
    let text = format!(
        r#"
title = "payments down briefly"
[target]
proxy_api = "{}"
[method]
[[method.faults]]
name = "payments down"
type = "proxy_down"
proxy = "payments"
duration = "200ms"
"#,
        proxy.api_url()
    );
    let experiment = write(dir.path(), "short.toml", &text);
    let status = exit_status(spawn_run(dir.path(), &experiment, &[])).await;
    assert_eq!(status.code(), Some(0), "{}", stderr_of(dir.path()));
    let journal = Journal::load(&dir.path().join("journal.json")).unwrap();
    let record = journal.guardian.expect("the journal notes the guardian");
    assert!(record.pid > 0);
    // The guardian saw the run end with nothing left: no ledger, pid or log.
    assert_eq!(files(&dir.path().join("ledger")), Vec::<String>::new());
    assert!(proxy.client.proxy(FaultProxy::PROXY).await.unwrap().enabled);

    let status = exit_status(spawn_run(dir.path(), &experiment, &["--no-guardian"])).await;
    assert_eq!(status.code(), Some(0));
    assert!(stderr_of(dir.path()).contains("(no guardian)"));
    let journal = Journal::load(&dir.path().join("journal.json")).unwrap();
    assert_eq!(journal.guardian, None);
    proxy.stop().await;
}

#[tokio::test]
async fn a_guardian_that_does_not_come_up_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let err = Guardian::spawn(Path::new("/nonexistent/faultline"), dir.path())
        .await
        .unwrap_err();
    assert!(matches!(err, GuardianError::Spawn { .. }), "{err}");
    // `true` ignores its arguments and never says it is ready.
    let err = Guardian::spawn(Path::new("true"), dir.path())
        .await
        .unwrap_err();
    assert!(matches!(err, GuardianError::NotReady { .. }), "{err}");
    assert!(
        err.to_string().contains("guardian-"),
        "names its log: {err}"
    );
}
