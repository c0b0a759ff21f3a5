#![allow(clippy::unwrap_used)] // Helpers of the tests below: a failed unwrap is a failed test.

//! The fault admin API, in-process: off unless configured, never on the
//! public port, behind its token, and its faults reach the public API.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use faultline_shop::config::{Secret, ServeConfig};
use faultline_shop::roles::payments::PaymentsConfig;
use faultline_shop::{Application, RoleConfig};
use serde_json::json;

/// The fault admin token of these tests.
const TOKEN: &str = "in-process-fault-admin-token";

fn payments(fault_admin: bool) -> RoleConfig {
    let mut serve = ServeConfig::for_tests();
    if fault_admin {
        serve.fault_admin_addr = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
        serve.fault_admin_token = Some(Secret::parse(TOKEN).unwrap());
    }
    payments_with(serve)
}

fn payments_with(serve: ServeConfig) -> RoleConfig {
    RoleConfig::Payments(PaymentsConfig {
        serve,
        latency_median: Duration::from_millis(1),
        latency_p99: Duration::from_millis(2),
        decline_ratio: 0.0,
        seed: 1,
    })
}

async fn start(config: RoleConfig) -> (SocketAddr, Option<SocketAddr>) {
    faultline_signal::install_crypto_provider();
    let app = Application::build(config).await.unwrap();
    let addrs = (app.http_addr(), app.fault_admin_addr());
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    addrs
}

async fn authorize(http: &reqwest::Client, public: SocketAddr) -> (u16, Duration) {
    let started = Instant::now();
    let status = http
        .post(format!("http://{public}/api/payments/authorizations"))
        .json(&json!({ "order_id": uuid::Uuid::new_v4(), "amount_cents": 100 }))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16();
    (status, started.elapsed())
}

#[tokio::test]
async fn the_fault_admin_api_is_off_unless_configured() {
    let (_, admin) = start(payments(false)).await;
    assert_eq!(admin, None);
}

#[tokio::test]
async fn the_fault_admin_api_does_not_start_without_a_token() {
    let mut serve = ServeConfig::for_tests();
    serve.fault_admin_addr = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    let err = Application::build(payments_with(serve)).await.unwrap_err();
    let message = err.to_string();
    assert!(message.contains("FAULTLINE_FAULT_ADMIN_TOKEN"), "{message}");
}

#[tokio::test]
async fn calls_without_the_token_change_nothing() {
    let (public, admin) = start(payments(true)).await;
    let admin = admin.unwrap();
    let http = reqwest::Client::new();
    for authorization in [None, Some("Bearer not-the-token".to_owned())] {
        let mut request = http
            .post(format!("http://{admin}/faults"))
            .json(&json!({ "kind": "error_ratio", "ratio": 1.0 }));
        if let Some(value) = &authorization {
            request = request.header("authorization", value);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status().as_u16(), 401, "{authorization:?}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json"
        );
        assert!(
            response.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with(r#"Bearer realm="faultline-fault-admin""#)
        );
    }
    assert_eq!(authorize(&http, public).await.0, 201);
    let active: serde_json::Value = http
        .get(format!("http://{admin}/faults"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(active, json!([]));
}

#[tokio::test]
async fn faults_are_never_reachable_on_the_public_port() {
    let (public, admin) = start(payments(true)).await;
    assert!(admin.is_some());
    let http = reqwest::Client::new();
    let fault = json!({ "kind": "error_ratio", "ratio": 1.0 });
    let response = http
        .post(format!("http://{public}/faults"))
        .bearer_auth(TOKEN)
        .json(&fault)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 404);
    let listed = http
        .get(format!("http://{public}/faults"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status().as_u16(), 404);
    // The fault was not applied either.
    assert_eq!(authorize(&http, public).await.0, 201);
}

#[tokio::test]
async fn injected_faults_reach_the_public_api_until_cleared() {
    let (public, admin) = start(payments(true)).await;
    let admin = admin.unwrap();
    let http = reqwest::Client::new();

    let created = http
        .post(format!("http://{admin}/faults"))
        .bearer_auth(TOKEN)
        .json(&json!({ "kind": "latency", "latency_ms": 300 }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status().as_u16(), 201);
    let (status, took) = authorize(&http, public).await;
    assert_eq!(status, 201);
    assert!(took >= Duration::from_millis(300), "{took:?}");

    let created = http
        .post(format!("http://{admin}/faults"))
        .bearer_auth(TOKEN)
        .json(&json!({ "kind": "error_ratio", "ratio": 1.0, "duration": "1h" }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status().as_u16(), 201);
    assert_eq!(authorize(&http, public).await.0, 503);

    let active: serde_json::Value = http
        .get(format!("http://{admin}/faults"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(active.as_array().map(Vec::len), Some(2), "{active}");

    let cleared = http
        .delete(format!("http://{admin}/faults"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(cleared.status().as_u16(), 204);
    let (status, took) = authorize(&http, public).await;
    assert_eq!(status, 201);
    assert!(took < Duration::from_millis(300), "{took:?}");
}

#[tokio::test]
async fn malformed_faults_get_a_4xx_problem() {
    let (_, admin) = start(payments(true)).await;
    let admin = admin.unwrap();
    let http = reqwest::Client::new();
    for body in [
        json!({ "kind": "meteor" }),
        json!({ "kind": "error_ratio", "ratio": 2.0 }),
        json!({ "kind": "latency", "latency_ms": 10, "duration": "soon" }),
        json!({ "kind": "hold_db_connections", "connections": 2 }),
    ] {
        let response = http
            .post(format!("http://{admin}/faults"))
            .bearer_auth(TOKEN)
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        assert!((400..500).contains(&status), "{body}: {status}");
        assert_eq!(
            response.headers()["content-type"],
            "application/problem+json",
            "{body}"
        );
    }
}
