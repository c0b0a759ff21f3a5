//! Without a broker: the worker drains the outbox table itself. Each event
//! is taken with `FOR UPDATE SKIP LOCKED` (so any number of workers can
//! run), processed in the transaction that locked it, or scheduled for a
//! retry with exponential backoff (so nothing is lost).

use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::{HandleError, MALFORMED_EVENTS, PROCESSED, Worker, backoff, process_span};
use crate::outbox;

impl Worker {
    /// Drains the outbox until `stop` fires.
    pub async fn poll(self, stop: CancellationToken) {
        let backlog = tokio::spawn(outbox::report_backlog(self.pool.clone(), stop.clone()));
        while !stop.is_cancelled() {
            let found = match self.poll_one().await {
                Ok(found) => found,
                Err(err) => {
                    tracing::warn!(error = %err, "cannot read the outbox");
                    false
                }
            };
            if !found {
                tokio::select! {
                    () = tokio::time::sleep(self.poll_interval) => {}
                    () = stop.cancelled() => {}
                }
            }
        }
        backlog.abort();
    }

    /// Takes one due event and handles it; false when none is due.
    async fn poll_one(&self) -> Result<bool, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let Some(event) = outbox::queue::take_due(&mut tx).await? else {
            tx.commit().await?;
            return Ok(false);
        };
        let span = process_span(&event, "postgresql-outbox");
        let outcome = match self
            .process_in(&mut tx, &event)
            .instrument(span.clone())
            .await
        {
            Ok(true) => {
                tx.commit().await?;
                "processed"
            }
            Ok(false) => {
                tx.commit().await?;
                "duplicate"
            }
            Err(err) => {
                if let HandleError::Malformed { source, .. } = &err {
                    metrics::counter!(MALFORMED_EVENTS, "reason" => source.reason()).increment(1);
                }
                let backoff = backoff(event.attempts, self.max_backoff);
                span.in_scope(|| {
                    tracing::warn!(error = %err, attempts = event.attempts + 1, retry_in = ?backoff, "event failed; will retry");
                });
                // Its effects so far roll back; the attempt is recorded on its own.
                tx.rollback().await?;
                outbox::queue::schedule_retry(&self.pool, &event, backoff, &err.to_string())
                    .instrument(span)
                    .await?;
                "retry"
            }
        };
        metrics::counter!(PROCESSED, "kind" => crate::broker::kind_label(&event.kind), "outcome" => outcome)
            .increment(1);
        Ok(true)
    }
}
