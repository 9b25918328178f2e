//! The single-node store: everything in this process. Every change that others must hear about
//! is published on the in-process bus while the room is locked, so sequence numbers and membership
//! events go out in the order they happened.

use super::{
    Act, Broker, ConnId, Health, HistoryBounds, LIST_MAX, Member, MemberPage, MemberQuery, Page,
    Presence, RECOVER_MAX, RecentIds, Rule, SessionId, Snapshot, StoreError, Stored,
    history::History, new_epoch, now_ms, rules::RoomRules,
};
use crate::{
    protocol::{
        Change, ChatMessage, MessageText, NoticeKind, Position, RoomName, ServerMsg, UserName,
    },
    server::bus::{BusEvent, MemoryBus, Subscription},
};
use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

/// Until `with_room_idle` says otherwise: a week.
const DEFAULT_ROOM_IDLE: Duration = Duration::from_secs(7 * 24 * 3600);
/// Idle rooms are looked for at most this often (when a room is created), and whenever the node
/// is full.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

mod roster;
mod sessions;
use roster::Roster;
use sessions::SessionTable;

struct Room {
    /// Session → the connections carrying it here (a browser's tabs: one member), and its name.
    members: BTreeMap<SessionId, (Vec<ConnId>, UserName)>,
    /// Their names, in order.
    roster: Roster,
    history: History,
    last_seq: u64,
    /// Names this life of the room: a room evicted and opened again numbers from 1 in a new
    /// epoch, so a client's old position is never taken for a new message.
    epoch: String,
    /// The last join or message: rooms without members are evicted oldest first.
    active: Instant,
    recent_ids: RecentIds,
    /// What moderators set here.
    rules: RoomRules,
    /// Set when the room is dropped from the map; whoever still holds it must look it up again.
    retired: bool,
}

impl Room {
    fn new() -> Self {
        Self {
            members: BTreeMap::new(),
            roster: Roster::default(),
            history: History::default(),
            last_seq: 0,
            epoch: new_epoch(),
            active: Instant::now(),
            recent_ids: RecentIds::default(),
            rules: RoomRules::default(),
            retired: false,
        }
    }

    fn members(&self, query: &MemberQuery) -> MemberPage {
        self.roster.page(query, self.members.len())
    }

    /// The room's epoch, once its first message is stored (as in Redis).
    fn numbering(&self) -> Option<String> {
        (self.last_seq > 0).then(|| self.epoch.clone())
    }

    /// What a joiner (or a reader) is told: the first `list_max` members, and `history`.
    fn snapshot(&self, list_max: usize, history: Vec<ChatMessage>) -> Snapshot {
        let first = self.members(&MemberQuery::first(list_max));
        Snapshot {
            members: first.names,
            count: first.count,
            history,
            recovered: None,
            epoch: self.numbering(),
            last_seq: self.last_seq,
            created: false,
        }
    }
}

pub struct MemoryStore {
    bus: MemoryBus,
    history: HistoryBounds,
    dedup_window: usize,
    max_rooms: usize,
    /// Most names a joiner is given.
    list_max: usize,
    /// A room without members and without a join or message for this long is forgotten.
    room_idle: Duration,
    /// When idle rooms were last swept (on a room's creation, at most once a minute).
    swept: Mutex<Instant>,
    session_ttl: Duration,
    /// std Mutex: look-ups only, never across `.await`.
    sessions: Mutex<SessionTable>,
    /// std Mutex for the map; each room's own async lock is held while its events are published.
    rooms: Mutex<HashMap<RoomName, Arc<tokio::sync::Mutex<Room>>>>,
}

impl MemoryStore {
    pub fn new(
        history: HistoryBounds,
        dedup_window: usize,
        max_rooms: usize,
        session_ttl: Duration,
    ) -> Self {
        Self {
            bus: MemoryBus::default(),
            history,
            dedup_window,
            max_rooms,
            list_max: LIST_MAX,
            room_idle: DEFAULT_ROOM_IDLE,
            swept: Mutex::new(Instant::now()),
            session_ttl,
            sessions: Mutex::new(SessionTable::default()),
            rooms: Mutex::new(HashMap::new()),
        }
    }

    /// The store a node with `config` keeps in memory.
    pub fn from_config(config: &crate::server::config::Config) -> Self {
        Self::new(
            config.history(),
            config.rooms.dedup_window,
            config.rooms.max_rooms,
            config.rooms.session_ttl_secs,
        )
        .with_room_idle(config.rooms.room_idle_secs)
        .with_list_max(config.rooms.presence_list_max)
    }

    /// How many names a joiner is given, at most (`presence_list_max`).
    pub fn with_list_max(mut self, list_max: usize) -> Self {
        self.list_max = list_max;
        self
    }

    /// How long a room without members may stay idle before it is forgotten.
    pub fn with_room_idle(mut self, idle: Duration) -> Self {
        self.room_idle = idle;
        self
    }

    fn sessions(&self) -> std::sync::MutexGuard<'_, SessionTable> {
        let mut s = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        s.sweep(Instant::now());
        s
    }

    fn existing(&self, room: &RoomName) -> Option<Arc<tokio::sync::Mutex<Room>>> {
        let rooms = self.rooms.lock().unwrap_or_else(|p| p.into_inner());
        rooms.get(room).cloned()
    }

    /// The room, opened if it is new and `create` allows it. A full node first forgets rooms
    /// without members: the idle ones, else the one idle longest.
    fn get_or_create(
        &self,
        room: &RoomName,
        create: bool,
    ) -> Result<Arc<tokio::sync::Mutex<Room>>, StoreError> {
        let mut rooms = self.rooms.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = rooms.get(room) {
            return Ok(r.clone());
        }
        if !create {
            return Err(StoreError::CreationLimited);
        }
        let now = Instant::now();
        let sweep_due = {
            let mut swept = self.swept.lock().unwrap_or_else(|p| p.into_inner());
            let due = now.duration_since(*swept) >= SWEEP_EVERY;
            if due {
                *swept = now;
            }
            due
        };
        if sweep_due || rooms.len() >= self.max_rooms {
            self.evict(&mut rooms, now);
        }
        if rooms.len() >= self.max_rooms {
            return Err(StoreError::RoomsFull);
        }
        let r = Arc::new(tokio::sync::Mutex::new(Room::new()));
        rooms.insert(room.clone(), r.clone());
        Ok(r)
    }

    /// Forgets every room without members idle past `room_idle`; if none was and the node is
    /// full, the one without members idle longest. A room in use right now (locked) is kept.
    fn evict(&self, rooms: &mut HashMap<RoomName, Arc<tokio::sync::Mutex<Room>>>, now: Instant) {
        let mut oldest: Option<(Instant, RoomName)> = None;
        let mut expired = Vec::new();
        for (name, room) in rooms.iter() {
            let Ok(room) = room.try_lock() else { continue };
            if !room.members.is_empty() {
                continue;
            }
            if now.duration_since(room.active) >= self.room_idle {
                expired.push(name.clone());
            } else if oldest.as_ref().is_none_or(|(at, _)| room.active < *at) {
                oldest = Some((room.active, name.clone()));
            }
        }
        if expired.is_empty() && rooms.len() >= self.max_rooms {
            expired.extend(oldest.map(|(_, name)| name));
        }
        for name in expired {
            if let Some(room) = rooms.remove(&name)
                && let Ok(mut room) = room.try_lock()
            {
                room.retired = true;
                tracing::debug!(room = %name, "idle room forgotten");
            }
        }
    }

    fn notice(&self, room: &RoomName, kind: NoticeKind, name: &UserName, old: Option<&UserName>) {
        let notice = ServerMsg::Notice {
            room: room.to_string(),
            kind,
            name: name.to_string(),
            old_name: old.map(|n| n.to_string()),
        };
        self.bus.publish(room, BusEvent::new(notice));
    }

    /// Forgets a room left with neither members nor history.
    fn forget_if_empty(
        &self,
        name: &RoomName,
        room_ref: &Arc<tokio::sync::Mutex<Room>>,
        room: &mut Room,
    ) {
        if !(room.members.is_empty() && room.history.is_empty()) {
            return;
        }
        let mut rooms = self.rooms.lock().unwrap_or_else(|p| p.into_inner());
        if rooms.get(name).is_some_and(|r| Arc::ptr_eq(r, room_ref)) {
            rooms.remove(name);
            // A join already holding this room will see the mark and look it up afresh.
            room.retired = true;
        }
    }
}

#[async_trait::async_trait]
impl Presence for MemoryStore {
    async fn join(
        &self,
        room_name: &RoomName,
        member: &Member,
        create: bool,
        since: Option<&Position>,
    ) -> Result<Snapshot, StoreError> {
        let mut room = loop {
            let guard = self.get_or_create(room_name, create)?.lock_owned().await;
            if !guard.retired {
                break guard;
            }
        };
        let created = room.last_seq == 0 && room.members.is_empty() && room.history.is_empty();
        room.active = Instant::now();
        // Another connection of the session (a tab; or the one a resume replaced) is the
        // same member: only a new name is news.
        match room.members.get_mut(&member.session) {
            None => {
                let conns = vec![member.conn.clone()];
                room.members
                    .insert(member.session.clone(), (conns, member.name.clone()));
                room.roster.add(member.name.as_str());
                self.notice(room_name, NoticeKind::Joined, &member.name, None);
            }
            Some((conns, name)) => {
                sessions::hold(conns, &member.conn);
                if *name != member.name {
                    let old = std::mem::replace(name, member.name.clone());
                    room.roster.remove(old.as_str());
                    room.roster.add(member.name.as_str());
                    self.notice(room_name, NoticeKind::Renamed, &member.name, Some(&old));
                }
            }
        }
        let recovered = since.and_then(|since| {
            (since.epoch == room.epoch)
                .then(|| room.history.after(since.seq, room.last_seq, RECOVER_MAX))
                .flatten()
        });
        let complete = since.map(|_| recovered.is_some());
        let history = recovered.unwrap_or_else(|| room.history.recent(self.history.window));
        Ok(Snapshot {
            recovered: complete,
            created,
            ..room.snapshot(self.list_max, history)
        })
    }

    async fn peek(&self, room_name: &RoomName) -> Result<Snapshot, StoreError> {
        let Some(room) = self.existing(room_name) else {
            return Ok(Snapshot::default());
        };
        let room = room.lock().await;
        Ok(room.snapshot(self.list_max, room.history.recent(self.history.window)))
    }

    async fn leave(&self, room_name: &RoomName, member: &Member) -> Result<(), StoreError> {
        let Some(room_ref) = self.existing(room_name) else {
            return Ok(());
        };
        let mut room = room_ref.lock().await;
        let Some((conns, _)) = room.members.get_mut(&member.session) else {
            return Ok(());
        };
        conns.retain(|c| *c != member.conn);
        // The member leaves with its last connection.
        if conns.is_empty()
            && let Some((_, name)) = room.members.remove(&member.session)
        {
            room.roster.remove(name.as_str());
            self.notice(room_name, NoticeKind::Left, &name, None);
        }
        self.forget_if_empty(room_name, &room_ref, &mut room);
        Ok(())
    }

    async fn rename(&self, room_name: &RoomName, member: &Member) -> Result<(), StoreError> {
        let Some(room) = self.existing(room_name) else {
            return Ok(());
        };
        let mut room = room.lock().await;
        let Some((conns, name)) = room.members.get_mut(&member.session) else {
            return Ok(());
        };
        // Another connection of the session may have said it first.
        if !conns.contains(&member.conn) || *name == member.name {
            return Ok(());
        }
        let old = std::mem::replace(name, member.name.clone());
        room.roster.remove(old.as_str());
        room.roster.add(member.name.as_str());
        self.notice(room_name, NoticeKind::Renamed, &member.name, Some(&old));
        Ok(())
    }

    async fn members(
        &self,
        room: &RoomName,
        query: &MemberQuery,
    ) -> Result<MemberPage, StoreError> {
        Ok(match self.existing(room) {
            Some(room) => room.lock().await.members(query),
            None => MemberPage::default(),
        })
    }

    async fn reassert(
        &self,
        _room: &RoomName,
        _members: &[Member],
        _delivered: Option<(&str, u64)>,
    ) -> Result<(), StoreError> {
        // Nothing outside this process can lose them.
        Ok(())
    }
}

#[async_trait::async_trait]
impl Broker for MemoryStore {
    async fn append(
        &self,
        room_name: &RoomName,
        from: &UserName,
        text: MessageText,
        client_id: Option<String>,
        change: Change,
        author: Option<String>,
    ) -> Result<Stored, StoreError> {
        let Some(room) = self.existing(room_name) else {
            return Err(StoreError::NotInRoom);
        };
        let mut room = room.lock().await;
        if let Some(seq) = client_id.as_deref().and_then(|id| room.recent_ids.get(id)) {
            return Ok(Stored {
                seq,
                duplicate: true,
            });
        }
        room.active = Instant::now();
        let msg = ChatMessage {
            room: room_name.to_string(),
            seq: room.last_seq + 1,
            epoch: room.epoch.clone(),
            from: from.to_string(),
            text: text.into_string(),
            ts: now_ms(),
            client_id,
            edits: change.edits,
            deleted: change.deleted,
            moderation: change.moderation,
            author,
        };
        room.last_seq = msg.seq;
        if let Some(id) = &msg.client_id {
            room.recent_ids
                .insert(id.clone(), msg.seq, self.dedup_window);
        }
        room.history.push(msg.clone(), &self.history);
        let seq = msg.seq;
        self.bus
            .publish(room_name, BusEvent::new(ServerMsg::Message(msg)));
        Ok(Stored {
            seq,
            duplicate: false,
        })
    }

    async fn since(
        &self,
        room: &RoomName,
        epoch: &str,
        seq: u64,
    ) -> Result<Option<Vec<ChatMessage>>, StoreError> {
        let Some(room) = self.existing(room) else {
            return Ok(None);
        };
        let room = room.lock().await;
        if room.last_seq > 0 && epoch != room.epoch {
            return Ok(None);
        }
        Ok(room.history.after(seq, room.last_seq, usize::MAX))
    }

    async fn page(
        &self,
        room: &RoomName,
        before: Option<&Position>,
        limit: usize,
    ) -> Result<Page, StoreError> {
        let Some(room) = self.existing(room) else {
            return Ok(Page::default());
        };
        let room = room.lock().await;
        Ok(Page::answer(room.numbering(), before, || {
            room.history.before(before.map(|b| b.seq), limit)
        }))
    }

    async fn subscribe(&self, room: &RoomName) -> Result<Subscription, StoreError> {
        Ok(self.bus.subscribe(room))
    }

    async fn signal(&self, room: &RoomName, msg: &ServerMsg) -> Result<(), StoreError> {
        self.bus.publish(room, BusEvent::new(msg.clone()));
        Ok(())
    }

    async fn rule(&self, room: &RoomName, rule: Rule) -> Result<(), StoreError> {
        let Some(room) = self.existing(room) else {
            return Err(StoreError::NotInRoom);
        };
        room.lock().await.rules.set(rule, now_ms());
        Ok(())
    }

    async fn gate(&self, room: &RoomName, who: &[String], act: Act) -> Result<u64, StoreError> {
        // A room nobody opened has no rules.
        match self.existing(room) {
            Some(room) => room.lock().await.rules.gate(who, act, now_ms()),
            None => Ok(0),
        }
    }
}

#[async_trait::async_trait]
impl Health for MemoryStore {
    async fn ready(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests;
