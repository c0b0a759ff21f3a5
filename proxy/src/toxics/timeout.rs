//! `timeout`: stops all data, then closes the connection after `timeout` ms.
//!
//! With a timeout of 0 the connection stays open and the data is held until
//! the toxic is removed, like a network partition that later heals: nothing
//! gets through, and once the partition ends the held data flows on, in
//! order. While it holds, the proxy stops reading once its buffer is full, so
//! the sender sees the back-pressure a real partition would cause.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::Attributes;
use super::buffer::{Buffer, Buffered, Buffering};
use crate::error::ProxyError;
use crate::stage::{Item, Step};
use crate::stats::ToxicCounters;

pub(super) const TYPE: &str = "timeout";

/// Attributes of the `timeout` toxic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeout {
    /// Close the connection this long after the toxic applies (`timeout`, ms);
    /// 0 holds the data until the toxic is removed.
    pub timeout: Duration,
}

impl Timeout {
    pub(super) fn parse(attrs: &mut Attributes<'_>) -> Result<Self, ProxyError> {
        Ok(Self {
            timeout: attrs.millis("timeout")?,
        })
    }

    pub(super) fn stage(self, now: Instant, stats: Arc<ToxicCounters>) -> Buffered<TimeoutStage> {
        Buffered::new(TimeoutStage {
            deadline: (!self.timeout.is_zero()).then(|| now + self.timeout),
            fired: false,
            stats,
        })
    }
}

#[derive(Debug)]
pub(crate) struct TimeoutStage {
    deadline: Option<Instant>,
    fired: bool,
    /// Counts the close; the pipeline counts the bytes held.
    stats: Arc<ToxicCounters>,
}

impl Buffering for TimeoutStage {
    fn push(&mut self, buffer: &mut Buffer, item: Item, entered: Instant) {
        if !self.fired {
            buffer.push(item, entered);
        }
    }

    fn poll(&mut self, buffer: &mut Buffer, now: Instant) -> Step {
        if self.fired {
            return Step::Idle;
        }
        match self.deadline {
            Some(deadline) if deadline <= now => {
                self.fired = true;
                buffer.clear();
                self.stats.count_close();
                Step::Emit(Item::Close)
            }
            Some(deadline) => Step::Wait(deadline),
            None => Step::Idle,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stage::Stage;

    #[test]
    fn holds_everything_then_closes() {
        let t0 = Instant::now();
        let stats = Arc::new(ToxicCounters::default());
        let mut stage = Timeout {
            timeout: Duration::from_millis(300),
        }
        .stage(t0, Arc::clone(&stats));
        stage.push(Item::Data(b"held".to_vec()), t0);
        stage.push(Item::Eof, t0);
        assert_eq!(stage.buffered_bytes(), 4);
        assert_eq!(
            stage.poll(t0 + Duration::from_millis(299)),
            Step::Wait(t0 + Duration::from_millis(300))
        );
        assert_eq!(
            stage.poll(t0 + Duration::from_millis(300)),
            Step::Emit(Item::Close)
        );
        assert_eq!(stage.poll(t0 + Duration::from_secs(1)), Step::Idle);
        assert_eq!(stage.buffered_bytes(), 0);
        assert_eq!(stats.values().closes, 1);
        stage.push(Item::Data(b"late".to_vec()), t0);
        assert!(stage.take_buffered().is_empty());
    }

    #[test]
    fn zero_holds_until_removed() {
        let t0 = Instant::now();
        let mut stage = Timeout {
            timeout: Duration::ZERO,
        }
        .stage(t0, Arc::default());
        stage.push(Item::Data(b"a".to_vec()), t0);
        stage.push(Item::Data(b"b".to_vec()), t0);
        assert_eq!(stage.poll(t0 + Duration::from_secs(3600)), Step::Idle);
        let held: Vec<Item> = stage.take_buffered().into_iter().map(|(i, _)| i).collect();
        assert_eq!(
            held,
            vec![Item::Data(b"a".to_vec()), Item::Data(b"b".to_vec())]
        );
    }
}
