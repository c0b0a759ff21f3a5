//! The buffering stage the toxics share: the items a stage holds, in order,
//! with their entry times and their byte count.
//!
//! A buffering toxic implements [`Buffering`]: what to do with an item that
//! arrives, and which held item to release when. [`Buffered`] wraps it into a
//! [`Stage`] and does the rest: it owns the [`Buffer`], hands every held item
//! back on reconfiguration, and counts the bytes held. (Toxiproxy keeps this
//! plumbing once too, in its toxic stubs.)

use std::collections::VecDeque;
use std::fmt;

use tokio::time::Instant;

use crate::stage::{Item, Stage, Step};

/// Items held by a stage, oldest first, with their entry times.
#[derive(Debug, Default)]
pub(crate) struct Buffer {
    queue: VecDeque<(Item, Instant)>,
    /// Payload bytes in `queue`.
    bytes: usize,
}

impl Buffer {
    /// Holds `item`, which entered the stage at `entered`.
    pub(crate) fn push(&mut self, item: Item, entered: Instant) {
        self.bytes += item.len();
        self.queue.push_back((item, entered));
    }

    /// The oldest item and its entry time.
    pub(crate) fn front(&self) -> Option<&(Item, Instant)> {
        self.queue.front()
    }

    /// Removes and returns the oldest item.
    pub(crate) fn pop(&mut self) -> Option<Item> {
        let (item, _) = self.queue.pop_front()?;
        self.bytes -= item.len();
        Some(item)
    }

    /// If the oldest item is data longer than `len` bytes, removes and
    /// returns its first `len` bytes; the rest stays at the front.
    pub(crate) fn split_front(&mut self, len: usize) -> Option<Item> {
        let Some((Item::Data(data), _)) = self.queue.front_mut() else {
            return None;
        };
        if data.len() <= len {
            return None;
        }
        let rest = data.split_off(len);
        let head = std::mem::replace(data, rest);
        self.bytes -= head.len();
        Some(Item::Data(head))
    }

    /// Payload bytes held.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Drops everything held.
    pub(crate) fn clear(&mut self) {
        self.queue.clear();
        self.bytes = 0;
    }
}

/// What a buffering toxic decides; [`Buffered`] holds the items.
pub(crate) trait Buffering: Send + fmt::Debug {
    /// Takes an item that entered the stage at `entered`: holds it, by
    /// default.
    fn push(&mut self, buffer: &mut Buffer, item: Item, entered: Instant) {
        buffer.push(item, entered);
    }

    /// Releases the next due item from `buffer`, or says when one will be due.
    fn poll(&mut self, buffer: &mut Buffer, now: Instant) -> Step;
}

/// A buffering toxic as a pipeline [`Stage`].
#[derive(Debug)]
pub(crate) struct Buffered<T> {
    toxic: T,
    buffer: Buffer,
}

impl<T> Buffered<T> {
    pub(crate) fn new(toxic: T) -> Self {
        Self {
            toxic,
            buffer: Buffer::default(),
        }
    }
}

impl<T: Buffering> Stage for Buffered<T> {
    fn push(&mut self, item: Item, entered: Instant) {
        self.toxic.push(&mut self.buffer, item, entered);
    }

    fn poll(&mut self, now: Instant) -> Step {
        self.toxic.poll(&mut self.buffer, now)
    }

    fn take_buffered(&mut self) -> Vec<(Item, Instant)> {
        self.buffer.bytes = 0;
        self.buffer.queue.drain(..).collect()
    }

    fn buffered_bytes(&self) -> usize {
        self.buffer.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_the_bytes_it_holds_and_splits_the_front() {
        let t0 = Instant::now();
        let mut buffer = Buffer::default();
        buffer.push(Item::Data(b"hello".to_vec()), t0);
        buffer.push(Item::Eof, t0);
        assert_eq!(buffer.bytes, 5);
        assert_eq!(buffer.split_front(5), None);
        assert_eq!(buffer.split_front(2), Some(Item::Data(b"he".to_vec())));
        assert_eq!(buffer.bytes, 3);
        assert_eq!(buffer.pop(), Some(Item::Data(b"llo".to_vec())));
        assert_eq!(buffer.split_front(0), None);
        assert_eq!(buffer.pop(), Some(Item::Eof));
        assert_eq!(buffer.bytes, 0);
        assert_eq!(buffer.pop(), None);
    }
}
