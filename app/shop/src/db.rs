//! The PostgreSQL pool, the migrations, and the telemetry of every query.

use std::time::{Duration, Instant};

use sqlx::PgPool;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tokio_util::sync::CancellationToken;

use crate::config::DatabaseConfig;

/// The schema, embedded from `app/shop/migrations`.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// Why the pool could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("invalid DATABASE_URL: {0}")]
pub struct DbConfigError(#[source] sqlx::Error);

/// Builds a pool that connects lazily: the service starts (and reports
/// not-ready) while PostgreSQL is still down, and reconnects by itself.
pub fn lazy_pool(config: &DatabaseConfig, application: &str) -> Result<PgPool, DbConfigError> {
    let options: PgConnectOptions = config.url.parse().map_err(DbConfigError)?;
    let options = options.application_name(application);
    Ok(PgPoolOptions::new()
        .max_connections(config.max_connections)
        .min_connections(0)
        .acquire_timeout(config.acquire_timeout)
        // A connection that sat idle may point at a restarted server: check it first.
        .test_before_acquire(true)
        .connect_lazy_with(options))
}

/// Applies the migrations, retrying until PostgreSQL answers or `stop` fires.
///
/// sqlx takes a PostgreSQL advisory lock around the run, so N replicas starting
/// at once apply each migration exactly once.
pub async fn migrate_until_done(pool: &PgPool, stop: &CancellationToken) -> bool {
    let mut wait = Duration::from_millis(100);
    loop {
        match MIGRATOR.run(pool).await {
            Ok(()) => {
                tracing::info!("database schema is up to date");
                return true;
            }
            Err(err) => {
                tracing::warn!(error = %err, retry_in = ?wait, "cannot apply migrations yet");
            }
        }
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = stop.cancelled() => return false,
        }
        wait = (wait * 2).min(Duration::from_secs(2));
    }
}

/// Which server a pool reaches: the `db_client_connection_pool_name` label
/// (OTel `db.client.connection.pool.name`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolName {
    /// The primary: every write, and every read without a standby.
    Primary,
    /// A hot standby, for reads that may be a little stale.
    Replica,
}

impl PoolName {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Primary => "primary",
            Self::Replica => "replica",
        }
    }
}

tokio::task_local! {
    /// The pool the queries of the current task run on, for their timings.
    static POOL_NAME: PoolName;
}

/// Runs `future` with its queries timed as queries on `pool`'s server.
pub async fn with_pool_name<F: Future>(pool: PoolName, future: F) -> F::Output {
    POOL_NAME.scope(pool, future).await
}

/// Publishes the pool's occupancy (OTel `db.client.connection.count` and `.max`).
pub fn record_pool_metrics(pool: &PgPool, name: PoolName) {
    let size = f64::from(pool.size());
    // sqlx reports idle connections as usize; pool sizes fit easily in f64.
    let idle = pool.num_idle() as f64;
    let name = name.as_str();
    metrics::gauge!("db_client_connections", "state" => "idle", "db_client_connection_pool_name" => name).set(idle);
    metrics::gauge!("db_client_connections", "state" => "used", "db_client_connection_pool_name" => name)
        .set((size - idle).max(0.0));
    metrics::gauge!("db_client_connections_max", "db_client_connection_pool_name" => name)
        .set(f64::from(pool.options().get_max_connections()));
}

/// Times one database operation into `db_client_operation_duration_seconds`.
///
/// The span comes from `#[tracing::instrument]` on the query function, named
/// per the semantic conventions (`SELECT products`); this records the metric.
#[derive(Debug)]
pub struct OperationTimer {
    operation: &'static str,
    collection: &'static str,
    started: Instant,
}

impl OperationTimer {
    pub fn start(operation: &'static str, collection: &'static str) -> Self {
        Self {
            operation,
            collection,
            started: Instant::now(),
        }
    }

    /// Records the duration, with `error_type` when the operation failed.
    pub fn finish<T>(self, result: &Result<T, sqlx::Error>) {
        let error_type = match result {
            Ok(_) => "",
            Err(sqlx::Error::PoolTimedOut) => "pool_timeout",
            Err(sqlx::Error::Database(_)) => "database",
            Err(_) => "connection",
        };
        let pool = POOL_NAME
            .try_with(|pool| *pool)
            .unwrap_or(PoolName::Primary);
        metrics::histogram!(
            "db_client_operation_duration_seconds",
            "db_system_name" => "postgresql",
            "db_client_connection_pool_name" => pool.as_str(),
            "db_operation_name" => self.operation,
            "db_collection_name" => self.collection,
            "error_type" => error_type,
        )
        .record(self.started.elapsed().as_secs_f64());
    }
}

/// Runs `operation` and records its duration.
pub async fn timed<T>(
    operation: &'static str,
    collection: &'static str,
    future: impl Future<Output = Result<T, sqlx::Error>>,
) -> Result<T, sqlx::Error> {
    let timer = OperationTimer::start(operation, collection);
    let result = future.await;
    timer.finish(&result);
    result
}

/// True for a unique-constraint violation (SQLSTATE 23505).
pub fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.code().as_deref() == Some("23505"))
}
