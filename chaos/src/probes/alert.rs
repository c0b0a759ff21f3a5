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
