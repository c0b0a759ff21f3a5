//! `latency`: delays every chunk by `latency` ± `jitter` milliseconds.
//!
//! Each chunk gets its own random delay, but a chunk never overtakes the one
//! before it: with jitter, a chunk drawn a short delay waits for its
//! predecessor. The EOF and closes are delayed like data, as a FIN would be.

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

use super::Attributes;
use crate::error::ProxyError;
use crate::stage::{Item, Stage, Step};

pub(super) const TYPE: &str = "latency";

/// Attributes of the `latency` toxic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Latency {
    /// Added delay (`latency`, ms).
    pub latency: Duration,
    /// Maximum random deviation from `latency`, either way (`jitter`, ms).
    pub jitter: Duration,
}

impl Latency {
    pub(super) fn parse(attrs: &mut Attributes<'_>) -> Result<Self, ProxyError> {
        Ok(Self {
            latency: attrs.millis("latency")?,
            jitter: attrs.millis("jitter")?,
        })
    }

    pub(super) fn stage(self) -> LatencyStage {
        LatencyStage {
            config: self,
            queue: VecDeque::new(),
            last_release: None,
            bytes: 0,
        }
    }

    /// One draw of the delay: uniform in `latency ± jitter`, never negative.
    pub(super) fn draw(self) -> Duration {
        if self.jitter.is_zero() {
            return self.latency;
        }
        let spread = (rand::random::<f64>() * 2.0 - 1.0) * self.jitter.as_secs_f64();
        Duration::try_from_secs_f64(self.latency.as_secs_f64() + spread).unwrap_or(Duration::ZERO)
    }
}

#[derive(Debug)]
struct Delayed {
    item: Item,
    entered: Instant,
    release: Instant,
}

#[derive(Debug)]
pub(crate) struct LatencyStage {
    config: Latency,
    queue: VecDeque<Delayed>,
    last_release: Option<Instant>,
    bytes: usize,
}

impl Stage for LatencyStage {
    fn push(&mut self, item: Item, entered: Instant) {
        let mut release = entered + self.config.draw();
        if let Some(last) = self.last_release {
            release = release.max(last);
        }
        self.last_release = Some(release);
        self.bytes += item.len();
        self.queue.push_back(Delayed {
            item,
            entered,
            release,
        });
    }

    fn poll(&mut self, now: Instant) -> Step {
        match self.queue.front() {
            None => Step::Idle,
            Some(head) if head.release > now => Step::Wait(head.release),
            Some(_) => match self.queue.pop_front() {
                Some(head) => {
                    self.bytes -= head.item.len();
                    Step::Emit(head.item)
                }
                None => Step::Idle,
            },
        }
    }

    fn take_buffered(&mut self) -> Vec<(Item, Instant)> {
        self.bytes = 0;
        self.queue
            .drain(..)
            .map(|held| (held.item, held.entered))
            .collect()
    }

    fn buffered_bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn items_are_released_after_the_latency() {
        let t0 = Instant::now();
        let mut stage = Latency {
            latency: ms(100),
            jitter: Duration::ZERO,
        }
        .stage();
        stage.push(Item::Data(b"a".to_vec()), t0);
        stage.push(Item::Eof, t0 + ms(10));
        assert_eq!(stage.buffered_bytes(), 1);
        assert_eq!(stage.poll(t0 + ms(99)), Step::Wait(t0 + ms(100)));
        assert_eq!(
            stage.poll(t0 + ms(100)),
            Step::Emit(Item::Data(b"a".to_vec()))
        );
        assert_eq!(stage.poll(t0 + ms(100)), Step::Wait(t0 + ms(110)));
        assert_eq!(stage.poll(t0 + ms(110)), Step::Emit(Item::Eof));
        assert_eq!(stage.poll(t0 + ms(110)), Step::Idle);
        assert_eq!(stage.buffered_bytes(), 0);
    }

    #[test]
    fn jitter_stays_within_bounds_and_never_reorders() {
        let t0 = Instant::now();
        let config = Latency {
            latency: ms(100),
            jitter: ms(50),
        };
        for _ in 0..1000 {
            let delay = config.draw();
            assert!(delay >= ms(50) && delay <= ms(150), "{delay:?}");
        }
        let mut stage = config.stage();
        for i in 0..200u8 {
            stage.push(Item::Data(vec![i]), t0 + ms(u64::from(i)));
        }
        let mut now = t0;
        let mut seen = Vec::new();
        while seen.len() < 200 {
            match stage.poll(now) {
                Step::Emit(Item::Data(data)) => seen.extend(data),
                Step::Wait(at) => now = at,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(seen, (0..200u8).collect::<Vec<_>>());
    }

    #[test]
    fn zero_jitter_never_goes_below_zero_latency() {
        let config = Latency {
            latency: Duration::ZERO,
            jitter: ms(10),
        };
        for _ in 0..100 {
            assert!(config.draw() <= ms(10));
        }
    }
}
