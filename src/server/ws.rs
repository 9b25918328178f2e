//! One WebSocket connection: a reader that runs the protocol and a writer that drains the
//! connection's bounded queue (`Outbox`), flushing once per batch.
//!
//! The HTTP upgrade is axum's and hyper's; the WebSocket on top of it is tokio-tungstenite, used
//! directly rather than through axum's `WebSocket` because a frame larger than [`FRAGMENT`] must
//! go out as fragments: tungstenite keeps its write buffer at the size of the largest frame it
//! ever wrote, for the connection's whole life, and a `joined` with a full history of long
//! messages is 100 KB and more.

use super::{
    AppState,
    auth::Identity,
    config::Config,
    guard::{FrameKind, FrameLimits, Ticket, Verdict},
    hub::{CLOSE_TRY_AGAIN, Hub, Outbox, encode},
    metrics::{Metrics, close_reason},
    store::{ConnId, Departure, Member, SessionId, Store, StoreError},
};
use crate::protocol::{
    ClientMsg, ErrorCode, Invalid, Limits, MAX_NAME_CHARS, MessageText, PROTOCOL_VERSION, Position,
    RoomName, ServerMsg, UserName, decode_client, parse_client_id,
};
use axum::{
    body::Body,
    extract::{ConnectInfo, Request, State},
    http::{HeaderMap, Method, StatusCode, header},
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use futures_util::{
    SinkExt, StreamExt,
    stream::{SplitSink, SplitStream},
};
use rand::Rng;
use std::{collections::VecDeque, sync::Arc, time::Duration};
use tokio::{task::JoinHandle, time::Instant};
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use tungstenite::{
    Message, Utf8Bytes,
    handshake::derive_accept_key,
    protocol::{
        CloseFrame, Role, WebSocketConfig,
        frame::{
            Frame,
            coding::{Data, OpCode},
        },
    },
};

type WebSocket = WebSocketStream<hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>>;

/// Close codes (RFC 6455 §7.4.1).
const CLOSE_GOING_AWAY: u16 = 1001;
const CLOSE_PROTOCOL_ERROR: u16 = 1002;
/// "Policy violation": kept on sending past the rate limits.
const CLOSE_POLICY: u16 = 1008;
const CLOSE_TOO_BIG: u16 = 1009;
/// "Service restart": this node is going away; reconnect (another node will answer).
const CLOSE_SERVICE_RESTART: u16 = 1012;

/// Text messages longer than this are sent as fragments of this size, so that tungstenite's
/// write buffer, which never shrinks, holds at most `WRITE_BUFFER` plus one fragment.
const FRAGMENT: usize = 1024;
/// Bytes tungstenite buffers before it writes on its own; a batch is flushed explicitly anyway.
/// Its buffer never shrinks, so this (plus the largest frame) is what a connection keeps after a
/// burst: 8 KiB cost about 3 KB per connection after the six-node join storm.
const WRITE_BUFFER: usize = 2 * 1024;
/// Initial read buffer per connection. The library default (128 KiB) would cost more per idle
/// connection than everything else together; larger frames grow it as needed.
const READ_BUFFER: usize = 256;
/// How long a closing connection may take to get its close frame out.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

pub async fn upgrade(State(app): State<AppState>, mut req: Request) -> Response {
    // A node that cannot serve (shutting down, Redis unreachable) refuses new connections, so a
    // balancer retries them on another node and clients back off and come again.
    if app.shutdown.is_cancelled() || !app.store.accepting() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "this node cannot serve now; try another",
        )
            .into_response();
    }
    let accept = match accept_key(req.method(), req.headers()) {
        Ok(accept) => accept,
        Err(why) => return (StatusCode::BAD_REQUEST, why).into_response(),
    };
    // A page of another site must not open a connection with its visitor's browser.
    let gate = &app.gate;
    let admitted = if gate.origin_allowed(req.headers()) {
        // Without connect info (a router served without it) every client is one address.
        let peer = req
            .extensions()
            .get::<ConnectInfo<std::net::SocketAddr>>()
            .map_or(std::net::Ipv4Addr::UNSPECIFIED.into(), |c| c.0.ip());
        gate.admit(gate.client_address(peer, req.headers()))
    } else {
        Err(super::guard::Refusal::Origin)
    };
    let ticket = match admitted {
        Ok(ticket) => ticket,
        Err(refusal) => {
            tracing::debug!(?refusal, "websocket upgrade refused");
            let mut response = (refusal.status(), refusal.reason()).into_response();
            if let Some(secs) = refusal.retry_after_secs() {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, secs.into());
            }
            return response;
        }
    };
    // With signed identity, the token is checked now; a refusal is told over the socket, where
    // a browser can read it.
    let identity = app
        .verifier
        .as_ref()
        .map(|v| v.verify(super::auth::token_of(req.headers(), req.uri())));
    let Some(on_upgrade) = req.extensions_mut().remove::<hyper::upgrade::OnUpgrade>() else {
        return (
            StatusCode::UPGRADE_REQUIRED,
            "this connection cannot be upgraded",
        )
            .into_response();
    };
    let max = app.config.max_frame_bytes;
    // No max_write_buffer_size: it also caps the largest frame we can send, and a `joined` with
    // a full history of long messages is over a megabyte. What waits to be written is bounded by
    // the connection's queue (`outbound_queue` frames) instead.
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_message_size(Some(max))
        .max_frame_size(Some(max));
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                let io = hyper_util::rt::TokioIo::new(upgraded);
                let socket = WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await;
                // This task ends here, and its state with it; the connection lives on in the
                // tasks `start` spawns.
                start(socket, &app, ticket, identity);
            }
            Err(e) => tracing::debug!(cause = %e, "websocket upgrade failed"),
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, "websocket")
        .header(header::SEC_WEBSOCKET_ACCEPT, accept)
        .body(Body::empty())
        .unwrap_or_else(|e| {
            tracing::error!(cause = %e, "cannot build the upgrade response");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        })
}

/// Checks a WebSocket opening handshake (RFC 6455 §4.2.1, HTTP/1.1 only) and returns the
/// `Sec-WebSocket-Accept` value for it.
fn accept_key(method: &Method, headers: &HeaderMap) -> Result<String, &'static str> {
    let has = |name: header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|value| {
            value
                .to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    if method != Method::GET {
        return Err("a websocket handshake is a GET request");
    }
    if !has(header::CONNECTION, "upgrade") || !has(header::UPGRADE, "websocket") {
        return Err("expected Connection: upgrade and Upgrade: websocket");
    }
    if !has(header::SEC_WEBSOCKET_VERSION, "13") {
        return Err("only websocket version 13 is supported");
    }
    let key = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .ok_or("Sec-WebSocket-Key is missing")?;
    Ok(derive_accept_key(key.as_bytes()))
}

/// Starts a connection's two tasks: the writer, and the reader that runs the protocol. Done
/// outside any async fn, so that what is moved into the tasks (the socket above all) is not kept
/// a second time inside a future for the connection's whole life.
fn start(
    socket: WebSocket,
    app: &AppState,
    ticket: Ticket,
    identity: Option<Result<Identity, Invalid>>,
) {
    let conn_id: ConnId = random_id().into();
    // Every log line of the connection carries it; the name is filled in once it is known
    // (never the session, a bearer secret).
    let span = tracing::info_span!(
        parent: None,
        "conn",
        node = %app.node_id,
        conn = %conn_id,
        user = tracing::field::Empty
    );
    let (sink, stream) = socket.split();
    let outbox = Outbox::new(
        app.config.outbound_queue,
        Some(app.metrics.outbound_depth.clone()),
    );
    let writer_size;
    let writer = {
        let outbox = outbox.clone();
        let writer = async move {
            write_loop(sink, &outbox).await;
            // Whatever is queued from now on would never be written.
            outbox.writer_gone();
        };
        writer_size = std::mem::size_of_val(&writer);
        tokio::spawn(writer.instrument(span.clone()))
    };
    let identity = match identity {
        Some(Err(refused)) => {
            // No chat without a valid token: say why, close (1008), and read nothing.
            tracing::debug!(code = %refused.code, "token refused");
            outbox.offer(encode(&refused.into()));
            outbox.offer(close_frame(CLOSE_POLICY, "authentication failed"));
            outbox.end();
            return;
        }
        Some(Ok(identity)) => Some(identity),
        None => None,
    };
    let conn = Connection {
        // A signed-in user's connections share one session, on every node.
        session: identity
            .as_ref()
            .map_or_else(random_id, |id| id.session())
            .into(),
        conn: conn_id,
        name: None,
        bound: identity.map(|id| id.name),
        rooms: Vec::new(),
        outbox,
        limits: FrameLimits::default(),
        _ticket: ticket,
        node: Node {
            config: app.config.clone(),
            metrics: app.metrics.clone(),
            store: app.store.clone(),
            hub: app.hub.clone(),
            shutdown: app.shutdown.clone(),
        },
    };
    // The queue is empty yet: offering cannot fail or wait.
    conn.outbox.offer(encode(&ServerMsg::Welcome {
        session: conn.session.to_string(),
        node: app.node_id.to_string(),
        protocol: PROTOCOL_VERSION,
        limits: Limits {
            max_name_chars: MAX_NAME_CHARS,
            max_text_chars: app.config.max_text_chars,
            max_frame_bytes: app.config.max_frame_bytes,
            max_rooms_per_connection: app.config.max_rooms_per_connection,
            sends: app.config.send_rate(),
            bytes: app.config.byte_rate(),
        },
        ping_interval_ms: app.config.ping_interval_ms,
        name: conn.bound.as_ref().map(|n| n.to_string()),
    }));
    app.metrics.connections_opened.inc();
    let reader = serve(stream, conn, writer);
    // What each connection costs at rest is mostly these two futures (see BENCHMARKS.md).
    tracing::trace!(
        reader_bytes = std::mem::size_of_val(&reader),
        writer_bytes = writer_size,
        "connection started"
    );
    // Tracked, so a draining server knows when its last connection has gone.
    app.connections.spawn(reader.instrument(span));
}

/// 128 random bits in hex: session and connection ids. A session id is a bearer secret (it
/// resumes a name), so it must not be guessable.
fn random_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// What a client is told when the store could not do what it asked: the one place where storage
/// outcomes become wire error codes and sentences. An unavailable store is logged at debug level
/// only (one line per refused request would flood the log during an outage, which the bus and the
/// readiness check already report once); `chorus_errors_sent_total{code="internal"}` counts them.
impl From<StoreError> for Invalid {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(cause) => {
                tracing::debug!(%cause, "store unavailable: request refused");
                Invalid::new(
                    ErrorCode::Internal,
                    "the chat store is unreachable; try again shortly",
                )
            }
            StoreError::NameTaken(name) => Invalid::new(
                ErrorCode::NameTaken,
                format!("the name {name} is taken; pick another"),
            ),
            StoreError::CreationLimited => Invalid::new(
                ErrorCode::TooManyRooms,
                "you opened many new rooms just now; join an existing one or wait a minute",
            ),
            StoreError::RoomsFull => Invalid::new(
                ErrorCode::TooManyRooms,
                "the server holds as many rooms as it may; join an existing one",
            ),
            StoreError::NotInRoom => Invalid::new(ErrorCode::NotInRoom, "join the room first"),
        }
    }
}

/// A session id as `resume` may name it: what `random_id` makes.
fn parse_session(raw: &str) -> Result<SessionId, Invalid> {
    if raw.len() == 32 && raw.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(raw.to_ascii_lowercase().into())
    } else {
        Err(Invalid::new(
            ErrorCode::UnknownSession,
            "no such session; carry on with the one in welcome",
        ))
    }
}

fn close_frame(code: u16, reason: &'static str) -> Message {
    Message::Close(Some(CloseFrame {
        code: code.into(),
        reason: Utf8Bytes::from_static(reason),
    }))
}

/// What a connection needs of its node: a few shared handles rather than the whole `AppState`,
/// which every idle connection would hold a copy of.
struct Node {
    config: Arc<Config>,
    metrics: Arc<Metrics>,
    store: Arc<dyn Store>,
    hub: Arc<Hub>,
    /// Cancelled when the node begins to drain.
    shutdown: CancellationToken,
}

struct Connection {
    node: Node,
    /// The user's session: this connection's own, or an earlier one taken over by `resume`.
    session: SessionId,
    conn: ConnId,
    name: Option<UserName>,
    /// With signed identity: the only name this connection may take.
    bound: Option<UserName>,
    /// Rooms joined, in join order; a handful at most, so a Vec beats a set.
    rooms: Vec<RoomName>,
    outbox: Outbox,
    limits: FrameLimits,
    /// This connection's place on the node, given back when it ends.
    _ticket: Ticket,
}

/// The connection's reader: runs the protocol until the connection ends, then leaves its rooms
/// and waits for the writer to finish.
// Not an `async fn` on purpose (see below), whatever clippy prefers.
#[allow(clippy::manual_async_fn)]
fn serve(
    mut stream: SplitStream<WebSocket>,
    mut conn: Connection,
    writer: JoinHandle<()>,
) -> impl Future<Output = ()> {
    // A plain fn around an `async move` block: the block uses what it captured in place, where
    // an `async fn` would keep its arguments and their moved copies side by side.
    async move {
        let close = conn.outbox.close.clone();
        let draining = conn.node.shutdown.clone();
        let mut timers = Timers::new(&conn.node.config);
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
                    timers.leave_at = Some(drain_moment(&conn.node.config));
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
                            conn.outbox.offer(Message::Ping(Default::default()));
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
                Some(Ok(Message::Close(_))) => {
                    departure = Departure::Closed;
                    break;
                }
                None => break,
                Some(Err(e)) => {
                    close_with = Some(read_error_close(e));
                    break;
                }
            };
            // The message moves into the boxed handler: across the await the connection's
            // future holds one pointer, not the frame.
            if let Some(close) = Box::pin(conn.on_message(message)).await {
                close_with = Some(close);
                break;
            }
        }
        Box::pin(async move {
            let why = match (&close_with, &departure) {
                (Some((code, _)), _) => close_reason(*code),
                (None, Departure::Closed) => "client_close",
                (None, _) if conn.outbox.overflowed() => "slow_reader",
                (None, _) => "dropped",
            };
            conn.node.metrics.closed(why);
            if let Some((code, reason)) = close_with {
                conn.closing(code, reason).await;
            }
            conn.finish(departure).await;
            // Every room has let go of the connection: the writer sends what is queued, then
            // closes.
            conn.outbox.end();
            drop(conn);
            if tokio::time::timeout(CLOSE_TIMEOUT, writer).await.is_err() {
                tracing::debug!("writer did not finish in time");
            }
        })
        .await;
    }
}

/// When a draining node closes this connection: a random moment within `drain_ms`, so that
/// thousands of clients do not all reconnect to the other nodes at the same instant.
fn drain_moment(config: &Config) -> Instant {
    let window = config.drain_ms;
    let delay = if window == 0 {
        0
    } else {
        rand::thread_rng().gen_range(0..window)
    };
    Instant::now() + Duration::from_millis(delay)
}

/// What a connection's timer may be due for.
enum Due {
    /// The node drains and this connection's moment to go elsewhere came.
    Leave,
    /// Nothing at all was heard from the peer for `idle_timeout_ms`.
    IdleTimeout,
    /// Time for the next WebSocket ping.
    Ping,
    Nothing,
}

/// A connection's deadlines. It keeps alive through balancers and finds dead peers with a
/// WebSocket ping every `ping_interval_ms` and a close when nothing at all was heard for
/// `idle_timeout_ms` (a live peer answers every ping with a pong); while the node drains, it
/// also holds the moment this connection is sent elsewhere.
struct Timers {
    every: Duration,
    patience: Duration,
    next_ping: Instant,
    last_heard: Instant,
    leave_at: Option<Instant>,
}

impl Timers {
    fn new(config: &Config) -> Self {
        let now = Instant::now();
        let every = Duration::from_millis(config.ping_interval_ms);
        Self {
            every,
            patience: Duration::from_millis(config.idle_timeout_ms),
            next_ping: now + every,
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
}

/// Maps a read failure to the close the peer should get.
fn read_error_close(e: tungstenite::Error) -> (u16, &'static str) {
    match e {
        tungstenite::Error::Capacity(_) => (CLOSE_TOO_BIG, "frame too large"),
        tungstenite::Error::Protocol(_) | tungstenite::Error::Utf8(_) => {
            (CLOSE_PROTOCOL_ERROR, "protocol error")
        }
        other => {
            tracing::debug!(cause = %other, "read failed");
            (CLOSE_PROTOCOL_ERROR, "read failed")
        }
    }
}

async fn write_loop(mut sink: SplitSink<WebSocket, Message>, outbox: &Outbox) {
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
    let bye = sink.send(close_frame(CLOSE_TRY_AGAIN, "reconnect"));
    let _ = Box::pin(tokio::time::timeout(CLOSE_TIMEOUT, bye)).await;
}

/// Writes a batch with one flush. Returns false after a close frame.
async fn write_batch(
    sink: &mut SplitSink<WebSocket, Message>,
    batch: &mut VecDeque<Message>,
) -> Result<bool, tungstenite::Error> {
    let mut open = true;
    for frame in batch.drain(..) {
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

impl Connection {
    /// Queues a reply to this client, waiting if its queue is full: a client that does not read
    /// its answers stops being read from.
    async fn reply(&self, msg: ServerMsg) {
        let _ = self.outbox.send(encode(&msg)).await;
    }

    async fn error(&self, e: Invalid) {
        tracing::debug!(code = %e.code, detail = %e.message, "request refused");
        self.node.metrics.error(e.code);
        self.reply(e.into()).await;
    }

    /// Queues a close frame behind what is already queued. If the client does not make room in
    /// time, it is closed at once instead (1013).
    async fn closing(&self, code: u16, reason: &'static str) {
        let queued = self.outbox.send(close_frame(code, reason));
        if !matches!(
            tokio::time::timeout(CLOSE_TIMEOUT, queued).await,
            Ok(Ok(()))
        ) {
            self.outbox.close.cancel();
        }
    }

    fn name(&self) -> Result<&UserName, Invalid> {
        self.name
            .as_ref()
            .ok_or_else(|| Invalid::new(ErrorCode::NameRequired, "set a name first (set_name)"))
    }

    /// This connection as a member of rooms.
    fn member(&self) -> Result<Member, Invalid> {
        Ok(Member {
            session: self.session.clone(),
            conn: self.conn.clone(),
            name: self.name()?.clone(),
        })
    }

    fn joined_room(&self, raw: &str) -> Result<RoomName, Invalid> {
        let room = RoomName::parse(raw)?;
        if self.rooms.contains(&room) {
            Ok(room)
        } else {
            Err(Invalid::new(
                ErrorCode::NotInRoom,
                format!("not in room {room}; join it first"),
            ))
        }
    }

    /// A text or binary frame from the client, charged to the rate limits and then acted on.
    /// Returns the close to send when the connection must end.
    async fn on_message(&mut self, message: Message) -> Option<(u16, &'static str)> {
        let (kind, len, request) = match message {
            Message::Text(text) => {
                let decoded = decode_client(&text);
                let (kind, label) = match &decoded {
                    Ok(ClientMsg::Send { .. }) => (FrameKind::Send, "send"),
                    Ok(ClientMsg::SetName { .. }) => (FrameKind::Control, "set_name"),
                    Ok(ClientMsg::Resume { .. }) => (FrameKind::Control, "resume"),
                    Ok(ClientMsg::Join { .. }) => (FrameKind::Control, "join"),
                    Ok(ClientMsg::Leave { .. }) => (FrameKind::Control, "leave"),
                    Ok(ClientMsg::Ping) => (FrameKind::Control, "ping"),
                    Err(_) => (FrameKind::Control, "invalid"),
                };
                self.node.metrics.frame(label);
                (kind, text.len(), decoded)
            }
            other => (
                {
                    self.node.metrics.frame("binary");
                    FrameKind::Control
                },
                other.len(),
                Err(Invalid::new(
                    ErrorCode::BinaryNotSupported,
                    "frames are JSON text; binary frames are not part of the protocol",
                )),
            ),
        };
        // Every frame is charged, refused ones too: a flood of bad frames is a flood.
        match self.limits.check(&self.node.config, kind, len) {
            Verdict::Take => match request {
                Ok(msg) => self.handle(msg).await,
                Err(e) => self.error(e).await,
            },
            Verdict::Refuse(e) => self.error(e).await,
            Verdict::Close => {
                tracing::info!("closing a connection that kept on past its rate limit");
                return Some((CLOSE_POLICY, "rate limit exceeded"));
            }
        }
        None
    }

    async fn handle(&mut self, msg: ClientMsg) {
        let result = match msg {
            ClientMsg::SetName { name } => self.set_name(&name).await,
            ClientMsg::Resume { session } => self.resume(&session).await,
            ClientMsg::Join { room, since } => self.join(&room, since).await,
            ClientMsg::Leave { room } => self.leave(&room).await,
            ClientMsg::Send {
                room,
                text,
                client_id,
            } => self.send(&room, text, client_id).await,
            ClientMsg::Ping => {
                self.reply(ServerMsg::Pong).await;
                Ok(())
            }
        };
        if let Err(e) = result {
            self.error(e).await;
        }
    }

    async fn set_name(&mut self, raw: &str) -> Result<(), Invalid> {
        let name = UserName::parse(raw)?;
        if let Some(bound) = &self.bound
            && name.key() != bound.key()
        {
            return Err(Invalid::new(
                ErrorCode::NameBound,
                format!("your name comes from your sign-in: {bound}"),
            ));
        }
        // The token's spelling, whatever look-alike was sent.
        let name = self.bound.clone().unwrap_or(name);
        if self.name.as_ref() == Some(&name) {
            self.reply(ServerMsg::NameSet {
                name: name.to_string(),
            })
            .await;
            return Ok(());
        }
        let claim =
            (self.node.store).claim_name(&self.session, &self.conn, &name, self.name.as_ref());
        self.node.metrics.timed("claim_name", claim).await?;
        tracing::Span::current().record("user", name.as_str());
        let old = self.name.replace(name.clone());
        self.reply(ServerMsg::NameSet {
            name: name.to_string(),
        })
        .await;
        if let Some(old) = old {
            let member = self.member()?;
            for room in &self.rooms {
                if let Err(e) = self.node.hub.rename(room, &member, &old).await {
                    tracing::warn!(cause = %e, %room, "rename was not announced");
                }
            }
        }
        Ok(())
    }

    /// Takes over an earlier session (and the name it holds) before this connection has done
    /// anything else.
    async fn resume(&mut self, raw: &str) -> Result<(), Invalid> {
        if self.name.is_some() || !self.rooms.is_empty() {
            return Err(Invalid::new(
                ErrorCode::InvalidField,
                "resume must come before set_name and join",
            ));
        }
        let session = parse_session(raw)?;
        if self.bound.is_some() && session != self.session {
            return Err(Invalid::new(
                ErrorCode::InvalidField,
                "with a token, the session follows the token; no other can be resumed",
            ));
        }
        let m = &self.node.metrics;
        match m
            .timed("resume", self.node.store.resume(&session, &self.conn))
            .await?
        {
            Some(name) => {
                // Not the session itself: it is a bearer secret.
                tracing::debug!("session resumed");
                self.session = session;
                self.reply(ServerMsg::Resumed {
                    session: self.session.to_string(),
                    name: Some(name.to_string()),
                })
                .await;
                Ok(())
            }
            None => Err(Invalid::new(
                ErrorCode::UnknownSession,
                "that session has ended; carry on with the one in welcome",
            )),
        }
    }

    async fn join(&mut self, raw: &str, since: Option<Position>) -> Result<(), Invalid> {
        let name = self.name()?.clone();
        let room = RoomName::parse(raw)?;
        let already = self.rooms.contains(&room);
        if !already && self.rooms.len() >= self.node.config.max_rooms_per_connection {
            return Err(Invalid::new(
                ErrorCode::TooManyRooms,
                format!(
                    "a connection may be in at most {} rooms; leave one first",
                    self.node.config.max_rooms_per_connection
                ),
            ));
        }
        let member = Member {
            session: self.session.clone(),
            conn: self.conn.clone(),
            name,
        };
        let may_open = self.limits.may_open_room(&self.node.config);
        let opened = self
            .node
            .hub
            .join(&room, &member, &self.outbox, since, may_open)
            .await?;
        if opened {
            self.limits.opened_room();
        }
        if !already {
            self.rooms.push(room);
        }
        Ok(())
    }

    async fn leave(&mut self, raw: &str) -> Result<(), Invalid> {
        let room = self.joined_room(raw)?;
        let member = self.member()?;
        self.rooms.retain(|r| r != &room);
        self.node.hub.leave(&room, &member).await;
        self.reply(ServerMsg::Left {
            room: room.to_string(),
        })
        .await;
        Ok(())
    }

    async fn send(
        &mut self,
        raw_room: &str,
        text: String,
        client_id: Option<String>,
    ) -> Result<(), Invalid> {
        let name = self.name()?;
        let room = self.joined_room(raw_room)?;
        let text = MessageText::parse(text, self.node.config.max_text_chars)?;
        let client_id = parse_client_id(client_id)?;
        let node = &self.node;
        let stored = node
            .metrics
            .timed(
                "append",
                node.store.append(&room, name, text, client_id.clone()),
            )
            .await?;
        if stored.duplicate {
            tracing::debug!(%room, seq = stored.seq, "re-sent message acknowledged again");
            self.node.metrics.messages_deduplicated.inc();
        } else {
            self.node.metrics.messages_stored.inc();
        }
        self.reply(ServerMsg::Ack {
            room: room.to_string(),
            client_id,
            seq: stored.seq,
        })
        .await;
        Ok(())
    }

    /// Leaves every room (announcing it) and frees the name — or, when the link merely dropped,
    /// keeps it for the session's owner to resume.
    async fn finish(&mut self, how: Departure) {
        if let Ok(member) = self.member() {
            for room in std::mem::take(&mut self.rooms) {
                self.node.hub.leave(&room, &member).await;
            }
        }
        // Also when no name was set: a resumed session is held by this connection all the same.
        let node = &self.node;
        let release = node.store.release(&self.session, &self.conn, how);
        node.metrics.timed("release", release).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn a_handshake_needs_get_upgrade_headers_version_13_and_a_key() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            "keep-alive, Upgrade".parse().expect("valid"),
        );
        headers.insert(header::UPGRADE, "websocket".parse().expect("valid"));
        headers.insert(header::SEC_WEBSOCKET_VERSION, "13".parse().expect("valid"));
        headers.insert(
            header::SEC_WEBSOCKET_KEY,
            "dGhlIHNhbXBsZSBub25jZQ==".parse().expect("valid"),
        );
        // RFC 6455 §1.3's example.
        assert_eq!(
            accept_key(&Method::GET, &headers).as_deref(),
            Ok("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
        );
        assert!(accept_key(&Method::POST, &headers).is_err());
        let mut old = headers.clone();
        old.insert(header::SEC_WEBSOCKET_VERSION, "8".parse().expect("valid"));
        assert!(accept_key(&Method::GET, &old).is_err());
        let mut keyless = headers.clone();
        keyless.remove(header::SEC_WEBSOCKET_KEY);
        assert!(accept_key(&Method::GET, &keyless).is_err());
        headers.remove(header::UPGRADE);
        assert!(accept_key(&Method::GET, &headers).is_err());
    }
}
