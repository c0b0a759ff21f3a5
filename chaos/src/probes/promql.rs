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

    async fn check(&self, cx: &ProbeContext) -> Result<Observation, ProbeError> {
        let query = expand_fault_range(&self.query, cx, unix_ms_now())?;
        let samples = self.client.query(&query).await?;
        let values: Vec<f64> = samples.iter().map(|s| s.value).collect();
        let ok = self.tolerance.accepts_all(&values);
        let detail = if values.is_empty() && self.tolerance != Tolerance::Empty {
            format!(
                "no data: the query returned no sample, expected {}",
                self.tolerance
            )
        } else {
            let shown: Vec<String> = values.iter().take(5).map(|v| format!("{v}")).collect();
            format!(
                "{} sample(s) [{}{}], expected {}",
                values.len(),
                shown.join(", "),
                if values.len() > 5 { ", ..." } else { "" },
                self.tolerance
            )
        };
        let detail = if query == self.query {
            detail
        } else {
            format!("{detail} (as {query})")
        };
        Ok(Observation::new(ok, json!(samples), detail))
    }

    fn counts_from_the_fault(&self) -> bool {
        self.query.contains(FAULT_RANGE)
    }
}

/// The token a query uses for "the time since the first fault", so that
/// `increase(x[$__fault_range])` counts only what happened under the fault.
pub const FAULT_RANGE: &str = "$__fault_range";

/// `query` with [`FAULT_RANGE`] replaced by the time since the first fault.
pub fn expand_fault_range(
    query: &str,
    cx: &ProbeContext,
    now_unix_ms: u64,
) -> Result<String, ProbeError> {
    if !query.contains(FAULT_RANGE) {
        return Ok(query.to_owned());
    }
    let range = cx.fault_range(now_unix_ms).ok_or_else(|| {
        ProbeError::Config(format!(
            "{FAULT_RANGE} is defined only once a fault has been injected"
        ))
    })?;
    Ok(query.replace(FAULT_RANGE, &range))
}

fn unix_ms_now() -> u64 {
    crate::journal::unix_ms(std::time::SystemTime::now())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fault_range_counts_from_the_first_fault() {
        let mut cx = ProbeContext::default();
        let query = "sum(increase(x[$__fault_range]))";
        assert!(matches!(
            expand_fault_range(query, &cx, 10_000),
            Err(ProbeError::Config(_))
        ));
        cx.fault_start_unix_ms = Some(2_000);
        assert_eq!(
            expand_fault_range(query, &cx, 14_500).ok().as_deref(),
            Some("sum(increase(x[13s]))")
        );
        // Right at the start: one second, never an empty range.
        assert_eq!(
            expand_fault_range(query, &cx, 2_000).ok().as_deref(),
            Some("sum(increase(x[1s]))")
        );
        assert_eq!(expand_fault_range("up", &cx, 0).ok().as_deref(), Some("up"));
    }
}
