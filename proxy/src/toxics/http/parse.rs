//! Splits the client → server byte stream of an HTTP/1.1 connection into
//! request heads and everything else, without changing a byte.
//!
//! [`Framer::feed`] takes the bytes as they arrive, in chunks of any size,
//! and returns [`Piece`]s: each complete request head (parsed with
//! `httparse`), and the bytes between heads (bodies framed by
//! `Content-Length` or chunked transfer coding) as they come. A head split
//! across chunks is held until it is complete. Pipelined requests in one
//! chunk come out one after the other.
//!
//! A stream that is not HTTP/1.1 (a parse error, a head over
//! [`MAX_HEAD`] bytes, a malformed body framing) turns the framer opaque:
//! from then on every byte is passed as it comes. So does a request that
//! switches protocols (`CONNECT`, `Upgrade`), after its head.

use tokio::time::Instant;

/// The longest request head accepted; a longer one makes the stream opaque.
pub(crate) const MAX_HEAD: usize = 64 * 1024;

/// The most headers a request head may have.
const MAX_HEADERS: usize = 128;

/// The largest chunk size accepted (a larger one is taken for garbage).
const MAX_CHUNK: u64 = 1 << 48;

/// Where in the request stream the framer stands, at a byte boundary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Position {
    /// Before a request head (or inside one, whose bytes are held).
    Head,
    /// Inside a body framed by `Content-Length`: this many bytes remain.
    Length(u64),
    /// Inside a chunked body.
    Chunked(Chunked),
    /// Not HTTP/1.1 (any more): bytes pass as they come.
    Opaque,
}

/// Where in a chunked body the framer stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Chunked {
    /// In a chunk-size line: the size read so far, whether any digit was
    /// seen, and whether an extension (after `;`) or trailing space started.
    Size { size: u64, digits: bool, tail: bool },
    /// Inside a chunk's data: this many bytes remain.
    Data(u64),
    /// After a chunk's data, expecting its CRLF (`cr`: the CR was seen).
    DataEnd { cr: bool },
    /// In the trailer section; `empty`: the current line has no byte yet.
    Trailer { empty: bool },
}

/// How a request's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// No body (no `Content-Length`, no `Transfer-Encoding`, or a length of 0).
    Empty,
    Length(u64),
    Chunked,
}

/// A parsed request head: what the matchers look at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RequestHead {
    /// As sent (methods are case-sensitive on the wire).
    pub(crate) method: String,
    /// The request-target as sent.
    pub(crate) target: String,
    /// Header names in lower case, values as sent without surrounding spaces.
    pub(crate) headers: Vec<(String, Vec<u8>)>,
    pub(crate) framing: Framing,
    /// `CONNECT` or an `Upgrade` request: the stream may not be HTTP after it.
    pub(crate) switches: bool,
}

impl RequestHead {
    /// The path of the request-target, without query or fragment: `/a/b` for
    /// `/a/b?c`, and for an absolute-form target `http://h/a/b?c` too.
    pub(crate) fn path(&self) -> &str {
        let target = self.target.as_str();
        let rest = match target.find("://") {
            Some(scheme_end) if !target.starts_with('/') => {
                let after = &target[scheme_end + 3..];
                match after.find('/') {
                    Some(slash) => &after[slash..],
                    None => "/",
                }
            }
            _ => target,
        };
        let end = rest.find(['?', '#']).unwrap_or(rest.len());
        &rest[..end]
    }

    /// Every value of the header `name` (lower case).
    pub(crate) fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a [u8]> + 'a {
        self.headers
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, value)| value.as_slice())
    }
}

/// Why the stream was taken for something other than HTTP/1.1.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum NotHttp {
    #[error("malformed request head: {0}")]
    Head(httparse::Error),
    #[error("request head longer than {MAX_HEAD} bytes")]
    HeadTooLong,
    #[error("invalid Content-Length")]
    ContentLength,
    #[error("Transfer-Encoding without chunked last")]
    TransferEncoding,
    #[error("malformed chunked body")]
    Chunked,
}

/// A part of the stream, in order; its bytes concatenated are the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Piece {
    /// A complete request head, its bytes exactly as received, and when its
    /// first byte arrived.
    Head {
        bytes: Vec<u8>,
        head: RequestHead,
        entered: Instant,
    },
    /// Bytes that are not a head (bodies, or an opaque stream), starting at
    /// `at`.
    Raw { bytes: Vec<u8>, at: Position },
    /// The stream turned out not to be HTTP/1.1: these bytes (those held for
    /// a head, and the rest of the chunk) and every later one pass as they
    /// come. `entered`: when the first of them arrived.
    NotHttp {
        bytes: Vec<u8>,
        entered: Instant,
        why: NotHttp,
    },
}

/// The framing state of one direction of one connection.
#[derive(Debug)]
pub(crate) struct Framer {
    position: Position,
    /// Bytes of an incomplete head, and when the first of them arrived.
    head: Vec<u8>,
    head_entered: Option<Instant>,
}

impl Framer {
    pub(crate) fn new() -> Self {
        Self::at(Position::Head)
    }

    /// A framer at a known position (after a handover).
    pub(crate) fn at(position: Position) -> Self {
        Self {
            position,
            head: Vec::new(),
            head_entered: None,
        }
    }

    /// The position after every byte fed so far, held head bytes aside.
    pub(crate) fn position(&self) -> Position {
        self.position
    }

    /// Moves the framer back to `position`, dropping a held head (for a
    /// stage that gives its bytes back).
    pub(crate) fn rewind(&mut self, position: Position) {
        self.position = position;
        self.head.clear();
        self.head_entered = None;
    }

    /// Bytes of an incomplete head held, waiting for the rest.
    pub(crate) fn held(&self) -> usize {
        self.head.len()
    }

    /// Gives up the held bytes of an incomplete head, with their entry time.
    pub(crate) fn take_held(&mut self) -> Option<(Vec<u8>, Instant)> {
        let entered = self.head_entered.take()?;
        Some((std::mem::take(&mut self.head), entered))
    }

    /// Frames `data`, which arrived at `entered`.
    pub(crate) fn feed(&mut self, data: &[u8], entered: Instant, out: &mut Vec<Piece>) {
        let mut rest = data;
        while !rest.is_empty() {
            let at = self.position;
            let used = match at {
                Position::Opaque => rest.len(),
                Position::Head => match self.head_step(rest, entered, out) {
                    Ok(used) => used,
                    Err((why, taken)) => {
                        // The held bytes include the first `taken` of `rest`.
                        let mut bytes = std::mem::take(&mut self.head);
                        bytes.extend_from_slice(&rest[taken..]);
                        let first = self.head_entered.take().unwrap_or(entered);
                        self.position = Position::Opaque;
                        out.push(Piece::NotHttp {
                            bytes,
                            entered: first,
                            why,
                        });
                        return;
                    }
                },
                Position::Length(remaining) => {
                    let used = usize::try_from(remaining).map_or(rest.len(), |r| r.min(rest.len()));
                    let left = remaining - used as u64;
                    self.position = if left == 0 {
                        Position::Head
                    } else {
                        Position::Length(left)
                    };
                    used
                }
                Position::Chunked(state) => match chunked_step(state, rest) {
                    Ok((used, next)) => {
                        self.position = next;
                        used
                    }
                    Err(why) => {
                        self.position = Position::Opaque;
                        out.push(Piece::NotHttp {
                            bytes: rest.to_vec(),
                            entered,
                            why,
                        });
                        return;
                    }
                },
            };
            if used > 0 && at != Position::Head {
                push_raw(out, &rest[..used], at);
            }
            rest = &rest[used..];
        }
    }

    /// Adds bytes to the held head; on a complete head, emits it and moves
    /// into its body. Returns how many bytes of `rest` it used; on an error,
    /// how many it added to the held bytes.
    fn head_step(
        &mut self,
        rest: &[u8],
        entered: Instant,
        out: &mut Vec<Piece>,
    ) -> Result<usize, (NotHttp, usize)> {
        let before = self.head.len();
        if self.head_entered.is_none() {
            self.head_entered = Some(entered);
        }
        // Parse at most up to the limit; whatever follows the head is not
        // part of it.
        let take = rest.len().min(MAX_HEAD + 1 - before.min(MAX_HEAD));
        self.head.extend_from_slice(&rest[..take]);
        match parse_head(&self.head).map_err(|why| (why, take))? {
            None if self.head.len() > MAX_HEAD => Err((NotHttp::HeadTooLong, take)),
            None => Ok(take),
            Some((len, head)) => {
                let used = len - before;
                self.head.truncate(len);
                let bytes = std::mem::take(&mut self.head);
                let first = self.head_entered.take().unwrap_or(entered);
                self.position = if head.switches {
                    Position::Opaque
                } else {
                    match head.framing {
                        Framing::Empty | Framing::Length(0) => Position::Head,
                        Framing::Length(len) => Position::Length(len),
                        Framing::Chunked => Position::Chunked(Chunked::Size {
                            size: 0,
                            digits: false,
                            tail: false,
                        }),
                    }
                };
                out.push(Piece::Head {
                    bytes,
                    head,
                    entered: first,
                });
                Ok(used)
            }
        }
    }
}

/// Appends raw bytes, merging with a raw piece just before them.
fn push_raw(out: &mut Vec<Piece>, bytes: &[u8], at: Position) {
    if let Some(Piece::Raw { bytes: last, .. }) = out.last_mut() {
        last.extend_from_slice(bytes);
    } else {
        out.push(Piece::Raw {
            bytes: bytes.to_vec(),
            at,
        });
    }
}

/// Parses a request head: `None` while incomplete, with its length once complete.
fn parse_head(buf: &[u8]) -> Result<Option<(usize, RequestHead)>, NotHttp> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let len = match request.parse(buf).map_err(NotHttp::Head)? {
        httparse::Status::Partial => return Ok(None),
        httparse::Status::Complete(len) => len,
    };
    let method = request.method.unwrap_or_default().to_owned();
    let target = request.path.unwrap_or_default().to_owned();
    let headers: Vec<(String, Vec<u8>)> = request
        .headers
        .iter()
        .map(|h| (h.name.to_ascii_lowercase(), h.value.trim_ascii().to_vec()))
        .collect();
    let mut head = RequestHead {
        switches: method.eq_ignore_ascii_case("CONNECT"),
        method,
        target,
        headers,
        framing: Framing::Empty,
    };
    head.switches |= head.values("upgrade").next().is_some()
        && head
            .values("connection")
            .any(|value| has_token(value, b"upgrade"));
    head.framing = framing(&head)?;
    Ok(Some((len, head)))
}

/// Whether a comma-separated header value lists `token` (case-insensitive).
fn has_token(value: &[u8], token: &[u8]) -> bool {
    value
        .split(|b| *b == b',')
        .any(|part| part.trim_ascii().eq_ignore_ascii_case(token))
}

/// The body framing of a request (RFC 9112 §6.3): `Transfer-Encoding` wins
/// over `Content-Length`; a request with neither has no body.
fn framing(head: &RequestHead) -> Result<Framing, NotHttp> {
    let codings: Vec<&[u8]> = head
        .values("transfer-encoding")
        .flat_map(|value| value.split(|b| *b == b','))
        .map(<[u8]>::trim_ascii)
        .filter(|coding| !coding.is_empty())
        .collect();
    if let Some(last) = codings.last() {
        return if last.eq_ignore_ascii_case(b"chunked") {
            Ok(Framing::Chunked)
        } else {
            Err(NotHttp::TransferEncoding)
        };
    }
    let mut length: Option<u64> = None;
    for part in head
        .values("content-length")
        .flat_map(|value| value.split(|b| *b == b','))
    {
        let part = part.trim_ascii();
        if part.is_empty() || !part.iter().all(u8::is_ascii_digit) || part.len() > 18 {
            return Err(NotHttp::ContentLength);
        }
        let value: u64 = std::str::from_utf8(part)
            .ok()
            .and_then(|text| text.parse().ok())
            .ok_or(NotHttp::ContentLength)?;
        match length {
            Some(seen) if seen != value => return Err(NotHttp::ContentLength),
            _ => length = Some(value),
        }
    }
    Ok(length.map_or(Framing::Empty, Framing::Length))
}

/// Advances through a chunked body: how many bytes of `rest` belong to the
/// state, and the position after them.
fn chunked_step(state: Chunked, rest: &[u8]) -> Result<(usize, Position), NotHttp> {
    let mut state = state;
    for (index, &byte) in rest.iter().enumerate() {
        state = match state {
            Chunked::Data(remaining) => {
                // Skip the data in one go.
                let used = usize::try_from(remaining)
                    .map_or(rest.len() - index, |r| r.min(rest.len() - index));
                let left = remaining - used as u64;
                let next = if left == 0 {
                    Chunked::DataEnd { cr: false }
                } else {
                    Chunked::Data(left)
                };
                return Ok((index + used, Position::Chunked(next)));
            }
            Chunked::Size { size, digits, tail } => match byte {
                b'\n' if digits && size == 0 => Chunked::Trailer { empty: true },
                b'\n' if digits => Chunked::Data(size),
                b'\r' | b';' | b' ' | b'\t' if digits => Chunked::Size {
                    size,
                    digits,
                    tail: true,
                },
                _ if tail => Chunked::Size { size, digits, tail },
                _ => {
                    let digit = char::from(byte).to_digit(16).ok_or(NotHttp::Chunked)?;
                    let size = size * 16 + u64::from(digit);
                    if size > MAX_CHUNK {
                        return Err(NotHttp::Chunked);
                    }
                    Chunked::Size {
                        size,
                        digits: true,
                        tail,
                    }
                }
            },
            Chunked::DataEnd { cr } => match byte {
                b'\r' if !cr => Chunked::DataEnd { cr: true },
                b'\n' => Chunked::Size {
                    size: 0,
                    digits: false,
                    tail: false,
                },
                _ => return Err(NotHttp::Chunked),
            },
            Chunked::Trailer { empty } => match byte {
                b'\n' if empty => return Ok((index + 1, Position::Head)),
                b'\n' => Chunked::Trailer { empty: true },
                b'\r' => Chunked::Trailer { empty },
                _ => Chunked::Trailer { empty: false },
            },
        };
    }
    Ok((rest.len(), Position::Chunked(state)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `chunks`; returns the heads' targets, the bytes in order, and
    /// whether the stream went opaque.
    fn frame(chunks: &[&[u8]]) -> (Vec<String>, Vec<u8>, bool) {
        let t0 = Instant::now();
        let mut framer = Framer::new();
        let mut pieces = Vec::new();
        for chunk in chunks {
            framer.feed(chunk, t0, &mut pieces);
        }
        let mut targets = Vec::new();
        let mut bytes = Vec::new();
        let mut opaque = false;
        for piece in pieces {
            match piece {
                Piece::Head { bytes: b, head, .. } => {
                    targets.push(head.target);
                    bytes.extend(b);
                }
                Piece::Raw { bytes: b, .. } => bytes.extend(b),
                Piece::NotHttp { bytes: b, .. } => {
                    opaque = true;
                    bytes.extend(b);
                }
            }
        }
        if let Some((held, _)) = framer.take_held() {
            bytes.extend(held);
        }
        (targets, bytes, opaque)
    }

    const PIPELINED: &[u8] = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n\
        POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello\
        PUT /c?q=1 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n\
        3;ext=1\r\nabc\r\n10\r\n0123456789abcdef\r\n0\r\nX-Trailer: t\r\n\r\n\
        \r\nDELETE /d HTTP/1.1\r\nHost: x\r\n\r\n";

    #[test]
    fn pipelined_requests_are_framed_in_one_chunk() {
        let (targets, bytes, opaque) = frame(&[PIPELINED]);
        assert_eq!(targets, ["/a", "/b", "/c?q=1", "/d"]);
        assert_eq!(bytes, PIPELINED);
        assert!(!opaque);
    }

    #[test]
    fn any_split_frames_the_same() {
        for split in 0..PIPELINED.len() {
            let (a, b) = PIPELINED.split_at(split);
            let (targets, bytes, opaque) = frame(&[a, b]);
            assert_eq!(targets, ["/a", "/b", "/c?q=1", "/d"], "split at {split}");
            assert_eq!(bytes, PIPELINED);
            assert!(!opaque);
        }
        let bytewise: Vec<&[u8]> = PIPELINED.chunks(1).collect();
        assert_eq!(frame(&bytewise).0.len(), 4);
    }

    #[test]
    fn a_body_that_looks_like_a_request_is_still_a_body() {
        let stream = b"POST /up HTTP/1.1\r\nContent-Length: 18\r\n\r\nGET /no HTTP/1.1\r\n\
            GET /yes HTTP/1.1\r\n\r\n";
        assert_eq!(frame(&[stream]).0, ["/up", "/yes"]);
    }

    #[test]
    fn other_protocols_go_opaque_and_pass_untouched() {
        for stream in [
            &b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"[..],
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            b"SSH-2.0-OpenSSH_9.6\r\n",
            b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        ] {
            let (_, bytes, opaque) = frame(&[stream, b"more"]);
            assert!(opaque, "{:?}", String::from_utf8_lossy(stream));
            assert_eq!(bytes, [stream, b"more"].concat());
        }
    }

    #[test]
    fn a_head_too_long_goes_opaque() {
        let mut long = b"GET / HTTP/1.1\r\nX: ".to_vec();
        long.extend(std::iter::repeat_n(b'a', MAX_HEAD));
        let (targets, bytes, opaque) = frame(&[&long, b"\r\n\r\n"]);
        assert!(targets.is_empty());
        assert!(opaque);
        assert_eq!(bytes.len(), long.len() + 4);
    }

    #[test]
    fn an_upgrade_passes_the_rest_untouched() {
        let stream =
            b"GET /ws HTTP/1.1\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n\
            GET /not-a-request HTTP/1.1\r\n\r\n";
        let (targets, bytes, opaque) = frame(&[stream]);
        assert_eq!(targets, ["/ws"]);
        assert_eq!(bytes, stream);
        assert!(!opaque, "an upgrade is not a parse error");
    }

    #[test]
    fn heads_expose_path_and_headers() {
        let (_, head) = parse_head(
            b"get http://h:1/p/q?x#f HTTP/1.1\r\nX-Tenant:  blue \r\nx-tenant: red\r\n\r\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(head.method, "get");
        assert_eq!(head.path(), "/p/q");
        let values: Vec<&[u8]> = head.values("x-tenant").collect();
        assert_eq!(values, [&b"blue"[..], b"red"]);
        let (_, head) = parse_head(b"OPTIONS * HTTP/1.1\r\n\r\n").unwrap().unwrap();
        assert_eq!(head.path(), "*");
        let (_, head) = parse_head(b"GET http://h HTTP/1.1\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(head.path(), "/");
    }

    #[test]
    fn rewinding_restarts_framing_at_a_known_position() {
        let t0 = Instant::now();
        let mut framer = Framer::new();
        let mut pieces = Vec::new();
        framer.feed(
            b"POST / HTTP/1.1\r\nContent-Length: 4\r\n\r\nab",
            t0,
            &mut pieces,
        );
        assert_eq!(framer.position(), Position::Length(2));
        framer.feed(b"cdGET /x HT", t0, &mut pieces);
        assert_eq!(framer.held(), 9);
        // A stage handing back "cdGET /x HT" rewinds to where "cd" started.
        let mut again = Framer::at(Position::Length(2));
        framer.rewind(Position::Length(2));
        assert_eq!(framer.held(), 0);
        let mut pieces = Vec::new();
        again.feed(b"cdGET /x HTTP/1.1\r\n\r\n", t0, &mut pieces);
        assert!(
            matches!(&pieces[..], [Piece::Raw { .. }, Piece::Head { head, .. }] if head.target == "/x")
        );
    }
}
