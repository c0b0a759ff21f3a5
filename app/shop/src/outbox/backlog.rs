//! The outbox seen as a queue: how much is waiting, and for how long. Orders
//! writes the events, the worker drains them ([`super::queue`]); both report
//! `outbox_oldest_event_age_seconds`, so that the age keeps growing in
//! `/metrics` while no worker runs, and the worker reports the backlog too.

use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::db::timed;
use crate::health::Health;

/// The gauge of the oldest unprocessed event's age.
pub const OLDEST_EVENT_AGE: &str = "outbox_oldest_event_age_seconds";

/// The gauge of the unprocessed events.
pub const BACKLOG_EVENTS: &str = "outbox_backlog_events";

/// How often orders measures the age, and the worker the backlog.
pub const REPORT_INTERVAL: Duration = Duration::from_secs(1);

/// The unprocessed part of the outbox.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backlog {
    /// Events not processed yet.
    pub events: i64,
    /// Age of the oldest of them, in seconds; 0 when there is none.
    pub oldest_age_seconds: f64,
}

/// Measures the unprocessed outbox.
#[tracing::instrument(level = "debug", name = "SELECT outbox", skip_all, fields(otel.kind = "client", db.system.name = "postgresql", db.operation.name = "SELECT", db.collection.name = "outbox"))]
pub async fn backlog(pool: &PgPool) -> Result<Backlog, sqlx::Error> {
    let (events, oldest_age_seconds): (i64, f64) = timed(
        "SELECT",
        "outbox",
        sqlx::query_as(
            "SELECT count(*), COALESCE(EXTRACT(EPOCH FROM now() - min(created_at))::float8, 0) \
             FROM outbox WHERE processed_at IS NULL",
        )
        .fetch_one(pool),
    )
    .await?;
    Ok(Backlog {
        events,
        oldest_age_seconds,
    })
}

/// Sets [`OLDEST_EVENT_AGE`] every [`REPORT_INTERVAL`] until `stop` fires,
/// once the schema is migrated. A failed query is logged at warn and the
/// gauge keeps its last value.
pub async fn report_oldest_age(pool: PgPool, health: Health, stop: CancellationToken) {
    let mut every = tokio::time::interval(REPORT_INTERVAL);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            () = stop.cancelled() => return,
        }
        if !health.is_migrated() {
            continue;
        }
        match backlog(&pool).await {
            Ok(backlog) => metrics::gauge!(OLDEST_EVENT_AGE).set(backlog.oldest_age_seconds),
            Err(err) => {
                tracing::warn!(error = %err, "cannot measure the age of the oldest outbox event");
            }
        }
    }
}

/// Sets [`BACKLOG_EVENTS`] and [`OLDEST_EVENT_AGE`] every [`REPORT_INTERVAL`]
/// until `stop` fires (the worker's view). A failed query is logged at debug.
pub async fn report_backlog(pool: PgPool, stop: CancellationToken) {
    let mut every = tokio::time::interval(REPORT_INTERVAL);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            () = stop.cancelled() => return,
        }
        match backlog(&pool).await {
            Ok(backlog) => {
                metrics::gauge!(BACKLOG_EVENTS).set(backlog.events as f64);
                metrics::gauge!(OLDEST_EVENT_AGE).set(backlog.oldest_age_seconds);
            }
            Err(err) => tracing::debug!(error = %err, "cannot measure the outbox backlog"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::config::DatabaseConfig;

    /// A pool whose server never answers: nothing listens on port 1.
    fn unreachable_pool() -> PgPool {
        let mut config = DatabaseConfig::new("postgres://shop@127.0.0.1:1/shop");
        config.acquire_timeout = Duration::from_millis(200);
        crate::db::lazy_pool(&config, "outbox-test").unwrap()
    }

    async fn stops_promptly(task: tokio::task::JoinHandle<()>, stop: &CancellationToken) {
        stop.cancel();
        tokio::time::timeout(Duration::from_secs(2), task)
            .await
            .expect("the reporter did not stop")
            .unwrap();
    }

    fn value_of(page: &str, series: &str) -> Option<f64> {
        page.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[tokio::test]
    async fn the_reporter_stops_when_told_even_before_the_schema_exists() {
        let pool = unreachable_pool();
        let health = Health::new(Some((pool.clone(), Duration::from_secs(1))));
        let stop = CancellationToken::new();
        let task = tokio::spawn(report_oldest_age(pool, health, stop.clone()));
        stops_promptly(task, &stop).await;
    }

    #[tokio::test]
    async fn a_failing_query_keeps_the_last_value_and_the_reporter_running() {
        let metrics = faultline_telemetry::Metrics::install().unwrap();
        metrics::gauge!(OLDEST_EVENT_AGE).set(7.0);
        let pool = unreachable_pool();
        let health = Health::new(Some((pool.clone(), Duration::from_secs(1))));
        health.set_migrated();
        let stop = CancellationToken::new();
        let task = tokio::spawn(report_oldest_age(pool, health, stop.clone()));
        let failed_outbox_select = |page: &str| {
            page.lines().any(|line| {
                line.starts_with("db_client_operation_duration_seconds_count{")
                    && line.contains(r#"db_collection_name="outbox""#)
                    && !line.contains(r#"error_type="""#)
            })
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        let page = loop {
            let page = metrics.render();
            if failed_outbox_select(&page) {
                break page;
            }
            assert!(
                Instant::now() < deadline,
                "no failed query within 10 s:\n{page}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert_eq!(value_of(&page, OLDEST_EVENT_AGE), Some(7.0), "{page}");
        assert!(!task.is_finished());
        stops_promptly(task, &stop).await;
    }
}
