//! Where this node's Redis is, and a command connection that follows it.
//!
//! One address (`redis_url`); the master that Redis Sentinel names (`redis_sentinels` +
//! `redis_sentinel_master`); or a Redis Cluster (`redis_cluster`). With Sentinel, a watcher asks
//! the sentinels every [`WATCH_EVERY`] which server is the master (redis-rs's `SentinelClient`:
//! `SENTINEL MASTERS`, then `ROLE` on the answer, so a demoted server is never taken for the
//! master). When the answer changes, the command connection is replaced and [`Link::moved`]
//! fires, so the pub/sub supervisor reconnects to the new master and every room resyncs, as
//! after a Redis restart. Redis-rs's `ConnectionManager` alone reconnects to the address it was
//! built with, which after a failover is the old master: dead, or a replica refusing writes.
//!
//! With a cluster, commands go through redis-rs's cluster connection, which sends each to the
//! master of its key's slot and follows `MOVED`/`ASK` and failovers by itself; the pub/sub
//! supervisor reads the slot map ([`Link::slots`]) to know which master to subscribe on.

use redis::{
    Client, ConnectionAddr, ConnectionInfo, IntoConnectionInfo, RedisFuture, Value,
    aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig},
    cluster::ClusterClientBuilder,
    cluster_async::ClusterConnection,
    cluster_routing::{RoutingInfo, SingleNodeRoutingInfo},
    sentinel::{SentinelClient, SentinelServerType},
};
use std::{
    sync::{Arc, RwLock},
    time::Duration,
};
use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore, watch};
use tokio_util::sync::CancellationToken;

/// How long connecting to a Redis server may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long one command may wait for its answer.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
/// How often a failed command is tried again (a reconnect in between) before its caller hears
/// of it.
const RETRIES: u32 = 4;
/// The longest pause between those tries, in milliseconds.
const MAX_RETRY_WAIT_MS: u64 = 1_000;

/// How often the sentinels are asked who the master is.
pub const WATCH_EVERY: Duration = Duration::from_secs(1);
/// The longest one question to the sentinels may take.
const ASK_TIMEOUT: Duration = Duration::from_secs(2);

/// Where Redis is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// One server: a `redis://` or `unix://` URL.
    Url(String),
    /// The master of `master`, as the sentinels at `sentinels` (`host:port`) name it.
    Sentinel {
        sentinels: Vec<String>,
        master: String,
    },
    /// A Redis Cluster, found through any of these nodes (`host:port`, or `redis://` URLs when
    /// they carry a user and password).
    Cluster { nodes: Vec<String> },
}

/// A command connection: to one server (the master), or to a cluster, where each command goes
/// to the master of its key's slot. Cheap to clone; it reconnects by itself.
///
/// The node's traffic shares one, which lets at most [`IN_FLIGHT`] commands wait for Redis at a
/// time; the rest wait in the node. A command that waits for Redis past its response timeout
/// fails, but Redis still runs it: without the bound, a connect storm that outruns Redis makes
/// it run thousands of joins nobody waits for any more, and every call fails. With it, calls
/// queue and succeed, later.
#[derive(Clone)]
pub struct Conn {
    kind: Kind,
    limit: Option<Arc<Semaphore>>,
}

#[derive(Clone)]
enum Kind {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

/// Commands of the node's traffic that may wait for Redis at once, per node.
pub const IN_FLIGHT: usize = 64;

impl Conn {
    fn new(kind: Kind, limited: bool) -> Self {
        Self {
            kind,
            limit: limited.then(|| Arc::new(Semaphore::new(IN_FLIGHT))),
        }
    }

    /// Waits for a place among the commands in flight, if this connection is bounded. (Never
    /// closed: a failed acquire would only mean no bound.)
    async fn permit(&self) -> Option<OwnedSemaphorePermit> {
        match &self.limit {
            Some(limit) => limit.clone().acquire_owned().await.ok(),
            None => None,
        }
    }

    /// The cluster connection, to route a command by hand; None for one server.
    pub fn cluster(&mut self) -> Option<&mut ClusterConnection> {
        match &mut self.kind {
            Kind::Cluster(c) => Some(c),
            Kind::Single(_) => None,
        }
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a redis::Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let _permit = self.permit().await;
            match &mut self.kind {
                Kind::Single(c) => c.req_packed_command(cmd).await,
                Kind::Cluster(c) => c.req_packed_command(cmd).await,
            }
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let _permit = self.permit().await;
            match &mut self.kind {
                Kind::Single(c) => c.req_packed_commands(cmd, offset, count).await,
                Kind::Cluster(c) => c.req_packed_commands(cmd, offset, count).await,
            }
        })
    }

    fn get_db(&self) -> i64 {
        match &self.kind {
            Kind::Single(c) => c.get_db(),
            Kind::Cluster(c) => c.get_db(),
        }
    }
}

/// Slots `start..=end` of a cluster, and the `host:port` of the master that owns them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotRange {
    pub start: u16,
    pub end: u16,
    pub master: String,
}

/// A handle on the current Redis master: cheap to clone, shared by the store and the bus.
#[derive(Clone)]
pub struct Link {
    inner: Arc<Inner>,
}

struct Inner {
    current: RwLock<Current>,
    /// Whether each master gets a second connection for writes followed by `WAIT`.
    with_waited: bool,
    /// Counts master changes; the bus waits on it.
    moved: watch::Sender<u64>,
    /// Asks the sentinels; None for a plain URL.
    sentinel: Option<Mutex<SentinelClient>>,
}

struct Current {
    /// The node's traffic: joins, messages, sessions (bounded: see [`Conn`]).
    conn: Conn,
    /// The heartbeat's own connection (and the cluster slot map's), so that it is never queued
    /// behind a storm of joins: a node whose beats arrive late is taken for dead by the others.
    beats: Conn,
    /// A second connection, for writes followed by `WAIT` (only when they are asked for):
    /// `WAIT` holds up every command behind it on its connection, which must not be the
    /// heartbeats' and joins'.
    waited: Option<Conn>,
    /// How to reach the master (or, in a cluster, the first node named): address, user,
    /// password, database. The pub/sub connections are opened with it.
    info: ConnectionInfo,
    /// The master's address, to tell a move from the same answer again.
    addr: String,
}

impl Link {
    /// Connects to the target's current master (or to the cluster), with a second connection
    /// for writes followed by `WAIT` if `with_waited`. With Sentinel, watches for failovers
    /// until `stop`.
    pub async fn connect(
        target: &Target,
        with_waited: bool,
        stop: CancellationToken,
    ) -> anyhow::Result<Self> {
        let (current, sentinel) = match target {
            Target::Url(url) => (
                Current::single(Client::open(url.as_str())?, with_waited).await?,
                None,
            ),
            Target::Sentinel { sentinels, master } => {
                let urls: Vec<String> = sentinels.iter().map(|s| format!("redis://{s}")).collect();
                let mut sentinel =
                    SentinelClient::build(urls, master.clone(), None, SentinelServerType::Master)?;
                let client = ask(&mut sentinel).await?;
                (
                    Current::single(client, with_waited).await?,
                    Some(Mutex::new(sentinel)),
                )
            }
            Target::Cluster { nodes } => (Current::cluster(nodes, with_waited).await?, None),
        };
        let link = Self {
            inner: Arc::new(Inner {
                current: RwLock::new(current),
                with_waited,
                moved: watch::channel(0).0,
                sentinel,
            }),
        };
        if link.inner.sentinel.is_some() {
            tokio::spawn(link.clone().watch(stop));
        }
        Ok(link)
    }

    /// Reads what it needs of the current connections under the lock. Every Redis call starts
    /// here, so it copies only what it takes, not the whole set.
    fn current<T>(&self, take: impl FnOnce(&Current) -> T) -> T {
        // Nothing panics while holding the lock; a poisoned one still holds a whole value.
        take(&self.inner.current.read().unwrap_or_else(|p| p.into_inner()))
    }

    /// The command connection (it reconnects by itself).
    pub fn conn(&self) -> Conn {
        self.current(|c| c.conn.clone())
    }

    /// The heartbeat's connection (also for reaping dead nodes and sweeping names).
    pub fn beats_conn(&self) -> Conn {
        self.current(|c| c.beats.clone())
    }

    /// The connection for writes that are followed by `WAIT`, if the link has one.
    pub fn waited_conn(&self) -> Option<Conn> {
        self.current(|c| c.waited.clone())
    }

    /// Whether this is a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        self.current(|c| matches!(c.conn.kind, Kind::Cluster(_)))
    }

    /// The current master's address (one server or Sentinel).
    pub fn master(&self) -> String {
        self.current(|c| c.addr.clone())
    }

    /// How to open a connection of our own to `addr` (a master named by [`Link::master`] or by
    /// [`Link::slots`]), with the user, password and database the link was given.
    pub fn info_for(&self, addr: &str) -> anyhow::Result<ConnectionInfo> {
        let (current, info) = self.current(|c| (c.addr.clone(), c.info.clone()));
        if addr == current {
            return Ok(info);
        }
        let (host, port) = addr
            .rsplit_once(':')
            .and_then(|(h, p)| Some((h.to_owned(), p.parse::<u16>().ok()?)))
            .ok_or_else(|| anyhow::anyhow!("not a host:port: {addr}"))?;
        Ok(ConnectionInfo {
            addr: ConnectionAddr::Tcp(host, port),
            redis: info.redis,
        })
    }

    /// A cluster's slot map (`CLUSTER SLOTS`, asked of any node), sorted by slot.
    pub async fn slots(&self) -> anyhow::Result<Vec<SlotRange>> {
        // The heartbeat's connection: the slot map must stay fresh while a storm of joins
        // queues on the traffic's.
        let mut conn = self.beats_conn();
        let Some(conn) = conn.cluster() else {
            anyhow::bail!("not a cluster");
        };
        let cmd = redis::cmd("CLUSTER").arg("SLOTS").to_owned();
        let reply = conn
            .route_command(&cmd, RoutingInfo::SingleNode(SingleNodeRoutingInfo::Random))
            .await?;
        let mut ranges = parse_slots(reply)?;
        ranges.sort_by_key(|r| r.start);
        Ok(ranges)
    }

    /// Fires on every change of master.
    pub fn moved(&self) -> watch::Receiver<u64> {
        self.inner.moved.subscribe()
    }

    async fn watch(self, stop: CancellationToken) {
        let mut every = tokio::time::interval(WATCH_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = every.tick() => {}
            }
            if let Err(e) = self.follow().await {
                // The sentinels disagree or are unreachable: keep the master we have.
                tracing::debug!(cause = %e, "cannot ask the sentinels for the master");
            }
        }
    }

    /// Asks the sentinels for the master; moves to it if it changed.
    async fn follow(&self) -> anyhow::Result<()> {
        let Some(sentinel) = &self.inner.sentinel else {
            return Ok(());
        };
        let client = ask(&mut *sentinel.lock().await).await?;
        let addr = client.get_connection_info().addr.to_string();
        let from = self.master();
        if addr == from {
            return Ok(());
        }
        let current = Current::single(client, self.inner.with_waited).await?;
        *self
            .inner
            .current
            .write()
            .unwrap_or_else(|p| p.into_inner()) = current;
        tracing::warn!(%from, to = %addr, "redis master moved: following it");
        self.inner.moved.send_modify(|n| *n += 1);
        Ok(())
    }
}

impl Current {
    async fn single(client: Client, with_waited: bool) -> anyhow::Result<Self> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(CONNECT_TIMEOUT)
            .set_response_timeout(RESPONSE_TIMEOUT)
            .set_number_of_retries(RETRIES as usize)
            .set_max_delay(MAX_RETRY_WAIT_MS);
        let info = client.get_connection_info().clone();
        let open = || async {
            let conn = ConnectionManager::new_with_config(client.clone(), config.clone()).await?;
            Ok(Kind::Single(conn))
        };
        Self::open(open, with_waited, info).await
    }

    async fn cluster(nodes: &[String], with_waited: bool) -> anyhow::Result<Self> {
        let urls: Vec<String> = nodes
            .iter()
            .map(|n| match n.contains("://") {
                true => n.clone(),
                false => format!("redis://{n}"),
            })
            .collect();
        let Some(first) = urls.first() else {
            anyhow::bail!("no cluster node named");
        };
        let info = first.as_str().into_connection_info()?;
        let mut builder = ClusterClientBuilder::new(urls.clone())
            .connection_timeout(CONNECT_TIMEOUT)
            .response_timeout(RESPONSE_TIMEOUT)
            .retries(RETRIES)
            .max_retry_wait(MAX_RETRY_WAIT_MS);
        if let Some(user) = &info.redis.username {
            builder = builder.username(user.clone());
        }
        if let Some(password) = &info.redis.password {
            builder = builder.password(password.clone());
        }
        let client = builder.build()?;
        let open = || async { Ok(Kind::Cluster(client.get_async_connection().await?)) };
        Self::open(open, with_waited, info).await
    }

    /// The link's connections, each made by `open`: the node's traffic (bounded), the
    /// heartbeat's, and one for writes followed by `WAIT` if asked for.
    async fn open<F, Fut>(open: F, with_waited: bool, info: ConnectionInfo) -> anyhow::Result<Self>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = redis::RedisResult<Kind>>,
    {
        let conn = Conn::new(open().await?, true);
        let beats = Conn::new(open().await?, false);
        let waited = match with_waited {
            true => Some(Conn::new(open().await?, false)),
            false => None,
        };
        Ok(Self {
            conn,
            beats,
            waited,
            addr: info.addr.to_string(),
            info,
        })
    }
}

/// Reads `CLUSTER SLOTS`: one entry per range, `[start, end, [host, port, id, …], replicas…]`.
fn parse_slots(reply: Value) -> anyhow::Result<Vec<SlotRange>> {
    let Value::Array(entries) = reply else {
        anyhow::bail!("CLUSTER SLOTS answered {reply:?}");
    };
    entries
        .iter()
        .map(|entry| {
            slot_range(entry)
                .ok_or_else(|| anyhow::anyhow!("unreadable CLUSTER SLOTS entry {entry:?}"))
        })
        .collect()
}

fn slot_range(entry: &Value) -> Option<SlotRange> {
    let number = |v: &Value| match v {
        Value::Int(n) => u16::try_from(*n).ok(),
        _ => None,
    };
    let text = |v: &Value| match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    };
    let Value::Array(fields) = entry else {
        return None;
    };
    let [start, end, Value::Array(master), ..] = fields.as_slice() else {
        return None;
    };
    let [host, port, ..] = master.as_slice() else {
        return None;
    };
    Some(SlotRange {
        start: number(start)?,
        end: number(end)?,
        master: format!("{}:{}", text(host)?, number(port)?),
    })
}

/// The current master, as the sentinels name it and as it says of itself.
async fn ask(sentinel: &mut SentinelClient) -> anyhow::Result<Client> {
    match tokio::time::timeout(ASK_TIMEOUT, sentinel.async_get_client()).await {
        Ok(client) => Ok(client?),
        Err(_) => anyhow::bail!("the sentinels did not answer in time"),
    }
}
