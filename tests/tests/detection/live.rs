//! Live: the whole shop in containers, a fault proxy, Alertmanager, and
//! Prometheus scraping every role, itself and Alertmanager each second with
//! the compressed rules loaded, under load from the load generator (with
//! Redis, a read replica, and RabbitMQ between orders and two workers). Every
//! dashboard query must return data, every rule must evaluate without error,
//! every metric the catalog lists from the PostgreSQL exporters is rendered
//! with its labels, and no page may fire on a healthy shop.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use faultline_tests::eventually;
use faultline_tests::images::{
    ALERTMANAGER, FAULTLINE, POSTGRES, POSTGRES_EXPORTER, PROMETHEUS, RABBITMQ, REDIS,
    REDIS_EXPORTER,
};
use faultline_tests::shop_stack::{ShopStack, StackOptions};
use faultline_tests::stack::{Network, Prometheus, log_to_stderr, prometheus_config};
use serde::Deserialize;
use testcontainers::core::{ContainerPort, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};
use tokio_util::sync::CancellationToken;

use crate::assets::{self, QueryKind};
use crate::preflight;

/// The window that replaces `$__rate_interval`: a few scrapes at 1 s.
const RATE_WINDOW: &str = "10s";
/// How long the dashboards get to show data once traffic flows.
const DATA_WITHIN: Duration = Duration::from_secs(45);
/// The fault proxy's control API port.
const PROXY_API_PORT: u16 = 8474;
/// The port of the proxy the test creates (in front of catalog).
const PROXIED_PORT: u16 = 18080;
/// Alertmanager's port.
const ALERTMANAGER_PORT: u16 = 9093;

/// Alertmanager with the demo's routing (compose/alertmanager/alertmanager.yml,
/// whose receivers send nothing), for its own metrics on the overview.
async fn start_alertmanager(network: &Network) -> Result<(ContainerAsync<GenericImage>, String)> {
    let host = network.host("alertmanager");
    let config = std::fs::read(assets::repo_root().join("compose/alertmanager/alertmanager.yml"))
        .context("read compose/alertmanager/alertmanager.yml")?;
    let container = GenericImage::new(ALERTMANAGER.name, ALERTMANAGER.tag)
        .with_exposed_port(ContainerPort::Tcp(ALERTMANAGER_PORT))
        .with_wait_for(WaitFor::message_on_stderr("Listening on"))
        .with_network(network.name())
        .with_container_name(&host)
        .with_labels(network.labels())
        .with_log_consumer(log_to_stderr(&host))
        .with_copy_to("/etc/alertmanager/alertmanager.yml", config)
        .with_startup_timeout(Duration::from_secs(30))
        .start()
        .await
        .context("start Alertmanager")?;
    Ok((container, format!("{host}:{ALERTMANAGER_PORT}")))
}

/// `faultline proxy` in a container, with one proxy in front of catalog.
async fn start_proxy(
    network: &Network,
    upstream: &str,
) -> Result<(ContainerAsync<GenericImage>, String)> {
    let host = network.host("proxy");
    let container = GenericImage::new(FAULTLINE.name, FAULTLINE.tag)
        .with_entrypoint("/usr/local/bin/faultline")
        .with_exposed_port(ContainerPort::Tcp(PROXY_API_PORT))
        .with_exposed_port(ContainerPort::Tcp(PROXIED_PORT))
        .with_wait_for(WaitFor::message_on_stdout("faultline proxy ready"))
        .with_cmd(["proxy", "--listen", "0.0.0.0:8474"])
        .with_network(network.name())
        .with_container_name(&host)
        .with_labels(network.labels())
        .with_log_consumer(log_to_stderr(&host))
        .with_startup_timeout(Duration::from_secs(30))
        .start()
        .await
        .context("start the fault proxy")?;
    let api = format!(
        "http://127.0.0.1:{}",
        container.get_host_port_ipv4(PROXY_API_PORT).await?
    );
    let http = faultline_tests::http_client()?;
    http.post(format!("{api}/proxies"))
        .json(&serde_json::json!({
            "name": "catalog",
            "listen": format!("0.0.0.0:{PROXIED_PORT}"),
            "upstream": upstream,
        }))
        .send()
        .await?
        .error_for_status()
        .context("create a proxy")?;
    // One request through it, on a connection that closes: a connection
    // accepted, bytes both ways, a close reason.
    let proxied = format!(
        "http://127.0.0.1:{}/api/products",
        container.get_host_port_ipv4(PROXIED_PORT).await?
    );
    let once = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(5))
        .build()?;
    eventually(
        "a request through the fault proxy",
        Duration::from_secs(10),
        || async {
            once.get(&proxied).send().await?.error_for_status()?;
            Ok(())
        },
    )
    .await?;
    Ok((container, format!("{host}:{PROXY_API_PORT}")))
}

#[derive(Debug, Deserialize)]
struct RulesEnvelope {
    data: RulesData,
}

#[derive(Debug, Deserialize)]
struct RulesData {
    groups: Vec<RuleGroupState>,
}

#[derive(Debug, Deserialize)]
struct RuleGroupState {
    name: String,
    rules: Vec<RuleState>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RuleState {
    name: String,
    health: String,
    #[serde(default)]
    last_error: String,
}

/// Rules that are not evaluated, or failed their last evaluation.
async fn unhealthy_rules(http: &reqwest::Client, base_url: &str) -> Result<Vec<String>> {
    let rules: RulesEnvelope = http
        .get(format!("{base_url}/api/v1/rules"))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(rules
        .data
        .groups
        .iter()
        .flat_map(|group| {
            group
                .rules
                .iter()
                .filter(|rule| rule.health != "ok")
                .map(move |rule| {
                    format!(
                        "{}/{}: {} {}",
                        group.name, rule.name, rule.health, rule.last_error
                    )
                })
        })
        .collect())
}

#[tokio::test(flavor = "multi_thread")]
async fn every_dashboard_query_returns_data_from_a_live_stack_under_load() -> Result<()> {
    preflight(&[
        POSTGRES,
        POSTGRES_EXPORTER,
        PROMETHEUS,
        ALERTMANAGER,
        REDIS,
        REDIS_EXPORTER,
        RABBITMQ,
        FAULTLINE,
    ])
    .await?;
    let started = Instant::now();
    // The fault admin API on, as in a chaos run: fault_active is rendered.
    // Redis, as in compose: the gateways share their cache and limit in it.
    // A read replica, as in compose: the catalog reads from it, and both
    // servers' exporters are scraped as job postgres. RabbitMQ, as in
    // compose: orders relays the outbox to it, two workers consume, and its
    // plugin is scraped as job rabbitmq (the broker row of the dependencies
    // dashboard).
    let stack = ShopStack::start(
        "detection_live",
        StackOptions {
            fault_admin: true,
            redis: true,
            read_replica: true,
            broker: true,
            worker_replicas: 2,
            gateway_replicas: 2,
            ..StackOptions::default()
        },
    )
    .await?;
    let (proxy, proxy_target) =
        start_proxy(&stack.network, &format!("{}:8080", stack.catalog.host)).await?;
    let (_alertmanager, alertmanager_target) = start_alertmanager(&stack.network).await?;

    // Each role is its own job, named after it, as alerts/README.md requires.
    let target = |shop: &faultline_tests::stack::Shop| format!("{}:9000", shop.host);
    let mut jobs: Vec<(&str, Vec<String>)> = vec![
        (
            "gateway",
            std::iter::once(&stack.gateway)
                .chain(&stack.more_gateways)
                .map(target)
                .collect(),
        ),
        ("catalog", vec![target(&stack.catalog)]),
        ("orders", stack.orders.iter().map(target).collect()),
        ("payments", vec![target(&stack.payments)]),
        ("worker", stack.workers.iter().map(target).collect()),
    ];
    jobs.push(("proxy", vec![proxy_target]));
    // The monitoring pipeline watches itself (alerts/monitoring.rules.yml).
    jobs.push(("prometheus", vec!["localhost:9090".to_owned()]));
    jobs.push(("alertmanager", vec![alertmanager_target]));
    if let Some((_, exporter)) = &stack.redis {
        jobs.push(("redis", vec![exporter.metrics_target()]));
    }
    let mut config = prometheus_config(Duration::from_secs(1), &jobs);
    config.push_str(&stack.postgres_scrape_job());
    config.push_str(&stack.rabbitmq_scrape_job());
    config.push_str("rule_files:\n  - /etc/prometheus/rules/*.rules.yml\n");
    let rules: Vec<(String, String)> = assets::files_in("alerts/compressed", ".rules.yml")?
        .into_iter()
        .map(|file| (format!("/etc/prometheus/rules/{}", file.name), file.text))
        .collect();
    let files: Vec<(&str, String)> = rules.iter().map(|(p, t)| (p.as_str(), t.clone())).collect();
    let prometheus = Prometheus::start(
        &stack.network,
        &stack.network.host("prometheus"),
        &config,
        &files,
    )
    .await?;
    let ready = started.elapsed();

    let mut load = faultline_loadgen::Config::new(stack.gateway_url().parse()?);
    load.customers = Some(stack.customers(20)?);
    load.mode = faultline_loadgen::Mode::Open { rate: 20.0 };
    load.duration = Some(DATA_WITHIN + Duration::from_secs(15));
    load.seed = Some(11);
    let stop_load = CancellationToken::new();
    let traffic = tokio::spawn(faultline_loadgen::run(
        load,
        stop_load.clone(),
        faultline_loadgen::NoObserver,
    ));

    // Every panel and variable query, until each has returned data once.
    let mut waiting: BTreeMap<String, String> = BTreeMap::new();
    for dashboard in assets::dashboards()? {
        for query in dashboard.queries() {
            if query.kind != QueryKind::Annotation {
                waiting.insert(
                    query.to_string(),
                    assets::concrete(&query.expr, RATE_WINDOW),
                );
            }
        }
    }
    let total = waiting.len();
    let waiting = Arc::new(Mutex::new(waiting));
    let client = &prometheus.client;
    let outcome = eventually("every dashboard query to return data", DATA_WITHIN, || {
        let waiting = Arc::clone(&waiting);
        async move {
            let pending: Vec<(String, String)> = waiting
                .lock()
                .map_err(|_| anyhow::anyhow!("poisoned"))?
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            for (what, expr) in pending {
                if !client
                    .query(&expr)
                    .await
                    .with_context(|| what.clone())?
                    .is_empty()
                {
                    waiting
                        .lock()
                        .map_err(|_| anyhow::anyhow!("poisoned"))?
                        .remove(&what);
                }
            }
            let left = waiting.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
            if !left.is_empty() {
                bail!(
                    "{} of {total} queries have no data yet:\n  {}",
                    left.len(),
                    left.keys().cloned().collect::<Vec<_>>().join("\n  ")
                );
            }
            Ok(())
        }
    })
    .await;
    let data_after = started.elapsed();

    // Every rule evaluates without error on real series.
    let http = faultline_tests::http_client()?;
    let rules_health = eventually(
        "every rule to evaluate without error",
        Duration::from_secs(10),
        || async {
            let bad = unhealthy_rules(&http, client.base_url()).await?;
            ensure!(bad.is_empty(), "{}", bad.join("\n"));
            Ok(())
        },
    )
    .await;

    // What the catalog lists from the PostgreSQL exporters is rendered, with
    // exactly the labels it lists (besides the target's job, instance and
    // role), on both roles together.
    let exporter_series = eventually(
        "every postgres-exporter metric of the catalog, with its labels",
        Duration::from_secs(30),
        || async { postgres_exporter_series_problems(client).await },
    )
    .await;

    // The alerting pipeline works, and nothing pages on a healthy shop.
    let alerts = client.alerts().await?;
    stop_load.cancel();
    let report = traffic.await??;
    eprintln!(
        "stack ready after {ready:.1?}, dashboards polled until {data_after:.1?}; load: {} requests, {} errors",
        report.totals.count, report.totals.errors
    );
    let mut failures = Vec::new();
    if let Err(err) = outcome {
        let left = waiting.lock().map_err(|_| anyhow::anyhow!("poisoned"))?;
        failures.push(format!(
            "{} of {total} dashboard queries returned no data within {DATA_WITHIN:?} ({err:#}):\n  {}",
            left.len(),
            left.iter()
                .map(|(what, expr)| format!("{what}\n      as {expr}"))
                .collect::<Vec<_>>()
                .join("\n  ")
        ));
    }
    if let Err(err) = rules_health {
        failures.push(format!("rules that do not evaluate: {err:#}"));
    }
    if let Err(err) = exporter_series {
        failures.push(format!("{err:#}"));
    }
    let firing = |alert: &faultline_tests::prometheus::Alert, key: &str, value: &str| {
        alert.state == "firing" && alert.labels.get(key).map(String::as_str) == Some(value)
    };
    if !alerts.iter().any(|a| firing(a, "alertname", "Watchdog")) {
        failures.push(format!("the Watchdog is not firing: {alerts:#?}"));
    }
    let pages: Vec<_> = alerts
        .iter()
        .filter(|a| firing(a, "severity", "page"))
        .collect();
    if !pages.is_empty() {
        failures.push(format!("pages on a healthy shop: {pages:#?}"));
    }
    // The compressed rules fire live, at their time scale: with the fault
    // proxy stopped, TargetDown (`for: 2m`, 2 s compressed) fires for it.
    proxy.stop_with_timeout(Some(0)).await?;
    let stopped = Instant::now();
    let target_down = eventually(
        "TargetDown to fire for the stopped fault proxy",
        Duration::from_secs(20),
        || async {
            let alerts = client.alerts().await?;
            ensure!(
                alerts.iter().any(|a| firing(a, "alertname", "TargetDown")
                    && a.labels.get("job").map(String::as_str) == Some("proxy")),
                "alerts now: {:?}",
                alerts
                    .iter()
                    .map(|a| (a.labels.get("alertname"), a.labels.get("job"), &a.state))
                    .collect::<Vec<_>>()
            );
            Ok(())
        },
    )
    .await;
    match target_down {
        Ok(()) => eprintln!(
            "TargetDown fired {:.1?} after the proxy stopped",
            stopped.elapsed()
        ),
        Err(err) => failures.push(format!("{err:#}")),
    }
    ensure!(failures.is_empty(), "{}", failures.join("\n\n"));
    Ok(())
}

/// Fails naming each catalog metric of source `postgres-exporter` that job
/// `postgres` does not render, or renders with other labels than listed.
async fn postgres_exporter_series_problems(
    client: &faultline_tests::prometheus::PrometheusClient,
) -> Result<()> {
    /// Labels Prometheus adds to every series of the job.
    const TARGET_LABELS: [&str; 4] = ["__name__", "job", "instance", "role"];
    let catalog = faultline_telemetry::Catalog::embedded()?;
    let specs: Vec<_> = catalog.from_source("postgres-exporter").collect();
    // All at once: one after the other, they take seconds on a loaded machine.
    let queries: Vec<String> = specs
        .iter()
        .map(|spec| format!(r#"{{__name__="{}", job="postgres"}}"#, spec.name))
        .collect();
    let answers = futures::future::join_all(queries.iter().map(|query| client.query(query))).await;
    let mut problems = Vec::new();
    let checked = specs.len();
    for (spec, series) in specs.iter().zip(answers) {
        let series = series?;
        if series.is_empty() {
            problems.push(format!("{}: no series", spec.name));
            continue;
        }
        // A label whose value is empty is no label in Prometheus (the
        // pg_stat_database row of the shared catalogs has datid 0 and no
        // datname), so each series has some of the listed labels, and all
        // of them together have every one.
        let listed: BTreeSet<&str> = spec.labels.iter().map(String::as_str).collect();
        let mut seen = BTreeSet::new();
        let mut extra = false;
        for sample in &series {
            let rendered: BTreeSet<&str> = sample
                .metric
                .keys()
                .map(String::as_str)
                .filter(|label| !TARGET_LABELS.contains(label))
                .collect();
            if !rendered.is_subset(&listed) {
                problems.push(format!(
                    "{}: rendered with labels {rendered:?}, the catalog lists {listed:?}",
                    spec.name
                ));
                extra = true;
                break;
            }
            seen.extend(rendered);
        }
        if !extra && seen.len() < listed.len() {
            problems.push(format!(
                "{}: no series has the labels {:?} the catalog lists",
                spec.name,
                listed.difference(&seen).collect::<Vec<_>>()
            ));
        }
    }
    ensure!(checked > 0, "the catalog lists no postgres-exporter metric");
    ensure!(problems.is_empty(), "{}", problems.join("\n"));
    Ok(())
}
