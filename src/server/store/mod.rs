//! The chat's shared state: sessions and the names they hold, who is in which room, each room's
//! history and sequence counter — and the bus its changes are announced on.
//!
//! [`MemoryStore`] keeps it in this process (one node). [`RedisStore`] keeps it in Redis so that
//! any node can serve any user. Both keep the same rules:
//! - a name is unique case-insensitively among live sessions; a session is held by one
//!   connection or several (a browser's tabs, each `resume`s it), and while any holds it, it keeps
//!   its name; when the last one closes, the name is free; when the last one dropped without a
//!   clean close, the name is kept for `session_ttl_secs`, so its user can `resume` it;
//! - a room's `seq` is allocated, its history stored and the message published in one step, so
//!   every node sees the same order;
//! - membership is per session: the session is one member, joined (and announced) with its
//!   first connection in the room and left with its last; a reconnect's new connection joins
//!   without a notice, and the old connection's late leave changes nothing.

mod history;
mod later;
mod memory;
pub mod redis;
mod rules;

pub use self::redis::RedisStore;
pub use history::{HistoryBounds, Page, RECOVER_MAX};
/// Most names a `joined` or `presence` frame lists (`presence_list_max`), until configured.
pub const LIST_MAX: usize = 200;
pub use later::Later;
pub use memory::MemoryStore;
pub use rules::{Act, KnownRules, Rule, name_key, session_key, until};

use super::bus::Subscription;
use crate::protocol::{Change, ChatMessage, MessageText, Position, RoomName, ServerMsg, UserName};
use std::{
    sync::Arc,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

/// Identifies a user's session: given in `welcome`, kept across reconnects by `resume`.
pub type SessionId = Arc<str>;
/// Identifies one WebSocket connection for its whole life.
pub type ConnId = Arc<str>;

/// One connection's place in a room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub session: SessionId,
    pub conn: ConnId,
    pub name: UserName,
}

/// What a joiner is told about the room (by default: an empty room, as a reader of a room
/// nobody opened sees it).
#[derive(Debug, Default)]
pub struct Snapshot {
    /// The first members in the protocol's order: all of them in a room of up to the store's
    /// `list_max`, else that many.
    pub members: Vec<String>,
    /// How many members the room has.
    pub count: usize,
    /// The messages after the joiner's `since` when they could all be had (`recovered` is then
    /// `Some(true)`), else the room's newest window.
    pub history: Vec<ChatMessage>,
    /// For a join with `since`: whether `history` is exactly what came after it.
    pub recovered: Option<bool>,
    /// The room's epoch and newest `seq` when the snapshot was taken: live messages of that epoch
    /// up to it are already known.
    pub epoch: Option<String>,
    pub last_seq: u64,
    /// The join opened the room: it had neither members nor stored messages.
    pub created: bool,
}

/// Which of a room's members to read, in the protocol's order (case-insensitive): those after
/// the name `after` whose names begin with `prefix` (both ignoring case), at most `limit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberQuery {
    /// Lower-cased, as names are ordered.
    pub after: Option<String>,
    pub prefix: String,
    pub limit: usize,
}

impl MemberQuery {
    pub fn new(after: Option<&str>, prefix: Option<&str>, limit: usize) -> Self {
        Self {
            after: after.map(str::to_lowercase),
            prefix: prefix.map(str::to_lowercase).unwrap_or_default(),
            limit: limit.max(1),
        }
    }

    /// The first `limit` members.
    pub fn first(limit: usize) -> Self {
        Self::new(None, None, limit)
    }
}

/// A page of a room's members, in the protocol's order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberPage {
    pub names: Vec<String>,
    /// The `after` of the next page, when more names match.
    pub next: Option<String>,
    /// How many members the room has (all of them, whatever the query).
    pub count: usize,
}

/// The key a member's name is ordered by: `sort_members`'s, which pages go by.
pub(crate) fn order_key(name: &str) -> String {
    name.to_lowercase()
}

/// Where `append` put a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    pub seq: u64,
    /// The `client_id` was already stored under `seq`: this was a re-send.
    pub duplicate: bool,
}

/// The `client_id`s of a room's latest messages, oldest first, bounded by `window`: how a re-sent
/// message is recognised.
#[derive(Debug, Default)]
pub(crate) struct RecentIds {
    seqs: std::collections::HashMap<String, u64>,
    order: std::collections::VecDeque<String>,
}

impl RecentIds {
    pub(crate) fn get(&self, id: &str) -> Option<u64> {
        self.seqs.get(id).copied()
    }

    pub(crate) fn insert(&mut self, id: String, seq: u64, window: usize) {
        if window == 0 {
            return;
        }
        while self.order.len() >= window {
            if let Some(old) = self.order.pop_front() {
                self.seqs.remove(&old);
            }
        }
        self.order.push_back(id.clone());
        self.seqs.insert(id, seq);
    }
}

/// How a session ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Departure {
    /// The client closed the connection: the name is free at once.
    Closed,
    /// The link dropped (or the server closed it): the session may be resumed for a while.
    Dropped,
}

/// Sessions and the names they hold.
#[async_trait::async_trait]
pub trait Sessions: Send + Sync + 'static {
    /// Attaches an earlier session to `conn`; its name if it is still alive, `None` if unknown.
    async fn resume(
        &self,
        session: &SessionId,
        conn: &ConnId,
    ) -> Result<Option<UserName>, StoreError>;

    /// Takes `name` for the session (held by `conn`), giving up `old` if it held one.
    async fn claim_name(
        &self,
        session: &SessionId,
        conn: &ConnId,
        name: &UserName,
        old: Option<&UserName>,
    ) -> Result<(), StoreError>;

    /// The connection holding the session ended.
    async fn release(&self, session: &SessionId, conn: &ConnId, how: Departure);

    /// Lets the store end `conn` (cancel `end`) should its session lose its name: a store
    /// shared by many nodes that lost its data puts names back, and where two sessions came to
    /// hold one, the later holder's connections are ended. Until [`Sessions::forget`].
    fn watch(&self, _conn: &ConnId, _end: tokio_util::sync::CancellationToken) {}

    /// The connection has ended.
    fn forget(&self, _conn: &ConnId) {}
}

/// Who is in which room: joins, leaves and renames, each announced to the room.
#[async_trait::async_trait]
pub trait Presence: Send + Sync + 'static {
    /// Adds the member to the room (announcing it if the session was not there yet) and returns
    /// what it should see: the messages after `since` (at most [`RECOVER_MAX`]) when the client
    /// names the last one it has and they are all stored, else the newest window. Without
    /// `create`, a room that has neither members nor stored messages is not opened: the join
    /// is refused (the connection opened too many rooms).
    async fn join(
        &self,
        room: &RoomName,
        member: &Member,
        create: bool,
        since: Option<&Position>,
    ) -> Result<Snapshot, StoreError>;

    /// What a reader who is not a member sees of the room: its members and newest window, as
    /// `join` gives them, without joining, announcing or opening anything.
    async fn peek(&self, room: &RoomName) -> Result<Snapshot, StoreError>;

    /// Removes the member and announces it, unless another connection took its session over.
    async fn leave(&self, room: &RoomName, member: &Member) -> Result<(), StoreError>;

    /// Announces that the member is now called `member.name` (the notice says what it was
    /// called here). Nothing happens when the connection is not one of the member's, or when
    /// another connection of its session said it first.
    async fn rename(&self, room: &RoomName, member: &Member) -> Result<(), StoreError>;

    /// A page of the room's members, without reading all of them.
    async fn members(&self, room: &RoomName, query: &MemberQuery)
    -> Result<MemberPage, StoreError>;

    /// Puts this node's members of the room back where the store may have lost them (Redis came
    /// back without its data, or thought this node dead). Announces only those it re-adds.
    /// `delivered` is the last message this node delivered, `(epoch, seq)`: a store that lost it
    /// (a Redis failover before it reached the replica) continues the numbering after it, so
    /// no `seq` is given to two messages.
    async fn reassert(
        &self,
        room: &RoomName,
        members: &[Member],
        delivered: Option<(&str, u64)>,
    ) -> Result<(), StoreError>;
}

/// Each room's messages: stored and published as one step, read back, and heard from.
#[async_trait::async_trait]
pub trait Broker: Send + Sync + 'static {
    /// Stores a message under the room's next `seq` and publishes it, as one step — unless its
    /// `client_id` is among the room's last `dedup_window` ones: then nothing is stored and the
    /// original `seq` is returned.
    /// `change` says what the entry does to an earlier message, if anything (an edit or a
    /// delete): checked by the caller, stored and numbered like any message. `author` is kept
    /// with it (never sent): who may change it later.
    async fn append(
        &self,
        room: &RoomName,
        from: &UserName,
        text: MessageText,
        client_id: Option<String>,
        change: Change,
        author: Option<String>,
    ) -> Result<Stored, StoreError>;

    /// The stored messages after `seq` of `epoch`, in order — `None` when they cannot all be
    /// had (trimmed from the history, or the epoch is gone).
    async fn since(
        &self,
        room: &RoomName,
        epoch: &str,
        seq: u64,
    ) -> Result<Option<Vec<ChatMessage>>, StoreError>;

    /// Up to `limit` stored messages before `before` (the newest without it), oldest first. A
    /// position of another epoch than the room's has nothing before it here.
    async fn page(
        &self,
        room: &RoomName,
        before: Option<&Position>,
        limit: usize,
    ) -> Result<Page, StoreError>;

    /// Subscribes this node to the room's events.
    async fn subscribe(&self, room: &RoomName) -> Result<Subscription, StoreError>;

    /// Publishes `msg` to every node with members in the room, storing nothing (`typing`): it
    /// is heard by those listening now, or never.
    async fn signal(&self, room: &RoomName, msg: &ServerMsg) -> Result<(), StoreError>;

    /// Records what a moderator set for the room (see [`Rule`]), for every node.
    async fn rule(&self, room: &RoomName, rule: Rule) -> Result<(), StoreError>;

    /// Whether the person known by the keys `who` (see [`name_key`]) may `act` in the room now:
    /// `Muted`, `Kicked` or `Slowed` with how long, else the room's slow-mode interval in
    /// seconds (0: off). Saying something takes the person's slow-mode turn.
    async fn gate(&self, room: &RoomName, who: &[String], act: Act) -> Result<u64, StoreError>;
}

/// How the store is doing, and what it tells other nodes about this one.
#[async_trait::async_trait]
pub trait Health: Send + Sync + 'static {
    /// Publishes this node's status (JSON) for the other nodes' status pages, kept for `ttl`.
    /// Only stores shared by many nodes keep it.
    async fn share_status(&self, _status: String, _ttl: Duration) {}

    /// The statuses the live nodes published (this node's among them, if it shares).
    async fn node_statuses(&self) -> Vec<String> {
        Vec::new()
    }

    /// Whether this node can serve users now (asks the store: a round trip).
    async fn ready(&self) -> bool;

    /// A cheap, local guess of `ready`, checked on every new WebSocket.
    fn accepting(&self) -> bool {
        true
    }

    /// Called once the server has stopped serving: say goodbye to other nodes.
    async fn close(&self) {}
}

/// Everything a node needs of its shared state; [`MemoryStore`] and [`RedisStore`] are each all
/// four parts.
pub trait Store: Sessions + Presence + Broker + Health {}

impl<T: Sessions + Presence + Broker + Health> Store for T {}

/// Why a store call failed. Storage says what happened; `conn/session.rs` alone turns it into what the
/// client is told (`impl From<StoreError> for Invalid`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The store cannot be reached or did not answer (Redis down, failing over, timed out):
    /// trying again later may work.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A live session holds the name (or a look-alike of it).
    #[error("the name {0} is taken")]
    NameTaken(UserName),
    /// A join that would open a room, from a connection that opened its share of them lately.
    #[error("the connection opened its share of new rooms")]
    CreationLimited,
    /// The node holds as many rooms as it may (in-memory store).
    #[error("the node holds its maximum of rooms")]
    RoomsFull,
    /// A message for a room the sender is not in.
    #[error("not in the room")]
    NotInRoom,
    /// A moderator muted the person here, for this many more milliseconds.
    #[error("muted for {0} ms")]
    Muted(u64),
    /// A moderator removed the person from the room, for this many more milliseconds.
    #[error("kicked for {0} ms")]
    Kicked(u64),
    /// Slow mode: the person's next message may go in this many milliseconds.
    #[error("slow mode: {0} ms to wait")]
    Slowed(u64),
}

/// The store could not do it; `cause` says why (kept for the logs, never sent to clients).
pub(crate) fn unavailable(cause: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(cause.to_string())
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// A fresh random epoch: names one life of a room's sequence numbers.
pub(crate) fn new_epoch() -> String {
    format!("{:016x}", rand::random::<u64>())
}

/// The messages of `history` (oldest first, ending at `last_seq`) after `seq` — `None` when some
/// of them are no longer there.
pub(crate) fn messages_after(
    history: impl IntoIterator<Item = ChatMessage>,
    last_seq: u64,
    seq: u64,
) -> Option<Vec<ChatMessage>> {
    if seq >= last_seq {
        return (seq == last_seq).then(Vec::new);
    }
    let missed: Vec<ChatMessage> = history.into_iter().filter(|m| m.seq > seq).collect();
    (missed.first().map(|m| m.seq) == Some(seq + 1)).then_some(missed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_ids_remember_the_last_window_of_ids() {
        let mut ids = RecentIds::default();
        for seq in 1..=5 {
            ids.insert(format!("c{seq}"), seq, 3);
        }
        assert_eq!(ids.get("c1"), None);
        assert_eq!(ids.get("c2"), None);
        assert_eq!(ids.get("c3"), Some(3));
        assert_eq!(ids.get("c5"), Some(5));
        let mut off = RecentIds::default();
        off.insert("c".into(), 1, 0);
        assert_eq!(off.get("c"), None);
    }

    fn msg(seq: u64) -> ChatMessage {
        ChatMessage {
            room: "lobby".into(),
            seq,
            epoch: "e".into(),
            from: "ann".into(),
            text: "hi".into(),
            ts: 0,
            client_id: None,
            edits: None,
            deleted: false,
            moderation: None,
            author: None,
        }
    }

    #[test]
    fn the_messages_after_a_seq_are_given_only_when_none_is_missing() {
        let history = || (3..=5).map(msg);
        let seqs =
            |v: Option<Vec<ChatMessage>>| v.map(|v| v.iter().map(|m| m.seq).collect::<Vec<_>>());
        assert_eq!(seqs(messages_after(history(), 5, 2)), Some(vec![3, 4, 5]));
        assert_eq!(seqs(messages_after(history(), 5, 4)), Some(vec![5]));
        assert_eq!(seqs(messages_after(history(), 5, 5)), Some(vec![]));
        // 2 was trimmed away.
        assert_eq!(seqs(messages_after(history(), 5, 1)), None);
        // A seq from the future (another epoch's numbers) cannot be caught up.
        assert_eq!(seqs(messages_after(history(), 5, 9)), None);
    }
}
