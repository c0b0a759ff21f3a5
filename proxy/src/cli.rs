//! `faultline proxy`: the command-line face of the fault proxy.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use crate::auth::ApiToken;
use crate::model::NewProxy;
use crate::server::{ProxyServer, ProxyServerConfig, ServerError};

/// Arguments of `faultline proxy`.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "\
Examples:
  faultline proxy
  faultline proxy --listen 0.0.0.0:8474 --config proxies.json

  curl -X POST localhost:8474/proxies \\
       -d '{\"name\":\"payments\",\"listen\":\"127.0.0.1:18080\",\"upstream\":\"127.0.0.1:8080\"}'
  curl -X POST localhost:8474/proxies/payments/toxics \\
       -d '{\"type\":\"latency\",\"attributes\":{\"latency\":800}}'

The control API is compatible with Toxiproxy's v2 HTTP API, so Toxiproxy
clients (and toxiproxy-cli) can drive it. It listens on loopback unless told
otherwise, and takes no credential unless given a token: with --api-token (or
FAULTLINE_PROXY_API_TOKEN), every call but GET /version and GET /metrics needs
`Authorization: Bearer <token>` (curl -H \"Authorization: Bearer $TOKEN\" ...;
`faultline run` sends target.proxy_api_token). Listening beyond loopback
without a token is allowed, with a warning at start.")]
pub struct ProxyArgs {
    /// Address of the HTTP control API (loopback by default: give another
    /// address only with a token, or on a network of its own).
    #[arg(long, env = "FAULTLINE_PROXY_LISTEN", default_value = "127.0.0.1:8474")]
    pub listen: SocketAddr,
    /// JSON file holding an array of proxies to create at start, as for
    /// `POST /populate` (fields: name, listen, upstream, enabled).
    #[arg(long, env = "FAULTLINE_PROXY_CONFIG")]
    pub config: Option<PathBuf>,
    /// A bearer token every control API call (but GET /version and GET
    /// /metrics) must carry. Unset: no credential, as Toxiproxy. Visible
    /// ASCII without spaces; prefer the variable to the flag, which other
    /// users of the host see.
    #[arg(long, env = "FAULTLINE_PROXY_API_TOKEN", hide_env_values = true)]
    pub api_token: Option<ApiToken>,
}

/// Why the proxy command failed.
#[derive(Debug, thiserror::Error)]
pub enum ProxyCommandError {
    #[error("cannot read {path}: {error}")]
    ReadConfig {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path} is not a JSON array of proxies: {error}")]
    ParseConfig {
        path: PathBuf,
        error: serde_json::Error,
    },
    #[error(transparent)]
    Server(#[from] ServerError),
}

/// Reads a proxies file: a JSON array of `{name, listen, upstream, enabled}`.
pub fn load_proxies(path: &Path) -> Result<Vec<NewProxy>, ProxyCommandError> {
    let text = std::fs::read(path).map_err(|error| ProxyCommandError::ReadConfig {
        path: path.to_owned(),
        error,
    })?;
    serde_json::from_slice(&text).map_err(|error| ProxyCommandError::ParseConfig {
        path: path.to_owned(),
        error,
    })
}

impl ProxyArgs {
    /// The server configuration these arguments describe.
    pub fn server_config(&self) -> Result<ProxyServerConfig, ProxyCommandError> {
        let proxies = match &self.config {
            Some(path) => load_proxies(path)?,
            None => Vec::new(),
        };
        Ok(ProxyServerConfig {
            listen: self.listen,
            proxies,
            api_token: self.api_token.clone(),
        })
    }

    /// Runs the proxy until `shutdown` resolves.
    pub async fn run(
        &self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), ProxyCommandError> {
        let server = ProxyServer::start(self.server_config()?).await?;
        tracing::info!(api = %server.api_url(), "faultline proxy ready");
        server.run_until(shutdown).await?;
        Ok(())
    }
}
