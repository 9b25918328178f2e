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
/// Items a room task may fall behind by; past it, it resyncs from history. The ring is
/// allocated whole (40 B an item): 1,024 cost 410 bytes per connection in rooms of 100. With 128
/// the two-node fan-out at 600,000 deliveries/s saw no resync (BENCHMARKS, 2026-12-05).
const ROOM_CAPACITY: usize = 128;

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
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Via {
    shard: ShardId,
    generation: u64,
}

/// The UNSUBSCRIBEs sent whose notice (a push) has not come yet, by channel and connection.
/// Such a notice is ours whatever the room became meanwhile: the command's reply may be handled
/// first, and the room forgotten or subscribed again before its notice arrives. Any other
/// notice means Redis dropped the subscription itself.
#[derive(Debug, Default)]
struct Unsubscribing(HashMap<(String, Via), u32>);

impl Unsubscribing {
    fn sent(&mut self, channel: &str, via: &Via) {
        *self.0.entry((channel.to_owned(), via.clone())).or_default() += 1;
    }

    /// Whether the notice for `channel` on `via` answers one of ours (it is then counted off).
    fn noticed(&mut self, channel: String, via: Via) -> bool {
        let key = (channel, via);
        match self.0.get_mut(&key) {
            Some(1) => self.0.remove(&key).is_some(),
            Some(sent) => {
                *sent -= 1;
                true
            }
            None => false,
        }
    }

    /// The shard's connection is gone: its notices will never come.
    fn lost(&mut self, shard: &ShardId) {
        self.0.retain(|(_, via), _| via.shard != *shard);
    }
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
            unsubscribing: Unsubscribing::default(),
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

mod routes;
mod supervisor;

use supervisor::Supervisor;

#[cfg(test)]
mod tests {
    use super::{Unsubscribing, Via, slot};

    #[test]
    fn the_notice_of_our_own_unsubscribe_is_ours_whatever_came_between() {
        let via = |shard: &str, generation| Via {
            shard: shard.into(),
            generation,
        };
        let mut sent = Unsubscribing::default();
        sent.sent("chorus:{r:a}:events", &via("a", 1));
        sent.sent("chorus:{r:a}:events", &via("a", 1));
        // Redis dropping a channel we never let go of, or a notice on another connection.
        assert!(!sent.noticed("chorus:{r:b}:events".into(), via("a", 1)));
        assert!(!sent.noticed("chorus:{r:a}:events".into(), via("a", 2)));
        // Ours, twice, then no more.
        assert!(sent.noticed("chorus:{r:a}:events".into(), via("a", 1)));
        assert!(sent.noticed("chorus:{r:a}:events".into(), via("a", 1)));
        assert!(!sent.noticed("chorus:{r:a}:events".into(), via("a", 1)));
        // A lost connection's notices never come: nothing is kept for them.
        sent.sent("chorus:{r:c}:events", &via("a", 1));
        sent.lost(&"a".into());
        assert!(sent.0.is_empty());
    }

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
