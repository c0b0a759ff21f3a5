//! Liveness and readiness.
//!
//! Live: the process runs and answers. Ready: it can serve now, meaning it is
//! not draining and, for roles with a database, the schema is migrated and
//! PostgreSQL answers `SELECT 1` within the ready timeout.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::Serialize;
use sqlx::PgPool;

/// Why the service is not ready.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotReady {
    #[error("shutting down: draining in-flight requests")]
    Draining,
    #[error("database: the schema is not migrated yet")]
    NotMigrated,
    #[error("database: no answer to SELECT 1 within {0:?}")]
    DatabaseTimeout(Duration),
    #[error("database: {0}")]
    Database(String),
}

/// The readiness answer's body.
#[derive(Debug, Clone, Serialize)]
pub struct Readiness {
    pub status: &'static str,
    pub database: &'static str,
}

/// Shared health state of one service.
#[derive(Debug, Clone)]
pub struct Health {
    database: Option<(PgPool, Duration)>,
    migrated: Arc<AtomicBool>,
    draining: Arc<AtomicBool>,
}

impl Health {
    /// A service whose readiness depends on `database` (pool, ready timeout).
    pub fn new(database: Option<(PgPool, Duration)>) -> Self {
        let migrated = database.is_none();
        Self {
            database,
            migrated: Arc::new(AtomicBool::new(migrated)),
            draining: Arc::new(AtomicBool::new(false)),
        }
    }

    /// The schema is in place.
    pub fn set_migrated(&self) {
        self.migrated.store(true, Ordering::SeqCst);
    }

    /// Whether the schema is in place (always, for roles without a database).
    pub fn is_migrated(&self) -> bool {
        self.migrated.load(Ordering::SeqCst)
    }

    /// From now on, readiness fails: the service is shutting down.
    pub fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Checks that the service can serve now.
    #[tracing::instrument(name = "health.ready", skip(self), err(level = "debug"))]
    pub async fn check_ready(&self) -> Result<Readiness, NotReady> {
        if self.is_draining() {
            return Err(NotReady::Draining);
        }
        let Some((pool, timeout)) = &self.database else {
            return Ok(Readiness {
                status: "ready",
                database: "not used",
            });
        };
        if !self.migrated.load(Ordering::SeqCst) {
            return Err(NotReady::NotMigrated);
        }
        let ping = sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(pool);
        match tokio::time::timeout(*timeout, ping).await {
            Ok(Ok(_)) => Ok(Readiness {
                status: "ready",
                database: "ok",
            }),
            Ok(Err(err)) => Err(NotReady::Database(err.to_string())),
            Err(_) => Err(NotReady::DatabaseTimeout(*timeout)),
        }
    }
}
