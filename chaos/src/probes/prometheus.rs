//! A small client for Prometheus' HTTP API: instant and range queries, rules
//! and active alerts.

use std::collections::BTreeMap;

use faultline_signal::error_chain;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::ProbeError;

/// One sample of an instant vector.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// An alert Prometheus holds as pending or firing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActiveAlert {
    pub name: String,
    /// `pending` or `firing`.
    pub state: String,
    pub labels: BTreeMap<String, String>,
}

/// One series of a range query.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RangeSeries {
    /// With `__name__`, when the query selects raw series.
    pub labels: BTreeMap<String, String>,
    /// `(unix seconds, value)`, in time order.
    pub samples: Vec<(f64, f64)>,
}

/// A rule Prometheus has loaded (`/api/v1/rules`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadedRule {
    /// The alert's name, or the series a recording rule records.
    pub name: String,
    /// Its expression.
    pub query: String,
    /// An alerting rule (else a recording rule).
    pub alerting: bool,
}

/// Where alerts are read from (Prometheus, or a fake in tests).
#[async_trait::async_trait]
pub trait AlertSource: Send + Sync + std::fmt::Debug {
    async fn active_alerts(&self) -> Result<Vec<ActiveAlert>, ProbeError>;
}

/// A Prometheus server.
#[derive(Debug, Clone)]
pub struct PrometheusClient {
    base: String,
    http: reqwest::Client,
}

#[derive(Deserialize)]
struct Envelope {
    status: String,
    #[serde(default)]
    data: Value,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct VectorItem {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    value: (f64, String),
}

#[derive(Deserialize)]
struct MatrixItem {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    #[serde(default)]
    values: Vec<(f64, String)>,
}

#[derive(Deserialize)]
struct RuleGroupItem {
    #[serde(default)]
    rules: Vec<RuleItem>,
}

#[derive(Deserialize)]
struct RuleItem {
    name: String,
    query: String,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
struct AlertItem {
    #[serde(default)]
    labels: BTreeMap<String, String>,
    state: String,
}

fn number(text: &str) -> f64 {
    match text {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        other => other.parse().unwrap_or(f64::NAN),
    }
}

impl PrometheusClient {
    pub fn new(base: &str, http: reqwest::Client) -> Self {
        Self {
            base: base.trim_end_matches('/').to_owned(),
            http,
        }
    }

    async fn get(&self, path: &str, query: &[(&str, &str)]) -> Result<Value, ProbeError> {
        let url = format!("{}{path}", self.base);
        let failed = |reason: String| ProbeError::Prometheus(format!("GET {url}: {reason}"));
        let response = self
            .http
            .get(&url)
            .query(query)
            .send()
            .await
            .map_err(|err| failed(error_chain(&err)))?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|err| failed(error_chain(&err)))?;
        let envelope: Envelope = serde_json::from_str(&text).map_err(|_| {
            failed(format!(
                "answered {status}: {}",
                text.chars().take(200).collect::<String>()
            ))
        })?;
        if envelope.status != "success" {
            return Err(failed(envelope.error.unwrap_or(envelope.status)));
        }
        Ok(envelope.data)
    }

    /// Runs an instant query; a scalar comes back as one sample without labels.
    pub async fn query(&self, query: &str) -> Result<Vec<Sample>, ProbeError> {
        let data = self.get("/api/v1/query", &[("query", query)]).await?;
        let bad =
            |err: serde_json::Error| ProbeError::Prometheus(format!("unexpected answer: {err}"));
        match data.get("resultType").and_then(Value::as_str) {
            Some("vector") => {
                let items: Vec<VectorItem> =
                    serde_json::from_value(data["result"].clone()).map_err(bad)?;
                Ok(items
                    .into_iter()
                    .map(|item| Sample {
                        labels: item.metric,
                        value: number(&item.value.1),
                    })
                    .collect())
            }
            Some("scalar") => {
                let (_, value): (f64, String) =
                    serde_json::from_value(data["result"].clone()).map_err(bad)?;
                Ok(vec![Sample {
                    labels: BTreeMap::new(),
                    value: number(&value),
                }])
            }
            other => Err(ProbeError::Prometheus(format!(
                "unsupported result type {other:?} (use an instant vector or a scalar)"
            ))),
        }
    }

    /// Runs a range query from `start` to `end` (unix seconds) every `step_s`.
    pub async fn query_range(
        &self,
        query: &str,
        start: f64,
        end: f64,
        step_s: f64,
    ) -> Result<Vec<RangeSeries>, ProbeError> {
        let (start, end, step) = (
            format!("{start:.3}"),
            format!("{end:.3}"),
            format!("{step_s}"),
        );
        let data = self
            .get(
                "/api/v1/query_range",
                &[
                    ("query", query),
                    ("start", &start),
                    ("end", &end),
                    ("step", &step),
                ],
            )
            .await?;
        if data.get("resultType").and_then(Value::as_str) != Some("matrix") {
            return Err(ProbeError::Prometheus(format!(
                "unexpected answer to a range query: {:?}",
                data.get("resultType")
            )));
        }
        let items: Vec<MatrixItem> = serde_json::from_value(data["result"].clone())
            .map_err(|err| ProbeError::Prometheus(format!("unexpected answer: {err}")))?;
        Ok(items
            .into_iter()
            .map(|item| RangeSeries {
                labels: item.metric,
                samples: item
                    .values
                    .iter()
                    .map(|(t, value)| (*t, number(value)))
                    .collect(),
            })
            .collect())
    }

    /// Every rule loaded, alerting and recording (`/api/v1/rules`).
    pub async fn rules(&self) -> Result<Vec<LoadedRule>, ProbeError> {
        let data = self.get("/api/v1/rules", &[]).await?;
        let groups: Vec<RuleGroupItem> = serde_json::from_value(data["groups"].clone())
            .map_err(|err| ProbeError::Prometheus(format!("unexpected answer: {err}")))?;
        Ok(groups
            .into_iter()
            .flat_map(|group| group.rules)
            .map(|rule| LoadedRule {
                alerting: rule.kind == "alerting",
                name: rule.name,
                query: rule.query,
            })
            .collect())
    }

    /// The pending and firing alerts (`/api/v1/alerts`).
    pub async fn alerts(&self) -> Result<Vec<ActiveAlert>, ProbeError> {
        let data = self.get("/api/v1/alerts", &[]).await?;
        let items: Vec<AlertItem> = serde_json::from_value(data["alerts"].clone())
            .map_err(|err| ProbeError::Prometheus(format!("unexpected answer: {err}")))?;
        Ok(items
            .into_iter()
            .map(|item| ActiveAlert {
                name: item.labels.get("alertname").cloned().unwrap_or_default(),
                state: item.state,
                labels: item.labels,
            })
            .collect())
    }
}

#[async_trait::async_trait]
impl AlertSource for PrometheusClient {
    async fn active_alerts(&self) -> Result<Vec<ActiveAlert>, ProbeError> {
        self.alerts().await
    }
}

/// Whether a series' labels carry every wanted label with its value.
pub(crate) fn labels_match(
    labels: &BTreeMap<String, String>,
    wanted: &BTreeMap<String, String>,
) -> bool {
    wanted.iter().all(|(k, v)| labels.get(k) == Some(v))
}
