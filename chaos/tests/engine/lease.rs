//! Leases: toxic and proxy_down faults are injected with a lease, renewed
//! every lease/3 while they are in; a failed renewal is a journal note; and
//! with every process of the run killed, the fault proxy ends the fault.

use std::sync::Arc;
use std::time::Duration;

use faultline_chaos::experiment::Experiment;
use faultline_chaos::journal::Verdict;
use faultline_chaos::ledger;
use faultline_chaos::runner::{Bindings, LedgerDir, Plan, PlannedFault, run_plan};
use faultline_chaos::testing::{Behaviour, CallLog, FakeFault};

use crate::guardian::{spawn_run, stderr_of};
use crate::support::{DEADLINE, FaultProxy, eventually, sigkill, toxic_experiment, write};

fn leased(name: &str, log: &CallLog, renew: Behaviour) -> PlannedFault {
    let mut fault = FakeFault::new(name, log);
    fault.lease = Some(Duration::from_millis(150));
    fault.renew = renew;
    PlannedFault {
        name: name.to_owned(),
        at: Duration::ZERO,
        duration: Some(Duration::from_millis(600)),
        fault: Arc::new(fault),
    }
}

#[tokio::test]
async fn leases_are_renewed_while_the_fault_is_in_and_failures_are_noted() {
    let log = CallLog::default();
    let mut plan = Plan::new("leases");
    plan.settings.lease = Duration::from_millis(300);
    plan.method_duration = Duration::from_millis(800);
    plan.faults = vec![
        leased("kept", &log, Behaviour::Succeed),
        leased("lost", &log, Behaviour::Fail),
    ];
    let bindings = Bindings {
        ledger: LedgerDir::Disabled,
        ..Bindings::default()
    };
    let journal = tokio::time::timeout(Duration::from_secs(20), run_plan(plan, bindings))
        .await
        .unwrap();
    assert_eq!(journal.verdict, Verdict::Passed, "{:?}", journal.reasons);
    // 600 ms in, renewed every 100 ms: several times, and not after the revert.
    assert!(log.count("renew kept") >= 3, "{:?}", log.entries());
    let entries = log.entries();
    let revert = entries.iter().position(|e| e == "revert kept").unwrap();
    assert!(
        !entries[revert..].iter().any(|e| e == "renew kept"),
        "{entries:?}"
    );
    // The failure is noted once, however often it fails.
    let lost: Vec<_> = journal
        .notes
        .iter()
        .filter(|n| n.contains("renewing the lease of lost failed"))
        .collect();
    assert_eq!(lost.len(), 1, "{:?}", journal.notes);
    assert!(lost[0].contains("may be gone"), "{lost:?}");
}

#[test]
fn the_lease_is_at_least_a_second() {
    let text = toxic_experiment(
        "http://127.0.0.1:1",
        "1s",
        "[settings]\nlease = \"500ms\"\n",
    );
    let err = Experiment::parse(&text, "x.toml").unwrap_err();
    assert_eq!(err.field(), Some("settings.lease"), "{err}");
    let text = toxic_experiment("http://127.0.0.1:1", "1s", "");
    let experiment = Experiment::parse(&text, "x.toml").unwrap();
    assert_eq!(experiment.settings.lease, Duration::from_secs(15));
}

#[tokio::test]
async fn a_toxic_is_injected_with_a_lease_and_renewed() {
    let proxy = FaultProxy::start().await;
    let text = toxic_experiment(&proxy.api_url(), "5s", "[settings]\nlease = \"1s\"\n");
    let experiment = Experiment::parse(&text, "x.toml").unwrap();
    let cancel = tokio_util::sync::CancellationToken::new();
    let run = tokio::spawn(faultline_chaos::run_experiment(
        experiment,
        Bindings {
            ledger: LedgerDir::Disabled,
            cancel: cancel.clone(),
            ..Bindings::default()
        },
    ));
    let remaining = || async {
        proxy
            .client
            .toxics(FaultProxy::PROXY)
            .await
            .unwrap()
            .first()
            .and_then(|t| t.lease_remaining_ms)
    };
    let first = eventually("the toxic is in, with a lease", DEADLINE, remaining).await;
    assert!(first <= 1000, "{first}");
    // Renewed: the time left goes up again before it runs out.
    let lowest = std::cell::Cell::new(first);
    eventually("the lease is renewed", DEADLINE, || {
        let (lowest, remaining) = (&lowest, &remaining);
        async move {
            let now = remaining().await?;
            if now > lowest.get() {
                return Some(());
            }
            lowest.set(now);
            None
        }
    })
    .await;
    cancel.cancel();
    let journal = run.await.unwrap().unwrap();
    assert_eq!(journal.verdict, Verdict::Interrupted);
    assert!(proxy.toxics().await.is_empty(), "reverted on the way out");
    proxy.stop().await;
}

#[tokio::test]
async fn with_the_run_and_its_guardian_killed_the_lease_ends_the_toxic() {
    let proxy = FaultProxy::start().await;
    let dir = tempfile::tempdir().unwrap();
    let ledger_dir = dir.path().join("ledger");
    let experiment = write(
        dir.path(),
        "leased.toml",
        &toxic_experiment(&proxy.api_url(), "5m", "[settings]\nlease = \"2s\"\n"),
    );
    let mut run = spawn_run(dir.path(), &experiment, &[]);
    eventually("the toxic is injected", DEADLINE, || async {
        (!proxy.toxics().await.is_empty()).then_some(())
    })
    .await;
    let pid_file = faultline_chaos::guardian::pid_path(&ledger_dir, run.id());
    let guardian: u32 = std::fs::read_to_string(&pid_file)
        .unwrap_or_else(|e| panic!("{e}: {}", stderr_of(dir.path())))
        .trim()
        .parse()
        .unwrap();

    // The guardian first (else it would revert at once), then the run.
    sigkill(guardian);
    run.kill().unwrap();
    run.wait().unwrap();
    eventually(
        "the fault proxy removes the toxic when its lease runs out",
        Duration::from_secs(2 + 5),
        || async { proxy.toxics().await.is_empty().then_some(()) },
    )
    .await;
    // Nobody reverted it: the ledger still lists it, for `faultline cleanup`.
    assert_eq!(ledger::read_all(&ledger_dir).unwrap().len(), 1);
    proxy.stop().await;
}
