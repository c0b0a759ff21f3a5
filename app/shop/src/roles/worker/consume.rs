//! With a broker: the worker consumes `worker.order-events`.
//!
//! - Manual acknowledgements and a prefetch limit: a delivery is
//!   acknowledged only after its transaction committed, so a worker killed
//!   mid-message leaves it to be redelivered, and at most
//!   `FAULTLINE_WORKER_PREFETCH` messages wait in a worker's buffer.
//! - Idempotent: the event id is claimed in the transaction of the effects
//!   ([`crate::outbox::queue::claim`]); a redelivery of a processed event is
//!   acknowledged and changes nothing (outcome `duplicate`).
//! - Retries with backoff: a failed event is published again to the retry
//!   queue of its delay (0.5 s, 1 s, 2 s, ... up to
//!   `FAULTLINE_WORKER_MAX_BACKOFF`) with its attempt counted in a header,
//!   then the delivery is acknowledged.
//! - Dead letters: an event that fails for a reason a retry cannot cure (it
//!   is malformed, or an upstream refused it with a 4xx) is rejected into
//!   `worker.order-events.dead` at its `FAULTLINE_WORKER_MAX_ATTEMPTS`th
//!   attempt, and a message that is not an event at all at once. A failure
//!   of a dependency (the database, an upstream unavailable) is retried
//!   without limit: dead-lettering every event during an outage would turn
//!   the outage into manual work; it shows as retries and as the queue's
//!   backlog instead.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicQosOptions, BasicRejectOptions, ConfirmSelectOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::uri::AMQPUri;
use lapin::{BasicProperties, Channel, Connection};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::{HandleError, MALFORMED_EVENTS, PROCESSED, Worker, process_span};
use crate::broker::publish::{self, SendError};
use crate::broker::{
    BrokerConfig, CONSUMED, DEAD_LETTERS, REDELIVERIES, SYSTEM, connection, kind_label, message,
    topology,
};
use crate::faults::Faults;
use crate::outbox::{self, StoredEvent};
use crate::roles::TaskContext;

/// A worker's consumer.
#[derive(Debug)]
pub struct Consumer {
    pub worker: Worker,
    pub uri: AMQPUri,
    pub broker: BrokerConfig,
    /// The connection's and the consumer's name in the broker.
    pub name: String,
    pub prefetch: u16,
    pub max_attempts: u32,
}

/// What a consumer is given when it starts.
#[derive(Debug)]
struct Running<'a> {
    delays: &'a [Duration],
    faults: Option<&'a Faults>,
}

/// Why a consumer's connection is given up.
#[derive(Debug, thiserror::Error)]
enum ConsumeError {
    #[error("broker: {0}")]
    Broker(#[from] lapin::Error),
    #[error(transparent)]
    Send(#[from] SendError),
    #[error("the broker ended the consumer")]
    Cancelled,
}

/// What became of a delivery: the `outcome` label of `outbox_events_processed_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Processed,
    Duplicate,
    Retry,
    DeadLetter,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Self::Processed => "processed",
            Self::Duplicate => "duplicate",
            Self::Retry => "retry",
            Self::DeadLetter => "dead_letter",
        }
    }
}

/// The retry delays: 0.5 s doubling up to `max`, each once.
pub fn retry_delays(max: Duration) -> Vec<Duration> {
    let mut delays: Vec<Duration> = (0..=16)
        .map(|attempt| super::backoff(attempt, max))
        .collect();
    delays.dedup();
    delays
}

/// What to do with a failed delivery at `attempt` (1 for the first).
fn after_failure(permanent: bool, attempt: u32, max_attempts: u32) -> Outcome {
    if permanent && attempt >= max_attempts {
        Outcome::DeadLetter
    } else {
        Outcome::Retry
    }
}

impl Consumer {
    /// Consumes until `stop` fires, reconnecting whenever the broker goes
    /// away. The delivery in hand is finished before it returns.
    pub async fn run(self, task: TaskContext) {
        let stop = task.stop;
        let backlog = tokio::spawn(outbox::report_backlog(
            self.worker.pool.clone(),
            stop.clone(),
        ));
        let delays = retry_delays(self.worker.max_backoff);
        let running = Running {
            delays: &delays,
            faults: task.faults.as_ref(),
        };
        loop {
            let Some(connection) =
                connection::connect(&self.uri, &self.name, &self.broker, &stop).await
            else {
                break;
            };
            match self.session(&connection, &running, &stop).await {
                Ok(()) => {
                    connection::close(&connection).await;
                    break;
                }
                Err(err) => connection::disconnected(&err),
            }
        }
        backlog.abort();
    }

    async fn session(
        &self,
        connection: &Connection,
        running: &Running<'_>,
        stop: &CancellationToken,
    ) -> Result<(), ConsumeError> {
        let channel = connection.create_channel().await?;
        channel
            .basic_qos(self.prefetch, BasicQosOptions::default())
            .await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        topology::declare_main(&channel).await?;
        topology::declare_retries(&channel, running.delays).await?;
        let mut deliveries = channel
            .basic_consume(
                topology::QUEUE.into(),
                self.name.as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        loop {
            let next = tokio::select! {
                next = deliveries.next() => next,
                () = stop.cancelled() => return Ok(()),
            };
            match next {
                Some(Ok(delivery)) => self.deliver(&channel, delivery, running).await?,
                Some(Err(err)) => return Err(err.into()),
                None => return Err(ConsumeError::Cancelled),
            }
        }
    }

    /// Handles one delivery to the end: acknowledged, sent to a retry queue,
    /// or rejected into the dead letters.
    async fn deliver(
        &self,
        channel: &Channel,
        delivery: Delivery,
        running: &Running<'_>,
    ) -> Result<(), ConsumeError> {
        let delays = running.delays;
        let queue = topology::QUEUE;
        metrics::counter!(CONSUMED, "messaging_system" => SYSTEM, "messaging_destination_name" => queue)
            .increment(1);
        let attempt = message::attempt(&delivery.properties);
        if delivery.redelivered {
            metrics::counter!(REDELIVERIES, "messaging_system" => SYSTEM, "messaging_destination_name" => queue, "reason" => "broker")
                .increment(1);
        }
        if attempt > 1 {
            metrics::counter!(REDELIVERIES, "messaging_system" => SYSTEM, "messaging_destination_name" => queue, "reason" => "retry")
                .increment(1);
        }
        let event = match message::event(&delivery.properties, &delivery.data) {
            Ok(event) => event,
            Err(why) => {
                tracing::warn!(error = %why, delivery_tag = delivery.delivery_tag, "a message that is not an outbox event goes to the dead letters");
                self.dead_letter(&delivery, "unknown").await?;
                count(kind_label(""), Outcome::DeadLetter);
                return Ok(());
            }
        };
        let span = process_span(&event, SYSTEM);
        span.record(
            "messaging.rabbitmq.message.delivery_tag",
            delivery.delivery_tag,
        );
        span.record("messaging.message.delivery_count", attempt);
        let injected = running.faults.and_then(Faults::latency);
        let processed = async {
            if let Some(latency) = injected {
                // An injected fault: the event is in hand, not acknowledged.
                tokio::time::sleep(latency).await;
            }
            let mut tx = self.worker.pool.begin().await?;
            let processed = self.worker.process_in(&mut tx, &event).await?;
            tx.commit().await?;
            Ok::<bool, HandleError>(processed)
        }
        .instrument(span.clone())
        .await;
        let outcome = match processed {
            Ok(true) => Outcome::Processed,
            Ok(false) => Outcome::Duplicate,
            Err(err) => {
                if let HandleError::Malformed { source, .. } = &err {
                    metrics::counter!(MALFORMED_EVENTS, "reason" => source.reason()).increment(1);
                }
                let outcome = after_failure(err.is_permanent(), attempt, self.max_attempts);
                span.in_scope(|| {
                    tracing::warn!(error = %err, attempt, permanent = err.is_permanent(), outcome = outcome.label(), "event failed");
                });
                outcome
            }
        };
        match outcome {
            Outcome::Processed | Outcome::Duplicate => {
                delivery.acker.ack(BasicAckOptions::default()).await?;
            }
            Outcome::Retry => {
                let delay = delays
                    .get(usize::try_from(attempt.saturating_sub(1)).unwrap_or(usize::MAX))
                    .or(delays.last())
                    .copied()
                    .unwrap_or(self.worker.max_backoff);
                self.retry(channel, &delivery, &event, attempt + 1, delay)
                    .instrument(span)
                    .await?;
                delivery.acker.ack(BasicAckOptions::default()).await?;
            }
            Outcome::DeadLetter => {
                self.dead_letter(&delivery, kind_label(&event.kind)).await?;
            }
        }
        count(kind_label(&event.kind), outcome);
        Ok(())
    }

    /// Publishes the event again to the retry queue of `delay`, as `attempt`.
    /// If the broker does not confirm it, the delivery is not acknowledged:
    /// the connection starts over and the broker delivers it again.
    async fn retry(
        &self,
        channel: &Channel,
        delivery: &Delivery,
        event: &StoredEvent,
        attempt: u32,
        delay: Duration,
    ) -> Result<(), ConsumeError> {
        let properties = with_attempt(&delivery.properties, attempt);
        let sent = publish::send(
            channel,
            "",
            topology::retry_queue(delay).into(),
            &delivery.data,
            properties,
            topology::RETRY_QUEUE_PREFIX,
        )
        .await?;
        sent.confirmed(Instant::now() + self.broker.confirm_timeout)
            .await
            .map_err(|err| {
                tracing::warn!(error = %err, event_id = %event.event_id, "cannot schedule a retry");
                ConsumeError::from(err)
            })
    }

    /// Rejects the delivery: the queue's dead-letter exchange keeps it.
    async fn dead_letter(
        &self,
        delivery: &Delivery,
        kind: &'static str,
    ) -> Result<(), ConsumeError> {
        delivery
            .acker
            .reject(BasicRejectOptions { requeue: false })
            .await?;
        metrics::counter!(DEAD_LETTERS, "messaging_system" => SYSTEM, "messaging_destination_name" => topology::DEAD_LETTER_QUEUE, "kind" => kind)
            .increment(1);
        Ok(())
    }
}

fn count(kind: &'static str, outcome: Outcome) {
    metrics::counter!(PROCESSED, "kind" => kind, "outcome" => outcome.label()).increment(1);
}

/// The same properties with the attempt header set to `attempt`.
fn with_attempt(properties: &BasicProperties, attempt: u32) -> BasicProperties {
    let mut headers = properties.headers().clone().unwrap_or_default();
    headers.insert(
        ShortString::from(message::ATTEMPT),
        AMQPValue::LongLongInt(i64::from(attempt)),
    );
    properties.clone().with_headers(headers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_double_up_to_the_cap_once_each() {
        let delays = retry_delays(Duration::from_secs(5));
        assert_eq!(
            delays,
            [500, 1000, 2000, 4000, 5000].map(Duration::from_millis)
        );
    }

    #[test]
    fn only_a_permanent_failure_at_the_last_attempt_is_a_dead_letter() {
        assert_eq!(after_failure(true, 1, 3), Outcome::Retry);
        assert_eq!(after_failure(true, 3, 3), Outcome::DeadLetter);
        assert_eq!(after_failure(true, 9, 3), Outcome::DeadLetter);
        assert_eq!(after_failure(false, 50, 3), Outcome::Retry);
    }

    #[test]
    fn a_retry_keeps_every_header_but_the_attempt() {
        let mut headers = FieldTable::default();
        headers.insert("traceparent".into(), AMQPValue::LongString("tp".into()));
        let properties = BasicProperties::default()
            .with_message_id("m".into())
            .with_headers(headers);
        let again = with_attempt(&properties, 4);
        assert_eq!(message::attempt(&again), 4);
        assert_eq!(again.message_id(), properties.message_id());
        assert_eq!(message::trace_carrier(&again)["traceparent"], "tp");
    }
}
