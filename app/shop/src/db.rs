//! The PostgreSQL pool.

use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::config::DatabaseConfig;

/// Why the pool could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("invalid DATABASE_URL: {0}")]
pub struct DbConfigError(#[source] sqlx::Error);

/// Builds a pool that connects lazily: the service starts (and reports
/// not-ready) while PostgreSQL is still down, and reconnects by itself.
pub fn lazy_pool(config: &DatabaseConfig) -> Result<PgPool, DbConfigError> {
    let options: PgConnectOptions = config.url.parse().map_err(DbConfigError)?;
    let options = options.application_name(env!("CARGO_PKG_NAME"));
    Ok(PgPoolOptions::new()
        .max_connections(config.max_connections)
        .min_connections(0)
        .acquire_timeout(config.acquire_timeout)
        // A connection that sat idle may point at a restarted server: check it first.
        .test_before_acquire(true)
        .connect_lazy_with(options))
}

/// Publishes the pool's occupancy (OTel `db.client.connection.count` and `.max`).
pub fn record_pool_metrics(pool: &PgPool) {
    let size = f64::from(pool.size());
    // sqlx reports idle connections as usize; pool sizes fit easily in f64.
    #[allow(clippy::cast_precision_loss)]
    let idle = pool.num_idle() as f64;
    metrics::gauge!("db_client_connections", "state" => "idle").set(idle);
    metrics::gauge!("db_client_connections", "state" => "used").set((size - idle).max(0.0));
    metrics::gauge!("db_client_connections_max")
        .set(f64::from(pool.options().get_max_connections()));
}

/// Describes the pool metrics once, for the `# HELP` lines.
pub fn describe_pool_metrics() {
    metrics::describe_gauge!(
        "db_client_connections",
        "Connections in the PostgreSQL pool, by state: idle or used."
    );
    metrics::describe_gauge!(
        "db_client_connections_max",
        "The most connections the pool may open."
    );
}
