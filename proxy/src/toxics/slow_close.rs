//! `slow_close`: delays the close of a direction by `delay` ms.
//!
//! Data passes untouched; the EOF (FIN) or a close decided by an earlier toxic
//! waits `delay` ms before it moves on.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

use super::Attributes;
use crate::error::ProxyError;
use crate::stage::{Item, Stage, Step};

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

    pub(super) fn stage(self) -> SlowCloseStage {
        SlowCloseStage {
            delay: self.delay,
            queue: VecDeque::new(),
            bytes: 0,
        }
    }
}

#[derive(Debug)]
pub(crate) struct SlowCloseStage {
    delay: Duration,
    queue: VecDeque<(Item, Instant)>,
    bytes: usize,
}

impl Stage for SlowCloseStage {
    fn push(&mut self, item: Item, entered: Instant) {
        self.bytes += item.len();
        self.queue.push_back((item, entered));
    }

    fn poll(&mut self, now: Instant) -> Step {
        match self.queue.front() {
            None => return Step::Idle,
            Some((Item::Eof | Item::Close, entered)) => {
                let due = *entered + self.delay;
                if due > now {
                    return Step::Wait(due);
                }
            }
            Some((Item::Data(_), _)) => {}
        }
        match self.queue.pop_front() {
            Some((item, _)) => {
                self.bytes -= item.len();
                Step::Emit(item)
            }
            None => Step::Idle,
        }
    }

    fn take_buffered(&mut self) -> Vec<(Item, Instant)> {
        self.bytes = 0;
        self.queue.drain(..).collect()
    }

    fn buffered_bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_passes_and_the_close_waits() {
        let t0 = Instant::now();
        let mut stage = SlowClose {
            delay: Duration::from_millis(300),
        }
        .stage();
        stage.push(Item::Data(b"bye".to_vec()), t0);
        stage.push(Item::Eof, t0);
        assert_eq!(stage.poll(t0), Step::Emit(Item::Data(b"bye".to_vec())));
        assert_eq!(stage.poll(t0), Step::Wait(t0 + Duration::from_millis(300)));
        assert_eq!(
            stage.poll(t0 + Duration::from_millis(300)),
            Step::Emit(Item::Eof)
        );
    }
}
