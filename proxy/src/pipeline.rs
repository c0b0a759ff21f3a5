//! The per-direction pipeline of a proxied connection.
//!
//! Data read from one peer enters the pipeline as timestamped [`Item`]s, passes
//! through one [`Stage`] per active toxic (in the order the toxics were added),
//! and leaves through an output queue that the link writes to the other peer.
//!
//! The pipeline is synchronous and clock-driven: every call takes `now`, and
//! [`Pipeline::advance`] says when it next needs to be woken. That keeps the
//! toxics free of I/O and lets the tests drive them with a synthetic clock.
//!
//! Toxics change live: [`Pipeline::reconfigure`] swaps stages while keeping
//! every buffered item, in order. A removed stage hands its items to the next
//! stage down the chain (or to the output); an updated stage hands its items,
//! with their original entry times, to its replacement; a new stage starts empty.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use tokio::time::Instant;

use crate::model::{Stream, Toxic};
use crate::stage::{Item, Stage, Step};
use crate::stats::ToxicCounters;
use crate::toxics::ToxicKind;

/// A toxic as the connections see it.
#[derive(Debug, Clone)]
pub(crate) struct ActiveToxic {
    /// Unique and increasing in the order toxics are added: the chain order.
    pub(crate) id: u64,
    /// Bumped on every update, so connections know to rebuild the stage.
    pub(crate) revision: u64,
    pub(crate) name: String,
    pub(crate) stream: Stream,
    pub(crate) toxicity: f32,
    pub(crate) kind: ToxicKind,
    /// The toxic's counters, shared by every connection; kept across updates.
    pub(crate) stats: Arc<ToxicCounters>,
}

impl ActiveToxic {
    /// The toxic as the API shows it, without a lease.
    pub(crate) fn to_wire(&self) -> Toxic {
        Toxic {
            name: self.name.clone(),
            toxic_type: self.kind.type_name().to_owned(),
            stream: self.stream,
            toxicity: self.toxicity,
            attributes: self.kind.attributes(),
            lease_remaining_ms: None,
            stats: Some(self.stats.values().into()),
        }
    }
}

/// The toxics of one proxy, as published to its connections.
pub(crate) type ToxicSet = Arc<Vec<ActiveToxic>>;

/// A control item that reached the output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Control {
    Eof,
    Close,
    /// The proxy's answer to the source peer ([`Item::Reply`]).
    Reply(Vec<u8>),
}

/// The pipeline aborted the connection ([`Step::Reset`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ResetRequested;

#[derive(Debug)]
struct Slot {
    id: u64,
    revision: u64,
    stage: Box<dyn Stage>,
    stats: Arc<ToxicCounters>,
    /// Count the payload bytes entering the stage in `stats`.
    count_bytes: bool,
}

impl Slot {
    /// Pushes an item that enters this toxic's stage for the first time.
    fn enter(&mut self, item: Item, entered: Instant) {
        if self.count_bytes && item.len() > 0 {
            self.stats.count_bytes(item.len());
        }
        self.stage.push(item, entered);
    }
}

#[derive(Debug, Clone, Copy)]
struct Decision {
    toxicity: f32,
    affected: bool,
    /// The toxic's `connections` counts this connection already.
    counted: bool,
}

/// The toxics of one direction of one connection, plus its output queue.
#[derive(Debug)]
pub(crate) struct Pipeline {
    stream: Stream,
    /// Stages in chain order; ids ascend (toxics keep the order they were added in).
    slots: Vec<Slot>,
    /// Per-toxic toxicity rolls for this connection, kept until the toxicity changes.
    decisions: HashMap<u64, Decision>,
    out: VecDeque<Item>,
    /// Bytes of `out.front()` already written.
    out_offset: usize,
    out_bytes: usize,
    roll: fn(f32) -> bool,
}

/// Rolls the dice for a toxic with this toxicity: is this connection affected?
pub(crate) fn roll_toxicity(toxicity: f32) -> bool {
    if toxicity >= 1.0 {
        true
    } else if toxicity <= 0.0 || toxicity.is_nan() {
        false
    } else {
        rand::random::<f32>() < toxicity
    }
}

impl Pipeline {
    /// An empty pipeline for one direction.
    pub(crate) fn new(stream: Stream) -> Self {
        Self::with_roll(stream, roll_toxicity)
    }

    /// An empty pipeline with a custom toxicity roll (for tests).
    pub(crate) fn with_roll(stream: Stream, roll: fn(f32) -> bool) -> Self {
        Self {
            stream,
            slots: Vec::new(),
            decisions: HashMap::new(),
            out: VecDeque::new(),
            out_offset: 0,
            out_bytes: 0,
            roll,
        }
    }

    /// Number of stages (toxics affecting this direction of this connection).
    #[cfg(test)]
    pub(crate) fn stage_count(&self) -> usize {
        self.slots.len()
    }

    /// Whether the pipeline has no stage and holds nothing: what is read may
    /// then go straight to the destination, as it would through the pipeline.
    pub(crate) fn is_idle(&self) -> bool {
        self.slots.is_empty() && self.out.is_empty()
    }

    /// Feeds an item read from the source peer.
    pub(crate) fn push(&mut self, item: Item, now: Instant) {
        if matches!(&item, Item::Data(data) if data.is_empty()) {
            return;
        }
        match self.slots.first_mut() {
            Some(slot) => slot.enter(item, now),
            None => self.push_out(item),
        }
    }

    fn push_out(&mut self, item: Item) {
        if matches!(&item, Item::Data(data) if data.is_empty()) {
            return;
        }
        self.out_bytes += item.len();
        self.out.push_back(item);
    }

    /// Moves every due item as far down the chain as it may go.
    ///
    /// Returns when the pipeline next needs to run, if a timer is pending.
    pub(crate) fn advance(&mut self, now: Instant) -> Result<Option<Instant>, ResetRequested> {
        let mut wake: Option<Instant> = None;
        for index in 0..self.slots.len() {
            loop {
                let step = self.slots[index].stage.poll(now);
                match step {
                    Step::Emit(item) => match self.slots.get_mut(index + 1) {
                        Some(next) => next.enter(item, now),
                        None => self.push_out(item),
                    },
                    Step::Wait(at) => {
                        wake = Some(wake.map_or(at, |w| w.min(at)));
                        break;
                    }
                    Step::Idle => break,
                    Step::Reset => {
                        self.slots[index].stats.count_reset();
                        return Err(ResetRequested);
                    }
                }
            }
        }
        Ok(wake)
    }

    /// The unwritten bytes of the output's head, if it is data.
    pub(crate) fn front_data(&self) -> Option<&[u8]> {
        match self.out.front() {
            Some(Item::Data(data)) => data.get(self.out_offset..),
            _ => None,
        }
    }

    /// Marks `written` bytes of the output's head as written.
    pub(crate) fn consume(&mut self, written: usize) {
        let Some(Item::Data(data)) = self.out.front() else {
            return;
        };
        let len = data.len();
        let written = written.min(len - self.out_offset);
        self.out_offset += written;
        self.out_bytes -= written;
        if self.out_offset >= len {
            self.out.pop_front();
            self.out_offset = 0;
        }
    }

    /// Pops a control item at the head of the output.
    pub(crate) fn pop_control(&mut self) -> Option<Control> {
        if matches!(self.out.front(), None | Some(Item::Data(_))) {
            return None;
        }
        match self.out.pop_front() {
            Some(Item::Eof) => Some(Control::Eof),
            Some(Item::Close) => Some(Control::Close),
            Some(Item::Reply(reply)) => Some(Control::Reply(reply)),
            Some(Item::Data(_)) | None => None,
        }
    }

    /// Payload bytes held anywhere in the pipeline, output included.
    pub(crate) fn buffered_bytes(&self) -> usize {
        self.out_bytes
            + self
                .slots
                .iter()
                .map(|slot| slot.stage.buffered_bytes())
                .sum::<usize>()
    }

    /// Whether `toxic` affects this connection; counts the connection in the
    /// toxic's stats the first time it does.
    fn decide(&mut self, toxic: &ActiveToxic) -> bool {
        let previous = self.decisions.get(&toxic.id).copied();
        let decision = match previous {
            Some(decision) if decision.toxicity == toxic.toxicity => decision,
            _ => Decision {
                toxicity: toxic.toxicity,
                affected: (self.roll)(toxic.toxicity),
                counted: previous.is_some_and(|previous| previous.counted),
            },
        };
        let decision = if decision.affected && !decision.counted {
            toxic.stats.count_connection();
            Decision {
                counted: true,
                ..decision
            }
        } else {
            decision
        };
        self.decisions.insert(toxic.id, decision);
        decision.affected
    }

    /// Applies a new set of toxics (the whole proxy's set; only this
    /// direction's are used) without losing or reordering buffered items.
    pub(crate) fn reconfigure(&mut self, toxics: &[ActiveToxic], now: Instant) {
        let mut wanted: Vec<&ActiveToxic> = Vec::new();
        let stream = self.stream;
        for toxic in toxics.iter().filter(|toxic| toxic.stream == stream) {
            if self.decide(toxic) {
                wanted.push(toxic);
            }
        }
        wanted.sort_by_key(|toxic| toxic.id);
        self.decisions
            .retain(|id, _| toxics.iter().any(|toxic| toxic.id == *id));

        let mut old: VecDeque<Slot> = std::mem::take(&mut self.slots).into();
        let mut wanted = wanted.into_iter().peekable();
        let mut slots = Vec::with_capacity(old.len() + 1);
        // Items taken out of removed stages, oldest first, still to be pushed
        // into the next surviving stage. Stages nearer the head hold newer
        // data, so each removed stage's items go in front of the carry.
        let mut carry: Vec<Item> = Vec::new();
        loop {
            let old_id = old.front().map(|slot| slot.id);
            let new_id = wanted.peek().map(|toxic| toxic.id);
            match (old_id, new_id) {
                (None, None) => break,
                (Some(o), n) if n.is_none_or(|n| o < n) => {
                    // Removed (or no longer affecting this connection).
                    if let Some(mut slot) = old.pop_front() {
                        let mut items: Vec<Item> = slot
                            .stage
                            .take_buffered()
                            .into_iter()
                            .map(|(item, _)| item)
                            .collect();
                        items.append(&mut carry);
                        carry = items;
                    }
                }
                (o, Some(n)) => {
                    let Some(toxic) = wanted.next() else { break };
                    let mut slot = if o == Some(n) {
                        match old.pop_front() {
                            Some(slot) if slot.revision == toxic.revision => slot,
                            Some(mut slot) => {
                                // Updated: the replacement inherits the buffer,
                                // with the original entry times, and where in
                                // the stream the buffer starts. The items are
                                // not new to this toxic: their bytes count once.
                                let mut replacement = new_slot(toxic, now);
                                let buffered = slot.stage.take_buffered();
                                if let Some(handover) = slot.stage.handover() {
                                    replacement.stage.take_over(handover);
                                }
                                for (item, entered) in buffered {
                                    replacement.stage.push(item, entered);
                                }
                                replacement
                            }
                            None => new_slot(toxic, now),
                        }
                    } else {
                        new_slot(toxic, now)
                    };
                    for item in carry.drain(..) {
                        slot.enter(item, now);
                    }
                    slots.push(slot);
                }
                // Unreachable: the first arm takes (Some, None).
                (Some(_), None) => break,
            }
        }
        self.slots = slots;
        for item in carry {
            self.push_out(item);
        }
    }
}

fn new_slot(toxic: &ActiveToxic, now: Instant) -> Slot {
    Slot {
        id: toxic.id,
        revision: toxic.revision,
        stage: toxic.kind.stage(now, &toxic.stats),
        stats: Arc::clone(&toxic.stats),
        count_bytes: toxic.kind.acts_on_every_byte(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use proptest::prelude::*;

    use super::*;
    use crate::toxics::http::{Matcher, Ratio, Selector};
    use crate::toxics::{Bandwidth, HttpAbort, HttpDelay, Latency, LimitData, SlowClose, Timeout};

    fn toxic(id: u64, kind: ToxicKind) -> ActiveToxic {
        ActiveToxic {
            id,
            revision: 0,
            name: format!("t{id}"),
            stream: Stream::Downstream,
            toxicity: 1.0,
            kind,
            stats: Arc::default(),
        }
    }

    fn latency(ms: u64) -> ToxicKind {
        ToxicKind::Latency(Latency {
            latency: Duration::from_millis(ms),
            jitter: Duration::ZERO,
        })
    }

    fn hold() -> ToxicKind {
        ToxicKind::Timeout(Timeout {
            timeout: Duration::ZERO,
        })
    }

    /// Drains the output: data bytes, and whether an EOF or close came out.
    fn drain(pipeline: &mut Pipeline, sink: &mut Vec<u8>) -> Option<Control> {
        loop {
            if let Some(control) = pipeline.pop_control() {
                return Some(control);
            }
            let data = pipeline.front_data()?.to_vec();
            sink.extend_from_slice(&data);
            pipeline.consume(data.len());
        }
    }

    #[test]
    fn without_toxics_items_pass_straight_through() {
        let now = Instant::now();
        let mut pipeline = Pipeline::new(Stream::Downstream);
        pipeline.push(Item::Data(b"abc".to_vec()), now);
        pipeline.push(Item::Eof, now);
        assert_eq!(pipeline.advance(now), Ok(None));
        assert_eq!(pipeline.buffered_bytes(), 3);
        let mut sink = Vec::new();
        assert_eq!(drain(&mut pipeline, &mut sink), Some(Control::Eof));
        assert_eq!(sink, b"abc");
        assert_eq!(pipeline.buffered_bytes(), 0);
    }

    #[test]
    fn idle_means_no_stage_and_nothing_queued() {
        let now = Instant::now();
        let mut pipeline = Pipeline::new(Stream::Downstream);
        assert!(pipeline.is_idle());
        pipeline.push(Item::Data(b"abc".to_vec()), now);
        assert!(!pipeline.is_idle(), "data waits in the output");
        let mut sink = Vec::new();
        assert_eq!(drain(&mut pipeline, &mut sink), None);
        assert!(pipeline.is_idle());

        let toxics = vec![toxic(1, latency(10))];
        pipeline.reconfigure(&toxics, now);
        assert!(!pipeline.is_idle(), "a stage, even empty, is not idle");
        pipeline.reconfigure(&[], now);
        assert!(pipeline.is_idle());
        pipeline.push(Item::Eof, now);
        assert!(!pipeline.is_idle(), "an EOF waits in the output");
    }

    #[test]
    fn partial_writes_are_tracked() {
        let now = Instant::now();
        let mut pipeline = Pipeline::new(Stream::Downstream);
        pipeline.push(Item::Data(b"abcdef".to_vec()), now);
        pipeline.consume(2);
        assert_eq!(pipeline.front_data(), Some(&b"cdef"[..]));
        assert_eq!(pipeline.buffered_bytes(), 4);
        pipeline.consume(4);
        assert_eq!(pipeline.front_data(), None);
    }

    #[test]
    fn toxics_of_the_other_stream_are_ignored() {
        let now = Instant::now();
        let mut pipeline = Pipeline::new(Stream::Upstream);
        pipeline.reconfigure(&[toxic(1, latency(100))], now);
        assert_eq!(pipeline.stage_count(), 0);
    }

    #[test]
    fn toxicity_zero_never_applies_and_one_always_does() {
        let now = Instant::now();
        let mut pipeline = Pipeline::new(Stream::Downstream);
        let mut never = toxic(1, latency(100));
        never.toxicity = 0.0;
        pipeline.reconfigure(&[never, toxic(2, latency(100))], now);
        assert_eq!(pipeline.stage_count(), 1);
    }

    #[test]
    fn the_roll_is_kept_until_the_toxicity_changes() {
        let now = Instant::now();
        // A roll that alternates would flip the decision on every re-roll.
        fn flip(_: f32) -> bool {
            use std::sync::atomic::{AtomicBool, Ordering};
            static NEXT: AtomicBool = AtomicBool::new(true);
            NEXT.fetch_xor(true, Ordering::Relaxed)
        }
        let mut pipeline = Pipeline::with_roll(Stream::Downstream, flip);
        let mut t = toxic(1, latency(100));
        t.toxicity = 0.5;
        pipeline.reconfigure(std::slice::from_ref(&t), now);
        let first = pipeline.stage_count();
        t.revision = 1;
        t.kind = latency(200);
        pipeline.reconfigure(std::slice::from_ref(&t), now);
        assert_eq!(pipeline.stage_count(), first, "same toxicity: same roll");
        t.toxicity = 0.6;
        pipeline.reconfigure(std::slice::from_ref(&t), now);
        assert_ne!(pipeline.stage_count(), first, "new toxicity: new roll");
    }

    #[test]
    fn removing_a_holding_stage_releases_its_items_in_order() {
        let t0 = Instant::now();
        let mut pipeline = Pipeline::new(Stream::Downstream);
        pipeline.reconfigure(&[toxic(1, hold())], t0);
        pipeline.push(Item::Data(b"one ".to_vec()), t0);
        pipeline.push(Item::Data(b"two ".to_vec()), t0);
        assert_eq!(pipeline.advance(t0), Ok(None));
        assert_eq!(pipeline.front_data(), None);
        pipeline.reconfigure(&[], t0);
        pipeline.push(Item::Data(b"three".to_vec()), t0);
        let mut sink = Vec::new();
        assert_eq!(drain(&mut pipeline, &mut sink), None);
        assert_eq!(sink, b"one two three");
    }

    #[test]
    fn removed_stages_hand_their_items_to_the_next_stage() {
        let t0 = Instant::now();
        let mut pipeline = Pipeline::new(Stream::Downstream);
        // hold (id 1) -> latency 100 ms (id 2)
        pipeline.reconfigure(&[toxic(1, hold()), toxic(2, latency(100))], t0);
        pipeline.push(Item::Data(b"a".to_vec()), t0);
        pipeline.advance(t0).unwrap();
        let t1 = t0 + Duration::from_millis(50);
        pipeline.reconfigure(&[toxic(2, latency(100))], t1);
        // "a" entered the latency stage at t1, so it is due at t1 + 100 ms.
        assert_eq!(
            pipeline.advance(t1),
            Ok(Some(t1 + Duration::from_millis(100)))
        );
        let mut sink = Vec::new();
        pipeline.advance(t1 + Duration::from_millis(100)).unwrap();
        drain(&mut pipeline, &mut sink);
        assert_eq!(sink, b"a");
    }

    #[test]
    fn an_updated_stage_keeps_the_entry_times_of_its_items() {
        let t0 = Instant::now();
        let mut pipeline = Pipeline::new(Stream::Downstream);
        let mut t = toxic(1, latency(1000));
        pipeline.reconfigure(std::slice::from_ref(&t), t0);
        pipeline.push(Item::Data(b"x".to_vec()), t0);
        assert_eq!(
            pipeline.advance(t0),
            Ok(Some(t0 + Duration::from_millis(1000)))
        );
        t.revision = 1;
        t.kind = latency(200);
        pipeline.reconfigure(std::slice::from_ref(&t), t0 + Duration::from_millis(10));
        assert_eq!(
            pipeline.advance(t0 + Duration::from_millis(10)),
            Ok(Some(t0 + Duration::from_millis(200)))
        );
    }

    #[test]
    fn a_close_travels_behind_the_data_before_it() {
        let t0 = Instant::now();
        let mut pipeline = Pipeline::new(Stream::Downstream);
        // limit 3 bytes (id 1) -> latency 100 ms (id 2)
        pipeline.reconfigure(
            &[
                toxic(1, ToxicKind::LimitData(LimitData { bytes: 3 })),
                toxic(2, latency(100)),
            ],
            t0,
        );
        pipeline.push(Item::Data(b"abcdef".to_vec()), t0);
        pipeline.advance(t0).unwrap();
        let mut sink = Vec::new();
        assert_eq!(drain(&mut pipeline, &mut sink), None);
        pipeline.advance(t0 + Duration::from_millis(100)).unwrap();
        assert_eq!(drain(&mut pipeline, &mut sink), Some(Control::Close));
        assert_eq!(sink, b"abc");
    }

    #[test]
    fn stats_count_a_connection_once_and_a_byte_once_across_updates() {
        let t0 = Instant::now();
        let mut pipeline = Pipeline::new(Stream::Downstream);
        let mut t = toxic(1, latency(100));
        pipeline.reconfigure(std::slice::from_ref(&t), t0);
        pipeline.push(Item::Data(b"abcd".to_vec()), t0);
        // The replacement stage inherits "abcd": the toxic saw it once.
        t.revision = 1;
        t.kind = latency(50);
        pipeline.reconfigure(std::slice::from_ref(&t), t0);
        pipeline.push(Item::Data(b"ef".to_vec()), t0);
        pipeline.advance(t0 + Duration::from_millis(100)).unwrap();
        let mut sink = Vec::new();
        drain(&mut pipeline, &mut sink);
        assert_eq!(sink, b"abcdef");
        let stats = t.stats.values();
        assert_eq!((stats.connections, stats.bytes), (1, 6));
        // A new toxicity draws again, but the connection counts once.
        t.toxicity = 0.99;
        pipeline.reconfigure(std::slice::from_ref(&t), t0);
        t.toxicity = 1.0;
        pipeline.reconfigure(std::slice::from_ref(&t), t0);
        assert_eq!(t.stats.values().connections, 1);
    }

    #[test]
    fn bytes_released_by_a_removed_stage_count_in_the_next() {
        let t0 = Instant::now();
        let mut pipeline = Pipeline::new(Stream::Downstream);
        let held = toxic(1, hold());
        let delayed = toxic(2, latency(10));
        pipeline.reconfigure(&[held.clone(), delayed.clone()], t0);
        pipeline.push(Item::Data(b"abc".to_vec()), t0);
        pipeline.advance(t0).unwrap();
        assert_eq!(delayed.stats.values().bytes, 0);
        pipeline.reconfigure(std::slice::from_ref(&delayed), t0);
        assert_eq!(held.stats.values().bytes, 3);
        assert_eq!(delayed.stats.values().bytes, 3);
    }

    #[test]
    fn resets_count_for_their_toxic_and_unaffected_connections_count_nothing() {
        use crate::toxics::ResetPeer;
        let t0 = Instant::now();
        let mut pipeline = Pipeline::new(Stream::Downstream);
        let mut never = toxic(1, latency(10));
        never.toxicity = 0.0;
        let reset = toxic(
            2,
            ToxicKind::ResetPeer(ResetPeer {
                timeout: Duration::ZERO,
            }),
        );
        pipeline.reconfigure(&[never.clone(), reset.clone()], t0);
        pipeline.push(Item::Data(b"x".to_vec()), t0);
        assert_eq!(pipeline.advance(t0), Err(ResetRequested));
        assert_eq!(never.stats.values(), Default::default());
        let stats = reset.stats.values();
        assert_eq!((stats.connections, stats.resets, stats.bytes), (1, 1, 0));
    }

    fn arbitrary_kind() -> impl Strategy<Value = ToxicKind> {
        prop_oneof![
            (0u64..50, 0u64..20).prop_map(|(l, j)| ToxicKind::Latency(Latency {
                latency: Duration::from_millis(l),
                jitter: Duration::from_millis(j),
            })),
            (1u64..200).prop_map(|rate| ToxicKind::Bandwidth(Bandwidth {
                rate_kb_per_sec: rate
            })),
            Just(hold()),
            (0u64..50).prop_map(|d| ToxicKind::SlowClose(SlowClose {
                delay: Duration::from_millis(d)
            })),
            arbitrary_http_kind(),
        ]
    }

    fn selector(path: Option<&str>, ratio: f64) -> Selector {
        Selector {
            matcher: Matcher {
                path: path.map(str::to_owned),
                ..Matcher::default()
            },
            ratio: Ratio::new(ratio).unwrap(),
        }
    }

    fn http_delay(path: Option<&str>, ms: u64, jitter: u64, ratio: f64) -> ToxicKind {
        ToxicKind::HttpDelay(HttpDelay {
            latency: Duration::from_millis(ms),
            jitter: Duration::from_millis(jitter),
            selector: selector(path, ratio),
        })
    }

    fn http_abort(path: &str, status: u16) -> ToxicKind {
        ToxicKind::HttpAbort(HttpAbort {
            status,
            body: None,
            selector: selector(Some(path), 1.0),
        })
    }

    /// HTTP toxics that never answer a request of the generated streams.
    fn arbitrary_http_kind() -> impl Strategy<Value = ToxicKind> {
        prop_oneof![
            (
                prop::sample::select(vec![None, Some("/slow"), Some("/a")]),
                0u64..50,
                0u64..20,
                prop::sample::select(vec![0.0, 0.5, 1.0]),
            )
                .prop_map(|(path, ms, jitter, ratio)| http_delay(path, ms, jitter, ratio)),
            (500u16..504).prop_map(|status| http_abort("/never", status)),
        ]
    }

    #[derive(Debug, Clone)]
    enum Op {
        Send(usize),
        Add(ToxicKind, bool),
        Update(usize, ToxicKind),
        Remove(usize),
        Tick(u64),
    }

    fn arbitrary_op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (1usize..3000).prop_map(Op::Send),
            2 => (arbitrary_kind(), any::<bool>()).prop_map(|(k, up)| Op::Add(k, up)),
            1 => (0usize..8, arbitrary_kind()).prop_map(|(i, k)| Op::Update(i, k)),
            2 => (0usize..8).prop_map(Op::Remove),
            3 => (0u64..80).prop_map(Op::Tick),
        ]
    }

    proptest! {
        /// Whatever toxics come and go, every byte comes out once, in order,
        /// followed by the EOF, once all toxics are gone.
        #[test]
        fn live_reconfiguration_never_loses_or_reorders_bytes(
            ops in proptest::collection::vec(arbitrary_op(), 1..60)
        ) {
            let mut now = Instant::now();
            let mut pipeline = Pipeline::new(Stream::Downstream);
            let mut toxics: Vec<ActiveToxic> = Vec::new();
            let mut next_id = 1;
            let mut sent: Vec<u8> = Vec::new();
            let mut received: Vec<u8> = Vec::new();
            for op in ops {
                match op {
                    Op::Send(len) => {
                        let chunk: Vec<u8> =
                            (sent.len()..sent.len() + len).map(|i| (i % 251) as u8).collect();
                        sent.extend_from_slice(&chunk);
                        pipeline.push(Item::Data(chunk), now);
                    }
                    Op::Add(kind, upstream) => {
                        let mut t = toxic(next_id, kind);
                        if upstream {
                            t.stream = Stream::Upstream;
                        }
                        next_id += 1;
                        toxics.push(t);
                        pipeline.reconfigure(&toxics, now);
                    }
                    Op::Update(index, kind) => {
                        if !toxics.is_empty() {
                            let len = toxics.len();
                            let t = &mut toxics[index % len];
                            t.kind = kind;
                            t.revision += 1;
                            pipeline.reconfigure(&toxics, now);
                        }
                    }
                    Op::Remove(index) => {
                        if !toxics.is_empty() {
                            let len = toxics.len();
                            toxics.remove(index % len);
                            pipeline.reconfigure(&toxics, now);
                        }
                    }
                    Op::Tick(ms) => now += Duration::from_millis(ms),
                }
                prop_assert!(pipeline.advance(now).is_ok());
                prop_assert_eq!(drain(&mut pipeline, &mut received), None);
                prop_assert!(sent.starts_with(&received));
            }
            pipeline.push(Item::Eof, now);
            toxics.clear();
            pipeline.reconfigure(&toxics, now);
            prop_assert_eq!(pipeline.advance(now), Ok(None));
            prop_assert_eq!(drain(&mut pipeline, &mut received), Some(Control::Eof));
            prop_assert_eq!(received, sent);
        }
    }

    /// One request: a path, and no body, a `Content-Length` body, or a
    /// chunked body in these chunk sizes.
    fn arbitrary_request() -> impl Strategy<Value = Vec<u8>> {
        (
            prop::sample::select(vec!["/a", "/slow/x", "/b?q=1"]),
            0u8..3,
            prop::collection::vec(1usize..40, 0..4),
        )
            .prop_map(|(path, body, chunks)| {
                let filler = |len: usize| -> Vec<u8> {
                    (0..len).map(|i| b"GET / HTTP/1.1\r\n"[i % 16]).collect()
                };
                let mut request = match body {
                    0 => format!("GET {path} HTTP/1.1\r\nHost: h\r\n\r\n").into_bytes(),
                    1 => {
                        let len: usize = chunks.iter().sum();
                        let mut r = format!(
                            "POST {path} HTTP/1.1\r\nHost: h\r\nContent-Length: {len}\r\n\r\n"
                        )
                        .into_bytes();
                        r.extend(filler(len));
                        r
                    }
                    _ => {
                        let mut r =
                            format!("PUT {path} HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")
                                .into_bytes();
                        for len in &chunks {
                            r.extend(format!("{len:x};e=1\r\n").into_bytes());
                            r.extend(filler(*len));
                            r.extend(b"\r\n");
                        }
                        r.extend(b"0\r\nT: 1\r\n\r\n");
                        r
                    }
                };
                request.shrink_to_fit();
                request
            })
    }

    #[derive(Debug, Clone)]
    enum HttpOp {
        Send(usize),
        Add(ToxicKind),
        Update(usize, ToxicKind),
        /// A new latency for the permanent `http_delay` of `/slow`.
        UpdateDelay(u64),
        /// A new status for the permanent `http_abort` of `/abort-me`.
        UpdateAbort(u16),
        Remove(usize),
        Tick(u64),
    }

    fn arbitrary_http_op() -> impl Strategy<Value = HttpOp> {
        prop_oneof![
            5 => (1usize..300).prop_map(HttpOp::Send),
            2 => arbitrary_kind().prop_map(HttpOp::Add),
            1 => (0usize..8, arbitrary_kind()).prop_map(|(i, k)| HttpOp::Update(i, k)),
            2 => (0u64..40).prop_map(HttpOp::UpdateDelay),
            2 => (500u16..504).prop_map(HttpOp::UpdateAbort),
            2 => (0usize..8).prop_map(HttpOp::Remove),
            3 => (0u64..80).prop_map(HttpOp::Tick),
        ]
    }

    proptest! {
        /// Pipelined HTTP requests, sent in arbitrary pieces, through HTTP
        /// toxics that are updated (and other toxics that come and go) while
        /// requests are in flight: every byte comes out once, in order, and
        /// the permanent HTTP toxics still frame the stream correctly at the
        /// end (the delay still delays, the abort still answers).
        #[test]
        fn live_reconfiguration_keeps_http_framing(
            requests in prop::collection::vec(arbitrary_request(), 1..12),
            ops in prop::collection::vec(arbitrary_http_op(), 1..60),
        ) {
            let stream: Vec<u8> = requests.concat();
            let mut now = Instant::now();
            let mut pipeline = Pipeline::new(Stream::Upstream);
            let upstream = |id: u64, kind: ToxicKind| ActiveToxic {
                stream: Stream::Upstream,
                ..toxic(id, kind)
            };
            // Two permanent toxics first, then the ones that come and go.
            let mut toxics = vec![
                upstream(1, http_delay(Some("/slow"), 10, 0, 1.0)),
                upstream(2, http_abort("/abort-me", 503)),
            ];
            pipeline.reconfigure(&toxics, now);
            let mut next_id = 3;
            let mut sent = 0;
            let mut received: Vec<u8> = Vec::new();
            for op in ops {
                match op {
                    HttpOp::Send(len) => {
                        let end = (sent + len).min(stream.len());
                        pipeline.push(Item::Data(stream[sent..end].to_vec()), now);
                        sent = end;
                    }
                    HttpOp::Add(kind) => {
                        toxics.push(upstream(next_id, kind));
                        next_id += 1;
                    }
                    HttpOp::Update(index, kind) => {
                        if toxics.len() > 2 {
                            let len = toxics.len() - 2;
                            let t = &mut toxics[2 + index % len];
                            t.kind = kind;
                            t.revision += 1;
                        }
                    }
                    HttpOp::UpdateDelay(ms) => {
                        toxics[0].kind = http_delay(Some("/slow"), ms, 0, 1.0);
                        toxics[0].revision += 1;
                    }
                    HttpOp::UpdateAbort(status) => {
                        toxics[1].kind = http_abort("/abort-me", status);
                        toxics[1].revision += 1;
                    }
                    HttpOp::Remove(index) => {
                        if toxics.len() > 2 {
                            let len = toxics.len() - 2;
                            toxics.remove(2 + index % len);
                        }
                    }
                    HttpOp::Tick(ms) => now += Duration::from_millis(ms),
                }
                pipeline.reconfigure(&toxics, now);
                prop_assert!(pipeline.advance(now).is_ok());
                prop_assert_eq!(drain(&mut pipeline, &mut received), None);
                prop_assert!(stream.starts_with(&received));
            }
            // The rest of the requests, and every toxic but the two gone.
            pipeline.push(Item::Data(stream[sent..].to_vec()), now);
            toxics.truncate(2);
            pipeline.reconfigure(&toxics, now);
            now += Duration::from_secs(10);
            prop_assert_eq!(pipeline.advance(now), Ok(None));
            prop_assert_eq!(drain(&mut pipeline, &mut received), None);
            prop_assert_eq!(&received, &stream);

            // An update just before the last requests: still in step.
            toxics[0].kind = http_delay(Some("/slow"), 1000, 0, 1.0);
            toxics[0].revision += 1;
            pipeline.reconfigure(&toxics, now);
            let slow = b"GET /slow/last HTTP/1.1\r\n\r\n";
            let mut last = slow.to_vec();
            last.extend_from_slice(b"GET /abort-me HTTP/1.1\r\n\r\nGET /after HTTP/1.1\r\n\r\n");
            pipeline.push(Item::Data(last), now);
            prop_assert_eq!(pipeline.advance(now), Ok(Some(now + Duration::from_secs(1))));
            prop_assert_eq!(drain(&mut pipeline, &mut received), None);
            prop_assert_eq!(received.len(), stream.len());
            now += Duration::from_secs(1);
            prop_assert_eq!(pipeline.advance(now), Ok(None));
            let answer = drain(&mut pipeline, &mut received);
            prop_assert!(
                matches!(&answer, Some(Control::Reply(reply)) if reply.starts_with(b"HTTP/1.1 50")),
                "{:?}", answer
            );
            prop_assert_eq!(&received[stream.len()..], &slow[..]);
        }
    }
}
