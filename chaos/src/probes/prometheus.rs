//! A small client for Prometheus' HTTP API: instant queries and active alerts.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::ProbeError;
use crate::actions::error_chain;

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
