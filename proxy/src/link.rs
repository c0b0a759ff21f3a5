//! Proxied connections: the accept loop of a listening proxy, and one task per
//! connection that pumps both directions through their pipelines.
//!
//! Each direction is a pump: it reads the source peer, feeds the pipeline,
//! writes what comes out to the destination peer, wakes for the pipeline's
//! timers, and applies toxic changes the moment the registry publishes them.
//! Reading stops while the pipeline holds [`MAX_BUFFERED`] bytes, so a held or
//! slowed direction pushes back on its sender instead of growing without bound.
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
use tokio::sync::{mpsc, watch};
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
    let (to_client, for_client) = mpsc::unbounded_channel();
    let (to_server, for_server) = mpsc::unbounded_channel();
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
    /// Replies from this direction's pipeline, for the other direction to
    /// deliver to this direction's source peer.
    replies_out: mpsc::UnboundedSender<Vec<u8>>,
    /// Replies from the other direction, to deliver to this direction's
    /// destination peer.
    replies_in: mpsc::UnboundedReceiver<Vec<u8>>,
}

impl Pump {
    fn new(
        stream: Stream,
        ctx: &LinkContext,
        cancel: &CancellationToken,
        replies_out: mpsc::UnboundedSender<Vec<u8>>,
        replies_in: mpsc::UnboundedReceiver<Vec<u8>>,
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
            replies_out,
            replies_in,
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

    async fn pump<R, W>(&mut self, src: &mut R, dst: &mut W) -> Outcome
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let mut buf = vec![0u8; READ_BUFFER];
        let mut src_open = true;
        let mut toxics_open = true;
        let mut replies_open = true;
        // A reply from the other direction is on its way to `dst`.
        let mut answering = false;
        loop {
            let wake = match self.pipeline.advance(Instant::now()) {
                Ok(wake) => wake,
                Err(_) => return Outcome::Reset,
            };
            match self.pipeline.pop_control() {
                Some(Control::Close) => return Outcome::Close,
                Some(Control::Eof) => {
                    return match dst.shutdown().await {
                        Ok(()) if answering => Outcome::Answered,
                        Ok(()) => Outcome::Done,
                        Err(err) => Outcome::failed(&err),
                    };
                }
                Some(Control::Reply(reply)) => {
                    // The other direction may be gone already; then the
                    // connection is closing anyway.
                    let _ = self.replies_out.send(reply);
                    return self.discard(src, &mut buf).await;
                }
                None => {}
            }
            let can_read = src_open && self.pipeline.buffered_bytes() < MAX_BUFFERED;
            let pending = self.pipeline.front_data();
            let has_pending = pending.is_some();
            let pending = pending.unwrap_or_default();
            let deadline = wake.unwrap_or_else(|| Instant::now() + Duration::from_secs(3600));
            tokio::select! {
                biased;
                () = self.cancel.cancelled() => return Outcome::Cancelled,
                changed = self.toxics.changed(), if toxics_open => match changed {
                    Ok(()) => {
                        let current = self.toxics.borrow_and_update().clone();
                        self.pipeline.reconfigure(&current, Instant::now());
                    }
                    // The proxy is gone; its cancellation follows.
                    Err(_) => toxics_open = false,
                },
                reply = self.replies_in.recv(), if replies_open => match reply {
                    Some(reply) => {
                        // The proxy answers the destination peer itself: the
                        // answer goes behind what was read so far, then a FIN.
                        let now = Instant::now();
                        self.pipeline.push(Item::Data(reply), now);
                        self.pipeline.push(Item::Eof, now);
                        src_open = false;
                        answering = true;
                    }
                    None => replies_open = false,
                },
                written = dst.write(pending), if has_pending => match written {
                    Ok(0) => return Outcome::failed(&io::ErrorKind::WriteZero.into()),
                    Ok(n) => {
                        self.pipeline.consume(n);
                        self.bytes.increment(n as u64);
                    }
                    Err(err) => return Outcome::failed(&err),
                },
                read = src.read(&mut buf), if can_read => match read {
                    Ok(0) => {
                        src_open = false;
                        self.pipeline.push(Item::Eof, Instant::now());
                    }
                    Ok(n) => self.pipeline.push(Item::Data(buf[..n].to_vec()), Instant::now()),
                    Err(err) => return Outcome::failed(&err),
                },
                () = tokio::time::sleep_until(deadline), if wake.is_some() => {}
            }
        }
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
