//! A connection's two loops over its WebSocket: the reader, which hears frames, keeps the
//! connection's timers (pings, idle timeout, the drain) and hands text and binary frames to the
//! protocol ([`Peer`]); and the writer, which drains the connection's bounded queue
//! ([`Outbox`]), batching and fragmenting, one flush per batch.
//!
//! Both are generic over the frames' `Stream` and `Sink`, so they know nothing of sockets,
//! sessions or rooms, and are unit-tested over in-memory channels below.

use crate::server::{
    frame::{self, CLOSE_GOING_AWAY, CLOSE_PROTOCOL_ERROR, CLOSE_SERVICE_RESTART, CLOSE_TOO_BIG},
    metrics::close_reason,
    outbox::{Batch, Outbox},
    store::Departure,
};
use bytes::Bytes;
use futures_util::{Sink, SinkExt, Stream, StreamExt};
use rand::Rng;
use std::{future::Future, time::Duration};
use tokio::{task::JoinHandle, time::Instant};
use tokio_util::sync::CancellationToken;
use tungstenite::{
    Message,
    protocol::frame::{
        Frame,
        coding::{CloseCode, Data, OpCode},
    },
};

/// Text messages longer than this are sent as fragments of this size, so that tungstenite's
/// write buffer, which never shrinks, holds at most its threshold plus one fragment.
pub(super) const FRAGMENT: usize = 1024;
/// How long a closing connection may take to get its close frame out.
pub(super) const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

/// A close this side sends: code and reason.
pub(super) type Close = (u16, &'static str);

/// What the reader asks of the protocol it runs.
pub(super) trait Peer: Send {
    /// The connection's outbound queue.
    fn outbox(&self) -> &Outbox;
    /// Cancelled when the node begins to drain.
    fn draining(&self) -> &CancellationToken;
    /// The connection's timers' settings.
    fn heartbeat(&self) -> Heartbeat;
    /// Acts on a text or binary frame. Returns the close to send when the connection must end.
    fn on_message(&mut self, message: Message) -> impl Future<Output = Option<Close>> + Send;
    /// The connection ends; `why` names the reason (`metrics::close_reason`'s labels).
    fn ended(&self, why: &'static str);
    /// After the close frame (if any) is queued: let go of everything the connection held. With
    /// `may_return`, the link was lost or the page went away (not closed by either side on
    /// purpose): the client may well be back in a moment.
    fn finish(&mut self, how: Departure, may_return: bool) -> impl Future<Output = ()> + Send;
}

/// A connection's timers: a WebSocket ping every `ping`, a close when nothing at all was heard
/// for `idle` (a live peer answers every ping with a pong), and, while the node drains, a move
/// elsewhere at a random moment within `drain`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Heartbeat {
    pub ping: Duration,
    pub idle: Duration,
    pub drain: Duration,
}

/// The connection's reader: runs the protocol until the connection ends, then lets the peer
/// finish and waits for the writer.
// Not an `async fn` on purpose (see below), whatever clippy prefers.
#[allow(clippy::manual_async_fn)]
pub(super) fn read_loop<S, P>(
    mut stream: S,
    mut peer: P,
    writer: JoinHandle<()>,
) -> impl Future<Output = ()> + Send
where
    S: Stream<Item = Result<Message, tungstenite::Error>> + Unpin + Send,
    P: Peer,
{
    // A plain fn around an `async move` block: the block uses what it captured in place, where
    // an `async fn` would keep its arguments and their moved copies side by side.
    async move {
        let close = peer.outbox().close.clone();
        let draining = peer.draining().clone();
        let mut timers = Timers::new(peer.heartbeat());
        // One timer for the connection's whole life, moved only when it fires or the node starts
        // to drain: a frame from the peer merely notes the time.
        let timer = tokio::time::sleep_until(timers.wake_at());
        tokio::pin!(timer);
        // Only a close from the client frees the name at once; anything else may be resumed.
        let mut departure = Departure::Dropped;
        // The close frame this side sends, if it is the one ending the connection.
        let mut close_with = None;
        // Everything awaited only now and then (refusals, the close, the teardown) is boxed: its
        // state then takes memory only while it runs, not for the connection's whole, mostly
        // idle, life.
        loop {
            let frame = tokio::select! {
                biased;
                // Closed from outside (slow reader, failed write): the writer is already closing.
                _ = close.cancelled() => break,
                _ = draining.cancelled(), if timers.leave_at.is_none() => {
                    timers.leave_at = Some(timers.drain_moment());
                    timer.as_mut().reset(timers.wake_at());
                    continue;
                }
                _ = &mut timer => {
                    match timers.due() {
                        Due::Leave => {
                            close_with =
                                Some((CLOSE_SERVICE_RESTART, "server restarting; reconnect"));
                            break;
                        }
                        Due::IdleTimeout => {
                            tracing::debug!("peer silent past the idle timeout: closing");
                            close_with = Some((CLOSE_GOING_AWAY, "idle timeout"));
                            break;
                        }
                        Due::Ping => {
                            // Never waits: a reader so far behind that even a ping does not fit is
                            // closed.
                            peer.outbox().offer(Message::Ping(Default::default()));
                        }
                        // The peer was heard since the deadline was set: nothing is due yet.
                        Due::Nothing => {}
                    }
                    timer.as_mut().reset(timers.wake_at());
                    continue;
                }
                frame = stream.next() => frame,
            };
            timers.heard();
            let message = match frame {
                Some(Ok(message @ (Message::Text(_) | Message::Binary(_)))) => message,
                // Frames are reassembled by tungstenite: a raw one never arrives.
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                // A page that goes away (reload, navigation: 1001) may be back at once; any other
                // close from the client frees the name.
                Some(Ok(Message::Close(frame))) => {
                    if frame.is_none_or(|f| f.code != CloseCode::Away) {
                        departure = Departure::Closed;
                    }
                    break;
                }
                None => break,
                Some(Err(e)) => {
                    close_with = read_error_close(e);
                    break;
                }
            };
            // The message moves into the boxed handler: across the await the connection's
            // future holds one pointer, not the frame.
            if let Some(close) = Box::pin(peer.on_message(message)).await {
                close_with = Some(close);
                break;
            }
        }
        // This side ended the connection: the client may still be writing.
        let linger = close_with.is_some() || close.is_cancelled();
        Box::pin(async move {
            let why = match (&close_with, &departure) {
                (Some((code, _)), _) => close_reason(*code),
                (None, Departure::Closed) => "client_close",
                (None, _) if peer.outbox().overflowed() => "slow_reader",
                (None, _) => "dropped",
            };
            peer.ended(why);
            if let Some((code, reason)) = close_with {
                closing(peer.outbox(), code, reason).await;
            }
            // Nobody ended it on purpose: the client may well be back in a moment.
            let may_return = !linger && departure == Departure::Dropped;
            peer.finish(departure, may_return).await;
            // Every room has let go of the connection: the writer sends what is queued, then
            // closes.
            peer.outbox().end();
            drop(peer);
            if linger {
                // Frames the client sent are read (and no longer acted on) until its own close,
                // for at most CLOSE_TIMEOUT: a socket closed with unread data is reset, and the
                // reset would discard what was sent before our close, the close frame included.
                let drained = async {
                    while let Some(Ok(frame)) = stream.next().await {
                        if matches!(frame, Message::Close(_)) {
                            break;
                        }
                    }
                };
                let _ = tokio::time::timeout(CLOSE_TIMEOUT, drained).await;
            }
            if tokio::time::timeout(CLOSE_TIMEOUT, writer).await.is_err() {
                tracing::debug!("writer did not finish in time");
            }
        })
        .await;
    }
}

/// Queues a close frame behind what is already queued. If the client does not make room in
/// time, it is closed at once instead (1013).
async fn closing(outbox: &Outbox, code: u16, reason: &'static str) {
    let queued = outbox.send(frame::close(code, reason));
    if !matches!(
        tokio::time::timeout(CLOSE_TIMEOUT, queued).await,
        Ok(Ok(()))
    ) {
        outbox.close.cancel();
    }
}

/// What a connection's timer may be due for.
enum Due {
    /// The node drains and this connection's moment to go elsewhere came.
    Leave,
    /// Nothing at all was heard from the peer for the idle timeout.
    IdleTimeout,
    /// Time for the next WebSocket ping.
    Ping,
    Nothing,
}

/// A connection's deadlines (see [`Heartbeat`]).
struct Timers {
    every: Duration,
    patience: Duration,
    drain: Duration,
    next_ping: Instant,
    last_heard: Instant,
    leave_at: Option<Instant>,
}

impl Timers {
    fn new(heartbeat: Heartbeat) -> Self {
        let now = Instant::now();
        Self {
            every: heartbeat.ping,
            patience: heartbeat.idle,
            drain: heartbeat.drain,
            next_ping: now + heartbeat.ping,
            last_heard: now,
            leave_at: None,
        }
    }

    /// The earliest deadline. Hearing from the peer only moves deadlines later, so waking at
    /// an outdated one is harmless: `due` then says `Nothing`.
    fn wake_at(&self) -> Instant {
        let heartbeat = self.next_ping.min(self.last_heard + self.patience);
        self.leave_at.map_or(heartbeat, |at| at.min(heartbeat))
    }

    /// What is due now; a ping that is due is counted as sent.
    fn due(&mut self) -> Due {
        let now = Instant::now();
        if self.leave_at.is_some_and(|at| at <= now) {
            Due::Leave
        } else if now - self.last_heard >= self.patience {
            Due::IdleTimeout
        } else if self.next_ping <= now {
            self.next_ping = now + self.every;
            Due::Ping
        } else {
            Due::Nothing
        }
    }

    fn heard(&mut self) {
        self.last_heard = Instant::now();
    }

    /// When a draining node closes this connection: a random moment within the drain window, so
    /// that thousands of clients do not all reconnect to the other nodes at the same instant.
    fn drain_moment(&self) -> Instant {
        let window = self.drain.as_millis() as u64;
        let delay = if window == 0 {
            0
        } else {
            rand::thread_rng().gen_range(0..window)
        };
        Instant::now() + Duration::from_millis(delay)
    }
}

/// Maps a read failure to the close the peer should get.
/// The close a read error calls for — none when the link itself is gone (reset, or ended
/// without a close frame): the client did nothing wrong and may be back in a moment.
fn read_error_close(e: tungstenite::Error) -> Option<Close> {
    use tungstenite::error::ProtocolError::ResetWithoutClosingHandshake;
    match e {
        tungstenite::Error::Capacity(_) => Some((CLOSE_TOO_BIG, "frame too large")),
        tungstenite::Error::Protocol(ResetWithoutClosingHandshake) | tungstenite::Error::Io(_) => {
            tracing::debug!(cause = %e, "link lost");
            None
        }
        tungstenite::Error::Protocol(_) | tungstenite::Error::Utf8(_) => {
            Some((CLOSE_PROTOCOL_ERROR, "protocol error"))
        }
        other => {
            tracing::debug!(cause = %other, "read failed");
            Some((CLOSE_PROTOCOL_ERROR, "read failed"))
        }
    }
}

/// The connection's writer: sends what is queued, batch by batch, until the queue ends (then
/// closes the socket) or the connection is closed from outside (then says 1013, reconnect).
pub(super) async fn write_loop<K>(mut sink: K, outbox: &Outbox)
where
    K: Sink<Message, Error = tungstenite::Error> + Unpin,
{
    let close = &outbox.close;
    // As in the reader, what is awaited only while writing or closing is boxed, so the waiting
    // writer of an idle connection is small.
    loop {
        // Everything queued, taken at once; dropped after writing, so that an idle connection
        // keeps no queue storage.
        let taken = tokio::select! {
            biased;
            _ = close.cancelled() => break,
            taken = outbox.take() => taken,
        };
        let Some(mut batch) = taken else {
            // The connection ended normally and everything queued was written.
            let _ = Box::pin(tokio::time::timeout(CLOSE_TIMEOUT, sink.close())).await;
            return;
        };
        // Abandoning a pending write here is safe: tungstenite buffers whole frames, and the
        // close below flushes what is buffered first.
        let written = tokio::select! {
            biased;
            _ = close.cancelled() => break,
            r = Box::pin(write_batch(&mut sink, &mut batch)) => r,
        };
        match written {
            Ok(true) => {}
            // A close frame went out: nothing more may follow it.
            Ok(false) => return,
            Err(e) => {
                tracing::debug!(cause = %e, "write failed: closing");
                close.cancel();
                return;
            }
        }
    }
    // Closed from outside (slow reader): tell the client to reconnect, if it reads in time.
    let bye = sink.send(frame::close(frame::CLOSE_TRY_AGAIN, "reconnect"));
    let _ = Box::pin(tokio::time::timeout(CLOSE_TIMEOUT, bye)).await;
}

/// Writes a batch with one flush. Returns false after a close frame.
async fn write_batch<K>(sink: &mut K, batch: &mut Batch) -> Result<bool, K::Error>
where
    K: Sink<Message> + Unpin,
{
    let mut open = true;
    for frame in batch.drain() {
        match frame {
            Message::Text(text) if text.len() > FRAGMENT => {
                for fragment in fragments(text.into()) {
                    sink.feed(fragment).await?;
                }
            }
            Message::Close(_) => {
                sink.feed(frame).await?;
                open = false;
                break;
            }
            frame => sink.feed(frame).await?,
        }
    }
    sink.flush().await?;
    Ok(open)
}

/// A text message as fragments of at most [`FRAGMENT`] bytes (RFC 6455 §5.4), sharing the
/// message's bytes. A fragment may end inside a UTF-8 sequence: only the whole message must be
/// valid UTF-8.
fn fragments(text: Bytes) -> impl Iterator<Item = Message> {
    let len = text.len();
    (0..len).step_by(FRAGMENT).map(move |start| {
        let end = (start + FRAGMENT).min(len);
        let opcode = if start == 0 {
            OpCode::Data(Data::Text)
        } else {
            OpCode::Data(Data::Continue)
        };
        Message::Frame(Frame::message(text.slice(start..end), opcode, end == len))
    })
}

#[cfg(test)]
mod tests;
