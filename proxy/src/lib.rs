//! The fault proxy: a TCP proxy whose HTTP control API is compatible with
//! [Toxiproxy](https://github.com/Shopify/toxiproxy)'s v2 API.
//!
//! - [`ProxyServer`] runs the control API and the proxies (`faultline proxy`,
//!   or in-process in tests: [`ProxyServerConfig::ephemeral`] binds port 0).
//! - [`Registry`] is the set of proxies behind the API, usable without HTTP.
//! - [`ToxiproxyClient`] drives the API of this proxy or of a real Toxiproxy.
//! - [`ApiToken`]: the control API's optional bearer token ([`auth`]).
//! - [`toxics`] holds one module per toxic: `latency`, `bandwidth`, `timeout`,
//!   `reset_peer`, `slow_close`, `limit_data`, and the HTTP/1.1 toxics
//!   `http_abort` and `http_delay` (in `toxics::http`).
//!
//! Every connection runs each direction through a pipeline of timestamped
//! chunks with one stage per toxic. Adding, updating or removing a toxic
//! swaps stages on live connections without losing or reordering a byte:
//! data a removed stage held moves on to the next stage, in order.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use faultline_proxy::{
//!     NewProxy, NewToxic, ProxyServer, ProxyServerConfig, Stream, toxics::{Latency, ToxicKind},
//! };
//!
//! let server = ProxyServer::start(ProxyServerConfig::ephemeral()).await?;
//! let client = server.client()?;
//! let proxy = client
//!     .create_proxy(&NewProxy::new("payments", "127.0.0.1:0", "127.0.0.1:8080"))
//!     .await?;
//! // proxy.listen is now the bound address, e.g. "127.0.0.1:40123".
//! let latency = ToxicKind::Latency(Latency {
//!     latency: Duration::from_millis(800),
//!     jitter: Duration::ZERO,
//! });
//! client
//!     .add_toxic(&proxy.name, &NewToxic::new(&latency).with_stream(Stream::Downstream))
//!     .await?;
//! server.shutdown().await?;
//! # Ok(())
//! # }
//! ```

mod api;
pub mod auth;
pub mod cli;
mod client;
mod error;
mod lease;
mod link;
pub mod metrics;
mod model;
mod pipeline;
mod registry;
mod server;
mod stage;
mod stats;
pub mod toxics;

pub use api::VERSION;
pub use auth::ApiToken;
pub use client::{ClientError, DEFAULT_REQUEST_TIMEOUT, ToxiproxyClient};
pub use error::ProxyError;
pub use model::{
    DEFAULT_PROXY_LISTEN, ErrorBody, MAX_LEASE, NewProxy, NewToxic, Populated, Proxy, ProxyUpdate,
    Stream, Toxic, ToxicStats, ToxicUpdate, VersionInfo,
};
pub use registry::Registry;
pub use server::{DEFAULT_API_LISTEN, ProxyServer, ProxyServerConfig, ServerError};
pub use toxics::ToxicKind;
