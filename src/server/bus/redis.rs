//! The Redis bus: one pub/sub connection per node, subscribed to the channels of exactly the rooms
//! the node has members in.
//!
//! Channel layout: `chorus:{r:<room>}:events`, one channel per room. A node hears only the rooms it
//! serves (no pattern subscriptions, no node-wide firehose), and the `{r:<room>}` hash tag puts
//! the channel in the same Redis Cluster slot as the room's keys (`chorus:{r:<room>}:meta`,
//! `:history`, `:members`, `:owners`). So the script that stores a message can also publish it, and
//! the layout is ready for sharded pub/sub (SPUBLISH/SSUBSCRIBE) on a cluster unchanged.
//!
//! A supervisor task owns the connection. When it drops (Redis restarted, network cut, or a ping
//! unanswered), the supervisor reconnects with backoff and full jitter, subscribes to every room
//! it routes again, and only then sends [`BusItem::Resync`] to each room task, which fills the gap
//! from the stored history. Re-subscribing is not left to a library's reconnect hook: a missing
//! subscription would be silent, so it is done, awaited and checked here. A Redis master that
//! moved (Sentinel failover, see [`Link`]) counts as a lost link: the supervisor reconnects to
//! the new master.
//!
//! While connected, the supervisor does not wait for a new room's SUBSCRIBE: it runs beside it
//! (as does the listing of the node's rooms), so one slow answer does not hold up the events of
//! every other room. The room's subscriber gets its subscription once Redis confirmed the
//! channel; its receiver was made when it asked, so nothing published from then on is missed.
//! UNSUBSCRIBE and the ping are still awaited (within the 2 s timeout): an UNSUBSCRIBE sent
//! beside could overtake a later SUBSCRIBE of the same channel.

use super::{BusItem, Link, Subscription};
use crate::protocol::RoomName;
use futures_util::StreamExt;
use prometheus_client::metrics::counter::Counter;
use redis::aio::PubSubSink;
use std::{
    collections::HashMap,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

/// The channel a room's events are published on.
pub fn room_channel(room: &RoomName) -> String {
    format!("chorus:{{r:{room}}}:events")
}

/// How long one Redis round trip of the supervisor may take before the link counts as dead.
const REDIS_TIMEOUT: Duration = Duration::from_secs(2);
/// An idle subscription is pinged this often, so a silently dead link is noticed.
const PING_EVERY: Duration = Duration::from_secs(5);
/// Items a room task may fall behind by; past it, it resyncs from history.
const ROOM_CAPACITY: usize = 1024;

type Reply = oneshot::Sender<Result<Subscription, String>>;

enum Request {
    Subscribe(RoomName, Reply),
    /// Tell every room to resync (the store may have lost this node's members).
    ResyncAll,
}

struct Route {
    room: RoomName,
    tx: broadcast::Sender<BusItem>,
    /// Subscribers waiting for Redis to confirm the channel, each with the receiver made when it
    /// asked, so that nothing published once the channel is subscribed is missed.
    waiting: Vec<(Reply, broadcast::Receiver<BusItem>)>,
}

/// A SUBSCRIBE sent beside the supervisor came back: the link it was sent on (`generation`),
/// the channel, and how it went.
type Confirmed = (u64, String, Result<(), String>);

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
        let supervisor = Supervisor {
            moved: link.moved(),
            listing: list_rooms(link.clone()),
            link,
            rooms_key,
            routes: HashMap::new(),
            connected: connected.clone(),
            lost,
            generation: 0,
            confirmed: mpsc::unbounded_channel(),
            unsubscribed: mpsc::unbounded_channel(),
        };
        tokio::spawn(supervisor.run(requests_rx, stop));
        Self {
            requests,
            connected,
        }
    }

    /// True while the pub/sub link is up and subscribed.
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

struct Supervisor {
    link: Link,
    /// SADD/SREM of this node's rooms, applied in order beside the supervisor.
    listing: mpsc::UnboundedSender<redis::Cmd>,
    /// Fires when the Redis master moved.
    moved: tokio::sync::watch::Receiver<u64>,
    rooms_key: String,
    /// Channel name → the room and its local subscribers.
    routes: HashMap<String, Route>,
    connected: Arc<AtomicBool>,
    /// Counts the link's losses.
    lost: Counter,
    /// Counts the pub/sub connections made, so a late answer to a SUBSCRIBE sent on an earlier
    /// one is told apart.
    generation: u64,
    /// SUBSCRIBEs are awaited beside the supervisor, which goes on routing every room's events,
    /// and report here.
    confirmed: (
        mpsc::UnboundedSender<Confirmed>,
        mpsc::UnboundedReceiver<Confirmed>,
    ),
    /// Subscriptions report here when dropped.
    unsubscribed: (
        mpsc::UnboundedSender<RoomName>,
        mpsc::UnboundedReceiver<RoomName>,
    ),
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

/// Why a connected session of the supervisor ended.
enum End {
    Lost(String),
    Stopped,
}

impl Supervisor {
    async fn run(
        mut self,
        mut requests: mpsc::UnboundedReceiver<Request>,
        stop: CancellationToken,
    ) {
        let mut attempt = 0u32;
        loop {
            match self.connect().await {
                Ok((sink, stream)) => {
                    if attempt > 0 {
                        tracing::info!(
                            rooms = self.routes.len(),
                            "redis pub/sub back: resyncing rooms"
                        );
                    }
                    attempt = 0;
                    self.connected.store(true, Ordering::Relaxed);
                    // Every room may have missed events while the link was down.
                    for route in self.routes.values() {
                        let _ = route.tx.send(BusItem::Resync);
                    }
                    let end = self.serve(sink, stream, &mut requests, &stop).await;
                    self.connected.store(false, Ordering::Relaxed);
                    self.generation += 1;
                    self.fail_waiting();
                    match end {
                        End::Stopped => return,
                        End::Lost(why) => {
                            self.lost.inc();
                            tracing::warn!(cause = %why, "redis pub/sub lost; reconnecting")
                        }
                    }
                }
                Err(why) => tracing::warn!(cause = %why, attempt, "cannot reach redis pub/sub"),
            }
            // Full jitter over an exponentially growing cap: many nodes losing the same Redis do
            // not come back in lockstep.
            let cap_ms = (100u64 << attempt.min(6)).min(5_000);
            let wait = Duration::from_millis(rand::random::<u64>() % cap_ms + 50);
            attempt = attempt.saturating_add(1);
            let sleep = tokio::time::sleep(wait);
            tokio::pin!(sleep);
            loop {
                tokio::select! {
                    _ = &mut sleep => break,
                    // A new master (Sentinel failover): no reason to wait for it.
                    Ok(()) = self.moved.changed() => break,
                    _ = stop.cancelled() => return,
                    req = requests.recv() => match req {
                        // Not subscribed while down: the joiner gets a retryable error.
                        Some(Request::Subscribe(_, reply)) => {
                            let _ = reply.send(Err("redis is unreachable".into()));
                        }
                        // Every room resyncs on reconnect anyway.
                        Some(Request::ResyncAll) => {}
                        None => return,
                    },
                    Some(room) = self.unsubscribed.1.recv() => {
                        self.forget_if_unused(&room);
                    }
                }
            }
        }
    }

    /// Connects and subscribes to every routed room.
    async fn connect(&mut self) -> Result<(PubSubSink, redis::aio::PubSubStream), String> {
        // Whatever master moves happened before this connection are followed by it.
        self.moved.mark_unchanged();
        let pubsub = tokio::time::timeout(REDIS_TIMEOUT, self.link.client().get_async_pubsub())
            .await
            .map_err(|_| "connect timed out".to_owned())?
            .map_err(|e| e.to_string())?;
        let (mut sink, stream) = pubsub.split();
        let channels: Vec<&String> = self.routes.keys().collect();
        if !channels.is_empty() {
            tokio::time::timeout(REDIS_TIMEOUT, sink.subscribe(&channels))
                .await
                .map_err(|_| "re-subscribe timed out".to_owned())?
                .map_err(|e| e.to_string())?;
            let rooms: Vec<String> = self.routes.values().map(|r| r.room.to_string()).collect();
            self.register(rooms);
        }
        Ok((sink, stream))
    }

    async fn serve(
        &mut self,
        mut sink: PubSubSink,
        mut stream: redis::aio::PubSubStream,
        requests: &mut mpsc::UnboundedReceiver<Request>,
        stop: &CancellationToken,
    ) -> End {
        let mut ping = tokio::time::interval(PING_EVERY);
        ping.tick().await;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return End::Stopped,
                Ok(()) = self.moved.changed() => return End::Lost("redis master moved".into()),
                msg = stream.next() => match msg {
                    Some(msg) => self.route(msg),
                    None => return End::Lost("connection closed".into()),
                },
                req = requests.recv() => match req {
                    Some(Request::Subscribe(room, reply)) => self.subscribe(&sink, room, reply),
                    Some(Request::ResyncAll) => {
                        for route in self.routes.values() {
                            let _ = route.tx.send(BusItem::Resync);
                        }
                    }
                    None => return End::Stopped,
                },
                Some((generation, channel, result)) = self.confirmed.1.recv() => {
                    if generation != self.generation {
                        continue; // sent on a connection that is gone
                    }
                    if let Err(why) = result {
                        return End::Lost(why);
                    }
                    self.confirm(&channel);
                }
                Some(room) = self.unsubscribed.1.recv() => {
                    if let Some(channel) = self.forget_if_unused(&room) {
                        let done = tokio::time::timeout(REDIS_TIMEOUT, sink.unsubscribe(&channel)).await;
                        if !matches!(done, Ok(Ok(()))) {
                            return End::Lost("unsubscribe failed".into());
                        }
                    }
                }
                _ = ping.tick() => {
                    let pong = tokio::time::timeout(REDIS_TIMEOUT, sink.ping::<redis::Value>()).await;
                    if !matches!(pong, Ok(Ok(_))) {
                        return End::Lost("ping unanswered".into());
                    }
                }
            }
        }
    }

    /// Subscribes the asker to the room: at once if the node already has the channel, else
    /// once Redis confirms it (the SUBSCRIBE runs beside the supervisor and comes back through
    /// `confirmed`).
    fn subscribe(&mut self, sink: &PubSubSink, room: RoomName, reply: Reply) {
        let channel = room_channel(&room);
        if let Some(route) = self.routes.get_mut(&channel) {
            let rx = route.tx.subscribe();
            if route.waiting.is_empty() {
                let _ = reply.send(Ok(self.subscription(room, rx)));
            } else {
                route.waiting.push((reply, rx));
            }
            return;
        }
        let (tx, rx) = broadcast::channel(ROOM_CAPACITY);
        self.routes.insert(
            channel.clone(),
            Route {
                room,
                tx,
                waiting: vec![(reply, rx)],
            },
        );
        let (mut sink, done, generation) =
            (sink.clone(), self.confirmed.0.clone(), self.generation);
        tokio::spawn(async move {
            let result = match tokio::time::timeout(REDIS_TIMEOUT, sink.subscribe(&channel)).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err("subscribe timed out".to_owned()),
            };
            let _ = done.send((generation, channel, result));
        });
    }

    /// Redis confirmed the channel: everyone waiting for it gets its subscription.
    fn confirm(&mut self, channel: &str) {
        let Some(route) = self.routes.get_mut(channel) else {
            return;
        };
        let (room, waiting) = (route.room.clone(), std::mem::take(&mut route.waiting));
        for (reply, rx) in waiting {
            let _ = reply.send(Ok(self.subscription(room.clone(), rx)));
        }
        self.register(vec![room.to_string()]);
    }

    /// The link went down: subscriptions not yet confirmed are refused (the joiner gets a
    /// retryable error), and their channels forgotten unless others hold them.
    fn fail_waiting(&mut self) {
        let mut unused = Vec::new();
        for route in self.routes.values_mut() {
            for (reply, rx) in route.waiting.drain(..) {
                drop(rx);
                let _ = reply.send(Err("redis is unreachable".into()));
            }
            if route.tx.receiver_count() == 0 {
                unused.push(route.room.clone());
            }
        }
        for room in unused {
            self.forget_if_unused(&room);
        }
    }

    /// A room task's subscription: its receiver, and a notice to the supervisor when dropped.
    fn subscription(&self, room: RoomName, rx: broadcast::Receiver<BusItem>) -> Subscription {
        Subscription::with_drop_notice(rx, self.unsubscribed.0.clone(), room)
    }

    /// Lists rooms in this node's set, for the reaper should the node die; beside the
    /// supervisor, which serves every room's subscriptions and must not wait on it. Best effort:
    /// a room missing from it only delays ghost removal until the members' own sessions expire
    /// (and each resync lists it again).
    fn register(&self, rooms: Vec<String>) {
        let mut cmd = redis::cmd("SADD");
        cmd.arg(&self.rooms_key).arg(rooms);
        let _ = self.listing.send(cmd);
    }

    /// Drops the route once its last subscriber is gone; returns the channel to unsubscribe.
    fn forget_if_unused(&mut self, room: &RoomName) -> Option<String> {
        let channel = room_channel(room);
        let unused = self
            .routes
            .get(&channel)
            .is_some_and(|r| r.tx.receiver_count() == 0);
        if !unused {
            return None;
        }
        self.routes.remove(&channel);
        let mut cmd = redis::cmd("SREM");
        cmd.arg(&self.rooms_key).arg(room.as_str());
        let _ = self.listing.send(cmd);
        Some(channel)
    }

    fn route(&self, msg: redis::Msg) {
        let Some(route) = self.routes.get(msg.get_channel_name()) else {
            return;
        };
        let payload: String = match msg.get_payload() {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(cause = %e, "non-text payload on the bus; dropped");
                return;
            }
        };
        if let Some(event) = super::BusEvent::decode(payload) {
            let _ = route.tx.send(BusItem::Event(event));
        }
    }
}
