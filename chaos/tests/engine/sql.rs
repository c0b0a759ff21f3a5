//! SQL faults without a server: what the CLI shows of them, and that no
//! database password reaches the journal or the output. The faults against
//! a real PostgreSQL are in the `containers` tests.

use faultline_chaos::environment::Environment;
use faultline_chaos::experiment::Experiment;
use faultline_chaos::journal::Verdict;
use faultline_chaos::ledger;
use faultline_chaos::runner::{Bindings, LedgerDir};

use crate::support::{DEADLINE, faultline, write};

/// Pausing WAL replay on a hot standby, as chaos/README.md shows it.
const PAUSE_REPLAY: &str = r#"
title = "WAL replay paused on the replica"

[target]
database = "postgres://shop:hunter2@127.0.0.1:1/shop"
vars = { replica_database = "postgres://replicator:hunter2@127.0.0.1:1/shop" }

[method]

[[method.faults]]
name = "pause replay"
type = "sql"
url = "${vars.replica_database}"
statement = "SELECT pg_wal_replay_pause()"
undo = "SELECT pg_wal_replay_resume()"
verify = "SELECT pg_is_wal_replay_paused()"
timeout = "2s"
duration = "1s"
"#;

#[tokio::test]
async fn the_journal_never_shows_a_database_password() {
    // Nothing listens on port 1: the statement cannot connect, and the
    // error, like the target and the experiment, is in the journal.
    let experiment = Experiment::parse(PAUSE_REPLAY, "pause.toml").unwrap();
    let ledger_dir = tempfile::tempdir().unwrap();
    let journal = tokio::time::timeout(
        DEADLINE,
        faultline_chaos::run_experiment(
            experiment,
            Bindings {
                environment: Environment::default(),
                ledger: LedgerDir::At(ledger_dir.path().to_owned()),
                ..Bindings::default()
            },
        ),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(journal.verdict, Verdict::Error, "{:?}", journal.reasons);
    let inject = journal
        .run
        .iter()
        .find(|a| a.activity.step == "inject")
        .unwrap();
    assert_eq!(inject.activity.kind, "sql");
    let error = inject.exception.clone().unwrap_or_default();
    assert!(
        error.starts_with(
            "sql fault \"pause replay\": statement on postgres://replicator:***@127.0.0.1:1/shop: cannot connect"
        ),
        "{error}"
    );
    let text = serde_json::to_string(&journal).unwrap();
    assert!(!text.contains("hunter2"), "{text}");
    assert!(text.contains("replicator:***@"), "{text}");
    // The undo could not connect either: it stays in the ledger, whole,
    // for `faultline cleanup`, in a file only its owner may read.
    let left = ledger::read_all(ledger_dir.path()).unwrap();
    assert_eq!(left.len(), 1, "{left:?}");
    let text = serde_json::to_string(&left[0].1).unwrap();
    assert!(text.contains("replicator:hunter2@"), "{text}");
    let mode = {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::metadata(&left[0].0).unwrap().permissions().mode()
    };
    assert_eq!(mode & 0o777, 0o600, "{mode:o}");
}

#[test]
fn validate_dry_run_and_cleanup_show_a_sql_fault_without_its_password() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "pause.toml", PAUSE_REPLAY);
    let output = faultline().arg("validate").arg(&file).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");

    let output = faultline()
        .arg("run")
        .arg(&file)
        .arg("--dry-run")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    for expected in [
        "database = postgres://shop:***@127.0.0.1:1/shop",
        "vars.replica_database = postgres://replicator:***@127.0.0.1:1/shop",
        "\"pause replay\" [sql] at 0s for 1s: SQL \"SELECT pg_wal_replay_pause()\" on ${vars.replica_database}, \
         undone by \"SELECT pg_wal_replay_resume()\", verified by \"SELECT pg_is_wal_replay_paused()\"",
    ] {
        assert!(stdout.contains(expected), "{expected:?} in:\n{stdout}");
    }
    assert!(!stdout.contains("hunter2"), "{stdout}");

    // A URL that is no PostgreSQL URL once interpolated: validate says so,
    // naming the fault, and not the URL.
    let output = faultline()
        .arg("validate")
        .arg(&file)
        .args([
            "--var",
            "vars.replica_database=mysql://root:hunter2@db/shop",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(2), "{stdout}");
    assert!(
        stdout.contains("fault \"pause replay\": url: not a PostgreSQL URL"),
        "{stdout}"
    );
    assert!(!stdout.contains("hunter2"), "{stdout}");

    // A URL in the file that is wrong: the error points at it, and shows
    // the line without its password.
    let bad = PAUSE_REPLAY.replace(
        "url = \"${vars.replica_database}\"",
        "url = \"postgres://replicator:hunter2@db:port/shop\"",
    );
    let line = bad.lines().position(|l| l.starts_with("url = ")).unwrap() + 1;
    let file = write(dir.path(), "bad.toml", &bad);
    let output = faultline().arg("validate").arg(&file).output().unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(2), "{stdout}");
    assert!(
        stdout.contains(&format!(
            "bad.toml:{line}:7: method.faults[0].url: is not a URL (invalid port number)"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("url = \"postgres://replicator:***@db:port/shop\""),
        "{stdout}"
    );
    assert!(!stdout.contains("hunter2"), "{stdout}");

    // What a killed run left: cleanup --dry-run shows the undo, redacted.
    let ledger_dir = dir.path().join("ledger");
    std::fs::create_dir_all(&ledger_dir).unwrap();
    let left = serde_json::json!({
        "run_id": "killed",
        "pid": u32::MAX,
        "experiment": "pause",
        "faults": {"pause replay": [{
            "kind": "sql",
            "url": "postgres://replicator:hunter2@127.0.0.1:1/shop",
            "statement": "SELECT pg_wal_replay_resume()",
            "timeout_ms": 2000,
        }]},
    });
    std::fs::write(ledger_dir.join("killed.json"), left.to_string()).unwrap();
    let output = faultline()
        .arg("cleanup")
        .arg("--dry-run")
        .arg("--ledger-dir")
        .arg(&ledger_dir)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains(
            "would run SQL \"SELECT pg_wal_replay_resume()\" on postgres://replicator:***@127.0.0.1:1/shop (pause replay)"
        ),
        "{stdout}"
    );
    assert!(!stdout.contains("hunter2"), "{stdout}");
}
