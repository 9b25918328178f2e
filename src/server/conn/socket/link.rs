//! A connection's WebSocket as one object that reads and writes in the same task.
//!
//! Reading, and the control frames (ping, pong, close), are tungstenite's. Text and binary
//! frames are written here, straight from the frame's shared bytes: a server frame is not
//! masked, so it is a header of 2 to 10 bytes and the payload every recipient shares, and both
//! go to the socket with one vectored write for up to [`GATHER`] frames. Nothing is copied per
//! connection, and an idle connection keeps no write buffer: tungstenite's grows to the largest
//! frame it ever wrote and never shrinks (about 2 KB per connection at rest, BENCHMARKS "Idle
//! memory").
//!
//! tungstenite writes into a [`Tap`], never to the socket: what it writes (its answers to pings,
//! its close frames) waits there, whole frames only, and goes out between two of our frames, so
//! the two writers never interleave inside a frame.

use futures_util::{Sink, Stream};
use std::{
    collections::VecDeque,
    io::{self, IoSlice},
    pin::Pin,
    task::{Context, Poll, ready},
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::WebSocketStream;
use tungstenite::Message;

/// Frames taken in one vectored write at most (two slices each).
const GATHER: usize = 32;
/// tungstenite's own frames waiting past this many bytes stop the reading: a client that sends
/// pings without reading the pongs waits for them to go out.
const TAP_LIMIT: usize = 4 * 1024;
/// What the tap keeps of its storage between bursts.
const TAP_KEEP: usize = 256;

/// What tungstenite sees as its socket: reads go to the socket, writes wait in `held`.
pub struct Tap<S> {
    io: S,
    held: Vec<u8>,
    /// Bytes of `held` already written to the socket.
    sent: usize,
}

impl<S> Tap<S> {
    pub fn new(io: S) -> Self {
        Self {
            io,
            held: Vec::new(),
            sent: 0,
        }
    }

    fn waiting(&self) -> usize {
        self.held.len() - self.sent
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tap<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<S: Unpin> AsyncWrite for Tap<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.held.extend_from_slice(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// The frames being written: batches taken from the connection's queue.
struct Out {
    frames: VecDeque<Message>,
    /// Bytes of the front frame already written (its header first, then its payload).
    done: usize,
}

/// What [`Link::event`] saw first.
pub enum Event {
    /// Everything taken was written; false once a close frame went out (nothing follows one).
    Wrote(Result<bool, tungstenite::Error>),
    /// A frame from the client, or its end.
    Read(Option<Result<Message, tungstenite::Error>>),
}

pub struct Link<S> {
    ws: WebSocketStream<Tap<S>>,
    out: Option<Out>,
    /// A close frame went out, or the client's came: nothing more is taken.
    shut: bool,
    /// A write failed: nothing more is written.
    failed: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Link<S> {
    pub fn new(ws: WebSocketStream<Tap<S>>) -> Self {
        Self {
            ws,
            out: None,
            shut: false,
            failed: false,
        }
    }

    /// Nothing is being written, or waits to be.
    pub fn idle(&self) -> bool {
        self.failed || (self.out.is_none() && self.ws.get_ref().waiting() == 0)
    }

    /// Whether a close frame went out or the client's came.
    pub fn shut(&self) -> bool {
        self.shut
    }

    /// Starts writing `frames`, after whatever is still being written.
    pub fn start(&mut self, frames: impl IntoIterator<Item = Message>) {
        if self.shut || self.failed {
            return;
        }
        match &mut self.out {
            Some(out) => out.frames.extend(frames),
            None => {
                let frames: VecDeque<Message> = frames.into_iter().collect();
                if !frames.is_empty() {
                    self.out = Some(Out { frames, done: 0 });
                }
            }
        }
    }

    /// Drops what was not begun yet; a frame half written is finished (the rest of the stream
    /// would be unreadable otherwise).
    pub fn cut(&mut self) {
        if let Some(out) = &mut self.out {
            let begun = usize::from(out.done > 0);
            out.frames.truncate(begun);
            if out.frames.is_empty() {
                self.out = None;
            }
        }
    }

    /// The client closed: what was not begun is dropped, and only tungstenite's answer to the
    /// close will go out ([`Link::close`]).
    pub fn end_writing(&mut self) {
        self.cut();
        self.shut = true;
    }

    /// The next thing that happens: the writing finished, or (with `reading`) a frame came.
    pub fn event(&mut self, reading: bool) -> impl Future<Output = Event> + '_ {
        std::future::poll_fn(move |cx| {
            if !self.idle()
                && let Poll::Ready(r) = self.poll_write(cx)
            {
                return Poll::Ready(Event::Wrote(r));
            }
            // A client that sends pings and does not read the pongs is read no further.
            if reading
                && self.ws.get_ref().waiting() <= TAP_LIMIT
                && let Poll::Ready(frame) = Pin::new(&mut self.ws).poll_next(cx)
            {
                return Poll::Ready(Event::Read(frame));
            }
            // Reading may have had tungstenite answer a ping: it goes out now, not whenever
            // something else wakes the connection.
            if self.ws.get_ref().waiting() > 0
                && let Poll::Ready(r) = self.poll_write(cx)
            {
                return Poll::Ready(Event::Wrote(r));
            }
            Poll::Pending
        })
    }

    /// Writes until nothing is left; for when nothing else is awaited.
    pub async fn flush(&mut self) -> Result<bool, tungstenite::Error> {
        std::future::poll_fn(|cx| self.poll_write(cx)).await
    }

    /// Writes what is left, then has tungstenite write its closing frame (its answer to the
    /// client's close, or a close without a code if this side sent none) and writes that.
    pub async fn close(&mut self) -> Result<(), tungstenite::Error> {
        if self.failed {
            return Ok(());
        }
        self.flush().await?;
        // Into the tap: this never waits.
        let ws = &mut self.ws;
        match std::future::poll_fn(|cx| Pin::new(&mut *ws).poll_close(cx)).await {
            Ok(())
            | Err(tungstenite::Error::ConnectionClosed | tungstenite::Error::AlreadyClosed) => {}
            Err(e) => return Err(e),
        }
        self.shut = true;
        self.flush().await.map(|_| ())
    }

    fn poll_write(&mut self, cx: &mut Context<'_>) -> Poll<Result<bool, tungstenite::Error>> {
        if self.failed {
            return Poll::Ready(Ok(false));
        }
        let written = ready!(self.poll_write_all(cx));
        if written.is_err() {
            self.failed = true;
            self.out = None;
        }
        Poll::Ready(written)
    }

    fn poll_write_all(&mut self, cx: &mut Context<'_>) -> Poll<Result<bool, tungstenite::Error>> {
        loop {
            let at_boundary = self.out.as_ref().is_none_or(|out| out.done == 0);
            // tungstenite's frames go out between ours.
            if at_boundary && self.ws.get_ref().waiting() > 0 {
                let tap = self.ws.get_mut();
                let n = ready!(Pin::new(&mut tap.io).poll_write(cx, &tap.held[tap.sent..]))?;
                if n == 0 {
                    return Poll::Ready(Err(io::Error::from(io::ErrorKind::WriteZero).into()));
                }
                tap.sent += n;
                if tap.waiting() == 0 {
                    tap.held.clear();
                    tap.sent = 0;
                    tap.held.shrink_to(TAP_KEEP);
                }
                continue;
            }
            let Some(out) = &mut self.out else {
                return Poll::Ready(Ok(!self.shut));
            };
            let Some(front) = out.frames.front() else {
                self.out = None;
                continue;
            };
            if payload(front).is_none() {
                // A control frame: tungstenite's, through the tap.
                let Some(frame) = out.frames.pop_front() else {
                    continue;
                };
                let closing = matches!(frame, Message::Close(_));
                if let Err(e) = self.via_tungstenite(cx, frame) {
                    tracing::debug!(cause = %e, "control frame not sent");
                }
                if closing {
                    // Nothing may follow a close frame.
                    self.shut = true;
                    self.out = None;
                }
                continue;
            }
            let n = ready!(write_gathered(&mut self.ws.get_mut().io, cx, out))?;
            if n == 0 {
                return Poll::Ready(Err(io::Error::from(io::ErrorKind::WriteZero).into()));
            }
            out.advance(n);
        }
    }

    /// Hands a control frame to tungstenite, which writes it into the tap without waiting.
    fn via_tungstenite(
        &mut self,
        cx: &mut Context<'_>,
        frame: Message,
    ) -> Result<(), tungstenite::Error> {
        let mut ws = Pin::new(&mut self.ws);
        if let Poll::Ready(ready) = ws.as_mut().poll_ready(cx) {
            ready?;
        }
        ws.as_mut().start_send(frame)?;
        match ws.poll_flush(cx) {
            Poll::Ready(flushed) => flushed,
            Poll::Pending => Ok(()),
        }
    }
}

/// The bytes of a text or binary frame; None for control frames.
fn payload(frame: &Message) -> Option<&[u8]> {
    match frame {
        Message::Text(text) => Some(text.as_bytes()),
        Message::Binary(bytes) => Some(bytes),
        _ => None,
    }
}

/// A server frame's header (RFC 6455 §5.2: final, not masked) into `head`; returns its length.
fn header(frame: &Message, len: usize, head: &mut [u8; 10]) -> usize {
    let opcode = if matches!(frame, Message::Binary(_)) {
        0x2
    } else {
        0x1
    };
    head[0] = 0x80 | opcode;
    if len < 126 {
        head[1] = len as u8;
        2
    } else if let Ok(short) = u16::try_from(len) {
        head[1] = 126;
        head[2..4].copy_from_slice(&short.to_be_bytes());
        4
    } else {
        head[1] = 127;
        head[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        10
    }
}

/// One vectored write of the data frames at the front of `out` (up to [`GATHER`]), from where
/// the last write stopped. Returns how many bytes went.
fn write_gathered<S: AsyncWrite + Unpin>(
    io: &mut S,
    cx: &mut Context<'_>,
    out: &Out,
) -> Poll<io::Result<usize>> {
    let mut heads = [[0u8; 10]; GATHER];
    let mut lens = [0usize; GATHER];
    let mut count = 0;
    for frame in out.frames.iter().take(GATHER) {
        let Some(bytes) = payload(frame) else { break };
        lens[count] = header(frame, bytes.len(), &mut heads[count]);
        count += 1;
    }
    let mut slices = [IoSlice::new(&[]); 2 * GATHER];
    let mut used = 0;
    let mut skip = out.done;
    for (i, frame) in out.frames.iter().take(count).enumerate() {
        let bytes = payload(frame).unwrap_or_default();
        for part in [&heads[i][..lens[i]], bytes] {
            if skip >= part.len() {
                skip -= part.len();
                continue;
            }
            slices[used] = IoSlice::new(&part[skip..]);
            skip = 0;
            used += 1;
        }
    }
    Pin::new(io).poll_write_vectored(cx, &slices[..used])
}

impl Out {
    /// `n` more bytes were written.
    fn advance(&mut self, mut n: usize) {
        while let Some(frame) = self.frames.front() {
            let Some(bytes) = payload(frame) else { return };
            let total = header(frame, bytes.len(), &mut [0; 10]) + bytes.len();
            let left = total - self.done;
            if n < left {
                self.done += n;
                return;
            }
            n -= left;
            self.done = 0;
            self.frames.pop_front();
        }
    }
}
