//! Per-toxic counters: the evidence that a toxic took effect.
//!
//! Each toxic owns one [`ToxicCounters`], created with the toxic and shared
//! (as an `Arc`) by every connection it applies to. Attribute and toxicity
//! updates keep it; only removing the toxic and adding it again starts from
//! zero. The API shows a snapshot as the toxic's `stats`.
//!
//! A leaf, like `stage`: the pipeline and the stages increment the counters
//! without knowing the API. Every method is a relaxed atomic add, cheap
//! enough for the per-chunk path; a snapshot may mix counts from slightly
//! different instants, which is fine for evidence.
//!
//! Who counts what:
//!
//! - the pipeline counts `connections` (once per connection, when the
//!   toxicity draw includes it), `bytes` entering the stage of a toxic that
//!   acts on every byte (see `ToxicKind::acts_on_every_byte`), and `resets`
//!   (when a stage answers `Step::Reset`);
//! - a stage counts what only it can see: `closes` when it closes the
//!   connection, `bytes` it drops, and `requests` it acts on. A stage that
//!   needs to count receives the toxic's `Arc<ToxicCounters>` when it is
//!   built (`ToxicKind::stage`) and calls, for example,
//!   [`ToxicCounters::count_request`] from its `push` or `poll`. A stage must
//!   not count bytes on `push` for a toxic the pipeline already counts, and
//!   must count each connection's close once: when a toxic is updated, its
//!   replacement stage receives the held items again through `push`.

use std::sync::atomic::{AtomicU64, Ordering};

/// The counters of one toxic, shared by all its connections.
#[derive(Debug, Default)]
pub(crate) struct ToxicCounters {
    connections: AtomicU64,
    bytes: AtomicU64,
    resets: AtomicU64,
    closes: AtomicU64,
    requests: AtomicU64,
}

/// The values of a [`ToxicCounters`] at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct CounterValues {
    pub(crate) connections: u64,
    pub(crate) bytes: u64,
    pub(crate) resets: u64,
    pub(crate) closes: u64,
    pub(crate) requests: u64,
}

impl ToxicCounters {
    /// The toxic became active on one more connection.
    pub(crate) fn count_connection(&self) {
        self.connections.fetch_add(1, Ordering::Relaxed);
    }

    /// The toxic acted on `bytes` payload bytes (delayed, paced, held or dropped them).
    pub(crate) fn count_bytes(&self, bytes: usize) {
        self.bytes
            .fetch_add(u64::try_from(bytes).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// The toxic reset a connection.
    pub(crate) fn count_reset(&self) {
        self.resets.fetch_add(1, Ordering::Relaxed);
    }

    /// The toxic closed a connection (or delayed its close).
    pub(crate) fn count_close(&self) {
        self.closes.fetch_add(1, Ordering::Relaxed);
    }

    /// The toxic acted on an HTTP request (for the HTTP toxics: a request
    /// they matched and picked, that they delayed or answered).
    pub(crate) fn count_request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// The current values.
    pub(crate) fn values(&self) -> CounterValues {
        CounterValues {
            connections: self.connections.load(Ordering::Relaxed),
            bytes: self.bytes.load(Ordering::Relaxed),
            resets: self.resets.load(Ordering::Relaxed),
            closes: self.closes.load(Ordering::Relaxed),
            requests: self.requests.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_method_counts_its_own_counter() {
        let counters = ToxicCounters::default();
        counters.count_connection();
        counters.count_bytes(10);
        counters.count_bytes(5);
        counters.count_reset();
        counters.count_close();
        counters.count_close();
        counters.count_request();
        assert_eq!(
            counters.values(),
            CounterValues {
                connections: 1,
                bytes: 15,
                resets: 1,
                closes: 2,
                requests: 1,
            }
        );
    }
}
