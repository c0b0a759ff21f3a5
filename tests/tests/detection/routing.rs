//! Routing: Alertmanager with the repository's routing configuration
//! (compose/alertmanager/alertmanager.yml), its receivers pointed at webhooks
//! this test serves. Alerts posted to its API must reach the receiver their
//! severity names, and a consequence must wait while its cause fires.
//!
//! Then the watchers are watched, live: a Prometheus with the compressed rules,
//! scraping itself and that Alertmanager every second, must fire
//! AlertmanagerNotificationsFailing once the webhooks are gone,
//! PrometheusRuleEvaluationFailures once a rule that cannot be evaluated is
//! loaded, and PrometheusConfigReloadFailed once an invalid prometheus.yml
//! is reloaded.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail, ensure};
use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::post;
use faultline_tests::eventually;
use faultline_tests::images::{ALERTMANAGER, PROMETHEUS};
use faultline_tests::prometheus::PrometheusClient;
use faultline_tests::stack::{Network, Prometheus, log_to_stderr, prometheus_config};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{Value as JsonValue, json};
use serde_yaml_ng::{Mapping, Value as Yaml};
use testcontainers::bollard::exec::{CreateExecOptions, StartExecResults};
use testcontainers::core::client::docker_client_instance;
use testcontainers::core::{ContainerPort, Host, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, GenericImage, ImageExt};
use tokio::sync::oneshot;

use crate::assets;
use crate::preflight;

/// The receivers of the routing configuration that get a webhook here; the
/// fourth, `nowhere`, must never have one.
const RECEIVERS: [&str; 3] = ["page", "ticket", "deadmansswitch"];
/// Alertmanager's port.
const ALERTMANAGER_PORT: u16 = 9093;
/// How long one routing step may take: group_wait and group_interval are 1 s
/// in the test.
const ROUTED_WITHIN: Duration = Duration::from_secs(15);
/// How long the monitoring alerts get to fire: at the compressed scale a 5m
/// window is 5 s and `for: 10m` is 10 s, after a few scrapes.
const FIRING_WITHIN: Duration = Duration::from_secs(45);
/// Where Prometheus reads its rule files in the container.
const RULES_DIR: &str = "/etc/prometheus/rules";

/// One alert as a webhook received it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Delivery {
    /// The receiver, from the webhook's path.
    receiver: String,
    alertname: String,
    /// `firing` or `resolved`.
    status: String,
}

/// The webhooks of every receiver: one HTTP server in the test process, one
/// path per receiver, reached from the containers as host.docker.internal.
#[derive(Debug)]
struct Webhooks {
    port: u16,
    deliveries: Arc<Mutex<Vec<Delivery>>>,
    stop: Option<oneshot::Sender<()>>,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn receive(
    State(deliveries): State<Arc<Mutex<Vec<Delivery>>>>,
    Path(receiver): Path<String>,
    Json(body): Json<JsonValue>,
) -> StatusCode {
    let alerts = body["alerts"].as_array().cloned().unwrap_or_default();
    let Ok(mut deliveries) = deliveries.lock() else {
        return StatusCode::INTERNAL_SERVER_ERROR;
    };
    for alert in alerts {
        deliveries.push(Delivery {
            receiver: receiver.clone(),
            alertname: alert["labels"]["alertname"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            status: alert["status"].as_str().unwrap_or_default().to_owned(),
        });
    }
    StatusCode::OK
}

impl Webhooks {
    async fn start() -> Result<Self> {
        let listener = tokio::net::TcpListener::bind("0.0.0.0:0").await?;
        let port = listener.local_addr()?.port();
        let deliveries = Arc::new(Mutex::new(Vec::new()));
        let app = axum::Router::new()
            .route("/{receiver}", post(receive))
            .with_state(Arc::clone(&deliveries));
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stopped.await;
                })
                .await
        });
        Ok(Self {
            port,
            deliveries,
            stop: Some(stop),
            server,
        })
    }

    fn base_url(&self) -> String {
        format!("http://host.docker.internal:{}", self.port)
    }

    fn deliveries(&self) -> Vec<Delivery> {
        self.deliveries
            .lock()
            .map(|d| d.clone())
            .unwrap_or_default()
    }

    /// The receivers `alertname` reached with `status`.
    fn receivers_of(&self, alertname: &str, status: &str) -> Vec<String> {
        let mut receivers: Vec<String> = self
            .deliveries()
            .into_iter()
            .filter(|d| d.alertname == alertname && d.status == status)
            .map(|d| d.receiver)
            .collect();
        receivers.sort();
        receivers.dedup();
        receivers
    }

    /// Stops listening and closes every connection: from now on, Alertmanager's
    /// webhook notifications fail.
    async fn stop(mut self) -> Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(10), &mut self.server)
            .await
            .context("the webhook server did not stop within 10 s")???;
        Ok(())
    }
}

/// The repository's routing configuration, with a webhook for each receiver
/// in [`RECEIVERS`] and the grouping timers at 1 s, so that a test waits
/// seconds rather than the demo's 5 s and 30 s. Routes, receivers and
/// inhibitions are the file's.
fn alertmanager_config(webhooks_base_url: &str) -> Result<String> {
    let file = assets::repo_root().join("compose/alertmanager/alertmanager.yml");
    let text =
        std::fs::read_to_string(&file).with_context(|| format!("read {}", file.display()))?;
    let mut config: Yaml = serde_yaml_ng::from_str(&text).context("parse alertmanager.yml")?;
    let receivers = config
        .get_mut("receivers")
        .and_then(Yaml::as_sequence_mut)
        .context("alertmanager.yml has no receivers")?;
    let mut found = Vec::new();
    for receiver in receivers.iter_mut() {
        let name = receiver["name"].as_str().unwrap_or_default().to_owned();
        let mapping = receiver
            .as_mapping_mut()
            .context("a receiver is not a mapping")?;
        let integrations: Vec<String> = mapping
            .keys()
            .filter_map(Yaml::as_str)
            .filter(|key| key.ends_with("_configs"))
            .map(str::to_owned)
            .collect();
        ensure!(
            integrations.is_empty(),
            "receiver {name} has integrations in the repository ({integrations:?}); the demo sends nothing"
        );
        if RECEIVERS.contains(&name.as_str()) {
            let mut webhook = Mapping::new();
            webhook.insert("url".into(), format!("{webhooks_base_url}/{name}").into());
            webhook.insert("send_resolved".into(), true.into());
            mapping.insert(
                "webhook_configs".into(),
                Yaml::Sequence(vec![Yaml::Mapping(webhook)]),
            );
            found.push(name);
        }
    }
    found.sort_unstable();
    let mut wanted = RECEIVERS.map(str::to_owned).to_vec();
    wanted.sort_unstable();
    ensure!(
        found == wanted,
        "alertmanager.yml has receivers {found:?}, the test expects {wanted:?}"
    );
    let route = config
        .get_mut("route")
        .context("alertmanager.yml has no route")?;
    fast_timers(route, true)?;
    Ok(serde_yaml_ng::to_string(&config)?)
}

/// Sets group_wait (unless 0s) and group_interval to 1 s on `route` and its
/// children; the root always gets both.
fn fast_timers(route: &mut Yaml, root: bool) -> Result<()> {
    let mapping = route.as_mapping_mut().context("a route is not a mapping")?;
    let zero_wait = mapping.get("group_wait").and_then(Yaml::as_str) == Some("0s");
    if (root || mapping.contains_key("group_wait")) && !zero_wait {
        mapping.insert("group_wait".into(), "1s".into());
    }
    if root || mapping.contains_key("group_interval") {
        mapping.insert("group_interval".into(), "1s".into());
    }
    if let Some(children) = mapping.get_mut("routes").and_then(Yaml::as_sequence_mut) {
        for child in children {
            fast_timers(child, false)?;
        }
    }
    Ok(())
}

/// Alertmanager on `network`, with `config`; it reaches the test's webhooks
/// as host.docker.internal.
async fn start_alertmanager(
    network: &Network,
    host: &str,
    config: &str,
) -> Result<ContainerAsync<GenericImage>> {
    GenericImage::new(ALERTMANAGER.name, ALERTMANAGER.tag)
        .with_exposed_port(ContainerPort::Tcp(ALERTMANAGER_PORT))
        .with_wait_for(WaitFor::message_on_stderr("Listening on"))
        .with_network(network.name())
        .with_container_name(host)
        .with_labels(network.labels())
        .with_host("host.docker.internal", Host::HostGateway)
        .with_log_consumer(log_to_stderr(host))
        .with_copy_to(
            "/etc/alertmanager/alertmanager.yml",
            config.as_bytes().to_vec(),
        )
        .with_startup_timeout(Duration::from_secs(30))
        .start()
        .await
        .with_context(|| format!("cannot start Alertmanager container {host}"))
}

/// Talks to Alertmanager's API v2.
#[derive(Debug, Clone)]
struct Alertmanager {
    base_url: String,
    http: reqwest::Client,
    /// When every posted alert started: a resolution needs a start before it.
    started: SystemTime,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct AlertStatus {
    state: String,
    #[serde(default)]
    inhibited_by: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct ReceiverName {
    name: String,
}

#[derive(Debug, Deserialize)]
struct ListedAlert {
    labels: BTreeMap<String, String>,
    status: AlertStatus,
    receivers: Vec<ReceiverName>,
}

fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_millis(time).to_string()
}

impl Alertmanager {
    /// Posts alerts, each a set of labels, firing.
    async fn fire(&self, alerts: &[&[(&str, &str)]]) -> Result<()> {
        self.post(alerts, None).await
    }

    /// Posts alerts as resolved now.
    async fn resolve(&self, alerts: &[&[(&str, &str)]]) -> Result<()> {
        self.post(alerts, Some(SystemTime::now())).await
    }

    async fn post(&self, alerts: &[&[(&str, &str)]], ends: Option<SystemTime>) -> Result<()> {
        let body: Vec<JsonValue> = alerts
            .iter()
            .map(|labels| {
                let labels: BTreeMap<&str, &str> = labels.iter().copied().collect();
                let mut alert = json!({
                    "labels": labels,
                    "annotations": {"summary": "posted by the routing test"},
                    "startsAt": rfc3339(self.started),
                });
                if let Some(ends) = ends {
                    alert["endsAt"] = rfc3339(ends).into();
                }
                alert
            })
            .collect();
        self.http
            .post(format!("{}/api/v2/alerts", self.base_url))
            .json(&body)
            .send()
            .await?
            .error_for_status()
            .context("POST /api/v2/alerts")?;
        Ok(())
    }

    /// The alerts Alertmanager holds now, suppressed ones included.
    async fn alerts(&self) -> Result<Vec<ListedAlert>> {
        Ok(self
            .http
            .get(format!("{}/api/v2/alerts", self.base_url))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?)
    }

    async fn alert(&self, alertname: &str) -> Result<ListedAlert> {
        self.alerts()
            .await?
            .into_iter()
            .find(|a| a.labels.get("alertname").map(String::as_str) == Some(alertname))
            .with_context(|| format!("Alertmanager does not hold {alertname}"))
    }
}

/// Writes `content` to `path` in the container, as root (files copied in at
/// creation are root's, and Prometheus runs as its own user).
async fn write_as_root(container_id: &str, path: &str, content: &str) -> Result<()> {
    let docker = docker_client_instance().await?;
    let exec = docker
        .create_exec(
            container_id,
            CreateExecOptions {
                cmd: Some(vec![
                    "sh".to_owned(),
                    "-c".to_owned(),
                    "printf '%s' \"$CONTENT\" > \"$TARGET\"".to_owned(),
                ]),
                env: Some(vec![format!("CONTENT={content}"), format!("TARGET={path}")]),
                user: Some("root".to_owned()),
                attach_stdout: Some(true),
                attach_stderr: Some(true),
                ..CreateExecOptions::default()
            },
        )
        .await
        .with_context(|| format!("exec in {container_id}"))?;
    let mut output = String::new();
    if let StartExecResults::Attached {
        output: mut stream, ..
    } = docker.start_exec(&exec.id, None).await?
    {
        while let Some(chunk) = stream.next().await {
            output.push_str(&chunk?.to_string());
        }
    }
    let exit_code = eventually("the exec to finish", Duration::from_secs(10), || async {
        let inspect = docker.inspect_exec(&exec.id).await?;
        match (inspect.running, inspect.exit_code) {
            (Some(false), Some(code)) => Ok(code),
            _ => bail!("still running"),
        }
    })
    .await?;
    ensure!(
        exit_code == 0,
        "writing {path} exited {exit_code}: {output}"
    );
    Ok(())
}

/// `POST /-/reload`; returns the status and body.
async fn reload(http: &reqwest::Client, prometheus: &PrometheusClient) -> Result<(u16, String)> {
    let response = http
        .post(format!("{}/-/reload", prometheus.base_url()))
        .send()
        .await?;
    let status = response.status().as_u16();
    Ok((status, response.text().await?))
}

/// A rule Prometheus loads but cannot evaluate: with two targets, `up` has two
/// series on each side of a match on no label at all (many-to-many).
const BROKEN_RULES: &str = "groups:
  - name: broken
    rules:
      - record: faultline_test:up:many_to_many
        expr: up * on () up
";

/// A prometheus.yml Prometheus refuses: an unknown field.
const BROKEN_CONFIG: &str = "global:
  scrape_interval: 1s
scrape_configs:
  - job_name: prometheus
    static_configs:
      - targets: ['localhost:9090']
    no_such_field: true
";

#[tokio::test(flavor = "multi_thread")]
async fn alerts_are_routed_inhibited_and_the_monitoring_pipeline_is_watched() -> Result<()> {
    preflight(&[ALERTMANAGER, PROMETHEUS]).await?;
    let started = Instant::now();
    let http = faultline_tests::http_client()?;
    let webhooks = Webhooks::start().await?;
    let network = Network::new("detection_routing");
    let am_host = network.host("alertmanager");

    // Prometheus with the compressed rules, scraping itself and Alertmanager
    // every second (the rule_files glob also takes the broken file, later).
    let mut prometheus_yml = prometheus_config(
        Duration::from_secs(1),
        &[
            ("prometheus", vec!["localhost:9090".to_owned()]),
            (
                "alertmanager",
                vec![format!("{am_host}:{ALERTMANAGER_PORT}")],
            ),
        ],
    );
    prometheus_yml.push_str(&format!("rule_files:\n  - {RULES_DIR}/*.rules.yml\n"));
    let rules: Vec<(String, String)> = assets::files_in("alerts/compressed", ".rules.yml")?
        .into_iter()
        .map(|file| (format!("{RULES_DIR}/{}", file.name), file.text))
        .collect();
    let files: Vec<(&str, String)> = rules.iter().map(|(p, t)| (p.as_str(), t.clone())).collect();
    let am_config = alertmanager_config(&webhooks.base_url())?;
    let prometheus_host = network.host("prometheus");
    let (alertmanager, prometheus) = tokio::try_join!(
        start_alertmanager(&network, &am_host, &am_config),
        Prometheus::start(&network, &prometheus_host, &prometheus_yml, &files),
    )?;
    let am = Alertmanager {
        base_url: format!(
            "http://127.0.0.1:{}",
            alertmanager.get_host_port_ipv4(ALERTMANAGER_PORT).await?
        ),
        http: http.clone(),
        started: SystemTime::now(),
    };
    eprintln!(
        "Alertmanager and Prometheus up after {:.1?}",
        started.elapsed()
    );

    // --- Routing by severity -------------------------------------------------
    let watchdog: &[(&str, &str)] = &[("alertname", "Watchdog"), ("severity", "info")];
    let page: &[(&str, &str)] = &[
        ("alertname", "ErrorBudgetBurnFast"),
        ("severity", "page"),
        ("slo", "checkout-availability"),
    ];
    let ticket: &[(&str, &str)] = &[
        ("alertname", "RateLimitingSurge"),
        ("severity", "ticket"),
        ("job", "gateway"),
    ];
    let info: &[(&str, &str)] = &[("alertname", "SomethingToKnow"), ("severity", "info")];
    let database: &[(&str, &str)] = &[("alertname", "DatabaseUnavailable"), ("severity", "page")];
    am.fire(&[watchdog, page, ticket, info, database]).await?;
    eventually("each alert at its receiver", ROUTED_WITHIN, || async {
        let got = |name: &str| webhooks.receivers_of(name, "firing");
        ensure!(
            got("Watchdog") == ["deadmansswitch"]
                && got("ErrorBudgetBurnFast") == ["page"]
                && got("DatabaseUnavailable") == ["page"]
                && got("RateLimitingSurge") == ["ticket"],
            "deliveries so far: {:?}",
            webhooks.deliveries()
        );
        Ok(())
    })
    .await?;
    // Info goes nowhere: Alertmanager routes it to the receiver without
    // integrations, and no webhook saw it.
    let routed = am.alert("SomethingToKnow").await?;
    let receivers: Vec<&str> = routed.receivers.iter().map(|r| r.name.as_str()).collect();
    ensure!(
        receivers == ["nowhere"],
        "an info alert was routed to {receivers:?}"
    );
    ensure!(
        webhooks
            .receivers_of("SomethingToKnow", "firing")
            .is_empty(),
        "an info alert reached a webhook: {:?}",
        webhooks.deliveries()
    );
    eprintln!("routed by severity after {:.1?}", started.elapsed());

    // --- Inhibition ----------------------------------------------------------
    // DatabaseUnavailable fires: DbPoolSaturated is held back, while another
    // ticket posted with it (TargetDown) is delivered.
    let pool: &[(&str, &str)] = &[
        ("alertname", "DbPoolSaturated"),
        ("severity", "ticket"),
        ("job", "orders"),
        ("instance", "orders-1:9000"),
    ];
    let target_down: &[(&str, &str)] = &[
        ("alertname", "TargetDown"),
        ("severity", "ticket"),
        ("job", "payments"),
        ("instance", "payments:9000"),
        ("service", "payments"),
    ];
    am.fire(&[pool, target_down]).await?;
    eventually(
        "DbPoolSaturated to be suppressed, and TargetDown delivered",
        ROUTED_WITHIN,
        || async {
            let alert = am.alert("DbPoolSaturated").await?;
            ensure!(
                alert.status.state == "suppressed" && !alert.status.inhibited_by.is_empty(),
                "DbPoolSaturated is {:?}",
                alert.status
            );
            ensure!(
                webhooks.receivers_of("TargetDown", "firing") == ["ticket"],
                "deliveries so far: {:?}",
                webhooks.deliveries()
            );
            Ok(())
        },
    )
    .await?;
    ensure!(
        webhooks
            .receivers_of("DbPoolSaturated", "firing")
            .is_empty(),
        "DbPoolSaturated was delivered while DatabaseUnavailable fires: {:?}",
        webhooks.deliveries()
    );
    // Once the cause resolves, the consequence is delivered.
    am.resolve(&[database]).await?;
    eventually(
        "DbPoolSaturated at the ticket receiver once DatabaseUnavailable resolved",
        ROUTED_WITHIN,
        || async {
            ensure!(
                webhooks.receivers_of("DbPoolSaturated", "firing") == ["ticket"],
                "deliveries so far: {:?}",
                webhooks.deliveries()
            );
            Ok(())
        },
    )
    .await?;
    eprintln!("inhibition checked after {:.1?}", started.elapsed());

    // --- The watchers, live --------------------------------------------------
    // A rule that fails at every evaluation, loaded by a reload.
    let client = &prometheus.client;
    write_as_root(
        prometheus.container.id(),
        &format!("{RULES_DIR}/broken.rules.yml"),
        BROKEN_RULES,
    )
    .await?;
    let (status, body) = reload(&http, client).await?;
    ensure!(
        status == 200,
        "reloading a valid configuration answered {status}: {body}"
    );
    // The webhooks go away. Alertmanager counts a failed notification once
    // per flush of a group, and a flush retries for 10 s at least whatever
    // the group_interval, a real-time pace the compressed 5-second window
    // would miss between flushes. So new alerts keep coming, each its own
    // group (another job), one a second, as on a busy Alertmanager: once the
    // first flush gives up, a notification fails every second.
    webhooks.stop().await?;
    let probes = {
        let am = am.clone();
        tokio::spawn(async move {
            let mut pace = tokio::time::interval(Duration::from_secs(1));
            for n in 0_u32.. {
                pace.tick().await;
                let job = format!("probe-{n}");
                let unheard: &[(&str, &str)] = &[
                    ("alertname", "NobodyListens"),
                    ("severity", "ticket"),
                    ("job", &job),
                ];
                if let Err(err) = am.fire(&[unheard]).await {
                    eprintln!("posting {job} failed: {err:#}");
                }
            }
        })
    };
    // An invalid prometheus.yml: the reload fails, and Prometheus keeps the
    // configuration it had (the broken rule included).
    write_as_root(
        prometheus.container.id(),
        "/etc/prometheus/prometheus.yml",
        BROKEN_CONFIG,
    )
    .await?;
    let (status, body) = reload(&http, client).await?;
    ensure!(
        status >= 400,
        "reloading an invalid configuration answered {status}: {body}"
    );
    let broken_at = Instant::now();

    // Each alert in turn, within one deadline.
    let deadline = broken_at + FIRING_WITHIN;
    let expected = [
        ("AlertmanagerNotificationsFailing", "integration", "webhook"),
        (
            "PrometheusRuleEvaluationFailures",
            "rule_group",
            "broken.rules.yml",
        ),
        ("PrometheusConfigReloadFailed", "job", "prometheus"),
    ];
    let mut outcome = Ok(());
    for (name, label, value) in expected {
        let left = deadline.saturating_duration_since(Instant::now());
        let fired = eventually(&format!("{name} to fire"), left, || async {
            let alerts = client.alerts().await?;
            ensure!(
                alerts.iter().any(|a| a.state == "firing"
                    && a.labels.get("alertname").map(String::as_str) == Some(name)
                    && a.labels.get(label).is_some_and(|v| v.contains(value))),
                "alerts now: {:?}",
                alerts
                    .iter()
                    .map(|a| (a.labels.get("alertname"), &a.state))
                    .collect::<Vec<_>>()
            );
            Ok(())
        })
        .await;
        match fired {
            Ok(()) => eprintln!(
                "{name} fired {:.1?} after the breakage",
                broken_at.elapsed()
            ),
            Err(err) => {
                outcome = Err(err);
                break;
            }
        }
    }
    probes.abort();
    if let Err(err) = outcome {
        let series = client
            .query("alertmanager_notifications_failed_total > 0 or prometheus_rule_evaluation_failures_total > 0 or prometheus_config_last_reload_successful")
            .await;
        bail!("{err:#}\nthe series behind them: {series:#?}");
    }
    eprintln!("the whole test took {:.1?}", started.elapsed());
    drop(alertmanager);
    Ok(())
}
