//! This node among the others: its heartbeat, the reaping of dead nodes' members, the sweep of
//! ended sessions' names, and its status for the other nodes' pages.

use super::*;

impl RedisStore {
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

    /// After Redis lost data (this node's heartbeat key was gone): puts back the sessions this
    /// node serves and the names they held; a session whose name another session held first
    /// loses it, and its connections here end.
    async fn reclaim(&self) -> redis::RedisResult<()> {
        let mut conn = self.link.beats_conn();
        let held = self.held().to_reclaim();
        let mut lost = Vec::new();
        for (session, name, since, conns) in held {
            let owners: Vec<String> = conns.iter().map(|c| self.owner(c)).collect();
            let kept: i64 = self
                .scripts
                .reclaim
                .key(NAMES)
                .key(session_key(&session))
                .arg(name.key())
                .arg(session.as_ref())
                .arg(name.as_str())
                .arg(since)
                .arg(owners.join(","))
                .arg(NODE_PREFIX)
                .arg(SESSION_PREFIX)
                .invoke_async(&mut conn)
                .await?;
            if kept == 0 {
                lost.push(session);
            }
        }
        self.end_sessions(lost);
        Ok(())
    }

    /// Ends the connections of sessions this node serves that no longer hold their name
    /// (another node put back an earlier holder). Returns how many sessions.
    async fn verify(&self) -> redis::RedisResult<usize> {
        let mut conn = self.link.beats_conn();
        let sessions = self.held().sessions();
        let mut lost = Vec::new();
        for batch in sessions.chunks(500) {
            let mut call = self.scripts.verify.prepare_invoke();
            call.key(NAMES).arg(SESSION_PREFIX);
            for session in batch {
                call.arg(session.as_ref());
            }
            let gone: Vec<String> = call.invoke_async(&mut conn).await?;
            lost.extend(gone.into_iter().map(SessionId::from));
        }
        let n = lost.len();
        self.end_sessions(lost);
        Ok(n)
    }

    fn end_sessions(&self, lost: Vec<SessionId>) {
        let mut held = self.held();
        for session in lost {
            let conns = held.end(&session);
            // Not the session itself: it is a bearer secret.
            tracing::warn!(
                conns,
                "a session lost its name to an earlier holder after redis lost data: its connections end"
            );
        }
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
                    .key(room_key(&room, "names"))
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
    pub(super) async fn sweep_names(&self) -> redis::RedisResult<u64> {
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

/// Beats after a lapse at which this node checks its sessions' names (see `verify`).
const VERIFY_BEATS: u32 = 4;

/// Keeps this node's heartbeat fresh and removes dead nodes' members, until `stop`.
pub(super) async fn heartbeat(store: std::sync::Weak<RedisStore>, stop: CancellationToken) {
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
    // Beats left at which to check that this node's sessions still hold their names, after
    // Redis lost data: another node may put back an earlier holder of one a beat later.
    let mut verify_beats = 0u32;
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
                    tracing::warn!(
                        "this node's heartbeat had lapsed: re-registering its sessions and members"
                    );
                    if let Err(e) = store.reclaim().await {
                        tracing::warn!(cause = %e, "putting back this node's sessions failed");
                    }
                    store.bus.resync_all();
                    verify_beats = VERIFY_BEATS;
                } else if verify_beats > 0 {
                    verify_beats -= 1;
                    if let Err(e) = store.verify().await {
                        tracing::warn!(cause = %e, "checking this node's names failed");
                    }
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
