//! A connection's one task over its WebSocket: it hears frames and hands text and binary ones to
//! the protocol ([`Peer`]), keeps the connection's timers (pings, idle timeout, the drain), and
//! writes what the connection's bounded queue ([`Outbox`]) holds, batch by batch, also while the
//! protocol works on a frame ([`beside`]).
//!
//! One task rather than a reader and a writer: a task costs about 700 bytes at rest, and splitting
//! the WebSocket in two another 400 (BENCHMARKS "Idle memory"); idle connections are most of
//! what a chat server holds. The WebSocket is a [`Link`], which holds no buffer while the
//! connection waits and writes frames from their shared bytes.
//!
//! Generic over the socket, so it knows nothing of sessions or rooms, and is unit-tested over an
//! in-memory pipe below.

mod link;

pub use link::{Limits, Link};

use crate::server::{
    frame::{self, CLOSE_GOING_AWAY, CLOSE_PROTOCOL_ERROR, CLOSE_SERVICE_RESTART, CLOSE_TOO_BIG},
    metrics::close_reason,
    outbox::Outbox,
    store::Departure,
};
use link::Event;
use rand::Rng;
use std::{future::Future, time::Duration};
use tokio::{
    io::{AsyncRead, AsyncWrite},
    time::Instant,
};
use tokio_util::sync::CancellationToken;
use tungstenite::{Message, protocol::frame::coding::CloseCode};

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

/// The connection: runs the protocol until the connection ends, then lets the peer finish and
/// says goodbye.
// Not an `async fn` on purpose (see below), whatever clippy prefers.
#[allow(clippy::manual_async_fn)]
pub(super) fn run<S, P>(mut link: Link<S>, mut peer: P) -> impl Future<Output = ()> + Send
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
    P: Peer,
{
    // A plain fn around an `async move` block: the block uses what it captured in place, where
    // an `async fn` would keep its arguments and their moved copies side by side (the link is
    // made by the caller for the same reason).
    async move {
        let outbox = peer.outbox().clone();
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
        // Everything awaited only now and then (a frame's handling, the close, the teardown) is
        // boxed: its state then takes memory only while it runs, not for the connection's
        // whole, mostly idle, life.
        loop {
            let idle = link.idle();
            let event = tokio::select! {
                biased;
                // Closed from outside (slow reader), or a write failed.
                _ = outbox.close.cancelled() => break,
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
                            outbox.offer(Message::Ping(Default::default()));
                        }
                        // The peer was heard since the deadline was set: nothing is due yet.
                        Due::Nothing => {}
                    }
                    timer.as_mut().reset(timers.wake_at());
                    continue;
                }
                taken = outbox.take(), if idle => {
                    // The queue ends only after this loop.
                    link.start(taken.into_iter().flatten());
                    continue;
                }
                event = link.event(true) => event,
            };
            let frame = match event {
                Event::Wrote(written) => {
                    wrote(&outbox, written);
                    continue;
                }
                Event::Read(frame) => frame,
            };
            timers.heard();
            let message = match frame {
                Some(Ok(message @ (Message::Text(_) | Message::Binary(_)))) => message,
                // Fragments are put together by the link: a raw frame never arrives; pings
                // were answered there.
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                // A page that goes away (reload, navigation: 1001) may be back at once; any other
                // close from the client frees the name.
                Some(Ok(Message::Close(frame))) => {
                    if frame.is_none_or(|f| f.code != CloseCode::Away) {
                        departure = Departure::Closed;
                    }
                    // The link already dropped what was not begun: only the answer goes out.
                    break;
                }
                None => break,
                Some(Err(e)) => {
                    close_with = read_error_close(e);
                    break;
                }
            };
            // The message moves into the boxed handler: across the await the connection's
            // future holds one pointer, not the frame. What the handler queues is written
            // meanwhile.
            let handled = Box::pin(beside(&mut link, &outbox, peer.on_message(message))).await;
            if let Some(close) = handled {
                close_with = Some(close);
                break;
            }
        }
        // This side ended the connection: the client may still be writing.
        let closed_outside = outbox.close.is_cancelled();
        let linger = close_with.is_some() || closed_outside;
        Box::pin(async move {
            let why = match (&close_with, &departure) {
                (Some((code, _)), _) => close_reason(*code),
                (None, Departure::Closed) => "client_close",
                (None, _) if outbox.overflowed() => "slow_reader",
                (None, _) => "dropped",
            };
            peer.ended(why);
            if closed_outside {
                try_again(&mut link);
            } else if let Some((code, reason)) = close_with {
                // Behind what is already queued. If the client does not make room in time, it
                // is closed at once instead (1013).
                let queued =
                    tokio::time::timeout(CLOSE_TIMEOUT, outbox.send(frame::close(code, reason)));
                if !matches!(beside(&mut link, &outbox, queued).await, Ok(Ok(()))) {
                    outbox.close.cancel();
                    try_again(&mut link);
                }
            }
            // Nobody ended it on purpose: the client may well be back in a moment.
            let may_return = !linger && departure == Departure::Dropped;
            beside(&mut link, &outbox, peer.finish(departure, may_return)).await;
            // Every room has let go of the connection: what is queued goes out, then the close.
            outbox.end();
            drop(peer);
            // Frames the client sent are read (and no longer acted on) until its own close, for
            // at most CLOSE_TIMEOUT: a socket closed with unread data is reset, and the reset
            // would discard what was sent before our close, the close frame included.
            let last = wind_up(&mut link, &outbox, linger);
            if tokio::time::timeout(CLOSE_TIMEOUT, last).await.is_err() {
                tracing::debug!("the connection did not wind up in time");
            }
            outbox.writer_gone();
        })
        .await;
    }
}

/// A connection refused before it could run the protocol: writes what its queue holds (an error
/// and a close), reading until the client's close, for at most [`CLOSE_TIMEOUT`].
pub(super) async fn refuse<S>(mut link: Link<S>, outbox: Outbox)
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, wind_up(&mut link, &outbox, true)).await;
    outbox.writer_gone();
}

/// Closed from outside (a slow reader) or closing at once: a frame half written is finished, the
/// rest dropped, and the client is told to reconnect (and recover with `since`).
fn try_again<S: AsyncRead + AsyncWrite + Unpin>(link: &mut Link<S>) {
    link.cut();
    link.start([frame::close(frame::CLOSE_TRY_AGAIN, "reconnect")]);
}

/// After a write: a failed one ends the connection.
fn wrote(outbox: &Outbox, written: Result<(), tungstenite::Error>) {
    if let Err(e) = written {
        tracing::debug!(cause = %e, "write failed: closing");
        outbox.close.cancel();
        // Whatever is queued from now on would never be written.
        outbox.writer_gone();
    }
}

/// Awaits `work` while writing what the queue holds, so that work that queues frames (and waits
/// for room) is not waiting on itself. Reads nothing: frames are acted on one at a time.
async fn beside<S, F>(link: &mut Link<S>, outbox: &Outbox, work: F) -> F::Output
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: Future,
{
    tokio::pin!(work);
    let mut released = false;
    loop {
        let idle = link.idle();
        let taking = idle && !outbox.close.is_cancelled();
        tokio::select! {
            biased;
            done = &mut work => return done,
            // Closed from outside: nothing queued will be written, so work waiting for room in
            // the queue is let go (its `send` fails) instead of waiting for ever.
            _ = outbox.close.cancelled(), if !released => {
                released = true;
                outbox.writer_gone();
            }
            taken = outbox.take(), if taking => link.start(taken.into_iter().flatten()),
            event = link.event(false), if !idle => {
                if let Event::Wrote(written) = event {
                    wrote(outbox, written);
                }
            }
        }
    }
}

/// The end: writes what is queued until the queue's end (nothing after a close frame, and
/// nothing new once closed from outside), reading and discarding the client's frames while
/// `reading`, until its close; then the closing frame, if none went yet.
async fn wind_up<S>(link: &mut Link<S>, outbox: &Outbox, mut reading: bool)
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut ended = false;
    loop {
        ended |= link.shut() || outbox.close.is_cancelled();
        let idle = link.idle();
        if ended && idle && !reading {
            break;
        }
        let event = tokio::select! {
            biased;
            taken = outbox.take(), if idle && !ended => {
                match taken {
                    Some(batch) => link.start(batch),
                    None => ended = true,
                }
                continue;
            }
            event = link.event(reading) => event,
        };
        match event {
            Event::Wrote(Ok(_)) => {}
            Event::Wrote(Err(e)) => {
                tracing::debug!(cause = %e, "write failed while closing");
                return;
            }
            Event::Read(Some(Ok(Message::Close(_)) | Err(_)) | None) => reading = false,
            Event::Read(Some(Ok(_))) => {}
        }
    }
    if let Err(e) = link.close().await {
        tracing::debug!(cause = %e, "close not written");
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

#[cfg(test)]
mod tests;
