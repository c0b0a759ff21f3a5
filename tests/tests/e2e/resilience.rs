//! Resilience, proven with the real stack: a replica killed under load, a slow
//! payments provider, the catalog down, and a flood of requests.

use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use faultline_loadgen::{Config, Mode, NoObserver, Report};
use faultline_tests::eventually;
use faultline_tests::shop_stack::{ShopStack, StackOptions};
use faultline_tests::stack::Shop;
use serde_json::{Value, json};
use testcontainers::bollard::query_parameters::KillContainerOptionsBuilder;
use testcontainers::core::client::docker_client_instance;
use tokio_util::sync::CancellationToken;

use crate::{SHOP_IMAGES, preflight};

const WITHIN: Duration = Duration::from_secs(30);

fn load(stack: &ShopStack, rate: f64, duration: Duration) -> anyhow::Result<Config> {
    let mut config = Config::new(stack.gateway_url().parse()?);
    config.customers = Some(stack.customers(20)?);
    config.mode = Mode::Open { rate };
    config.duration = Some(duration);
    config.seed = Some(11);
    Ok(config)
}

async fn run_load(config: Config) -> anyhow::Result<Report> {
    Ok(faultline_loadgen::run(config, CancellationToken::new(), NoObserver).await?)
}

/// Each acknowledged order exists exactly once.
async fn assert_no_order_lost_or_doubled(stack: &ShopStack, report: &Report) -> anyhow::Result<()> {
    let db = stack.db().await?;
    for order in &report.acknowledged_orders {
        let count: i64 = sqlx::query_scalar("SELECT count(*) FROM orders WHERE id = $1::uuid")
            .bind(&order.order_id)
            .fetch_one(&db)
            .await?;
        ensure!(count == 1, "order {} exists {count} times", order.order_id);
    }
    let keys: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT idempotency_key FROM orders GROUP BY 1 HAVING count(*) > 1) d",
    )
    .fetch_one(&db)
    .await?;
    ensure!(
        keys == 0,
        "{keys} idempotency keys have more than one order"
    );
    Ok(())
}

async fn metric(shop: &Shop, name: &str, labels: &[(&str, &str)]) -> anyhow::Result<f64> {
    shop.metrics()
        .await?
        .value(name, labels)
        .with_context(|| format!("{} renders no {name}{labels:?}", shop.host))
}

#[tokio::test(flavor = "multi_thread")]
async fn killing_one_of_three_orders_replicas_fails_no_read_and_loses_no_order()
-> anyhow::Result<()> {
    preflight(SHOP_IMAGES).await?;
    let stack = ShopStack::start(
        "replica_kill",
        StackOptions {
            orders_replicas: 3,
            ..StackOptions::default()
        },
    )
    .await?;
    let gateway = &stack.gateway;
    assert_eq!(
        metric(gateway, "replicas_desired", &[("peer_service", "orders")]).await?,
        3.0
    );

    let traffic = tokio::spawn(run_load(load(&stack, 30.0, Duration::from_secs(12))?));
    // Let traffic flow to all three, then kill one outright.
    eventually("orders traffic on every replica", WITHIN, || async {
        for replica in &stack.orders {
            let page = replica.metrics().await?;
            let served: f64 = page
                .find("http_server_request_duration_seconds_count", &[])
                .map(|s| s.value)
                .sum();
            ensure!(served > 0.0, "{} has served nothing yet", replica.host);
        }
        Ok(())
    })
    .await?;
    let victim = &stack.orders[1];
    let docker = docker_client_instance().await?;
    docker
        .kill_container(
            victim.container.id(),
            Some(
                KillContainerOptionsBuilder::default()
                    .signal("SIGKILL")
                    .build(),
            ),
        )
        .await?;
    let killed_at = Instant::now();

    // The gateway ejects the dead replica.
    eventually("the dead replica to be ejected", WITHIN, || async {
        let ejected = metric(
            gateway,
            "upstream_endpoints",
            &[("peer_service", "orders"), ("state", "ejected")],
        )
        .await?;
        ensure!(ejected >= 1.0, "ejected = {ejected}");
        Ok(())
    })
    .await?;
    let ejected_after = killed_at.elapsed();
    let report = traffic.await??;

    // No read failed: every GET answered.
    for (route, summary) in &report.routes {
        if route.template().starts_with("GET") {
            ensure!(
                summary.errors == 0,
                "{} had {} errors: {:#?}",
                route.template(),
                summary.errors,
                report.failed_requests
            );
        }
    }
    assert!(
        report.checkouts.acknowledged > 0,
        "no checkout was acknowledged"
    );
    assert_eq!(report.checkouts.idempotency_violations, 0);
    assert_no_order_lost_or_doubled(&stack, &report).await?;
    eprintln!("replica ejected {ejected_after:?} after the kill was seen");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_payments_keep_checkout_fast_open_the_circuit_and_every_order_settles()
-> anyhow::Result<()> {
    preflight(SHOP_IMAGES).await?;
    let stack = ShopStack::start(
        "payments_latency",
        StackOptions {
            fault_admin: true,
            ..StackOptions::default()
        },
    )
    .await?;
    let http = stack.customer("e2e-customer")?;
    let payments_admin = stack
        .payments
        .fault_admin_url
        .clone()
        .context("fault admin")?;
    let admin_token = stack
        .fault_admin_token
        .clone()
        .context("fault admin token")?;
    let injected = http
        .post(format!("{payments_admin}/faults"))
        .bearer_auth(&admin_token)
        .json(&json!({ "kind": "latency", "latency_ms": 800 }))
        .send()
        .await?;
    assert_eq!(injected.status().as_u16(), 201);

    let mut config = load(&stack, 15.0, Duration::from_secs(8))?;
    config.mix = "list=20,product=10,checkout=70".parse()?;
    let report = run_load(config).await?;
    let orders = &stack.orders[0];
    let circuit = metric(
        orders,
        "resilience_circuit_state",
        &[("peer_service", "payments")],
    )
    .await?;
    assert_eq!(circuit, 2.0, "the circuit to payments is open");

    let checkout = report
        .routes
        .iter()
        .find(|(route, _)| route.template() == "POST /api/orders")
        .map(|(_, summary)| summary)
        .context("no checkout in the report")?;
    assert!(checkout.count > 20, "{}", checkout.count);
    assert!(
        checkout.latency_ms.p99 < 500.0,
        "checkout p99 {} ms with payments 800 ms slow",
        checkout.latency_ms.p99
    );
    assert_eq!(checkout.errors, 0, "{:#?}", report.failed_requests);
    let pending = report
        .acknowledged_orders
        .iter()
        .filter(|order| order.status == "payment_pending")
        .count();
    assert!(pending > 0, "no order came back payment_pending");
    assert_no_order_lost_or_doubled(&stack, &report).await?;

    // The fault clears; trial calls close the circuit again.
    let cleared = http
        .delete(format!("{payments_admin}/faults"))
        .bearer_auth(&admin_token)
        .send()
        .await?;
    assert_eq!(cleared.status().as_u16(), 204);
    eventually("the circuit to close", WITHIN, || async {
        let response = http
            .post(format!("{}/api/orders", stack.gateway_url()))
            .header("Idempotency-Key", uuid::Uuid::new_v4().to_string())
            .json(&json!({ "items": [{ "product_id": 1, "quantity": 1 }] }))
            .send()
            .await?;
        ensure!(
            response.status().is_success(),
            "checkout answered {}",
            response.status()
        );
        let state = metric(
            orders,
            "resilience_circuit_state",
            &[("peer_service", "payments")],
        )
        .await?;
        ensure!(state == 0.0, "circuit state {state}");
        Ok(())
    })
    .await?;

    // And the worker settles every pending order.
    let db = stack.db().await?;
    eventually("every order to settle", Duration::from_secs(60), || async {
        let pending: i64 =
            sqlx::query_scalar("SELECT count(*) FROM orders WHERE status = 'payment_pending'")
                .fetch_one(&db)
                .await?;
        ensure!(pending == 0, "{pending} orders still payment_pending");
        Ok(())
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn with_the_catalog_down_the_product_list_is_served_stale() -> anyhow::Result<()> {
    preflight(SHOP_IMAGES).await?;
    let stack = ShopStack::start("catalog_down", StackOptions::default()).await?;
    let http = faultline_tests::http_client()?;
    let url = format!("{}/api/products", stack.gateway_url());
    let fresh: Value = http
        .get(&url)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    http.get(format!("{url}/1"))
        .send()
        .await?
        .error_for_status()?;

    stack.catalog.container.stop().await?;
    let mut ok = 0;
    let mut failures = Vec::new();
    let mut worst = Duration::ZERO;
    // Whether each answer was marked stale, in order.
    let mut marked = Vec::new();
    // 50 requests per second for two seconds: under the gateway's rate limit.
    let mut pace = tokio::time::interval(Duration::from_millis(20));
    for _ in 0..100 {
        pace.tick().await;
        let started = Instant::now();
        let response = http.get(&url).send().await?;
        worst = worst.max(started.elapsed());
        if !response.status().is_success() {
            failures.push(format!("{}: {}", response.status(), response.text().await?));
            continue;
        }
        marked.push(
            response
                .headers()
                .get("x-degraded")
                .and_then(|v| v.to_str().ok())
                == Some("stale-catalog"),
        );
        let served: Value = response.json().await?;
        assert_eq!(served, fresh);
        ok += 1;
    }
    assert!(
        ok >= 99,
        "availability {ok}/100 with the catalog down: {failures:?}"
    );
    // Within the cache's TTL (1 s) answers are still fresh copies; after it,
    // every one is the stale copy, marked. The loop lasts about 2 s.
    let first_stale = marked
        .iter()
        .position(|stale| *stale)
        .context("no answer was marked stale")?;
    assert!(
        marked[first_stale..].iter().all(|stale| *stale),
        "a fresh answer after a stale one: {marked:?}"
    );
    assert!(
        marked.len() - first_stale >= 30,
        "only {} of {} answers were stale: {marked:?}",
        marked.len() - first_stale,
        marked.len()
    );
    let detail = http.get(format!("{url}/1")).send().await?;
    let detail_status = detail.status().as_u16();
    let detail_degraded = detail.headers().get("x-degraded").cloned();
    assert_eq!(detail_status, 200, "{}", detail.text().await?);
    assert_eq!(
        detail_degraded.as_ref().and_then(|v| v.to_str().ok()),
        Some("stale-catalog")
    );

    // What was never cached fails fast, as a problem.
    let started = Instant::now();
    let missing = http.get(format!("{url}/7")).send().await?;
    assert_eq!(missing.status().as_u16(), 503);
    assert_eq!(
        missing.headers()["content-type"],
        "application/problem+json"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let degraded = metric(
        &stack.gateway,
        "degraded_responses_total",
        &[("reason", "stale_catalog")],
    )
    .await?;
    let stale_answers = marked.iter().filter(|stale| **stale).count() + 1;
    assert!(
        degraded >= stale_answers as f64,
        "degraded_responses_total {degraded} < {stale_answers} stale answers"
    );
    eprintln!("slowest answer with the catalog down: {worst:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn a_flood_is_rate_limited_while_another_client_keeps_its_latency() -> anyhow::Result<()> {
    preflight(SHOP_IMAGES).await?;
    let stack = ShopStack::start(
        "rate_limit",
        StackOptions {
            gateway_env: vec![
                ("FAULTLINE_RATE_LIMIT_PER_SECOND", "20".into()),
                ("FAULTLINE_RATE_LIMIT_BURST", "20".into()),
            ],
            ..StackOptions::default()
        },
    )
    .await?;
    // Two clients: two subjects, each with its own quota.
    let calm_client = stack.customer("calm")?;
    let http = stack.customer("flood")?;
    let url = format!("{}/api/products/1", stack.gateway_url());
    let calm = |http: reqwest::Client, url: String| async move {
        let mut latencies = Vec::new();
        // A steady 20 requests per second, under the limit.
        let mut pace = tokio::time::interval(Duration::from_millis(50));
        for _ in 0..15 {
            pace.tick().await;
            let started = Instant::now();
            let response = http.get(&url).send().await?;
            ensure!(
                response.status().is_success(),
                "calm client got {}",
                response.status()
            );
            latencies.push(started.elapsed());
        }
        latencies.sort();
        Ok::<_, anyhow::Error>(latencies[latencies.len() - 1])
    };
    let baseline = calm(calm_client.clone(), url.clone()).await?;

    let flood = (0..300).map(|_| {
        let http = http.clone();
        let url = url.clone();
        async move {
            let response = http.get(&url).send().await?;
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            Ok::<_, anyhow::Error>((response.status().as_u16(), retry_after))
        }
    });
    let (flooded, during) = tokio::join!(
        futures::future::join_all(flood),
        calm(calm_client.clone(), url.clone())
    );
    let during = during?;
    let mut limited = 0;
    for result in flooded {
        let (status, retry_after) = result?;
        ensure!(status == 200 || status == 429, "the flood got {status}");
        if status == 429 {
            limited += 1;
            ensure!(retry_after.is_some(), "a 429 without Retry-After");
        }
    }
    assert!(
        limited >= 200,
        "only {limited} of 300 flood requests were limited"
    );
    // Generous: the calm client's worst latency stays in its normal range.
    let bound = (baseline * 5).max(Duration::from_millis(500));
    assert!(
        during <= bound,
        "calm client's worst {during:?} vs baseline {baseline:?}"
    );
    let rejected = metric(
        &stack.gateway,
        "resilience_rejections_total",
        &[("reason", "rate_limited")],
    )
    .await?;
    assert!(rejected >= f64::from(limited), "{rejected}");
    Ok(())
}
