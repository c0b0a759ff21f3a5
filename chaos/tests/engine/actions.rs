//! Real faults without containers: toxics (with a ramp) on an in-process fault
//! proxy, and fault admin calls to a fake admin API, through the whole path
//! from TOML to journal; and the undo records `faultline cleanup` replays.

use std::time::Duration;

use faultline_chaos::actions::{Services, UndoRecord};
use faultline_chaos::environment::DockerTarget;
use faultline_chaos::experiment::Experiment;
use faultline_chaos::journal::Verdict;
use faultline_chaos::runner::{Bindings, LedgerDir};
use faultline_chaos::{RunEvent, run_experiment};
use faultline_proxy::toxics::{Latency, ToxicKind};
use faultline_proxy::{NewProxy, NewToxic, ProxyServer, ProxyServerConfig};

use crate::support::{AdminCalls, FakeAdminOptions, fake_admin};

/// What changed the fake admin's faults: `POST <body>` and `DELETE`, in order.
fn mutations(calls: &AdminCalls) -> Vec<String> {
    calls
        .lock()
        .unwrap()
        .iter()
        .filter(|call| call.path == "/faults")
        .filter_map(|call| match call.method.as_str() {
            "POST" => Some(format!("POST {}", call.body)),
            "DELETE" => Some("DELETE".to_owned()),
            _ => None,
        })
        .collect()
}

/// The journal's `effect` activity of `fault`: its recorded [`Effect`].
fn effect_of(journal: &faultline_chaos::Journal, fault: &str) -> serde_json::Value {
    journal
        .run
        .iter()
        .find(|a| a.activity.name == fault && a.activity.step == "effect")
        .map(|a| a.output.clone())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_fault_admin_call_that_changes_nothing_fails_as_not_effective() {
    let (admin, calls) = fake_admin(FakeAdminOptions {
        forgetful: true,
        ..FakeAdminOptions::default()
    })
    .await;
    let text = format!(
        r#"
title = "an admin that ignores us"

[target]
fault_admin = {{ orders = "{admin}" }}

[method]
duration = "600ms"

[[method.faults]]
name = "orders handler latency"
type = "http"
url = "${{fault_admin.orders}}/faults"
json = {{ kind = "latency", latency_ms = 800 }}
expect = [201]
undo = {{ method = "DELETE", url = "${{fault_admin.orders}}/faults", expect = [204] }}
duration = "300ms"
"#
    );
    let experiment = Experiment::parse(&text, "inline.toml").unwrap();
    let bindings = Bindings {
        ledger: LedgerDir::Disabled,
        ..Bindings::default()
    };
    let journal = tokio::time::timeout(
        Duration::from_secs(30),
        run_experiment(experiment, bindings),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(journal.verdict, Verdict::Failed, "{:?}", journal.reasons);
    assert!(
        journal
            .reasons
            .iter()
            .any(|r| r.contains("fault not effective: orders handler latency")),
        "{:?}",
        journal.reasons
    );
    // It was still undone.
    assert_eq!(mutations(&calls).last().map(String::as_str), Some("DELETE"));
}

#[tokio::test]
async fn toxic_ramp_and_fault_admin_calls_from_toml_to_journal() {
    let server = ProxyServer::start(ProxyServerConfig::ephemeral())
        .await
        .unwrap();
    let client = server.client().unwrap();
    let (admin, calls) = fake_admin(FakeAdminOptions::default()).await;
    // The during-probe reaches the admin through the proxy, so the toxic
    // acts on its connections.
    let proxied = client
        .create_proxy(&NewProxy::new(
            "payments",
            "127.0.0.1:0",
            admin.trim_start_matches("http://"),
        ))
        .await
        .unwrap()
        .listen;
    let text = format!(
        r#"
title = "ramp and admin"

[target]
proxy_api = "{api}"
fault_admin = {{ orders = "{admin}" }}

[settings]
probe_interval = "50ms"

[[steady_state.probes]]
name = "admin answers"
type = "http"
url = "${{fault_admin.orders}}/health"
body_contains = "ok"

[method]
duration = "800ms"

[[method.faults]]
name = "payments latency ramp"
type = "toxic"
proxy = "payments"
toxic = "latency"
attributes = {{ latency = 100, jitter = 0 }}
ramp = {{ attribute = "latency", to = 400, steps = 3, every = "100ms" }}
duration = "600ms"

[[method.faults]]
name = "orders handler latency"
type = "http"
url = "${{fault_admin.orders}}/faults"
json = {{ kind = "latency", latency_ms = 800, duration = "30s" }}
expect = [201]
undo = {{ method = "DELETE", url = "${{fault_admin.orders}}/faults", expect = [204] }}

[[during]]
name = "admin still answers through the proxy"
type = "http"
url = "http://{proxied}/health"
every = "50ms"

[[rollbacks]]
name = "proxy reset"
type = "proxy_reset"
"#,
        api = server.api_url(),
    );
    let experiment = Experiment::parse(&text, "inline.toml").unwrap();
    let (events, mut receiver) = tokio::sync::mpsc::unbounded_channel();
    let bindings = Bindings {
        ledger: LedgerDir::Disabled,
        events: Some(events),
        ..Bindings::default()
    };
    let watch_client = client.clone();
    let watcher = async move {
        let mut at_last_step = None;
        while let Some(event) = receiver.recv().await {
            if let RunEvent::Activity(activity) = event
                && activity.activity.step == "ramp 3"
            {
                let toxic = watch_client
                    .toxic("payments", "faultline_payments_latency")
                    .await
                    .unwrap();
                at_last_step = toxic.attributes.get("latency").and_then(|v| v.as_u64());
            }
        }
        at_last_step
    };
    let (journal, at_last_step) = tokio::time::timeout(Duration::from_secs(30), async {
        tokio::join!(run_experiment(experiment, bindings), watcher)
    })
    .await
    .unwrap();
    let journal = journal.unwrap();
    assert_eq!(journal.verdict, Verdict::Passed, "{:?}", journal.reasons);
    assert_eq!(at_last_step, Some(400), "the ramp reached its target");
    let steps: Vec<_> = journal
        .run
        .iter()
        .filter(|a| a.activity.name == "payments latency ramp")
        .map(|a| a.activity.step.as_str())
        .collect();
    assert_eq!(
        steps,
        ["inject", "ramp 1", "ramp 2", "ramp 3", "effect", "revert"]
    );
    assert!(client.toxics("payments").await.unwrap().is_empty());
    let toxic_effect = effect_of(&journal, "payments latency ramp");
    assert_eq!(toxic_effect["effective"], true, "{toxic_effect}");
    assert!(
        toxic_effect["evidence"]["connections"].as_u64() >= Some(1),
        "{toxic_effect}"
    );
    let admin_effect = effect_of(&journal, "orders handler latency");
    assert_eq!(admin_effect["effective"], true, "{admin_effect}");
    assert_eq!(admin_effect["evidence"]["active_faults"][0], "latency");
    let calls = mutations(&calls);
    assert_eq!(calls.len(), 2, "{calls:?}");
    assert!(
        calls[0].starts_with("POST ") && calls[0].contains("\"latency_ms\":800"),
        "{calls:?}"
    );
    assert_eq!(calls[1], "DELETE");
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_toxic_on_a_proxy_nobody_routes_through_is_not_effective() {
    let server = ProxyServer::start(ProxyServerConfig::ephemeral())
        .await
        .unwrap();
    let client = server.client().unwrap();
    client
        .create_proxy(&NewProxy::new("unused", "127.0.0.1:0", "127.0.0.1:9"))
        .await
        .unwrap();
    let text = format!(
        r#"
title = "a toxic where no traffic flows"

[target]
proxy_api = "{api}"

[method]
duration = "500ms"

[[method.faults]]
name = "latency nobody feels"
type = "toxic"
proxy = "unused"
toxic = "latency"
attributes = {{ latency = 100 }}
duration = "300ms"
"#,
        api = server.api_url(),
    );
    let experiment = Experiment::parse(&text, "inline.toml").unwrap();
    let bindings = Bindings {
        ledger: LedgerDir::Disabled,
        ..Bindings::default()
    };
    let journal = tokio::time::timeout(
        Duration::from_secs(30),
        run_experiment(experiment, bindings),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(journal.verdict, Verdict::Failed, "{:?}", journal.reasons);
    assert!(
        journal
            .reasons
            .iter()
            .any(|r| r.contains("fault not effective: latency nobody feels")
                && r.contains("\"connections\":0")),
        "{:?}",
        journal.reasons
    );
    assert!(
        client.toxics("unused").await.unwrap().is_empty(),
        "still reverted"
    );
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn undo_records_revert_leftovers_and_tolerate_repeats() {
    let server = ProxyServer::start(ProxyServerConfig::ephemeral())
        .await
        .unwrap();
    let client = server.client().unwrap();
    client
        .create_proxy(&NewProxy::new("db", "127.0.0.1:0", "127.0.0.1:9"))
        .await
        .unwrap();
    let latency = ToxicKind::Latency(Latency {
        latency: Duration::from_millis(50),
        jitter: Duration::ZERO,
    });
    client
        .add_toxic("db", &NewToxic::new(&latency).with_name("left_behind"))
        .await
        .unwrap();
    client.set_enabled("db", false).await.unwrap();
    let services = Services::new(DockerTarget::default()).unwrap();
    let api = server.api_url();
    let records = [
        UndoRecord::RemoveToxic {
            api: api.clone(),
            proxy: "db".into(),
            toxic: "left_behind".into(),
            token: None,
        },
        UndoRecord::EnableProxy {
            api,
            proxy: "db".into(),
            token: None,
        },
    ];
    for _ in 0..2 {
        for record in &records {
            record.execute(&services).await.unwrap();
        }
    }
    let proxy = client.proxy("db").await.unwrap();
    assert!(proxy.enabled);
    assert!(proxy.toxics.is_empty());
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn missing_target_settings_are_named_before_anything_runs() {
    let text = r#"
title = "needs prometheus"
[method]
[[during]]
name = "q"
type = "promql"
query = "up"
tolerance = "non_empty"
"#;
    let experiment = Experiment::parse(text, "inline.toml").unwrap();
    let err = run_experiment(experiment, Bindings::default())
        .await
        .unwrap_err();
    let message = err.to_string();
    assert!(message.contains("target.prometheus"), "{message}");
    assert!(message.contains("FAULTLINE_TARGET_PROMETHEUS"), "{message}");
}
