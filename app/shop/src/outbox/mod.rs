//! The outbox: the one way orders tells the worker what happened.
//!
//! - [`event`]: the typed events ([`OrderEvent`]) and how they are read back;
//! - [`queue`]: the SQL, written by orders in its checkout transaction and
//!   drained by the worker;
//! - [`relay`]: with a broker, orders publishes the outbox to it;
//! - [`backlog`]: the outbox seen as a queue, how much waits and for how long.

pub mod backlog;
pub mod event;
pub mod queue;
pub mod relay;

pub use backlog::{
    BACKLOG_EVENTS, Backlog, OLDEST_EVENT_AGE, REPORT_INTERVAL, backlog, report_backlog,
    report_oldest_age,
};
pub use event::{MalformedEvent, OrderEvent, OrderPlaced, PaymentDeclined};
pub use queue::{NewEvent, StoredEvent};
