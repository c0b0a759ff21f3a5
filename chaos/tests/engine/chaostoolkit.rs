//! `report --format chaostoolkit`: journals in Chaos Toolkit's shape,
//! checked against the schema of what we rely on
//! (chaos/schemas/chaostoolkit-journal.schema.json), for a passed, a failed,
//! an interrupted, an aborted and a gate-failed run.

use std::sync::Arc;
use std::time::Duration;

use faultline_chaos::Journal;
use faultline_chaos::experiment::Must;
use faultline_chaos::journal::Verdict;
use faultline_chaos::report::chaostoolkit;
use faultline_chaos::runner::{
    Bindings, LedgerDir, Plan, PlannedAction, PlannedDuring, PlannedFault, PlannedProbe, run_plan,
};
use faultline_chaos::testing::{Behaviour, CallLog, FakeAction, FakeFault, SwitchProbe};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

fn schema() -> jsonschema::Validator {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/schemas/chaostoolkit-journal.schema.json"
    ))
    .unwrap();
    let schema: Value = serde_json::from_str(&text).unwrap();
    jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap()
}

fn assert_valid(export: &Value) {
    let validator = schema();
    let errors: Vec<String> = validator
        .iter_errors(export)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{errors:#?}\n{export:#}");
}

/// A fault with a timed revert, a steady-state probe, a during probe, a
/// rollback; `during` says how the during probe answers.
fn plan(log: &CallLog, steady: Behaviour, during: Behaviour) -> Plan {
    let mut plan = Plan::new("ctk");
    plan.settings.probe_interval = Duration::from_millis(20);
    plan.method_duration = Duration::from_millis(300);
    plan.recovery_deadline = Duration::from_secs(5);
    plan.faults = vec![PlannedFault {
        name: "f".into(),
        at: Duration::ZERO,
        duration: Some(Duration::from_millis(100)),
        fault: Arc::new(FakeFault::new("f", log)),
    }];
    plan.steady_state = vec![PlannedProbe {
        name: "healthy".into(),
        within: None,
        probe: Arc::new(SwitchProbe::new(steady)),
    }];
    plan.during = vec![PlannedDuring {
        name: "holds".into(),
        every: Duration::from_millis(20),
        must: Must::Always,
        abort: true,
        probe: Arc::new(SwitchProbe::new(during)),
    }];
    plan.rollbacks = vec![PlannedAction {
        name: "reset".into(),
        action: Arc::new(FakeAction {
            name: "reset".into(),
            log: log.clone(),
        }),
    }];
    plan
}

async fn run(plan: Plan, bindings: Bindings) -> Journal {
    tokio::time::timeout(Duration::from_secs(30), run_plan(plan, bindings))
        .await
        .unwrap()
}

fn bindings() -> Bindings {
    Bindings {
        ledger: LedgerDir::Disabled,
        ..Bindings::default()
    }
}

fn export(journal: &Journal) -> Value {
    let value: Value = serde_json::from_str(&chaostoolkit::to_json(journal).unwrap()).unwrap();
    assert_valid(&value);
    value
}

#[tokio::test]
async fn a_passed_run_is_completed_and_not_deviated() {
    let log = CallLog::default();
    let journal = run(
        plan(&log, Behaviour::Succeed, Behaviour::Succeed),
        bindings(),
    )
    .await;
    assert_eq!(journal.verdict, Verdict::Passed, "{:?}", journal.reasons);
    let ctk = export(&journal);
    assert_eq!(ctk["status"], "completed");
    assert_eq!(ctk["deviated"], false);
    assert_eq!(ctk["experiment"]["title"], "ctk");
    assert_eq!(ctk["steady_states"]["before"]["steady_state_met"], true);
    assert_eq!(ctk["steady_states"]["after"]["steady_state_met"], true);
    assert!(ctk["steady_states"]["during"].as_array().unwrap().len() > 2);
    let names: Vec<&str> = ctk["run"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["activity"]["name"].as_str().unwrap())
        .collect();
    // The fault's injection, what it did (read back before the revert), its revert.
    assert_eq!(names, ["f", "f (effect)", "f (revert)"]);
    assert_eq!(ctk["run"][0]["status"], "succeeded");
    assert_eq!(ctk["rollbacks"][0]["activity"]["name"], "reset");
    assert_eq!(ctk["experiment"]["method"].as_array().unwrap().len(), 3);
    assert_eq!(ctk["experiment"]["extensions"][0]["name"], "faultline");
    assert_eq!(ctk["experiment"]["extensions"][0]["verdict"], "passed");
    assert!(ctk["chaoslib-version"].is_null());
}

#[tokio::test]
async fn a_failed_run_is_completed_and_deviated() {
    let log = CallLog::default();
    let journal = run(plan(&log, Behaviour::Succeed, Behaviour::Fail), bindings()).await;
    assert_eq!(journal.verdict, Verdict::Failed);
    let ctk = export(&journal);
    assert_eq!(
        ctk["status"], "completed",
        "Chaos Toolkit's meaning of a deviation"
    );
    assert_eq!(ctk["deviated"], true);
    let during = ctk["steady_states"]["during"].as_array().unwrap();
    let missed = during
        .iter()
        .find(|d| d["steady_state_met"] == false)
        .unwrap();
    // Out of tolerance is a succeeded probe run whose tolerance was not met.
    assert_eq!(missed["probes"][0]["status"], "succeeded");
    assert_eq!(missed["probes"][0]["tolerance_met"], false);
    assert!(
        ctk["experiment"]["extensions"][0]["reasons"][0]
            .as_str()
            .unwrap()
            .contains("holds")
    );
}

#[tokio::test]
async fn a_run_whose_steady_state_did_not_hold_before_failed_without_deviating() {
    let log = CallLog::default();
    let journal = run(plan(&log, Behaviour::Fail, Behaviour::Succeed), bindings()).await;
    assert_eq!(journal.verdict, Verdict::Failed);
    let ctk = export(&journal);
    assert_eq!(ctk["status"], "failed");
    assert_eq!(ctk["deviated"], false);
    assert_eq!(ctk["steady_states"]["before"]["steady_state_met"], false);
    assert!(ctk["steady_states"]["after"].is_null());
    assert_eq!(ctk["run"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn an_interrupted_run_is_interrupted() {
    let log = CallLog::default();
    let mut plan = plan(&log, Behaviour::Succeed, Behaviour::Succeed);
    plan.method_duration = Duration::from_secs(20);
    let cancel = CancellationToken::new();
    let bindings = Bindings {
        cancel: cancel.clone(),
        ..bindings()
    };
    let canceller = cancel.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        canceller.cancel();
    });
    let journal = run(plan, bindings).await;
    assert_eq!(journal.verdict, Verdict::Interrupted);
    let ctk = export(&journal);
    assert_eq!(ctk["status"], "interrupted");
    assert_eq!(ctk["rollbacks"][0]["status"], "succeeded", "rolled back");
}

#[tokio::test]
async fn a_run_with_a_failed_action_is_aborted() {
    let log = CallLog::default();
    let mut plan = plan(&log, Behaviour::Succeed, Behaviour::Succeed);
    plan.faults = vec![PlannedFault {
        name: "broken".into(),
        at: Duration::ZERO,
        duration: None,
        fault: Arc::new(FakeFault {
            inject: Behaviour::Fail,
            ..FakeFault::new("broken", &log)
        }),
    }];
    let journal = run(plan, bindings()).await;
    assert_eq!(journal.verdict, Verdict::Error);
    let ctk = export(&journal);
    assert_eq!(ctk["status"], "aborted");
    let inject = &ctk["run"][0];
    assert_eq!(inject["status"], "failed");
    assert!(
        inject["exception"][0]
            .as_str()
            .unwrap()
            .contains("cannot be injected")
    );
}

#[test]
fn the_schema_rejects_what_chaos_toolkit_would_not_write() {
    let validator = schema();
    let base = serde_json::json!({
        "chaoslib-version": null, "platform": null, "node": null,
        "experiment": {"title": "t", "description": "d", "method": []},
        "start": "2026-01-01T00:00:00Z", "end": "2026-01-01T00:00:01Z",
        "duration": 1.0, "status": "completed", "deviated": false,
        "steady_states": {"before": null, "after": null, "during": []},
        "run": [], "rollbacks": []
    });
    assert!(validator.is_valid(&base));
    let mut bad = base.clone();
    bad["status"] = "passed".into();
    assert!(!validator.is_valid(&bad), "status is Chaos Toolkit's word");
    let mut bad = base.clone();
    bad["run"] = serde_json::json!([{"activity": {"type": "probe", "name": "p", "provider": {"type": "faultline"}},
        "status": "failed", "start": "2026-01-01T00:00:00Z", "end": "2026-01-01T00:00:01Z",
        "duration": 1.0, "output": null}]);
    assert!(
        !validator.is_valid(&bad),
        "a failed probe carries its exception"
    );
    let mut bad = base;
    bad["experiment"]["description"] = "".into();
    assert!(!validator.is_valid(&bad));
}
