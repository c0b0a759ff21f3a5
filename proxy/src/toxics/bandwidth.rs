//! `bandwidth`: limits a direction to `rate` kilobytes (1000 bytes) per second.
//!
//! Store and forward: a chunk leaves once the link has had the time to
//! transmit it. Large chunks are cut into pieces worth 100 ms each so that the
//! data trickles out smoothly instead of in bursts. A rate of 0 means no limit.

use std::time::Duration;

use tokio::time::Instant;

use super::Attributes;
use super::buffer::{Buffer, Buffered, Buffering};
use crate::error::ProxyError;
use crate::stage::{Item, Step};

pub(super) const TYPE: &str = "bandwidth";

/// Attributes of the `bandwidth` toxic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bandwidth {
    /// The rate in KB/s (`rate`); 0 means unlimited.
    pub rate_kb_per_sec: u64,
}

impl Bandwidth {
    pub(super) fn parse(attrs: &mut Attributes<'_>) -> Result<Self, ProxyError> {
        Ok(Self {
            rate_kb_per_sec: attrs.integer("rate")?,
        })
    }

    pub(super) fn stage(self) -> Buffered<BandwidthStage> {
        let bytes_per_sec = self.rate_kb_per_sec as f64 * 1000.0;
        // 100 ms worth of data per piece, at least one byte.
        let piece = usize::try_from(self.rate_kb_per_sec.saturating_mul(100))
            .unwrap_or(usize::MAX)
            .max(1);
        Buffered::new(BandwidthStage {
            bytes_per_sec,
            piece,
            free_at: None,
        })
    }
}

#[derive(Debug)]
pub(crate) struct BandwidthStage {
    /// 0 means unlimited.
    bytes_per_sec: f64,
    piece: usize,
    /// When the link finished transmitting the last piece.
    free_at: Option<Instant>,
}

impl BandwidthStage {
    fn transmit_time(&self, len: usize) -> Duration {
        if self.bytes_per_sec <= 0.0 {
            return Duration::ZERO;
        }
        Duration::try_from_secs_f64(len as f64 / self.bytes_per_sec).unwrap_or(Duration::MAX)
    }
}

impl Buffering for BandwidthStage {
    fn push(&mut self, buffer: &mut Buffer, item: Item, entered: Instant) {
        match item {
            Item::Data(data) if self.bytes_per_sec > 0.0 && data.len() > self.piece => {
                for piece in data.chunks(self.piece) {
                    buffer.push(Item::Data(piece.to_vec()), entered);
                }
            }
            item => buffer.push(item, entered),
        }
    }

    fn poll(&mut self, buffer: &mut Buffer, now: Instant) -> Step {
        let Some((head, entered)) = buffer.front() else {
            return Step::Idle;
        };
        let due = match head {
            Item::Data(data) => {
                let start = self.free_at.map_or(*entered, |free| free.max(*entered));
                let due = start
                    .checked_add(self.transmit_time(data.len()))
                    .unwrap_or(start);
                if due > now {
                    return Step::Wait(due);
                }
                Some(due)
            }
            Item::Eof | Item::Close | Item::Reply(_) => None,
        };
        match buffer.pop() {
            Some(item) => {
                if due.is_some() {
                    self.free_at = due;
                }
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

    /// Runs the stage on a synthetic clock until it is empty; returns when the
    /// last byte left.
    fn drain_time(stage: &mut Buffered<BandwidthStage>, t0: Instant) -> (Duration, usize) {
        let mut now = t0;
        let mut total = 0;
        loop {
            match stage.poll(now) {
                Step::Emit(item) => total += item.len(),
                Step::Wait(at) => now = at,
                Step::Idle => return (now - t0, total),
                Step::Reset => panic!("bandwidth never resets"),
            }
        }
    }

    #[test]
    fn data_leaves_at_the_configured_rate() {
        let t0 = Instant::now();
        let mut stage = Bandwidth {
            rate_kb_per_sec: 100,
        }
        .stage();
        stage.push(Item::Data(vec![0; 50_000]), t0);
        assert_eq!(stage.buffered_bytes(), 50_000);
        let (elapsed, total) = drain_time(&mut stage, t0);
        assert_eq!(total, 50_000);
        assert!(
            elapsed >= Duration::from_millis(499) && elapsed <= Duration::from_millis(501),
            "{elapsed:?}"
        );
    }

    #[test]
    fn an_idle_link_does_not_bank_credit() {
        let t0 = Instant::now();
        let mut stage = Bandwidth { rate_kb_per_sec: 1 }.stage();
        stage.push(Item::Data(vec![0; 100]), t0);
        let (first, _) = drain_time(&mut stage, t0);
        assert_eq!(first, Duration::from_millis(100));
        let later = t0 + Duration::from_secs(10);
        stage.push(Item::Data(vec![0; 100]), later);
        let (second, _) = drain_time(&mut stage, later);
        assert_eq!(second, Duration::from_millis(100));
    }

    #[test]
    fn zero_rate_means_unlimited() {
        let t0 = Instant::now();
        let mut stage = Bandwidth { rate_kb_per_sec: 0 }.stage();
        stage.push(Item::Data(vec![0; 1_000_000]), t0);
        stage.push(Item::Eof, t0);
        assert_eq!(stage.poll(t0), Step::Emit(Item::Data(vec![0; 1_000_000])));
        assert_eq!(stage.poll(t0), Step::Emit(Item::Eof));
    }
}
