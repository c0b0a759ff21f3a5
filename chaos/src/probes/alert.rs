//! `type = "alert"`: whether an alert is pending, firing, or neither.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::json;

use super::prometheus::{ActiveAlert, AlertSource};
use super::{Observation, Probe, ProbeContext, ProbeError};
use crate::experiment::AlertState;

#[derive(Debug, Clone)]
pub struct AlertCheck {
    pub source: Arc<dyn AlertSource>,
    pub alert: String,
    pub state: AlertState,
    pub labels: BTreeMap<String, String>,
}

/// Whether an active alert is `name` with every label in `labels`.
pub fn matches(alert: &ActiveAlert, name: &str, labels: &BTreeMap<String, String>) -> bool {
    alert.name == name && labels.iter().all(|(k, v)| alert.labels.get(k) == Some(v))
}

#[async_trait::async_trait]
impl Probe for AlertCheck {
    fn kind(&self) -> &'static str {
        "alert"
    }

    async fn check(&self, _cx: &ProbeContext) -> Result<Observation, ProbeError> {
        let alerts = self.source.active_alerts().await?;
        let states: Vec<&str> = alerts
            .iter()
            .filter(|a| matches(a, &self.alert, &self.labels))
            .map(|a| a.state.as_str())
            .collect();
        let firing = states.contains(&"firing");
        let pending = states.contains(&"pending");
        let ok = match self.state {
            AlertState::Firing => firing,
            AlertState::Pending => pending,
            AlertState::Active => firing || pending,
            AlertState::Inactive => !firing && !pending,
        };
        let now = if firing {
            "firing"
        } else if pending {
            "pending"
        } else {
            "inactive"
        };
        Ok(Observation::new(
            ok,
            json!({"state": now}),
            format!("{} is {now}", self.alert),
        ))
    }
}

/// Holds while no alert matching `alert` (any name when `None`) and every
/// label of `labels` is in `state`: an `[[abort_when]]` limit. The Watchdog
/// and the alerts named in `ignore` (expected or allowed by the experiment)
/// never count.
#[derive(Debug, Clone)]
pub struct NoAlert {
    pub source: Arc<dyn AlertSource>,
    pub alert: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub state: AlertState,
    pub ignore: Vec<String>,
}

impl NoAlert {
    fn counts(&self, alert: &ActiveAlert) -> bool {
        let in_state = match self.state {
            AlertState::Firing => alert.state == "firing",
            AlertState::Pending => alert.state == "pending",
            AlertState::Active => alert.state == "firing" || alert.state == "pending",
            AlertState::Inactive => false,
        };
        in_state
            && alert.name != crate::experiment::WATCHDOG_ALERT
            && !self.ignore.contains(&alert.name)
            && self.alert.as_ref().is_none_or(|name| &alert.name == name)
            && self
                .labels
                .iter()
                .all(|(k, v)| alert.labels.get(k) == Some(v))
    }
}

#[async_trait::async_trait]
impl Probe for NoAlert {
    fn kind(&self) -> &'static str {
        "alert"
    }

    async fn check(&self, _cx: &ProbeContext) -> Result<Observation, ProbeError> {
        let alerts = self.source.active_alerts().await?;
        let hits: Vec<&ActiveAlert> = alerts.iter().filter(|a| self.counts(a)).collect();
        let described: Vec<String> = hits
            .iter()
            .map(|a| {
                let labels: Vec<String> = a
                    .labels
                    .iter()
                    .filter(|(k, _)| k.as_str() != "alertname")
                    .map(|(k, v)| format!("{k}={v:?}"))
                    .collect();
                format!("{}{{{}}} is {}", a.name, labels.join(", "), a.state)
            })
            .collect();
        let detail = if described.is_empty() {
            "no matching alert".to_owned()
        } else {
            described.join("; ")
        };
        Ok(Observation::new(
            hits.is_empty(),
            json!(
                hits.iter()
                    .map(|a| json!({"alert": a.name, "state": a.state, "labels": a.labels}))
                    .collect::<Vec<_>>()
            ),
            detail,
        ))
    }
}
