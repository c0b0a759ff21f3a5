//! The contract between a toxic and the pipeline: the [`Item`]s that travel
//! through one direction of a connection, and the [`Stage`] a toxic applies
//! to them.
//!
//! A leaf: the toxics implement [`Stage`], and the pipeline chains stages,
//! without either knowing the other.

use std::any::Any;
use std::fmt;

use tokio::time::Instant;

/// One unit travelling through a pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Item {
    /// Bytes read from the source peer (never empty).
    Data(Vec<u8>),
    /// The source peer finished sending: half-close the destination.
    Eof,
    /// A toxic decided to close the whole connection, after the data before it.
    Close,
    /// The proxy's own answer to the source peer, in place of the destination
    /// (an HTTP toxic answering a request itself). When it leaves the
    /// pipeline, this direction forwards nothing more: the link hands the
    /// bytes to the other direction, which delivers them to the source peer
    /// after what it already holds, then half-closes it; the connection ends
    /// when that peer closes.
    Reply(Vec<u8>),
}

impl Item {
    /// Payload bytes carried by this item towards the destination (a
    /// [`Item::Reply`] carries none: its bytes go the other way).
    pub(crate) fn len(&self) -> usize {
        match self {
            Item::Data(data) => data.len(),
            Item::Eof | Item::Close | Item::Reply(_) => 0,
        }
    }
}

/// What a stage wants to happen next.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Pass this item on to the next stage now.
    Emit(Item),
    /// Nothing is due before this instant.
    Wait(Instant),
    /// Nothing to do until more input arrives.
    Idle,
    /// Abort the connection with a TCP reset, discarding everything in flight.
    Reset,
}

/// What a stage passes to its replacement when its toxic is updated, beside
/// its items: where in the stream the oldest of those items stands (such as
/// the position inside an HTTP message). Opaque to the pipeline.
pub(crate) type Handover = Box<dyn Any + Send>;

/// One toxic applied to one direction of one connection.
///
/// Invariants every stage keeps: items leave in the order they entered;
/// `poll` returns [`Step::Wait`] only for an instant later than `now`.
pub(crate) trait Stage: Send + fmt::Debug {
    /// Accepts an item that entered this stage at `entered`.
    fn push(&mut self, item: Item, entered: Instant);
    /// Releases the next due item, or says when one will be due.
    fn poll(&mut self, now: Instant) -> Step;
    /// Removes and returns every buffered item, oldest first, with its entry time.
    fn take_buffered(&mut self) -> Vec<(Item, Instant)>;
    /// Payload bytes currently held.
    fn buffered_bytes(&self) -> usize;
    /// Called after [`Stage::take_buffered`] when the toxic is updated: the
    /// state the replacement needs to take the returned items back as if it
    /// had seen everything before them. Stateless stages have none.
    fn handover(&mut self) -> Option<Handover> {
        None
    }
    /// Takes the [`Stage::handover`] of the stage this one replaces, before
    /// that stage's items are pushed into it.
    fn take_over(&mut self, _from: Handover) {}
}
