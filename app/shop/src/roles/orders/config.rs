//! The orders role's settings.

use std::time::Duration;

use url::Url;

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
    /// Catalog replicas, comma-separated base URLs.
    #[arg(
        long,
        env = "FAULTLINE_CATALOG_URLS",
        value_delimiter = ',',
        required = true
    )]
    pub catalog_urls: Vec<Url>,
    /// Payments replicas, comma-separated base URLs.
    #[arg(
        long,
        env = "FAULTLINE_PAYMENTS_URLS",
        value_delimiter = ',',
        required = true
    )]
    pub payments_urls: Vec<Url>,
    /// How long checkout waits for a payment authorisation before accepting
    /// the order as payment_pending for the worker to settle.
    #[arg(long, env = "FAULTLINE_PAYMENT_TIMEOUT", default_value = "300ms", value_parser = humantime::parse_duration)]
    pub payment_timeout: Duration,
}
