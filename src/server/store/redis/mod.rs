//! The many-node store: state in Redis, events on Redis pub/sub.
//!
//! Key layout (the part in braces is the Redis Cluster hash tag, so that everything one script
//! touches lives in one slot):
//! - per room, tag `{r:<room>}`: `chorus:{r:<room>}:meta` (hash: `epoch`, `seq`, `bytes`),
//!   `:log` (stream of message payloads, see `bus::payload`, with ids `<seq>-0`, trimmed to
//!   `history_size` entries and `history_bytes`; nodes before it kept a list, `:history`, that
//!   the scripts adopt into the stream), `:ids` (hash:
//!   client_id → seq) and `:id_order` (list of those ids, oldest first, trimmed to `dedup_window`),
//!   `:members` (hash: session → "<order key>\n<name>", the order key being the lower-cased
//!   name), `:names` (sorted set, all of score 0: "<order key>\n<name>\n<session>", so that a
//!   page of members in the protocol's order is one `ZRANGEBYLEX`, and a join reads the first
//!   page and `HLEN`, not the whole room), `:owners` (hash: session → the connections holding
//!   it there, "<node> <conn>" joined by `,`), and the channel `:events`;
//! - users, tag `{u}`: `chorus:{u}:names` (hash: lower-cased name → session),
//!   `chorus:{u}:s:<session>` (hash: `name`, `key`, `owners`: the connections holding it, as in
//!   a room's `:owners`; nodes before them wrote one, as `node` and `conn`; expires once no
//!   connection holds it),
//!   `chorus:{u}:node:<node>` (a live node's heartbeat, with a TTL), `chorus:{u}:nodes` (set of
//!   nodes), `chorus:{u}:nr:<node>` (set of rooms where the node has members),
//!   `chorus:{u}:status:<node>` (its status page report, JSON, with a TTL).
//!
//! Every change that others hear about is one Lua script (in `lua/`, each headed by its KEYS and
//! ARGV) that changes the keys *and* publishes, so the order of events on the channel is the
//! order of changes in Redis, from every node.
//!
//! Liveness: each node refreshes its heartbeat key every `node_ttl / 4`. A node whose key expired
//! is dead: the first live node to claim it (SET NX) removes its members from every room it
//! listed, announcing them as `left`, and its sessions stop holding names.

use super::{
    Act, Broker, ConnId, Departure, Health, HistoryBounds, Member, MemberPage, MemberQuery, Page,
    Presence, RECOVER_MAX, Rule, SessionId, Sessions, Snapshot, StoreError, Stored, messages_after,
    new_epoch, now_ms, order_key, unavailable,
};
use crate::{
    protocol::{
        Change, ChatMessage, MessageText, NoticeKind, Position, RoomName, ServerMsg, UserName,
    },
    server::bus::{Conn, Link, RedisBus, Subscription, Target, payload, room_channel, slot},
};
use prometheus_client::metrics::counter::Counter;
use redis::{
    Script,
    cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr},
};

use std::{sync::Arc, time::Duration};
use tokio_util::sync::CancellationToken;

mod held;
mod keys;
mod node;
#[cfg(test)]
mod tests;

use held::HeldSessions;
use keys::*;
use node::heartbeat;

/// Settings of the Redis store.
#[derive(Debug, Clone)]
pub struct RedisSettings {
    pub target: Target,
    /// Replicas that must have a message before it is acknowledged (`WAIT`); 0: none.
    pub wait_replicas: u32,
    /// How long to wait for them; past it the sender gets a retryable error.
    pub wait_timeout: Duration,
    pub node: Arc<str>,
    pub history: HistoryBounds,
    pub dedup_window: usize,
    /// Most names a joiner is given (`presence_list_max`).
    pub list_max: usize,
    pub session_ttl: Duration,
    pub node_ttl: Duration,
    /// A room's messages, sequence and dedup ids expire after this long without a message or
    /// a join.
    pub room_ttl: Duration,
    /// Counts the pub/sub link's losses (the node's metrics).
    pub pubsub_lost: Counter,
}

pub struct RedisStore {
    link: Link,
    bus: RedisBus,
    scripts: Scripts,
    settings: RedisSettings,
    /// The sessions this node serves, to put back should Redis lose them. std Mutex: never
    /// held across `.await`.
    held: std::sync::Mutex<HeldSessions>,
}

/// A notice as the scripts publish it.
fn notice(room: &RoomName, kind: NoticeKind, name: &UserName, old: Option<&UserName>) -> String {
    payload::frame(&ServerMsg::Notice {
        room: room.to_string(),
        kind,
        name: name.to_string(),
        old_name: old.map(|n| n.to_string()),
    })
}

/// A member as the room's `members` hash keeps it, ordered in its `names` by the order key.
fn stored(name: &UserName) -> String {
    format!("{}\n{name}", order_key(name.as_str()))
}

/// The names of entries of a room's `names` ('<order key>\n<name>\n<session>'), in order.
fn entry_names(entries: Vec<String>) -> Vec<String> {
    entries
        .iter()
        .filter_map(|e| e.split('\n').nth(1).map(str::to_owned))
        .collect()
}

/// A snapshot from what the join and peek scripts return: entries of the room's first names,
/// payloads, the room's epoch ('' before its first message) and seq, and its member count.
fn snapshot(
    first: Vec<String>,
    history: Vec<String>,
    epoch: String,
    seq: &str,
    count: usize,
) -> Snapshot {
    Snapshot {
        members: entry_names(first),
        count,
        history: decode_history(history),
        recovered: None,
        epoch: numbering(epoch),
        last_seq: seq.parse().unwrap_or(0),
        created: false,
    }
}

/// The room's epoch as the scripts return it: '' before its first message.
fn numbering(epoch: String) -> Option<String> {
    (!epoch.is_empty()).then_some(epoch)
}

/// Reads stored messages, skipping (and logging) any that do not parse.
fn decode_history(frames: Vec<String>) -> Vec<ChatMessage> {
    frames
        .into_iter()
        .filter_map(|f| match payload::decode_stored(&f) {
            Ok(m) => Some(m),
            Err(e) => {
                tracing::error!(cause = %e, "unreadable message in a room's history; skipped");
                None
            }
        })
        .collect()
}

impl RedisStore {
    /// Connects (retrying for a few seconds), then starts the pub/sub supervisor and this node's
    /// heartbeat. Everything stops with `stop`.
    pub async fn connect(
        settings: RedisSettings,
        stop: CancellationToken,
    ) -> anyhow::Result<Arc<Self>> {
        let with_waited = settings.wait_replicas > 0;
        let link = Link::connect(&settings.target, with_waited, stop.clone()).await?;
        let bus = RedisBus::start(
            link.clone(),
            node_rooms_key(&settings.node),
            settings.pubsub_lost.clone(),
            stop.clone(),
        );
        let store = Arc::new(Self {
            scripts: Scripts::new(link.is_cluster()),
            link,
            bus,
            settings,
            held: Default::default(),
        });
        tokio::spawn(heartbeat(Arc::downgrade(&store), stop));
        Ok(store)
    }

    /// Waits until `wait_replicas` replicas have every write made so far on this connection
    /// (the message just appended to `room` among them); a message they did not confirm in time
    /// is not acknowledged: its sender re-sends it, and the dedup window keeps it once. On a
    /// cluster, WAIT goes to the master of the room's slot, which took the append.
    async fn replicated(&self, conn: &mut Conn, room: &RoomName) -> Result<(), StoreError> {
        let wanted = self.settings.wait_replicas;
        let mut wait = redis::cmd("WAIT");
        wait.arg(wanted)
            .arg(self.settings.wait_timeout.as_millis() as u64);
        let acked: redis::RedisResult<u32> = match conn.cluster() {
            None => wait.query_async(conn).await,
            Some(cluster) => {
                let to = Route::new(slot(&room_key(room, "meta")), SlotAddr::Master);
                let to = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(to));
                match cluster.route_command(&wait, to).await {
                    Ok(value) => redis::from_owned_redis_value(value),
                    Err(e) => Err(e),
                }
            }
        };
        let acked = acked.map_err(unavailable)?;
        if acked < wanted {
            return Err(unavailable(format_args!(
                "{acked} of {wanted} replicas confirmed a message in time"
            )));
        }
        Ok(())
    }

    fn room_ttl_ms(&self) -> u64 {
        u64::try_from(self.settings.room_ttl.as_millis()).unwrap_or(u64::MAX)
    }

    fn held(&self) -> std::sync::MutexGuard<'_, HeldSessions> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn owner(&self, conn: &ConnId) -> String {
        format!("{} {conn}", self.settings.node)
    }

    /// Starts a call of one of the scripts that change a member of a room: KEYS members, owners,
    /// names; ARGV session, owner, then whatever the caller adds.
    fn member_call<'a>(
        &self,
        script: &'a Script,
        room: &RoomName,
        member: &Member,
    ) -> redis::ScriptInvocation<'a> {
        let mut call = script.prepare_invoke();
        call.key(room_key(room, "members"))
            .key(room_key(room, "owners"))
            .key(room_key(room, "names"))
            .arg(member.session.as_ref())
            .arg(self.owner(&member.conn));
        call
    }
}

#[async_trait::async_trait]
impl Sessions for RedisStore {
    async fn resume(
        &self,
        session: &SessionId,
        conn: &ConnId,
    ) -> Result<Option<UserName>, StoreError> {
        let resumed: Option<(String, u64)> = self
            .scripts
            .resume
            .key(session_key(session))
            .key(NAMES)
            .arg(self.owner(conn))
            .arg(session.as_ref())
            .invoke_async(&mut self.link.conn())
            .await
            .map_err(unavailable)?;
        let Some((name, since)) = resumed else {
            return Ok(None);
        };
        let name = UserName::parse(&name).ok();
        if let Some(name) = &name {
            self.held().hold(session, conn, name, since);
        }
        Ok(name)
    }

    async fn claim_name(
        &self,
        session: &SessionId,
        conn: &ConnId,
        name: &UserName,
        old: Option<&UserName>,
    ) -> Result<(), StoreError> {
        let claimed: i64 = self
            .scripts
            .claim
            .key(NAMES)
            .key(session_key(session))
            .arg(name.key())
            .arg(session.as_ref())
            .arg(self.owner(conn))
            .arg(name.as_str())
            .arg(old.map(|o| o.key()).unwrap_or_default())
            .arg(NODE_PREFIX)
            .arg(SESSION_PREFIX)
            .invoke_async(&mut self.link.conn())
            .await
            .map_err(unavailable)?;
        match u64::try_from(claimed) {
            Ok(since) if since > 0 => {
                self.held().hold(session, conn, name, since);
                Ok(())
            }
            _ => Err(StoreError::NameTaken(name.clone())),
        }
    }

    fn watch(&self, conn: &ConnId, end: CancellationToken) {
        self.held().watch(conn, end);
    }

    fn forget(&self, conn: &ConnId) {
        self.held().forget(conn);
    }

    async fn release(&self, session: &SessionId, conn: &ConnId, how: Departure) {
        self.held().let_go(session, conn);
        let result: redis::RedisResult<i64> = self
            .scripts
            .release
            .key(session_key(session))
            .key(NAMES)
            .arg(self.owner(conn))
            .arg(if how == Departure::Dropped { "1" } else { "0" })
            .arg(self.settings.session_ttl.as_millis() as u64)
            .arg(session.as_ref())
            .invoke_async(&mut self.link.conn())
            .await;
        if let Err(e) = result {
            // The session expires with its node's heartbeat instead.
            tracing::warn!(cause = %e, "session not released");
        }
    }
}

#[async_trait::async_trait]
impl Presence for RedisStore {
    async fn join(
        &self,
        room: &RoomName,
        member: &Member,
        create: bool,
        since: Option<&Position>,
    ) -> Result<Snapshot, StoreError> {
        type Joined = (Vec<String>, Vec<String>, String, String, i64, u8, usize);
        let (first, history, epoch, seq, opened, recovered, count): Joined = self
            .scripts
            .join
            .key(room_key(room, "meta"))
            .key(room_key(room, "log"))
            .key(room_key(room, "members"))
            .key(room_key(room, "owners"))
            .key(room_key(room, "ids"))
            .key(room_key(room, "id_order"))
            .key(room_key(room, "history"))
            .key(room_key(room, "names"))
            .arg(member.session.as_ref())
            .arg(self.owner(&member.conn))
            .arg(stored(&member.name))
            .arg(room_channel(room))
            .arg(notice(room, NoticeKind::Joined, &member.name, None))
            .arg(if create { "1" } else { "0" })
            .arg(self.room_ttl_ms())
            .arg(self.settings.history.window)
            .arg(since.map_or("", |s| s.epoch.as_str()))
            .arg(since.map_or(0, |s| s.seq))
            .arg(RECOVER_MAX)
            .arg(self.settings.list_max)
            .invoke_async(&mut self.link.conn())
            .await
            .map_err(unavailable)?;
        if opened < 0 {
            return Err(StoreError::CreationLimited);
        }
        let mut snapshot = snapshot(first, history, epoch, &seq, count);
        snapshot.created = opened == 1;
        snapshot.recovered = since.map(|_| recovered == 1);
        // A stored message that did not decode leaves a hole: then it was not a recovery.
        if let (Some(true), Some(since)) = (snapshot.recovered, since)
            && messages_after(
                snapshot.history.iter().cloned(),
                snapshot.last_seq,
                since.seq,
            )
            .is_none()
        {
            snapshot.recovered = Some(false);
            let skip = snapshot
                .history
                .len()
                .saturating_sub(self.settings.history.window);
            snapshot.history.drain(..skip);
        }
        Ok(snapshot)
    }

    async fn peek(&self, room: &RoomName) -> Result<Snapshot, StoreError> {
        type Peeked = (Vec<String>, Vec<String>, String, String, usize);
        let (first, history, epoch, seq, count): Peeked = self
            .scripts
            .peek
            .key(room_key(room, "meta"))
            .key(room_key(room, "log"))
            .key(room_key(room, "members"))
            .key(room_key(room, "history"))
            .key(room_key(room, "names"))
            .arg(self.settings.history.window)
            .arg(self.settings.list_max)
            .invoke_async(&mut self.link.conn())
            .await
            .map_err(unavailable)?;
        Ok(snapshot(first, history, epoch, &seq, count))
    }

    async fn leave(&self, room: &RoomName, member: &Member) -> Result<(), StoreError> {
        let _: i64 = self
            .member_call(&self.scripts.leave, room, member)
            .arg(room_channel(room))
            .invoke_async(&mut self.link.conn())
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn rename(&self, room: &RoomName, member: &Member) -> Result<(), StoreError> {
        let _: i64 = self
            .member_call(&self.scripts.rename, room, member)
            .arg(stored(&member.name))
            .arg(room_channel(room))
            .invoke_async(&mut self.link.conn())
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn members(
        &self,
        room: &RoomName,
        query: &MemberQuery,
    ) -> Result<MemberPage, StoreError> {
        // Entries are '<order key>\n<name>\n<session>'; no UTF-8 has the byte 0xff, so
        // '<key>\n\xff' comes after every entry of that key, '<prefix>\xff' after every key
        // that begins with the prefix.
        let prefix = query.prefix.as_bytes();
        let min = match &query.after {
            Some(after) if after.as_bytes() >= prefix => {
                [b"(", after.as_bytes(), b"\n\xff"].concat()
            }
            _ if prefix.is_empty() => b"-".to_vec(),
            _ => [b"[", prefix].concat(),
        };
        let max = match prefix.is_empty() {
            true => b"+".to_vec(),
            false => [b"(", prefix, b"\xff"].concat(),
        };
        let (entries, count): (Vec<String>, usize) = redis::pipe()
            .cmd("ZRANGEBYLEX")
            .arg(room_key(room, "names"))
            .arg(min)
            .arg(max)
            .arg("LIMIT")
            .arg(0)
            .arg(query.limit + 1)
            .cmd("HLEN")
            .arg(room_key(room, "members"))
            .query_async(&mut self.link.conn())
            .await
            .map_err(unavailable)?;
        let mut names = entry_names(entries);
        let next = (names.len() > query.limit).then(|| {
            names.truncate(query.limit);
            names.last().cloned()
        });
        Ok(MemberPage {
            names,
            next: next.flatten(),
            count,
        })
    }

    async fn reassert(
        &self,
        room: &RoomName,
        members: &[Member],
        delivered: Option<(&str, u64)>,
    ) -> Result<(), StoreError> {
        // One round trip for the whole room, however many members it has here.
        let (epoch, seq) = delivered.unwrap_or(("", 0));
        let mut call = self.scripts.reassert.prepare_invoke();
        call.key(room_key(room, "members"))
            .key(room_key(room, "owners"))
            .key(room_key(room, "meta"))
            .key(room_key(room, "names"))
            .arg(room_channel(room))
            .arg(epoch)
            .arg(seq);
        for member in members {
            call.arg(member.session.as_ref())
                .arg(self.owner(&member.conn))
                .arg(stored(&member.name))
                .arg(notice(room, NoticeKind::Joined, &member.name, None));
        }
        let raised: i64 = call
            .invoke_async(&mut self.link.conn())
            .await
            .map_err(unavailable)?;
        if raised == 1 {
            tracing::warn!(%room, seq, "redis lost messages this node delivered (a failover?): numbering goes on after them");
        }
        if !members.is_empty() {
            let _: () = redis::cmd("SADD")
                .arg(node_rooms_key(&self.settings.node))
                .arg(room.as_str())
                .query_async(&mut self.link.conn())
                .await
                .map_err(unavailable)?;
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Broker for RedisStore {
    async fn append(
        &self,
        room: &RoomName,
        from: &UserName,
        text: MessageText,
        client_id: Option<String>,
        change: Change,
        author: Option<String>,
    ) -> Result<Stored, StoreError> {
        let body = payload::message_body(
            room.as_str(),
            from.as_str(),
            text.as_str(),
            now_ms(),
            client_id.as_deref(),
            change,
            author.as_deref(),
        );
        // With `wait_replicas`, the link has a connection of its own for appends and their WAIT.
        let waited = self.link.waited_conn();
        let mut conn = waited.clone().unwrap_or_else(|| self.link.conn());
        let (seq, duplicate): (u64, u8) = self
            .scripts
            .append
            .key(room_key(room, "meta"))
            .key(room_key(room, "log"))
            .key(room_key(room, "ids"))
            .key(room_key(room, "id_order"))
            .key(room_key(room, "history"))
            .arg(room_channel(room))
            .arg(new_epoch())
            .arg(body)
            .arg(self.settings.history.size)
            .arg(client_id.as_deref().unwrap_or_default())
            .arg(self.settings.dedup_window)
            .arg(self.room_ttl_ms())
            .arg(self.settings.history.bytes)
            .invoke_async(&mut conn)
            .await
            .map_err(unavailable)?;
        if waited.is_some() {
            self.replicated(&mut conn, room).await?;
        }
        Ok(Stored {
            seq,
            duplicate: duplicate == 1,
        })
    }

    async fn since(
        &self,
        room: &RoomName,
        epoch: &str,
        seq: u64,
    ) -> Result<Option<Vec<ChatMessage>>, StoreError> {
        let (history, stored_epoch, last): (Vec<String>, String, String) = self
            .scripts
            .since
            .key(room_key(room, "meta"))
            .key(room_key(room, "log"))
            .key(room_key(room, "history"))
            .arg(seq)
            .invoke_async(&mut self.link.conn())
            .await
            .map_err(unavailable)?;
        if stored_epoch != epoch {
            return Ok(None);
        }
        Ok(messages_after(
            decode_history(history),
            last.parse().unwrap_or(0),
            seq,
        ))
    }

    async fn page(
        &self,
        room: &RoomName,
        before: Option<&Position>,
        limit: usize,
    ) -> Result<Page, StoreError> {
        let (newest_first, epoch): (Vec<String>, String) = self
            .scripts
            .page
            .key(room_key(room, "meta"))
            .key(room_key(room, "log"))
            .key(room_key(room, "history"))
            .arg(before.map(|b| b.seq.to_string()).unwrap_or_default())
            .arg(limit)
            .invoke_async(&mut self.link.conn())
            .await
            .map_err(unavailable)?;
        Ok(Page::answer(numbering(epoch), before, || {
            let more = newest_first.len() > limit;
            let mut messages = decode_history(newest_first.into_iter().take(limit).collect());
            messages.reverse();
            (messages, more)
        }))
    }

    async fn subscribe(&self, room: &RoomName) -> Result<Subscription, StoreError> {
        self.bus.subscribe(room).await.map_err(unavailable)
    }

    async fn signal(&self, room: &RoomName, msg: &ServerMsg) -> Result<(), StoreError> {
        // As the scripts publish: sharded on a cluster (see `Scripts`).
        let publish = match self.link.is_cluster() {
            true => "SPUBLISH",
            false => "PUBLISH",
        };
        let _: u64 = redis::cmd(publish)
            .arg(room_channel(room))
            .arg(payload::frame(msg))
            .query_async(&mut self.link.conn())
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn rule(&self, room: &RoomName, rule: Rule) -> Result<(), StoreError> {
        let now = now_ms();
        let (field, value, until) = match rule {
            Rule::Slow(seconds) => ("slow".to_owned(), seconds, 0),
            Rule::Mute { who, until_ms } => (format!("m:{who}"), until_ms, until_ms),
            Rule::Kick { who, until_ms } => (format!("k:{who}"), until_ms, until_ms),
        };
        let keep = self.room_ttl_ms().max(until.saturating_sub(now));
        let _: u64 = self
            .scripts
            .rule
            .key(room_key(room, "rules"))
            .arg(field)
            .arg(value)
            .arg(keep)
            .invoke_async(&mut self.link.conn())
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn gate(&self, room: &RoomName, who: &[String], act: Act) -> Result<u64, StoreError> {
        let turn = who.first().map(String::as_str).unwrap_or_default();
        let mut call = self.scripts.gate.prepare_invoke();
        call.key(room_key(room, "rules"))
            .key(room_key(room, &format!("turn:{turn}")))
            .arg(now_ms())
            .arg(act.as_str())
            .arg(self.room_ttl_ms());
        for key in who {
            call.arg(key);
        }
        let (verdict, n): (u8, u64) = call
            .invoke_async(&mut self.link.conn())
            .await
            .map_err(unavailable)?;
        match verdict {
            0 => Ok(n),
            1 => Err(StoreError::Muted(n)),
            2 => Err(StoreError::Kicked(n)),
            _ => Err(StoreError::Slowed(n)),
        }
    }
}
