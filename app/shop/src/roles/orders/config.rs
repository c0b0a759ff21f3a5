//! The orders role's settings.

use std::time::Duration;

use crate::auth::AuthConfig;
use crate::broker::BrokerConfig;
use crate::config::{ClientConfig, DatabaseConfig, ServeConfig};

/// Checkout: orders, idempotency and the outbox.
#[derive(Debug, Clone, clap::Args)]
pub struct OrdersConfig {
    #[command(flatten)]
    pub serve: ServeConfig,
    #[command(flatten)]
    pub database: DatabaseConfig,
    #[command(flatten)]
    pub client: ClientConfig,
    /// Bearer tokens, verified again here: orders trusts no identity it
    /// cannot check itself.
    #[command(flatten)]
    pub auth: AuthConfig,
    /// With a broker, every orders replica relays the outbox to it.
    #[command(flatten)]
    pub broker: BrokerConfig,
    /// With a broker: events the relay publishes per round (and per
    /// transaction).
    #[arg(long, env = "FAULTLINE_RELAY_BATCH", default_value_t = 100, value_parser = clap::value_parser!(i64).range(1..=10_000))]
    pub relay_batch: i64,
    /// With a broker: how often the relay looks at the outbox without being
    /// woken by a checkout (it picks up what other replicas left behind).
    #[arg(long, env = "FAULTLINE_RELAY_INTERVAL", default_value = "500ms", value_parser = humantime::parse_duration)]
    pub relay_interval: Duration,
    #[command(flatten)]
    pub catalog: crate::config::CatalogReplicas,
    #[command(flatten)]
    pub payments: crate::config::PaymentsReplicas,
    /// How long checkout waits for a payment authorisation before accepting
    /// the order as payment_pending for the worker to settle.
    #[arg(long, env = "FAULTLINE_PAYMENT_TIMEOUT", default_value = "300ms", value_parser = humantime::parse_duration)]
    pub payment_timeout: Duration,
}
