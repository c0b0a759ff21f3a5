//! Proxied connections: the accept loop of a listening proxy, and one task per
//! connection that pumps both directions through their pipelines.
//!
//! Each direction is a pump: it reads the source peer, feeds the pipeline,
//! writes what comes out to the destination peer, wakes for the pipeline's
//! timers, and applies toxic changes the moment the registry publishes them.
//! Reading stops while the pipeline holds [`MAX_BUFFERED`] bytes, so a held or
//! slowed direction pushes back on its sender instead of growing without bound.
//!
//! A direction with no toxic and nothing buffered takes a fast path
//! ([`Pump::pass_through`]): it writes what it reads straight from its read
//! buffer, with no allocation, no clock and no pipeline, waiting on the same
//! events (cancellation, toxic changes, replies) as the pipeline path, which
//! takes over at the first of them. Bytes, close reasons and the order of
//! bytes are the same on either path.
//!
//! A direction whose pipeline puts out a reply (an HTTP toxic answering a
//! request itself, [`Item::Reply`]) forwards nothing more: it hands the reply
//! to the other direction, which feeds it to its own pipeline behind what it
//! already read, followed by an EOF, and stops reading. Once the reply is
//! written, that direction half-closes its peer; the answered direction reads
//! and drops what its peer still sends until that peer closes (at most
//! [`LINGER`]), so that the peer gets the reply and a FIN, not a reset for
//! unread data.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use metrics::{Counter, Gauge};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{oneshot, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::metrics::{CloseReason, ProxyMetrics};
use crate::model::Stream;
use crate::pipeline::{Control, Pipeline, ToxicSet};
use crate::stage::Item;

/// The most payload bytes one direction of one connection holds in flight.
pub(crate) const MAX_BUFFERED: usize = 1 << 20;

/// The size of one read from a peer.
const READ_BUFFER: usize = 32 * 1024;

/// How long a peer that got a reply may keep sending before the proxy closes.
const LINGER: Duration = Duration::from_secs(10);

/// How long to back off when accepting fails (e.g. out of file descriptors).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);

/// What every connection of one listening proxy shares.
#[derive(Debug, Clone)]
pub(crate) struct LinkContext {
    pub(crate) proxy: Arc<str>,
    pub(crate) upstream: Arc<str>,
    pub(crate) toxics: watch::Receiver<ToxicSet>,
    /// Cancelled when the proxy stops: closes the listener and every connection.
    pub(crate) cancel: CancellationToken,
    pub(crate) tracker: TaskTracker,
    pub(crate) metrics: ProxyMetrics,
}

/// Accepts connections until the context is cancelled.
pub(crate) async fn accept_loop(listener: TcpListener, ctx: LinkContext) {
    loop {
        let accepted = tokio::select! {
            biased;
            () = ctx.cancel.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((client, peer)) => {
                ctx.metrics.connections.increment(1);
                tracing::debug!(proxy = %ctx.proxy, %peer, "connection accepted");
                ctx.tracker.spawn(run_connection(client, ctx.clone()));
            }
            Err(err) => {
                tracing::warn!(proxy = %ctx.proxy, error = %err, "accepting a connection failed");
                tokio::select! {
                    () = ctx.cancel.cancelled() => break,
                    () = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                }
            }
        }
    }
    tracing::debug!(proxy = %ctx.proxy, "listener closed");
}

/// Keeps `proxy_active_connections` right however the task ends.
struct ActiveGuard(Gauge);

impl ActiveGuard {
    fn new(gauge: Gauge) -> Self {
        gauge.increment(1.0);
        Self(gauge)
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

async fn run_connection(mut client: TcpStream, ctx: LinkContext) {
    let _active = ActiveGuard::new(ctx.metrics.active.clone());
    let connected = tokio::select! {
        biased;
        () = ctx.cancel.cancelled() => {
            ctx.metrics.closed(CloseReason::Stopped);
            return;
        }
        connected = TcpStream::connect(&*ctx.upstream) => connected,
    };
    let mut server = match connected {
        Ok(server) => server,
        Err(err) => {
            tracing::info!(
                proxy = %ctx.proxy,
                upstream = %ctx.upstream,
                error = %err,
                "cannot reach the upstream; closing the client connection"
            );
            ctx.metrics.closed(CloseReason::UpstreamUnreachable);
            return;
        }
    };
    // Toxics decide the timing; the proxy itself must not add Nagle delays.
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);

    let cancel = ctx.cancel.child_token();
    let (to_client, for_client) = oneshot::channel();
    let (to_server, for_server) = oneshot::channel();
    let (up, down) = {
        let (mut client_read, mut client_write) = client.split();
        let (mut server_read, mut server_write) = server.split();
        let up = Pump::new(Stream::Upstream, &ctx, &cancel, to_client, for_server)
            .run(&mut client_read, &mut server_write);
        let down = Pump::new(Stream::Downstream, &ctx, &cancel, to_server, for_client)
            .run(&mut server_read, &mut client_write);
        tokio::join!(up, down)
    };
    let (reason, reset) = ending(up, down);
    if reset {
        // SO_LINGER 0: closing sends a RST instead of a FIN.
        let _ = client.set_zero_linger();
        let _ = server.set_zero_linger();
    }
    tracing::debug!(proxy = %ctx.proxy, reason = reason.as_str(), "connection closed");
    ctx.metrics.closed(reason);
}

/// How one direction ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    /// The source finished and the EOF was delivered.
    Done,
    /// A toxic closed the connection.
    Close,
    /// The proxy's reply was delivered and the destination half-closed.
    Answered,
    /// A toxic reset the connection.
    Reset,
    /// A peer failed (`reset`: it reset the connection).
    Failed { reset: bool },
    /// The other direction or the proxy ended the connection.
    Cancelled,
}

impl Outcome {
    fn failed(err: &io::Error) -> Self {
        Outcome::Failed {
            reset: err.kind() == io::ErrorKind::ConnectionReset,
        }
    }
}

/// Why the connection ended, and whether to end it with a reset.
fn ending(up: Outcome, down: Outcome) -> (CloseReason, bool) {
    let both = [up, down];
    if both.contains(&Outcome::Reset) {
        (CloseReason::Reset, true)
    } else if both.contains(&Outcome::Close) || both.contains(&Outcome::Answered) {
        (CloseReason::Toxic, false)
    } else if let Some(reset) = both.iter().find_map(|outcome| match outcome {
        Outcome::Failed { reset } => Some(*reset),
        _ => None,
    }) {
        // Pass a peer's reset on to the other peer.
        (CloseReason::PeerError, reset)
    } else if both.contains(&Outcome::Cancelled) {
        (CloseReason::Stopped, false)
    } else {
        (CloseReason::Eof, false)
    }
}

/// One direction of one connection.
struct Pump {
    pipeline: Pipeline,
    toxics: watch::Receiver<ToxicSet>,
    cancel: CancellationToken,
    bytes: Counter,
    /// The reply of this direction's pipeline, for the other direction to
    /// deliver to this direction's source peer (there is at most one: this
    /// direction forwards nothing after it).
    replies_out: Option<oneshot::Sender<Vec<u8>>>,
    /// The reply of the other direction, to deliver to this direction's
    /// destination peer.
    replies_in: oneshot::Receiver<Vec<u8>>,
    src_open: bool,
    toxics_open: bool,
    replies_open: bool,
    /// A reply from the other direction is on its way to the destination.
    answering: bool,
}

/// What a pump waits for, besides the destination taking what it holds.
enum Event {
    Cancelled,
    Toxics(Result<(), watch::error::RecvError>),
    Reply(Option<Vec<u8>>),
    /// A read into the pump's buffer.
    Read(io::Result<usize>),
    /// A write of the pipeline's output.
    Written(io::Result<usize>),
    /// The pipeline's timer.
    Wake,
}

impl Pump {
    fn new(
        stream: Stream,
        ctx: &LinkContext,
        cancel: &CancellationToken,
        replies_out: oneshot::Sender<Vec<u8>>,
        replies_in: oneshot::Receiver<Vec<u8>>,
    ) -> Self {
        let mut toxics = ctx.toxics.clone();
        let mut pipeline = Pipeline::new(stream);
        let current = toxics.borrow_and_update().clone();
        pipeline.reconfigure(&current, Instant::now());
        Self {
            pipeline,
            toxics,
            cancel: cancel.clone(),
            bytes: ctx.metrics.bytes(stream),
            replies_out: Some(replies_out),
            replies_in,
            src_open: true,
            toxics_open: true,
            replies_open: true,
            answering: false,
        }
    }

    /// Pumps until the direction ends; any end but a clean EOF ends the
    /// whole connection.
    async fn run<R, W>(mut self, src: &mut R, dst: &mut W) -> Outcome
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let outcome = self.pump(src, dst).await;
        if !matches!(outcome, Outcome::Done | Outcome::Answered) {
            self.cancel.cancel();
        }
        outcome
    }

    /// Takes the pass-through path while the direction has no toxic and
    /// nothing buffered, and the pipeline path otherwise; both wait for the
    /// same events, and handle all but plain data alike. Each step returns
    /// the next event, or (`Err`) how the direction ended.
    async fn pump<R, W>(&mut self, src: &mut R, dst: &mut W) -> Outcome
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let mut buf = vec![0u8; READ_BUFFER];
        loop {
            let event = if self.src_open && self.pipeline.is_idle() {
                self.pass_through(src, dst, &mut buf).await
            } else {
                self.through_pipeline(src, dst, &mut buf).await
            };
            let handled = match event {
                Ok(event) => self.handle(event, &buf),
                Err(outcome) => Err(outcome),
            };
            if let Err(outcome) = handled {
                return outcome;
            }
        }
    }

    /// The fast path: copies from `src` to `dst` through `buf`, with no
    /// allocation, no clock and no pipeline, until an event calls for the
    /// pipeline (or ends the direction). Bytes not yet written when an event
    /// comes go to the pipeline's output first, where they would have been
    /// on the pipeline path: a new toxic acts on the bytes read after it.
    async fn pass_through<R, W>(
        &mut self,
        src: &mut R,
        dst: &mut W,
        buf: &mut [u8],
    ) -> Result<Event, Outcome>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let Self {
            pipeline,
            toxics,
            cancel,
            bytes,
            replies_in,
            toxics_open,
            replies_open,
            ..
        } = self;
        // Made once for the whole stretch, not once per read.
        let mut events = std::pin::pin!(async {
            tokio::select! {
                biased;
                () = cancel.cancelled() => Event::Cancelled,
                result = toxics.changed(), if *toxics_open => Event::Toxics(result),
                reply = replies_in, if *replies_open => Event::Reply(reply.ok()),
            }
        });
        loop {
            // Events before reads, so that a toxic added before bytes
            // arrive acts on them.
            let n = tokio::select! {
                biased;
                event = &mut events => return Ok(event),
                read = src.read(buf) => match read {
                    Ok(n) if n > 0 => n,
                    read => return Ok(Event::Read(read)),
                },
            };
            let mut data = &buf[..n];
            while !data.is_empty() {
                // The write before events: these bytes were read before them.
                tokio::select! {
                    biased;
                    written = dst.write(data) => match written {
                        Ok(0) => return Err(Outcome::failed(&io::ErrorKind::WriteZero.into())),
                        Ok(written) => {
                            bytes.increment(written as u64);
                            data = &data[written..];
                        }
                        Err(err) => return Err(Outcome::failed(&err)),
                    },
                    event = &mut events => {
                        // The pipeline path writes the rest, as if it had
                        // been read there.
                        pipeline.push(Item::Data(data.to_vec()), Instant::now());
                        return Ok(event);
                    }
                }
            }
        }
    }

    /// The pipeline path: runs the pipeline's stages and timers, writes what
    /// comes out, and returns the next event.
    async fn through_pipeline<R, W>(
        &mut self,
        src: &mut R,
        dst: &mut W,
        buf: &mut [u8],
    ) -> Result<Event, Outcome>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let wake = self
            .pipeline
            .advance(Instant::now())
            .map_err(|_| Outcome::Reset)?;
        match self.pipeline.pop_control() {
            Some(Control::Close) => return Err(Outcome::Close),
            Some(Control::Eof) => {
                return Err(match dst.shutdown().await {
                    Ok(()) if self.answering => Outcome::Answered,
                    Ok(()) => Outcome::Done,
                    Err(err) => Outcome::failed(&err),
                });
            }
            Some(Control::Reply(reply)) => {
                // The other direction may be gone already; then the
                // connection is closing anyway.
                if let Some(replies_out) = self.replies_out.take() {
                    let _ = replies_out.send(reply);
                }
                return Err(self.discard(src, buf).await);
            }
            None => {}
        }
        let can_read = self.src_open && self.pipeline.buffered_bytes() < MAX_BUFFERED;
        let pending = self.pipeline.front_data();
        let has_pending = pending.is_some();
        let pending = pending.unwrap_or_default();
        let deadline = wake.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
        Ok(tokio::select! {
            biased;
            () = self.cancel.cancelled() => Event::Cancelled,
            result = self.toxics.changed(), if self.toxics_open => Event::Toxics(result),
            reply = &mut self.replies_in, if self.replies_open => Event::Reply(reply.ok()),
            written = dst.write(pending), if has_pending => Event::Written(written),
            read = src.read(buf), if can_read => Event::Read(read),
            () = tokio::time::sleep_until(deadline), if wake.is_some() => Event::Wake,
        })
    }

    /// Applies an event to the pipeline; `buf` holds what a read read.
    fn handle(&mut self, event: Event, buf: &[u8]) -> Result<(), Outcome> {
        match event {
            Event::Cancelled => return Err(Outcome::Cancelled),
            Event::Toxics(Ok(())) => {
                let current = self.toxics.borrow_and_update().clone();
                self.pipeline.reconfigure(&current, Instant::now());
            }
            // The proxy is gone; its cancellation follows.
            Event::Toxics(Err(_)) => self.toxics_open = false,
            Event::Reply(Some(reply)) => {
                // The proxy answers the destination peer itself: the answer
                // goes behind what was read so far, then a FIN.
                let now = Instant::now();
                self.pipeline.push(Item::Data(reply), now);
                self.pipeline.push(Item::Eof, now);
                self.src_open = false;
                self.answering = true;
                self.replies_open = false;
            }
            // No reply can come any more.
            Event::Reply(None) => self.replies_open = false,
            Event::Read(Ok(0)) => {
                self.src_open = false;
                self.pipeline.push(Item::Eof, Instant::now());
            }
            Event::Read(Ok(n)) => self
                .pipeline
                .push(Item::Data(buf[..n].to_vec()), Instant::now()),
            Event::Written(Ok(0)) => {
                return Err(Outcome::failed(&io::ErrorKind::WriteZero.into()));
            }
            Event::Written(Ok(n)) => {
                self.pipeline.consume(n);
                self.bytes.increment(n as u64);
            }
            Event::Read(Err(err)) | Event::Written(Err(err)) => {
                return Err(Outcome::failed(&err));
            }
            Event::Wake => {}
        }
        Ok(())
    }

    /// After a reply: reads and drops whatever the source still sends, until
    /// it finishes (or [`LINGER`] passes, or the connection closes), so that
    /// it ends with a FIN rather than a reset for unread data.
    async fn discard<R>(&mut self, src: &mut R, buf: &mut [u8]) -> Outcome
    where
        R: AsyncRead + Unpin,
    {
        let deadline = Instant::now() + LINGER;
        loop {
            tokio::select! {
                biased;
                () = self.cancel.cancelled() => return Outcome::Cancelled,
                () = tokio::time::sleep_until(deadline) => return Outcome::Close,
                read = src.read(buf) => match read {
                    Ok(0) => return Outcome::Done,
                    Ok(_) => {}
                    Err(err) => return Outcome::failed(&err),
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_most_telling_outcome_names_the_ending() {
        use Outcome::*;
        assert_eq!(ending(Done, Done), (CloseReason::Eof, false));
        assert_eq!(ending(Done, Reset), (CloseReason::Reset, true));
        assert_eq!(ending(Cancelled, Close), (CloseReason::Toxic, false));
        assert_eq!(ending(Done, Answered), (CloseReason::Toxic, false));
        assert_eq!(
            ending(Failed { reset: true }, Cancelled),
            (CloseReason::PeerError, true)
        );
        assert_eq!(ending(Cancelled, Cancelled), (CloseReason::Stopped, false));
    }
}
