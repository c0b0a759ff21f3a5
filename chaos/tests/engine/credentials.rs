//! Credentials: the target's `proxy_api_token` goes with every call to the
//! proxy's control API, its `fault_admin_token` with every request to a
//! fault admin API (faults, undos, probes) and nowhere else; the undo
//! records keep them, so cleanup can send them; the journal never shows them.

use std::time::Duration;

use faultline_chaos::actions::{Services, UndoRecord};
use faultline_chaos::environment::{DockerTarget, Environment, Secret};
use faultline_chaos::experiment::Experiment;
use faultline_chaos::journal::Verdict;
use faultline_chaos::run_experiment;
use faultline_chaos::runner::{Bindings, LedgerDir};
use faultline_proxy::toxics::{Latency, ToxicKind};
use faultline_proxy::{ApiToken, NewProxy, NewToxic, ProxyServer, ProxyServerConfig};

const PROXY_TOKEN: &str = "proxy-token-for-the-engine";
const ADMIN_TOKEN: &str = "fault-admin-token-for-the-engine";

use crate::support::{FakeAdminOptions, fake_admin};

async fn proxy_with_token() -> ProxyServer {
    let config = ProxyServerConfig::ephemeral().with_api_token(ApiToken::new(PROXY_TOKEN).unwrap());
    ProxyServer::start(config).await.unwrap()
}

#[tokio::test]
async fn the_engine_sends_each_token_where_it_belongs_and_never_shows_it() {
    let server = proxy_with_token().await;
    let client = server.client().unwrap();
    let (admin, seen) = fake_admin(FakeAdminOptions {
        token: Some(ADMIN_TOKEN),
        ..FakeAdminOptions::default()
    })
    .await;
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
title = "credentials"

[target]
proxy_api = "{api}"
fault_admin = {{ orders = "{admin}" }}

[settings]
probe_interval = "50ms"

[[steady_state.probes]]
name = "no fault on orders"
type = "http"
url = "${{fault_admin.orders}}/faults"
body_contains = "[]"

[method]
duration = "600ms"

[[method.faults]]
name = "payments latency"
type = "toxic"
proxy = "payments"
toxic = "latency"
attributes = {{ latency = 20 }}
duration = "400ms"

[[method.faults]]
name = "orders handler latency"
type = "http"
url = "${{fault_admin.orders}}/faults"
json = {{ kind = "latency", latency_ms = 800 }}
expect = [201]
undo = {{ method = "DELETE", url = "${{fault_admin.orders}}/faults", expect = [204] }}

[[during]]
name = "the admin answers through the proxy"
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
    // As --var or FAULTLINE_TARGET_* would give them.
    let mut environment = Environment::default();
    environment.set("proxy_api_token", PROXY_TOKEN).unwrap();
    environment.set("fault_admin_token", ADMIN_TOKEN).unwrap();
    let ledger = tempfile::tempdir().unwrap();
    let bindings = Bindings {
        environment,
        ledger: LedgerDir::At(ledger.path().to_owned()),
        ..Bindings::default()
    };
    let journal = tokio::time::timeout(
        Duration::from_secs(30),
        run_experiment(experiment, bindings),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(journal.verdict, Verdict::Passed, "{:?}", journal.reasons);

    let seen: Vec<(String, String, bool)> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|call| (call.method.clone(), call.path.clone(), call.authorized))
        .collect();
    let to_admin: Vec<_> = seen
        .iter()
        .filter(|(_, path, _)| path == "/faults")
        .collect();
    assert!(
        to_admin.len() >= 4,
        "steady state twice, the fault, its evidence and its undo: {seen:?}"
    );
    assert!(
        to_admin.iter().all(|(_, _, authorized)| *authorized),
        "a fault admin call without the token: {seen:?}"
    );
    assert!(
        to_admin.iter().any(|(method, _, _)| method == "DELETE"),
        "{seen:?}"
    );
    // The probe through the proxy is not a fault admin URL: no token.
    assert!(
        seen.iter()
            .filter(|(_, path, _)| path == "/health")
            .all(|(_, _, authorized)| !*authorized),
        "{seen:?}"
    );
    assert!(
        client.toxics("payments").await.unwrap().is_empty(),
        "reverted through the API, with its token"
    );

    let shown = serde_json::to_string(&journal).unwrap();
    for token in [PROXY_TOKEN, ADMIN_TOKEN] {
        assert!(!shown.contains(token), "the journal shows a token");
    }
    assert!(
        std::fs::read_dir(ledger.path()).unwrap().next().is_none(),
        "the ledger file is gone once everything is reverted"
    );
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn undo_records_carry_the_proxy_token_for_cleanup() {
    let server = proxy_with_token().await;
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
    let services = Services::new(DockerTarget::default()).unwrap();
    let record = |token: Option<&str>| UndoRecord::RemoveToxic {
        api: server.api_url(),
        proxy: "db".into(),
        toxic: "left_behind".into(),
        token: token.map(Secret::new),
    };

    let refused = record(None).execute(&services).await.unwrap_err();
    assert!(refused.to_string().contains("401"), "{refused}");
    let refused = record(Some("wrong")).execute(&services).await.unwrap_err();
    assert!(refused.to_string().contains("401"), "{refused}");
    assert_eq!(client.toxics("db").await.unwrap().len(), 1);

    let with_token = record(Some(PROXY_TOKEN));
    // Stored whole (the ledger must send it again), shown hidden.
    let stored = serde_json::to_string(&with_token).unwrap();
    assert!(stored.contains(PROXY_TOKEN), "{stored}");
    assert!(!format!("{with_token} {with_token:?}").contains(PROXY_TOKEN));
    let read: UndoRecord = serde_json::from_str(&stored).unwrap();
    read.execute(&services).await.unwrap();
    assert!(client.toxics("db").await.unwrap().is_empty());
    server.shutdown().await.unwrap();
}
