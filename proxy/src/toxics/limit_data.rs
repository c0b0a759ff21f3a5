//! `limit_data`: lets `bytes` bytes through, then closes the connection.
//!
//! The chunk that crosses the limit is cut at the limit. The count is per
//! connection and direction, and starts again when the toxic is updated.

use std::sync::Arc;

use tokio::time::Instant;

use super::Attributes;
use super::buffer::{Buffer, Buffered, Buffering};
use crate::error::ProxyError;
use crate::stage::{Item, Step};
use crate::stats::ToxicCounters;

pub(super) const TYPE: &str = "limit_data";

/// Attributes of the `limit_data` toxic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitData {
    /// Bytes to transmit before closing (`bytes`).
    pub bytes: u64,
}

impl LimitData {
    pub(super) fn parse(attrs: &mut Attributes<'_>) -> Result<Self, ProxyError> {
        Ok(Self {
            bytes: attrs.integer("bytes")?,
        })
    }

    pub(super) fn stage(self, stats: Arc<ToxicCounters>) -> Buffered<LimitDataStage> {
        Buffered::new(LimitDataStage {
            remaining: self.bytes,
            closed: false,
            stats,
        })
    }
}

#[derive(Debug)]
pub(crate) struct LimitDataStage {
    remaining: u64,
    closed: bool,
    /// Counts the close and the bytes dropped; the bytes let through are not
    /// acted on.
    stats: Arc<ToxicCounters>,
}

impl Buffering for LimitDataStage {
    fn push(&mut self, buffer: &mut Buffer, item: Item, entered: Instant) {
        if self.closed {
            self.stats.count_bytes(item.len());
        } else {
            buffer.push(item, entered);
        }
    }

    fn poll(&mut self, buffer: &mut Buffer, _now: Instant) -> Step {
        if self.closed {
            return Step::Idle;
        }
        if self.remaining == 0 {
            self.closed = true;
            self.stats.count_bytes(buffer.bytes());
            buffer.clear();
            self.stats.count_close();
            return Step::Emit(Item::Close);
        }
        let allowed = usize::try_from(self.remaining).unwrap_or(usize::MAX);
        if let Some(head) = buffer.split_front(allowed) {
            // Cut at the limit; the rest is dropped with the close.
            self.remaining = 0;
            return Step::Emit(head);
        }
        match buffer.pop() {
            Some(item) => {
                self.remaining -= item.len() as u64;
                Step::Emit(item)
            }
            None => Step::Idle,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stage::Stage;

    #[test]
    fn cuts_at_the_limit_then_closes() {
        let t0 = Instant::now();
        let stats = Arc::new(ToxicCounters::default());
        let mut stage = LimitData { bytes: 5 }.stage(Arc::clone(&stats));
        stage.push(Item::Data(b"abc".to_vec()), t0);
        stage.push(Item::Data(b"defg".to_vec()), t0);
        assert_eq!(stage.poll(t0), Step::Emit(Item::Data(b"abc".to_vec())));
        assert_eq!(stage.poll(t0), Step::Emit(Item::Data(b"de".to_vec())));
        assert_eq!(stage.poll(t0), Step::Emit(Item::Close));
        assert_eq!(stage.poll(t0), Step::Idle);
        assert_eq!(stage.buffered_bytes(), 0);
        stage.push(Item::Data(b"late".to_vec()), t0);
        let stats = stats.values();
        assert_eq!(
            (stats.closes, stats.bytes),
            (1, 2 + 4),
            "\"fg\" and \"late\" dropped"
        );
    }

    #[test]
    fn an_exact_fit_closes_right_after() {
        let t0 = Instant::now();
        let mut stage = LimitData { bytes: 3 }.stage(Arc::default());
        stage.push(Item::Data(b"abc".to_vec()), t0);
        assert_eq!(stage.poll(t0), Step::Emit(Item::Data(b"abc".to_vec())));
        assert_eq!(stage.poll(t0), Step::Emit(Item::Close));
    }

    #[test]
    fn zero_closes_at_once() {
        let t0 = Instant::now();
        let mut stage = LimitData { bytes: 0 }.stage(Arc::default());
        assert_eq!(stage.poll(t0), Step::Emit(Item::Close));
    }
}
