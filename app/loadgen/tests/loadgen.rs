//! The load generator against an in-process stub of the public API.

// clippy.toml exempts `#[test]` functions only, not their helpers.
#![allow(clippy::unwrap_used)]

mod stub;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use clap::Parser;
use faultline_auth::{KeyDir, KeySet, Minter, Policy, Verifier};
use faultline_loadgen::{
    Config, Customers, LoadgenArgs, Mix, Mode, NoObserver, Report, Route, StoppedBy, Window,
    exit_code, run,
};
use stub::{Behaviour, Served};
use tokio_util::sync::CancellationToken;
use url::Url;

/// A key directory in a temporary directory: its current key's minter, and
/// a verifier of its JWKS (what the gateway loads).
fn keys() -> (tempfile::TempDir, Minter, Verifier) {
    let dir = tempfile::tempdir().unwrap();
    let keys = KeyDir::new(dir.path());
    keys.ensure().unwrap();
    let minter = Minter::new(keys.signing_key(None).unwrap());
    let jwks = std::fs::read_to_string(keys.jwks_path()).unwrap();
    let (set, _) = KeySet::from_jwks(&jwks).unwrap();
    (dir, minter, Verifier::new(set, Policy::default()))
}

fn config(target: Url) -> Config {
    let mut config = Config::new(target);
    config.seed = Some(1);
    config.window = Duration::from_millis(100);
    config
}

async fn run_to_end(config: Config) -> Report {
    run(config, CancellationToken::new(), NoObserver)
        .await
        .unwrap()
}

fn only(route: &str) -> Mix {
    let mut mix = Mix {
        list: 0,
        product: 0,
        checkout: 0,
        order: 0,
    };
    match route {
        stub::LIST => mix.list = 1,
        stub::PRODUCT => mix.product = 1,
        stub::CHECKOUT => mix.checkout = 1,
        _ => mix.order = 1,
    }
    mix
}

/// What the stub served on `route`: count and statuses.
fn served_on(served: &[Served], route: &str) -> (u64, BTreeMap<u16, u64>, u64) {
    let mut statuses = BTreeMap::new();
    let mut degraded = 0;
    let mut count = 0;
    for s in served.iter().filter(|s| s.route == route) {
        count += 1;
        *statuses.entry(s.status).or_default() += 1;
        degraded += u64::from(s.degraded);
    }
    (count, statuses, degraded)
}

#[tokio::test]
async fn counts_and_errors_match_what_the_stub_served() {
    let (target, stub) = stub::start(Behaviour {
        list_fail_every: Some(7),
        checkout_fail_every: Some(5),
        checkout_reject_every: Some(4),
        degraded_list: true,
        ..Behaviour::default()
    })
    .await;
    let mut config = config(target);
    config.requests = Some(400);
    config.concurrency = 4;
    config.retry_ratio = 0.2;
    config.mix = "list=50,product=20,checkout=20,order=10".parse().unwrap();
    let report = run_to_end(config).await;
    let served = stub.served();

    assert_eq!(report.stopped_by, StoppedBy::Requests);
    assert_eq!(report.planned, 400);
    assert_eq!(report.totals.count, served.len() as u64);
    assert_eq!(
        report.totals.count,
        400 + report.checkouts.retried,
        "every planned request plus the retries was sent"
    );
    assert!(
        served.iter().all(|s| s.traceparent_ok),
        "traceparent on every request"
    );
    assert!(
        served.iter().all(|s| !s.authorization),
        "no customers, no Authorization header"
    );
    assert!(
        report
            .acknowledged_orders
            .iter()
            .all(|o| o.subject.is_none())
    );

    for route in Route::ALL {
        let (count, statuses, degraded) = served_on(&served, route.template());
        let summary = &report.routes[&route];
        assert_eq!(summary.count, count, "{route}");
        assert_eq!(summary.status_codes, statuses, "{route}");
        assert_eq!(summary.degraded, degraded, "{route}");
        let fives: u64 = statuses.range(500..600).map(|(_, n)| n).sum();
        assert_eq!(summary.classes.s5xx, fives, "{route}");
        assert_eq!(summary.errors, fives, "only 5xx are errors here: {route}");
        assert!((summary.error_ratio - fives as f64 / count as f64).abs() < 1e-9);
        assert_eq!(summary.dropped, 0);
    }
    let list = &report.routes[&Route::ListProducts];
    assert!(list.errors > 0 && list.degraded > 0);
    let orders = &report.routes[&Route::CreateOrder];
    assert!(orders.status_codes.get(&409).is_some_and(|n| *n > 0));
    assert!(orders.status_codes.get(&503).is_some_and(|n| *n > 0));
    assert!(
        report.routes[&Route::GetOrder]
            .status_codes
            .contains_key(&200)
    );

    // Failed requests: exactly the ones the stub failed (fewer than the cap).
    let failed_at_stub: HashSet<(String, &str)> = served
        .iter()
        .filter(|s| s.status >= 500)
        .map(|s| (s.trace_id.clone().unwrap(), s.route))
        .collect();
    assert!(failed_at_stub.len() < 50);
    assert_eq!(report.failed_requests_total, failed_at_stub.len() as u64);
    let failed_in_report: HashSet<(String, &str)> = report
        .failed_requests
        .iter()
        .map(|f| (f.trace_id.clone(), f.route.template()))
        .collect();
    assert_eq!(failed_in_report, failed_at_stub);
    assert!(report.failed_requests.iter().all(|f| f.error == "5xx"));
    assert!(
        report
            .failed_requests
            .iter()
            .filter(|f| f.route == Route::CreateOrder)
            .all(
                |f| f.detail.as_deref() == Some("Unavailable: stub") && f.idempotency_key.is_some()
            )
    );

    // Idempotency: retries got the same order; every acknowledged order
    // exists exactly once at the stub.
    assert!(report.checkouts.retried > 0);
    assert!(report.checkouts.idempotency_checks > 0);
    assert_eq!(report.checkouts.idempotency_violations, 0);
    let created = stub.orders();
    let acked: Vec<&str> = report
        .acknowledged_orders
        .iter()
        .map(|o| o.order_id.as_str())
        .collect();
    assert_eq!(acked.len(), created.len());
    assert_eq!(
        acked.iter().copied().collect::<HashSet<_>>(),
        created.iter().map(String::as_str).collect::<HashSet<_>>()
    );
    assert!(
        report
            .acknowledged_orders
            .iter()
            .all(|o| o.status == "paid" && o.http_status == 201)
    );
    let keys: HashSet<_> = report
        .acknowledged_orders
        .iter()
        .map(|o| o.idempotency_key)
        .collect();
    assert_eq!(keys.len(), acked.len());
}

/// With `traceparent` off the services sample as for any client: no header
/// is sent, and a failure's report names no trace id it never sent.
#[tokio::test]
async fn without_traceparent_no_trace_context_is_sent() {
    let (target, stub) = stub::start(Behaviour {
        list_fail_every: Some(3),
        ..Behaviour::default()
    })
    .await;
    let mut config = config(target);
    config.requests = Some(30);
    config.mix = only(stub::LIST);
    config.traceparent = false;
    let report = run_to_end(config).await;
    let served = stub.served();
    assert_eq!(served.len(), 30);
    assert!(served.iter().all(|s| s.trace_id.is_none()), "{served:?}");
    assert!(
        !report.failed_requests.is_empty(),
        "every third listing fails"
    );
    assert!(report.failed_requests.iter().all(|f| f.trace_id.is_empty()));
}

#[tokio::test]
async fn customers_place_orders_and_read_back_their_own() {
    let (_dir, minter, verifier) = keys();
    let (target, stub) = stub::start(Behaviour {
        auth: Some(verifier),
        ..Behaviour::default()
    })
    .await;
    let mut config = config(target);
    config.requests = Some(300);
    config.concurrency = 4;
    config.retry_ratio = 0.2;
    config.mix = "list=20,product=20,checkout=40,order=20".parse().unwrap();
    config.customers = Some(Customers::new(minter, 5, "customer"));
    let report = run_to_end(config).await;
    let served = stub.served();

    // Order routes carry a good token; product reads none.
    let refused: Vec<_> = served.iter().filter(|s| s.status == 401).collect();
    assert!(refused.is_empty(), "{refused:?}");
    for s in &served {
        let order_route = s.route == stub::CHECKOUT || s.route == stub::ORDER;
        assert_eq!(s.authorization, order_route, "{s:?}");
        assert_eq!(s.subject.is_some(), order_route, "{s:?}");
    }
    // Orders are read back, each by the customer who placed it: a read with
    // another customer's token would be a 404.
    let reads = &report.routes[&Route::GetOrder];
    assert!(reads.count > 20, "{reads:?}");
    assert_eq!(reads.status_codes.keys().collect::<Vec<_>>(), [&200]);
    let owners = stub.owners();
    for s in served.iter().filter(|s| s.route == stub::ORDER) {
        let id = s.path.trim_start_matches("/api/orders/");
        assert_eq!(owners.get(id), s.subject.as_ref(), "{s:?}");
    }
    // The seed spreads the checkouts over every customer.
    let subjects: BTreeSet<&str> = served
        .iter()
        .filter(|s| s.route == stub::CHECKOUT)
        .filter_map(|s| s.subject.as_deref())
        .collect();
    assert_eq!(
        subjects,
        BTreeSet::from([
            "customer-1",
            "customer-2",
            "customer-3",
            "customer-4",
            "customer-5"
        ])
    );
    // Retries go as the same customer, so they are the same order.
    assert!(report.checkouts.idempotency_checks > 0);
    assert_eq!(report.checkouts.idempotency_violations, 0);
    // The report names who placed each order.
    assert_eq!(report.acknowledged_orders.len(), owners.len());
    for order in &report.acknowledged_orders {
        assert_eq!(order.subject.as_ref(), owners.get(&order.order_id));
    }
}

#[tokio::test]
async fn one_named_client_signs_every_request() {
    let (_dir, minter, verifier) = keys();
    let (target, stub) = stub::start(Behaviour {
        auth: Some(verifier),
        ..Behaviour::default()
    })
    .await;
    let mut config = config(target);
    config.requests = Some(100);
    config.concurrency = 2;
    config.customers = Some(Customers::one(minter, "flooding-client"));
    let report = run_to_end(config).await;

    let served = stub.served();
    assert_eq!(served.len() as u64, report.totals.count);
    assert!(
        served
            .iter()
            .all(|s| s.subject.as_deref() == Some("flooding-client")),
        "every request, product reads included, as the one client"
    );
    assert_eq!(report.totals.errors, 0);
    assert!(
        !report.routes[&Route::GetOrder]
            .status_codes
            .contains_key(&404)
    );
}

#[tokio::test]
async fn customers_are_checked_before_the_first_request() {
    let (target, stub) = stub::start(Behaviour::default()).await;
    let (_dir, minter, _) = keys();
    let mut config = config(target);
    config.requests = Some(10);
    config.customers = Some(Customers::new(minter, 0, "customer"));
    let err = run(config, CancellationToken::new(), NoObserver)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("customers.count"), "{err}");
    assert!(stub.served().is_empty());
}

#[tokio::test]
async fn retries_with_the_same_key_get_the_same_order() {
    let (target, stub) = stub::start(Behaviour::default()).await;
    let mut config = config(target);
    config.mix = only(stub::CHECKOUT);
    config.retry_ratio = 1.0;
    config.requests = Some(20);
    config.concurrency = 2;
    let report = run_to_end(config).await;

    let c = &report.checkouts;
    assert_eq!(
        (c.retried, c.idempotency_checks, c.idempotency_violations),
        (20, 20, 0)
    );
    assert_eq!(c.acknowledged, 20);
    assert_eq!(stub.orders().len(), 20);
    // The stub saw every key exactly twice, with the same body.
    let mut per_key: BTreeMap<String, u32> = BTreeMap::new();
    for s in stub.served() {
        *per_key.entry(s.idempotency_key.unwrap()).or_default() += 1;
    }
    assert_eq!(per_key.len(), 20);
    assert!(per_key.values().all(|n| *n == 2));
}

#[tokio::test]
async fn a_stub_that_ignores_idempotency_keys_is_caught() {
    let (target, _stub) = stub::start(Behaviour {
        break_idempotency: true,
        ..Behaviour::default()
    })
    .await;
    let mut config = config(target);
    config.mix = only(stub::CHECKOUT);
    config.retry_ratio = 1.0;
    config.requests = Some(10);
    let report = run_to_end(config).await;

    let c = &report.checkouts;
    assert_eq!((c.idempotency_checks, c.idempotency_violations), (10, 10));
    assert_eq!(c.violations.len(), 10);
    let v = &c.violations[0];
    assert_ne!(Some(&v.first_order_id), v.retry_order_id.as_ref());
    assert_eq!(v.retry_status, 201);
    assert!(report.summary_text().contains("10 idempotency violations"));
}

#[tokio::test]
async fn open_loop_keeps_roughly_to_its_rate() {
    let (target, _stub) = stub::start(Behaviour::default()).await;
    let mut config = config(target);
    config.mode = Mode::Open { rate: 200.0 };
    config.duration = Some(Duration::from_millis(500));
    config.concurrency = 16;
    let report = run_to_end(config).await;

    assert_eq!(report.stopped_by, StoppedBy::Duration);
    assert!(report.elapsed_s >= 0.5, "{}", report.elapsed_s);
    assert_eq!(
        report.planned,
        report.totals.count + report.totals.dropped - report.checkouts.retried
    );
    assert!(
        (100.0..=300.0).contains(&report.achieved_rate),
        "achieved {} req/s",
        report.achieved_rate
    );
    assert!(
        (50..=150).contains(&report.totals.count),
        "{}",
        report.totals.count
    );
    assert_eq!(report.totals.errors, 0);
}

#[tokio::test]
async fn open_loop_drops_what_it_cannot_send_on_time() {
    let (target, _stub) = stub::start(Behaviour {
        product_delay: Some(Duration::from_millis(200)),
        ..Behaviour::default()
    })
    .await;
    let mut config = config(target);
    config.mode = Mode::Open { rate: 100.0 };
    config.mix = only(stub::PRODUCT);
    config.requests = Some(20);
    config.concurrency = 1;
    let report = run_to_end(config).await;

    let products = &report.routes[&Route::GetProduct];
    assert_eq!(report.planned, 20);
    assert_eq!(products.count + products.dropped, 20);
    assert!(products.dropped > 0, "{products:?}");
    // Latency counts from the intended send time: at least the server's delay.
    assert!(products.latency_ms.max >= 200.0);
}

#[tokio::test]
async fn timeouts_and_connection_errors_are_errors_with_trace_ids() {
    let (target, stub) = stub::start(Behaviour {
        product_delay: Some(Duration::from_secs(5)),
        ..Behaviour::default()
    })
    .await;
    let mut config = config(target);
    config.mix = only(stub::PRODUCT);
    config.timeout = Duration::from_millis(50);
    config.requests = Some(4);
    config.concurrency = 4;
    let report = run_to_end(config).await;

    let products = &report.routes[&Route::GetProduct];
    assert_eq!(
        (products.count, products.classes.timeout, products.errors),
        (4, 4, 4)
    );
    assert!((products.error_ratio - 1.0).abs() < 1e-9);
    let received: HashSet<String> = stub
        .served()
        .into_iter()
        .filter_map(|s| s.trace_id)
        .collect();
    assert_eq!(report.failed_requests.len(), 4);
    for failed in &report.failed_requests {
        assert_eq!(failed.error, "timeout");
        assert_eq!(failed.status, None);
        assert!(received.contains(&failed.trace_id), "{failed:?}");
    }

    // Nothing listens on a port just released.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = Url::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
    drop(listener);
    let mut config = self::config(closed);
    config.requests = Some(3);
    config.concurrency = 1;
    let report = run_to_end(config).await;
    assert_eq!(report.totals.classes.connect_error, 3);
    assert_eq!(report.totals.errors, 3);
    assert_eq!(report.failed_requests[0].error, "connect_error");
    assert_eq!(
        exit_code(&report, Some(0.5)),
        std::process::ExitCode::FAILURE
    );
    assert_eq!(exit_code(&report, None), std::process::ExitCode::SUCCESS);
}

#[tokio::test]
async fn windows_add_up_and_cancellation_stops_an_endless_run() {
    let (target, _stub) = stub::start(Behaviour {
        list_fail_every: Some(3),
        ..Behaviour::default()
    })
    .await;
    let mut config = config(target);
    config.window = Duration::from_millis(50);
    config.keep_windows = true;
    config.concurrency = 2;
    let cancel = CancellationToken::new();
    let seen: Arc<Mutex<Vec<Window>>> = Arc::default();
    let observer = {
        let (cancel, seen) = (cancel.clone(), Arc::clone(&seen));
        move |w: &Window| {
            seen.lock().unwrap().push(w.clone());
            if w.index == 2 {
                cancel.cancel();
            }
        }
    };
    let report = run(config, cancel, observer).await.unwrap();

    assert_eq!(report.stopped_by, StoppedBy::Cancelled);
    let seen = seen.lock().unwrap().clone();
    assert!(seen.len() >= 3);
    assert_eq!(seen, report.windows);
    let indexes: Vec<u64> = seen.iter().map(|w| w.index).collect();
    assert_eq!(indexes, (0..seen.len() as u64).collect::<Vec<_>>());
    let count: u64 = seen.iter().map(|w| w.totals.count).sum();
    let errors: u64 = seen.iter().map(|w| w.totals.errors).sum();
    assert_eq!(count, report.totals.count);
    assert_eq!(errors, report.totals.errors);
    let last = seen.last().unwrap();
    assert_eq!(
        (last.cumulative_requests, last.cumulative_errors),
        (report.totals.count, report.totals.errors)
    );
    assert!(report.totals.errors > 0);
}

#[tokio::test]
async fn the_same_seed_replays_the_same_plan() {
    async fn plan(seed: u64) -> Vec<String> {
        let (_dir, minter, verifier) = keys();
        let (target, stub) = stub::start(Behaviour {
            auth: Some(verifier),
            ..Behaviour::default()
        })
        .await;
        let mut config = config(target);
        config.seed = Some(seed);
        config.requests = Some(150);
        config.concurrency = 1;
        config.retry_ratio = 0.3;
        config.customers = Some(Customers::new(minter, 10, "customer"));
        let report = run_to_end(config).await;
        assert_eq!(report.seed, seed);
        // Order ids are fresh each run; everything else, the customers
        // included, must repeat.
        stub.served()
            .into_iter()
            .map(|s| {
                let what = if s.route == stub::ORDER {
                    s.route.to_owned()
                } else {
                    s.path
                };
                format!("{what} as {:?}", s.subject)
            })
            .collect()
    }
    let first = plan(42).await;
    assert_eq!(first, plan(42).await);
    assert_ne!(first, plan(43).await);
}

#[tokio::test]
async fn the_json_report_round_trips() {
    let (target, _stub) = stub::start(Behaviour {
        checkout_fail_every: Some(2),
        ..Behaviour::default()
    })
    .await;
    let mut config = config(target);
    config.requests = Some(60);
    // A slot for every request: an open loop drops a request that finds
    // every slot taken, and on a busy machine it dropped enough of the plan
    // (seed 1) to leave fewer than two checkouts, so no 503 to report.
    config.concurrency = 60;
    config.keep_windows = true;
    config.mode = Mode::Open { rate: 1000.0 };
    let report = run_to_end(config).await;
    assert_eq!(
        report
            .routes
            .values()
            .map(|route| route.dropped)
            .sum::<u64>(),
        0
    );

    let json = serde_json::to_string_pretty(&report).unwrap();
    let back: Report = serde_json::from_str(&json).unwrap();
    assert_eq!(back, report);
    let value: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(value["schema"], 1);
    assert_eq!(value["mode"]["kind"], "open");
    assert!(
        value["routes"]["POST /api/orders"]["classes"]["5xx"]
            .as_u64()
            .unwrap()
            > 0
    );
    assert!(value["routes"]["GET /api/products"]["latency_ms"]["p99"].is_number());
    assert!(value["checkouts"]["idempotency_violations"].is_u64());
    assert!(value["failed_requests"][0]["trace_id"].is_string());
    assert!(value["acknowledged_orders"].is_array());
    assert!(report.summary_text().contains("POST /api/orders"));
}

#[derive(Debug, Parser)]
struct Cli {
    #[command(flatten)]
    args: LoadgenArgs,
}

const CHILD: &str = "FAULTLINE_LOADGEN_TEST_CHILD";

/// Runs itself in a child process with the variables set (the environment
/// of this process cannot be changed without `unsafe`).
#[test]
fn flags_come_from_the_environment() {
    if std::env::var_os(CHILD).is_some() {
        let args = Cli::try_parse_from(["loadgen"]).unwrap().args;
        assert_eq!(args.target.as_str(), "http://gateway:9999/");
        assert_eq!(args.rate, Some(25.5));
        assert_eq!(args.concurrency, 7);
        assert_eq!(args.duration, Some(Duration::from_secs(120)));
        assert_eq!(args.requests, Some(1000));
        assert_eq!(args.timeout, Duration::from_millis(750));
        assert_eq!(args.seed, Some(5));
        assert_eq!(args.mix.to_string(), "list=1,product=0,checkout=1,order=0");
        assert_eq!(args.retry_ratio, 0.5);
        assert_eq!(
            args.keys.as_deref(),
            Some(std::path::Path::new("/run/keys"))
        );
        assert_eq!(args.customers, 12);
        assert_eq!(args.subject_prefix, "steady-client");
        assert!(args.authenticated_reads);
        assert!(args.json && args.quiet && args.timeline);
        assert_eq!(args.max_error_ratio, Some(0.01));
        return;
    }
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["flags_come_from_the_environment", "--exact", "--nocapture"])
        .env(CHILD, "1")
        .env("FAULTLINE_LOADGEN_TARGET", "http://gateway:9999")
        .env("FAULTLINE_LOADGEN_RATE", "25.5")
        .env("FAULTLINE_LOADGEN_CONCURRENCY", "7")
        .env("FAULTLINE_LOADGEN_DURATION", "2m")
        .env("FAULTLINE_LOADGEN_REQUESTS", "1000")
        .env("FAULTLINE_LOADGEN_TIMEOUT", "750ms")
        .env("FAULTLINE_LOADGEN_SEED", "5")
        .env("FAULTLINE_LOADGEN_MIX", "list=1,checkout=1")
        .env("FAULTLINE_LOADGEN_RETRY_RATIO", "0.5")
        .env("FAULTLINE_LOADGEN_KEYS", "/run/keys")
        .env("FAULTLINE_LOADGEN_CUSTOMERS", "12")
        .env("FAULTLINE_LOADGEN_SUBJECT_PREFIX", "steady-client")
        .env("FAULTLINE_LOADGEN_AUTHENTICATED_READS", "true")
        .env("FAULTLINE_LOADGEN_JSON", "true")
        .env("FAULTLINE_LOADGEN_QUIET", "true")
        .env("FAULTLINE_LOADGEN_TIMELINE", "true")
        .env("FAULTLINE_LOADGEN_MAX_ERROR_RATIO", "0.01")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("1 passed"),
        "the child ran the test: {stdout}"
    );
}
