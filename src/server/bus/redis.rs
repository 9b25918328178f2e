//! The Redis bus: pub/sub connections subscribed to the channels of exactly the rooms the node
//! has members in.
//!
//! Channel layout: `chorus:{r:<room>}:events`, one channel per room. A node hears only the rooms it
//! serves (no pattern subscriptions, no node-wide firehose), and the `{r:<room>}` hash tag puts
//! the channel in the same Redis Cluster slot as the room's keys (`chorus:{r:<room>}:meta`,
//! `:history`, `:members`, `:owners`), so the script that stores a message also publishes it.
//!
//! One Redis (or the master Sentinel names) is one *shard*: one pub/sub connection, `SUBSCRIBE`.
//! A Redis Cluster has a shard per master: the node reads the slot map every
//! [`TOPOLOGY_EVERY`] and keeps one connection per master, on which it `SSUBSCRIBE`s the
//! channels whose slot that master owns (sharded pub/sub: a message goes only to the master of
//! its slot and its replicas, not to every server of the cluster).
//!
//! A supervisor task owns the connections and never waits on Redis: connecting, subscribing,
//! unsubscribing and pinging run beside it and report back, so one slow answer does not hold up
//! the events of any room. When a shard's connection is lost (Redis restarted, network cut, a
//! ping unanswered, a master that moved, a slot that moved away), the supervisor reconnects it
//! with backoff and full jitter, subscribes its rooms again, and then sends each room
//! [`BusItem::Resync`]: the room task fills the gap from the stored history. Re-subscribing is
//! not left to a library's reconnect hook: a missing subscription would be silent, so it is
//! done, awaited and checked here.
//!
//! A room's subscriber gets its subscription once Redis confirmed the channel; its receiver was
//! made when it asked, so nothing published from then on is missed. A channel has at most one
//! command in flight at a time: an `UNSUBSCRIBE` must not overtake a later `SUBSCRIBE`.
//!
//! The connections speak RESP3, where pub/sub messages arrive as pushes beside the replies;
//! each command subscribes or unsubscribes one channel, so each has exactly one reply.

use super::{BusEvent, BusItem, Link, SlotRange, Subscription};
use crate::protocol::RoomName;
use prometheus_client::metrics::counter::Counter;
use redis::{
    AsyncConnectionConfig, Client, ProtocolVersion, PushInfo, PushKind, aio::MultiplexedConnection,
};
use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};
use tokio::{
    sync::{broadcast, mpsc, oneshot},
    time::Instant,
};
use tokio_util::sync::CancellationToken;

/// The channel a room's events are published on.
pub fn room_channel(room: &RoomName) -> String {
    format!("chorus:{{r:{room}}}:events")
}

/// The Redis Cluster slot of a key or channel: CRC16 of its hash tag (the part between the
/// first `{` and the next `}`, when not empty) or of the whole name, modulo 16384.
pub fn slot(key: &str) -> u16 {
    let tagged = key.find('{').and_then(|open| {
        let rest = &key[open + 1..];
        rest.find('}')
            .filter(|&close| close > 0)
            .map(|close| &rest[..close])
    });
    crc16::State::<crc16::XMODEM>::calculate(tagged.unwrap_or(key).as_bytes()) % 16384
}

/// How long one Redis round trip of the supervisor may take before the link counts as dead.
const REDIS_TIMEOUT: Duration = Duration::from_secs(2);
/// Each connection is pinged this often, so a silently dead link is noticed.
const PING_EVERY: Duration = Duration::from_secs(5);
/// How often a cluster's slot map is read.
pub const TOPOLOGY_EVERY: Duration = Duration::from_secs(1);
/// How often the supervisor looks for shards due to reconnect.
const RETRY_CHECK: Duration = Duration::from_millis(50);
/// Items a room task may fall behind by; past it, it resyncs from history.
const ROOM_CAPACITY: usize = 1024;

type Reply = oneshot::Sender<Result<Subscription, String>>;

enum Request {
    Subscribe(RoomName, Reply),
    /// Tell every room to resync (the store may have lost this node's members).
    ResyncAll,
}

/// A shard is named by its master's `host:port`.
type ShardId = Arc<str>;

/// One connection of one shard: the shard, and which of its connections (they are counted, so
/// that a late answer from a lost one is told apart).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Via {
    shard: ShardId,
    generation: u64,
}

/// A push (a message, or news of the connection), and the connection it came on.
type Pushed = (Via, PushInfo);

/// What came back from work done beside the supervisor.
enum Done {
    Connected(Via, Result<MultiplexedConnection, String>),
    Subscribed(Via, String, Result<(), String>),
    Unsubscribed(Via, String, Result<(), String>),
    Pinged(Via, Result<(), String>),
    Topology(Result<Vec<SlotRange>, String>),
}

enum ShardState {
    /// Not connected; connect again at this moment.
    Down {
        retry_at: Instant,
    },
    Connecting,
    Up(MultiplexedConnection),
}

struct Shard {
    state: ShardState,
    /// The current connection's number.
    generation: u64,
    /// Failed connects in a row, for the backoff.
    attempt: u32,
}

/// Where a room's channel stands on its shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sub {
    /// Not subscribed (its shard is down or unknown).
    Off,
    Subscribing,
    On,
    /// Unsubscribing because the room's last subscriber left.
    Leaving,
}

struct Route {
    room: RoomName,
    slot: u16,
    tx: broadcast::Sender<BusItem>,
    /// Subscribers waiting for Redis to confirm the channel, each with the receiver made when it
    /// asked, so that nothing published once the channel is subscribed is missed.
    waiting: Vec<(Reply, broadcast::Receiver<BusItem>)>,
    sub: Sub,
    /// The connection the channel is subscribed (or being subscribed, or unsubscribed) on.
    via: Option<Via>,
    /// The subscription was lost: the room resyncs once it is back.
    lost: bool,
}

pub struct RedisBus {
    requests: mpsc::UnboundedSender<Request>,
    connected: Arc<AtomicBool>,
}

impl RedisBus {
    /// Starts the supervisor. `rooms_key` names the set where this node lists the rooms it has
    /// members in, so that if it dies another node can find and remove them.
    pub fn start(link: Link, rooms_key: String, lost: Counter, stop: CancellationToken) -> Self {
        let (requests, requests_rx) = mpsc::unbounded_channel();
        let connected = Arc::new(AtomicBool::new(false));
        let cluster = link.is_cluster();
        let mut supervisor = Supervisor {
            listing: list_rooms(link.clone()),
            cluster,
            link,
            rooms_key,
            shards: HashMap::new(),
            slots: Vec::new(),
            routes: HashMap::new(),
            connected: connected.clone(),
            lost,
            done: mpsc::unbounded_channel(),
            pushes: mpsc::unbounded_channel(),
            unsubscribed: mpsc::unbounded_channel(),
        };
        if !cluster {
            supervisor.follow_master();
        }
        tokio::spawn(supervisor.run(requests_rx, stop));
        Self {
            requests,
            connected,
        }
    }

    /// True while every shard's pub/sub connection is up.
    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    /// Asks every room task of this node to resync.
    pub fn resync_all(&self) {
        let _ = self.requests.send(Request::ResyncAll);
    }

    /// Subscribes this node to the room; returns once Redis confirmed it, so nothing published
    /// afterwards can be missed.
    pub async fn subscribe(&self, room: &RoomName) -> Result<Subscription, String> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(Request::Subscribe(room.clone(), reply))
            .map_err(|_| "the bus stopped".to_owned())?;
        answer
            .await
            .unwrap_or_else(|_| Err("the bus stopped".to_owned()))
    }
}

/// Applies the node's room listing commands one after another, in the order given, so that a
/// room added, removed and added again ends up listed. Ends with the supervisor.
fn list_rooms(link: Link) -> mpsc::UnboundedSender<redis::Cmd> {
    let (tx, mut rx) = mpsc::unbounded_channel::<redis::Cmd>();
    tokio::spawn(async move {
        while let Some(cmd) = rx.recv().await {
            if let Err(e) = cmd.exec_async(&mut link.conn()).await {
                tracing::warn!(cause = %e, "cannot update this node's room list in redis");
            }
        }
    });
    tx
}

/// Runs `work` beside the supervisor, within [`REDIS_TIMEOUT`], and reports how it went.
fn beside<T: Send + 'static, E: std::fmt::Display>(
    done: &mpsc::UnboundedSender<Done>,
    work: impl Future<Output = Result<T, E>> + Send + 'static,
    report: impl FnOnce(Result<T, String>) -> Done + Send + 'static,
) {
    let done = done.clone();
    tokio::spawn(async move {
        let result = match tokio::time::timeout(REDIS_TIMEOUT, work).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("redis did not answer in time".to_owned()),
        };
        let _ = done.send(report(result));
    });
}

struct Supervisor {
    link: Link,
    cluster: bool,
    /// SADD/SREM of this node's rooms, applied in order beside the supervisor.
    listing: mpsc::UnboundedSender<redis::Cmd>,
    rooms_key: String,
    shards: HashMap<ShardId, Shard>,
    /// A cluster's slot map, sorted; empty for one Redis, whose one shard has every slot.
    slots: Vec<(u16, u16, ShardId)>,
    /// Channel name → the room and its local subscribers.
    routes: HashMap<String, Route>,
    connected: Arc<AtomicBool>,
    /// Counts lost connections.
    lost: Counter,
    done: (mpsc::UnboundedSender<Done>, mpsc::UnboundedReceiver<Done>),
    /// Every connection's pushes (the rooms' messages among them), tagged with the connection.
    pushes: (
        mpsc::UnboundedSender<Pushed>,
        mpsc::UnboundedReceiver<Pushed>,
    ),
    /// Subscriptions report here when dropped.
    unsubscribed: (
        mpsc::UnboundedSender<RoomName>,
        mpsc::UnboundedReceiver<RoomName>,
    ),
}

impl Supervisor {
    async fn run(
        mut self,
        mut requests: mpsc::UnboundedReceiver<Request>,
        stop: CancellationToken,
    ) {
        let mut moved = self.link.moved();
        let mut ping = tokio::time::interval(PING_EVERY);
        let mut topology = tokio::time::interval(TOPOLOGY_EVERY);
        let mut retry = tokio::time::interval(RETRY_CHECK);
        for timer in [&mut ping, &mut topology, &mut retry] {
            timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        }
        loop {
            tokio::select! {
                biased;
                _ = stop.cancelled() => return,
                Some((via, push)) = self.pushes.1.recv() => self.pushed(via, push),
                req = requests.recv() => match req {
                    Some(Request::Subscribe(room, reply)) => self.subscribe(room, reply),
                    Some(Request::ResyncAll) => self.resync_all(),
                    None => return,
                },
                Some(done) = self.done.1.recv() => self.finished(done),
                Some(room) = self.unsubscribed.1.recv() => self.leave_if_unused(&room),
                // A new master (Sentinel failover): follow it at once.
                Ok(()) = moved.changed() => self.follow_master(),
                _ = topology.tick(), if self.cluster => self.read_topology(),
                _ = ping.tick() => self.ping_all(),
                _ = retry.tick() => self.reconnect_due(),
            }
        }
    }

    /// Every subscribed room resyncs now; the others will once subscribed again.
    fn resync_all(&mut self) {
        for route in self.routes.values_mut() {
            match route.sub {
                Sub::On => {
                    let _ = route.tx.send(BusItem::Resync);
                }
                _ => route.lost = true,
            }
        }
    }

    /// The shard a channel's slot belongs to.
    fn owner(&self, slot: u16) -> Option<ShardId> {
        if !self.cluster {
            return self.shards.keys().next().cloned();
        }
        let i = self.slots.partition_point(|(_, end, _)| *end < slot);
        self.slots
            .get(i)
            .filter(|(start, _, _)| *start <= slot)
            .map(|(_, _, shard)| shard.clone())
    }

    /// The connection a shard has up, if any.
    fn up(&self, shard: &ShardId) -> Option<(Via, MultiplexedConnection)> {
        let s = self.shards.get(shard)?;
        match &s.state {
            ShardState::Up(conn) => Some((
                Via {
                    shard: shard.clone(),
                    generation: s.generation,
                },
                conn.clone(),
            )),
            _ => None,
        }
    }

    fn is_current(&self, via: &Via) -> bool {
        self.shards
            .get(&via.shard)
            .is_some_and(|s| s.generation == via.generation)
    }

    fn update_connected(&self) {
        let all_up = !self.shards.is_empty()
            && (!self.cluster || !self.slots.is_empty())
            && self
                .shards
                .values()
                .all(|s| matches!(s.state, ShardState::Up(_)));
        self.connected.store(all_up, Ordering::Relaxed);
    }

    /// One Redis: its one shard is the current master. Called at start and when Sentinel names
    /// a new master; the old master's connection is dropped and its rooms move.
    fn follow_master(&mut self) {
        let master: ShardId = self.link.master().into();
        self.set_shards(vec![master]);
    }

    /// Makes `shards` the shards: new ones connect now, gone ones are dropped (their rooms'
    /// subscriptions count as lost), and every room goes to the shard that owns its slot.
    fn set_shards(&mut self, shards: Vec<ShardId>) {
        let gone: Vec<ShardId> = self
            .shards
            .keys()
            .filter(|s| !shards.contains(s))
            .cloned()
            .collect();
        for shard in gone {
            self.shards.remove(&shard);
            self.lose_routes_on(&shard);
        }
        for shard in shards {
            self.shards.entry(shard).or_insert_with(|| Shard {
                state: ShardState::Down {
                    retry_at: Instant::now(),
                },
                generation: 0,
                attempt: 0,
            });
        }
        self.place_routes();
        self.reconnect_due();
        self.update_connected();
    }

    /// Every room not subscribed on the shard that owns its slot is moved there.
    fn place_routes(&mut self) {
        let channels: Vec<String> = self.routes.keys().cloned().collect();
        for channel in channels {
            let Some(route) = self.routes.get(&channel) else {
                continue;
            };
            let owner = self.owner(route.slot);
            let placed = route.via.as_ref().map(|v| &v.shard) == owner.as_ref();
            if route.sub == Sub::Leaving || (placed && route.sub != Sub::Off) {
                continue;
            }
            if route.sub != Sub::Off {
                self.lose_route(&channel);
            }
            self.send_subscribe(&channel);
        }
    }

    /// Reads the cluster's slot map, beside.
    fn read_topology(&self) {
        let link = self.link.clone();
        beside(
            &self.done.0,
            async move { link.slots().await },
            Done::Topology,
        );
    }

    fn new_topology(&mut self, ranges: Vec<SlotRange>) {
        let slots: Vec<(u16, u16, ShardId)> = ranges
            .into_iter()
            .map(|r| (r.start, r.end, ShardId::from(r.master)))
            .collect();
        if slots == self.slots {
            return;
        }
        if !self.slots.is_empty() {
            tracing::warn!(
                ranges = slots.len(),
                "redis cluster slots moved: following them"
            );
        }
        let mut masters: Vec<ShardId> = slots.iter().map(|(_, _, m)| m.clone()).collect();
        masters.sort();
        masters.dedup();
        self.slots = slots;
        self.set_shards(masters);
    }

    /// Opens a connection for every shard that is down and due.
    fn reconnect_due(&mut self) {
        let now = Instant::now();
        let due: Vec<ShardId> = self
            .shards
            .iter()
            .filter(|(_, s)| matches!(s.state, ShardState::Down { retry_at } if retry_at <= now))
            .map(|(id, _)| id.clone())
            .collect();
        for shard in due {
            self.connect(shard);
        }
    }

    fn connect(&mut self, shard: ShardId) {
        let Some(s) = self.shards.get_mut(&shard) else {
            return;
        };
        s.generation += 1;
        s.state = ShardState::Connecting;
        let via = Via {
            shard: shard.clone(),
            generation: s.generation,
        };
        let info = match self.link.info_for(&shard) {
            Ok(info) => info,
            Err(e) => {
                let _ = self.done.0.send(Done::Connected(via, Err(e.to_string())));
                return;
            }
        };
        let pushes = self.pushes.0.clone();
        let tag = via.clone();
        let opening = async move {
            let mut info = info;
            info.redis.protocol = ProtocolVersion::RESP3;
            let config = AsyncConnectionConfig::new()
                .set_connection_timeout(REDIS_TIMEOUT)
                .set_response_timeout(REDIS_TIMEOUT)
                .set_push_sender(move |push: PushInfo| pushes.send((tag.clone(), push)));
            Client::open(info)?
                .get_multiplexed_async_connection_with_config(&config)
                .await
        };
        beside(&self.done.0, opening, move |r| Done::Connected(via, r));
    }

    fn finished(&mut self, done: Done) {
        match done {
            Done::Connected(via, result) => {
                if !self.is_current(&via) {
                    return;
                }
                match result {
                    Ok(conn) => self.shard_up(&via, conn),
                    Err(why) => self.shard_lost(&via, &why),
                }
            }
            Done::Subscribed(via, channel, result) => self.subscribed(via, channel, result),
            Done::Unsubscribed(via, channel, result) => self.unsubscribed(via, channel, result),
            Done::Pinged(via, Err(why)) => self.shard_lost(&via, &why),
            Done::Pinged(_, Ok(())) => {}
            Done::Topology(Ok(ranges)) => self.new_topology(ranges),
            Done::Topology(Err(why)) => {
                tracing::debug!(cause = %why, "cannot read the redis cluster's slots")
            }
        }
    }

    fn shard_up(&mut self, via: &Via, conn: MultiplexedConnection) {
        let Some(s) = self.shards.get_mut(&via.shard) else {
            return;
        };
        if s.attempt > 0 {
            tracing::info!(shard = %via.shard, "redis pub/sub back: resyncing its rooms");
        }
        s.attempt = 0;
        s.state = ShardState::Up(conn);
        self.update_connected();
        let here: Vec<String> = self
            .routes
            .iter()
            .filter(|(_, r)| r.sub == Sub::Off && self.owner(r.slot).as_ref() == Some(&via.shard))
            .map(|(c, _)| c.clone())
            .collect();
        for channel in here {
            self.send_subscribe(&channel);
        }
    }

    /// A shard's connection is gone: its rooms' subscriptions are lost (they resync once back),
    /// and it reconnects after a backoff.
    fn shard_lost(&mut self, via: &Via, why: &str) {
        if !self.is_current(via) {
            return;
        }
        let Some(s) = self.shards.get_mut(&via.shard) else {
            return;
        };
        let was_up = matches!(s.state, ShardState::Up(_));
        // Full jitter over an exponentially growing cap: many nodes losing the same Redis do
        // not come back in lockstep.
        let cap_ms = (100u64 << s.attempt.min(6)).min(5_000);
        let wait = Duration::from_millis(rand::random::<u64>() % cap_ms + 50);
        s.attempt = s.attempt.saturating_add(1);
        s.generation += 1;
        s.state = ShardState::Down {
            retry_at: Instant::now() + wait,
        };
        if was_up {
            self.lost.inc();
            tracing::warn!(shard = %via.shard, cause = %why, "redis pub/sub lost; reconnecting");
        } else {
            tracing::warn!(shard = %via.shard, cause = %why, attempt = s.attempt, "cannot reach redis pub/sub");
        }
        self.lose_routes_on(&via.shard);
        self.update_connected();
        if self.cluster {
            // A master that died or was demoted: its replica may own the slots by now.
            self.read_topology();
        }
    }

    /// Every room on `shard` lost its subscription.
    fn lose_routes_on(&mut self, shard: &ShardId) {
        let channels: Vec<String> = self
            .routes
            .iter()
            .filter(|(_, r)| r.via.as_ref().is_some_and(|v| &v.shard == shard))
            .map(|(c, _)| c.clone())
            .collect();
        for channel in channels {
            self.lose_route(&channel);
        }
    }

    /// The room's subscription is gone: those waiting for it are refused (the joiner gets a
    /// retryable error), the room resyncs once it is back, or is forgotten if nobody uses it.
    fn lose_route(&mut self, channel: &str) {
        let Some(route) = self.routes.get_mut(channel) else {
            return;
        };
        for (reply, rx) in route.waiting.drain(..) {
            drop(rx);
            let _ = reply.send(Err("redis is unreachable".into()));
        }
        route.lost |= route.sub == Sub::On;
        route.sub = Sub::Off;
        route.via = None;
        if route.tx.receiver_count() == 0 {
            self.forget(channel);
        }
    }

    /// Subscribes the asker to the room: at once if the node already has the channel, else
    /// once Redis confirms it.
    fn subscribe(&mut self, room: RoomName, reply: Reply) {
        let channel = room_channel(&room);
        if let Some(route) = self.routes.get_mut(&channel) {
            let rx = route.tx.subscribe();
            match route.sub {
                Sub::On => {
                    let _ = reply.send(Ok(self.subscription(room, rx)));
                }
                Sub::Subscribing | Sub::Leaving => route.waiting.push((reply, rx)),
                Sub::Off => {
                    route.waiting.push((reply, rx));
                    self.send_subscribe(&channel);
                }
            }
            return;
        }
        let (tx, rx) = broadcast::channel(ROOM_CAPACITY);
        let slot = slot(&channel);
        self.routes.insert(
            channel.clone(),
            Route {
                room,
                slot,
                tx,
                waiting: vec![(reply, rx)],
                sub: Sub::Off,
                via: None,
                lost: false,
            },
        );
        self.send_subscribe(&channel);
    }

    /// Sends the channel's SUBSCRIBE (SSUBSCRIBE on a cluster) on the shard that owns it, if
    /// that shard is up; otherwise those waiting are refused and the room waits for the shard.
    fn send_subscribe(&mut self, channel: &str) {
        let Some(route) = self.routes.get(channel) else {
            return;
        };
        let Some((via, mut conn)) = self.owner(route.slot).and_then(|s| self.up(&s)) else {
            self.lose_route(channel);
            return;
        };
        let Some(route) = self.routes.get_mut(channel) else {
            return;
        };
        route.sub = Sub::Subscribing;
        route.via = Some(via.clone());
        let mut cmd = redis::cmd(if self.cluster {
            "SSUBSCRIBE"
        } else {
            "SUBSCRIBE"
        });
        cmd.arg(channel);
        let channel = channel.to_owned();
        let work = async move { cmd.exec_async(&mut conn).await };
        beside(&self.done.0, work, move |r| {
            Done::Subscribed(via, channel, r)
        });
    }

    /// Redis confirmed the channel: everyone waiting for it gets its subscription, and a room
    /// that had lost it resyncs.
    fn subscribed(&mut self, via: Via, channel: String, result: Result<(), String>) {
        let Some(route) = self.routes.get_mut(&channel) else {
            return;
        };
        if route.via.as_ref() != Some(&via) || route.sub != Sub::Subscribing {
            return; // asked on a connection that is gone
        }
        if let Err(why) = result {
            if why.contains("MOVED") {
                // The slot map was stale: read it again, then subscribe where it says.
                self.lose_route(&channel);
                self.read_topology();
            } else {
                self.shard_lost(&via, &why);
            }
            return;
        }
        route.sub = Sub::On;
        if std::mem::take(&mut route.lost) {
            let _ = route.tx.send(BusItem::Resync);
        }
        let (room, waiting) = (route.room.clone(), std::mem::take(&mut route.waiting));
        for (reply, rx) in waiting {
            let _ = reply.send(Ok(self.subscription(room.clone(), rx)));
        }
        self.register(room.to_string());
        // Everyone may have left while it was being subscribed.
        self.leave_if_unused(&room);
    }

    /// A room's last local subscriber left: unsubscribe, beside.
    fn leave_if_unused(&mut self, room: &RoomName) {
        let channel = room_channel(room);
        let Some(route) = self.routes.get(&channel) else {
            return;
        };
        if route.tx.receiver_count() > 0 || !route.waiting.is_empty() {
            return;
        }
        match (route.sub, route.via.clone()) {
            (Sub::On, Some(via)) => {
                let Some((_, mut conn)) = self.up(&via.shard).filter(|(v, _)| *v == via) else {
                    self.forget(&channel);
                    return;
                };
                if let Some(route) = self.routes.get_mut(&channel) {
                    route.sub = Sub::Leaving;
                }
                let mut cmd = redis::cmd(if self.cluster {
                    "SUNSUBSCRIBE"
                } else {
                    "UNSUBSCRIBE"
                });
                cmd.arg(&channel);
                let work = async move { cmd.exec_async(&mut conn).await };
                beside(&self.done.0, work, move |r| {
                    Done::Unsubscribed(via, channel, r)
                });
            }
            // Its SUBSCRIBE or UNSUBSCRIBE is in flight: decided when it comes back.
            (Sub::Subscribing, _) | (Sub::Leaving, _) => {}
            _ => self.forget(&channel),
        }
    }

    fn unsubscribed(&mut self, via: Via, channel: String, result: Result<(), String>) {
        let Some(route) = self.routes.get(&channel) else {
            return;
        };
        if route.via.as_ref() != Some(&via) || route.sub != Sub::Leaving {
            return;
        }
        if let Err(why) = result {
            self.shard_lost(&via, &why);
            return;
        }
        if route.waiting.is_empty() && route.tx.receiver_count() == 0 {
            self.forget(&channel);
        } else {
            // Someone joined while it was leaving: subscribe again.
            self.send_subscribe(&channel);
        }
    }

    /// Drops the route and takes the room off this node's list.
    fn forget(&mut self, channel: &str) {
        if let Some(route) = self.routes.remove(channel) {
            let mut cmd = redis::cmd("SREM");
            cmd.arg(&self.rooms_key).arg(route.room.as_str());
            let _ = self.listing.send(cmd);
        }
    }

    /// Lists the room in this node's set, for the reaper should the node die; beside the
    /// supervisor. Best effort: a room missing from it only delays ghost removal until the
    /// members' own sessions expire (and each resync lists it again).
    fn register(&self, room: String) {
        let mut cmd = redis::cmd("SADD");
        cmd.arg(&self.rooms_key).arg(room);
        let _ = self.listing.send(cmd);
    }

    /// A room task's subscription: its receiver, and a notice to the supervisor when dropped.
    fn subscription(&self, room: RoomName, rx: broadcast::Receiver<BusItem>) -> Subscription {
        Subscription::with_drop_notice(rx, self.unsubscribed.0.clone(), room)
    }

    fn ping_all(&self) {
        let up: Vec<(Via, MultiplexedConnection)> =
            self.shards.keys().filter_map(|s| self.up(s)).collect();
        for (via, mut conn) in up {
            let work = async move { redis::cmd("PING").exec_async(&mut conn).await };
            beside(&self.done.0, work, move |r| Done::Pinged(via, r));
        }
    }

    /// A push from one of the connections: a room's message, or news about the connection.
    fn pushed(&mut self, via: Via, push: PushInfo) {
        match push.kind {
            PushKind::Message | PushKind::SMessage => self.route(push.data),
            PushKind::Disconnection => self.shard_lost(&via, "connection closed"),
            PushKind::Unsubscribe | PushKind::SUnsubscribe => {
                let channel = push
                    .data
                    .into_iter()
                    .next()
                    .and_then(|c| redis::from_owned_redis_value::<String>(c).ok())
                    .unwrap_or_default();
                let ours = self
                    .routes
                    .get(&channel)
                    .is_some_and(|r| r.sub == Sub::Leaving && r.via.as_ref() == Some(&via));
                if !ours {
                    // Redis dropped the subscription itself: the slot moved to another master,
                    // or this one was demoted. The connection's replies are out of step from
                    // here (the notice looks like a reply), so it is replaced.
                    self.shard_lost(&via, "redis ended a subscription (slot moved?)");
                }
            }
            _ => {}
        }
    }

    fn route(&self, data: Vec<redis::Value>) {
        let mut data = data.into_iter();
        let (Some(channel), Some(payload)) = (data.next(), data.next()) else {
            return;
        };
        let (Ok(channel), Ok(payload)) = (
            redis::from_owned_redis_value::<String>(channel),
            redis::from_owned_redis_value::<String>(payload),
        ) else {
            tracing::error!("non-text message on the bus; dropped");
            return;
        };
        let Some(route) = self.routes.get(&channel) else {
            return;
        };
        if let Some(event) = BusEvent::decode(&route.room, &payload) {
            let _ = route.tx.send(BusItem::Event(event));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::slot;

    #[test]
    fn slots_follow_redis_cluster_rules() {
        // Values from `CLUSTER KEYSLOT` of a real Redis.
        assert_eq!(slot("foo"), 12182);
        assert_eq!(slot("somekey"), 11058);
        // Only the hash tag counts, so a room's keys and channel share a slot.
        assert_eq!(slot("{user1000}.following"), slot("user1000"));
        assert_eq!(slot("chorus:{r:lobby}:events"), slot("r:lobby"));
        assert_eq!(
            slot("chorus:{r:lobby}:meta"),
            slot("chorus:{r:lobby}:events")
        );
        // An empty tag is no tag.
        assert_eq!(slot("a{}b"), slot("a{}b"));
        assert_ne!(slot("a{}b"), slot(""));
    }
}
