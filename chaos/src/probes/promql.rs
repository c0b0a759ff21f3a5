//! `type = "promql"`: an instant query against a tolerance.

use serde_json::json;

use super::prometheus::PrometheusClient;
use super::{Observation, Probe, ProbeContext, ProbeError};
use crate::experiment::Tolerance;

#[derive(Debug, Clone)]
pub struct PromqlCheck {
    pub client: PrometheusClient,
    pub query: String,
    pub tolerance: Tolerance,
}

#[async_trait::async_trait]
impl Probe for PromqlCheck {
    fn kind(&self) -> &'static str {
        "promql"
    }

    async fn check(&self, _cx: &ProbeContext) -> Result<Observation, ProbeError> {
        let samples = self.client.query(&self.query).await?;
        let values: Vec<f64> = samples.iter().map(|s| s.value).collect();
        let ok = self.tolerance.accepts_all(&values);
        let shown: Vec<String> = values.iter().take(5).map(|v| format!("{v}")).collect();
        let detail = format!(
            "{} sample(s) [{}{}], expected {}",
            values.len(),
            shown.join(", "),
            if values.len() > 5 { ", ..." } else { "" },
            self.tolerance
        );
        Ok(Observation::new(ok, json!(samples), detail))
    }
}
