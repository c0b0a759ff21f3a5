//! The outbound client: one per upstream service, round-robin over its
//! endpoints, with a timeout, a client span and RED metrics per call, and the
//! W3C trace context injected into every request.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, Method, StatusCode, header};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tracing::Instrument;
use tracing::field::Empty;
use url::Url;

/// Why a call to an upstream failed.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("{upstream} at {url}: no answer within {timeout:?}")]
    Timeout {
        upstream: &'static str,
        url: String,
        timeout: Duration,
    },
    #[error("{upstream} at {url}: {source}")]
    Transport {
        upstream: &'static str,
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error(
        "{upstream} at {url}: answered {status} with a body that is not the expected JSON: {detail}"
    )]
    Decode {
        upstream: &'static str,
        url: String,
        status: StatusCode,
        detail: String,
    },
    #[error("{upstream}: no endpoint is configured")]
    NoEndpoints { upstream: &'static str },
    #[error("{upstream}: invalid path {path:?}: {source}")]
    BadPath {
        upstream: &'static str,
        path: String,
        #[source]
        source: url::ParseError,
    },
}

/// An upstream's raw answer.
#[derive(Debug, Clone)]
pub struct UpstreamResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: bytes::Bytes,
}

impl UpstreamResponse {
    /// Decodes the body as JSON.
    pub fn json<T: DeserializeOwned>(
        &self,
        upstream: &'static str,
        url: &str,
    ) -> Result<T, UpstreamError> {
        serde_json::from_slice(&self.body).map_err(|err| UpstreamError::Decode {
            upstream,
            url: url.to_owned(),
            status: self.status,
            detail: err.to_string(),
        })
    }
}

/// Describes the client metrics once, for the `# HELP` lines.
pub fn describe_metrics() {
    metrics::describe_histogram!(
        "http_client_request_duration_seconds",
        metrics::Unit::Seconds,
        "Duration of outbound HTTP requests, by upstream, endpoint, method and status."
    );
}

/// A named upstream service and its endpoints.
#[derive(Debug, Clone)]
pub struct Upstream {
    name: &'static str,
    endpoints: Arc<[Url]>,
    next: Arc<AtomicUsize>,
    http: reqwest::Client,
    timeout: Duration,
}

impl Upstream {
    pub fn new(
        name: &'static str,
        endpoints: Vec<Url>,
        timeout: Duration,
        http: reqwest::Client,
    ) -> Self {
        Self {
            name,
            endpoints: endpoints.into(),
            next: Arc::new(AtomicUsize::new(0)),
            http,
            timeout,
        }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    /// GETs `path` from the next endpoint.
    pub async fn get(
        &self,
        path: &str,
        headers: HeaderMap,
    ) -> Result<UpstreamResponse, UpstreamError> {
        self.call(Method::GET, path, headers, None).await
    }

    /// POSTs `body` as JSON to `path` on the next endpoint.
    pub async fn post_json<B: Serialize>(
        &self,
        path: &str,
        headers: HeaderMap,
        body: &B,
    ) -> Result<UpstreamResponse, UpstreamError> {
        let body = serde_json::to_vec(body).map_err(|err| UpstreamError::Decode {
            upstream: self.name,
            url: path.to_owned(),
            status: StatusCode::OK,
            detail: format!("cannot encode the request: {err}"),
        })?;
        self.call(Method::POST, path, headers, Some(body.into()))
            .await
    }

    /// POSTs raw bytes (already JSON) to `path` on the next endpoint.
    pub async fn post_raw(
        &self,
        path: &str,
        headers: HeaderMap,
        body: bytes::Bytes,
    ) -> Result<UpstreamResponse, UpstreamError> {
        self.call(Method::POST, path, headers, Some(body)).await
    }

    /// DELETEs `path` on the next endpoint.
    pub async fn delete(&self, path: &str) -> Result<UpstreamResponse, UpstreamError> {
        self.call(Method::DELETE, path, HeaderMap::new(), None)
            .await
    }

    fn pick(&self) -> Result<&Url, UpstreamError> {
        if self.endpoints.is_empty() {
            return Err(UpstreamError::NoEndpoints {
                upstream: self.name,
            });
        }
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.endpoints.len();
        Ok(&self.endpoints[index])
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        mut headers: HeaderMap,
        body: Option<bytes::Bytes>,
    ) -> Result<UpstreamResponse, UpstreamError> {
        let base = self.pick()?;
        let url = base.join(path).map_err(|source| UpstreamError::BadPath {
            upstream: self.name,
            path: path.to_owned(),
            source,
        })?;
        let server = base.host_str().unwrap_or_default().to_owned();
        let port = base.port_or_known_default().unwrap_or_default();
        let span = tracing::info_span!(
            "http.client",
            otel.name = %method,
            otel.kind = "client",
            otel.status_code = Empty,
            http.request.method = %method,
            server.address = %server,
            server.port = port,
            url.full = %url,
            peer.service = self.name,
            http.response.status_code = Empty,
            error.type = Empty,
        );
        let started = Instant::now();
        let result = async {
            faultline_telemetry::propagation::inject_current(&mut headers);
            let mut request = self
                .http
                .request(method.clone(), url.clone())
                .headers(headers)
                .timeout(self.timeout);
            if let Some(body) = body {
                request = request
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(body);
            }
            let response = request.send().await?;
            let status = response.status();
            let headers = response.headers().clone();
            let body = response.bytes().await?;
            Ok::<_, reqwest::Error>(UpstreamResponse {
                status,
                headers,
                body,
            })
        }
        .instrument(span.clone())
        .await;
        let status_label = match &result {
            Ok(response) => {
                span.record("http.response.status_code", response.status.as_u16());
                if response.status.is_server_error() {
                    span.record("otel.status_code", "ERROR");
                    span.record("error.type", response.status.as_str());
                }
                response.status.as_str().to_owned()
            }
            Err(err) => {
                let kind = if err.is_timeout() {
                    "timeout"
                } else {
                    "transport"
                };
                span.record("otel.status_code", "ERROR");
                span.record("error.type", kind);
                kind.to_owned()
            }
        };
        metrics::histogram!(
            "http_client_request_duration_seconds",
            "peer_service" => self.name,
            "server_address" => format!("{server}:{port}"),
            "http_request_method" => method.as_str().to_owned(),
            "http_response_status_code" => status_label,
        )
        .record(started.elapsed().as_secs_f64());
        result.map_err(|source| {
            if source.is_timeout() {
                UpstreamError::Timeout {
                    upstream: self.name,
                    url: url.to_string(),
                    timeout: self.timeout,
                }
            } else {
                UpstreamError::Transport {
                    upstream: self.name,
                    url: url.to_string(),
                    source,
                }
            }
        })
    }
}
