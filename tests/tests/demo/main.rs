//! The local demo, as a user runs it: `docker-compose up demo` with the
//! override for locally built images. It must come up healthy, Prometheus must
//! scrape every target and load every rule, the load generator's traffic must
//! show in the metrics, alerts must reach Alertmanager, and it must go away
//! again with `down -v`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use faultline_tests::docker::{require_docker, require_images};
use faultline_tests::images::{
    ALERTMANAGER, FAULTLINE, HAPROXY, POSTGRES, POSTGRES_EXPORTER, PROMETHEUS, RABBITMQ, REDIS,
    REDIS_EXPORTER,
};
use faultline_tests::prometheus::PrometheusClient;
use faultline_tests::{eventually, host_port};

/// Generous: twenty containers start on two cores.
const UP_WITHIN: Duration = Duration::from_secs(180);

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from(".."), Path::to_path_buf)
}

/// A compose project; `down -v` runs when it is dropped, pass or fail.
struct Demo {
    project: String,
    env: Vec<(&'static str, String)>,
}

impl Demo {
    fn compose(&self, args: &[&str]) -> anyhow::Result<String> {
        let root = repo_root();
        let output = Command::new("docker-compose")
            .current_dir(&root)
            .args(["-p", &self.project])
            .args([
                "-f",
                "compose/docker-compose.yml",
                "-f",
                "compose/docker-compose.local.yml",
            ])
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            .output()
            .context(
                "cannot run docker-compose: install it (Debian: apt-get install docker-compose)",
            )?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        if !output.status.success() {
            bail!("docker-compose {} failed:\n{text}", args.join(" "));
        }
        Ok(text)
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        if let Err(err) = self.compose(&["down", "-v", "--remove-orphans", "-t", "5"]) {
            eprintln!("tearing the demo down failed: {err:#}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_local_demo_comes_up_scraped_alerting_and_under_load() -> anyhow::Result<()> {
    let docker = require_docker().await?;
    require_images(
        &docker,
        &[
            POSTGRES,
            POSTGRES_EXPORTER,
            PROMETHEUS,
            ALERTMANAGER,
            REDIS,
            REDIS_EXPORTER,
            HAPROXY,
            RABBITMQ,
            FAULTLINE,
        ],
    )
    .await?;
    let ports = (
        host_port::free()?,
        host_port::free()?,
        host_port::free()?,
        host_port::free()?,
    );
    let postgres_port = host_port::free()?;
    let replica_port = host_port::free()?;
    let rabbitmq_ports = (host_port::free()?, host_port::free()?);
    // Orders is scaled to three replicas: three consecutive ports.
    let fault_admin_ports = (
        host_port::free()?,
        host_port::free_range(3)?,
        host_port::free()?,
    );
    let demo = Demo {
        project: format!(
            "faultline-demo-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        ),
        env: vec![
            ("FAULTLINE_GATEWAY_PORT", ports.0.to_string()),
            ("FAULTLINE_PROMETHEUS_PORT", ports.1.to_string()),
            ("FAULTLINE_ALERTMANAGER_PORT", ports.2.to_string()),
            ("FAULTLINE_PROXY_PORT", ports.3.to_string()),
            // Not 5432: another demo, or a PostgreSQL on the host, may hold it.
            ("FAULTLINE_POSTGRES_PORT", postgres_port.to_string()),
            ("FAULTLINE_POSTGRES_REPLICA_PORT", replica_port.to_string()),
            // Not 5672 and 15692: another demo or broker may hold them.
            ("FAULTLINE_RABBITMQ_PORT", rabbitmq_ports.0.to_string()),
            (
                "FAULTLINE_RABBITMQ_METRICS_PORT",
                rabbitmq_ports.1.to_string(),
            ),
            (
                "FAULTLINE_CATALOG_FAULT_ADMIN_PORT",
                fault_admin_ports.0.to_string(),
            ),
            (
                "FAULTLINE_ORDERS_FAULT_ADMIN_PORTS",
                format!("{}-{}", fault_admin_ports.1, fault_admin_ports.1 + 2),
            ),
            (
                "FAULTLINE_WORKER_FAULT_ADMIN_PORT",
                fault_admin_ports.2.to_string(),
            ),
        ],
    };
    // `up -d demo` starts the dependencies first and waits for their health.
    demo.compose(&["up", "-d", "demo"])?;
    let http = faultline_tests::http_client()?;
    let prometheus = PrometheusClient::new(format!("http://127.0.0.1:{}", ports.1), http.clone());

    // Every target up: each replica of each role (two gateways behind the
    // edge, two workers), the proxy, the Redis exporter, the two PostgreSQL
    // exporters, RabbitMQ's plugin, Prometheus and Alertmanager.
    let wanted: BTreeSet<&str> = [
        "gateway",
        "catalog",
        "orders",
        "payments",
        "worker",
        "proxy",
        "redis",
        "postgres",
        "rabbitmq",
        "prometheus",
        "alertmanager",
    ]
    .into();
    eventually("every scrape target to be up", UP_WITHIN, || async {
        let targets = prometheus.targets().await?;
        let down: Vec<String> = targets
            .iter()
            .filter(|t| t.health != "up")
            .map(|t| format!("{} ({}): {}", t.scrape_url, t.health, t.last_error))
            .collect();
        ensure!(down.is_empty(), "targets not up: {down:?}");
        let jobs: BTreeSet<&str> = targets
            .iter()
            .filter_map(|t| t.labels.get("job").map(String::as_str))
            .collect();
        ensure!(jobs == wanted, "jobs {jobs:?}");
        ensure!(targets.len() == 17, "{} targets", targets.len());
        Ok(())
    })
    .await?;

    // The read replica streams from the primary, each watched by its own
    // exporter (job postgres, told apart by role), and the catalog reads
    // from it.
    for (query, want) in [
        (
            r#"pg_up{job="postgres", role="primary", instance="postgres"}"#,
            1.0,
        ),
        (
            r#"pg_up{job="postgres", role="replica", instance="postgres-replica"}"#,
            1.0,
        ),
        (
            r#"pg_replica_in_recovery{job="postgres", role="replica"}"#,
            1.0,
        ),
        (
            r#"pg_replication_standbys_streaming{job="postgres", role="primary"}"#,
            1.0,
        ),
        // Orders is one service scaled to three: Prometheus and both
        // gateways find all three replicas behind its name, by DNS.
        (r#"count(up{job="orders"} == 1)"#, 3.0),
        (
            r#"count(upstream_endpoints{job="gateway", peer_service="orders", state="healthy"} == 3)"#,
            2.0,
        ),
        // Both catalog replicas were given the replica and read from it.
        (
            r#"count(db_client_replica_in_use{job="catalog"} == 1)"#,
            2.0,
        ),
    ] {
        eventually(&format!("{query} == {want}"), UP_WITHIN, || async {
            let value = prometheus.query_scalar(query).await?;
            ensure!(value == want, "it is {value}");
            Ok(())
        })
        .await?;
    }

    // Every rule file of alerts/compressed is loaded.
    let groups: serde_json::Value = http
        .get(format!("http://127.0.0.1:{}/api/v1/rules", ports.1))
        .send()
        .await?
        .json()
        .await?;
    let loaded = groups["data"]["groups"].as_array().map_or(0, Vec::len);
    let mut expected = 0;
    for entry in std::fs::read_dir(repo_root().join("alerts/compressed"))? {
        let text = std::fs::read_to_string(entry?.path())?;
        expected += text
            .lines()
            .filter(|l| l.trim_start().starts_with("- name:"))
            .count();
    }
    assert_eq!(
        loaded, expected,
        "rule groups loaded vs in alerts/compressed"
    );

    // The load generator's traffic shows at the gateway.
    eventually("loadgen traffic in http_server_request_duration_seconds", UP_WITHIN, || async {
        let rate = prometheus
            .query(r#"sum(rate(http_server_request_duration_seconds_count{job="gateway",http_route="/api/products"}[10s]))"#)
            .await?;
        let value = rate.first().map_or(0.0, |s| s.value);
        ensure!(value > 1.0, "gateway product-list rate {value}/s");
        Ok(())
    })
    .await?;

    // Both gateways share Redis: each reads the shared catalog cache and
    // decides the rate limit there, and neither falls back.
    eventually("both gateways to use Redis", UP_WITHIN, || async {
        let instances = prometheus
            .query(r#"sum by (instance) (increase(catalog_cache_lookups_total{job="gateway", level="shared", result=~"hit|miss"}[30s])) > 0"#)
            .await?;
        ensure!(instances.len() == 2, "gateways reading Redis: {instances:?}");
        let fallbacks = prometheus
            .query_scalar(r#"sum(increase(degraded_responses_total{job="gateway", reason=~"local_rate_limit|shared_cache_unavailable"}[30s]))"#)
            .await?;
        ensure!(fallbacks == 0.0, "{fallbacks} answers without Redis");
        Ok(())
    })
    .await?;

    // Alerts flow to Alertmanager: the Watchdog always fires.
    eventually("the Watchdog alert in Alertmanager", UP_WITHIN, || async {
        let alerts: serde_json::Value = http
            .get(format!("http://127.0.0.1:{}/api/v2/alerts", ports.2))
            .send()
            .await?
            .json()
            .await?;
        let names: Vec<&str> = alerts
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x["labels"]["alertname"].as_str())
                    .collect()
            })
            .unwrap_or_default();
        ensure!(
            names.contains(&"Watchdog"),
            "alerts in Alertmanager: {names:?}"
        );
        Ok(())
    })
    .await?;

    // The shop answers through the published port (the edge).
    let products = http
        .get(format!("http://127.0.0.1:{}/api/products", ports.0))
        .send()
        .await?;
    assert!(products.status().is_success());

    // And it all goes away again.
    let project = demo.project.clone();
    drop(demo);
    let left = Command::new("docker")
        .args([
            "ps",
            "-aq",
            "--filter",
            &format!("label=com.docker.compose.project={project}"),
        ])
        .output()?;
    assert!(
        left.stdout.is_empty(),
        "containers left behind: {}",
        String::from_utf8_lossy(&left.stdout)
    );
    Ok(())
}
