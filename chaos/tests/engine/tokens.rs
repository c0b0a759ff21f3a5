//! Bearer tokens: the load acts as customers (or one named customer) with
//! tokens minted with the target's `keys`; http probes, faults, their undo
//! and rollbacks with a `bearer` send a fresh token for their subject; an
//! experiment that sends tokens without `keys` is refused where it says so.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use faultline_auth::{KeyDir, KeySet, Policy, Role, Verifier};
use faultline_chaos::actions::http::HttpInjection;
use faultline_chaos::actions::load::Loadgen;
use faultline_chaos::actions::{Fault, HttpRequest, Services, UndoRecord};
use faultline_chaos::environment::{DockerTarget, Environment};
use faultline_chaos::experiment::{Experiment, ExperimentError, FaultKind};
use faultline_chaos::identity::Bearer;
use faultline_chaos::journal::Verdict;
use faultline_chaos::run_experiment;
use faultline_chaos::runner::{Bindings, LedgerDir};

/// A key directory in a temporary directory, and a verifier of its JWKS.
fn keys() -> (tempfile::TempDir, String, Verifier) {
    let dir = tempfile::tempdir().unwrap();
    let keys = KeyDir::new(dir.path());
    keys.ensure().unwrap();
    let jwks = std::fs::read_to_string(keys.jwks_path()).unwrap();
    let (set, _) = KeySet::from_jwks(&jwks).unwrap();
    let path = dir.path().display().to_string();
    (dir, path, Verifier::new(set, Policy::default()))
}

const HEAD: &str = r#"title = "tokens"

[target]
gateway = "http://127.0.0.1:1"
"#;

const FAULT: &str = r#"
[method]
[[method.faults]]
name = "pause"
type = "container"
action = "pause"
target = { service = "orders", replica = 1 }
at = "1s"
duration = "2s"
"#;

/// `HEAD`, `body`, then a harmless method.
fn experiment(body: &str) -> String {
    format!("{HEAD}{body}\n{FAULT}")
}

fn parse_with(text: &str, keys: Option<&str>) -> Result<Experiment, ExperimentError> {
    let mut overrides = Environment::default();
    if let Some(keys) = keys {
        overrides.set("keys", keys).unwrap();
    }
    Experiment::parse_with(text, "tokens.toml", &overrides)
}

/// The message, field and line of the error `text` gives without keys.
fn refused(text: &str) -> (String, String, usize) {
    match parse_with(text, None) {
        Ok(_) => panic!("valid without keys, but should not be:\n{text}"),
        Err(err) => {
            let field = err.field().unwrap_or_default().to_owned();
            let (line, _) = err.location().unwrap_or_default();
            (err.to_string(), field, line)
        }
    }
}

fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .map_or(0, |i| i + 1)
}

#[test]
fn a_load_that_sends_tokens_needs_keys_and_says_where() {
    let cases = [
        // The default mix has checkouts and order reads.
        ("[load]\nrate = 5\n", "load", "[load]"),
        (
            "[load]\nrate = 5\nmix = \"list=1,order=1\"\n",
            "load.mix",
            "mix = ",
        ),
        (
            "[load]\nrate = 5\nmix = \"list=1\"\nsubject = \"steady-client\"\n",
            "load.subject",
            "subject = ",
        ),
        (
            "[load]\nrate = 5\nmix = \"list=1\"\ncustomers = 3\n",
            "load.customers",
            "customers = ",
        ),
    ];
    for (body, field, line_needle) in cases {
        let text = experiment(body);
        let (message, found, line) = refused(&text);
        assert_eq!(found, field, "{message}");
        assert_eq!(line, line_of(&text, line_needle), "{message}");
        assert!(
            message.starts_with(&format!("tokens.toml:{line}:")),
            "{message}"
        );
        for needle in ["the target has none", "keys", "FAULTLINE_TARGET_KEYS"] {
            assert!(message.contains(needle), "{needle:?} in {message}");
        }
        // Keys from the overrides, or from [target], satisfy it.
        parse_with(&text, Some("/run/keys")).unwrap();
        let with_keys = text.replace("[target]\n", "[target]\nkeys = \"compose/keys\"\n");
        parse_with(&with_keys, None).unwrap();
        // Without a target to check, the file alone is valid.
        Experiment::parse(&text, "tokens.toml").unwrap();
    }
    // Product reads only, no named customer: no token, no keys needed.
    parse_with(&experiment("[load]\nmix = \"list=3,product=1\"\n"), None).unwrap();
}

#[test]
fn a_load_fault_and_a_bearer_need_keys_too() {
    let surge = format!(
        "{HEAD}{FAULT}
[[method.faults]]
name = \"flood\"
type = \"load\"
rate = 50
mix = \"list=1\"
subject = \"flooding-client\"
at = \"1s\"
duration = \"2s\"
"
    );
    let (message, field, line) = refused(&surge);
    assert_eq!(field, "method.faults[1].subject", "{message}");
    assert_eq!(line, line_of(&surge, "subject = "));
    assert!(message.contains("\"flooding-client\""), "{message}");

    let probe = experiment(
        r#"[[steady_state.probes]]
name = "who am I"
type = "http"
url = "${gateway}/whoami"
bearer = { subject = "alice" }
"#,
    );
    let (message, field, line) = refused(&probe);
    assert_eq!(field, "steady_state.probes[0].bearer", "{message}");
    assert_eq!(line, line_of(&probe, "bearer = "));

    let rollback = experiment(
        r#"[[rollbacks]]
name = "as an admin"
type = "http"
url = "${gateway}/api/orders/1"
method = "GET"
bearer = { subject = "ops", role = "admin" }
"#,
    );
    let (_, field, _) = refused(&rollback);
    assert_eq!(field, "rollbacks[0].bearer");
    let experiment = parse_with(&rollback, Some("k")).unwrap();
    assert_eq!(
        serde_json::to_value(&experiment.rollbacks[0]).unwrap()["bearer"],
        serde_json::json!({"subject": "ops", "role": "admin"})
    );
}

#[test]
fn tokens_fields_are_checked() {
    let cases = [
        (
            "[load]\nsubject = \"a\"\ncustomers = 2\n",
            "load.subject",
            "not both",
        ),
        (
            "[load]\ncustomers = 0\n",
            "load.customers",
            "must be 1 to 100000",
        ),
        (
            "[load]\nsubject = \"\"\n",
            "load.subject",
            "is not a token subject",
        ),
        (
            "[load]\nclient_id = \"steady-client\"\n",
            "load.client_id",
            "unknown field `client_id`",
        ),
        (
            "[[steady_state.probes]]\nname = \"p\"\ntype = \"http\"\nurl = \"http://x\"\nbearer = { subject = \"a\\nb\" }\n",
            "steady_state.probes[0].bearer.subject",
            "is not a token subject",
        ),
        (
            "[[steady_state.probes]]\nname = \"p\"\ntype = \"http\"\nurl = \"http://x\"\nbearer = { subject = \"a\", role = \"root\" }\n",
            "steady_state.probes[0].bearer.role",
            "unknown variant `root`",
        ),
    ];
    for (body, field, needle) in cases {
        let text = experiment(body);
        let err = parse_with(&text, Some("k")).unwrap_err();
        assert_eq!(err.field(), Some(field), "{err}");
        assert!(err.to_string().contains(needle), "{needle:?} in {err}");
    }
}

#[test]
fn the_load_is_customers_or_one_named_client() {
    let (_dir, keys, _) = keys();
    let mut env = Environment::default();
    env.set("gateway", "http://127.0.0.1:1").unwrap();
    env.set("keys", &keys).unwrap();
    let load = |body: &str| {
        let text = experiment(&format!("[load]\n{body}"));
        let experiment = parse_with(&text, Some(&keys)).unwrap();
        let load = Loadgen::from_spec(experiment.load.as_ref().unwrap(), &env).unwrap();
        let customers = load.resolved_config().unwrap().customers;
        if let Some(customers) = &load.customers {
            assert_eq!(customers.keys, keys, "read when the load starts");
        }
        customers
    };
    let customers = load("rate = 5\n").unwrap();
    assert_eq!(customers.count, 50);
    assert_eq!(customers.subject(0), "customer-1");
    assert!(!customers.authenticated_reads);
    let customers = load("customers = 7\n").unwrap();
    assert_eq!(customers.count, 7);
    let one = load("mix = \"list=1\"\nsubject = \"steady-client\"\n").unwrap();
    assert_eq!(one.subjects().collect::<Vec<_>>(), ["steady-client"]);
    assert!(
        one.authenticated_reads,
        "a named client is one on every request"
    );
    assert!(load("mix = \"list=1,product=1\"\n").is_none());

    // No keys at compile time: the load says what it needs.
    let text = experiment("[load]\nrate = 5\n");
    let experiment = Experiment::parse(&text, "t.toml").unwrap();
    let spec = experiment.load.as_ref().unwrap();
    let mut without = Environment::default();
    without.set("gateway", "http://127.0.0.1:1").unwrap();
    let err = Loadgen::from_spec(spec, &without).unwrap_err().to_string();
    assert!(err.contains("target.keys"), "{err}");
    // Keys that are not there: compiling is fine (validate, dry runs), the
    // load refuses to start.
    without.set("keys", "/nonexistent/keys").unwrap();
    let load = Loadgen::from_spec(spec, &without).unwrap();
    let err = load.resolved_config().unwrap_err().to_string();
    assert!(err.contains("target.keys (/nonexistent/keys)"), "{err}");
}

#[tokio::test]
async fn an_undo_in_the_ledger_carries_a_token_of_its_own() {
    let (_dir, keys, verifier) = keys();
    let request = |url: &str| HttpRequest {
        method: "POST".to_owned(),
        url: url.to_owned(),
        json: None,
        headers: BTreeMap::new(),
        expect: Vec::new(),
        bearer: None,
    };
    let fault = HttpInjection::new(
        Services::new(DockerTarget::default()).unwrap(),
        request("http://127.0.0.1:1/do"),
        Some(request("http://127.0.0.1:1/undo")),
    )
    .with_bearers(
        Some(Bearer::new(&keys, "doer", Role::Customer)),
        Some(Bearer::new(&keys, "undoer", Role::Admin)),
    );
    let prepared = fault.prepare().await.unwrap();
    let [UndoRecord::Http { request }] = prepared.undo.as_slice() else {
        panic!("one http undo: {:?}", prepared.undo);
    };
    let token = request.bearer.as_ref().unwrap();
    let identity = verifier.verify(token.expose()).unwrap();
    assert_eq!(
        (identity.subject.as_str(), identity.role),
        ("undoer", Role::Admin)
    );
    assert!(
        !prepared.detail.to_string().contains(token.expose()),
        "never in the journal"
    );
}

/// What the fake gateway saw: route, subject (of a valid token), status.
type Seen = Arc<Mutex<Vec<(String, Option<String>, u16)>>>;

#[derive(Clone)]
struct Gateway {
    seen: Seen,
    verifier: Verifier,
    owners: Arc<Mutex<BTreeMap<String, String>>>,
}

impl Gateway {
    /// The subject of the request's token: `Ok(None)` without one, `Err`
    /// for a bad one.
    fn subject(&self, request: &Request) -> Result<Option<String>, ()> {
        match request.headers().get(header::AUTHORIZATION) {
            None => Ok(None),
            Some(value) => self
                .verifier
                .verify_header(Some(value.as_bytes()))
                .map(|identity| Some(format!("{}:{}", identity.subject, identity.role)))
                .map_err(|_| ()),
        }
    }
}

/// A stand-in for the gateway: order routes need a token (401 without),
/// an order is only its owner's (404 to anyone else), and every request is
/// remembered with the subject and role of its token.
async fn fake_gateway(verifier: Verifier) -> (String, Seen) {
    let gateway = Gateway {
        seen: Seen::default(),
        verifier,
        owners: Arc::default(),
    };
    let guard = |State(gateway): State<Gateway>, request: Request, next: Next| async move {
        let route = format!("{} {}", request.method(), request.uri().path());
        let subject = gateway.subject(&request);
        let needs_token = route.contains("/api/orders") || route.contains("/whoami");
        let refused = match &subject {
            Err(()) => true,
            Ok(None) => needs_token,
            Ok(Some(_)) => false,
        };
        let mut request = request;
        request
            .extensions_mut()
            .insert(subject.clone().ok().flatten());
        let response = if refused {
            StatusCode::UNAUTHORIZED.into_response()
        } else {
            next.run(request).await
        };
        let status = response.status().as_u16();
        gateway
            .seen
            .lock()
            .unwrap()
            .push((route, subject.ok().flatten(), status));
        response
    };
    let app = Router::new()
        .route(
            "/api/products",
            get(|| async { axum::Json(serde_json::json!({"products": [{"id": 1}]})) }),
        )
        .route(
            "/api/products/{id}",
            get(|Path(id): Path<i64>| async move { axum::Json(serde_json::json!({"id": id})) }),
        )
        .route(
            "/api/orders",
            post(
                |State(gateway): State<Gateway>,
                 axum::Extension(subject): axum::Extension<Option<String>>| async move {
                    let id = uuid::Uuid::new_v4().to_string();
                    gateway
                        .owners
                        .lock()
                        .unwrap()
                        .insert(id.clone(), subject.unwrap_or_default());
                    (
                        StatusCode::CREATED,
                        axum::Json(serde_json::json!({"id": id, "status": "paid"})),
                    )
                },
            ),
        )
        .route(
            "/api/orders/{id}",
            get(
                |State(gateway): State<Gateway>,
                 Path(id): Path<String>,
                 axum::Extension(subject): axum::Extension<Option<String>>| async move {
                    let owner = gateway.owners.lock().unwrap().get(&id).cloned();
                    let response: Response = if owner.is_some() && owner == subject {
                        axum::Json(serde_json::json!({"id": id})).into_response()
                    } else {
                        StatusCode::NOT_FOUND.into_response()
                    };
                    response
                },
            ),
        )
        .route("/whoami", get(|| async { "ok" }).post(|| async { "ok" }))
        .layer(middleware::from_fn_with_state(gateway.clone(), guard))
        .with_state(gateway.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, gateway.seen)
}

const RUN: &str = r#"title = "customers, a named client, and bearers"

[target]
gateway = "http://127.0.0.1:1"

[load]
rate = 40
concurrency = 8
mix = "list=20,product=20,checkout=40,order=20"
customers = 4

[[steady_state.probes]]
name = "the probe is an admin"
type = "http"
url = "${gateway}/whoami"
bearer = { subject = "ops", role = "admin" }

[method]
duration = "3s"

[[method.faults]]
name = "a named client reads products"
type = "load"
rate = 20
mix = "list=1,product=1"
subject = "flooding-client"
at = "0s"
duration = "2s"

[[method.faults]]
name = "a request as someone"
type = "http"
url = "${gateway}/whoami"
bearer = { subject = "doer" }
undo = { url = "${gateway}/whoami", bearer = { subject = "undoer" } }
at = "0s"

[[during]]
name = "no request fails"
type = "sli"
metric = "errors"
over = "phase"
tolerance = { equals = 0 }

[[rollbacks]]
name = "a rollback as someone"
type = "http"
url = "${gateway}/whoami"
bearer = { subject = "rollback" }
"#;

#[tokio::test]
async fn a_run_sends_the_tokens_it_mints() {
    let (_dir, keys, verifier) = keys();
    let (gateway, seen) = fake_gateway(verifier).await;
    let mut environment = Environment::default();
    environment.set("gateway", &gateway).unwrap();
    environment.set("keys", &keys).unwrap();
    let experiment = Experiment::parse_with(RUN, "run.toml", &environment).unwrap();
    let bindings = Bindings {
        environment,
        ledger: LedgerDir::Disabled,
        ..Bindings::default()
    };
    let journal = tokio::time::timeout(
        Duration::from_secs(60),
        run_experiment(experiment, bindings),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(journal.verdict, Verdict::Passed, "{:?}", journal.reasons);

    let seen = seen.lock().unwrap().clone();
    let refused: Vec<_> = seen
        .iter()
        .filter(|(_, _, s)| *s == 401 || *s == 404)
        .collect();
    assert!(refused.is_empty(), "{refused:?}");
    let subjects = |route: &str| -> std::collections::BTreeSet<Option<String>> {
        seen.iter()
            .filter(|(r, _, _)| r.starts_with(route))
            .map(|(_, s, _)| s.clone())
            .collect()
    };
    // The whoami calls: the probe, the fault, its undo, the rollback.
    let whoami = subjects("GET /whoami")
        .into_iter()
        .chain(subjects("POST /whoami"))
        .collect::<std::collections::BTreeSet<_>>();
    for who in [
        "ops:admin",
        "doer:customer",
        "undoer:customer",
        "rollback:customer",
    ] {
        assert!(
            whoami.contains(&Some(who.to_owned())),
            "{who} in {whoami:?}"
        );
    }
    // Orders: placed and read back by the four customers.
    let customers: Vec<_> = (1..=4)
        .map(|i| Some(format!("customer-{i}:customer")))
        .collect();
    let placed = subjects("POST /api/orders");
    assert!(
        !placed.is_empty() && placed.iter().all(|s| customers.contains(s)),
        "{placed:?}"
    );
    assert!(
        subjects("GET /api/orders/")
            .iter()
            .all(|s| customers.contains(s))
    );
    // Product reads: anonymous from the customers, the named client's token
    // from the surge.
    let products = subjects("GET /api/products");
    assert_eq!(
        products,
        [None, Some("flooding-client:customer".to_owned())].into()
    );
    let order_reads = seen
        .iter()
        .filter(|(r, _, s)| r.starts_with("GET /api/orders/") && *s == 200)
        .count();
    assert!(order_reads > 0, "orders were read back");
    // The journal shows no token.
    let journal = serde_json::to_string(&journal).unwrap();
    assert!(!journal.contains("eyJ"), "no JWT in the journal");
}

#[test]
fn the_shipped_experiments_name_their_keys() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/experiments");
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            // No keys from outside: the file's [target] names them.
            Experiment::load_with(&path, &Environment::default()).unwrap_or_else(|e| panic!("{e}"));
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(
                !text.contains("client_id") && !text.contains("X-Client-Id"),
                "{}",
                path.display()
            );
        }
    }
    let surge = Experiment::load(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/experiments/load-surge.toml"
    )))
    .unwrap();
    assert_eq!(
        surge.load.unwrap().subject.as_deref(),
        Some("steady-client")
    );
    let FaultKind::Load(flood) = &surge.method.faults[0].kind else {
        panic!("a load fault");
    };
    assert_eq!(flood.subject.as_deref(), Some("flooding-client"));
}
