#![allow(clippy::unwrap_used)] // Helpers of the tests below: a failed unwrap is a failed test.

//! The gateway's catalog cache, in-process against a stub catalog: a miss
//! storm reaches the catalog once per path, and without Redis every read is
//! answered from the local level or the catalog.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::routing::get;
use clap::Parser;
use faultline_shop::Application;
use faultline_shop::cli::{Cli, Command};

/// A catalog that answers every product once `open` says so, counting the
/// calls.
async fn stub_catalog(open: tokio::sync::watch::Receiver<bool>) -> (SocketAddr, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let counted = calls.clone();
    let app = axum::Router::new().route(
        "/api/products/{id}",
        get(move |axum::extract::Path(id): axum::extract::Path<i64>| {
            let counted = counted.clone();
            let mut open = open.clone();
            async move {
                counted.fetch_add(1, Ordering::SeqCst);
                let _ = open.wait_for(|open| *open).await;
                axum::Json(serde_json::json!({
                    "id": id, "sku": "SKU", "name": "x", "price_cents": 100, "stock": 5
                }))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, calls)
}

/// A gateway in front of `catalog`: its public and admin addresses.
async fn gateway(catalog: SocketAddr, extra: &[&str]) -> (SocketAddr, SocketAddr) {
    faultline_signal::install_crypto_provider();
    let catalog = format!("http://{catalog}");
    let key = faultline_auth::SigningKey::generate("test").unwrap();
    let jwks = serde_json::json!({"keys": [key.public_jwk().unwrap()]}).to_string();
    let mut args = vec![
        "faultline-shop",
        "gateway",
        "--http-addr",
        "127.0.0.1:0",
        "--admin-addr",
        "127.0.0.1:0",
        "--catalog-urls",
        &catalog,
        // Nothing listens there; these tests never check out.
        "--orders-urls",
        "http://127.0.0.1:1",
        "--auth-jwks",
        &jwks,
    ];
    args.extend_from_slice(extra);
    let command = Cli::try_parse_from(args).unwrap().command;
    assert!(matches!(command, Command::Role(_)), "{command:?}");
    let Command::Role(config) = command else {
        unreachable!()
    };
    let app = Application::build(*config).await.unwrap();
    let addrs = (app.http_addr(), app.admin_addr());
    tokio::spawn(app.run_until_stopped(std::future::pending()));
    addrs
}

/// The gateway's count of local cache misses, from its metrics.
async fn local_misses(admin: SocketAddr) -> f64 {
    let page = reqwest::get(format!("http://{admin}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    page.lines()
        .find_map(|line| {
            line.strip_prefix(r#"catalog_cache_lookups_total{level="local",result="miss"} "#)
        })
        .map_or(0.0, |value| value.trim().parse().unwrap())
}

#[tokio::test]
async fn a_miss_storm_reaches_the_catalog_once_per_path() {
    // The catalog holds its answers until every read below has missed the
    // cache: all of them arrive while the first fetches run.
    let (open, opened) = tokio::sync::watch::channel(false);
    let (catalog, calls) = stub_catalog(opened).await;
    let (gateway, admin) = gateway(catalog, &[]).await;
    let http = reqwest::Client::new();
    let mut reads = tokio::task::JoinSet::new();
    for i in 0..20 {
        let http = http.clone();
        let path = if i % 2 == 0 { 1 } else { 2 };
        reads.spawn(async move {
            http.get(format!("http://{gateway}/api/products/{path}"))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        });
    }
    let until = Instant::now() + Duration::from_secs(10);
    while local_misses(admin).await < 20.0 {
        assert!(
            Instant::now() < until,
            "the reads never reached the gateway"
        );
        tokio::task::yield_now().await;
    }
    open.send(true).unwrap();
    let statuses = reads.join_all().await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(calls.load(Ordering::SeqCst), 2, "one fetch per path");
}

#[tokio::test]
async fn with_redis_unreachable_reads_never_fail() {
    let (_open, opened) = tokio::sync::watch::channel(true);
    let (catalog, calls) = stub_catalog(opened).await;
    // Nothing listens on port 1: every Redis call fails, then the breaker opens.
    let (gateway, _) = gateway(
        catalog,
        &[
            "--redis-url",
            "redis://127.0.0.1:1",
            "--catalog-cache-ttl",
            "0s",
        ],
    )
    .await;
    let http = reqwest::Client::new();
    for i in 0..30 {
        let response = http
            .get(format!("http://{gateway}/api/products/{}", i % 3))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "read {i}");
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        30,
        "every read asked the catalog"
    );
}
