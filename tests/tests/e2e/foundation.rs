//! The foundation: the shop image runs, Prometheus scrapes it, readiness
//! follows PostgreSQL, a read replica streams from the primary, and RabbitMQ
//! keeps its durable messages across a restart.

use std::time::Duration;

use anyhow::{Context, bail, ensure};
use faultline_tests::eventually;
use faultline_tests::postgres::{PORT, Postgres, REPLICA_SLOT, TestDatabase};
use faultline_tests::prometheus::PrometheusClient;
use faultline_tests::shop_stack::{RABBITMQ_PROXY_PORT, ShopStack, StackOptions};
use faultline_tests::stack::{Network, Prometheus, SHOP_ADMIN_PORT, Shop, prometheus_config};
use sqlx::Connection;
use sqlx::postgres::PgConnection;
use testcontainers::bollard::query_parameters::{
    InspectContainerOptions, KillContainerOptionsBuilder, StartContainerOptions,
};

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

/// A row the primary commits shows on the replica, within `within`.
async fn wait_replicated(replica_url: &str, id: &str, within: Duration) -> anyhow::Result<()> {
    eventually(&format!("row {id} on the replica"), within, || async {
        let mut conn = PgConnection::connect(replica_url).await?;
        let found: Option<String> =
            sqlx::query_scalar("SELECT id FROM replication_probe WHERE id = $1")
                .bind(id)
                .fetch_optional(&mut conn)
                .await?;
        conn.close().await?;
        ensure!(found.is_some(), "not there yet");
        Ok(())
    })
    .await
}

/// Polls `promql` until it returns exactly one sample equal to `want`.
async fn wait_value(prometheus: &PrometheusClient, promql: &str, want: f64) -> anyhow::Result<()> {
    eventually(&format!("{promql} == {want}"), READY_WITHIN, || async {
        let value = prometheus.query_scalar(promql).await?;
        ensure!(value == want, "it is {value}");
        Ok(())
    })
    .await
}

/// A stack with a read replica: a hot standby of the primary, streaming
/// through its slot, readable from the test process at
/// `ShopStack::replica_url`, and each server watched by its own exporter,
/// scraped as job `postgres` with its role. Then what the replica-down
/// experiment does: the replica killed and started again comes back on the
/// same host port, streaming, with what the primary wrote while it was down.
#[tokio::test(flavor = "multi_thread")]
async fn a_read_replica_streams_is_scraped_and_comes_back_after_a_kill() -> anyhow::Result<()> {
    let options = StackOptions {
        read_replica: true,
        prometheus: true,
        ..StackOptions::default()
    };
    preflight(&options.images()).await?;
    let stack = ShopStack::start("foundation_read_replica", options).await?;
    let replica_url = stack.replica_url().context("the stack has a replica")?;
    let replica = stack.replica.as_ref().context("the stack has a replica")?;
    let prometheus = &stack.prometheus.as_ref().context("Prometheus")?.client;

    // The replica is a standby, and the primary sees it streaming.
    let mut conn = PgConnection::connect(replica_url).await?;
    let in_recovery: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()")
        .fetch_one(&mut conn)
        .await?;
    assert!(in_recovery, "the replica is in recovery");
    let refused = sqlx::query("CREATE TABLE must_fail (id int)")
        .execute(&mut conn)
        .await;
    assert!(refused.is_err(), "the replica refuses writes");
    conn.close().await?;
    let primary = stack.db().await?;
    let streaming: (String, String) = sqlx::query_as(
        "SELECT state, sync_state FROM pg_stat_replication WHERE application_name = $1",
    )
    .bind(REPLICA_SLOT)
    .fetch_one(&primary)
    .await?;
    assert_eq!(streaming, ("streaming".to_owned(), "async".to_owned()));

    // A row written on the primary becomes visible on the replica.
    sqlx::query("CREATE TABLE replication_probe (id text PRIMARY KEY)")
        .execute(&primary)
        .await?;
    let insert = |id: &'static str| {
        sqlx::query("INSERT INTO replication_probe (id) VALUES ($1)")
            .bind(id)
            .execute(&primary)
    };
    insert("before").await?;
    wait_replicated(replica_url, "before", READY_WITHIN).await?;

    // Prometheus scrapes both exporters, each with its role, and the custom
    // queries answer on both without an error.
    for role in ["primary", "replica"] {
        wait_value(
            prometheus,
            &format!(r#"up{{job="postgres",role="{role}"}}"#),
            1.0,
        )
        .await?;
        wait_value(
            prometheus,
            &format!(r#"pg_up{{job="postgres",role="{role}"}}"#),
            1.0,
        )
        .await?;
        wait_value(
            prometheus,
            &format!(r#"pg_exporter_last_scrape_error{{job="postgres",role="{role}"}}"#),
            0.0,
        )
        .await?;
    }
    wait_value(prometheus, r#"pg_replica_in_recovery{role="replica"}"#, 1.0).await?;
    wait_value(prometheus, r#"pg_replica_in_recovery{role="primary"}"#, 0.0).await?;
    wait_value(
        prometheus,
        r#"pg_replication_standbys_streaming{role="primary"}"#,
        1.0,
    )
    .await?;
    wait_value(
        prometheus,
        r#"pg_replication_standbys_streaming{role="replica"}"#,
        0.0,
    )
    .await?;
    wait_value(
        prometheus,
        &format!(r#"pg_replication_slots_active{{role="primary",slot_name="{REPLICA_SLOT}"}}"#),
        1.0,
    )
    .await?;
    // The catalog was given the replica (FAULTLINE_DATABASE_READ_URL) and
    // reads from it.
    wait_value(
        prometheus,
        r#"db_client_replica_in_use{job="catalog"}"#,
        1.0,
    )
    .await?;
    let mut instances: Vec<String> = prometheus
        .query(r#"up{job="postgres"}"#)
        .await?
        .into_iter()
        .filter_map(|s| s.metric.get("instance").cloned())
        .collect();
    instances.sort();
    assert_eq!(instances, ["postgres", "postgres-replica"]);

    // Killed and started again, as the replica-down experiment does: same
    // host port, streaming again, and caught up through its slot with what
    // the primary wrote meanwhile.
    let port_before = replica.container.get_host_port_ipv4(PORT).await?;
    let docker = faultline_tests::docker::require_docker().await?;
    let id = replica.container.id();
    docker
        .kill_container(
            id,
            Some(KillContainerOptionsBuilder::new().signal("SIGKILL").build()),
        )
        .await?;
    wait_value(
        prometheus,
        r#"pg_replication_standbys_streaming{role="primary"}"#,
        0.0,
    )
    .await?;
    wait_value(prometheus, r#"pg_up{role="replica"}"#, 0.0).await?;
    insert("while_down").await?;
    docker
        .start_container(id, None::<StartContainerOptions>)
        .await?;
    let port_after = replica.container.get_host_port_ipv4(PORT).await?;
    assert_eq!(
        port_before, port_after,
        "the replica's host port survives a restart"
    );
    stack.wait_replica_streaming(READY_WITHIN).await?;
    insert("after").await?;
    wait_replicated(replica_url, "while_down", READY_WITHIN).await?;
    wait_replicated(replica_url, "after", READY_WITHIN).await?;
    wait_value(prometheus, r#"pg_up{role="replica"}"#, 1.0).await?;
    wait_value(
        prometheus,
        r#"pg_replication_standbys_streaming{role="primary"}"#,
        1.0,
    )
    .await?;
    wait_value(prometheus, r#"pg_replica_in_recovery{role="replica"}"#, 1.0).await?;
    Ok(())
}

/// The environment variable `name` of a container, as Docker started it.
async fn container_env(
    docker: &testcontainers::bollard::Docker,
    id: &str,
    name: &str,
) -> anyhow::Result<Option<String>> {
    let inspected = docker
        .inspect_container(id, None::<InspectContainerOptions>)
        .await?;
    let prefix = format!("{name}=");
    Ok(inspected
        .config
        .and_then(|config| config.env)
        .unwrap_or_default()
        .into_iter()
        .find_map(|entry| entry.strip_prefix(&prefix).map(str::to_owned)))
}

/// A stack with the broker: RabbitMQ starts, the orders replicas get its
/// URL and the workers theirs through the fault proxy, and Prometheus
/// scrapes its plugin as job `rabbitmq`, one series per queue. Then what
/// the broker-down experiment does: the broker killed and started again
/// still has its durable queue and the persistent messages in it.
#[tokio::test(flavor = "multi_thread")]
async fn rabbitmq_starts_is_scraped_and_keeps_durable_messages_across_a_restart()
-> anyhow::Result<()> {
    let options = StackOptions {
        broker: true,
        broker_through_proxy: true,
        worker_replicas: 2,
        prometheus: true,
        ..StackOptions::default()
    };
    preflight(&options.images()).await?;
    let stack = ShopStack::start("foundation_rabbitmq", options).await?;
    let rabbitmq = stack.rabbitmq.as_ref().context("the stack has RabbitMQ")?;
    let proxy = stack.proxy.as_ref().context("the stack has the proxy")?;
    let prometheus = &stack.prometheus.as_ref().context("Prometheus")?.client;
    let docker = faultline_tests::docker::require_docker().await?;

    // Orders publishes directly; both workers consume through the proxy's
    // link named rabbitmq.
    let direct = format!("amqp://faultline:faultline@{}:5672/%2f", rabbitmq.host);
    for orders in &stack.orders {
        let url = container_env(&docker, orders.container.id(), "FAULTLINE_AMQP_URL").await?;
        assert_eq!(url.as_deref(), Some(direct.as_str()), "{}", orders.host);
    }
    assert_eq!(stack.workers.len(), 2);
    let proxied = format!(
        "amqp://faultline:faultline@{}:{RABBITMQ_PROXY_PORT}/%2f",
        proxy.host
    );
    for worker in &stack.workers {
        let url = container_env(&docker, worker.container.id(), "FAULTLINE_AMQP_URL").await?;
        assert_eq!(url.as_deref(), Some(proxied.as_str()), "{}", worker.host);
    }
    let mut replicas: Vec<String> = prometheus
        .query(r#"up{job="worker"} == 1"#)
        .await?
        .into_iter()
        .filter_map(|s| s.metric.get("instance").cloned())
        .collect();
    replicas.sort();
    assert_eq!(
        replicas,
        stack
            .workers
            .iter()
            .map(|w| format!("{}:9000", w.host))
            .collect::<Vec<_>>()
    );

    // The plugin's page, scraped: the node and its version.
    wait_value(prometheus, r#"up{job="rabbitmq"}"#, 1.0).await?;
    let build = prometheus
        .query(r#"rabbitmq_build_info{job="rabbitmq"}"#)
        .await?;
    assert_eq!(build.len(), 1, "{build:?}");
    assert_eq!(
        build[0].metric.get("rabbitmq_version").map(String::as_str),
        Some("3.10.8")
    );
    wait_value(
        prometheus,
        r#"rabbitmq_identity_info{job="rabbitmq",rabbitmq_node="rabbit@localhost"}"#,
        1.0,
    )
    .await?;

    // A durable queue with three persistent messages, stamped 100 s ago:
    // its depth and the age of its head message, per queue.
    let queue = "foundation-probe";
    let stamped = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs()
        - 100;
    rabbitmq.publish(queue, 3, stamped).await?;
    let series = |name: &str| format!(r#"{name}{{job="rabbitmq",vhost="/",queue="{queue}"}}"#);
    wait_value(prometheus, &series("rabbitmq_queue_messages_ready"), 3.0).await?;
    wait_value(prometheus, &series("rabbitmq_queue_messages_unacked"), 0.0).await?;
    wait_value(prometheus, &series("rabbitmq_queue_consumers"), 0.0).await?;
    wait_value(
        prometheus,
        &series("rabbitmq_queue_head_message_timestamp"),
        stamped as f64,
    )
    .await?;

    // Killed and started again: the same node (its name is fixed) recovers
    // the queue and its messages, and Prometheus reads them from the new
    // process, which started after the old one.
    let started_before = prometheus
        .query_scalar(r#"time() - rabbitmq_erlang_uptime_seconds{job="rabbitmq"}"#)
        .await?;
    let id = rabbitmq.container.id();
    let killed_at = std::time::SystemTime::now();
    docker
        .kill_container(
            id,
            Some(KillContainerOptionsBuilder::new().signal("SIGKILL").build()),
        )
        .await?;
    docker
        .start_container(id, None::<StartContainerOptions>)
        .await?;
    rabbitmq
        .wait_ready(faultline_tests::rabbitmq::STARTUP_TIMEOUT)
        .await?;
    // Answering AMQP does not mean every durable queue is back yet: the
    // queue must reappear with its three messages, within the deadline.
    let recovered = eventually(
        &format!("{queue} back with its 3 messages"),
        READY_WITHIN,
        || async {
            let messages = rabbitmq.queue_messages(queue).await?;
            ensure!(messages == Some(3), "{queue} holds {messages:?} messages");
            Ok(())
        },
    )
    .await;
    if let Err(err) = recovered {
        // The log consumer stopped at the kill: show what the new process
        // said about its recovery.
        // The queue's absence stays the error, whatever reading the log does.
        match faultline_tests::docker::logs_since(&docker, id, killed_at).await {
            Ok(log) => eprintln!("[{}] the log since the restart:\n{log}", rabbitmq.host),
            Err(log_err) => eprintln!("[{}] cannot read its log: {log_err:#}", rabbitmq.host),
        }
        return Err(err);
    }
    wait_value(
        prometheus,
        &format!(
            r#"time() - rabbitmq_erlang_uptime_seconds{{job="rabbitmq"}} > bool {}"#,
            started_before + 5.0
        ),
        1.0,
    )
    .await?;
    wait_value(prometheus, &series("rabbitmq_queue_messages_ready"), 3.0).await?;
    wait_value(
        prometheus,
        &series("rabbitmq_queue_head_message_timestamp"),
        stamped as f64,
    )
    .await?;
    // The test process reaches it on its new mapped port.
    let address = rabbitmq.amqp_address().await?;
    faultline_tests::rabbitmq::amqp_handshake(&address).await?;
    assert_eq!(
        rabbitmq.amqp_url().await?,
        format!("amqp://faultline:faultline@{address}/%2f")
    );
    Ok(())
}
