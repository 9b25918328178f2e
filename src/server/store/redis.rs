//! The many-node store: state in Redis, events on Redis pub/sub.
//!
//! Key layout (the part in braces is the Redis Cluster hash tag, so that everything one script
//! touches lives in one slot):
//! - per room, tag `{r:<room>}`: `chorus:{r:<room>}:meta` (hash: `epoch`, `seq`),
//!   `:history` (list of message frames, newest last, trimmed to `history_size`), `:ids` (hash:
//!   client_id → seq) and `:id_order` (list of those ids, oldest first, trimmed to `dedup_window`),
//!   `:members` (hash: session → name), `:owners` (hash: session → "<node> <conn>"), and the
//!   channel `:events`;
//! - users, tag `{u}`: `chorus:{u}:names` (hash: lower-cased name → session),
//!   `chorus:{u}:s:<session>` (hash: `name`, `key`, `conn`, `node`; expires once detached),
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
    Broker, ConnId, Departure, Health, Member, Presence, SessionId, Sessions, Snapshot, StoreError,
    Stored, messages_after, new_epoch, now_ms, unavailable,
};
use crate::{
    protocol::{ChatMessage, MessageText, NoticeKind, RoomName, ServerMsg, UserName, sort_members},
    server::bus::{Conn, Link, RedisBus, Subscription, Target, payload, room_channel, slot},
};
use prometheus_client::metrics::counter::Counter;
use redis::{
    Script,
    cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr},
};

use std::{sync::Arc, time::Duration};
use tokio_util::sync::CancellationToken;

const NAMES: &str = "chorus:{u}:names";
const NODES: &str = "chorus:{u}:nodes";
const SESSION_PREFIX: &str = "chorus:{u}:s:";
const NODE_PREFIX: &str = "chorus:{u}:node:";
/// How long `/readyz` waits for Redis to answer.
const READY_TIMEOUT: Duration = Duration::from_millis(500);
/// How long a node may take to remove a dead node's members before another may try.
const REAP_CLAIM_MS: u64 = 30_000;

fn room_key(room: &RoomName, part: &str) -> String {
    format!("chorus:{{r:{room}}}:{part}")
}
fn session_key(session: &str) -> String {
    format!("{SESSION_PREFIX}{session}")
}
fn node_key(node: &str) -> String {
    format!("{NODE_PREFIX}{node}")
}
fn node_rooms_key(node: &str) -> String {
    format!("chorus:{{u}}:nr:{node}")
}
/// Held by the node sweeping the names, so that one node does it at a time.
const SWEEP_KEY: &str = "chorus:{u}:sweep";
/// Names looked at per step of a sweep.
const SWEEP_BATCH: u64 = 500;

/// A node's last status, for the status pages (expires unless refreshed).
fn status_key(node: &str) -> String {
    format!("chorus:{{u}}:status:{node}")
}

fn reap_key(node: &str) -> String {
    format!("chorus:{{u}}:reap:{node}")
}

/// Settings of the Redis store.
#[derive(Debug, Clone)]
pub struct RedisSettings {
    pub target: Target,
    /// Replicas that must have a message before it is acknowledged (`WAIT`); 0: none.
    pub wait_replicas: u32,
    /// How long to wait for them; past it the sender gets a retryable error.
    pub wait_timeout: Duration,
    pub node: Arc<str>,
    pub history_size: usize,
    pub dedup_window: usize,
    pub session_ttl: Duration,
    pub node_ttl: Duration,
    /// A room's messages, sequence and dedup ids expire after this long without a message or
    /// a join.
    pub room_ttl: Duration,
    /// Counts the pub/sub link's losses (the node's metrics).
    pub pubsub_lost: Counter,
}

struct Scripts {
    claim: Script,
    resume: Script,
    release: Script,
    join: Script,
    reassert: Script,
    leave: Script,
    rename: Script,
    append: Script,
    since: Script,
    reap: Script,
    sweep_names: Script,
}

impl Scripts {
    /// The scripts; on a cluster their events go out on sharded pub/sub (`SPUBLISH`, heard by
    /// the nodes subscribed on the master of the room's slot) instead of `PUBLISH`, which a
    /// cluster would copy to every one of its servers.
    fn new(sharded: bool) -> Self {
        let script = |source: &str| match sharded {
            true => Script::new(&source.replace(PUBLISH, SPUBLISH)),
            false => Script::new(source),
        };
        Self {
            claim: script(include_str!("lua/claim.lua")),
            resume: script(include_str!("lua/resume.lua")),
            release: script(include_str!("lua/release.lua")),
            join: script(include_str!("lua/join.lua")),
            reassert: script(include_str!("lua/reassert.lua")),
            leave: script(include_str!("lua/leave.lua")),
            rename: script(include_str!("lua/rename.lua")),
            append: script(include_str!("lua/append.lua")),
            since: script(include_str!("lua/since.lua")),
            sweep_names: script(include_str!("lua/sweep_names.lua")),
            reap: script(include_str!("lua/reap.lua")),
        }
    }
}

/// How the scripts publish; replaced by [`SPUBLISH`] on a cluster.
const PUBLISH: &str = "redis.call('PUBLISH',";
const SPUBLISH: &str = "redis.call('SPUBLISH',";

pub struct RedisStore {
    link: Link,
    bus: RedisBus,
    scripts: Scripts,
    settings: RedisSettings,
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

    fn owner(&self, conn: &ConnId) -> String {
        format!("{} {conn}", self.settings.node)
    }

    /// Starts a call of one of the scripts that change a member of a room: KEYS members, owners;
    /// ARGV session, owner, then whatever the caller adds.
    fn member_call<'a>(
        &self,
        script: &'a Script,
        room: &RoomName,
        member: &Member,
    ) -> redis::ScriptInvocation<'a> {
        let mut call = script.prepare_invoke();
        call.key(room_key(room, "members"))
            .key(room_key(room, "owners"))
            .arg(member.session.as_ref())
            .arg(self.owner(&member.conn));
        call
    }

    /// One beat: refresh this node's key; true if it had expired (others may have removed
    /// this node's members).
    async fn beat(&self, first: bool) -> redis::RedisResult<bool> {
        let mut conn = self.link.beats_conn();
        let node = &self.settings.node;
        let prev: Option<String> = redis::cmd("SET")
            .arg(node_key(node))
            .arg(now_ms())
            .arg("PX")
            .arg(self.settings.node_ttl.as_millis() as u64)
            .arg("GET")
            .query_async(&mut conn)
            .await?;
        redis::cmd("SADD")
            .arg(NODES)
            .arg(node.as_ref())
            .exec_async(&mut conn)
            .await?;
        Ok(prev.is_none() && !first)
    }

    /// Removes the members of nodes whose heartbeat expired, announcing them as `left`.
    async fn reap(&self) -> redis::RedisResult<()> {
        let mut conn = self.link.beats_conn();
        let nodes: Vec<String> = redis::cmd("SMEMBERS")
            .arg(NODES)
            .query_async(&mut conn)
            .await?;
        for dead in nodes.iter().filter(|n| n.as_str() != &*self.settings.node) {
            let alive: bool = redis::cmd("EXISTS")
                .arg(node_key(dead))
                .query_async(&mut conn)
                .await?;
            if alive {
                continue;
            }
            let claimed: Option<String> = redis::cmd("SET")
                .arg(reap_key(dead))
                .arg(self.settings.node.as_ref())
                .arg("NX")
                .arg("PX")
                .arg(REAP_CLAIM_MS)
                .query_async(&mut conn)
                .await?;
            if claimed.is_none() {
                continue;
            }
            let rooms: Vec<String> = redis::cmd("SMEMBERS")
                .arg(node_rooms_key(dead))
                .query_async(&mut conn)
                .await?;
            let mut removed = 0u64;
            for room in rooms.iter().filter_map(|r| RoomName::parse(r).ok()) {
                let n: u64 = self
                    .scripts
                    .reap
                    .key(room_key(&room, "members"))
                    .key(room_key(&room, "owners"))
                    .arg(format!("{dead} "))
                    .arg(room_channel(&room))
                    .invoke_async(&mut conn)
                    .await?;
                removed += n;
            }
            redis::cmd("DEL")
                .arg(node_rooms_key(dead))
                .exec_async(&mut conn)
                .await?;
            redis::cmd("SREM")
                .arg(NODES)
                .arg(dead)
                .exec_async(&mut conn)
                .await?;
            tracing::info!(node = %dead, rooms = rooms.len(), removed, "removed a dead node's members");
        }
        Ok(())
    }
}

impl RedisStore {
    /// How often the names are swept: as often as a detached session may hold its name, between
    /// one second and a minute.
    fn sweep_every(&self) -> Duration {
        self.settings
            .session_ttl
            .clamp(Duration::from_secs(1), Duration::from_secs(60))
    }

    /// Frees the names of sessions that are gone (expired after a dropped link, or held by a
    /// node that died), unless another node swept them lately. Returns how many were freed.
    async fn sweep_names(&self) -> redis::RedisResult<u64> {
        let mut conn = self.link.beats_conn();
        let every = u64::try_from(self.sweep_every().as_millis()).unwrap_or(60_000);
        let claimed: Option<String> = redis::cmd("SET")
            .arg(SWEEP_KEY)
            .arg(self.settings.node.as_ref())
            .arg("NX")
            .arg("PX")
            .arg(every.saturating_sub(every / 10).max(1))
            .query_async(&mut conn)
            .await?;
        if claimed.is_none() {
            return Ok(0);
        }
        let ttl = u64::try_from(self.settings.session_ttl.as_millis()).unwrap_or(u64::MAX);
        let (mut cursor, mut freed) = (String::from("0"), 0);
        loop {
            let (next, n): (String, u64) = self
                .scripts
                .sweep_names
                .key(NAMES)
                .arg(&cursor)
                .arg(SWEEP_BATCH)
                .arg(SESSION_PREFIX)
                .arg(NODE_PREFIX)
                .arg(ttl)
                .invoke_async(&mut conn)
                .await?;
            freed += n;
            if next == "0" {
                return Ok(freed);
            }
            cursor = next;
        }
    }
}

/// Keeps this node's heartbeat fresh and removes dead nodes' members, until `stop`.
async fn heartbeat(store: std::sync::Weak<RedisStore>, stop: CancellationToken) {
    let every = match store.upgrade() {
        Some(s) => s.settings.node_ttl / 4,
        None => return,
    };
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut first = true;
    // Since when this node's beats have been getting through. After Redis was unreachable,
    // every node's key may have expired meanwhile; reaping waits one TTL so that live nodes can
    // beat again before anyone is declared dead.
    let mut beating_since: Option<tokio::time::Instant> = None;
    let mut last_sweep = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let Some(store) = store.upgrade() else { return };
        match store.beat(first).await {
            Ok(lapsed) => {
                first = false;
                beating_since.get_or_insert_with(tokio::time::Instant::now);
                if lapsed {
                    tracing::warn!("this node's heartbeat had lapsed: re-registering its members");
                    store.bus.resync_all();
                }
            }
            Err(e) => {
                tracing::warn!(cause = %e, "heartbeat failed");
                beating_since = None;
                continue;
            }
        }
        if beating_since.is_some_and(|t| t.elapsed() >= store.settings.node_ttl)
            && let Err(e) = store.reap().await
        {
            tracing::warn!(cause = %e, "removing dead nodes' members failed");
        }
        if last_sweep.elapsed() >= store.sweep_every() {
            last_sweep = tokio::time::Instant::now();
            match store.sweep_names().await {
                Ok(0) => {}
                Ok(freed) => tracing::debug!(freed, "names of ended sessions freed"),
                Err(e) => tracing::warn!(cause = %e, "sweeping the names failed"),
            }
        }
    }
}

#[async_trait::async_trait]
impl Sessions for RedisStore {
    async fn resume(
        &self,
        session: &SessionId,
        conn: &ConnId,
    ) -> Result<Option<UserName>, StoreError> {
        let name: Option<String> = self
            .scripts
            .resume
            .key(session_key(session))
            .key(NAMES)
            .arg(conn.as_ref())
            .arg(self.settings.node.as_ref())
            .arg(session.as_ref())
            .invoke_async(&mut self.link.conn())
            .await
            .map_err(unavailable)?;
        Ok(name.and_then(|n| UserName::parse(&n).ok()))
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
            .arg(conn.as_ref())
            .arg(self.settings.node.as_ref())
            .arg(name.as_str())
            .arg(old.map(|o| o.key()).unwrap_or_default())
            .arg(NODE_PREFIX)
            .arg(SESSION_PREFIX)
            .invoke_async(&mut self.link.conn())
            .await
            .map_err(unavailable)?;
        if claimed == 1 {
            Ok(())
        } else {
            Err(StoreError::NameTaken(name.clone()))
        }
    }

    async fn release(&self, session: &SessionId, conn: &ConnId, how: Departure) {
        let result: redis::RedisResult<i64> = self
            .scripts
            .release
            .key(session_key(session))
            .key(NAMES)
            .arg(conn.as_ref())
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
    ) -> Result<Snapshot, StoreError> {
        let (names, history, epoch, seq, opened): (Vec<String>, Vec<String>, String, String, i64) =
            self.scripts
                .join
                .key(room_key(room, "meta"))
                .key(room_key(room, "history"))
                .key(room_key(room, "members"))
                .key(room_key(room, "owners"))
                .key(room_key(room, "ids"))
                .key(room_key(room, "id_order"))
                .arg(member.session.as_ref())
                .arg(self.owner(&member.conn))
                .arg(member.name.as_str())
                .arg(room_channel(room))
                .arg(notice(room, NoticeKind::Joined, &member.name, None))
                .arg(if create { "1" } else { "0" })
                .arg(self.room_ttl_ms())
                .invoke_async(&mut self.link.conn())
                .await
                .map_err(unavailable)?;
        if opened < 0 {
            return Err(StoreError::CreationLimited);
        }
        let mut members = names;
        sort_members(&mut members);
        Ok(Snapshot {
            members,
            history: decode_history(history),
            epoch: (!epoch.is_empty()).then_some(epoch),
            last_seq: seq.parse().unwrap_or(0),
            created: opened == 1,
        })
    }

    async fn leave(&self, room: &RoomName, member: &Member) -> Result<(), StoreError> {
        let _: i64 = self
            .member_call(&self.scripts.leave, room, member)
            .arg(room_channel(room))
            .arg(notice(room, NoticeKind::Left, &member.name, None))
            .invoke_async(&mut self.link.conn())
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn rename(
        &self,
        room: &RoomName,
        member: &Member,
        old: &UserName,
    ) -> Result<(), StoreError> {
        let _: i64 = self
            .member_call(&self.scripts.rename, room, member)
            .arg(member.name.as_str())
            .arg(room_channel(room))
            .arg(notice(room, NoticeKind::Renamed, &member.name, Some(old)))
            .invoke_async(&mut self.link.conn())
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn members(&self, room: &RoomName) -> Result<Vec<String>, StoreError> {
        let mut names: Vec<String> = redis::cmd("HVALS")
            .arg(room_key(room, "members"))
            .query_async(&mut self.link.conn())
            .await
            .map_err(unavailable)?;
        sort_members(&mut names);
        Ok(names)
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
            .arg(room_channel(room))
            .arg(epoch)
            .arg(seq);
        for member in members {
            call.arg(member.session.as_ref())
                .arg(self.owner(&member.conn))
                .arg(member.name.as_str())
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
    ) -> Result<Stored, StoreError> {
        let body = payload::message_body(
            room.as_str(),
            from.as_str(),
            text.as_str(),
            now_ms(),
            client_id.as_deref(),
        );
        // With `wait_replicas`, the link has a connection of its own for appends and their WAIT.
        let waited = self.link.waited_conn();
        let mut conn = waited.clone().unwrap_or_else(|| self.link.conn());
        let (seq, duplicate): (u64, u8) = self
            .scripts
            .append
            .key(room_key(room, "meta"))
            .key(room_key(room, "history"))
            .key(room_key(room, "ids"))
            .key(room_key(room, "id_order"))
            .arg(room_channel(room))
            .arg(new_epoch())
            .arg(body)
            .arg(self.settings.history_size)
            .arg(client_id.as_deref().unwrap_or_default())
            .arg(self.settings.dedup_window)
            .arg(self.room_ttl_ms())
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
            .key(room_key(room, "history"))
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

    async fn subscribe(&self, room: &RoomName) -> Result<Subscription, StoreError> {
        self.bus.subscribe(room).await.map_err(unavailable)
    }
}

#[async_trait::async_trait]
impl Health for RedisStore {
    fn accepting(&self) -> bool {
        self.bus.connected()
    }

    async fn share_status(&self, status: String, ttl: Duration) {
        let set = redis::cmd("SET")
            .arg(status_key(&self.settings.node))
            .arg(status)
            .arg("PX")
            .arg(ttl.as_millis() as u64)
            .exec_async(&mut self.link.conn())
            .await;
        if let Err(e) = set {
            tracing::debug!(cause = %e, "cannot share this node's status");
        }
    }

    async fn node_statuses(&self) -> Vec<String> {
        let mut conn = self.link.conn();
        let nodes: Vec<String> = match redis::cmd("SMEMBERS")
            .arg(NODES)
            .query_async(&mut conn)
            .await
        {
            Ok(nodes) => nodes,
            Err(e) => {
                tracing::debug!(cause = %e, "cannot list the nodes");
                return Vec::new();
            }
        };
        if nodes.is_empty() {
            return Vec::new();
        }
        let keys: Vec<String> = nodes.iter().map(|n| status_key(n)).collect();
        match redis::cmd("MGET")
            .arg(keys)
            .query_async::<Vec<Option<String>>>(&mut conn)
            .await
        {
            Ok(statuses) => statuses.into_iter().flatten().collect(),
            Err(e) => {
                tracing::debug!(cause = %e, "cannot read the nodes' statuses");
                Vec::new()
            }
        }
    }

    async fn ready(&self) -> bool {
        if !self.bus.connected() {
            return false;
        }
        let mut conn = self.link.conn();
        let cmd = redis::cmd("PING");
        let ping = cmd.query_async::<String>(&mut conn);
        matches!(tokio::time::timeout(READY_TIMEOUT, ping).await, Ok(Ok(_)))
    }

    async fn close(&self) {
        let node = &self.settings.node;
        let mut pipe = redis::pipe();
        pipe.del(node_key(node))
            .del(node_rooms_key(node))
            .srem(NODES, node.as_ref());
        if let Err(e) = pipe.exec_async(&mut self.link.conn()).await {
            tracing::warn!(cause = %e, "could not deregister this node");
        }
    }
}

#[cfg(test)]
mod tests {
    //! What the Lua scripts build, read back as the protocol's Rust types: a real redis-server
    //! runs them (the frames are made in Redis, so only Redis can say what they are).
    use super::*;
    use futures_util::StreamExt;
    use std::process::{Child, Command, Stdio};

    /// A throwaway redis-server on a free loopback port, killed on drop.
    struct Server(Child, u16);

    impl Server {
        fn start() -> Self {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            let child = Command::new("redis-server")
                .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("redis-server starts (scripts/setup.sh installs it)");
            let deadline = std::time::Instant::now() + Duration::from_secs(10);
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(std::time::Instant::now() < deadline, "redis-server listens");
                std::thread::sleep(Duration::from_millis(20));
            }
            Self(child, port)
        }
    }

    impl Drop for Server {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }

    fn member(session: &str, name: &str) -> Member {
        Member {
            session: session.into(),
            conn: format!("c-{session}").into(),
            name: UserName::parse(name).expect("valid name"),
        }
    }

    #[test]
    fn on_a_cluster_every_script_publishes_on_sharded_pub_sub() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/server/store/lua");
        let mut publishing = 0;
        for entry in std::fs::read_dir(dir).expect("the scripts' directory") {
            let path = entry.expect("a script").path();
            let source = std::fs::read_to_string(&path).expect("a readable script");
            publishing += usize::from(source.contains(PUBLISH));
            // Any other spelling of PUBLISH would escape the replacement and go to a classic
            // channel no node listens to on a cluster.
            let sharded = source.replace(PUBLISH, SPUBLISH);
            assert!(
                !sharded
                    .to_uppercase()
                    .replace("SPUBLISH", "")
                    .contains("PUBLISH"),
                "{}: publishes in a form the cluster's replacement misses",
                path.display()
            );
        }
        assert_eq!(
            publishing, 6,
            "join, leave, rename, append, reassert and reap publish"
        );
    }

    /// Keeps Redis busy for ARGV[1] microseconds (as a heavy join script would).
    const BUSY: &str = "local t = redis.call('TIME') local t0 = t[1] * 1000000 + t[2] \
        repeat t = redis.call('TIME') until t[1] * 1000000 + t[2] - t0 >= tonumber(ARGV[1]) \
        return 1";

    #[tokio::test]
    async fn a_burst_past_redis_s_pace_queues_in_the_node_and_the_heartbeat_goes_first() {
        let server = Server::start();
        let url = format!("redis://127.0.0.1:{}/", server.1);
        let link = Link::connect(&Target::Url(url), false, CancellationToken::new())
            .await
            .expect("redis answers");
        // 300 calls of 10 ms each at once: 3 s of Redis's time, past the 2 s a call may wait
        // for its answer. Unbounded, the last third would time out (while Redis still ran them).
        let busy = Script::new(BUSY);
        let calls: Vec<_> = (0..300)
            .map(|_| {
                let (mut conn, busy) = (link.conn(), busy.clone());
                async move { busy.arg(10_000).invoke_async::<i64>(&mut conn).await }
            })
            .collect();
        let burst = tokio::spawn(futures_util::future::join_all(calls));
        tokio::time::sleep(Duration::from_millis(100)).await;
        // The heartbeat's connection is not queued behind the burst.
        let pong: String = redis::cmd("PING")
            .query_async(&mut link.beats_conn())
            .await
            .expect("the heartbeat's ping is answered");
        assert_eq!(pong, "PONG");
        assert!(!burst.is_finished(), "answered while the burst still runs");
        let failed: Vec<String> = burst
            .await
            .expect("the burst ran")
            .into_iter()
            .filter_map(|r| r.err().map(|e| e.to_string()))
            .collect();
        assert!(
            failed.is_empty(),
            "{} calls failed: {:?}",
            failed.len(),
            failed.first()
        );
    }

    #[tokio::test]
    async fn what_the_scripts_publish_reads_back_as_protocol_frames() {
        let server = Server::start();
        let url = format!("redis://127.0.0.1:{}/", server.1);
        let stop = CancellationToken::new();
        let settings = RedisSettings {
            target: Target::Url(url.clone()),
            wait_replicas: 0,
            wait_timeout: Duration::from_millis(200),
            node: "n1".into(),
            history_size: 10,
            dedup_window: 10,
            session_ttl: Duration::from_secs(30),
            node_ttl: Duration::from_secs(5),
            room_ttl: Duration::from_secs(60),
            pubsub_lost: Counter::default(),
        };
        let store = RedisStore::connect(settings, stop.clone())
            .await
            .expect("connects");
        let room = RoomName::lobby();
        let mut events = redis::Client::open(url.as_str())
            .expect("url")
            .get_async_pubsub()
            .await
            .expect("pub/sub");
        events
            .subscribe(room_channel(&room))
            .await
            .expect("subscribed");
        let mut events = events.into_on_message();
        let mut next = async || -> ServerMsg {
            let msg = tokio::time::timeout(Duration::from_secs(5), events.next())
                .await
                .expect("an event in time")
                .expect("pub/sub open");
            let payload: String = msg.get_payload().expect("text");
            payload::decode("lobby", &payload)
                .unwrap_or_else(|e| panic!("{payload} is not a server frame: {e}"))
        };

        store
            .join(&room, &member("s1", "ann"), true)
            .await
            .expect("joins");
        assert!(matches!(
            next().await,
            ServerMsg::Notice {
                kind: NoticeKind::Joined,
                ..
            }
        ));
        // The same session joining under another name: the script itself announces it.
        store
            .join(&room, &member("s1", "anna"), true)
            .await
            .expect("joins");
        assert_eq!(
            next().await,
            ServerMsg::Notice {
                room: room.to_string(),
                kind: NoticeKind::Renamed,
                name: "anna".into(),
                old_name: Some("ann".into()),
            }
        );

        let text = MessageText::parse("hé \"quoted\" \\ {json}".into(), 100).expect("valid");
        let from = UserName::parse("anna").expect("valid name");
        let stored = store
            .append(&room, &from, text, Some("c1".into()))
            .await
            .expect("stored");
        let ServerMsg::Message(m) = next().await else {
            panic!("a message frame");
        };
        assert_eq!(
            (m.seq, m.room.as_str(), m.from.as_str(), m.text.as_str()),
            (stored.seq, "lobby", "anna", "hé \"quoted\" \\ {json}")
        );
        assert_eq!(m.client_id.as_deref(), Some("c1"));
        assert!(!m.epoch.is_empty());
        let history = store.since(&room, &m.epoch, 0).await.expect("read");
        assert_eq!(
            history,
            Some(vec![m]),
            "the stored frame is the published one"
        );

        // The node's members removed as a dead node's are: each announced as left.
        let reaped: i64 = store
            .scripts
            .reap
            .key(room_key(&room, "members"))
            .key(room_key(&room, "owners"))
            .arg("n1 ")
            .arg(room_channel(&room))
            .invoke_async(&mut store.link.conn())
            .await
            .expect("reaps");
        assert_eq!(reaped, 1);
        assert_eq!(
            next().await,
            ServerMsg::Notice {
                room: room.to_string(),
                kind: NoticeKind::Left,
                name: "anna".into(),
                old_name: None,
            }
        );
        stop.cancel();
    }
}
