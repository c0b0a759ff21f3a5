//! `timeout`: stops all data, then closes the connection after `timeout` ms.
//!
//! With a timeout of 0 the connection stays open and the data is held until
//! the toxic is removed, like a network partition that later heals: nothing
//! gets through, and once the partition ends the held data flows on, in
//! order. While it holds, the proxy stops reading once its buffer is full, so
//! the sender sees the back-pressure a real partition would cause.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

use super::Attributes;
use crate::error::ProxyError;
use crate::stage::{Item, Stage, Step};

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

    pub(super) fn stage(self, now: Instant) -> TimeoutStage {
        TimeoutStage {
            deadline: (!self.timeout.is_zero()).then(|| now + self.timeout),
            held: VecDeque::new(),
            bytes: 0,
            fired: false,
        }
    }
}

#[derive(Debug)]
pub(crate) struct TimeoutStage {
    deadline: Option<Instant>,
    held: VecDeque<(Item, Instant)>,
    bytes: usize,
    fired: bool,
}

impl Stage for TimeoutStage {
    fn push(&mut self, item: Item, entered: Instant) {
        if !self.fired {
            self.bytes += item.len();
            self.held.push_back((item, entered));
        }
    }

    fn poll(&mut self, now: Instant) -> Step {
        if self.fired {
            return Step::Idle;
        }
        match self.deadline {
            Some(deadline) if deadline <= now => {
                self.fired = true;
                self.held.clear();
                self.bytes = 0;
                Step::Emit(Item::Close)
            }
            Some(deadline) => Step::Wait(deadline),
            None => Step::Idle,
        }
    }

    fn take_buffered(&mut self) -> Vec<(Item, Instant)> {
        self.bytes = 0;
        self.held.drain(..).collect()
    }

    fn buffered_bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_everything_then_closes() {
        let t0 = Instant::now();
        let mut stage = Timeout {
            timeout: Duration::from_millis(300),
        }
        .stage(t0);
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
        stage.push(Item::Data(b"late".to_vec()), t0);
        assert!(stage.take_buffered().is_empty());
    }

    #[test]
    fn zero_holds_until_removed() {
        let t0 = Instant::now();
        let mut stage = Timeout {
            timeout: Duration::ZERO,
        }
        .stage(t0);
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
