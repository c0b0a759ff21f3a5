//! Journals: serialisation in Chaos Toolkit's vocabulary, and back.

use std::sync::Arc;
use std::time::Duration;

use faultline_chaos::journal::Journal;
use faultline_chaos::runner::{Bindings, LedgerDir, Plan, PlannedFault, PlannedProbe, run_plan};
use faultline_chaos::testing::{Behaviour, CallLog, FakeFault, SwitchProbe};

async fn journal() -> Result<Journal, tokio::time::error::Elapsed> {
    let log = CallLog::default();
    let mut plan = Plan::new("journal");
    plan.settings.probe_interval = Duration::from_millis(20);
    plan.method_duration = Duration::from_millis(100);
    plan.steady_state = vec![PlannedProbe {
        name: "ok".into(),
        within: None,
        probe: Arc::new(SwitchProbe::new(Behaviour::Succeed)),
    }];
    plan.faults = vec![PlannedFault {
        name: "f".into(),
        at: Duration::ZERO,
        duration: None,
        fault: Arc::new(FakeFault::new("f", &log)),
    }];
    let bindings = Bindings {
        ledger: LedgerDir::Disabled,
        ..Bindings::default()
    };
    tokio::time::timeout(Duration::from_secs(30), run_plan(plan, bindings)).await
}

#[tokio::test]
async fn uses_chaos_toolkit_vocabulary() {
    let journal = journal().await.unwrap();
    let value = serde_json::to_value(&journal).unwrap();
    assert_eq!(value["status"], "completed");
    assert_eq!(value["deviated"], false);
    assert_eq!(value["verdict"], "passed");
    assert_eq!(value["steady_states"]["before"]["steady_state_met"], true);
    assert_eq!(value["steady_states"]["after"]["steady_state_met"], true);
    let inject = &value["run"][0];
    assert_eq!(inject["activity"]["type"], "action");
    assert_eq!(inject["activity"]["name"], "f");
    assert_eq!(inject["status"], "succeeded");
    for key in ["start", "end", "duration", "output"] {
        assert!(inject.get(key).is_some(), "{key} in {inject}");
    }
    assert!(value["start"].as_str().unwrap().ends_with('Z'));
    assert!(value["rollbacks"].is_array());
    assert!(value["recovery"]["recovery_time_s"].is_number());
}

#[tokio::test]
async fn round_trips_through_a_file() {
    let journal = journal().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub/journal.json");
    journal.save(&path).unwrap();
    let loaded = Journal::load(&path).unwrap();
    assert_eq!(
        serde_json::to_value(&loaded).unwrap(),
        serde_json::to_value(&journal).unwrap()
    );
    assert_eq!(loaded.run_id, journal.run_id);
    assert_eq!(loaded.run.len(), journal.run.len());
    let err = Journal::load(&dir.path().join("missing.json")).unwrap_err();
    assert!(err.to_string().contains("missing.json"));
}
