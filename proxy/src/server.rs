//! The fault-proxy server: the control API plus the registry of proxies.

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use faultline_telemetry::{Metrics, MetricsError};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::api::{self, ApiState};
use crate::auth::ApiToken;
use crate::client::{ClientError, ToxiproxyClient};
use crate::error::ProxyError;
use crate::metrics as proxy_metrics;
use crate::model::NewProxy;
use crate::registry::Registry;

/// The control API's default address, as Toxiproxy's.
pub const DEFAULT_API_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 8474);

/// How to start a [`ProxyServer`].
#[derive(Debug, Clone)]
pub struct ProxyServerConfig {
    /// Where the control API listens; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Proxies to create at start, as `POST /populate` would.
    pub proxies: Vec<NewProxy>,
    /// The bearer token the control API requires (see [`crate::auth`]);
    /// `None`: none, as Toxiproxy.
    pub api_token: Option<ApiToken>,
}

impl Default for ProxyServerConfig {
    fn default() -> Self {
        Self::new(DEFAULT_API_LISTEN)
    }
}

impl ProxyServerConfig {
    /// The control API on `listen`, with no proxies yet and no token.
    pub fn new(listen: SocketAddr) -> Self {
        Self {
            listen,
            proxies: Vec::new(),
            api_token: None,
        }
    }

    /// The same, requiring `token` on the control API.
    #[must_use]
    pub fn with_api_token(mut self, token: ApiToken) -> Self {
        self.api_token = Some(token);
        self
    }

    /// The control API on a free port of the loopback interface (for tests).
    pub fn ephemeral() -> Self {
        Self::new(SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 0))
    }
}

/// Whether a control API on `addr` with `token` deserves the start-up
/// warning: it listens beyond loopback and takes no credential.
fn exposed_without_token(addr: SocketAddr, token: Option<&ApiToken>) -> bool {
    token.is_none() && !addr.ip().is_loopback()
}

/// Why the server could not start or stopped abnormally.
///
/// Each message includes its cause, so the causes are not chained as sources.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot set up metrics: {0}")]
    Metrics(MetricsError),
    #[error("cannot describe the proxy's metrics: {0}")]
    Describe(faultline_telemetry::catalog::CatalogError),
    #[error("cannot listen for the control API on {addr}: {error}")]
    Bind {
        addr: SocketAddr,
        error: std::io::Error,
    },
    #[error("cannot create the configured proxies: {0}")]
    Populate(ProxyError),
    #[error("the control API server failed: {0}")]
    Serve(std::io::Error),
    #[error("the control API server task failed: {0}")]
    Join(tokio::task::JoinError),
}

/// A running fault proxy: the control API and its proxies.
///
/// Dropping it without [`ProxyServer::shutdown`] leaves the tasks running
/// until the runtime ends.
#[derive(Debug)]
pub struct ProxyServer {
    api_addr: SocketAddr,
    api_token: Option<ApiToken>,
    registry: Registry,
    stop: CancellationToken,
    task: JoinHandle<std::io::Result<()>>,
}

impl ProxyServer {
    /// Binds the control API, creates the configured proxies and starts serving.
    ///
    /// Installs the process-wide metrics recorder on first use; servers in
    /// the same process share it.
    pub async fn start(config: ProxyServerConfig) -> Result<Self, ServerError> {
        let metrics = Metrics::install().map_err(ServerError::Metrics)?;
        proxy_metrics::describe().map_err(ServerError::Describe)?;
        faultline_telemetry::metrics::record_build_info("faultline-proxy", api::VERSION);
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|error| ServerError::Bind {
                    addr: config.listen,
                    error,
                })?;
        let api_addr = listener.local_addr().map_err(|error| ServerError::Bind {
            addr: config.listen,
            error,
        })?;
        let registry = Registry::new();
        if !config.proxies.is_empty()
            && let Err(err) = registry.populate(&config.proxies).await
        {
            registry.shutdown().await;
            return Err(ServerError::Populate(err));
        }
        let stop = CancellationToken::new();
        let app = api::router(ApiState {
            registry: registry.clone(),
            metrics,
            token: config.api_token.clone().map(Arc::new),
        });
        let task = tokio::spawn(
            axum::serve(listener, app)
                .with_graceful_shutdown(stop.clone().cancelled_owned())
                .into_future(),
        );
        tracing::info!(
            api = %api_addr,
            proxies = config.proxies.len(),
            api_token = config.api_token.is_some(),
            "fault proxy started"
        );
        if exposed_without_token(api_addr, config.api_token.as_ref()) {
            tracing::warn!(
                api = %api_addr,
                "the control API listens beyond loopback without a token: whoever reaches \
                 it can reconfigure every proxy; set --api-token (FAULTLINE_PROXY_API_TOKEN)"
            );
        }
        Ok(Self {
            api_addr,
            api_token: config.api_token,
            registry,
            stop,
            task,
        })
    }

    /// Where the control API listens.
    pub fn api_addr(&self) -> SocketAddr {
        self.api_addr
    }

    /// The control API's base URL, e.g. `http://127.0.0.1:8474`.
    pub fn api_url(&self) -> String {
        format!("http://{}", self.api_addr)
    }

    /// The proxies, for in-process control without HTTP.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// A client for this server's control API (with its token, if any).
    pub fn client(&self) -> Result<ToxiproxyClient, ClientError> {
        let client = ToxiproxyClient::new(&self.api_url())?;
        Ok(match &self.api_token {
            Some(token) => client.with_api_token(token.clone()),
            None => client,
        })
    }

    /// Serves until `signal` resolves (or the API server fails), then shuts down.
    pub async fn run_until(
        mut self,
        signal: impl Future<Output = ()> + Send,
    ) -> Result<(), ServerError> {
        tokio::select! {
            () = signal => self.shutdown().await,
            result = &mut self.task => {
                self.registry.shutdown().await;
                result.map_err(ServerError::Join)?.map_err(ServerError::Serve)
            }
        }
    }

    /// Stops the control API (finishing requests in flight), then closes
    /// every proxy and its connections.
    pub async fn shutdown(self) -> Result<(), ServerError> {
        self.stop.cancel();
        let served = self.task.await;
        self.registry.shutdown().await;
        tracing::info!("fault proxy stopped");
        served
            .map_err(ServerError::Join)?
            .map_err(ServerError::Serve)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_api_beyond_loopback_without_a_token_is_warned_about() {
        let token = ApiToken::new("t").ok();
        let anywhere: SocketAddr = "0.0.0.0:8474".parse().unwrap();
        let host: SocketAddr = "192.0.2.1:8474".parse().unwrap();
        let v6: SocketAddr = "[::]:8474".parse().unwrap();
        for addr in [anywhere, host, v6] {
            assert!(exposed_without_token(addr, None), "{addr}");
            assert!(!exposed_without_token(addr, token.as_ref()), "{addr}");
        }
        for addr in [DEFAULT_API_LISTEN, "[::1]:8474".parse().unwrap()] {
            assert!(!exposed_without_token(addr, None), "{addr}");
        }
    }
}
