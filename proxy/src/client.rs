//! A typed client for the control API, for this proxy and for a real Toxiproxy.
//!
//! It sticks to what both servers understand: `POST` for updates (Toxiproxy
//! 2.6+ prefers `PATCH` but still takes `POST`), and a `/version` answer that
//! may be JSON (`{"version": "..."}`, Toxiproxy 2.7+ and this proxy) or plain
//! text (older Toxiproxy).
//!
//! The lease methods ([`ToxiproxyClient::renew_toxic_lease`],
//! [`ToxiproxyClient::disable_with_lease`], [`ToxiproxyClient::renew_proxy_lease`])
//! use an extension of this proxy: a real Toxiproxy ignores `lease_ms`, so
//! with it a lease never expires.

use std::collections::BTreeMap;
use std::time::Duration;

// reqwest keeps the useful part, such as "connection refused", in the causes.
use faultline_signal::error_chain;
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use url::Url;

use crate::auth::ApiToken;
use crate::model::{
    ErrorBody, NewProxy, NewToxic, Populated, Proxy, ProxyUpdate, Toxic, ToxicUpdate, VersionInfo,
    lease_millis,
};

/// How long one request may take by default.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a request to the control API failed.
///
/// Each message includes its full cause, so the causes are not chained as sources.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("invalid control API URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("cannot build the HTTP client: {}", error_chain(.0))]
    Build(reqwest::Error),
    #[error("{method} {url} failed: {}", error_chain(.error))]
    Request {
        method: Method,
        url: String,
        error: reqwest::Error,
    },
    #[error("{method} {url} answered {status}: {message}")]
    Api {
        method: Method,
        url: String,
        status: u16,
        message: String,
    },
    #[error("cannot decode the answer to {method} {url}: {error}")]
    Decode {
        method: Method,
        url: String,
        error: serde_json::Error,
    },
}

impl ClientError {
    /// The HTTP status of an error answer.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The proxy or toxic does not exist (404).
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    /// The proxy or toxic exists already (409).
    pub fn is_conflict(&self) -> bool {
        self.status() == Some(409)
    }
}

/// A client for a Toxiproxy-compatible control API.
#[derive(Debug, Clone)]
pub struct ToxiproxyClient {
    base: Url,
    http: reqwest::Client,
    /// Sent as `Authorization: Bearer` on every call, when set.
    token: Option<ApiToken>,
}

impl ToxiproxyClient {
    /// A client for the API at `base_url`, e.g. `http://127.0.0.1:8474`.
    pub fn new(base_url: &str) -> Result<Self, ClientError> {
        faultline_signal::install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(DEFAULT_REQUEST_TIMEOUT)
            .build()
            .map_err(ClientError::Build)?;
        Self::with_http_client(base_url, http)
    }

    /// A client using the given HTTP client (for custom timeouts or TLS).
    pub fn with_http_client(base_url: &str, http: reqwest::Client) -> Result<Self, ClientError> {
        let invalid = |reason: &str| ClientError::InvalidUrl {
            url: base_url.to_owned(),
            reason: reason.to_owned(),
        };
        let base = Url::parse(base_url).map_err(|err| invalid(&err.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(invalid("the scheme must be http or https"));
        }
        if base.cannot_be_a_base() {
            return Err(invalid("it cannot be a base URL"));
        }
        Ok(Self {
            base,
            http,
            token: None,
        })
    }

    /// The same client, sending `token` as `Authorization: Bearer` on every
    /// call (for this proxy's `--api-token`; a real Toxiproxy ignores it).
    #[must_use]
    pub fn with_api_token(mut self, token: ApiToken) -> Self {
        self.token = Some(token);
        self
    }

    /// The token the client sends, if any.
    pub fn api_token(&self) -> Option<&ApiToken> {
        self.token.as_ref()
    }

    /// The API's base URL.
    pub fn base_url(&self) -> &Url {
        &self.base
    }

    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    async fn send(
        &self,
        method: Method,
        segments: &[&str],
        body: Option<&(dyn ErasedBody + Sync)>,
    ) -> Result<(StatusCode, String), ClientError> {
        let url = self.url(segments);
        let mut request = self.http.request(method.clone(), url.clone());
        if let Some(token) = &self.token {
            request = request.bearer_auth(token.expose());
        }
        if let Some(body) = body {
            let json = body.to_json().map_err(|error| ClientError::Decode {
                method: method.clone(),
                url: url.to_string(),
                error,
            })?;
            request = request
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(json);
        }
        let failed = |error| ClientError::Request {
            method: method.clone(),
            url: url.to_string(),
            error,
        };
        let response = request.send().await.map_err(failed)?;
        let status = response.status();
        let text = response.text().await.map_err(failed)?;
        if !status.is_success() {
            let message = serde_json::from_str::<ErrorBody>(&text)
                .map(|body| body.error)
                .unwrap_or_else(|_| text.trim().to_owned());
            return Err(ClientError::Api {
                method,
                url: url.to_string(),
                status: status.as_u16(),
                message,
            });
        }
        Ok((status, text))
    }

    async fn json<T: DeserializeOwned>(
        &self,
        method: Method,
        segments: &[&str],
        body: Option<&(dyn ErasedBody + Sync)>,
    ) -> Result<T, ClientError> {
        let (_, text) = self.send(method.clone(), segments, body).await?;
        serde_json::from_str(&text).map_err(|error| ClientError::Decode {
            method,
            url: self.url(segments).to_string(),
            error,
        })
    }

    /// The server's version.
    pub async fn version(&self) -> Result<String, ClientError> {
        let (_, text) = self.send(Method::GET, &["version"], None).await?;
        Ok(serde_json::from_str::<VersionInfo>(&text)
            .map(|info| info.version)
            .unwrap_or_else(|_| text.trim().to_owned()))
    }

    /// Every proxy, by name.
    pub async fn proxies(&self) -> Result<BTreeMap<String, Proxy>, ClientError> {
        self.json(Method::GET, &["proxies"], None).await
    }

    /// One proxy with its toxics.
    pub async fn proxy(&self, name: &str) -> Result<Proxy, ClientError> {
        self.json(Method::GET, &["proxies", name], None).await
    }

    /// Creates a proxy.
    pub async fn create_proxy(&self, proxy: &NewProxy) -> Result<Proxy, ClientError> {
        self.json(Method::POST, &["proxies"], Some(proxy)).await
    }

    /// Changes a proxy's listen address, upstream or enabled flag.
    pub async fn update_proxy(
        &self,
        name: &str,
        update: &ProxyUpdate,
    ) -> Result<Proxy, ClientError> {
        self.json(Method::POST, &["proxies", name], Some(update))
            .await
    }

    /// Takes a proxy down (`false`: closes its listener and connections) or back up.
    pub async fn set_enabled(&self, name: &str, enabled: bool) -> Result<Proxy, ClientError> {
        self.update_proxy(name, &ProxyUpdate::enabled(enabled))
            .await
    }

    /// Takes a proxy down with a lease: it is enabled again after `lease`
    /// unless renewed ([`ToxiproxyClient::renew_proxy_lease`]) while it is down.
    /// A zero `lease` takes it down with no lease.
    pub async fn disable_with_lease(
        &self,
        name: &str,
        lease: Duration,
    ) -> Result<Proxy, ClientError> {
        let update = ProxyUpdate {
            enabled: Some(false),
            lease_ms: Some(lease_millis(lease)),
            ..ProxyUpdate::default()
        };
        self.update_proxy(name, &update).await
    }

    /// Renews the lease of a proxy that is down: it is enabled again `lease`
    /// from now. A zero `lease` clears the lease (down until enabled). The
    /// server refuses it (400) for a proxy that is enabled.
    pub async fn renew_proxy_lease(
        &self,
        name: &str,
        lease: Duration,
    ) -> Result<Proxy, ClientError> {
        let update = ProxyUpdate {
            lease_ms: Some(lease_millis(lease)),
            ..ProxyUpdate::default()
        };
        self.update_proxy(name, &update).await
    }

    /// Deletes a proxy.
    pub async fn delete_proxy(&self, name: &str) -> Result<(), ClientError> {
        self.send(Method::DELETE, &["proxies", name], None).await?;
        Ok(())
    }

    /// Creates or replaces proxies in bulk.
    pub async fn populate(&self, proxies: &[NewProxy]) -> Result<Vec<Proxy>, ClientError> {
        let proxies = proxies.to_vec();
        let populated: Populated = self
            .json(Method::POST, &["populate"], Some(&proxies))
            .await?;
        Ok(populated.proxies)
    }

    /// The toxics of a proxy.
    pub async fn toxics(&self, proxy: &str) -> Result<Vec<Toxic>, ClientError> {
        self.json(Method::GET, &["proxies", proxy, "toxics"], None)
            .await
    }

    /// One toxic of a proxy.
    pub async fn toxic(&self, proxy: &str, toxic: &str) -> Result<Toxic, ClientError> {
        self.json(Method::GET, &["proxies", proxy, "toxics", toxic], None)
            .await
    }

    /// Adds a toxic to a proxy.
    pub async fn add_toxic(&self, proxy: &str, toxic: &NewToxic) -> Result<Toxic, ClientError> {
        self.json(Method::POST, &["proxies", proxy, "toxics"], Some(toxic))
            .await
    }

    /// Changes a toxic's toxicity or attributes.
    pub async fn update_toxic(
        &self,
        proxy: &str,
        toxic: &str,
        update: &ToxicUpdate,
    ) -> Result<Toxic, ClientError> {
        self.json(
            Method::POST,
            &["proxies", proxy, "toxics", toxic],
            Some(update),
        )
        .await
    }

    /// Renews a toxic's lease: it is removed `lease` from now unless renewed
    /// again. A zero `lease` clears the lease (the toxic stays until removed).
    /// Only the lease changes: the toxic keeps its state on every connection.
    pub async fn renew_toxic_lease(
        &self,
        proxy: &str,
        toxic: &str,
        lease: Duration,
    ) -> Result<Toxic, ClientError> {
        let update = ToxicUpdate {
            lease_ms: Some(lease_millis(lease)),
            ..ToxicUpdate::default()
        };
        self.update_toxic(proxy, toxic, &update).await
    }

    /// Removes a toxic from a proxy.
    pub async fn remove_toxic(&self, proxy: &str, toxic: &str) -> Result<(), ClientError> {
        self.send(Method::DELETE, &["proxies", proxy, "toxics", toxic], None)
            .await?;
        Ok(())
    }

    /// Enables every proxy and removes every toxic.
    pub async fn reset(&self) -> Result<(), ClientError> {
        self.send(Method::POST, &["reset"], None).await?;
        Ok(())
    }
}

/// Object-safe JSON serialisation of request bodies.
trait ErasedBody {
    fn to_json(&self) -> Result<Vec<u8>, serde_json::Error>;
}

impl<T: Serialize> ErasedBody for T {
    fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_escaped_into_path_segments() {
        let client = ToxiproxyClient::new("http://127.0.0.1:8474/").unwrap();
        assert_eq!(
            client.url(&["proxies", "a b/c", "toxics"]).as_str(),
            "http://127.0.0.1:8474/proxies/a%20b%2Fc/toxics"
        );
        let prefixed = ToxiproxyClient::new("http://host:1/toxiproxy").unwrap();
        assert_eq!(
            prefixed.url(&["reset"]).as_str(),
            "http://host:1/toxiproxy/reset"
        );
    }

    #[test]
    fn bad_base_urls_are_refused() {
        assert!(ToxiproxyClient::new("not a url").is_err());
        assert!(ToxiproxyClient::new("ftp://host/").is_err());
    }
}
