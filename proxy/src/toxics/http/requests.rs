//! The stage the HTTP toxics share: it frames the requests of one
//! client → server stream ([`Framer`]) and asks its toxic what to do with
//! each request head ([`RequestToxic::decide`]): pass it, delay it, or answer
//! it in place of the server.
//!
//! Bytes leave exactly as they came, in order: a delayed request holds back
//! the requests behind it (pipelined requests keep their order), and the
//! bytes of a body follow their head. After an answer, the stage drops what
//! the client sends (the connection closes once the answer is delivered).
//!
//! Each held item remembers the framing position before it, so that when the
//! stage gives its items back (its toxic updated), the replacement resumes
//! framing where the oldest of them starts ([`Stage::handover`]).
//!
//! Stats: the stage counts in its toxic's counters the `requests` it acts on
//! (delays or answers), the bytes it delays or drops, and its answer as a
//! close. A replacement takes the items given back without counting them
//! again: the handover says how many bytes it replays.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::parse::{Framer, NotHttp, Piece, Position, RequestHead};
use crate::stage::{Handover, Item, Stage, Step};
use crate::stats::ToxicCounters;

/// What an HTTP toxic does with one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Forward it now (behind the requests before it).
    Pass,
    /// Forward it after this delay.
    Delay(Duration),
    /// Do not forward it, nor anything after it: answer the client with
    /// these bytes.
    Answer(Vec<u8>),
}

/// An HTTP toxic: its decision on each request head.
pub(crate) trait RequestToxic: Send + fmt::Debug {
    /// The toxic's type name, for logs.
    const TYPE: &'static str;

    fn decide(&mut self, head: &RequestHead) -> Verdict;
}

/// What a stage hands to its replacement: where the bytes it gives back
/// start in the request stream, and how many there are.
#[derive(Debug, Clone, Copy)]
struct Resume {
    position: Position,
    replay: u64,
}

#[derive(Debug)]
struct Held {
    item: Item,
    entered: Instant,
    /// The framing position before this item.
    at: Position,
    release: Instant,
}

/// An HTTP toxic as a pipeline [`Stage`].
#[derive(Debug)]
pub(crate) struct RequestStage<T> {
    toxic: T,
    framer: Framer,
    queue: VecDeque<Held>,
    /// Payload bytes in `queue`.
    bytes: usize,
    last_release: Option<Instant>,
    /// The toxic answered a request: the client's later bytes are dropped.
    answered: bool,
    /// The stream was found not to be HTTP and that was logged.
    reported: bool,
    stats: Arc<ToxicCounters>,
    /// Bytes fed to the framer (or dropped after an answer) so far.
    fed: u64,
    /// The first `replay` bytes were counted by the stage this one replaced.
    replay: u64,
    /// Data bytes given back by `take_buffered`, for the handover.
    given_back: u64,
}

impl<T: RequestToxic> RequestStage<T> {
    pub(crate) fn new(toxic: T, stats: Arc<ToxicCounters>) -> Self {
        Self {
            toxic,
            framer: Framer::new(),
            queue: VecDeque::new(),
            bytes: 0,
            last_release: None,
            answered: false,
            reported: false,
            stats,
            fed: 0,
            replay: 0,
            given_back: 0,
        }
    }

    /// How many of the stream's bytes `begin..end` are new to this toxic.
    fn fresh(&self, begin: u64, end: u64) -> usize {
        usize::try_from(end.saturating_sub(begin.max(self.replay))).unwrap_or(usize::MAX)
    }

    /// Queues an item, due at `due` but never before the one ahead of it.
    /// `fresh`: its bytes new to this toxic, counted if they are delayed.
    fn hold(&mut self, item: Item, entered: Instant, at: Position, due: Instant, fresh: usize) {
        let release = self.last_release.map_or(due, |last| last.max(due));
        if release > entered && fresh > 0 {
            self.stats.count_bytes(fresh);
        }
        self.last_release = Some(release);
        self.bytes += item.len();
        self.queue.push_back(Held {
            item,
            entered,
            at,
            release,
        });
    }

    fn report(&mut self, why: &NotHttp) {
        if !self.reported {
            self.reported = true;
            tracing::info!(
                toxic = T::TYPE,
                reason = %why,
                "the connection does not carry HTTP/1.1; passing it through untouched"
            );
        }
    }

    fn push_data(&mut self, data: &[u8], entered: Instant) {
        // Stream offsets: the bytes held for a head come just before `data`.
        let held = self.framer.held() as u64;
        let data_end = self.fed + data.len() as u64;
        let mut end = self.fed - held;
        self.fed = data_end;
        let mut pieces = Vec::new();
        self.framer.feed(data, entered, &mut pieces);
        for piece in pieces {
            let begin = end;
            end = begin + piece_len(&piece) as u64;
            let fresh = self.fresh(begin, end);
            match piece {
                Piece::Raw { bytes, at } => {
                    self.hold(Item::Data(bytes), entered, at, entered, fresh);
                }
                Piece::NotHttp {
                    bytes,
                    entered: first,
                    why,
                } => {
                    self.report(&why);
                    self.hold(Item::Data(bytes), first, Position::Opaque, entered, fresh);
                }
                Piece::Head {
                    bytes,
                    head,
                    entered: first,
                } => {
                    let verdict = self.toxic.decide(&head);
                    // A head the replaced stage decided already counts once.
                    if verdict != Verdict::Pass && end > self.replay {
                        self.stats.count_request();
                    }
                    match verdict {
                        // Counted if it waits behind a delayed request.
                        Verdict::Pass => {
                            self.hold(Item::Data(bytes), first, Position::Head, entered, fresh);
                        }
                        Verdict::Delay(delay) => {
                            let due = entered + delay;
                            self.hold(Item::Data(bytes), first, Position::Head, due, fresh);
                        }
                        Verdict::Answer(reply) => {
                            // The request and the rest of the chunk are dropped.
                            self.stats.count_close();
                            self.stats.count_bytes(fresh + self.fresh(end, data_end));
                            self.hold(Item::Reply(reply), first, Position::Head, entered, 0);
                            self.answer();
                            return;
                        }
                    }
                }
            }
        }
    }

    /// From now on, the client's bytes go nowhere.
    fn answer(&mut self) {
        self.answered = true;
        self.framer.rewind(Position::Opaque);
    }
}

impl<T: RequestToxic> Stage for RequestStage<T> {
    fn push(&mut self, item: Item, entered: Instant) {
        match item {
            Item::Data(data) if self.answered => {
                let begin = self.fed;
                self.fed += data.len() as u64;
                self.stats.count_bytes(self.fresh(begin, self.fed));
            }
            Item::Eof if self.answered => {}
            Item::Data(data) => self.push_data(&data, entered),
            other => {
                // The end of the stream or of the connection: an incomplete
                // head goes on as it is, before it.
                if let Some((held, first)) = self.framer.take_held() {
                    self.hold(Item::Data(held), first, Position::Head, entered, 0);
                }
                let answer = matches!(other, Item::Reply(_));
                self.hold(other, entered, self.framer.position(), entered, 0);
                if answer {
                    self.answer();
                }
            }
        }
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
        let start = self.queue.front().map(|held| held.at);
        let mut items: Vec<(Item, Instant)> = self
            .queue
            .drain(..)
            .map(|held| (held.item, held.entered))
            .collect();
        if let Some((held, first)) = self.framer.take_held() {
            items.push((Item::Data(held), first));
        }
        if let Some(start) = start {
            self.framer.rewind(start);
        }
        self.given_back = items.iter().map(|(item, _)| item.len() as u64).sum();
        self.bytes = 0;
        self.last_release = None;
        items
    }

    fn buffered_bytes(&self) -> usize {
        self.bytes + self.framer.held()
    }

    fn handover(&mut self) -> Option<Handover> {
        Some(Box::new(Resume {
            position: self.framer.position(),
            replay: self.given_back,
        }))
    }

    fn take_over(&mut self, from: Handover) {
        if let Ok(resume) = from.downcast::<Resume>() {
            self.framer = Framer::at(resume.position);
            self.replay = resume.replay;
            // Whoever made the stream opaque has said so already.
            self.reported |= resume.position == Position::Opaque;
        }
    }
}

fn piece_len(piece: &Piece) -> usize {
    match piece {
        Piece::Head { bytes, .. } | Piece::Raw { bytes, .. } | Piece::NotHttp { bytes, .. } => {
            bytes.len()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Delays requests to paths starting with `/slow` by 100 ms, answers
    /// `/stop`, passes the rest.
    #[derive(Debug)]
    struct Script;

    impl RequestToxic for Script {
        const TYPE: &'static str = "script";

        fn decide(&mut self, head: &RequestHead) -> Verdict {
            if head.path().starts_with("/slow") {
                Verdict::Delay(Duration::from_millis(100))
            } else if head.path() == "/stop" {
                Verdict::Answer(b"no".to_vec())
            } else {
                Verdict::Pass
            }
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Everything due by `now`.
    fn due(stage: &mut impl Stage, now: Instant) -> Vec<Item> {
        let mut out = Vec::new();
        while let Step::Emit(item) = stage.poll(now) {
            out.push(item);
        }
        out
    }

    fn bytes(items: &[Item]) -> Vec<u8> {
        items
            .iter()
            .filter_map(|item| match item {
                Item::Data(data) => Some(data.clone()),
                _ => None,
            })
            .flatten()
            .collect()
    }

    const FAST: &[u8] = b"GET /fast HTTP/1.1\r\n\r\n";
    const SLOW: &[u8] = b"POST /slow HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc";

    #[test]
    fn a_delayed_request_holds_back_the_ones_behind_it() {
        let t0 = Instant::now();
        let mut stage = RequestStage::new(Script, Arc::default());
        stage.push(Item::Data([FAST, SLOW, FAST].concat()), t0);
        assert_eq!(bytes(&due(&mut stage, t0)), FAST);
        assert_eq!(stage.poll(t0), Step::Wait(t0 + ms(100)));
        assert_eq!(bytes(&due(&mut stage, t0 + ms(100))), [SLOW, FAST].concat());
        // Unmatched requests pass at once again.
        stage.push(Item::Data(FAST.to_vec()), t0 + ms(200));
        assert_eq!(bytes(&due(&mut stage, t0 + ms(200))), FAST);
    }

    #[test]
    fn a_head_in_pieces_is_decided_once_complete() {
        let t0 = Instant::now();
        let mut stage = RequestStage::new(Script, Arc::default());
        stage.push(Item::Data(SLOW[..7].to_vec()), t0);
        assert_eq!(stage.buffered_bytes(), 7);
        assert_eq!(stage.poll(t0), Step::Idle);
        stage.push(Item::Data(SLOW[7..].to_vec()), t0 + ms(50));
        assert_eq!(stage.poll(t0 + ms(50)), Step::Wait(t0 + ms(150)));
        assert_eq!(bytes(&due(&mut stage, t0 + ms(150))), SLOW);
    }

    #[test]
    fn an_answer_replaces_the_request_and_everything_after_it() {
        let t0 = Instant::now();
        let mut stage = RequestStage::new(Script, Arc::default());
        stage.push(
            Item::Data([FAST, b"GET /stop HTTP/1.1\r\n\r\n", FAST].concat()),
            t0,
        );
        stage.push(Item::Data(FAST.to_vec()), t0);
        stage.push(Item::Eof, t0);
        let out = due(&mut stage, t0);
        assert_eq!(
            out,
            vec![Item::Data(FAST.to_vec()), Item::Reply(b"no".to_vec())]
        );
        assert_eq!(stage.buffered_bytes(), 0);
    }

    #[test]
    fn stats_count_what_the_toxic_acted_on_once_across_a_handover() {
        let t0 = Instant::now();
        let stats = Arc::new(ToxicCounters::default());
        let mut old = RequestStage::new(Script, Arc::clone(&stats));
        old.push(Item::Data([FAST, SLOW, FAST].concat()), t0);
        assert_eq!(bytes(&due(&mut old, t0)), FAST);
        let values = stats.values();
        // One request delayed; it and the request behind it wait.
        assert_eq!(
            (values.requests, values.bytes),
            (1, (SLOW.len() + FAST.len()) as u64)
        );
        // The toxic is updated: the held requests are replayed, not recounted.
        let held = old.take_buffered();
        let mut new = RequestStage::new(Script, Arc::clone(&stats));
        if let Some(handover) = old.handover() {
            new.take_over(handover);
        }
        for (item, entered) in held {
            new.push(item, entered);
        }
        assert_eq!(stats.values(), values);
        // An answer: a request, a close, and the bytes it dropped.
        new.push(Item::Data(b"GET /stop HTTP/1.1\r\n\r\nGET /x".to_vec()), t0);
        new.push(Item::Data(b"yz".to_vec()), t0);
        let values = stats.values();
        assert_eq!((values.requests, values.closes), (2, 1));
        assert_eq!(values.bytes, (SLOW.len() + FAST.len() + 22 + 6 + 2) as u64);
    }

    #[test]
    fn not_http_passes_untouched() {
        let t0 = Instant::now();
        let mut stage = RequestStage::new(Script, Arc::default());
        stage.push(Item::Data(b"\x00\x01binary".to_vec()), t0);
        stage.push(Item::Data(b"GET /stop HTTP/1.1\r\n\r\n".to_vec()), t0);
        stage.push(Item::Eof, t0);
        let out = due(&mut stage, t0);
        assert_eq!(bytes(&out), b"\x00\x01binaryGET /stop HTTP/1.1\r\n\r\n");
        assert_eq!(out.last(), Some(&Item::Eof));
    }

    #[test]
    fn an_incomplete_head_goes_on_before_the_eof() {
        let t0 = Instant::now();
        let mut stage = RequestStage::new(Script, Arc::default());
        stage.push(Item::Data(b"GET /half".to_vec()), t0);
        stage.push(Item::Eof, t0);
        assert_eq!(
            due(&mut stage, t0),
            vec![Item::Data(b"GET /half".to_vec()), Item::Eof]
        );
    }

    #[test]
    fn a_replacement_resumes_framing_where_the_held_items_start() {
        let t0 = Instant::now();
        let mut old = RequestStage::new(Script, Arc::default());
        // A body in progress passes; the next request is held (delayed) with
        // the start of its body.
        old.push(
            Item::Data(b"POST /up HTTP/1.1\r\nContent-Length: 6\r\n\r\nabc".to_vec()),
            t0,
        );
        assert_eq!(due(&mut old, t0).len(), 2);
        old.push(Item::Data([b"def", &SLOW[..SLOW.len() - 1]].concat()), t0);
        assert_eq!(bytes(&due(&mut old, t0)), b"def");
        let held = old.take_buffered();
        let mut new = RequestStage::new(Script, Arc::default());
        if let Some(handover) = old.handover() {
            new.take_over(handover);
        }
        for (item, entered) in held {
            new.push(item, entered);
        }
        new.push(Item::Data(b"c".to_vec()), t0);
        new.push(Item::Data(b"GET /stop HTTP/1.1\r\n\r\n".to_vec()), t0);
        // Still in step: the delayed request, then the answer.
        assert_eq!(due(&mut new, t0), vec![]);
        let out = due(&mut new, t0 + ms(100));
        assert_eq!(bytes(&out), SLOW);
        assert_eq!(out.last(), Some(&Item::Reply(b"no".to_vec())));
    }
}
