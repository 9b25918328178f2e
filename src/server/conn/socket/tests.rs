//! The connection's task over an in-memory pipe, against a client that speaks raw frames, so
//! the tests see exactly what went on the wire (whole frames, their order, the close codes).

use super::*;
use crate::server::outbox::Outbox;
use std::{
    io::Cursor,
    sync::{Arc, Mutex},
};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream},
    task::JoinHandle,
};
use tungstenite::protocol::frame::{
    CloseFrame, Frame, FrameHeader,
    coding::{Control, Data, OpCode},
};

fn text(s: &str) -> Message {
    Message::Text(s.into())
}

/// A peer that records what the connection hands it.
struct Recording {
    outbox: Outbox,
    draining: CancellationToken,
    heard: Arc<Mutex<Vec<Message>>>,
    ended: Arc<Mutex<Option<(&'static str, Departure)>>>,
    why: Mutex<&'static str>,
    /// How long letting go takes (a store far away).
    slow_finish: Duration,
}

/// Closes the connection on a text frame saying this.
const STOP: &str = "stop";
/// Answers a text frame saying this with that many frames of `ECHO_BYTES` each.
const FLOOD: &str = "flood";
const FLOOD_FRAMES: usize = 50;
const ECHO_BYTES: usize = 3000;

impl Peer for Recording {
    fn outbox(&self) -> &Outbox {
        &self.outbox
    }
    fn draining(&self) -> &CancellationToken {
        &self.draining
    }
    fn heartbeat(&self) -> Heartbeat {
        Heartbeat {
            ping: Duration::from_secs(1),
            idle: Duration::from_millis(2500),
            drain: Duration::from_secs(3),
        }
    }
    async fn on_message(&mut self, message: Message) -> Option<Close> {
        let close = (message == text(STOP)).then_some((1008, "enough"));
        if message == text(FLOOD) {
            // More than the queue holds at once (16): only the connection's own writing, while
            // this waits, makes room.
            for i in 0..FLOOD_FRAMES {
                let body = format!("{i:03}{}", "語".repeat(ECHO_BYTES / 3 - 1));
                let _ = self.outbox.send(text(&body)).await;
            }
        }
        self.heard.lock().expect("heard").push(message);
        close
    }
    fn ended(&self, why: &'static str) {
        *self.why.lock().expect("why") = why;
    }
    async fn finish(&mut self, how: Departure, _may_return: bool) {
        tokio::time::sleep(self.slow_finish).await;
        *self.ended.lock().expect("ended") = Some((*self.why.lock().expect("why"), how));
    }
}

/// The client's end of the pipe: writes masked frames, parses what the server wrote.
struct Client {
    io: DuplexStream,
    read: Vec<u8>,
    /// The server closed its side.
    eof: bool,
}

impl Client {
    async fn send(&mut self, mut frame: Frame) {
        frame.header_mut().mask = Some([1, 2, 3, 4]);
        let mut bytes = Vec::new();
        frame.format(&mut bytes).expect("formats");
        // A server that stopped reading (closed) is fine: the pipe then says so.
        let _ = self.io.write_all(&bytes).await;
    }

    async fn text(&mut self, s: &str) {
        self.send(Frame::message(s.to_owned(), OpCode::Data(Data::Text), true))
            .await;
    }

    async fn close(&mut self, frame: Option<CloseFrame>) {
        self.send(Frame::close(frame)).await;
    }

    /// Reads what arrives within `wait`, and returns every whole frame the server wrote so far
    /// (as header and payload). Panics on bytes that are not frames.
    async fn frames(&mut self, wait: Duration) -> Vec<(FrameHeader, Vec<u8>)> {
        let mut chunk = [0u8; 4096];
        let deadline = Instant::now() + wait;
        while let Ok(Ok(n)) = tokio::time::timeout_at(deadline, self.io.read(&mut chunk)).await {
            if n == 0 {
                self.eof = true;
                break;
            }
            self.read.extend_from_slice(&chunk[..n]);
        }
        parse(&self.read)
    }
}

/// Every whole frame in `bytes`.
fn parse(bytes: &[u8]) -> Vec<(FrameHeader, Vec<u8>)> {
    let mut cursor = Cursor::new(bytes);
    let mut frames = Vec::new();
    loop {
        let start = cursor.position();
        match FrameHeader::parse(&mut cursor).expect("a frame header") {
            Some((header, len)) => {
                assert!(header.mask.is_none(), "server frames are not masked");
                let at = cursor.position() as usize;
                let Some(payload) = bytes.get(at..at + len as usize) else {
                    break;
                };
                frames.push((header, payload.to_vec()));
                cursor.set_position((at + len as usize) as u64);
            }
            None => {
                cursor.set_position(start);
                break;
            }
        }
    }
    frames
}

fn closes(frames: &[(FrameHeader, Vec<u8>)]) -> Vec<Option<u16>> {
    frames
        .iter()
        .filter(|(h, _)| h.opcode == OpCode::Control(Control::Close))
        .map(|(_, p)| (p.len() >= 2).then(|| u16::from_be_bytes([p[0], p[1]])))
        .collect()
}

fn pings(frames: &[(FrameHeader, Vec<u8>)]) -> usize {
    frames
        .iter()
        .filter(|(h, _)| h.opcode == OpCode::Control(Control::Ping))
        .count()
}

struct Connected {
    client: Client,
    heard: Arc<Mutex<Vec<Message>>>,
    ended: Arc<Mutex<Option<(&'static str, Departure)>>>,
    outbox: Outbox,
    task: JoinHandle<()>,
}

/// A connection over a pipe of `pipe` bytes each way, with the usual limits.
async fn connection(draining: CancellationToken, pipe: usize) -> Connected {
    let (server, client) = tokio::io::duplex(pipe);
    open(server, client, LIMITS, draining, Duration::ZERO)
}

/// A connection whose server side runs over `socket` (made of its end of the pipe whose other
/// end is `client`), with these limits, and a session that takes `slow_finish` to let go.
fn open<S>(
    socket: S,
    client: DuplexStream,
    limits: Limits,
    draining: CancellationToken,
    slow_finish: Duration,
) -> Connected
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let outbox = Outbox::new(16, None);
    let peer = Recording {
        outbox: outbox.clone(),
        draining,
        heard: Arc::default(),
        ended: Arc::default(),
        why: Mutex::new("?"),
        slow_finish,
    };
    let (heard, ended) = (peer.heard.clone(), peer.ended.clone());
    let task = tokio::spawn(run(Link::new(socket, limits), peer));
    Connected {
        client: Client {
            io: client,
            read: Vec::new(),
            eof: false,
        },
        heard,
        ended,
        outbox,
        task,
    }
}

const LIMITS: Limits = Limits {
    frame: 1 << 20,
    message: 1 << 20,
};

/// Limits a test can go past in a few bytes.
const TEN_BYTES: Limits = Limits {
    frame: 10,
    message: 10,
};

const WAIT: Duration = Duration::from_millis(100);

#[tokio::test(start_paused = true)]
async fn frames_reach_the_peer_and_a_client_close_is_a_clean_departure() {
    let mut c = connection(CancellationToken::new(), 4096).await;
    c.client.text("hello").await;
    c.client.send(Frame::pong(Vec::new())).await;
    c.client
        .send(Frame::message(vec![1, 2], OpCode::Data(Data::Binary), true))
        .await;
    c.client.close(None).await;
    c.task.await.expect("the task ends");
    assert_eq!(
        c.heard.lock().expect("heard").len(),
        2,
        "text and binary, not pong"
    );
    assert_eq!(
        *c.ended.lock().expect("ended"),
        Some(("client_close", Departure::Closed))
    );
    // The close is answered in kind (tungstenite's echo), and nothing else is said.
    assert_eq!(closes(&c.client.frames(WAIT).await), [None]);
}

#[tokio::test(start_paused = true)]
async fn queued_frames_go_out_whole_and_in_order_with_pings_between_them() {
    // A pipe smaller than one frame: every frame is written in several pieces.
    let mut c = connection(CancellationToken::new(), 256).await;
    let long = "語".repeat(40_000);
    c.outbox.offer(text("first"));
    c.outbox.offer(text(&long));
    c.outbox.offer(Message::Ping(Default::default()));
    c.outbox.offer(Message::Binary(vec![7; 70_000].into()));
    c.outbox.offer(text("last"));
    // The client pings meanwhile: tungstenite's pongs go out between frames, never inside one.
    for _ in 0..20 {
        c.client.send(Frame::ping(b"hi".to_vec())).await;
    }
    let frames = c.client.frames(Duration::from_secs(1)).await;
    let data: Vec<(OpCode, usize)> = frames
        .iter()
        .filter(|(h, _)| matches!(h.opcode, OpCode::Data(_)))
        .map(|(h, p)| (h.opcode, p.len()))
        .collect();
    assert_eq!(
        data,
        [
            (OpCode::Data(Data::Text), 5),
            (OpCode::Data(Data::Text), long.len()),
            (OpCode::Data(Data::Binary), 70_000),
            (OpCode::Data(Data::Text), 4),
        ],
        "whole frames, not fragments, in order"
    );
    assert!(frames.iter().all(|(h, _)| h.is_final));
    assert_eq!(frames[1].1, long.as_bytes());
    assert_eq!(pings(&frames), 1);
    let pongs: Vec<&Vec<u8>> = frames
        .iter()
        .filter(|(h, _)| h.opcode == OpCode::Control(Control::Pong))
        .map(|(_, p)| p)
        .collect();
    assert!(!pongs.is_empty(), "the client's pings were answered");
    assert!(pongs.iter().all(|p| p.as_slice() == b"hi"));
}

#[tokio::test(start_paused = true)]
async fn what_a_frame_queues_is_written_while_it_waits_for_room() {
    // The peer queues 50 frames into a queue of 16 while handling one frame: without writing
    // beside the handling, the connection would wait on itself.
    let mut c = connection(CancellationToken::new(), 1024).await;
    c.client.text(FLOOD).await;
    c.client.text("after").await;
    let frames = c.client.frames(Duration::from_secs(1)).await;
    let texts: Vec<String> = frames
        .iter()
        .filter(|(h, _)| h.opcode == OpCode::Data(Data::Text))
        .map(|(_, p)| String::from_utf8(p[..3].to_vec()).expect("utf-8"))
        .collect();
    let expected: Vec<String> = (0..FLOOD_FRAMES).map(|i| format!("{i:03}")).collect();
    assert_eq!(texts, expected);
    assert_eq!(
        *c.heard.lock().expect("heard"),
        [text(FLOOD), text("after")]
    );
}

#[tokio::test(start_paused = true)]
async fn a_peer_that_asks_to_close_gets_its_close_frame_and_is_dropped() {
    let mut c = connection(CancellationToken::new(), 4096).await;
    c.client.text(STOP).await;
    assert_eq!(closes(&c.client.frames(WAIT).await), [Some(1008)]);
    c.client.close(None).await;
    c.task.await.expect("the task ends");
    assert_eq!(
        *c.ended.lock().expect("ended"),
        Some(("policy", Departure::Dropped))
    );
}

#[tokio::test(start_paused = true)]
async fn after_its_close_the_server_reads_without_acting_until_the_client_closes_too() {
    let mut c = connection(CancellationToken::new(), 4096).await;
    c.client.text(STOP).await;
    c.client.text("ignored").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        closes(&c.client.frames(WAIT).await),
        [Some(1008)],
        "the close went out"
    );
    assert!(!c.task.is_finished(), "still reading the client's frames");
    c.client.text("ignored too").await;
    c.client.close(None).await;
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(c.task.is_finished(), "done at the client's close");
    assert_eq!(
        *c.heard.lock().expect("heard"),
        [text(STOP)],
        "nothing acted on after"
    );
}

#[tokio::test(start_paused = true)]
async fn a_client_that_never_closes_is_let_go_after_the_close_timeout() {
    let mut c = connection(CancellationToken::new(), 4096).await;
    c.client.text(STOP).await;
    tokio::time::sleep(CLOSE_TIMEOUT - Duration::from_millis(100)).await;
    assert!(!c.task.is_finished());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(c.task.is_finished());
    assert_eq!(closes(&c.client.frames(WAIT).await), [Some(1008)]);
}

#[tokio::test(start_paused = true)]
async fn pings_go_out_while_the_peer_answers_and_silence_closes_with_1001() {
    let mut c = connection(CancellationToken::new(), 64 * 1024).await;
    // Heard every 900 ms for 5 s: pinged about once a second, never timed out.
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(900)).await;
        c.client.send(Frame::pong(Vec::new())).await;
    }
    assert!(!c.task.is_finished());
    let frames = c.client.frames(Duration::ZERO).await;
    assert!(
        (3..=5).contains(&pings(&frames)),
        "{} pings",
        pings(&frames)
    );
    // Then silence: closed 2.5 s after the last frame heard (the connection then waits for the
    // client's close, at most CLOSE_TIMEOUT).
    tokio::time::sleep(Duration::from_millis(2600)).await;
    assert_eq!(
        closes(&c.client.frames(Duration::ZERO).await),
        [Some(CLOSE_GOING_AWAY)]
    );
    tokio::time::sleep(CLOSE_TIMEOUT).await;
    assert!(c.task.is_finished());
}

#[tokio::test(start_paused = true)]
async fn a_draining_node_closes_with_1012_within_the_drain_window() {
    let draining = CancellationToken::new();
    let mut c = connection(draining.clone(), 4096).await;
    draining.cancel();
    // Kept talking, so only the drain can end it; the window is 3 s.
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(800)).await;
        c.client.send(Frame::pong(Vec::new())).await;
    }
    assert_eq!(
        closes(&c.client.frames(WAIT).await),
        [Some(CLOSE_SERVICE_RESTART)]
    );
    tokio::time::sleep(CLOSE_TIMEOUT).await;
    assert!(c.task.is_finished());
}

#[tokio::test(start_paused = true)]
async fn an_oversized_frame_closes_with_1009() {
    let (server, client) = tokio::io::duplex(4096);
    let mut c = open(
        server,
        client,
        TEN_BYTES,
        CancellationToken::new(),
        Duration::ZERO,
    );
    c.client.text("more than ten bytes").await;
    assert_eq!(closes(&c.client.frames(WAIT).await), [Some(CLOSE_TOO_BIG)]);
    c.client.close(None).await;
    c.task.await.expect("the task ends");
}

#[tokio::test(start_paused = true)]
async fn a_slow_reader_closed_from_outside_gets_the_frame_begun_finished_then_1013() {
    // A pipe of 1 KiB that the client does not read: the first long frame stalls half written.
    let mut c = connection(CancellationToken::new(), 1024).await;
    let long = "x".repeat(10_000);
    c.outbox.offer(text(&long));
    c.outbox.offer(text("dropped"));
    tokio::time::sleep(WAIT).await;
    c.outbox.close.cancel();
    let frames = c.client.frames(Duration::from_secs(1)).await;
    let data: Vec<usize> = frames
        .iter()
        .filter(|(h, _)| matches!(h.opcode, OpCode::Data(_)))
        .map(|(_, p)| p.len())
        .collect();
    assert_eq!(
        data,
        [10_000],
        "the frame begun is finished, the next dropped"
    );
    assert_eq!(closes(&frames), [Some(frame::CLOSE_TRY_AGAIN)]);
}

#[tokio::test(start_paused = true)]
async fn a_refused_connection_gets_its_error_and_close_and_ends() {
    let (server, client) = tokio::io::duplex(4096);
    let link = Link::new(server, LIMITS);
    let outbox = Outbox::new(16, None);
    outbox.offer(text("refused"));
    outbox.offer(frame::close(frame::CLOSE_POLICY, "authentication failed"));
    outbox.end();
    let task = tokio::spawn(refuse(link, outbox));
    let mut client = Client {
        io: client,
        read: Vec::new(),
        eof: false,
    };
    let frames = client.frames(WAIT).await;
    assert_eq!(frames[0].1, b"refused");
    assert_eq!(closes(&frames), [Some(frame::CLOSE_POLICY)]);
    client.close(None).await;
    task.await.expect("the task ends");
}

/// A client frame, masked, as bytes.
fn wire(mut frame: Frame) -> Vec<u8> {
    frame.header_mut().mask = Some([9, 8, 7, 6]);
    let mut bytes = Vec::new();
    frame.format(&mut bytes).expect("formats");
    bytes
}

fn fragment(payload: &[u8], opcode: OpCode, fin: bool) -> Vec<u8> {
    wire(any_frame(payload, opcode, fin))
}

/// Any frame, control frames that break the rules too.
fn any_frame(payload: &[u8], opcode: OpCode, fin: bool) -> Frame {
    let header = FrameHeader {
        is_final: fin,
        opcode,
        ..FrameHeader::default()
    };
    Frame::from_payload(header, payload.to_vec().into())
}

#[tokio::test(start_paused = true)]
async fn fragments_with_a_ping_between_them_arrive_as_one_message_read_in_small_pieces() {
    // A pipe of 64 bytes: the frames arrive over many reads.
    let mut c = connection(CancellationToken::new(), 64).await;
    let text = "語".repeat(300);
    let (a, b) = text.as_bytes().split_at(400); // inside a character: only the message is UTF-8
    let mut bytes = fragment(a, OpCode::Data(Data::Text), false);
    bytes.extend(wire(Frame::ping(b"between".to_vec())));
    bytes.extend(fragment(b, OpCode::Data(Data::Continue), true));
    bytes.extend(fragment(&[1, 2, 3], OpCode::Data(Data::Binary), true));
    let _ = c.client.io.write_all(&bytes).await;
    let frames = c.client.frames(WAIT).await;
    assert_eq!(
        *c.heard.lock().expect("heard"),
        [
            Message::Text(text.into()),
            Message::Binary(vec![1, 2, 3].into())
        ]
    );
    let pongs: Vec<&Vec<u8>> = frames
        .iter()
        .filter(|(h, _)| h.opcode == OpCode::Control(Control::Pong))
        .map(|(_, p)| p)
        .collect();
    assert_eq!(pongs, [b"between"]);
}

#[tokio::test(start_paused = true)]
async fn frames_that_break_the_protocol_close_with_1002_or_1009() {
    let unmasked = {
        let mut bytes = Vec::new();
        Frame::message(b"hi".to_vec(), OpCode::Data(Data::Text), true)
            .format(&mut bytes)
            .expect("formats");
        bytes
    };
    let reserved_bit = {
        let mut bytes = fragment(b"hi", OpCode::Data(Data::Text), true);
        bytes[0] |= 0x40;
        bytes
    };
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("unmasked", unmasked, CLOSE_PROTOCOL_ERROR),
        ("a reserved bit", reserved_bit, CLOSE_PROTOCOL_ERROR),
        (
            "a continuation with nothing to continue",
            fragment(b"hi", OpCode::Data(Data::Continue), true),
            CLOSE_PROTOCOL_ERROR,
        ),
        (
            "a new message inside a fragmented one",
            [
                fragment(b"a", OpCode::Data(Data::Text), false),
                fragment(b"b", OpCode::Data(Data::Text), true),
            ]
            .concat(),
            CLOSE_PROTOCOL_ERROR,
        ),
        (
            "text that is not UTF-8",
            fragment(&[0xff, 0xfe], OpCode::Data(Data::Text), true),
            CLOSE_PROTOCOL_ERROR,
        ),
        (
            "a fragmented ping",
            fragment(b"p", OpCode::Control(Control::Ping), false),
            CLOSE_PROTOCOL_ERROR,
        ),
        (
            "a ping over 125 bytes",
            wire(Frame::ping(vec![0; 126])),
            CLOSE_PROTOCOL_ERROR,
        ),
        (
            "a frame over the limit",
            fragment(&[b'x'; 11], OpCode::Data(Data::Binary), true),
            CLOSE_TOO_BIG,
        ),
        (
            "a message over the limit in fragments",
            [
                fragment(b"123456", OpCode::Data(Data::Text), false),
                fragment(b"789012", OpCode::Data(Data::Continue), true),
            ]
            .concat(),
            CLOSE_TOO_BIG,
        ),
    ];
    for (what, bytes, code) in cases {
        let (server, client) = tokio::io::duplex(4096);
        let mut c = open(
            server,
            client,
            TEN_BYTES,
            CancellationToken::new(),
            Duration::ZERO,
        );
        let _ = c.client.io.write_all(&bytes).await;
        assert_eq!(closes(&c.client.frames(WAIT).await), [Some(code)], "{what}");
        assert!(
            c.heard.lock().expect("heard").is_empty(),
            "{what}: nothing acted on"
        );
        c.client.close(None).await;
        c.task.await.expect("the task ends");
    }
}

#[tokio::test(start_paused = true)]
async fn a_close_with_a_code_a_client_may_not_send_is_answered_with_1002() {
    let mut c = connection(CancellationToken::new(), 4096).await;
    let mut payload = 1005u16.to_be_bytes().to_vec();
    payload.extend_from_slice(b"no");
    c.client
        .send(any_frame(&payload, OpCode::Control(Control::Close), true))
        .await;
    c.task.await.expect("the task ends");
    assert_eq!(
        closes(&c.client.frames(WAIT).await),
        [Some(CLOSE_PROTOCOL_ERROR)]
    );
}

#[tokio::test(start_paused = true)]
async fn after_a_client_close_the_server_closes_the_tcp_connection_first_and_at_once() {
    // The session takes a second to let go; the answer to the close and the FIN do not wait for
    // it, so the client is not the one left holding the TIME_WAIT (RFC 6455 section 7.1.1).
    let (server, client) = tokio::io::duplex(4096);
    let mut c = open(
        server,
        client,
        LIMITS,
        CancellationToken::new(),
        Duration::from_secs(1),
    );
    c.client.close(None).await;
    let frames = c.client.frames(WAIT).await;
    assert_eq!(closes(&frames), [None]);
    assert!(c.client.eof, "the server shut its side at once");
    assert!(!c.task.is_finished(), "while the session still lets go");
    c.task.await.expect("the task ends");
}

#[tokio::test(start_paused = true)]
async fn closed_from_outside_while_a_frame_waits_for_room_the_connection_still_ends() {
    // The client reads nothing, so the flood's sends wait for room; then the connection is
    // closed from outside (as a slow reader is). The waiting handler is let go.
    let mut c = connection(CancellationToken::new(), 64).await;
    c.client.text(FLOOD).await;
    tokio::time::sleep(WAIT).await;
    assert!(!c.task.is_finished());
    c.outbox.close.cancel();
    let ended = tokio::time::timeout(CLOSE_TIMEOUT * 3, c.task).await;
    assert!(ended.is_ok(), "the connection ended");
}

/// A socket that holds what is written until it is flushed, as a TLS stream does.
struct Holding {
    inner: DuplexStream,
    held: Vec<u8>,
}

impl AsyncRead for Holding {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Holding {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.held.extend_from_slice(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = &mut *self;
        while !this.held.is_empty() {
            let n =
                std::task::ready!(std::pin::Pin::new(&mut this.inner).poll_write(cx, &this.held))?;
            this.held.drain(..n);
        }
        std::pin::Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[tokio::test(start_paused = true)]
async fn what_a_socket_holds_until_flushed_goes_out_with_the_batch() {
    let (server, client) = tokio::io::duplex(4096);
    let holding = Holding {
        inner: server,
        held: Vec::new(),
    };
    let mut c = open(
        holding,
        client,
        LIMITS,
        CancellationToken::new(),
        Duration::ZERO,
    );
    c.outbox.offer(text("hello"));
    let frames = c.client.frames(WAIT).await;
    assert_eq!(frames.len(), 1, "the frame was flushed");
    assert_eq!(frames[0].1, b"hello");
}
