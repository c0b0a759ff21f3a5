//! Stock never oversells: proptest draws stock levels and batches of
//! concurrent reservations (some released again at once), runs each batch
//! against a real catalog and PostgreSQL, and checks the books balance.

use std::time::Duration;

use anyhow::Context;
use faultline_shop::config::{DatabaseConfig, ServeConfig};
use faultline_shop::roles::catalog::CatalogConfig;
use faultline_shop::{Application, RoleConfig};
use faultline_tests::eventually;
use faultline_tests::postgres::Postgres;
use faultline_tests::stack::Network;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::json;

use crate::preflight;

/// One drawn reservation: how many units, and whether to release it right after.
type Draw = (i64, bool);

async fn check_batch(
    http: &reqwest::Client,
    catalog: &str,
    db: &sqlx::PgPool,
    stock: i32,
    draws: &[Draw],
) -> anyhow::Result<()> {
    let product_id: i64 = sqlx::query_scalar(
        "INSERT INTO products (sku, name, price_cents, stock) VALUES ($1, 'proptest', 100, $2) RETURNING id",
    )
    .bind(uuid::Uuid::new_v4().to_string())
    .bind(stock)
    .fetch_one(db)
    .await?;
    let attempts = draws.iter().map(|&(quantity, release)| async move {
        let order_id = uuid::Uuid::new_v4();
        let response = http
            .post(format!("{catalog}/api/reservations"))
            .json(&json!({ "order_id": order_id, "items": [{ "product_id": product_id, "quantity": quantity }] }))
            .send()
            .await?;
        let status = response.status().as_u16();
        anyhow::ensure!(status == 201 || status == 409, "reservation answered {status}");
        let reserved = status == 201;
        if reserved && release {
            let released = http
                .delete(format!("{catalog}/api/reservations/{order_id}"))
                .send()
                .await?;
            anyhow::ensure!(released.status().as_u16() == 204, "release answered {}", released.status());
            return Ok(0);
        }
        Ok(if reserved { quantity } else { 0 })
    });
    let kept: i64 = futures::future::try_join_all(attempts)
        .await?
        .into_iter()
        .sum();
    let left: i32 = sqlx::query_scalar("SELECT stock FROM products WHERE id = $1")
        .bind(product_id)
        .fetch_one(db)
        .await?;
    let held: i64 = sqlx::query_scalar(
        "SELECT COALESCE(sum(quantity), 0) FROM reservations WHERE product_id = $1 AND status = 'reserved'",
    )
    .bind(product_id)
    .fetch_one(db)
    .await?;
    anyhow::ensure!(left >= 0, "stock went negative: {left}");
    anyhow::ensure!(
        held == kept,
        "reservations hold {held}, callers were told {kept}"
    );
    anyhow::ensure!(
        i64::from(left) + kept == i64::from(stock),
        "stock {stock} = left {left} + kept {kept} does not balance"
    );
    Ok(())
}

#[test]
fn concurrent_reservations_never_oversell() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let network = Network::new("concurrent_reservations_never_oversell");
    let (pg, catalog_url, db) = runtime.block_on(async {
        preflight(&[faultline_tests::images::POSTGRES]).await?;
        let pg = Postgres::start(&network, &network.host("postgres")).await?;
        let database = pg.create_database("oversell").await?;
        let config = RoleConfig::Catalog(CatalogConfig {
            serve: ServeConfig::for_tests(),
            database: DatabaseConfig::new(database.url.clone()),
            redis: faultline_shop::redis_client::RedisConfig::none(),
            replica: faultline_shop::read_replica::ReplicaConfig::none(),
        });
        let app = Application::build(config).await?;
        let catalog_url = format!("http://{}", app.http_addr());
        let ready_url = format!("http://{}/health/ready", app.admin_addr());
        tokio::spawn(app.run_until_stopped(std::future::pending()));
        let http = faultline_tests::http_client()?;
        eventually(
            "the catalog to be ready",
            Duration::from_secs(30),
            || async {
                let status = http.get(&ready_url).send().await?.status();
                anyhow::ensure!(status.is_success(), "ready answered {status}");
                Ok(())
            },
        )
        .await?;
        let db = sqlx::postgres::PgPoolOptions::new()
            .max_connections(4)
            .connect(&database.url)
            .await?;
        Ok::<_, anyhow::Error>((pg, catalog_url, db))
    })?;
    let http = faultline_tests::http_client()?;

    let strategy = (
        0..40_i32,
        proptest::collection::vec((1..=8_i64, any::<bool>()), 1..24),
    );
    let mut runner = TestRunner::new(Config {
        cases: 24,
        failure_persistence: None,
        ..Config::default()
    });
    let result = runner.run(&strategy, |(stock, draws)| {
        runtime
            .block_on(check_batch(&http, &catalog_url, &db, stock, &draws))
            .map_err(|err| TestCaseError::fail(format!("{err:#}")))
    });
    // Remove the container before the runtime goes: a drop would only start it.
    runtime.block_on(pg.container.rm())?;
    result
        .map_err(|err| anyhow::anyhow!("{err}"))
        .context("overselling")
}
