//! The catalog role's settings.

use crate::config::{DatabaseConfig, ServeConfig};
use crate::read_replica::ReplicaConfig;
use crate::redis_client::RedisConfig;

/// Products, stock and reservations.
#[derive(Debug, Clone, clap::Args)]
pub struct CatalogConfig {
    #[command(flatten)]
    pub serve: ServeConfig,
    #[command(flatten)]
    pub database: DatabaseConfig,
    /// A hot standby for the product reads, if any.
    #[command(flatten)]
    pub replica: ReplicaConfig,
    /// Where the gateways share catalog answers: the catalog drops a
    /// product's entry when its stock changes.
    #[command(flatten)]
    pub redis: RedisConfig,
}
