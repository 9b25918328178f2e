//! Local fan-out: one task per room with members on this node.
//!
//! The room task is the only owner of the room's local member list. It subscribes to the room on
//! the bus and hands each event's bytes (encoded once, by whoever published it) to every member's
//! bounded queue.
//!
//! The task also keeps the room's stream whole on this node: it remembers the last `(epoch, seq)`
//! it delivered, drops repeats, and when a `seq` jumps or the bus says events may be lost
//! (reconnect, lag) it fetches the missing messages from the store before going on. Member lists
//! (`presence`) are read from the store at most once per `presence_interval` after a change.
//!
//! What the task awaits from the store: gap fills and the resync, whose order matters, and
//! nothing else. A fill the store cannot answer (Redis unreachable or failing over) is tried
//! again with a backoff while later live messages wait for it; only a gap the store no longer
//! holds closes the members (1013) to reload. Joins, leaves, renames and member-list reads run
//! beside it and report back, so a slow store call there never holds up delivery to the room. A join's snapshot and the live
//! stream still meet without a gap or an overlap: messages the task delivers while a join is in
//! flight are held, and the joiner gets those after its snapshot's end once the join is back,
//! while live messages its snapshot already holds are skipped for it.

pub use super::outbox::Outbox;
use super::{
    bus::{BusEvent, BusItem, RecvError, Subscription},
    frame::encode,
    metrics::Metrics,
    store::{Member, Snapshot, Store, StoreError, messages_after},
};
use crate::protocol::{ChatMessage, Position, RoomName, ServerMsg, UserName};
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};
use tokio::{
    sync::{mpsc, oneshot},
    time::Instant,
};
use tungstenite::Message;

enum Command {
    Join {
        member: Member,
        outbox: Outbox,
        since: Option<Position>,
        /// Whether the join may open a room that does not exist yet.
        create: bool,
        /// Whether it did.
        reply: oneshot::Sender<Result<bool, StoreError>>,
    },
    Leave {
        member: Member,
        reply: oneshot::Sender<()>,
    },
    /// The member (by connection) now goes by `member.name`, formerly `old`.
    Rename {
        member: Member,
        old: UserName,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
}

/// A join whose store call finished beside the room task.
struct JoinDone {
    member: Member,
    outbox: Outbox,
    since: Option<Position>,
    reply: oneshot::Sender<Result<bool, StoreError>>,
    snapshot: Result<Snapshot, StoreError>,
}

struct LocalMember {
    member: Member,
    outbox: Outbox,
    /// Live messages of this epoch up to `skip_through` were in the member's join snapshot.
    epoch: Option<String>,
    skip_through: u64,
}

impl LocalMember {
    fn has(&self, m: &ChatMessage) -> bool {
        m.seq <= self.skip_through && self.epoch.as_deref() == Some(m.epoch.as_str())
    }
}

pub struct Hub {
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    /// Least time between two `presence` frames of one room from this node.
    presence_interval: Duration,
    /// Room → its task's command queue. The queue is unbounded, yet bounded in practice: each
    /// connection waits for the answer to its command before sending another.
    rooms: Mutex<HashMap<RoomName, mpsc::UnboundedSender<Command>>>,
}

impl Hub {
    pub fn new(
        store: Arc<dyn Store>,
        presence_interval: Duration,
        metrics: Arc<Metrics>,
    ) -> Arc<Self> {
        Arc::new(Self {
            store,
            metrics,
            presence_interval,
            rooms: Mutex::new(HashMap::new()),
        })
    }

    /// Sends a command to the room's task, starting the task if the room has none.
    fn command(self: &Arc<Self>, room: &RoomName, cmd: Command) {
        let mut rooms = self.rooms.lock().unwrap_or_else(|p| p.into_inner());
        let cmd = match rooms.get(room) {
            Some(tx) => match tx.send(cmd) {
                Ok(()) => return,
                Err(mpsc::error::SendError(cmd)) => cmd,
            },
            None => cmd,
        };
        let (tx, rx) = mpsc::unbounded_channel();
        // Cannot fail: `rx` is alive.
        let _ = tx.send(cmd);
        rooms.insert(room.clone(), tx);
        tokio::spawn(room_task(self.clone(), room.clone(), rx));
    }

    /// Joins the member to the room on this node: on success its `joined` frame is queued
    /// (with the messages after `since`, when given and still stored), followed by the room's
    /// live events. Without `create`, a room that does not exist is not opened (see
    /// `Store::join`). Returns whether the join opened the room.
    pub async fn join(
        self: &Arc<Self>,
        room: &RoomName,
        member: &Member,
        outbox: &Outbox,
        since: Option<Position>,
        create: bool,
    ) -> Result<bool, StoreError> {
        self.ask(room, |reply| Command::Join {
            member: member.clone(),
            outbox: outbox.clone(),
            since,
            create,
            reply,
        })
        .await
    }

    /// Stops delivering the room to the member's connection and tells the others it left.
    pub async fn leave(self: &Arc<Self>, room: &RoomName, member: &Member) {
        let (reply, answer) = oneshot::channel();
        self.command(
            room,
            Command::Leave {
                member: member.clone(),
                reply,
            },
        );
        let _ = answer.await;
    }

    /// Tells the room the member's connection goes by a new name: the room task keeps it (so
    /// what it re-asserts after a resync is the name now, not the one joined with), then the
    /// store records it and announces it. Does nothing if the connection is not in the room here.
    pub async fn rename(
        self: &Arc<Self>,
        room: &RoomName,
        member: &Member,
        old: &UserName,
    ) -> Result<(), StoreError> {
        self.ask(room, |reply| Command::Rename {
            member: member.clone(),
            old: old.clone(),
            reply,
        })
        .await
    }

    /// Sends the room the command `make` builds around a reply channel and waits for its
    /// answer; a room task that stopped first answers `internal`.
    async fn ask<T>(
        self: &Arc<Self>,
        room: &RoomName,
        make: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Command,
    ) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.command(room, make(reply));
        answer
            .await
            .unwrap_or_else(|_| Err(StoreError::Unavailable("the room's task stopped".into())))
    }

    /// Rooms with a task (members) on this node.
    pub fn room_count(&self) -> usize {
        self.rooms.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Called by a room task with no members: removes the room unless a command is waiting, which
    /// is returned to be handled instead. Both happen under the map's lock, so no command can be
    /// sent to a task that is about to end.
    fn retire(
        &self,
        room: &RoomName,
        rx: &mut mpsc::UnboundedReceiver<Command>,
    ) -> Option<Command> {
        let mut rooms = self.rooms.lock().unwrap_or_else(|p| p.into_inner());
        match rx.try_recv() {
            Ok(cmd) => Some(cmd),
            Err(_) => {
                rooms.remove(room);
                None
            }
        }
    }
}

/// One room on this node.
struct RoomTask {
    hub: Arc<Hub>,
    room: RoomName,
    members: Vec<LocalMember>,
    presence: PresenceThrottle,
    /// The last message this node delivered (or knew of from a snapshot): `(epoch, seq)`.
    epoch: Option<String>,
    delivered: u64,
    /// Joins whose store call is running beside the task, and the messages delivered meanwhile
    /// (epoch, seq, frame): a joiner whose snapshot ends before them gets them after it.
    joins: usize,
    held: Vec<(String, u64, Message)>,
    /// Join results come back here.
    joined: (
        mpsc::UnboundedSender<JoinDone>,
        mpsc::UnboundedReceiver<JoinDone>,
    ),
    /// Member lists read beside the task come back here, so a slow read never holds up
    /// delivery.
    lists: (
        mpsc::UnboundedSender<MemberList>,
        mpsc::UnboundedReceiver<MemberList>,
    ),
    /// A gap fill the store could not answer (unreachable, failing over) is tried again then,
    /// and live messages wait for it; the count says how many tries in a row failed.
    refill: Option<(Instant, u32)>,
}

/// The first wait before a failed gap fill is tried again, and the longest.
const REFILL_FIRST: Duration = Duration::from_millis(100);
const REFILL_MAX: Duration = Duration::from_secs(2);

/// A room's member list as read from the store.
type MemberList = Result<Vec<String>, StoreError>;

async fn room_task(hub: Arc<Hub>, room: RoomName, mut commands: mpsc::UnboundedReceiver<Command>) {
    let mut sub = match hub
        .metrics
        .timed("subscribe", hub.store.subscribe(&room))
        .await
    {
        Ok(sub) => sub,
        Err(e) => {
            tracing::warn!(cause = %e, %room, "cannot subscribe to room");
            refuse_all(&hub, &room, &mut commands);
            return;
        }
    };
    let mut task = RoomTask {
        presence: PresenceThrottle::new(hub.presence_interval),
        hub,
        room,
        members: Vec::new(),
        epoch: None,
        delivered: 0,
        joins: 0,
        held: Vec::new(),
        joined: mpsc::unbounded_channel(),
        lists: mpsc::unbounded_channel(),
        refill: None,
    };
    let open = task.run(&mut sub, &mut commands).await;
    if !open {
        // The bus closed: close every local member so its client reconnects and resyncs.
        task.close_all();
    }
    refuse_all(&task.hub, &task.room, &mut commands);
}

impl RoomTask {
    /// Serves until the room has no members here (true) or the bus closed (false).
    async fn run(
        &mut self,
        sub: &mut Subscription,
        commands: &mut mpsc::UnboundedReceiver<Command>,
    ) -> bool {
        loop {
            tokio::select! {
                biased;
                cmd = commands.recv() => match cmd {
                    Some(cmd) => self.handle(cmd).await,
                    None => return true,
                },
                Some(done) = self.joined.1.recv() => self.add_member(done),
                item = sub.recv() => match item {
                    Ok(BusItem::Event(event)) => self.deliver(&event).await,
                    // Events may be gone (bus reconnected, or this task fell behind).
                    Ok(BusItem::Resync) | Err(RecvError::Lagged(_)) => self.resync().await,
                    Err(RecvError::Closed) => return false,
                },
                _ = tokio::time::sleep_until(self.presence.next_at),
                    if self.presence.pending && !self.presence.reading => {
                    self.read_presence();
                }
                Some(list) = self.lists.1.recv() => self.send_presence(list),
                // (Without a retry due the branch is off and its deadline never looked at.)
                _ = tokio::time::sleep_until(self.refill.map_or(self.presence.next_at, |(at, _)| at)),
                    if self.refill.is_some() => {
                    self.resync().await;
                }
            }
            while self.members.is_empty() && self.joins == 0 {
                match self.hub.retire(&self.room, commands) {
                    Some(cmd) => self.handle(cmd).await,
                    None => return true,
                }
            }
        }
    }

    async fn handle(&mut self, cmd: Command) {
        match cmd {
            Command::Join {
                member,
                outbox,
                since,
                create,
                reply,
            } => {
                // Stored beside the task, which goes on delivering; the result comes back as a
                // `JoinDone` and the joiner is added then (`add_member`).
                self.joins += 1;
                let (hub, room, done) =
                    (self.hub.clone(), self.room.clone(), self.joined.0.clone());
                tokio::spawn(async move {
                    let join = hub.store.join(&room, &member, create);
                    let snapshot = hub.metrics.timed("join", join).await;
                    let _ = done.send(JoinDone {
                        member,
                        outbox,
                        since,
                        reply,
                        snapshot,
                    });
                });
            }
            Command::Leave { member, reply } => {
                self.members.retain(|m| m.member.conn != member.conn);
                // Stored beside the task; the connection hears back once it is.
                let (hub, room) = (self.hub.clone(), self.room.clone());
                tokio::spawn(async move {
                    let leave = hub.store.leave(&room, &member);
                    if let Err(e) = hub.metrics.timed("leave", leave).await {
                        tracing::warn!(cause = %e, %room, "leave was not announced");
                    }
                    let _ = reply.send(());
                });
            }
            Command::Rename { member, old, reply } => {
                let Some(local) = self
                    .members
                    .iter_mut()
                    .find(|m| m.member.conn == member.conn)
                else {
                    let _ = reply.send(Ok(()));
                    return;
                };
                local.member.name = member.name.clone();
                let (hub, room) = (self.hub.clone(), self.room.clone());
                tokio::spawn(async move {
                    let rename = hub.store.rename(&room, &member, &old);
                    let _ = reply.send(hub.metrics.timed("rename", rename).await);
                });
            }
        }
    }

    /// Adds a joiner whose store call is done: its `joined` frame, then the messages this task
    /// delivered after the snapshot was taken, then the live stream. The snapshot and the stream
    /// meet without a gap or an overlap: what the snapshot holds and is still to come live is
    /// skipped for the joiner (`skip_through`), and what came live before the snapshot ended is
    /// in it.
    fn add_member(&mut self, done: JoinDone) {
        let JoinDone {
            member,
            outbox,
            since,
            reply,
            snapshot,
        } = done;
        self.joins -= 1;
        let result = snapshot.map(|snapshot| {
            let created = snapshot.created;
            // A repeated join replaces the connection's entry and resends the room.
            self.members.retain(|m| m.member.conn != member.conn);
            let (epoch, last_seq) = (snapshot.epoch.clone(), snapshot.last_seq);
            // With nobody else here, the stream starts where the snapshot ends (or where this
            // task already got to). With others, it must not: they still need the live messages
            // this snapshot already holds (the joiner skips those itself).
            if self.members.is_empty() {
                // A snapshot without an epoch saw no message: where the stream is stays.
                if epoch.is_none() || self.epoch == epoch {
                    self.delivered = self.delivered.max(last_seq);
                } else {
                    self.epoch = epoch.clone();
                    self.delivered = last_seq;
                }
            }
            let joined = joined_frame(&self.room, snapshot, since);
            if let ServerMsg::Joined {
                recovered: Some(complete),
                ..
            } = &joined
            {
                self.hub.metrics.recovery(*complete);
            }
            let mut skip_through = last_seq;
            let mut whole = outbox.offer(encode(&joined));
            // The joiner's place in the stream: the snapshot's, then each held message's.
            let mut at = epoch.clone();
            for (held_epoch, seq, frame) in self.held.iter().filter(|(e, seq, _)| match &epoch {
                Some(epoch) => e == epoch && *seq > last_seq,
                // The snapshot was taken before the room's first message: everything held
                // came after it.
                None => true,
            }) {
                if !whole {
                    break;
                }
                // A message this node never got live is missing between them (or the store
                // began another epoch meanwhile): the joiner reconnects and recovers it (`join`
                // with `since`), rather than miss it.
                if *seq != skip_through + 1 || at.as_ref().is_some_and(|at| at != held_epoch) {
                    whole = false;
                    outbox.close.cancel();
                    break;
                }
                whole = outbox.offer(frame.clone());
                skip_through = *seq;
                at = Some(held_epoch.clone());
            }
            if whole {
                self.members.push(LocalMember {
                    member,
                    outbox,
                    epoch: at,
                    skip_through,
                });
                // Notices that came while the join ran (its own `joined` among them) went to
                // the others only: a fresh member list follows for everyone.
                self.presence.pending = true;
            }
            created
        });
        if self.joins == 0 {
            self.held = Vec::new();
        }
        let _ = reply.send(result);
    }

    /// Keeps a delivered message for the joins in flight.
    fn hold(&mut self, m: &ChatMessage, frame: &Message) {
        if self.joins > 0 {
            self.held.push((m.epoch.clone(), m.seq, frame.clone()));
        }
    }

    async fn deliver(&mut self, event: &BusEvent) {
        match &event.msg {
            ServerMsg::Message(m) if self.members.is_empty() => {
                // Only joiners are waiting: nobody to fill a gap for; note where the stream is.
                if self.epoch.as_deref() == Some(m.epoch.as_str()) && m.seq <= self.delivered {
                    return;
                }
                self.epoch = Some(m.epoch.clone());
                self.delivered = m.seq;
                self.hold(m, &Message::Text(event.frame.clone()));
            }
            // A gap fill is due again: this message comes with it, from the history.
            ServerMsg::Message(_) if self.refill.is_some() => {}
            ServerMsg::Message(m) => {
                if self.epoch.as_deref() == Some(m.epoch.as_str()) {
                    if m.seq <= self.delivered {
                        return; // already delivered (e.g. by a gap fill)
                    }
                    if m.seq > self.delivered + 1 && !self.fill(Some(m.seq - 1)).await {
                        return;
                    }
                } else {
                    // The first message of this room here, or the store started a new epoch
                    // (its data was lost): numbering starts afresh, and whatever of the new
                    // epoch came before this message is fetched first.
                    self.epoch = Some(m.epoch.clone());
                    self.delivered = 0;
                    if m.seq > 1 && !self.fill(Some(m.seq - 1)).await {
                        return;
                    }
                }
                self.delivered = m.seq;
                let frame = Message::Text(event.frame.clone());
                let n = fan_out(&mut self.members, &frame, |lm| lm.has(m));
                self.hub.metrics.deliveries.inc_by(n);
                self.hold(m, &frame);
            }
            ServerMsg::Notice { .. } => {
                self.presence.pending = true;
                self.fan_out(&Message::Text(event.frame.clone()));
            }
            _ => self.fan_out(&Message::Text(event.frame.clone())),
        }
    }

    /// Queues `frame` for every local member.
    fn fan_out(&mut self, frame: &Message) {
        let n = fan_out(&mut self.members, frame, |_| false);
        self.hub.metrics.deliveries.inc_by(n);
    }

    /// Delivers the stored messages after the last one delivered, up to `upto` (or all).
    /// Returns false if they could not be had. When the store no longer has them every local
    /// member is closed (1013) so its client reconnects and reloads the room, rather than
    /// silently miss messages; when the store did not answer, the fill is tried again after a
    /// backoff ([`REFILL_FIRST`] doubling to [`REFILL_MAX`]) and live messages wait for it, so a
    /// Redis failover costs the members a delay, not a reconnect.
    async fn fill(&mut self, upto: Option<u64>) -> bool {
        let tries = self.refill.take().map_or(0, |(_, tries)| tries);
        let Some(epoch) = self.epoch.clone() else {
            return true;
        };
        let since = self.hub.store.since(&self.room, &epoch, self.delivered);
        match self.hub.metrics.timed("since", since).await {
            Ok(Some(missed)) => {
                if !missed.is_empty() {
                    self.hub.metrics.gap_fills.inc();
                }
                for m in missed
                    .into_iter()
                    .filter(|m| upto.is_none_or(|u| m.seq <= u))
                {
                    let seq = m.seq;
                    let frame = encode(&ServerMsg::Message(m.clone()));
                    let n = fan_out(&mut self.members, &frame, |lm| lm.has(&m));
                    self.hub.metrics.deliveries.inc_by(n);
                    self.hold(&m, &frame);
                    self.delivered = seq;
                }
                true
            }
            Ok(None) => {
                tracing::warn!(room = %self.room, after = self.delivered, "missed messages are no longer stored: members must reload");
                self.close_all();
                false
            }
            Err(e) => {
                let wait = REFILL_FIRST
                    .saturating_mul(1 << tries.min(8))
                    .min(REFILL_MAX);
                tracing::warn!(cause = %e, room = %self.room, retry_in = ?wait, "cannot fetch missed messages yet");
                self.refill = Some((Instant::now() + wait, tries + 1));
                false
            }
        }
    }

    async fn resync(&mut self) {
        self.hub.metrics.resyncs.inc();
        // First what is true here (members, and how far the room's numbering got), so that a
        // store that lost it (a failover) neither misses members nor numbers a message twice.
        let members: Vec<Member> = self.members.iter().map(|m| m.member.clone()).collect();
        let delivered = self.epoch.as_deref().map(|e| (e, self.delivered));
        let reassert = self.hub.store.reassert(&self.room, &members, delivered);
        if let Err(e) = self.hub.metrics.timed("reassert", reassert).await {
            tracing::warn!(cause = %e, room = %self.room, "cannot re-register members");
        }
        if !self.fill(None).await {
            return;
        }
        self.presence.pending = true;
    }

    /// Starts reading the member list beside the task; it comes back through `lists`.
    fn read_presence(&mut self) {
        self.presence.sent();
        self.presence.reading = true;
        let (hub, room, done) = (self.hub.clone(), self.room.clone(), self.lists.0.clone());
        tokio::spawn(async move {
            let list = hub.metrics.timed("members", hub.store.members(&room)).await;
            let _ = done.send(list);
        });
    }

    fn send_presence(&mut self, list: Result<Vec<String>, StoreError>) {
        self.presence.reading = false;
        match list {
            Ok(members) => {
                let frame = encode(&ServerMsg::Presence {
                    room: self.room.to_string(),
                    members,
                });
                self.fan_out(&frame);
            }
            Err(e) => tracing::warn!(cause = %e, room = %self.room, "no member list"),
        }
    }

    fn close_all(&mut self) {
        for m in self.members.drain(..) {
            m.outbox.close.cancel();
        }
    }
}

/// The `joined` frame for a snapshot: the recent history, or — for a client that names the last
/// message it has — exactly the messages after it, if the store still has them all.
fn joined_frame(room: &RoomName, snapshot: Snapshot, since: Option<Position>) -> ServerMsg {
    let Snapshot {
        members,
        history,
        epoch,
        last_seq,
        ..
    } = snapshot;
    let (history, recovered) = match since {
        None => (history, None),
        Some(since) if epoch.as_deref() == Some(since.epoch.as_str()) => {
            // `history` is shared by the fallback, so only its messages after `since` are cloned.
            match messages_after(
                history.iter().filter(|m| m.seq > since.seq).cloned(),
                last_seq,
                since.seq,
            ) {
                Some(missed) => (missed, Some(true)),
                None => (history, Some(false)),
            }
        }
        // The room's numbering restarted (its stored data was lost) or it has none yet.
        Some(_) => (history, Some(false)),
    };
    ServerMsg::Joined {
        room: room.to_string(),
        members,
        history,
        recovered,
    }
}

/// Answers every queued command with an error and forgets the room, so the next join starts a
/// fresh task.
fn refuse_all(hub: &Hub, room: &RoomName, commands: &mut mpsc::UnboundedReceiver<Command>) {
    loop {
        match hub.retire(room, commands) {
            Some(Command::Join { reply, .. }) => {
                let _ = reply.send(Err(StoreError::Unavailable(
                    "the room's task could not subscribe".into(),
                )));
            }
            Some(Command::Leave { reply, .. }) => {
                let _ = reply.send(());
            }
            // The room has no members here any more: nobody to rename.
            Some(Command::Rename { reply, .. }) => {
                let _ = reply.send(Ok(()));
            }
            None => return,
        }
    }
}

/// Sends `presence` frames of one room at most once per interval.
///
/// Every join or leave changes the whole list; sent to every member each time, a reconnect storm
/// of n users would cost O(n²) bytes. Notices stay immediate; the list is read from the store
/// and sent once the interval allows, so the first change after a quiet spell goes out at once.
struct PresenceThrottle {
    interval: Duration,
    next_at: Instant,
    /// A change happened since the last list went out.
    pending: bool,
    /// A list is being read.
    reading: bool,
}

impl PresenceThrottle {
    fn new(interval: Duration) -> Self {
        Self {
            interval,
            next_at: Instant::now(),
            pending: false,
            reading: false,
        }
    }

    fn sent(&mut self) {
        self.pending = false;
        self.next_at = Instant::now() + self.interval;
    }
}

/// Queues `frame` for every local member but those `skip` says already have it. A member whose
/// queue is full is closed by `offer` and dropped here; its connection then leaves the room
/// properly. Returns how many were queued.
fn fan_out(
    members: &mut Vec<LocalMember>,
    frame: &Message,
    skip: impl Fn(&LocalMember) -> bool,
) -> u64 {
    let mut queued = 0;
    members.retain(|m| {
        if skip(m) {
            return true;
        }
        let ok = m.outbox.offer(frame.clone());
        queued += u64::from(ok);
        ok
    });
    queued
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        protocol::MessageText,
        server::store::{
            Broker, ConnId, Departure, Health, MemoryStore, Presence, SessionId, Sessions, Stored,
        },
    };
    use std::sync::atomic::Ordering::Relaxed;

    fn member(id: &str) -> (Member, Outbox) {
        let member = Member {
            session: id.into(),
            conn: id.into(),
            name: UserName::parse(id).expect("valid name"),
        };
        (member, Outbox::new(64, None))
    }

    fn memory_store() -> MemoryStore {
        MemoryStore::new(100, 100, 10, Duration::from_secs(30))
    }

    /// A hub on `store` with ann in the lobby.
    async fn lobby_with_ann(store: &Arc<dyn Store>) -> (Arc<Hub>, RoomName, Member, Outbox) {
        let hub = Hub::new(store.clone(), Duration::from_millis(50), Arc::default());
        let room = RoomName::lobby();
        let (ann, ann_out) = member("ann");
        hub.join(&room, &ann, &ann_out, None, true)
            .await
            .expect("joins");
        (hub, room, ann, ann_out)
    }

    /// The `seq`s of the chat messages queued for a member so far.
    async fn seqs(outbox: &Outbox) -> Vec<u64> {
        let mut seqs = Vec::new();
        outbox.end();
        while let Some(frames) = outbox.take().await {
            for frame in frames {
                let Message::Text(text) = frame else { continue };
                match serde_json::from_str::<ServerMsg>(&text) {
                    Ok(ServerMsg::Message(m)) => seqs.push(m.seq),
                    Ok(ServerMsg::Joined { history, .. }) => {
                        seqs.extend(history.iter().map(|m| m.seq))
                    }
                    _ => {}
                }
            }
        }
        seqs
    }

    // One thread: the room task runs only when the test awaits, so the order is exact.
    #[tokio::test(flavor = "current_thread")]
    async fn a_join_taken_before_queued_live_messages_does_not_take_them_from_earlier_members() {
        let store: Arc<dyn Store> = Arc::new(memory_store());
        let (hub, room, ann, ann_out) = lobby_with_ann(&store).await;
        // Two messages are published; before the room task has delivered them, bo's join is
        // queued too, and the task takes commands first: bo's snapshot already holds them.
        for text in ["one", "two"] {
            say(&*store, &room, &ann, text).await;
        }
        let (bo, bo_out) = member("bo");
        hub.join(&room, &bo, &bo_out, None, true)
            .await
            .expect("joins");
        tokio::task::yield_now().await;
        assert_eq!(seqs(&ann_out).await, [1, 2], "ann gets them live");
        assert_eq!(
            seqs(&bo_out).await,
            [1, 2],
            "bo gets them once, in its history"
        );
    }

    /// The in-memory store, but leaving a room and reading its member list take 2 s, as a Redis
    /// call might near its timeout; so does a join once `slow_joins` is set (its snapshot is
    /// taken first, the answer comes 2 s later).
    /// With `say_in_join`, a join first stores (and publishes) a message from "ann", so that
    /// its snapshot holds a message the room task has not delivered yet.
    /// With `lossy`, its bus drops the next `drop_next` chat messages on their way to the room
    /// (as pub/sub does while a link is down), and `since` fails `failing_since` more times (as
    /// while Redis fails over).
    struct SlowStore {
        memory: MemoryStore,
        slow_joins: std::sync::atomic::AtomicBool,
        say_in_join: Mutex<Option<&'static str>>,
        lossy: bool,
        drop_next: Arc<std::sync::atomic::AtomicU32>,
        failing_since: std::sync::atomic::AtomicU32,
    }

    impl SlowStore {
        fn new() -> Self {
            Self {
                memory: memory_store(),
                slow_joins: std::sync::atomic::AtomicBool::new(false),
                say_in_join: Mutex::new(None),
                lossy: false,
                drop_next: Arc::default(),
                failing_since: Default::default(),
            }
        }

        fn lossy() -> Self {
            Self {
                lossy: true,
                ..Self::new()
            }
        }
    }

    const SLOW: Duration = Duration::from_secs(2);

    /// Counts `n` down by one; false if it was already 0.
    fn take_one(n: &std::sync::atomic::AtomicU32) -> bool {
        n.fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1))
            .is_ok()
    }

    #[async_trait::async_trait]
    impl Sessions for SlowStore {
        async fn resume(
            &self,
            session: &SessionId,
            conn: &ConnId,
        ) -> Result<Option<UserName>, StoreError> {
            self.memory.resume(session, conn).await
        }
        async fn claim_name(
            &self,
            session: &SessionId,
            conn: &ConnId,
            name: &UserName,
            old: Option<&UserName>,
        ) -> Result<(), StoreError> {
            self.memory.claim_name(session, conn, name, old).await
        }
        async fn release(&self, session: &SessionId, conn: &ConnId, how: Departure) {
            self.memory.release(session, conn, how).await
        }
    }

    #[async_trait::async_trait]
    impl Presence for SlowStore {
        async fn join(
            &self,
            room: &RoomName,
            member: &Member,
            create: bool,
        ) -> Result<Snapshot, StoreError> {
            let said = self.say_in_join.lock().expect("not poisoned").take();
            if let Some(text) = said {
                let ann = UserName::parse("ann").expect("valid name");
                let text = MessageText::parse(text.into(), 100).expect("valid text");
                self.memory.append(room, &ann, text, None).await?;
            }
            let snapshot = self.memory.join(room, member, create).await;
            if self.slow_joins.load(std::sync::atomic::Ordering::Relaxed) {
                tokio::time::sleep(SLOW).await;
            }
            snapshot
        }
        async fn leave(&self, room: &RoomName, member: &Member) -> Result<(), StoreError> {
            tokio::time::sleep(SLOW).await;
            self.memory.leave(room, member).await
        }
        async fn rename(
            &self,
            room: &RoomName,
            member: &Member,
            old: &UserName,
        ) -> Result<(), StoreError> {
            self.memory.rename(room, member, old).await
        }
        async fn members(&self, room: &RoomName) -> Result<Vec<String>, StoreError> {
            tokio::time::sleep(SLOW).await;
            self.memory.members(room).await
        }
        async fn reassert(
            &self,
            room: &RoomName,
            members: &[Member],
            delivered: Option<(&str, u64)>,
        ) -> Result<(), StoreError> {
            self.memory.reassert(room, members, delivered).await
        }
    }

    #[async_trait::async_trait]
    impl Broker for SlowStore {
        async fn append(
            &self,
            room: &RoomName,
            from: &UserName,
            text: MessageText,
            client_id: Option<String>,
        ) -> Result<Stored, StoreError> {
            self.memory.append(room, from, text, client_id).await
        }
        async fn since(
            &self,
            room: &RoomName,
            epoch: &str,
            seq: u64,
        ) -> Result<Option<Vec<ChatMessage>>, StoreError> {
            if take_one(&self.failing_since) {
                return Err(StoreError::Unavailable("failing over".into()));
            }
            self.memory.since(room, epoch, seq).await
        }
        async fn subscribe(&self, room: &RoomName) -> Result<Subscription, StoreError> {
            let mut inner = self.memory.subscribe(room).await?;
            if !self.lossy {
                return Ok(inner);
            }
            let (tx, rx) = tokio::sync::broadcast::channel(64);
            let drop_next = self.drop_next.clone();
            tokio::spawn(async move {
                while let Ok(item) = inner.recv().await {
                    let message = matches!(&item, BusItem::Event(e) if matches!(e.msg, ServerMsg::Message(_)));
                    let dropped = message && take_one(&drop_next);
                    if !dropped && tx.send(item).is_err() {
                        return;
                    }
                }
            });
            Ok(Subscription::new(rx))
        }
    }

    #[async_trait::async_trait]
    impl Health for SlowStore {
        async fn ready(&self) -> bool {
            true
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_gap_fill_the_store_cannot_answer_yet_is_tried_again_and_nobody_is_closed() {
        let lossy = Arc::new(SlowStore::lossy());
        let store: Arc<dyn Store> = lossy.clone();
        let (_hub, room, ann, ann_out) = lobby_with_ann(&store).await;
        say(&*store, &room, &ann, "one").await;
        assert_eq!(next_text(&ann_out).await, "one");

        // "two" is lost on the bus; "three" shows the gap, whose fill fails twice (Redis failing
        // over); "four" comes meanwhile.
        lossy.drop_next.store(1, Relaxed);
        lossy.failing_since.store(2, Relaxed);
        for text in ["two", "three", "four"] {
            say(&*store, &room, &ann, text).await;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(REFILL_FIRST * 4).await;
        assert_eq!(
            lossy.failing_since.load(Relaxed),
            0,
            "the fill was tried again"
        );
        // ann stayed, and got each message once, in order.
        assert_eq!(seqs(&ann_out).await, [2, 3, 4]);
    }

    /// Waits for the next chat message queued for the member; returns its text.
    async fn next_text(outbox: &Outbox) -> String {
        loop {
            let frames = outbox.take().await.expect("queue open");
            for frame in frames {
                let Message::Text(text) = frame else { continue };
                if let Ok(ServerMsg::Message(m)) = serde_json::from_str::<ServerMsg>(&text) {
                    return m.text;
                }
            }
        }
    }

    // Paused time: a task stuck in a 2 s store call would let the clock jump 2 s ahead.
    #[tokio::test(start_paused = true)]
    async fn a_slow_leave_or_member_list_does_not_hold_up_delivery() {
        let store: Arc<dyn Store> = Arc::new(SlowStore::new());
        let (hub, room, ann, _ann_out) = lobby_with_ann(&store).await;
        let (bo, bo_out) = member("bo");
        let (cy, cy_out) = member("cy");
        for (m, out) in [(&bo, &bo_out), (&cy, &cy_out)] {
            hub.join(&room, m, out, None, true).await.expect("joins");
        }
        // The joins asked for a member list (2 s to read), and cy leaves (2 s to store).
        tokio::time::sleep(Duration::from_millis(60)).await;
        let leaving = tokio::spawn({
            let (hub, room, cy) = (hub.clone(), room.clone(), cy.clone());
            async move { hub.leave(&room, &cy).await }
        });
        tokio::task::yield_now().await;

        let sent = tokio::time::Instant::now();
        say(&*store, &room, &ann, "still flowing").await;
        assert_eq!(next_text(&bo_out).await, "still flowing");
        assert!(
            sent.elapsed() < SLOW,
            "delivered after {:?}: the room waited for the store",
            sent.elapsed()
        );
        leaving.await.expect("the leave ends");
        assert!(
            sent.elapsed() >= SLOW - Duration::from_millis(100),
            "the leave itself was slow"
        );
    }

    async fn say(store: &dyn Store, room: &RoomName, from: &Member, text: &str) {
        let text = MessageText::parse(text.into(), 100).expect("valid text");
        store
            .append(room, &from.name, text, None)
            .await
            .expect("stored");
    }

    /// Starts bo's join of `room`, which `slow` answers 2 s after taking its snapshot (at once).
    /// Returns bo's queue and the join.
    async fn join_slowly(
        slow: &SlowStore,
        hub: &Arc<Hub>,
        room: &RoomName,
    ) -> (Outbox, tokio::task::JoinHandle<Result<bool, StoreError>>) {
        slow.slow_joins
            .store(true, std::sync::atomic::Ordering::Relaxed);
        let (bo, bo_out) = member("bo");
        let joining = tokio::spawn({
            let (hub, room, bo_out) = (hub.clone(), room.clone(), bo_out.clone());
            async move { hub.join(&room, &bo, &bo_out, None, true).await }
        });
        tokio::task::yield_now().await;
        (bo_out, joining)
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_join_holds_up_no_one_and_the_joiner_misses_nothing() {
        let slow = Arc::new(SlowStore::new());
        let store: Arc<dyn Store> = slow.clone();
        let (hub, room, ann, ann_out) = lobby_with_ann(&store).await;
        say(&*store, &room, &ann, "one").await;
        assert_eq!(next_text(&ann_out).await, "one");

        // bo's join takes 2 s to answer; its snapshot (holding "one") was taken at once.
        let (bo_out, joining) = join_slowly(&slow, &hub, &room).await;
        let sent = tokio::time::Instant::now();
        say(&*store, &room, &ann, "two").await;
        assert_eq!(next_text(&ann_out).await, "two");
        assert!(
            sent.elapsed() < SLOW,
            "ann waited {:?} for bo's join",
            sent.elapsed()
        );

        joining.await.expect("ends").expect("joins");
        say(&*store, &room, &ann, "three").await;
        tokio::time::sleep(Duration::from_millis(10)).await;
        // bo: "one" in its history, "two" (delivered while it joined) right after, then "three"
        // live, each once and in order.
        assert_eq!(seqs(&bo_out).await, [1, 2, 3]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_slow_join_to_a_room_without_messages_misses_none_said_while_it_ran() {
        let slow = Arc::new(SlowStore::new());
        let store: Arc<dyn Store> = slow.clone();
        let (hub, room, ann, ann_out) = lobby_with_ann(&store).await;
        // bo's snapshot is taken before the room's first message (it has no epoch yet); its
        // join answers 2 s later, after the first two.
        let (bo_out, joining) = join_slowly(&slow, &hub, &room).await;
        for text in ["one", "two"] {
            say(&*store, &room, &ann, text).await;
            assert_eq!(next_text(&ann_out).await, text);
        }
        joining.await.expect("ends").expect("joins");
        say(&*store, &room, &ann, "three").await;
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(seqs(&bo_out).await, [1, 2, 3], "each once, in order");
    }

    // One thread, and the task takes finished joins before live events: the joiner is added
    // while a message its snapshot holds still waits to be delivered live.
    #[tokio::test(flavor = "current_thread")]
    async fn a_join_back_before_a_message_its_snapshot_holds_leaves_that_message_to_the_others() {
        let slow = Arc::new(SlowStore::new());
        let store: Arc<dyn Store> = slow.clone();
        let (hub, room, ann, ann_out) = lobby_with_ann(&store).await;
        *slow.say_in_join.lock().expect("not poisoned") = Some("during");
        let (bo, bo_out) = member("bo");
        hub.join(&room, &bo, &bo_out, None, true)
            .await
            .expect("joins");
        say(&*store, &room, &ann, "after").await;
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(seqs(&ann_out).await, [1, 2], "ann gets both live");
        assert_eq!(
            seqs(&bo_out).await,
            [1, 2],
            "bo: the first in its history, once"
        );
    }
}
