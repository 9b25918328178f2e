//! The chat's shared state: who holds which name, who is in which room, each room's history and
//! sequence counter. Every change that others must hear about is published on the bus while the
//! room is locked, so sequence numbers and membership events go out in the order they happened.
//!
//! This is the single-node implementation; with many nodes the same state lives in Redis.

use super::bus::{Bus, BusError};
use crate::protocol::{
    ChatMessage, ErrorCode, Invalid, MessageText, NoticeKind, RoomName, ServerMsg, UserName,
    sort_members,
};
use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    sync::{Arc, Mutex},
    time::{SystemTime, UNIX_EPOCH},
};

/// Identifies one connection for its whole life.
pub type SessionId = Arc<str>;

/// What a joiner is told about the room.
#[derive(Debug)]
pub struct Snapshot {
    pub members: Vec<String>,
    pub history: Vec<ChatMessage>,
    /// The newest `seq` in `history` (0 when empty): live messages up to it are already known.
    pub last_seq: u64,
}

#[derive(Default)]
struct Room {
    members: BTreeMap<SessionId, UserName>,
    history: VecDeque<ChatMessage>,
    last_seq: u64,
    /// Set when the room is dropped from the map; whoever still holds it must look it up again.
    retired: bool,
}

impl Room {
    /// Sorted case-insensitively, as people read lists of names.
    fn member_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .members
            .values()
            .map(|n| n.as_str().to_owned())
            .collect();
        sort_members(&mut names);
        names
    }
}

pub struct SharedState {
    bus: Arc<dyn Bus>,
    /// Names the history of this process's rooms: sequence numbers restart with it.
    epoch: String,
    history_size: usize,
    max_rooms: usize,
    /// Lower-cased name → the session holding it. std Mutex: look-ups only, never across `.await`.
    names: Mutex<HashMap<String, SessionId>>,
    /// std Mutex for the map; each room's own async lock is held while its events are published.
    rooms: Mutex<HashMap<RoomName, Arc<tokio::sync::Mutex<Room>>>>,
}

fn bus_failed(e: BusError) -> Invalid {
    tracing::error!(cause = %e, "bus publish failed");
    Invalid::new(
        ErrorCode::Internal,
        "the message could not be delivered; try again",
    )
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl SharedState {
    pub fn new(bus: Arc<dyn Bus>, history_size: usize, max_rooms: usize) -> Self {
        Self {
            bus,
            epoch: format!("{:016x}", rand::random::<u64>()),
            history_size,
            max_rooms,
            names: Mutex::new(HashMap::new()),
            rooms: Mutex::new(HashMap::new()),
        }
    }

    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    /// Takes `name` for `session`, giving up `old` if it held one. Names are unique
    /// case-insensitively among everyone online.
    pub fn claim_name(
        &self,
        session: &SessionId,
        name: &UserName,
        old: Option<&UserName>,
    ) -> Result<(), Invalid> {
        let mut names = self.names.lock().unwrap_or_else(|p| p.into_inner());
        let key = name.key();
        match names.get(&key) {
            Some(owner) if owner != session => {
                return Err(Invalid::new(
                    ErrorCode::NameTaken,
                    format!("the name {name} is taken; pick another"),
                ));
            }
            _ => {}
        }
        if let Some(old) = old
            && old.key() != key
        {
            names.remove(&old.key());
        }
        names.insert(key, session.clone());
        Ok(())
    }

    pub fn release_name(&self, session: &SessionId, name: &UserName) {
        let mut names = self.names.lock().unwrap_or_else(|p| p.into_inner());
        if names.get(&name.key()) == Some(session) {
            names.remove(&name.key());
        }
    }

    fn existing(&self, room: &RoomName) -> Option<Arc<tokio::sync::Mutex<Room>>> {
        let rooms = self.rooms.lock().unwrap_or_else(|p| p.into_inner());
        rooms.get(room).cloned()
    }

    fn get_or_create(&self, room: &RoomName) -> Result<Arc<tokio::sync::Mutex<Room>>, Invalid> {
        let mut rooms = self.rooms.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = rooms.get(room) {
            return Ok(r.clone());
        }
        if rooms.len() >= self.max_rooms {
            return Err(Invalid::new(
                ErrorCode::TooManyRooms,
                "the server holds as many rooms as it may; join an existing one",
            ));
        }
        let r = Arc::new(tokio::sync::Mutex::new(Room::default()));
        rooms.insert(room.clone(), r.clone());
        Ok(r)
    }

    async fn publish(&self, room: &RoomName, msg: ServerMsg) -> Result<(), Invalid> {
        self.bus
            .publish(room, Arc::new(msg))
            .await
            .map_err(bus_failed)
    }

    async fn publish_change(
        &self,
        room_name: &RoomName,
        room: &Room,
        kind: NoticeKind,
        name: &UserName,
        old_name: Option<&UserName>,
    ) -> Result<(), Invalid> {
        let notice = ServerMsg::Notice {
            room: room_name.to_string(),
            kind,
            name: name.to_string(),
            old_name: old_name.map(|n| n.to_string()),
        };
        self.publish(room_name, notice).await?;
        let presence = ServerMsg::Presence {
            room: room_name.to_string(),
            members: room.member_names(),
        };
        self.publish(room_name, presence).await
    }

    /// Adds `session` to the room (announcing it the first time) and returns what it should see.
    pub async fn join(
        &self,
        room_name: &RoomName,
        session: &SessionId,
        name: &UserName,
    ) -> Result<Snapshot, Invalid> {
        let mut room = loop {
            let guard = self.get_or_create(room_name)?.lock_owned().await;
            if !guard.retired {
                break guard;
            }
        };
        let is_new = room.members.insert(session.clone(), name.clone()).is_none();
        if is_new {
            self.publish_change(room_name, &room, NoticeKind::Joined, name, None)
                .await?;
        }
        Ok(Snapshot {
            members: room.member_names(),
            history: room.history.iter().cloned().collect(),
            last_seq: room.last_seq,
        })
    }

    /// Removes `session` from the room and announces it; a room left with neither members nor
    /// history is forgotten.
    pub async fn leave(&self, room_name: &RoomName, session: &SessionId) -> Result<(), Invalid> {
        let Some(room_ref) = self.existing(room_name) else {
            return Ok(());
        };
        let mut room = room_ref.lock().await;
        let Some(name) = room.members.remove(session) else {
            return Ok(());
        };
        let published = self
            .publish_change(room_name, &room, NoticeKind::Left, &name, None)
            .await;
        if room.members.is_empty() && room.history.is_empty() {
            let mut rooms = self.rooms.lock().unwrap_or_else(|p| p.into_inner());
            if rooms
                .get(room_name)
                .is_some_and(|r| Arc::ptr_eq(r, &room_ref))
            {
                rooms.remove(room_name);
                // A join already holding this room will see the mark and look it up afresh.
                room.retired = true;
            }
        }
        published
    }

    /// Announces that `session`, a member of the room, is now called `name`.
    pub async fn rename(
        &self,
        room_name: &RoomName,
        session: &SessionId,
        old: &UserName,
        name: &UserName,
    ) -> Result<(), Invalid> {
        let Some(room) = self.existing(room_name) else {
            return Ok(());
        };
        let mut room = room.lock().await;
        let Some(slot) = room.members.get_mut(session) else {
            return Ok(());
        };
        *slot = name.clone();
        self.publish_change(room_name, &room, NoticeKind::Renamed, name, Some(old))
            .await
    }

    /// Stores a message under the room's next `seq` and publishes it, as one step.
    pub async fn append(
        &self,
        room_name: &RoomName,
        from: &UserName,
        text: MessageText,
        client_id: Option<String>,
    ) -> Result<ChatMessage, Invalid> {
        let Some(room) = self.existing(room_name) else {
            return Err(Invalid::new(ErrorCode::NotInRoom, "join the room first"));
        };
        let mut room = room.lock().await;
        let msg = ChatMessage {
            room: room_name.to_string(),
            seq: room.last_seq + 1,
            epoch: self.epoch.clone(),
            from: from.to_string(),
            text: text.into_string(),
            ts: now_ms(),
            client_id,
        };
        self.publish(room_name, ServerMsg::Message(msg.clone()))
            .await?;
        room.last_seq = msg.seq;
        if self.history_size > 0 {
            if room.history.len() == self.history_size {
                room.history.pop_front();
            }
            room.history.push_back(msg.clone());
        }
        Ok(msg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::bus::MemoryBus;

    fn state(history: usize) -> SharedState {
        SharedState::new(Arc::new(MemoryBus::default()), history, 10)
    }
    fn name(s: &str) -> UserName {
        UserName::parse(s).expect("valid name")
    }
    fn text(s: &str) -> MessageText {
        MessageText::parse(s.to_owned(), 100).expect("valid text")
    }

    #[test]
    fn a_name_is_unique_case_insensitively_and_free_again_once_released() {
        let s = state(10);
        let (a, b): (SessionId, SessionId) = ("a".into(), "b".into());
        s.claim_name(&a, &name("Ann"), None).expect("free");
        assert_eq!(
            s.claim_name(&b, &name("ANN"), None).map_err(|e| e.code),
            Err(ErrorCode::NameTaken)
        );
        // The holder may change the case of its own name.
        s.claim_name(&a, &name("ann"), Some(&name("Ann")))
            .expect("own name");
        s.release_name(&a, &name("ann"));
        s.claim_name(&b, &name("Ann"), None).expect("free again");
    }

    #[tokio::test]
    async fn history_keeps_the_newest_messages_in_seq_order() {
        let s = state(3);
        let room = RoomName::lobby();
        s.join(&room, &"a".into(), &name("ann"))
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
            .join(&room, &"b".into(), &name("bo"))
            .await
            .expect("joins");
        let texts: Vec<_> = snap.history.iter().map(|m| m.text.as_str()).collect();
        assert_eq!(texts, ["m3", "m4", "m5"]);
        assert_eq!(snap.last_seq, 5);
        assert_eq!(snap.members, ["ann", "bo"]);
    }

    #[tokio::test]
    async fn an_empty_room_without_history_is_forgotten_but_one_with_history_is_kept() {
        let s = state(3);
        let quiet = RoomName::parse("quiet").expect("valid");
        let busy = RoomName::parse("busy").expect("valid");
        let a: SessionId = "a".into();
        s.join(&quiet, &a, &name("ann")).await.expect("joins");
        s.join(&busy, &a, &name("ann")).await.expect("joins");
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
        let s = SharedState::new(Arc::new(MemoryBus::default()), 10, 2);
        let a: SessionId = "a".into();
        for r in ["r1", "r2"] {
            s.join(&RoomName::parse(r).expect("valid"), &a, &name("ann"))
                .await
                .expect("joins");
        }
        let third = s
            .join(&RoomName::parse("r3").expect("valid"), &a, &name("ann"))
            .await;
        assert_eq!(
            third.map(|_| ()).map_err(|e| e.code),
            Err(ErrorCode::TooManyRooms)
        );
    }
}
