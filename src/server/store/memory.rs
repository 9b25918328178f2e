//! The single-node store: everything in this process. Every change that others must hear about
//! is published on the in-process bus while the room is locked, so sequence numbers and membership
//! events go out in the order they happened.

use super::{
    Broker, ConnId, Departure, Health, Member, Presence, RecentIds, SessionId, Sessions, Snapshot,
    StoreError, Stored, messages_after, new_epoch, now_ms,
};
use crate::{
    protocol::{ChatMessage, MessageText, NoticeKind, RoomName, ServerMsg, UserName, sort_members},
    server::bus::{BusEvent, MemoryBus, Subscription},
};
use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

/// Until `with_room_idle` says otherwise: a week.
const DEFAULT_ROOM_IDLE: Duration = Duration::from_secs(7 * 24 * 3600);
/// Idle rooms are looked for at most this often (when a room is created), and whenever the node
/// is full.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

struct Room {
    /// Session → the connection carrying it here, and its name.
    members: BTreeMap<SessionId, (ConnId, UserName)>,
    history: VecDeque<ChatMessage>,
    last_seq: u64,
    /// Names this life of the room: a room evicted and opened again numbers from 1 in a new
    /// epoch, so a client's old position is never taken for a new message.
    epoch: String,
    /// The last join or message: rooms without members are evicted oldest first.
    active: Instant,
    recent_ids: RecentIds,
    /// Set when the room is dropped from the map; whoever still holds it must look it up again.
    retired: bool,
}

impl Room {
    fn new() -> Self {
        Self {
            members: BTreeMap::new(),
            history: VecDeque::new(),
            last_seq: 0,
            epoch: new_epoch(),
            active: Instant::now(),
            recent_ids: RecentIds::default(),
            retired: false,
        }
    }

    fn member_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .members
            .values()
            .map(|(_, n)| n.as_str().to_owned())
            .collect();
        sort_members(&mut names);
        names
    }

    fn holds(&self, member: &Member) -> bool {
        self.members
            .get(&member.session)
            .is_some_and(|(conn, _)| *conn == member.conn)
    }
}

struct SessionRec {
    name: UserName,
    /// The connection holding it; `None` while it waits to be resumed.
    conn: Option<ConnId>,
    /// When a detached session stops holding its name.
    expires: Option<Instant>,
}

impl SessionRec {
    fn live(&self, now: Instant) -> bool {
        self.conn.is_some() || self.expires.is_some_and(|t| t > now)
    }
}

#[derive(Default)]
struct SessionTable {
    /// Lower-cased name → the session holding it.
    names: HashMap<String, SessionId>,
    sessions: HashMap<SessionId, SessionRec>,
    /// Detached sessions in expiry order, swept as operations pass by.
    expiring: VecDeque<(Instant, SessionId)>,
}

impl SessionTable {
    fn sweep(&mut self, now: Instant) {
        while let Some((at, _)) = self.expiring.front() {
            if *at > now {
                break;
            }
            let Some((_, sid)) = self.expiring.pop_front() else {
                break;
            };
            if self.sessions.get(&sid).is_some_and(|r| !r.live(now)) {
                self.drop_session(&sid);
            }
        }
    }

    fn drop_session(&mut self, sid: &SessionId) {
        if let Some(rec) = self.sessions.remove(sid)
            && self.names.get(&rec.name.key()) == Some(sid)
        {
            self.names.remove(&rec.name.key());
        }
    }
}

pub struct MemoryStore {
    bus: MemoryBus,
    history_size: usize,
    dedup_window: usize,
    max_rooms: usize,
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
        history_size: usize,
        dedup_window: usize,
        max_rooms: usize,
        session_ttl: Duration,
    ) -> Self {
        Self {
            bus: MemoryBus::default(),
            history_size,
            dedup_window,
            max_rooms,
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
            config.rooms.history_size,
            config.rooms.dedup_window,
            config.rooms.max_rooms,
            Duration::from_secs(config.rooms.session_ttl_secs),
        )
        .with_room_idle(Duration::from_secs(config.rooms.room_idle_secs))
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
impl Sessions for MemoryStore {
    async fn resume(
        &self,
        session: &SessionId,
        conn: &ConnId,
    ) -> Result<Option<UserName>, StoreError> {
        let mut s = self.sessions();
        let now = Instant::now();
        Ok(match s.sessions.get_mut(session) {
            Some(rec) if rec.live(now) => {
                rec.conn = Some(conn.clone());
                rec.expires = None;
                Some(rec.name.clone())
            }
            _ => None,
        })
    }

    async fn claim_name(
        &self,
        session: &SessionId,
        conn: &ConnId,
        name: &UserName,
        old: Option<&UserName>,
    ) -> Result<(), StoreError> {
        let mut s = self.sessions();
        let now = Instant::now();
        let key = name.key();
        if let Some(owner) = s.names.get(&key).cloned()
            && owner != *session
        {
            if s.sessions.get(&owner).is_some_and(|r| r.live(now)) {
                return Err(StoreError::NameTaken(name.clone()));
            }
            s.drop_session(&owner);
        }
        if let Some(old) = old
            && old.key() != key
            && s.names.get(&old.key()) == Some(session)
        {
            s.names.remove(&old.key());
        }
        s.names.insert(key, session.clone());
        s.sessions.insert(
            session.clone(),
            SessionRec {
                name: name.clone(),
                conn: Some(conn.clone()),
                expires: None,
            },
        );
        Ok(())
    }

    async fn release(&self, session: &SessionId, conn: &ConnId, how: Departure) {
        let mut s = self.sessions();
        let Some(rec) = s.sessions.get_mut(session) else {
            return;
        };
        if rec.conn.as_ref() != Some(conn) {
            // Another connection took the session over.
            return;
        }
        match how {
            Departure::Closed => s.drop_session(session),
            Departure::Dropped => {
                let at = Instant::now() + self.session_ttl;
                rec.conn = None;
                rec.expires = Some(at);
                s.expiring.push_back((at, session.clone()));
            }
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
    ) -> Result<Snapshot, StoreError> {
        let mut room = loop {
            let guard = self.get_or_create(room_name, create)?.lock_owned().await;
            if !guard.retired {
                break guard;
            }
        };
        let created = room.last_seq == 0 && room.members.is_empty() && room.history.is_empty();
        room.active = Instant::now();
        let previous = room.members.insert(
            member.session.clone(),
            (member.conn.clone(), member.name.clone()),
        );
        match previous {
            None => self.notice(room_name, NoticeKind::Joined, &member.name, None),
            Some((_, old)) if old != member.name => {
                self.notice(room_name, NoticeKind::Renamed, &member.name, Some(&old))
            }
            Some(_) => {}
        }
        Ok(Snapshot {
            members: room.member_names(),
            history: room.history.iter().cloned().collect(),
            // As in Redis: a room's numbering has an epoch once its first message is stored.
            epoch: (room.last_seq > 0).then(|| room.epoch.clone()),
            last_seq: room.last_seq,
            created,
        })
    }

    async fn leave(&self, room_name: &RoomName, member: &Member) -> Result<(), StoreError> {
        let Some(room_ref) = self.existing(room_name) else {
            return Ok(());
        };
        let mut room = room_ref.lock().await;
        if !room.holds(member) {
            return Ok(());
        }
        if let Some((_, name)) = room.members.remove(&member.session) {
            self.notice(room_name, NoticeKind::Left, &name, None);
        }
        self.forget_if_empty(room_name, &room_ref, &mut room);
        Ok(())
    }

    async fn rename(
        &self,
        room_name: &RoomName,
        member: &Member,
        old: &UserName,
    ) -> Result<(), StoreError> {
        let Some(room) = self.existing(room_name) else {
            return Ok(());
        };
        let mut room = room.lock().await;
        if !room.holds(member) {
            return Ok(());
        }
        room.members.insert(
            member.session.clone(),
            (member.conn.clone(), member.name.clone()),
        );
        self.notice(room_name, NoticeKind::Renamed, &member.name, Some(old));
        Ok(())
    }

    async fn members(&self, room: &RoomName) -> Result<Vec<String>, StoreError> {
        Ok(match self.existing(room) {
            Some(room) => room.lock().await.member_names(),
            None => Vec::new(),
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
        };
        room.last_seq = msg.seq;
        if let Some(id) = &msg.client_id {
            room.recent_ids
                .insert(id.clone(), msg.seq, self.dedup_window);
        }
        if self.history_size > 0 {
            if room.history.len() == self.history_size {
                room.history.pop_front();
            }
            room.history.push_back(msg.clone());
        }
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
        Ok(messages_after(
            room.history.iter().cloned(),
            room.last_seq,
            seq,
        ))
    }

    async fn subscribe(&self, room: &RoomName) -> Result<Subscription, StoreError> {
        Ok(self.bus.subscribe(room))
    }
}

#[async_trait::async_trait]
impl Health for MemoryStore {
    async fn ready(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(history: usize) -> MemoryStore {
        MemoryStore::new(history, 100, 10, Duration::from_secs(30))
    }
    fn name(s: &str) -> UserName {
        UserName::parse(s).expect("valid name")
    }
    fn text(s: &str) -> MessageText {
        MessageText::parse(s.to_owned(), 100).expect("valid text")
    }
    fn member(session: &str, n: &str) -> Member {
        Member {
            session: session.into(),
            conn: format!("c-{session}").into(),
            name: name(n),
        }
    }

    #[tokio::test]
    async fn a_name_is_unique_case_insensitively_and_free_again_once_released() {
        let s = store(10);
        let (a, b): (SessionId, SessionId) = ("a".into(), "b".into());
        let (ca, cb): (ConnId, ConnId) = ("ca".into(), "cb".into());
        s.claim_name(&a, &ca, &name("Ann"), None)
            .await
            .expect("free");
        assert_eq!(
            s.claim_name(&b, &cb, &name("ANN"), None)
                .await
                .map_err(|e| matches!(e, StoreError::NameTaken(_))),
            Err(true)
        );
        // The holder may change the case of its own name.
        s.claim_name(&a, &ca, &name("ann"), Some(&name("Ann")))
            .await
            .expect("own name");
        s.release(&a, &ca, Departure::Closed).await;
        s.claim_name(&b, &cb, &name("Ann"), None)
            .await
            .expect("free again");
    }

    #[tokio::test]
    async fn a_dropped_session_keeps_its_name_until_it_expires_or_is_resumed() {
        let s = MemoryStore::new(10, 100, 10, Duration::from_millis(50));
        let (a, b): (SessionId, SessionId) = ("a".into(), "b".into());
        let (ca, ca2, cb): (ConnId, ConnId, ConnId) = ("ca".into(), "ca2".into(), "cb".into());
        s.claim_name(&a, &ca, &name("ann"), None)
            .await
            .expect("free");
        s.release(&a, &ca, Departure::Dropped).await;
        assert_eq!(
            s.claim_name(&b, &cb, &name("ann"), None)
                .await
                .map_err(|e| matches!(e, StoreError::NameTaken(_))),
            Err(true),
            "reserved for its session"
        );
        assert_eq!(s.resume(&a, &ca2).await.expect("ok"), Some(name("ann")));
        // The old connection's late release no longer touches the resumed session.
        s.release(&a, &ca, Departure::Closed).await;
        assert_eq!(
            s.claim_name(&b, &cb, &name("ann"), None)
                .await
                .map_err(|e| matches!(e, StoreError::NameTaken(_))),
            Err(true)
        );
        s.release(&a, &ca2, Departure::Dropped).await;
        tokio::time::sleep(Duration::from_millis(80)).await;
        assert_eq!(s.resume(&a, &ca2).await.expect("ok"), None, "expired");
        s.claim_name(&b, &cb, &name("ann"), None)
            .await
            .expect("free after expiry");
    }

    #[tokio::test]
    async fn a_resent_client_id_is_acknowledged_with_its_first_seq_not_stored_again() {
        let s = MemoryStore::new(10, 2, 10, Duration::from_secs(30));
        let room = RoomName::lobby();
        s.join(&room, &member("a", "ann"), true)
            .await
            .expect("joins");
        let ann = name("ann");
        let send = |id: &'static str| s.append(&room, &ann, text("hi"), Some(id.into()));
        let first = send("c1").await.expect("stored");
        assert_eq!(
            first,
            Stored {
                seq: 1,
                duplicate: false
            }
        );
        assert_eq!(
            send("c1").await.expect("ok"),
            Stored {
                seq: 1,
                duplicate: true
            }
        );
        assert_eq!(send("c2").await.expect("ok").seq, 2);
        assert_eq!(send("c3").await.expect("ok").seq, 3);
        // The window holds two ids: c1 has left it and would be stored again.
        assert_eq!(
            send("c1").await.expect("ok"),
            Stored {
                seq: 4,
                duplicate: false
            }
        );
        let snap = s
            .join(&room, &member("b", "bo"), true)
            .await
            .expect("joins");
        assert_eq!(snap.history.len(), 4, "the duplicate was not stored");
    }

    #[tokio::test]
    async fn history_keeps_the_newest_messages_in_seq_order() {
        let s = store(3);
        let room = RoomName::lobby();
        s.join(&room, &member("a", "ann"), true)
            .await
            .expect("joins");
        for i in 1..=5 {
            let m = s
                .append(&room, &name("ann"), text(&format!("m{i}")), None)
                .await
                .expect("stored");
            assert_eq!(m.seq, i);
        }
        let snap = s
            .join(&room, &member("b", "bo"), true)
            .await
            .expect("joins");
        let texts: Vec<_> = snap.history.iter().map(|m| m.text.as_str()).collect();
        assert_eq!(texts, ["m3", "m4", "m5"]);
        assert_eq!(snap.last_seq, 5);
        assert_eq!(snap.members, ["ann", "bo"]);
        let epoch = snap.epoch.expect("an epoch");
        let since = s.since(&room, &epoch, 3).await.expect("ok").expect("kept");
        assert_eq!(since.iter().map(|m| m.seq).collect::<Vec<_>>(), [4, 5]);
        assert_eq!(
            s.since(&room, &epoch, 1).await.expect("ok"),
            None,
            "trimmed"
        );
        assert_eq!(
            s.since(&room, "other", 3).await.expect("ok"),
            None,
            "other epoch"
        );
    }

    #[tokio::test]
    async fn a_late_leave_of_a_taken_over_session_changes_nothing() {
        let s = store(3);
        let room = RoomName::lobby();
        let old = member("a", "ann");
        let new = Member {
            conn: "c-new".into(),
            ..old.clone()
        };
        s.join(&room, &old, true).await.expect("joins");
        let mut sub = s.subscribe(&room).await.expect("subscribes");
        s.join(&room, &new, true).await.expect("joins again");
        s.leave(&room, &old).await.expect("no-op");
        assert_eq!(s.members(&room).await.expect("ok"), ["ann"]);
        s.leave(&room, &new).await.expect("leaves");
        assert_eq!(s.members(&room).await.expect("ok"), Vec::<String>::new());
        // Only the real leave was announced.
        match sub.recv().await.expect("an event") {
            crate::server::bus::BusItem::Event(e) => assert!(matches!(
                e.msg,
                ServerMsg::Notice {
                    kind: NoticeKind::Left,
                    ..
                }
            )),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[tokio::test]
    async fn an_empty_room_without_history_is_forgotten_but_one_with_history_is_kept() {
        let s = store(3);
        let quiet = RoomName::parse("quiet").expect("valid");
        let busy = RoomName::parse("busy").expect("valid");
        let a = member("a", "ann");
        s.join(&quiet, &a, true).await.expect("joins");
        s.join(&busy, &a, true).await.expect("joins");
        s.append(&busy, &name("ann"), text("hi"), None)
            .await
            .expect("stored");
        s.leave(&quiet, &a).await.expect("leaves");
        s.leave(&busy, &a).await.expect("leaves");
        let rooms = s.rooms.lock().expect("not poisoned");
        assert!(!rooms.contains_key(&quiet));
        assert!(rooms.contains_key(&busy));
    }

    #[tokio::test]
    async fn the_number_of_rooms_is_bounded() {
        let s = MemoryStore::new(10, 100, 2, Duration::from_secs(1));
        let a = member("a", "ann");
        for r in ["r1", "r2"] {
            s.join(&RoomName::parse(r).expect("valid"), &a, true)
                .await
                .expect("joins");
        }
        let third = s
            .join(&RoomName::parse("r3").expect("valid"), &a, true)
            .await;
        assert_eq!(third.map(|_| ()), Err(StoreError::RoomsFull));
    }

    /// A room with one stored message whose only member left again.
    async fn abandoned(s: &MemoryStore, room: &str) -> RoomName {
        let room = RoomName::parse(room).expect("valid");
        let a = member("a", "ann");
        s.join(&room, &a, true).await.expect("joins");
        s.append(&room, &name("ann"), text("hi"), None)
            .await
            .expect("stored");
        s.leave(&room, &a).await.expect("leaves");
        room
    }

    #[tokio::test]
    async fn a_full_node_forgets_the_room_without_members_idle_longest_instead_of_refusing() {
        let s = MemoryStore::new(10, 100, 3, Duration::from_secs(30));
        let first = abandoned(&s, "r1").await;
        let old_epoch = s
            .join(&first, &member("b", "bo"), true)
            .await
            .expect("joins");
        s.leave(&first, &member("b", "bo")).await.expect("leaves");
        tokio::time::sleep(Duration::from_millis(5)).await;
        let second = abandoned(&s, "r2").await;
        let busy = RoomName::parse("busy").expect("valid");
        s.join(&busy, &member("c", "cy"), true)
            .await
            .expect("joins");
        // Full: r1 (idle longest, no members) makes way; the busy room is never touched.
        let fourth = RoomName::parse("r4").expect("valid");
        s.join(&fourth, &member("d", "di"), true)
            .await
            .expect("room made");
        {
            let rooms = s.rooms.lock().expect("not poisoned");
            assert!(!rooms.contains_key(&first));
            assert!(rooms.contains_key(&second) && rooms.contains_key(&busy));
        }
        // Opened again, it numbers anew in a new epoch: an old position is not taken for new.
        let again = s
            .join(&first, &member("b", "bo"), true)
            .await
            .expect("joins");
        assert!(again.created && again.history.is_empty());
        s.append(&first, &name("bo"), text("new"), None)
            .await
            .expect("stored");
        let after = s
            .join(&first, &member("b", "bo"), true)
            .await
            .expect("joins");
        assert_eq!(after.last_seq, 1);
        assert_ne!(after.epoch, old_epoch.epoch);
        assert_eq!(
            s.since(&first, old_epoch.epoch.as_deref().expect("epoch"), 1)
                .await
                .expect("ok"),
            None
        );
    }

    #[tokio::test]
    async fn idle_rooms_without_members_are_forgotten_rooms_with_members_are_kept() {
        let s = MemoryStore::new(10, 100, 3, Duration::from_secs(30))
            .with_room_idle(Duration::from_millis(20));
        let idle = abandoned(&s, "idle").await;
        let kept = RoomName::parse("kept").expect("valid");
        s.join(&kept, &member("b", "bo"), true)
            .await
            .expect("joins");
        tokio::time::sleep(Duration::from_millis(40)).await;
        // Sweeps happen as rooms are opened (or when the node is full).
        *s.swept.lock().expect("not poisoned") -= SWEEP_EVERY;
        s.join(
            &RoomName::parse("new").expect("valid"),
            &member("c", "cy"),
            true,
        )
        .await
        .expect("joins");
        let rooms = s.rooms.lock().expect("not poisoned");
        assert!(!rooms.contains_key(&idle));
        assert!(rooms.contains_key(&kept));
    }

    #[tokio::test]
    async fn without_create_only_rooms_that_exist_can_be_joined() {
        let s = store(10);
        let open = abandoned(&s, "open").await;
        let snap = s
            .join(&open, &member("b", "bo"), false)
            .await
            .expect("exists");
        assert!(!snap.created);
        let new = RoomName::parse("new").expect("valid");
        assert_eq!(
            s.join(&new, &member("b", "bo"), false).await.map(|_| ()),
            Err(StoreError::CreationLimited)
        );
    }
}
