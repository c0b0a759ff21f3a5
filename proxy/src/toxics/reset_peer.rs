//! `reset_peer`: resets the connection `timeout` ms after the toxic applies.
//!
//! Data flows normally until then. The reset closes both sockets with
//! `SO_LINGER` set to 0, so both peers get a TCP RST ("connection reset by
//! peer") and any data still in flight is discarded, as with a real reset.

use std::time::Duration;

use tokio::time::Instant;

use super::Attributes;
use super::buffer::{Buffer, Buffered, Buffering};
use crate::error::ProxyError;
use crate::stage::Step;

pub(super) const TYPE: &str = "reset_peer";

/// Attributes of the `reset_peer` toxic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResetPeer {
    /// Reset this long after the toxic applies (`timeout`, ms); 0 resets at once.
    pub timeout: Duration,
}

impl ResetPeer {
    pub(super) fn parse(attrs: &mut Attributes<'_>) -> Result<Self, ProxyError> {
        Ok(Self {
            timeout: attrs.millis("timeout")?,
        })
    }

    pub(super) fn stage(self, now: Instant) -> Buffered<ResetPeerStage> {
        Buffered::new(ResetPeerStage {
            deadline: now + self.timeout,
        })
    }
}

#[derive(Debug)]
pub(crate) struct ResetPeerStage {
    deadline: Instant,
}

impl Buffering for ResetPeerStage {
    fn poll(&mut self, buffer: &mut Buffer, now: Instant) -> Step {
        if self.deadline <= now {
            return Step::Reset;
        }
        match buffer.pop() {
            Some(item) => Step::Emit(item),
            None => Step::Wait(self.deadline),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stage::{Item, Stage};

    #[test]
    fn passes_data_then_resets() {
        let t0 = Instant::now();
        let mut stage = ResetPeer {
            timeout: Duration::from_millis(200),
        }
        .stage(t0);
        stage.push(Item::Data(b"x".to_vec()), t0);
        assert_eq!(stage.poll(t0), Step::Emit(Item::Data(b"x".to_vec())));
        assert_eq!(stage.poll(t0), Step::Wait(t0 + Duration::from_millis(200)));
        assert_eq!(stage.poll(t0 + Duration::from_millis(200)), Step::Reset);
    }

    #[test]
    fn zero_resets_at_once() {
        let t0 = Instant::now();
        let mut stage = ResetPeer {
            timeout: Duration::ZERO,
        }
        .stage(t0);
        assert_eq!(stage.poll(t0), Step::Reset);
    }
}
