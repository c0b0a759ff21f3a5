//! The worker role's settings.

use std::time::Duration;

use crate::broker::BrokerConfig;
use crate::config::{ClientConfig, DatabaseConfig, ServeConfig};

/// Handles the outbox's events and settles pending payments.
#[derive(Debug, Clone, clap::Args)]
pub struct WorkerConfig {
    #[command(flatten)]
    pub serve: ServeConfig,
    #[command(flatten)]
    pub database: DatabaseConfig,
    #[command(flatten)]
    pub client: ClientConfig,
    #[command(flatten)]
    pub broker: BrokerConfig,
    #[command(flatten)]
    pub catalog: crate::config::CatalogReplicas,
    #[command(flatten)]
    pub payments: crate::config::PaymentsReplicas,
    /// With a broker: deliveries a worker holds unacknowledged at most.
    #[arg(long, env = "FAULTLINE_WORKER_PREFETCH", default_value_t = 16)]
    pub prefetch: u16,
    /// With a broker: the attempt at which an event that fails for good
    /// (malformed, or refused by an upstream) goes to the dead letters.
    #[arg(long, env = "FAULTLINE_WORKER_MAX_ATTEMPTS", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub max_attempts: u32,
    /// Without a broker: how long to wait before looking again when the
    /// outbox is empty.
    #[arg(long, env = "FAULTLINE_WORKER_POLL_INTERVAL", default_value = "200ms", value_parser = humantime::parse_duration)]
    pub poll_interval: Duration,
    /// The longest wait before retrying a failed event.
    #[arg(long, env = "FAULTLINE_WORKER_MAX_BACKOFF", default_value = "30s", value_parser = humantime::parse_duration)]
    pub max_backoff: Duration,
}
