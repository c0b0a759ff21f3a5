//! Reads from a hot standby, writes to the primary.
//!
//! [`ReadPools`] holds the primary's pool and, when `FAULTLINE_DATABASE_READ_URL`
//! names one, a standby's. A read that may be a little stale goes to the
//! standby while it is in use ([`route`]); anything else, and every write,
//! goes to the primary. A background task ([`ReadPools::checker`]) checks
//! the standby every second: its lag ([`lag`]: the age of the oldest primary
//! position it has not replayed) and whether it answers. Reads move to the
//! primary as soon as the lag passes the bound or the standby fails (a check,
//! or a read that errs or times out: that read is retried on the primary),
//! and come back only after several good checks.
//!
//! Staleness: a read the standby serves shows the database as it was at most
//! [`ReplicaConfig::staleness_bound`] ago (the bound plus two check
//! intervals: 7 s by default). A caller that must see its own write passes
//! the position the write returned (`Faultline-Write-Lsn`) with the read
//! (`Faultline-Read-After-Lsn`): the standby serves it only if it has
//! replayed that far.
//!
//! Telemetry: `db_client_read_routes_total{target, reason}` counts every
//! read by where it was served and why; `db_client_replica_lag_seconds` and
//! `db_client_replica_in_use` show the check's view; queries carry
//! `db_client_connection_pool_name` (primary or replica) in
//! `db_client_operation_duration_seconds`. Readiness never depends on the
//! standby.

mod config;
mod lag;
mod lsn;
mod route;

pub use config::ReplicaConfig;
pub use lsn::{Lsn, LsnParseError};
pub use route::Reason;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use sqlx::PgPool;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::config::DatabaseConfig;
use crate::db::{self, DbConfigError, PoolName};
use lag::LagTracker;
use route::{Check, Route};

/// Where reads go: the primary, and a standby if one is configured.
#[derive(Debug, Clone)]
pub struct ReadPools {
    primary: PgPool,
    replica: Option<Arc<Replica>>,
}

/// The standby and what the checks last found.
#[derive(Debug)]
struct Replica {
    pool: PgPool,
    config: ReplicaConfig,
    /// `None` while reads go to the standby, else why not (written by the
    /// check task, and by a read that failed there).
    avoided: std::sync::Mutex<Option<Reason>>,
    /// A read failed on the standby since the last check.
    read_failed: AtomicBool,
    /// The position the standby had replayed at the last check.
    replayed: watch::Sender<Lsn>,
}

impl ReadPools {
    /// Every read on `primary`.
    pub fn primary_only(primary: PgPool) -> Self {
        Self {
            primary,
            replica: None,
        }
    }

    /// Reads on the standby of `config` when it has one (connected lazily:
    /// nothing waits for it at start), else on `primary`.
    pub fn new(
        primary: PgPool,
        database: &DatabaseConfig,
        config: &ReplicaConfig,
        application: &str,
    ) -> Result<Self, DbConfigError> {
        let Some(url) = &config.read_url else {
            return Ok(Self::primary_only(primary));
        };
        let standby = DatabaseConfig {
            url: url.clone(),
            acquire_timeout: config.read_timeout,
            ..database.clone()
        };
        let pool = db::lazy_pool(&standby, application)?;
        let (replayed, _) = watch::channel(Lsn::default());
        Ok(Self {
            primary,
            replica: Some(Arc::new(Replica {
                pool,
                config: config.clone(),
                avoided: std::sync::Mutex::new(Some(Reason::ReplicaUnavailable)),
                read_failed: AtomicBool::new(false),
                replayed,
            })),
        })
    }

    /// The primary: for writes, and reads that must see them.
    pub fn primary(&self) -> &PgPool {
        &self.primary
    }

    /// Runs `query` on the standby when it is in use and has replayed
    /// `after`, else on the primary. A query that fails or times out on the
    /// standby runs again on the primary.
    pub async fn read<T, F, Fut>(&self, after: Option<Lsn>, query: F) -> Result<T, sqlx::Error>
    where
        F: Fn(PgPool) -> Fut,
        Fut: Future<Output = Result<T, sqlx::Error>>,
    {
        let mut reason = Reason::NoReplica;
        if let Some(replica) = &self.replica {
            reason = replica.reason_for(after);
            if reason == Reason::ReplicaHealthy {
                let timeout = replica.config.read_timeout;
                let attempt = tokio::time::timeout(
                    timeout,
                    db::with_pool_name(PoolName::Replica, query(replica.pool.clone())),
                );
                match attempt.await {
                    Ok(Ok(value)) => {
                        count(PoolName::Replica, reason);
                        return Ok(value);
                    }
                    Ok(Err(err)) => tracing::warn!(
                        error = %err,
                        "a read failed on the standby; retrying it on the primary"
                    ),
                    Err(_) => tracing::warn!(
                        ?timeout,
                        "a read timed out on the standby; retrying it on the primary"
                    ),
                }
                replica.read_failed();
                reason = Reason::ReplicaFailed;
            }
        }
        count(PoolName::Primary, reason);
        db::with_pool_name(PoolName::Primary, query(self.primary.clone())).await
    }

    /// The primary's WAL position after a write has committed, for the
    /// writer to hand to readers that must see it; `None` without a standby
    /// (every read sees every write then) or if the primary did not say.
    pub async fn write_position(&self) -> Option<Lsn> {
        self.replica.as_ref()?;
        match position(&self.primary, WRITE_POSITION).await {
            Ok(lsn) => Some(lsn),
            Err(err) => {
                tracing::warn!(error = %err, "cannot read the WAL position of a write");
                None
            }
        }
    }

    /// Waits until the standby has replayed `lsn`, at most its staleness
    /// bound; true if it has. True at once without a standby.
    pub async fn replayed(&self, lsn: Lsn) -> bool {
        let Some(replica) = &self.replica else {
            return true;
        };
        let mut replayed = replica.replayed.subscribe();
        let bound = replica.config.staleness_bound();
        matches!(
            tokio::time::timeout(bound, replayed.wait_for(|seen| *seen >= lsn)).await,
            Ok(Ok(_))
        )
    }

    /// The task that checks the standby, if there is one; it ends when
    /// `stop` fires.
    pub fn checker(&self, stop: CancellationToken) -> Option<impl Future<Output = ()> + use<>> {
        let replica = self.replica.clone()?;
        Some(check_loop(replica, self.primary.clone(), stop))
    }
}

impl Replica {
    fn reason_for(&self, after: Option<Lsn>) -> Reason {
        if let Some(reason) = *lock(&self.avoided) {
            return reason;
        }
        match after {
            Some(lsn) if *self.replayed.borrow() < lsn => Reason::ReadYourWrites,
            _ => Reason::ReplicaHealthy,
        }
    }

    /// Takes the standby out of use until the checks find it healthy again.
    fn read_failed(&self) {
        *lock(&self.avoided) = Some(Reason::ReplicaUnavailable);
        self.read_failed.store(true, Ordering::Relaxed);
        metrics::gauge!("db_client_replica_in_use").set(0.0);
    }
}

fn lock(avoided: &std::sync::Mutex<Option<Reason>>) -> std::sync::MutexGuard<'_, Option<Reason>> {
    // The value is a plain Copy: a panic elsewhere cannot leave it half-written.
    avoided
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn count(target: PoolName, reason: Reason) {
    metrics::counter!(
        "db_client_read_routes_total",
        "target" => target.as_str(),
        "reason" => reason.as_str(),
    )
    .increment(1);
}

/// Where the primary's WAL ends, written records included: past the commit
/// record of every transaction that has returned.
const WRITE_POSITION: &str = "SELECT pg_current_wal_insert_lsn()::text";
/// Where the primary's WAL ends, as far as it was written out to be sent.
const PRIMARY_POSITION: &str = "SELECT pg_current_wal_lsn()::text";

/// A primary's WAL position, by `sql` (one of the two above).
#[tracing::instrument(name = "SELECT", skip(pool), fields(otel.kind = "client", db.system.name = "postgresql", db.operation.name = "SELECT", db.query.text = sql))]
async fn position(pool: &PgPool, sql: &'static str) -> Result<Lsn, sqlx::Error> {
    let text: String = db::timed("SELECT", "", sqlx::query_scalar(sql).fetch_one(pool)).await?;
    text.parse()
        .map_err(|err: LsnParseError| sqlx::Error::Decode(err.into()))
}

/// The standby's replayed position; `None` if the server is not in
/// recovery (promoted, or pointed at a primary by mistake).
#[tracing::instrument(name = "SELECT", skip(pool), fields(otel.kind = "client", db.system.name = "postgresql", db.operation.name = "SELECT"))]
async fn standby_position(pool: &PgPool) -> Result<Option<Lsn>, sqlx::Error> {
    let text: Option<String> = db::with_pool_name(
        PoolName::Replica,
        db::timed(
            "SELECT",
            "",
            sqlx::query_scalar(
                "SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn()::text END",
            )
            .fetch_one(pool),
        ),
    )
    .await?;
    text.map(|text| text.parse())
        .transpose()
        .map_err(|err: LsnParseError| sqlx::Error::Decode(err.into()))
}

/// Records the position a check found the standby had replayed: the value
/// found, even below the last one. A standby killed and started again
/// accepts reads once it is consistent, which can be before the position it
/// had reached (it replays the rest of its WAL after); keeping the highest
/// position ever seen would send a read that names a write in between to a
/// standby that has not replayed it yet.
fn record_replayed(replayed: &watch::Sender<Lsn>, found: Lsn) {
    replayed.send_if_modified(|seen| std::mem::replace(seen, found) != found);
}

async fn check_loop(replica: Arc<Replica>, primary: PgPool, stop: CancellationToken) {
    let config = &replica.config;
    let every = config.check_interval.max(Duration::from_millis(10));
    let mut tracker = LagTracker::default();
    let mut route = Route::new(config.max_lag, config.recover_after);
    let mut ticker = tokio::time::interval(every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    metrics::gauge!("db_client_replica_in_use").set(0.0);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            () = stop.cancelled() => return,
        }
        // The primary first: a standby that has replayed this has no lag.
        if let Ok(Ok(lsn)) = tokio::time::timeout(every, position(&primary, PRIMARY_POSITION)).await
        {
            tracker.primary_at(lsn, Instant::now());
        }
        let check = match tokio::time::timeout(every, standby_position(&replica.pool)).await {
            Ok(Ok(Some(replayed))) => {
                record_replayed(&replica.replayed, replayed);
                Check::Reached(tracker.lag(replayed, Instant::now()))
            }
            Ok(Ok(None)) => {
                tracing::warn!("the read replica is not in recovery: it is not a standby");
                Check::Unreachable
            }
            Ok(Err(err)) => {
                tracing::debug!(error = %err, "the read replica's check failed");
                Check::Unreachable
            }
            Err(_) => Check::Unreachable,
        };
        // Unreachable: what it had replayed last is at least this old.
        let last = *replica.replayed.borrow();
        let lag = match check {
            Check::Reached(lag) => lag,
            Check::Unreachable => tracker.lag(last, Instant::now()),
        };
        metrics::gauge!("db_client_replica_lag_seconds").set(lag.as_secs_f64());
        if replica.read_failed.swap(false, Ordering::Relaxed) {
            route.avoid(Reason::ReplicaUnavailable);
        }
        let changed = route.observe(check);
        *lock(&replica.avoided) = route.avoided();
        metrics::gauge!("db_client_replica_in_use").set(if route.avoided().is_none() {
            1.0
        } else {
            0.0
        });
        db::record_pool_metrics(&replica.pool, PoolName::Replica);
        if changed {
            match route.avoided() {
                None => tracing::info!(?lag, "reads go to the read replica"),
                Some(reason) => tracing::warn!(
                    ?lag,
                    reason = reason.as_str(),
                    "reads go to the primary: the read replica is out of use"
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_replayed_position_is_the_last_one_found_even_when_lower() {
        let (sender, mut seen) = watch::channel(Lsn::default());
        record_replayed(&sender, Lsn(0x30));
        assert!(seen.has_changed().unwrap());
        assert_eq!(*seen.borrow_and_update(), Lsn(0x30));
        // The same position again wakes no one.
        record_replayed(&sender, Lsn(0x30));
        assert!(!seen.has_changed().unwrap());
        // Started again, the standby reports less than it had reached: a
        // read after 0x30 must wait for it (or go to the primary).
        record_replayed(&sender, Lsn(0x20));
        assert_eq!(*seen.borrow_and_update(), Lsn(0x20));
    }
}
