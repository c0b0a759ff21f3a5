//! `type = "http"`: a request's status, and optionally headers and body text.

use std::collections::BTreeMap;

use faultline_signal::error_chain;
use serde_json::json;

use super::{Observation, Probe, ProbeContext, ProbeError};
use crate::environment::Secret;
use crate::experiment::Statuses;
use crate::identity::{Bearer, REQUEST_TOKEN_TTL};

#[derive(Debug, Clone)]
pub struct HttpCheck {
    pub http: reqwest::Client,
    pub method: reqwest::Method,
    pub url: String,
    pub status: Statuses,
    /// Expected answer headers; the value `"*"` accepts any value.
    pub headers: BTreeMap<String, String>,
    /// Sent with the request.
    pub request_headers: BTreeMap<String, String>,
    /// Sent as `Authorization: Bearer` (the fault admin token, for a probe
    /// of a fault admin API).
    pub bearer: Option<Secret>,
    /// The probe's `bearer`: a token minted for its subject at each
    /// evaluation, sent instead of `bearer`.
    pub mint: Option<Bearer>,
    pub body_contains: Option<String>,
}

#[async_trait::async_trait]
impl Probe for HttpCheck {
    fn kind(&self) -> &'static str {
        "http"
    }

    async fn check(&self, _cx: &ProbeContext) -> Result<Observation, ProbeError> {
        let mut request = self.http.request(self.method.clone(), &self.url);
        for (name, value) in &self.request_headers {
            request = request.header(name, value);
        }
        let minted = self
            .mint
            .as_ref()
            .map(|bearer| bearer.mint(REQUEST_TOKEN_TTL))
            .transpose()
            .map_err(|err| ProbeError::Config(err.to_string()))?;
        if let Some(token) = minted.as_ref().or(self.bearer.as_ref()) {
            request = request.bearer_auth(token.expose());
        }
        let response = request.send().await.map_err(|err| {
            ProbeError::Http(format!(
                "{} {}: {}",
                self.method,
                self.url,
                error_chain(&err)
            ))
        })?;
        let status = response.status().as_u16();
        let mut problems = Vec::new();
        if !self.status.accepts(status) {
            problems.push(format!("status {status}, expected {:?}", self.status));
        }
        let mut seen = BTreeMap::new();
        for (name, expected) in &self.headers {
            let actual = response
                .headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let accepted = match actual.as_deref() {
                Some(value) => expected == "*" || value == expected,
                None => false,
            };
            if !accepted {
                problems.push(format!(
                    "header {name} is {actual:?}, expected {expected:?}"
                ));
            }
            seen.insert(name.clone(), actual);
        }
        let body = response.text().await.unwrap_or_default();
        if let Some(needle) = &self.body_contains
            && !body.contains(needle.as_str())
        {
            problems.push(format!("body does not contain {needle:?}"));
        }
        let ok = problems.is_empty();
        let who = self
            .mint
            .as_ref()
            .map(|bearer| format!(" as {}", bearer.subject()))
            .unwrap_or_default();
        let detail = if ok {
            format!("{} {}{who} → {status}", self.method, self.url)
        } else {
            format!("{} {}{who}: {}", self.method, self.url, problems.join("; "))
        };
        Ok(Observation::new(
            ok,
            json!({"status": status, "headers": seen, "body": body.chars().take(200).collect::<String>()}),
            detail,
        ))
    }
}
