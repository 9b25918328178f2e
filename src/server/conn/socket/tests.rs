use super::*;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;

fn frames(text: &str) -> Vec<Frame> {
    fragments(Bytes::copy_from_slice(text.as_bytes()))
        .map(|m| match m {
            Message::Frame(f) => f,
            other => panic!("not a frame: {other:?}"),
        })
        .collect()
}

#[test]
fn a_long_text_goes_out_as_one_text_fragment_then_continuations_ending_in_fin() {
    // Three-byte characters, so fragment boundaries fall inside them.
    let text = "語".repeat(1000);
    let frames = frames(&text);
    assert_eq!(frames.len(), 3000usize.div_ceil(FRAGMENT));
    assert_eq!(frames[0].header().opcode, OpCode::Data(Data::Text));
    assert!(
        frames[1..]
            .iter()
            .all(|f| f.header().opcode == OpCode::Data(Data::Continue))
    );
    let fins: Vec<bool> = frames.iter().map(|f| f.header().is_final).collect();
    assert_eq!(fins, [false, false, true]);
    assert!(frames.iter().all(|f| f.payload().len() <= FRAGMENT));
    let joined: Vec<u8> = frames.iter().flat_map(|f| f.payload().to_vec()).collect();
    assert_eq!(joined, text.as_bytes());
}

/// What an in-memory sink was sent, and how many times it was flushed.
#[derive(Default)]
struct Wire {
    sent: Vec<Message>,
    flushes: usize,
    closed: bool,
}

/// A sink that records into `wire`.
fn sink(wire: Arc<Mutex<Wire>>) -> impl Sink<Message, Error = tungstenite::Error> + Unpin {
    struct Recorder(Arc<Mutex<Wire>>);
    impl Sink<Message> for Recorder {
        type Error = tungstenite::Error;
        fn poll_ready(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), Self::Error>> {
            std::task::Poll::Ready(Ok(()))
        }
        fn start_send(self: std::pin::Pin<&mut Self>, item: Message) -> Result<(), Self::Error> {
            self.0.lock().expect("wire").sent.push(item);
            Ok(())
        }
        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), Self::Error>> {
            self.0.lock().expect("wire").flushes += 1;
            std::task::Poll::Ready(Ok(()))
        }
        fn poll_close(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), Self::Error>> {
            self.0.lock().expect("wire").closed = true;
            std::task::Poll::Ready(Ok(()))
        }
    }
    Recorder(wire)
}

fn text(s: &str) -> Message {
    Message::Text(s.into())
}

#[tokio::test]
async fn the_writer_sends_a_batch_with_one_flush_and_closes_once_the_queue_ends() {
    let wire = Arc::new(Mutex::new(Wire::default()));
    let outbox = Outbox::new(16, None);
    for s in ["a", "b", "c"] {
        assert!(outbox.offer(text(s)));
    }
    outbox.offer(text(&"x".repeat(FRAGMENT * 2 + 1)));
    outbox.end();
    write_loop(sink(wire.clone()), &outbox).await;
    let wire = wire.lock().expect("wire");
    assert_eq!(wire.flushes, 1, "one batch, one flush");
    assert_eq!(
        wire.sent.len(),
        3 + 3,
        "three texts, then a long one in three fragments"
    );
    assert_eq!(wire.sent[0], text("a"));
    assert!(wire.closed);
}

#[tokio::test]
async fn nothing_follows_a_close_frame_and_a_closed_outbox_says_reconnect() {
    let wire = Arc::new(Mutex::new(Wire::default()));
    let outbox = Outbox::new(16, None);
    outbox.offer(text("bye"));
    outbox.offer(frame::close(CLOSE_GOING_AWAY, "idle timeout"));
    outbox.offer(text("never"));
    write_loop(sink(wire.clone()), &outbox).await;
    assert_eq!(wire.lock().expect("wire").sent.len(), 2);

    let wire = Arc::new(Mutex::new(Wire::default()));
    let outbox = Outbox::new(16, None);
    outbox.close.cancel();
    write_loop(sink(wire.clone()), &outbox).await;
    let sent = &wire.lock().expect("wire").sent;
    assert!(
        matches!(&sent[..], [Message::Close(Some(c))] if u16::from(c.code) == frame::CLOSE_TRY_AGAIN),
        "{sent:?}"
    );
}

/// A peer that records what the reader hands it.
struct Recording {
    outbox: Outbox,
    draining: CancellationToken,
    heard: Arc<Mutex<Vec<Message>>>,
    ended: Arc<Mutex<Option<(&'static str, Departure)>>>,
    why: Mutex<&'static str>,
    /// Closes the connection on a text frame saying this.
    close_on: &'static str,
}

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
        let close = (message == text(self.close_on)).then_some((1008, "enough"));
        self.heard.lock().expect("heard").push(message);
        close
    }
    fn ended(&self, why: &'static str) {
        *self.why.lock().expect("why") = why;
    }
    async fn finish(&mut self, how: Departure, _may_return: bool) {
        *self.ended.lock().expect("ended") = Some((*self.why.lock().expect("why"), how));
    }
}

/// A reader over an in-memory stream, its writer recording into a wire. Returns the stream's
/// sender, the peer's records, the wire and the reader's task.
#[allow(clippy::type_complexity)]
fn connection(
    draining: CancellationToken,
) -> (
    mpsc::UnboundedSender<Result<Message, tungstenite::Error>>,
    Arc<Mutex<Vec<Message>>>,
    Arc<Mutex<Option<(&'static str, Departure)>>>,
    Arc<Mutex<Wire>>,
    JoinHandle<()>,
) {
    let (tx, mut rx) = mpsc::unbounded_channel();
    let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    let outbox = Outbox::new(16, None);
    let wire = Arc::new(Mutex::new(Wire::default()));
    let writer = {
        let (outbox, wire) = (outbox.clone(), wire.clone());
        tokio::spawn(async move { write_loop(sink(wire), &outbox).await })
    };
    let peer = Recording {
        outbox,
        draining,
        heard: Arc::default(),
        ended: Arc::default(),
        why: Mutex::new("?"),
        close_on: "stop",
    };
    let (heard, ended) = (peer.heard.clone(), peer.ended.clone());
    let reader = tokio::spawn(read_loop(stream, peer, writer));
    (tx, heard, ended, wire, reader)
}

fn closes(wire: &Mutex<Wire>) -> Vec<u16> {
    (wire.lock().expect("wire").sent.iter())
        .filter_map(|m| match m {
            Message::Close(Some(c)) => Some(u16::from(c.code)),
            _ => None,
        })
        .collect()
}

fn pings(wire: &Mutex<Wire>) -> usize {
    (wire.lock().expect("wire").sent.iter())
        .filter(|m| matches!(m, Message::Ping(_)))
        .count()
}

#[tokio::test(start_paused = true)]
async fn frames_reach_the_peer_and_a_client_close_is_a_clean_departure() {
    let (tx, heard, ended, wire, reader) = connection(CancellationToken::new());
    tx.send(Ok(text("hello"))).expect("open");
    tx.send(Ok(Message::Pong(Default::default())))
        .expect("open");
    tx.send(Ok(Message::Binary(vec![1, 2].into())))
        .expect("open");
    tx.send(Ok(Message::Close(None))).expect("open");
    reader.await.expect("the reader ends");
    assert_eq!(
        heard.lock().expect("heard").len(),
        2,
        "text and binary, not pong"
    );
    assert_eq!(
        *ended.lock().expect("ended"),
        Some(("client_close", Departure::Closed))
    );
    assert!(
        closes(&wire).is_empty(),
        "nothing to say to a client that closed"
    );
}

#[tokio::test(start_paused = true)]
async fn a_peer_that_asks_to_close_gets_its_close_frame_and_is_dropped() {
    let (tx, _, ended, wire, reader) = connection(CancellationToken::new());
    tx.send(Ok(text("stop"))).expect("open");
    reader.await.expect("the reader ends");
    assert_eq!(closes(&wire), [1008]);
    assert_eq!(
        *ended.lock().expect("ended"),
        Some(("policy", Departure::Dropped))
    );
}

#[tokio::test(start_paused = true)]
async fn after_its_close_the_server_reads_without_acting_until_the_client_closes_too() {
    let (tx, heard, _, wire, reader) = connection(CancellationToken::new());
    tx.send(Ok(text("stop"))).expect("open");
    tx.send(Ok(text("ignored"))).expect("open");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(closes(&wire), [1008], "the close went out");
    assert!(!reader.is_finished(), "still reading the client's frames");
    tx.send(Ok(text("ignored too"))).expect("open");
    tx.send(Ok(Message::Close(None))).expect("open");
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert!(reader.is_finished(), "done at the client's close");
    assert_eq!(
        *heard.lock().expect("heard"),
        [text("stop")],
        "nothing acted on after"
    );
}

#[tokio::test(start_paused = true)]
async fn a_client_that_never_closes_is_let_go_after_the_close_timeout() {
    let (tx, _, _, wire, reader) = connection(CancellationToken::new());
    tx.send(Ok(text("stop"))).expect("open");
    tokio::time::sleep(CLOSE_TIMEOUT - Duration::from_millis(100)).await;
    assert!(!reader.is_finished());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(reader.is_finished());
    assert_eq!(closes(&wire), [1008]);
}

#[tokio::test(start_paused = true)]
async fn pings_go_out_while_the_peer_answers_and_silence_closes_with_1001() {
    let (tx, _, _, wire, reader) = connection(CancellationToken::new());
    // Heard every 900 ms for 5 s: pinged about once a second, never timed out.
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(900)).await;
        tx.send(Ok(Message::Pong(Default::default())))
            .expect("open");
    }
    assert!(!reader.is_finished());
    assert!((3..=5).contains(&pings(&wire)), "{} pings", pings(&wire));
    // Then silence: closed 2.5 s after the last frame heard (the reader then waits for the
    // client's close, at most CLOSE_TIMEOUT).
    tokio::time::sleep(Duration::from_millis(2600)).await;
    assert_eq!(closes(&wire), [CLOSE_GOING_AWAY]);
    tokio::time::sleep(CLOSE_TIMEOUT).await;
    assert!(reader.is_finished());
}

#[tokio::test(start_paused = true)]
async fn a_draining_node_closes_with_1012_within_the_drain_window() {
    let draining = CancellationToken::new();
    let (tx, _, _, wire, reader) = connection(draining.clone());
    draining.cancel();
    // Kept talking, so only the drain can end it; the window is 3 s.
    for _ in 0..4 {
        tokio::time::sleep(Duration::from_millis(800)).await;
        let _ = tx.send(Ok(Message::Pong(Default::default())));
    }
    assert_eq!(closes(&wire), [CLOSE_SERVICE_RESTART]);
    tokio::time::sleep(CLOSE_TIMEOUT).await;
    assert!(reader.is_finished());
}

#[tokio::test(start_paused = true)]
async fn an_oversized_frame_closes_with_1009() {
    let (tx, _, _, wire, reader) = connection(CancellationToken::new());
    tx.send(Err(tungstenite::Error::Capacity(
        tungstenite::error::CapacityError::MessageTooLong {
            size: 2,
            max_size: 1,
        },
    )))
    .expect("open");
    reader.await.expect("the reader ends");
    assert_eq!(closes(&wire), [CLOSE_TOO_BIG]);
}
