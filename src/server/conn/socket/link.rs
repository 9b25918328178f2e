//! A connection's WebSocket (RFC 6455, server side) as one object that reads and writes in the
//! same task, and holds no buffer while the connection is idle.
//!
//! - **Writing.** A server frame is not masked, so a text or binary frame is a header of 2 to 10
//!   bytes and the payload every recipient shares: both go to the socket with one vectored write
//!   for up to [`GATHER`] frames, and nothing is copied per connection. Control frames (pings,
//!   pongs, closes) are small: they are formatted into `held` and go out between two data
//!   frames, never inside one.
//! - **Reading.** Bytes are read into `inbox` only while a frame arrives; the frame is unmasked,
//!   checked (masked, no reserved bits or opcodes, control frames whole and short, fragments in
//!   order, sizes under the limits, text valid UTF-8) and handed on as a tungstenite [`Message`].
//!   A ping is answered with a pong, a close with a close. tungstenite parses the headers and
//!   formats the control frames.
//!
//! A tokio-tungstenite stream kept a 256-byte read buffer, two waker proxies and its state per
//! connection, and a write buffer at the size of the largest frame it ever wrote (BENCHMARKS
//! "Idle memory").

use bytes::Bytes;
use std::{
    collections::VecDeque,
    io::{self, Cursor, IoSlice},
    pin::Pin,
    task::{Context, Poll, ready},
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tungstenite::{
    Message, Utf8Bytes,
    error::{CapacityError, ProtocolError},
    protocol::{
        CloseFrame,
        frame::{
            Frame, FrameHeader,
            coding::{CloseCode, Control, Data, OpCode},
        },
    },
};

type Error = tungstenite::Error;

/// Frames taken in one vectored write at most (two slices each).
const GATHER: usize = 32;
/// Control frames waiting past this many bytes stop the reading: a client that sends pings
/// without reading the pongs waits for them to go out.
const HELD_LIMIT: usize = 4 * 1024;
/// What `held` keeps of its storage between bursts.
const HELD_KEEP: usize = 256;
/// Bytes asked of the socket at a time, onto the stack.
const READ_CHUNK: usize = 4096;
/// The longest payload of a control frame (RFC 6455 §5.5).
const CONTROL_MAX: usize = 125;

/// The largest frame and message a client may send.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub frame: usize,
    pub message: usize,
}

/// The frames being written: batches taken from the connection's queue.
struct Out {
    frames: VecDeque<Message>,
    /// Bytes of the front frame already written (its header first, then its payload).
    done: usize,
}

/// A fragmented message being put together.
struct Partial {
    text: bool,
    bytes: Vec<u8>,
}

/// What [`Link::event`] saw first.
pub enum Event {
    /// Everything taken was written (and flushed), or the write failed.
    Wrote(Result<(), Error>),
    /// A frame from the client, or the end of what it sends.
    Read(Option<Result<Message, Error>>),
}

pub struct Link<S> {
    io: S,
    limits: Limits,
    /// Bytes read and not yet taken as frames: no storage at rest.
    inbox: Vec<u8>,
    partial: Option<Partial>,
    /// Control frames formatted and waiting to go out, and how much of them went.
    held: Vec<u8>,
    held_sent: usize,
    out: Option<Out>,
    /// This side's close frame is written or held.
    sent_close: bool,
    /// The client's close came, or its stream ended or broke: nothing more is read.
    read_done: bool,
    /// The client's close frame came.
    got_close: bool,
    /// The socket's write side is shut (a FIN went out).
    fin: bool,
    /// Bytes were written since the last flush: a TLS stream may hold them until flushed.
    unflushed: bool,
    /// A write failed: nothing more is written.
    failed: bool,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Link<S> {
    pub fn new(io: S, limits: Limits) -> Self {
        Self {
            io,
            limits,
            inbox: Vec::new(),
            partial: None,
            held: Vec::new(),
            held_sent: 0,
            out: None,
            sent_close: false,
            read_done: false,
            got_close: false,
            fin: false,
            unflushed: false,
            failed: false,
        }
    }

    /// Nothing is being written, or waits to be.
    pub fn idle(&self) -> bool {
        self.failed || (self.out.is_none() && self.held_waiting() == 0 && !self.unflushed)
    }

    /// Whether a close frame went out (or is held to) or the client's came: nothing more is
    /// taken.
    pub fn shut(&self) -> bool {
        self.sent_close || self.got_close
    }

    /// Starts writing `frames`, after whatever is still being written.
    pub fn start(&mut self, frames: impl IntoIterator<Item = Message>) {
        if self.shut() || self.failed {
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
                && self.held_waiting() <= HELD_LIMIT
                && let Poll::Ready(frame) = self.poll_read(cx)
            {
                return Poll::Ready(Event::Read(frame));
            }
            // Reading may have answered a ping: the pong goes out now, not whenever something
            // else wakes the connection.
            if !self.idle()
                && let Poll::Ready(r) = self.poll_write(cx)
            {
                return Poll::Ready(Event::Wrote(r));
            }
            Poll::Pending
        })
    }

    /// Writes until nothing is left; for when nothing else is awaited.
    async fn flush(&mut self) -> Result<(), Error> {
        std::future::poll_fn(|cx| self.poll_write(cx)).await
    }

    /// Writes what is left, then a close frame without a code if none went either way (the
    /// answer to a client's close is already held), and writes that.
    pub async fn close(&mut self) -> Result<(), Error> {
        if self.failed {
            return Ok(());
        }
        self.flush().await?;
        if !self.sent_close && !self.read_done {
            self.hold(Frame::close(None));
            self.sent_close = true;
        }
        self.flush().await
    }

    fn held_waiting(&self) -> usize {
        self.held.len() - self.held_sent
    }

    /// Formats a control frame into `held` (nothing, once a write failed).
    fn hold(&mut self, frame: Frame) {
        if self.failed {
            return;
        }
        if let Err(e) = frame.format(&mut self.held) {
            tracing::debug!(cause = %e, "control frame not formatted");
        }
    }

    /// A control frame from the queue: formatted into `held`. Nothing follows a close.
    fn hold_message(&mut self, message: Message) {
        let frame = match message {
            Message::Ping(payload) => Frame::ping(payload),
            Message::Pong(payload) => Frame::pong(payload),
            // One close frame only: the answer to the client's may have gone already.
            Message::Close(_) if self.sent_close => {
                self.out = None;
                return;
            }
            Message::Close(close) => {
                self.sent_close = true;
                self.out = None;
                Frame::close(close)
            }
            Message::Frame(frame) => frame,
            // Data frames are written from their bytes, never held.
            Message::Text(_) | Message::Binary(_) => return,
        };
        self.hold(frame);
    }

    fn poll_write(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        if self.failed {
            return Poll::Ready(Ok(()));
        }
        let written = ready!(self.poll_write_all(cx));
        if written.is_err() {
            self.failed = true;
            self.out = None;
            self.held = Vec::new();
            self.held_sent = 0;
            self.unflushed = false;
        }
        Poll::Ready(written)
    }

    fn poll_write_all(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        loop {
            let at_boundary = self.out.as_ref().is_none_or(|out| out.done == 0);
            // Control frames go out between data frames.
            if at_boundary && self.held_waiting() > 0 {
                let n =
                    ready!(Pin::new(&mut self.io).poll_write(cx, &self.held[self.held_sent..]))?;
                if n == 0 {
                    return Poll::Ready(Err(io::Error::from(io::ErrorKind::WriteZero).into()));
                }
                self.held_sent += n;
                self.unflushed = true;
                if self.held_waiting() == 0 {
                    self.held.clear();
                    self.held_sent = 0;
                    self.held.shrink_to(HELD_KEEP);
                }
                continue;
            }
            let Some(out) = &mut self.out else {
                // Everything is written: what a TLS stream still holds goes out now, not with
                // the next frame.
                if self.unflushed {
                    ready!(Pin::new(&mut self.io).poll_flush(cx))?;
                    self.unflushed = false;
                }
                // The close handshake is over (the client's close came and ours went): this side
                // closes the TCP connection first (RFC 6455 §7.1.1), at once rather than after
                // the session's teardown, so the client does not keep the TIME_WAIT.
                if self.sent_close && self.got_close && !self.fin {
                    ready!(Pin::new(&mut self.io).poll_shutdown(cx))?;
                    self.fin = true;
                }
                return Poll::Ready(Ok(()));
            };
            let Some(front) = out.frames.front() else {
                self.out = None;
                continue;
            };
            if payload(front).is_none() {
                if let Some(control) = out.frames.pop_front() {
                    self.hold_message(control);
                }
                continue;
            }
            let n = ready!(write_gathered(&mut self.io, cx, out))?;
            if n == 0 {
                return Poll::Ready(Err(io::Error::from(io::ErrorKind::WriteZero).into()));
            }
            self.unflushed = true;
            out.advance(n);
        }
    }

    /// The client's next message (a ping, pong or close too), or None once it closed or its
    /// stream ended. After an error nothing more is read.
    fn poll_read(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Message, Error>>> {
        loop {
            if self.read_done {
                return Poll::Ready(None);
            }
            match self.next_message() {
                Ok(Some(message)) => return Poll::Ready(Some(Ok(message))),
                Ok(None) => {}
                Err(e) => {
                    self.read_done = true;
                    return Poll::Ready(Some(Err(e)));
                }
            }
            // Read onto the stack, not into `inbox`: a connection waiting for its client then
            // holds no buffer.
            let mut chunk = [0u8; READ_CHUNK];
            let mut read = ReadBuf::new(&mut chunk);
            match ready!(Pin::new(&mut self.io).poll_read(cx, &mut read)) {
                Ok(()) if read.filled().is_empty() => {
                    // Ended without a close frame: the link was lost.
                    self.read_done = true;
                    return Poll::Ready(None);
                }
                // Grown by what arrives, not by what a header announces: a client that sends a
                // header and then trickles holds no more than it sent.
                Ok(()) => self.inbox.extend_from_slice(read.filled()),
                Err(e) => {
                    self.read_done = true;
                    return Poll::Ready(Some(Err(e.into())));
                }
            }
        }
    }

    /// Takes whole frames from `inbox` until one completes a message; None if more bytes are
    /// needed.
    fn next_message(&mut self) -> Result<Option<Message>, Error> {
        loop {
            let Some((header, payload)) = self.next_frame()? else {
                return Ok(None);
            };
            let fin = header.is_final;
            match header.opcode {
                // Whole and short: checked with the header.
                OpCode::Control(control) => return self.control(control, payload).map(Some),
                OpCode::Data(data) => {
                    let partial = match (data, self.partial.take()) {
                        (Data::Continue, None) => {
                            return Err(ProtocolError::UnexpectedContinueFrame.into());
                        }
                        (Data::Continue, Some(mut partial)) => {
                            let size = partial.bytes.len() + payload.len();
                            if size > self.limits.message {
                                return Err(too_long(size, self.limits.message));
                            }
                            partial.bytes.extend_from_slice(&payload);
                            partial
                        }
                        (data, Some(_)) => return Err(ProtocolError::ExpectedFragment(data).into()),
                        (Data::Text, None) => Partial {
                            text: true,
                            bytes: payload,
                        },
                        (Data::Binary, None) => Partial {
                            text: false,
                            bytes: payload,
                        },
                        (Data::Reserved(op), None) => {
                            return Err(ProtocolError::UnknownDataFrameType(op).into());
                        }
                    };
                    if !fin {
                        self.partial = Some(partial);
                        continue;
                    }
                    return Ok(Some(if partial.text {
                        Message::Text(Utf8Bytes::from(String::from_utf8(partial.bytes)?))
                    } else {
                        Message::Binary(Bytes::from(partial.bytes))
                    }));
                }
            }
        }
    }

    /// The next whole frame in `inbox`, unmasked, taken out of it.
    fn next_frame(&mut self) -> Result<Option<(FrameHeader, Vec<u8>)>, Error> {
        let mut cursor = Cursor::new(self.inbox.as_slice());
        let Some((header, len)) = FrameHeader::parse(&mut cursor)? else {
            return Ok(None);
        };
        if header.rsv1 || header.rsv2 || header.rsv3 {
            return Err(ProtocolError::NonZeroReservedBits.into());
        }
        let Some(mask) = header.mask else {
            return Err(ProtocolError::UnmaskedFrameFromClient.into());
        };
        let len = usize::try_from(len).unwrap_or(usize::MAX);
        if let OpCode::Control(_) = header.opcode {
            if !header.is_final {
                return Err(ProtocolError::FragmentedControlFrame.into());
            }
            if len > CONTROL_MAX {
                return Err(ProtocolError::ControlFrameTooBig.into());
            }
        }
        if len > self.limits.frame {
            return Err(too_long(len, self.limits.frame));
        }
        let start = cursor.position() as usize;
        let end = start + len;
        if self.inbox.len() < end {
            return Ok(None);
        }
        let mut payload = self.inbox[start..end].to_vec();
        unmask(&mut payload, mask);
        self.inbox.drain(..end);
        if self.inbox.is_empty() {
            // Nothing kept while idle.
            self.inbox = Vec::new();
        }
        Ok(Some((header, payload)))
    }

    /// A control frame from the client: a ping is answered, a close too (unless this side
    /// closed first).
    fn control(&mut self, control: Control, payload: Vec<u8>) -> Result<Message, Error> {
        match control {
            Control::Ping => {
                let payload = Bytes::from(payload);
                if !self.sent_close {
                    self.hold(Frame::pong(payload.clone()));
                }
                Ok(Message::Ping(payload))
            }
            Control::Pong => Ok(Message::Pong(Bytes::from(payload))),
            Control::Close => {
                let close = close_frame(payload)?;
                self.read_done = true;
                self.got_close = true;
                // Nothing but the frame half written and the answer goes out after the close.
                self.cut();
                if !self.sent_close {
                    // Answered in kind: its code, or 1002 for one a client may not send.
                    let answer = close.as_ref().map(|frame| CloseFrame {
                        code: if frame.code.is_allowed() {
                            frame.code
                        } else {
                            CloseCode::Protocol
                        },
                        reason: Utf8Bytes::from_static(""),
                    });
                    self.hold(Frame::close(answer));
                    self.sent_close = true;
                }
                Ok(Message::Close(close))
            }
            Control::Reserved(op) => Err(ProtocolError::UnknownControlFrameType(op).into()),
        }
    }
}

fn too_long(size: usize, max_size: usize) -> Error {
    CapacityError::MessageTooLong { size, max_size }.into()
}

/// A close frame's code and reason (RFC 6455 §5.5.1): none, or a code and UTF-8 text.
fn close_frame(payload: Vec<u8>) -> Result<Option<CloseFrame>, Error> {
    match payload.len() {
        0 => Ok(None),
        1 => Err(ProtocolError::InvalidCloseSequence.into()),
        _ => {
            let code = CloseCode::from(u16::from_be_bytes([payload[0], payload[1]]));
            let reason = String::from_utf8(payload[2..].to_vec())?;
            Ok(Some(CloseFrame {
                code,
                reason: Utf8Bytes::from(reason),
            }))
        }
    }
}

/// Unmasks a client's payload (RFC 6455 §5.3).
fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    for (i, byte) in payload.iter_mut().enumerate() {
        *byte ^= mask[i & 3];
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
