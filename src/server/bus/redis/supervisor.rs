//! The supervisor task: its state, its loop, and its shards (connecting, losing, following a
//! master or a cluster's slot map). `routes.rs` is its rooms' side.

use super::*;

pub(super) struct Supervisor {
    pub(super) link: Link,
    pub(super) cluster: bool,
    /// SADD/SREM of this node's rooms, applied in order beside the supervisor.
    pub(super) listing: mpsc::UnboundedSender<redis::Cmd>,
    pub(super) rooms_key: String,
    pub(super) shards: HashMap<ShardId, Shard>,
    /// A cluster's slot map, sorted; empty for one Redis, whose one shard has every slot.
    pub(super) slots: Vec<(u16, u16, ShardId)>,
    /// Channel name → the room and its local subscribers.
    pub(super) routes: HashMap<String, Route>,
    pub(super) connected: Arc<AtomicBool>,
    /// Counts lost connections.
    pub(super) lost: Counter,
    pub(super) done: (mpsc::UnboundedSender<Done>, mpsc::UnboundedReceiver<Done>),
    /// Every connection's pushes (the rooms' messages among them), tagged with the connection.
    pub(super) pushes: (
        mpsc::UnboundedSender<Pushed>,
        mpsc::UnboundedReceiver<Pushed>,
    ),
    /// Subscriptions report here when dropped.
    pub(super) unsubscribed: (
        mpsc::UnboundedSender<RoomName>,
        mpsc::UnboundedReceiver<RoomName>,
    ),
    /// UNSUBSCRIBEs whose notice has not come yet.
    pub(super) unsubscribing: Unsubscribing,
}

impl Supervisor {
    pub(super) async fn run(
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
    pub(super) fn resync_all(&mut self) {
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
    pub(super) fn owner(&self, slot: u16) -> Option<ShardId> {
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
    pub(super) fn up(&self, shard: &ShardId) -> Option<(Via, MultiplexedConnection)> {
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

    pub(super) fn is_current(&self, via: &Via) -> bool {
        self.shards
            .get(&via.shard)
            .is_some_and(|s| s.generation == via.generation)
    }

    pub(super) fn update_connected(&self) {
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
    pub(super) fn follow_master(&mut self) {
        let master: ShardId = self.link.master().into();
        self.set_shards(vec![master]);
    }

    /// Makes `shards` the shards: new ones connect now, gone ones are dropped (their rooms'
    /// subscriptions count as lost), and every room goes to the shard that owns its slot.
    pub(super) fn set_shards(&mut self, shards: Vec<ShardId>) {
        let gone: Vec<ShardId> = self
            .shards
            .keys()
            .filter(|s| !shards.contains(s))
            .cloned()
            .collect();
        for shard in gone {
            self.shards.remove(&shard);
            self.lose_routes_on(&shard);
            // Its notices will never come, and a shard that comes back counts its connections
            // from 0 again: a stale entry could take a real drop for ours.
            self.unsubscribing.lost(&shard);
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
    pub(super) fn place_routes(&mut self) {
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
    pub(super) fn read_topology(&self) {
        let link = self.link.clone();
        beside(
            &self.done.0,
            async move { link.slots().await },
            Done::Topology,
        );
    }

    pub(super) fn new_topology(&mut self, ranges: Vec<SlotRange>) {
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
    pub(super) fn reconnect_due(&mut self) {
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

    pub(super) fn connect(&mut self, shard: ShardId) {
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

    pub(super) fn finished(&mut self, done: Done) {
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

    pub(super) fn shard_up(&mut self, via: &Via, conn: MultiplexedConnection) {
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
    pub(super) fn shard_lost(&mut self, via: &Via, why: &str) {
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
        self.unsubscribing.lost(&via.shard);
        self.update_connected();
        if self.cluster {
            // A master that died or was demoted: its replica may own the slots by now.
            self.read_topology();
        }
    }

    /// Every room on `shard` lost its subscription.
    pub(super) fn lose_routes_on(&mut self, shard: &ShardId) {
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
    pub(super) fn lose_route(&mut self, channel: &str) {
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
}
