//! The outbox relayed through RabbitMQ: every acknowledged order's event is
//! processed exactly once, across a consumer killed mid-message and a broker
//! killed and started again, under load; a relay that publishes an event
//! again changes nothing; and a poison event ends in the dead letters, where
//! `faultline-shop dead-letters` lists and replays it.

use std::time::Duration;

use anyhow::{Context, ensure};
use faultline_loadgen::{Config, Mode, NoObserver, Report};
use faultline_tests::eventually;
use faultline_tests::shop_stack::{ShopStack, StackOptions};
use faultline_tests::stack::Shop;
use sqlx::PgPool;
use testcontainers::bollard::query_parameters::KillContainerOptionsBuilder;
use testcontainers::core::client::docker_client_instance;
use tokio_util::sync::CancellationToken;

use crate::{BROKER_IMAGES, preflight};

/// Generous: two noisy cores, an Erlang VM booting, reconnect backoffs.
const WITHIN: Duration = Duration::from_secs(90);

fn checkout_heavy_load(stack: &ShopStack, rate: f64, duration: Duration) -> anyhow::Result<Config> {
    let mut config = Config::new(stack.gateway_url().parse()?);
    config.customers = Some(stack.customers(20)?);
    config.mode = Mode::Open { rate };
    config.duration = Some(duration);
    config.seed = Some(17);
    config.mix = "list=10,product=10,checkout=70,order=10"
        .parse()
        .map_err(|err| anyhow::anyhow!("{err}"))?;
    Ok(config)
}

async fn run_load(config: Config) -> anyhow::Result<Report> {
    Ok(faultline_loadgen::run(config, CancellationToken::new(), NoObserver).await?)
}

/// The sum of a counter over the workers (each worker's own count since it
/// started).
async fn workers_sum(workers: &[Shop], name: &str, labels: &[(&str, &str)]) -> anyhow::Result<f64> {
    let mut sum = 0.0;
    for worker in workers {
        sum += worker
            .metrics()
            .await?
            .find(name, labels)
            .map(|series| series.value)
            .sum::<f64>();
    }
    Ok(sum)
}

async fn outcome(workers: &[Shop], outcome: &str) -> anyhow::Result<f64> {
    workers_sum(
        workers,
        "outbox_events_processed_total",
        &[("outcome", outcome)],
    )
    .await
}

async fn scalar(db: &PgPool, query: &'static str) -> anyhow::Result<i64> {
    sqlx::query_scalar(query)
        .fetch_one(db)
        .await
        .with_context(|| format!("cannot run {query}"))
}

/// Waits until every outbox event is processed.
async fn drained(db: &PgPool) -> anyhow::Result<()> {
    eventually("the outbox to be fully processed", WITHIN, || async {
        let left = scalar(db, "SELECT count(*) FROM outbox WHERE processed_at IS NULL").await?;
        ensure!(left == 0, "{left} events not processed yet");
        Ok(())
    })
    .await
}

/// Every acknowledged order has exactly one event, processed exactly once:
/// one row in `processed_events`, one notification.
async fn each_event_processed_once(db: &PgPool, report: &Report) -> anyhow::Result<()> {
    ensure!(
        !report.acknowledged_orders.is_empty(),
        "no order acknowledged"
    );
    for order in &report.acknowledged_orders {
        let (events, processed, notified): (i64, i64, i64) = sqlx::query_as(
            "SELECT count(DISTINCT o.event_id), count(p.event_id), count(n.event_id) \
             FROM outbox o \
             LEFT JOIN processed_events p ON p.event_id = o.event_id \
             LEFT JOIN notifications n ON n.event_id = o.event_id \
             WHERE o.aggregate_id = $1::uuid",
        )
        .bind(&order.order_id)
        .fetch_one(db)
        .await?;
        ensure!(
            (events, processed, notified) == (1, 1, 1),
            "order {}: {events} events, processed {processed} times, notified {notified} times",
            order.order_id
        );
    }
    Ok(())
}

async fn kill(shop_container_id: &str) -> anyhow::Result<()> {
    let docker = docker_client_instance().await?;
    docker
        .kill_container(
            shop_container_id,
            Some(
                KillContainerOptionsBuilder::default()
                    .signal("SIGKILL")
                    .build(),
            ),
        )
        .await?;
    Ok(())
}

/// Runs `faultline-shop <args>` in `shop`'s container (which has
/// `FAULTLINE_AMQP_URL`); its stdout, or an error with its output.
async fn shop_command(shop: &Shop, args: &[&str]) -> anyhow::Result<String> {
    let command: Vec<&str> = std::iter::once("faultline-shop")
        .chain(args.iter().copied())
        .collect();
    faultline_tests::docker::exec(&shop.container, &command)
        .await
        .with_context(|| format!("faultline-shop in {}", shop.host))
}

#[tokio::test(flavor = "multi_thread")]
async fn every_acknowledged_order_is_processed_exactly_once_across_broker_restarts_and_consumer_kills()
-> anyhow::Result<()> {
    preflight(BROKER_IMAGES).await?;
    let stack = ShopStack::start(
        "broker_exactly_once",
        StackOptions {
            broker: true,
            orders_replicas: 2,
            worker_replicas: 2,
            ..StackOptions::default()
        },
    )
    .await?;
    let db = stack.db().await?;
    let rabbitmq = stack.rabbitmq.as_ref().context("the stack has RabbitMQ")?;

    // 1. The normal case: two relays (one per orders replica) and two
    //    consumers; no event is published twice, none is lost.
    let calm = run_load(checkout_heavy_load(&stack, 15.0, Duration::from_secs(5))?).await?;
    drained(&db).await?;
    each_event_processed_once(&db, &calm).await?;
    let duplicates = outcome(&stack.workers, "duplicate").await?;
    ensure!(
        duplicates == 0.0,
        "two relays published an event twice with nothing failing ({duplicates} duplicates)"
    );
    let processed = outcome(&stack.workers, "processed").await?;
    let events = scalar(&db, "SELECT count(*) FROM outbox").await?;
    ensure!(
        processed == events as f64,
        "{events} events, processed {processed} times"
    );

    // 2. Under load: a consumer killed mid-message, then the broker killed.
    let traffic = tokio::spawn(run_load(checkout_heavy_load(
        &stack,
        15.0,
        Duration::from_secs(40),
    )?));
    // Hold both workers inside their transactions: a lock on the
    // notifications table (checkouts never touch it) blocks each one's
    // INSERT, with its delivery in hand and unacknowledged.
    let mut blocker = db.begin().await?;
    sqlx::query("LOCK TABLE notifications IN SHARE MODE")
        .execute(&mut *blocker)
        .await?;
    eventually("both workers to be blocked mid-message", WITHIN, || async {
        let waiting = scalar(
            &db,
            "SELECT count(*) FROM pg_stat_activity \
             WHERE wait_event_type = 'Lock' AND application_name = 'worker'",
        )
        .await?;
        ensure!(waiting >= 2, "{waiting} workers waiting on the lock");
        Ok(())
    })
    .await?;
    let survivor = &stack.workers[1];
    let redelivered_before = workers_sum(
        std::slice::from_ref(survivor),
        "messaging_client_redeliveries_total",
        &[("reason", "broker")],
    )
    .await?;
    kill(stack.workers[0].container.id()).await?;
    blocker.commit().await?;
    // The killed worker's message (and whatever it had prefetched) comes
    // back to the survivor, flagged as redelivered.
    eventually(
        "the killed worker's deliveries to reach the survivor",
        WITHIN,
        || async {
            let redelivered = workers_sum(
                std::slice::from_ref(survivor),
                "messaging_client_redeliveries_total",
                &[("reason", "broker")],
            )
            .await?;
            ensure!(
                redelivered > redelivered_before,
                "no redelivery yet ({redelivered})"
            );
            Ok(())
        },
    )
    .await?;
    stack.workers[0].container.start().await?;

    // The broker killed outright, and started again: confirmed messages are
    // on its disk; the relays and consumers reconnect by themselves.
    kill(rabbitmq.container.id()).await?;
    eventually(
        "the relays to notice the broker is gone",
        WITHIN,
        || async {
            let connected: f64 = {
                let mut sum = 0.0;
                for orders in &stack.orders {
                    sum += orders
                        .metrics()
                        .await?
                        .value("messaging_client_connected", &[])
                        .unwrap_or(1.0);
                }
                sum
            };
            ensure!(connected == 0.0, "{connected} relays still connected");
            Ok(())
        },
    )
    .await?;
    rabbitmq.container.start().await?;
    rabbitmq.wait_ready(WITHIN).await?;
    let report = traffic.await??;
    ensure!(
        report.checkouts.acknowledged >= 50,
        "too few checkouts acknowledged under the faults: {}",
        report.checkouts.acknowledged
    );
    let failed_checkouts = report
        .routes
        .iter()
        .filter(|(route, _)| route.template() == "POST /api/orders")
        .map(|(_, summary)| summary.errors)
        .sum::<u64>();
    ensure!(
        failed_checkouts == 0,
        "checkouts failed while the broker or a worker was down: {:#?}",
        report.failed_requests
    );
    drained(&db).await?;
    each_event_processed_once(&db, &calm).await?;
    each_event_processed_once(&db, &report).await?;

    // 3. An event published again (as a relay that died between the confirm
    //    and its commit would) is a duplicate the workers skip.
    eventually("every worker to consume again", WITHIN, || async {
        for worker in &stack.workers {
            let connected = worker
                .metrics()
                .await?
                .value("messaging_client_connected", &[])
                .unwrap_or(0.0);
            ensure!(connected == 1.0, "{} is not connected", worker.host);
        }
        Ok(())
    })
    .await?;
    let notifications = scalar(&db, "SELECT count(*) FROM notifications").await?;
    let processed_before = outcome(&stack.workers, "processed").await?;
    let duplicates_before = outcome(&stack.workers, "duplicate").await?;
    let again = sqlx::query(
        "UPDATE outbox SET published_at = NULL \
         WHERE id IN (SELECT id FROM outbox ORDER BY id LIMIT 20)",
    )
    .execute(&db)
    .await?
    .rows_affected();
    ensure!(again == 20, "only {again} events to publish again");
    eventually(
        "the 20 events to come back as duplicates",
        WITHIN,
        || async {
            let duplicates = outcome(&stack.workers, "duplicate").await? - duplicates_before;
            ensure!(duplicates >= 20.0, "{duplicates} duplicates so far");
            Ok(())
        },
    )
    .await?;
    let processed_after = outcome(&stack.workers, "processed").await?;
    ensure!(
        processed_after == processed_before,
        "a duplicate was processed again ({processed_before} → {processed_after})"
    );
    ensure!(
        scalar(&db, "SELECT count(*) FROM notifications").await? == notifications,
        "a duplicate sent a notification again"
    );

    // 4. A poison event (a kind no worker knows) is retried, then rejected
    //    into the dead letters at its 5th attempt; the command lists it and
    //    leaves it there; a replay of another id keeps it; replayed, it is a
    //    first attempt again, and comes back to the dead letters after its
    //    retries (it is still poison).
    let dead = |expected: u64| async move {
        eventually(&format!("{expected} dead letter(s)"), WITHIN, || async {
            let count = rabbitmq
                .queue_messages("worker.order-events.dead")
                .await?
                .unwrap_or(0);
            ensure!(count == expected, "{count} dead letters");
            Ok(())
        })
        .await
    };
    let poison = uuid::Uuid::new_v4();
    sqlx::query(
        "INSERT INTO outbox (event_id, kind, aggregate_id, payload) \
         VALUES ($1, 'order.poison', gen_random_uuid(), '{\"poison\": true}')",
    )
    .bind(poison)
    .execute(&db)
    .await?;
    dead(1).await?;
    let worker = &stack.workers[1];
    let listed = shop_command(worker, &["dead-letters", "list", "--json"]).await?;
    let letters: Vec<serde_json::Value> = listed
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?;
    ensure!(letters.len() == 1, "listed {letters:?}");
    let letter = &letters[0];
    ensure!(
        letter["event_id"] == poison.to_string()
            && letter["kind"] == "order.poison"
            && letter["attempt"] == 5
            && letter["reason"] == "rejected"
            && letter["queue"] == "worker.order-events",
        "the dead letter, as listed: {letter}"
    );
    dead(1).await?;
    let other = uuid::Uuid::new_v4().to_string();
    let replayed = shop_command(worker, &["dead-letters", "replay", "--event-id", &other]).await?;
    ensure!(replayed.trim().is_empty(), "replayed {replayed:?}");
    dead(1).await?;
    let retries_before = workers_sum(
        &stack.workers,
        "messaging_client_redeliveries_total",
        &[("reason", "retry")],
    )
    .await?;
    let poison_id = poison.to_string();
    let replayed = shop_command(
        worker,
        &["dead-letters", "replay", "--event-id", &poison_id],
    )
    .await?;
    ensure!(replayed.trim() == poison_id, "replayed {replayed:?}");
    eventually(
        "the replayed poison to be retried again",
        WITHIN,
        || async {
            let retries = workers_sum(
                &stack.workers,
                "messaging_client_redeliveries_total",
                &[("reason", "retry")],
            )
            .await?
                - retries_before;
            ensure!(retries >= 4.0, "{retries} retries since the replay");
            Ok(())
        },
    )
    .await?;
    dead(1).await?;
    sqlx::query("DELETE FROM outbox WHERE event_id = $1")
        .bind(poison)
        .execute(&db)
        .await?;
    Ok(())
}
