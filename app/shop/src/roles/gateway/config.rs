//! The gateway role's settings.

use std::time::Duration;

use crate::auth::AuthConfig;
use crate::config::{ClientConfig, ServeConfig, parse_on_off};
use crate::redis_client::RedisConfig;

/// The public entry point: forwards to catalog and orders.
#[derive(Debug, Clone, clap::Args)]
pub struct GatewayConfig {
    #[command(flatten)]
    pub serve: ServeConfig,
    #[command(flatten)]
    pub client: ClientConfig,
    /// Bearer tokens: the trusted keys and what a token must say.
    #[command(flatten)]
    pub auth: AuthConfig,
    #[command(flatten)]
    pub catalog: crate::config::CatalogReplicas,
    #[command(flatten)]
    pub orders: crate::config::OrdersReplicas,
    /// Where the gateway replicas share their catalog cache and rate limit.
    #[command(flatten)]
    pub redis: RedisConfig,
    /// How many gateway replicas serve the public API: while Redis is
    /// unavailable, each enforces the rate limit divided by this.
    #[arg(long, env = "FAULTLINE_GATEWAY_REPLICAS", default_value = "1")]
    pub replicas: std::num::NonZeroU32,
    /// Requests per second each client (its token's subject, else its IP) may send, over
    /// all gateway replicas when they share Redis.
    #[arg(long, env = "FAULTLINE_RATE_LIMIT_PER_SECOND", default_value = "100")]
    pub rate_limit_per_second: std::num::NonZeroU32,
    /// Requests a client may send at once above its rate.
    #[arg(long, env = "FAULTLINE_RATE_LIMIT_BURST", default_value = "50")]
    pub rate_limit_burst: std::num::NonZeroU32,
    /// The header a trusted proxy in front of the gateway writes the
    /// client's address to (`x-forwarded-for`; its last address counts).
    /// Unset: the peer's address. Set it only behind such a proxy: clients
    /// can send the header themselves.
    #[arg(long, env = "FAULTLINE_CLIENT_IP_HEADER")]
    pub client_ip_header: Option<axum::http::HeaderName>,
    /// Catalog answers kept: served fresh within the TTL, and marked stale
    /// while the catalog is down.
    #[arg(long, env = "FAULTLINE_CATALOG_CACHE_ENTRIES", default_value_t = 1000)]
    pub catalog_cache_entries: usize,
    /// How long a catalog answer is served from the cache without asking the
    /// catalog (`0s`: always ask; the stale fallback works either way).
    #[arg(long, env = "FAULTLINE_CATALOG_CACHE_TTL", default_value = "1s", value_parser = humantime::parse_duration)]
    pub catalog_cache_ttl: Duration,
    /// Concurrent misses for one path share one catalog fetch (on), or each
    /// makes its own (off: a miss storm reaches the catalog once per
    /// request; the benchmark measures the read path per request with it).
    #[arg(long, env = "FAULTLINE_CATALOG_COALESCE", default_value = "on", value_parser = parse_on_off, action = clap::ArgAction::Set)]
    pub catalog_coalesce: bool,
    /// How long a catalog answer stays in the shared cache in Redis (the
    /// catalog drops a product's answer sooner when its stock changes).
    #[arg(long, env = "FAULTLINE_SHARED_CACHE_TTL", default_value = "10s", value_parser = humantime::parse_duration)]
    pub shared_cache_ttl: Duration,
}
