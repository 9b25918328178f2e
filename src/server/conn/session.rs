//! The protocol a connection speaks once it is open: one handler per client frame type
//! (`set_name`, `resume`, `join`, `leave`, `send`, `ping`, `members`, `history`), each charged to
//! the connection's rate limits first; and the one place where what the store answers becomes
//! what the client is told (`impl From<StoreError> for Invalid`).
//!
//! A new client frame type needs its variant in `protocol.rs` and a handler here.

use super::socket::{Close, Heartbeat, Peer};
use crate::protocol::{
    Change, ChatMessage, ClientMsg, ErrorCode, HISTORY_PAGE, HISTORY_PAGE_MAX, Invalid,
    KICK_DEFAULT_S, Limits, MAX_NAME_CHARS, MODERATION_MAX_S, MessageText, ModAction, Moderation,
    PROTOCOL_VERSION, Position, RoomName, SLOW_MODE_MAX_S, ServerMsg, TYPING_EVERY_MS, UserName,
    decode_client, parse_client_id,
};
use crate::server::{
    AppState,
    auth::Identity,
    config::Config,
    frame::{self, CLOSE_POLICY},
    guard::{FrameKind, FrameLimits, Ticket, Verdict},
    hub::{Hub, Joining, MEMBERS_PAGE_MAX, Outbox},
    metrics::Metrics,
    store::{
        Act, ConnId, Departure, Member, MemberQuery, Rule, SessionId, Store, StoreError, name_key,
        session_key,
    },
};
use std::{
    sync::Arc,
    time::{Duration, Instant},
};
use tokio_util::sync::CancellationToken;
use tungstenite::Message;

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
            StoreError::Muted(ms) => Invalid::until(
                ErrorCode::Muted,
                format!("a moderator muted you here for {}", for_how_long(ms)),
                ms,
            ),
            StoreError::Kicked(ms) => Invalid::until(
                ErrorCode::Kicked,
                format!(
                    "a moderator removed you from this room; you may come back in {}",
                    for_how_long(ms)
                ),
                ms,
            ),
            StoreError::Slowed(ms) => Invalid::until(
                ErrorCode::SlowMode,
                format!(
                    "the room is in slow mode: your next message may go in {}",
                    for_how_long(ms)
                ),
                ms,
            ),
        }
    }
}

/// `ms` as people say it: "12 s", "5 min", "2 h".
fn for_how_long(ms: u64) -> String {
    let s = ms.div_ceil(1000);
    match s {
        0..120 => format!("{s} s"),
        120..7200 => format!("{} min", s.div_ceil(60)),
        _ => format!("{} h", s.div_ceil(3600)),
    }
}

/// 128 random bits in hex: session and connection ids. A session id is a bearer secret (it
/// resumes a name), so it must not be guessable.
pub(super) fn random_id() -> String {
    format!("{:032x}", rand::random::<u128>())
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

/// What a connection needs of its node: a few shared handles rather than the whole `AppState`,
/// which every idle connection would hold a copy of.
pub(super) struct Node {
    config: Arc<Config>,
    metrics: Arc<Metrics>,
    store: Arc<dyn Store>,
    hub: Arc<Hub>,
    /// Cancelled when the node begins to drain.
    shutdown: CancellationToken,
}

pub(super) struct Connection {
    node: Node,
    /// The user's session: this connection's own, or an earlier one held by `resume` (which
    /// other connections may hold as well).
    session: SessionId,
    conn: ConnId,
    name: Option<UserName>,
    /// With signed identity: the only name this connection may take.
    bound: Option<UserName>,
    /// May mute, kick, set slow mode and delete anyone's message: by the token's claim, or
    /// after `moderate` with the operator token.
    moderator: bool,
    /// Rooms joined, in join order; a handful at most, so a Vec beats a set.
    rooms: Vec<RoomName>,
    /// When this connection's last `typing` was passed on (in any room).
    typed: Option<Instant>,
    /// Rooms read before a name was set (a `join` without one; see `Hub::read`).
    reading: Vec<RoomName>,
    outbox: Outbox,
    limits: FrameLimits,
    /// This connection's place on the node, given back when it ends.
    _ticket: Ticket,
}

impl Connection {
    /// A new connection of `app`'s node, queueing to `outbox`; with signed identity, `identity`
    /// is the checked token's.
    pub(super) fn new(
        app: &AppState,
        conn: ConnId,
        identity: Option<Identity>,
        outbox: Outbox,
        ticket: Ticket,
    ) -> Self {
        // Should its session lose its name (see `Sessions::watch`), the connection ends.
        app.store.watch(&conn, outbox.close.clone());
        Self {
            // A signed-in user's connections share one session, on every node.
            session: identity
                .as_ref()
                .map_or_else(random_id, |id| id.session())
                .into(),
            conn,
            name: None,
            moderator: identity.as_ref().is_some_and(|id| id.moderator),
            bound: identity.map(|id| id.name),
            rooms: Vec::new(),
            typed: None,
            reading: Vec::new(),
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
        }
    }

    /// Greets the client: its session, this node, the protocol and the limits it must keep to.
    /// The queue is empty yet: offering cannot fail or wait.
    pub(super) fn welcome(&self, node_id: &str) {
        let config = &self.node.config;
        self.outbox.offer(frame::encode(&ServerMsg::Welcome {
            session: self.session.to_string(),
            node: node_id.to_owned(),
            protocol: PROTOCOL_VERSION,
            limits: Limits {
                max_name_chars: MAX_NAME_CHARS,
                max_text_chars: config.conn.max_text_chars,
                max_frame_bytes: config.conn.max_frame_bytes,
                max_rooms_per_connection: config.conn.max_rooms_per_connection,
                sends: config.limits.send_rate(),
                bytes: config.byte_rate(),
                edit_window_ms: u64::try_from(config.rooms.edit_window_ms.as_millis())
                    .unwrap_or(u64::MAX),
            },
            ping_interval_ms: u64::try_from(config.conn.ping_interval_ms.as_millis())
                .unwrap_or(u64::MAX),
            name: self.bound.as_ref().map(|n| n.to_string()),
            moderator: self.moderator,
        }));
    }
}

impl Peer for Connection {
    fn outbox(&self) -> &Outbox {
        &self.outbox
    }

    fn draining(&self) -> &CancellationToken {
        &self.node.shutdown
    }

    fn heartbeat(&self) -> Heartbeat {
        let config = &self.node.config;
        Heartbeat {
            ping: config.conn.ping_interval_ms,
            idle: config.conn.idle_timeout_ms,
            drain: config.node.drain_ms,
        }
    }

    /// A text or binary frame from the client, charged to the rate limits and then acted on.
    /// Returns the close to send when the connection must end.
    async fn on_message(&mut self, message: Message) -> Option<Close> {
        let (kind, len, request) = match message {
            Message::Text(text) => {
                let decoded = decode_client(&text);
                self.node
                    .metrics
                    .frame(decoded.as_ref().map_or("invalid", ClientMsg::kind));
                let kind = match &decoded {
                    // Edits and deletes are stored like messages: paced like them.
                    Ok(
                        ClientMsg::Send { .. } | ClientMsg::Edit { .. } | ClientMsg::Delete { .. },
                    ) => FrameKind::Send,
                    _ => FrameKind::Control,
                };
                (kind, text.len(), decoded)
            }
            other => {
                self.node.metrics.frame("binary");
                let refused = Invalid::new(
                    ErrorCode::BinaryNotSupported,
                    "frames are JSON text; binary frames are not part of the protocol",
                );
                (FrameKind::Control, other.len(), Err(refused))
            }
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

    fn ended(&self, why: &'static str) {
        self.node.metrics.closed(why);
    }

    /// Leaves every room (announcing it) and frees the name — or, when the link merely dropped,
    /// keeps it for the session's owner to resume, and announces the leave only after
    /// `leave_grace_ms` unless the session joined again meanwhile.
    async fn finish(&mut self, how: Departure, may_return: bool) {
        let grace = match may_return {
            true => self.node.config.rooms.leave_grace_ms,
            false => Duration::ZERO,
        };
        if let Ok(member) = self.member() {
            for room in std::mem::take(&mut self.rooms) {
                self.node.hub.leave(&room, &member, grace).await;
            }
        }
        let reader = self.reader();
        for room in std::mem::take(&mut self.reading) {
            self.node.hub.leave(&room, &reader, Duration::ZERO).await;
        }
        // Also when no name was set: a resumed session is held by this connection all the same.
        let node = &self.node;
        let release = node.store.release(&self.session, &self.conn, how);
        node.metrics.timed("release", release).await;
        node.store.forget(&self.conn);
    }
}

impl Connection {
    /// Queues a reply to this client, waiting if its queue is full: a client that does not read
    /// its answers stops being read from.
    async fn reply(&self, msg: ServerMsg) {
        let _ = self.outbox.send(frame::encode(&msg)).await;
    }

    async fn error(&self, e: Invalid) {
        self.error_in(e, None).await;
    }

    /// Refuses a request about `room`: the error names it.
    async fn error_in(&self, e: Invalid, room: Option<String>) {
        tracing::debug!(code = %e.code, detail = %e.message, "request refused");
        self.node.metrics.error(e.code);
        let mut msg = ServerMsg::from(e);
        if let ServerMsg::Error { room: about, .. } = &mut msg {
            *about = room;
        }
        self.reply(msg).await;
    }

    fn name(&self) -> Result<&UserName, Invalid> {
        self.name
            .as_ref()
            .ok_or_else(|| Invalid::new(ErrorCode::NameRequired, "set a name first (set_name)"))
    }

    /// This connection as a reader of rooms, before it has a name.
    fn reader(&self) -> Member {
        Member {
            session: self.session.clone(),
            conn: self.conn.clone(),
            name: UserName::reader(),
        }
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
        if self.rooms.contains(&room) || self.reading.contains(&room) {
            Ok(room)
        } else {
            Err(Invalid::new(
                ErrorCode::NotInRoom,
                format!("not in room {room}; join it first"),
            ))
        }
    }

    /// Who may change what this connection sends, kept with each message: its signed identity,
    /// or else a digest of its session (every tab of the person, and their resumed
    /// connections, hold the same one; someone who takes the name later does not).
    fn author(&self) -> String {
        match &self.bound {
            Some(name) => format!("n:{name}"),
            None => session_key(&self.session),
        }
    }

    /// The keys moderation knows this person by: their author key (slow mode counts turns by
    /// it), and their name's.
    fn who(&self, name: &UserName) -> [String; 2] {
        [self.author(), name_key(&name.key())]
    }

    /// Whether this person may `act` in `room` (mutes, kicks, slow mode; see `Store::gate`).
    /// Moderators always may. The room's slow-mode interval (0: off).
    async fn gate(&self, room: &RoomName, name: &UserName, act: Act) -> Result<u64, Invalid> {
        if self.moderator {
            return Ok(0);
        }
        let node = &self.node;
        let who = self.who(name);
        Ok(node
            .metrics
            .timed("gate", node.store.gate(room, &who, act))
            .await?)
    }

    /// Moderators only: a refusal for anyone else.
    fn moderating(&self) -> Result<(), Invalid> {
        match self.moderator {
            true => Ok(()),
            false => Err(Invalid::new(
                ErrorCode::NotModerator,
                "only moderators may do that",
            )),
        }
    }

    /// A room this connection is a member of (joined with its name), to send in.
    fn taking_part(&self, raw: &str) -> Result<RoomName, Invalid> {
        let room = self.joined_room(raw)?;
        if !self.rooms.contains(&room) {
            // Read before a name was set: a member only after a join with the name.
            return Err(Invalid::new(
                ErrorCode::NotInRoom,
                format!("reading {room} only; join it to take part"),
            ));
        }
        Ok(room)
    }

    /// One handler per client frame type.
    async fn handle(&mut self, msg: ClientMsg) {
        let room = msg.room().map(str::to_owned);
        let result = match msg {
            ClientMsg::SetName { name } => self.set_name(&name).await,
            ClientMsg::Resume { session } => self.resume(&session).await,
            ClientMsg::Join {
                room,
                since,
                presence_changes,
            } => self.join(&room, since, presence_changes).await,
            ClientMsg::Leave { room } => self.leave(&room).await,
            ClientMsg::Send {
                room,
                text,
                client_id,
            } => self.send(&room, text, client_id).await,
            ClientMsg::Members {
                room,
                after,
                prefix,
                limit,
            } => self.members(&room, after, prefix, limit).await,
            ClientMsg::History {
                room,
                before,
                limit,
            } => self.history(&room, before, limit).await,
            ClientMsg::Typing { room } => self.typing(&room).await,
            ClientMsg::Edit {
                room,
                epoch,
                seq,
                text,
                client_id,
            } => {
                let max = self.node.config.conn.max_text_chars;
                match MessageText::parse(text, max) {
                    Ok(text) => self.change(&room, &epoch, seq, text, client_id).await,
                    Err(e) => Err(e),
                }
            }
            ClientMsg::Delete {
                room,
                epoch,
                seq,
                client_id,
            } => {
                let text = MessageText::deleted();
                self.change(&room, &epoch, seq, text, client_id).await
            }
            ClientMsg::Ping => {
                self.reply(ServerMsg::Pong).await;
                Ok(())
            }
            ClientMsg::Moderate { token } => self.moderate(&token).await,
            ClientMsg::Mute {
                room,
                name,
                seconds,
            } => {
                self.mute_or_kick(&room, &name, ModAction::Mute, seconds)
                    .await
            }
            ClientMsg::Kick {
                room,
                name,
                seconds,
            } => {
                let seconds = seconds.unwrap_or(KICK_DEFAULT_S);
                self.mute_or_kick(&room, &name, ModAction::Kick, seconds)
                    .await
            }
            ClientMsg::SlowMode { room, seconds } => self.slow_mode(&room, seconds).await,
        };
        if let Err(e) = result {
            self.error_in(e, room).await;
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
        if old.is_some() {
            let member = self.member()?;
            for room in &self.rooms {
                if let Err(e) = self.node.hub.rename(room, &member).await {
                    tracing::warn!(cause = %e, %room, "rename was not announced");
                }
            }
        }
        Ok(())
    }

    /// Holds an earlier session (and the name it holds) too, beside any other connection that
    /// holds it (a browser's other tabs): before this connection has taken a name or joined with
    /// one. Rooms it reads meanwhile stay read.
    async fn resume(&mut self, raw: &str) -> Result<(), Invalid> {
        if self.name.is_some() || !self.rooms.is_empty() {
            return Err(Invalid::new(
                ErrorCode::InvalidField,
                "resume must come before set_name and joining with a name",
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

    /// Refuses a room past `max_rooms_per_connection` (read or joined), unless it is one of them.
    fn room_allowed(&self, room: &RoomName) -> Result<(), Invalid> {
        let max = self.node.config.conn.max_rooms_per_connection;
        let known = self.rooms.contains(room) || self.reading.contains(room);
        if !known && self.rooms.len() + self.reading.len() >= max {
            return Err(Invalid::new(
                ErrorCode::TooManyRooms,
                format!("a connection may be in at most {max} rooms; leave one first"),
            ));
        }
        Ok(())
    }

    async fn join(
        &mut self,
        raw: &str,
        since: Option<Position>,
        changes: bool,
    ) -> Result<(), Invalid> {
        let room = RoomName::parse(raw)?;
        self.room_allowed(&room)?;
        // Without a name, the room is read: what is said, and who is there, but no part in it.
        let Some(name) = self.name.clone() else {
            self.node
                .hub
                .read(&room, &self.reader(), &self.outbox, changes)
                .await?;
            if !self.reading.contains(&room) {
                self.reading.push(room);
            }
            return Ok(());
        };
        let already = self.rooms.contains(&room);
        let slow = self.gate(&room, &name, Act::Join).await?;
        let member = Member {
            session: self.session.clone(),
            conn: self.conn.clone(),
            name,
        };
        let may_open = self.limits.may_open_room(&self.node.config);
        let opened = self
            .node
            .hub
            .join(
                &room,
                &member,
                &self.outbox,
                Joining {
                    since,
                    create: may_open,
                    changes,
                },
            )
            .await?;
        if opened {
            self.limits.opened_room();
        }
        if slow > 0 {
            self.reply(ServerMsg::SlowMode {
                room: room.to_string(),
                seconds: slow,
            })
            .await;
        }
        if !already {
            self.reading.retain(|r| r != &room);
            self.rooms.push(room);
        }
        Ok(())
    }

    async fn leave(&mut self, raw: &str) -> Result<(), Invalid> {
        let room = self.joined_room(raw)?;
        let member = match self.reading.contains(&room) {
            true => self.reader(),
            false => self.member()?,
        };
        self.rooms.retain(|r| r != &room);
        self.reading.retain(|r| r != &room);
        self.node.hub.leave(&room, &member, Duration::ZERO).await;
        self.reply(ServerMsg::Left {
            room: room.to_string(),
        })
        .await;
        Ok(())
    }

    async fn members(
        &mut self,
        raw: &str,
        after: Option<String>,
        prefix: Option<String>,
        limit: Option<u32>,
    ) -> Result<(), Invalid> {
        let room = self.joined_room(raw)?;
        let limit = limit.map_or(MEMBERS_PAGE_MAX, |l| l as usize);
        let query = MemberQuery::new(
            after.as_deref(),
            prefix.as_deref(),
            limit.clamp(1, MEMBERS_PAGE_MAX),
        );
        let node = &self.node;
        let page = node
            .metrics
            .timed("members", node.store.members(&room, &query))
            .await?;
        self.reply(ServerMsg::Members {
            room: room.to_string(),
            members: page.names,
            next: page.next,
        })
        .await;
        Ok(())
    }

    async fn history(
        &mut self,
        raw: &str,
        before: Option<Position>,
        limit: Option<u32>,
    ) -> Result<(), Invalid> {
        let room = self.joined_room(raw)?;
        let limit = limit.unwrap_or(HISTORY_PAGE).clamp(1, HISTORY_PAGE_MAX) as usize;
        let node = &self.node;
        let page = node
            .metrics
            .timed("history", node.store.page(&room, before.as_ref(), limit))
            .await?;
        let (messages, more) = within_page_bytes(page.messages, page.more);
        self.reply(ServerMsg::History {
            room: room.to_string(),
            epoch: page.epoch,
            messages,
            more,
        })
        .await;
        Ok(())
    }

    /// Tells the room this person is typing, at most once per [`TYPING_GAP`]: more often is
    /// dropped without an answer (a page says so every few seconds while its composer changes).
    /// Nothing is stored, and a store that cannot pass it on now is not worth an error.
    async fn typing(&mut self, raw_room: &str) -> Result<(), Invalid> {
        let name = self.name()?.clone();
        let room = self.taking_part(raw_room)?;
        let now = Instant::now();
        if self
            .typed
            .is_some_and(|at| now.duration_since(at) < TYPING_GAP)
        {
            self.node.metrics.typing_dropped.inc();
            return Ok(());
        }
        self.typed = Some(now);
        // A muted or kicked person is not said to be typing either (slow mode does not stop
        // typing). Without the store's answer it is dropped: typing is the first to go.
        if self.gate(&room, &name, Act::Change).await.is_err() {
            self.node.metrics.typing_dropped.inc();
            return Ok(());
        }
        let msg = ServerMsg::Typing {
            room: room.to_string(),
            names: vec![name.to_string()],
        };
        if let Err(e) = self.node.store.signal(&room, &msg).await {
            tracing::debug!(cause = %e, %room, "typing not passed on");
        }
        Ok(())
    }

    /// Edits (or, with an empty text, deletes) this person's message `seq` of `epoch`: checked
    /// against the stored message (it is a message, not a change; it was sent with this
    /// connection's author key, whatever the name then; it is within the edit window), then
    /// appended as a change of it, acknowledged like a `send`.
    async fn change(
        &mut self,
        raw_room: &str,
        epoch: &str,
        seq: u64,
        text: MessageText,
        client_id: Option<String>,
    ) -> Result<(), Invalid> {
        let name = self.name()?.clone();
        let room = self.taking_part(raw_room)?;
        let client_id = parse_client_id(client_id)?;
        let node = &self.node;
        let window = node.config.rooms.edit_window_ms;
        let at = Position {
            epoch: epoch.to_owned(),
            seq: seq.saturating_add(1),
        };
        let page = node
            .metrics
            .timed("page", node.store.page(&room, Some(&at), 1))
            .await?;
        let Some(target) = page
            .messages
            .into_iter()
            .find(|m| m.seq == seq && m.epoch == epoch && m.edits.is_none())
        else {
            return Err(Invalid::new(
                ErrorCode::NoSuchMessage,
                format!("no message {seq} in {room} (or no longer kept)"),
            ));
        };
        let deleting = text.as_str().is_empty();
        let change = if target.author.as_deref() == Some(&self.author()) {
            let age = crate::server::store::now_ms().saturating_sub(target.ts);
            if window.is_zero() || u128::from(age) > window.as_millis() {
                return Err(Invalid::new(
                    ErrorCode::EditWindowPassed,
                    "that message is too old to change",
                ));
            }
            self.gate(&room, &name, Act::Change).await?;
            match deleting {
                true => Change::delete(seq),
                false => Change::edit(seq),
            }
        } else if deleting && self.moderator {
            // Anyone's, however old: the room sees who deleted it.
            Change {
                moderation: Some(Moderation {
                    action: ModAction::Delete,
                    name: Some(target.from.clone()),
                    seconds: 0,
                }),
                ..Change::delete(seq)
            }
        } else {
            return Err(Invalid::new(
                ErrorCode::NotYours,
                "that message is someone else's",
            ));
        };
        let by_moderator = change.moderation.is_some();
        let stored = self.append(&room, &name, text, client_id, change).await?;
        match by_moderator {
            true => tracing::info!(%room, seq, change = stored.seq, author = %target.from,
                moderator = %name, "moderator deleted a message"),
            false => tracing::info!(%room, seq, change = stored.seq, deleted = deleting,
                "message changed"),
        }
        Ok(())
    }

    /// Stores an entry of the room's stream (a message, or a change of one) under this
    /// connection's author key, and acknowledges it.
    async fn append(
        &self,
        room: &RoomName,
        name: &UserName,
        text: MessageText,
        client_id: Option<String>,
        change: Change,
    ) -> Result<crate::server::store::Stored, Invalid> {
        let node = &self.node;
        let author = Some(self.author());
        let stored = node
            .metrics
            .timed(
                "append",
                node.store
                    .append(room, name, text, client_id.clone(), change, author),
            )
            .await?;
        if stored.duplicate {
            tracing::debug!(%room, seq = stored.seq, "re-sent entry acknowledged again");
            node.metrics.messages_deduplicated.inc();
        } else {
            node.metrics.messages_stored.inc();
        }
        self.reply(ServerMsg::Ack {
            room: room.to_string(),
            client_id,
            seq: stored.seq,
        })
        .await;
        Ok(stored)
    }

    /// Gives this connection moderator rights when `token` is the server's operator token.
    async fn moderate(&mut self, token: &str) -> Result<(), Invalid> {
        use sha2::{Digest, Sha256};
        let configured = self.node.config.identity.operator_token.as_deref();
        // Digests compared, so the time taken says nothing of the token.
        let right = configured
            .is_some_and(|t| Sha256::digest(t.as_bytes()) == Sha256::digest(token.as_bytes()));
        if !right {
            tracing::warn!("moderate with a wrong operator token refused");
            return Err(Invalid::new(
                ErrorCode::NotModerator,
                "that is not this server's operator token",
            ));
        }
        self.moderator = true;
        tracing::info!("moderator rights given by the operator token");
        self.reply(ServerMsg::Moderator).await;
        Ok(())
    }

    /// Moderators: mutes (or kicks) `raw_name` in the room for `seconds` (0 lifts a mute). The
    /// rule is stored for every node, then the room hears of it as an entry of its stream; each
    /// node's room task applies it to its members who hold the name now (see `hub::room`).
    async fn mute_or_kick(
        &mut self,
        raw_room: &str,
        raw_name: &str,
        action: ModAction,
        seconds: u64,
    ) -> Result<(), Invalid> {
        self.moderating()?;
        let name = self.name()?.clone();
        let room = self.taking_part(raw_room)?;
        let target = UserName::parse(raw_name)?;
        if seconds > MODERATION_MAX_S || (action == ModAction::Kick && seconds == 0) {
            return Err(Invalid::new(
                ErrorCode::InvalidField,
                format!("seconds must be 1 to {MODERATION_MAX_S} (0 lifts a mute)"),
            ));
        }
        let until_ms = crate::server::store::until(crate::server::store::now_ms(), seconds);
        let who = name_key(&target.key());
        let rule = match action {
            ModAction::Kick => Rule::Kick { who, until_ms },
            _ => Rule::Mute { who, until_ms },
        };
        let moderation = Moderation {
            action,
            name: Some(target.to_string()),
            seconds,
        };
        self.enact(&room, &name, rule, moderation).await?;
        tracing::info!(%room, target = %target, ?action, seconds, moderator = %name, "moderation");
        Ok(())
    }

    /// Stores a moderator's rule for every node, then records the action in the room's stream,
    /// where every member (and a later `since`) sees it.
    async fn enact(
        &self,
        room: &RoomName,
        moderator: &UserName,
        rule: Rule,
        moderation: Moderation,
    ) -> Result<(), Invalid> {
        let node = &self.node;
        node.metrics
            .timed("rule", node.store.rule(room, rule))
            .await?;
        let entry = Change::moderation(moderation);
        self.append(room, moderator, MessageText::deleted(), None, entry)
            .await?;
        Ok(())
    }

    /// Moderators: slow mode for the room (0 turns it off).
    async fn slow_mode(&mut self, raw_room: &str, seconds: u64) -> Result<(), Invalid> {
        self.moderating()?;
        let name = self.name()?.clone();
        let room = self.taking_part(raw_room)?;
        if seconds > SLOW_MODE_MAX_S {
            return Err(Invalid::new(
                ErrorCode::InvalidField,
                format!("slow mode is at most {SLOW_MODE_MAX_S} seconds"),
            ));
        }
        let moderation = Moderation {
            action: ModAction::SlowMode,
            name: None,
            seconds,
        };
        self.enact(&room, &name, Rule::Slow(seconds), moderation)
            .await?;
        tracing::info!(%room, seconds, moderator = %name, "slow mode set");
        Ok(())
    }

    async fn send(
        &mut self,
        raw_room: &str,
        text: String,
        client_id: Option<String>,
    ) -> Result<(), Invalid> {
        let name = self.name()?;
        let room = self.taking_part(raw_room)?;
        let text = MessageText::parse(text, self.node.config.conn.max_text_chars)?;
        let client_id = parse_client_id(client_id)?;
        self.gate(&room, name, Act::Say).await?;
        self.append(&room, name, text, client_id, Change::default())
            .await?;
        Ok(())
    }
}

/// The least time between two `typing` frames of one connection that are passed on: a little
/// under the pages' [`TYPING_EVERY_MS`], for timers that fire early.
const TYPING_GAP: Duration = Duration::from_millis(TYPING_EVERY_MS - 500);

/// Bytes of message text and names in one `history` page: a page of long messages is cut
/// short (from its oldest end) so that it fits a reader's queue beside live traffic.
const HISTORY_PAGE_BYTES: usize = 256 * 1024;

/// The newest of `messages` (oldest first) that fit [`HISTORY_PAGE_BYTES`] (at least one), and
/// whether older ones remain.
fn within_page_bytes(mut messages: Vec<ChatMessage>, more: bool) -> (Vec<ChatMessage>, bool) {
    let mut bytes = 0;
    let fit = messages
        .iter()
        .rev()
        .take_while(|m| {
            bytes += m.text.len() + m.from.len();
            bytes <= HISTORY_PAGE_BYTES
        })
        .count()
        .max(1);
    let cut = messages.len().saturating_sub(fit);
    messages.drain(..cut);
    (messages, more || cut > 0)
}
