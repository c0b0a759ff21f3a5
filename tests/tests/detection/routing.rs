//! Routing: Alertmanager with the repository's routing configuration
//! (compose/alertmanager/alertmanager.yml), its receivers pointed at webhooks
//! this test serves. Alerts posted to its API must reach the receiver their
//! severity names, and a consequence must wait while its cause fires.
//!
//! The alerts on Prometheus and Alertmanager themselves are proven by chaos
//! experiments (tests/tests/e2e/chaos.rs, `the_watchers_experiments_pass`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, ensure};
use faultline_tests::alertmanager::{Alertmanager, Webhooks, routing_config};
use faultline_tests::eventually;
use faultline_tests::images::ALERTMANAGER;
use faultline_tests::stack::Network;
use serde::Deserialize;
use serde_json::{Value as JsonValue, json};

use crate::preflight;

/// How long one routing step may take: group_wait and group_interval are 1 s
/// in the test.
const ROUTED_WITHIN: Duration = Duration::from_secs(15);

/// Talks to Alertmanager's API v2.
#[derive(Debug, Clone)]
struct AlertmanagerApi {
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

impl AlertmanagerApi {
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

#[tokio::test(flavor = "multi_thread")]
async fn alerts_are_routed_and_inhibited() -> Result<()> {
    preflight(&[ALERTMANAGER]).await?;
    let started = Instant::now();
    let http = faultline_tests::http_client()?;
    let webhooks = Webhooks::start().await?;
    let network = Network::new("detection_routing");
    let alertmanager = Alertmanager::start(
        &network,
        &network.host("alertmanager"),
        &routing_config(&webhooks.base_url())?,
    )
    .await?;
    let am = AlertmanagerApi {
        base_url: alertmanager.api_url.clone(),
        http: http.clone(),
        started: SystemTime::now(),
    };
    eprintln!("Alertmanager up after {:.1?}", started.elapsed());

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

    // The read replica gone makes its lag moot: ReplicaUnavailable holds
    // ReplicationLagRising back, and is delivered itself.
    let replica_down: &[(&str, &str)] = &[
        ("alertname", "ReplicaUnavailable"),
        ("severity", "ticket"),
        ("job", "postgres"),
    ];
    let lag: &[(&str, &str)] = &[
        ("alertname", "ReplicationLagRising"),
        ("severity", "ticket"),
        ("job", "catalog"),
    ];
    am.fire(&[replica_down, lag]).await?;
    eventually(
        "ReplicationLagRising to be suppressed, and ReplicaUnavailable delivered",
        ROUTED_WITHIN,
        || async {
            let alert = am.alert("ReplicationLagRising").await?;
            ensure!(
                alert.status.state == "suppressed" && !alert.status.inhibited_by.is_empty(),
                "ReplicationLagRising is {:?}",
                alert.status
            );
            ensure!(
                webhooks.receivers_of("ReplicaUnavailable", "firing") == ["ticket"],
                "deliveries so far: {:?}",
                webhooks.deliveries()
            );
            Ok(())
        },
    )
    .await?;
    am.resolve(&[replica_down]).await?;
    eventually(
        "ReplicationLagRising at the ticket receiver once ReplicaUnavailable resolved",
        ROUTED_WITHIN,
        || async {
            ensure!(
                webhooks.receivers_of("ReplicationLagRising", "firing") == ["ticket"],
                "deliveries so far: {:?}",
                webhooks.deliveries()
            );
            Ok(())
        },
    )
    .await?;
    eprintln!("replica inhibition checked after {:.1?}", started.elapsed());

    eprintln!("the whole test took {:.1?}", started.elapsed());
    drop(alertmanager);
    Ok(())
}
