//! The in-process bus: one broadcast channel per room that has a subscriber.

use super::{BusEvent, BusItem, Subscription};
use crate::protocol::RoomName;
use std::{collections::HashMap, sync::Arc, sync::Mutex};
use tokio::sync::broadcast;

pub struct MemoryBus {
    /// Guards the room → channel map. std Mutex: held only to look up or insert, never across an
    /// `.await`.
    rooms: Mutex<HashMap<RoomName, broadcast::Sender<BusItem>>>,
    /// Events a subscriber may fall behind by before it is told it lagged. Subscribers are the
    /// nodes' room tasks, which never block, so this only fills when a core is starved.
    capacity: usize,
}

impl MemoryBus {
    pub fn new(capacity: usize) -> Self {
        Self {
            rooms: Mutex::new(HashMap::new()),
            capacity,
        }
    }

    pub fn publish(&self, room: &RoomName, event: Arc<BusEvent>) {
        let mut rooms = self.rooms.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = rooms.get(room)
            && tx.send(BusItem::Event(event)).is_err()
        {
            // Nobody listens any more: forget the channel so idle rooms cost nothing.
            rooms.remove(room);
        }
    }

    pub fn subscribe(&self, room: &RoomName) -> Subscription {
        let mut rooms = self.rooms.lock().unwrap_or_else(|p| p.into_inner());
        let tx = rooms
            .entry(room.clone())
            .or_insert_with(|| broadcast::channel(self.capacity).0);
        Subscription::new(tx.subscribe())
    }
}

impl Default for MemoryBus {
    /// 128 events per room: the room tasks never block, so this is slack for a starved core
    /// (43 ms of a room taking 3,000 messages a second, 600,000 deliveries: no resync in that
    /// benchmark). The ring is allocated whole: 1,024 cost 40 KB per room with members, 410
    /// bytes per connection in rooms of 100; 128 cost 5 KB.
    fn default() -> Self {
        Self::new(128)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ServerMsg;

    fn event(room: &str) -> Arc<BusEvent> {
        BusEvent::new(ServerMsg::Left { room: room.into() })
    }

    fn room_of(item: BusItem) -> String {
        match item {
            BusItem::Event(e) => match &e.msg {
                ServerMsg::Left { room } => room.clone(),
                other => panic!("unexpected event {other:?}"),
            },
            BusItem::Resync => panic!("unexpected resync"),
        }
    }

    #[tokio::test]
    async fn subscribers_of_a_room_get_its_events_in_order_and_no_others() {
        let bus = MemoryBus::default();
        let a = RoomName::parse("a").expect("valid");
        let b = RoomName::parse("b").expect("valid");
        let mut sub_a = bus.subscribe(&a);
        let mut sub_b = bus.subscribe(&b);
        for _ in 0..3 {
            bus.publish(&a, event("a"));
        }
        bus.publish(&b, event("b"));
        for _ in 0..3 {
            assert_eq!(room_of(sub_a.recv().await.expect("event")), "a");
        }
        assert_eq!(room_of(sub_b.recv().await.expect("event")), "b");
    }

    #[tokio::test]
    async fn a_subscriber_that_falls_behind_is_told_how_far() {
        let bus = MemoryBus::new(2);
        let room = RoomName::parse("a").expect("valid");
        let mut sub = bus.subscribe(&room);
        for _ in 0..5 {
            bus.publish(&room, event("a"));
        }
        assert_eq!(
            sub.recv().await.err(),
            Some(super::super::RecvError::Lagged(3))
        );
    }

    #[tokio::test]
    async fn a_room_nobody_listens_to_is_forgotten() {
        let bus = MemoryBus::default();
        let room = RoomName::parse("a").expect("valid");
        drop(bus.subscribe(&room));
        bus.publish(&room, event("a"));
        assert!(bus.rooms.lock().expect("not poisoned").is_empty());
    }
}
