//! The catalog role's settings.

use crate::config::{DatabaseConfig, ServeConfig};

/// Products, stock and reservations.
#[derive(Debug, Clone, clap::Args)]
pub struct CatalogConfig {
    #[command(flatten)]
    pub serve: ServeConfig,
    #[command(flatten)]
    pub database: DatabaseConfig,
}
