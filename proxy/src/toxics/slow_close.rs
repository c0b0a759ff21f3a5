//! `slow_close`: delays the close of a direction by `delay` ms.
//!
//! Data passes untouched; the EOF (FIN) or a close decided by an earlier toxic
//! waits `delay` ms before it moves on.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::Attributes;
use super::buffer::{Buffer, Buffered, Buffering};
use crate::error::ProxyError;
use crate::stage::{Item, Step};
use crate::stats::ToxicCounters;

pub(super) const TYPE: &str = "slow_close";

/// Attributes of the `slow_close` toxic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlowClose {
    /// How long the close waits (`delay`, ms).
    pub delay: Duration,
}

impl SlowClose {
    pub(super) fn parse(attrs: &mut Attributes<'_>) -> Result<Self, ProxyError> {
        Ok(Self {
            delay: attrs.millis("delay")?,
        })
    }

    pub(super) fn stage(self, stats: Arc<ToxicCounters>) -> Buffered<SlowCloseStage> {
        Buffered::new(SlowCloseStage {
            delay: self.delay,
            stats,
        })
    }
}

#[derive(Debug)]
pub(crate) struct SlowCloseStage {
    delay: Duration,
    /// Counts each close (EOF or a toxic's close) it delayed.
    stats: Arc<ToxicCounters>,
}

impl Buffering for SlowCloseStage {
    fn poll(&mut self, buffer: &mut Buffer, now: Instant) -> Step {
        match buffer.front() {
            None => return Step::Idle,
            Some((Item::Eof | Item::Close, entered)) => {
                let due = *entered + self.delay;
                if due > now {
                    return Step::Wait(due);
                }
                self.stats.count_close();
            }
            Some((Item::Data(_) | Item::Reply(_), _)) => {}
        }
        match buffer.pop() {
            Some(item) => Step::Emit(item),
            None => Step::Idle,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stage::Stage;

    #[test]
    fn data_passes_and_the_close_waits() {
        let t0 = Instant::now();
        let stats = Arc::new(ToxicCounters::default());
        let mut stage = SlowClose {
            delay: Duration::from_millis(300),
        }
        .stage(Arc::clone(&stats));
        stage.push(Item::Data(b"bye".to_vec()), t0);
        stage.push(Item::Eof, t0);
        assert_eq!(stage.poll(t0), Step::Emit(Item::Data(b"bye".to_vec())));
        assert_eq!(stage.poll(t0), Step::Wait(t0 + Duration::from_millis(300)));
        assert_eq!(stats.values().closes, 0);
        assert_eq!(
            stage.poll(t0 + Duration::from_millis(300)),
            Step::Emit(Item::Eof)
        );
        assert_eq!(stats.values().closes, 1);
        assert_eq!(stats.values().bytes, 0, "data passes untouched");
    }
}
