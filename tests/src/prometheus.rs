//! A small client for the Prometheus HTTP API (`/api/v1/...`).

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use serde::Deserialize;

/// One element of an instant vector.
#[derive(Debug, Clone, PartialEq)]
pub struct VectorSample {
    pub metric: BTreeMap<String, String>,
    pub value: f64,
}

/// One scrape target as `/api/v1/targets` reports it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Target {
    pub labels: BTreeMap<String, String>,
    pub scrape_url: String,
    pub health: String,
    pub last_error: String,
}

/// One alert as `/api/v1/alerts` reports it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// `pending` or `firing`.
    pub state: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Envelope<T> {
    status: String,
    data: Option<T>,
    error: Option<String>,
    error_type: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct QueryData {
    result_type: String,
    result: serde_json::Value,
}

#[derive(Debug, Deserialize)]
struct RawVectorSample {
    metric: BTreeMap<String, String>,
    value: (f64, String),
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct TargetsData {
    active_targets: Vec<Target>,
}

#[derive(Debug, Deserialize)]
struct AlertsData {
    alerts: Vec<Alert>,
}

/// Talks to one Prometheus server.
#[derive(Debug, Clone)]
pub struct PrometheusClient {
    base_url: String,
    http: reqwest::Client,
}

impl PrometheusClient {
    /// `base_url` like `http://127.0.0.1:9090`.
    pub fn new(base_url: impl Into<String>, http: reqwest::Client) -> Self {
        Self {
            base_url: base_url.into().trim_end_matches('/').to_owned(),
            http,
        }
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Runs an instant query that must return a vector.
    pub async fn query(&self, promql: &str) -> anyhow::Result<Vec<VectorSample>> {
        let data: QueryData = self
            .get("/api/v1/query", &[("query", promql)])
            .await
            .with_context(|| format!("query {promql:?}"))?;
        if data.result_type != "vector" {
            bail!(
                "query {promql:?} returned a {}, not a vector",
                data.result_type
            );
        }
        let raw: Vec<RawVectorSample> = serde_json::from_value(data.result)?;
        raw.into_iter()
            .map(|sample| {
                let value = match sample.value.1.as_str() {
                    "+Inf" => f64::INFINITY,
                    "-Inf" => f64::NEG_INFINITY,
                    other => other
                        .parse()
                        .with_context(|| format!("query {promql:?}: value {other:?}"))?,
                };
                Ok(VectorSample {
                    metric: sample.metric,
                    value,
                })
            })
            .collect()
    }

    /// The single value of a query that must return exactly one sample.
    pub async fn query_scalar(&self, promql: &str) -> anyhow::Result<f64> {
        let samples = self.query(promql).await?;
        match samples.as_slice() {
            [one] => Ok(one.value),
            [] => bail!("query {promql:?} returned no sample"),
            many => bail!("query {promql:?} returned {} samples", many.len()),
        }
    }

    /// The active scrape targets.
    pub async fn targets(&self) -> anyhow::Result<Vec<Target>> {
        let data: TargetsData = self.get("/api/v1/targets", &[("state", "active")]).await?;
        Ok(data.active_targets)
    }

    /// The alerts that are pending or firing now.
    pub async fn alerts(&self) -> anyhow::Result<Vec<Alert>> {
        let data: AlertsData = self.get("/api/v1/alerts", &[]).await?;
        Ok(data.alerts)
    }

    async fn get<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        params: &[(&str, &str)],
    ) -> anyhow::Result<T> {
        let url = format!("{}{path}", self.base_url);
        let response = self
            .http
            .get(&url)
            .query(params)
            .send()
            .await
            .with_context(|| format!("GET {url}"))?;
        let status = response.status();
        let envelope: Envelope<T> = response.json().await.with_context(|| {
            format!("GET {url}: answered {status} with a body that is not the API's JSON")
        })?;
        match (envelope.status.as_str(), envelope.data) {
            ("success", Some(data)) => Ok(data),
            _ => bail!(
                "GET {url}: {status}, {}: {}",
                envelope.error_type.unwrap_or_default(),
                envelope.error.unwrap_or_default()
            ),
        }
    }
}
