//! The foundation: the shop image runs, Prometheus scrapes it, and readiness
//! follows PostgreSQL.

use std::time::Duration;

use anyhow::{bail, ensure};
use faultline_tests::eventually;
use faultline_tests::postgres::{Postgres, TestDatabase};
use faultline_tests::stack::{Network, Prometheus, SHOP_ADMIN_PORT, Shop, prometheus_config};

use crate::{FOUNDATION_IMAGES, preflight};

/// Generous bounds: the machine has two noisy cores.
const READY_WITHIN: Duration = Duration::from_secs(30);

/// Polls readiness until it answers `want`.
async fn wait_for_readiness(shop: &Shop, want: u16) -> anyhow::Result<String> {
    eventually(
        &format!("{} /health/ready to answer {want}", shop.host),
        READY_WITHIN,
        || async {
            let (status, body) = shop.readiness().await?;
            ensure!(status == want, "answered {status}: {body}");
            Ok(body)
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn prometheus_scrapes_the_shop_container() -> anyhow::Result<()> {
    preflight(FOUNDATION_IMAGES).await?;
    let network = Network::new("prometheus_scrapes_the_shop_container");
    let pg = Postgres::start(&network, &network.host("postgres")).await?;
    let db = pg.create_database("scrape").await?;
    let database_url = pg.url_in_network(&db.name);
    let shop = Shop::start(
        &network,
        &network.host("shop"),
        "catalog",
        &[("DATABASE_URL", database_url)],
    )
    .await?;
    let config = prometheus_config(
        Duration::from_secs(1),
        &[(
            "faultline",
            vec![format!("{}:{SHOP_ADMIN_PORT}", shop.host)],
        )],
    );
    let prometheus = Prometheus::start(&network, &network.host("prometheus"), &config, &[]).await?;

    let up = eventually("up{job=\"faultline\"} == 1", READY_WITHIN, || async {
        let up = prometheus
            .client
            .query_scalar(r#"up{job="faultline"}"#)
            .await?;
        ensure!(up == 1.0, "up is {up}");
        Ok(up)
    })
    .await?;
    assert_eq!(up, 1.0);

    // What Prometheus scraped is the shop's own page: its build_info arrived.
    let build = prometheus
        .client
        .query(r#"build_info{job="faultline",service="catalog"}"#)
        .await?;
    assert_eq!(build.len(), 1, "{build:?}");
    assert_eq!(
        build[0].metric.get("version").map(String::as_str),
        Some(env!("CARGO_PKG_VERSION"))
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn readiness_waits_for_postgres_to_accept_the_connection() -> anyhow::Result<()> {
    preflight(FOUNDATION_IMAGES).await?;
    let network = Network::new("readiness_waits_for_postgres");
    let pg_host = network.host("postgres");
    let db_name = TestDatabase::unique_name("ready");
    let database_url = format!("postgres://postgres@{pg_host}:5432/{db_name}");

    // The shop starts first: no PostgreSQL exists yet, so it is live but not ready.
    let shop = Shop::start(
        &network,
        &network.host("shop"),
        "catalog",
        &[("DATABASE_URL", database_url.clone())],
    )
    .await?;
    let live = shop
        .metrics()
        .await
        .map(|page| page.value("build_info", &[("service", "catalog")]));
    assert_eq!(
        live?,
        Some(1.0),
        "the shop serves /metrics before it is ready"
    );
    let (status, body) = shop.readiness().await?;
    assert_eq!(status, 503, "ready without a database: {body}");
    assert!(
        body.contains("database"),
        "the reason names the database: {body}"
    );

    // PostgreSQL runs, but the shop's database does not exist yet: still not ready.
    let pg = Postgres::start(&network, &pg_host).await?;
    let (status, body) = shop.readiness().await?;
    assert_eq!(status, 503, "ready before its database exists: {body}");

    // Once PostgreSQL accepts the shop's connection, readiness turns true.
    faultline_tests::postgres::create_database(&pg.admin_url, &db_name).await?;
    let body = wait_for_readiness(&shop, 200).await?;
    assert!(body.contains(r#""database":"ok""#), "{body}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread")]
async fn readiness_fails_while_postgres_is_paused() -> anyhow::Result<()> {
    preflight(FOUNDATION_IMAGES).await?;
    let network = Network::new("readiness_fails_while_postgres_is_paused");
    let pg = Postgres::start(&network, &network.host("postgres")).await?;
    let db = pg.create_database("paused").await?;
    let database_url = pg.url_in_network(&db.name);
    let shop = Shop::start(
        &network,
        &network.host("shop"),
        "catalog",
        &[("DATABASE_URL", database_url)],
    )
    .await?;
    wait_for_readiness(&shop, 200).await?;

    pg.container.pause().await?;
    let paused = wait_for_readiness(&shop, 503).await;
    // Unpause before judging, so a failure does not leave a frozen container.
    pg.container.unpause().await?;
    let body = paused?;
    if !body.contains("database") {
        bail!("the 503 should name the database: {body}");
    }

    // And it recovers by itself once PostgreSQL answers again.
    wait_for_readiness(&shop, 200).await?;
    Ok(())
}
