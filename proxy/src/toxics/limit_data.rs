//! `limit_data`: lets `bytes` bytes through, then closes the connection.
//!
//! The chunk that crosses the limit is cut at the limit. The count is per
//! connection and direction, and starts again when the toxic is updated.

use std::collections::VecDeque;

use tokio::time::Instant;

use super::Attributes;
use crate::error::ProxyError;
use crate::stage::{Item, Stage, Step};

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

    pub(super) fn stage(self) -> LimitDataStage {
        LimitDataStage {
            remaining: self.bytes,
            queue: VecDeque::new(),
            bytes: 0,
            closed: false,
        }
    }
}

#[derive(Debug)]
pub(crate) struct LimitDataStage {
    remaining: u64,
    queue: VecDeque<(Item, Instant)>,
    bytes: usize,
    closed: bool,
}

impl Stage for LimitDataStage {
    fn push(&mut self, item: Item, entered: Instant) {
        if !self.closed {
            self.bytes += item.len();
            self.queue.push_back((item, entered));
        }
    }

    fn poll(&mut self, _now: Instant) -> Step {
        if self.closed {
            return Step::Idle;
        }
        if self.remaining == 0 {
            self.closed = true;
            self.queue.clear();
            self.bytes = 0;
            return Step::Emit(Item::Close);
        }
        let Some((item, _)) = self.queue.front_mut() else {
            return Step::Idle;
        };
        if let Item::Data(data) = item {
            let allowed = usize::try_from(self.remaining).unwrap_or(usize::MAX);
            if data.len() > allowed {
                // Cut at the limit; the rest is dropped with the close.
                let rest = data.split_off(allowed);
                let head = std::mem::replace(data, rest);
                self.bytes -= head.len();
                self.remaining = 0;
                return Step::Emit(Item::Data(head));
            }
        }
        match self.queue.pop_front() {
            Some((item, _)) => {
                self.bytes -= item.len();
                self.remaining -= item.len() as u64;
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
    fn cuts_at_the_limit_then_closes() {
        let t0 = Instant::now();
        let mut stage = LimitData { bytes: 5 }.stage();
        stage.push(Item::Data(b"abc".to_vec()), t0);
        stage.push(Item::Data(b"defg".to_vec()), t0);
        assert_eq!(stage.poll(t0), Step::Emit(Item::Data(b"abc".to_vec())));
        assert_eq!(stage.poll(t0), Step::Emit(Item::Data(b"de".to_vec())));
        assert_eq!(stage.poll(t0), Step::Emit(Item::Close));
        assert_eq!(stage.poll(t0), Step::Idle);
        assert_eq!(stage.buffered_bytes(), 0);
    }

    #[test]
    fn an_exact_fit_closes_right_after() {
        let t0 = Instant::now();
        let mut stage = LimitData { bytes: 3 }.stage();
        stage.push(Item::Data(b"abc".to_vec()), t0);
        assert_eq!(stage.poll(t0), Step::Emit(Item::Data(b"abc".to_vec())));
        assert_eq!(stage.poll(t0), Step::Emit(Item::Close));
    }

    #[test]
    fn zero_closes_at_once() {
        let t0 = Instant::now();
        let mut stage = LimitData { bytes: 0 }.stage();
        assert_eq!(stage.poll(t0), Step::Emit(Item::Close));
    }
}
