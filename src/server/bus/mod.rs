//! The message bus: how an event published for a room reaches every node that has members in it.
//!
//! One node needs nothing but [`MemoryBus`]; many nodes share [`RedisBus`] (Redis pub/sub). Both
//! hand a node's room task a [`Subscription`] that yields the room's events in publication order,
//! plus [`BusItem::Resync`] whenever events may have been missed (the bus reconnected, or the
//! subscriber fell behind): the room task then fills the gap from the stored history.

pub mod link;
mod memory;
pub mod payload;
mod redis;

pub use self::redis::{RedisBus, room_channel, slot};
pub use link::{Conn, Link, SlotRange, Target};
pub use memory::MemoryBus;

use crate::protocol::ServerMsg;
use std::sync::Arc;
use tokio::sync::{broadcast, mpsc};
use tungstenite::Utf8Bytes;

/// An event as a node's room task gets it: the typed frame, and its JSON, encoded once on this
/// node, as every member of the room here receives it.
#[derive(Debug)]
pub struct BusEvent {
    pub msg: ServerMsg,
    pub frame: Utf8Bytes,
}

impl BusEvent {
    /// Encodes `msg` once, for every member.
    pub fn new(msg: ServerMsg) -> Arc<Self> {
        let frame = crate::server::frame::json(&msg);
        Arc::new(Self { msg, frame })
    }

    /// Reads an event a Redis script published on `room`'s channel (see [`payload`]); `None`
    /// (logged) for anything unreadable. The frame is encoded here, once per node.
    pub fn decode(room: &crate::protocol::RoomName, payload: &str) -> Option<Arc<Self>> {
        match payload::decode(room.as_str(), payload) {
            Ok(msg) => Some(Self::new(msg)),
            Err(e) => {
                tracing::error!(cause = %e, %room, "unreadable event on the bus; dropped");
                None
            }
        }
    }
}

#[derive(Debug, Clone)]
pub enum BusItem {
    Event(Arc<BusEvent>),
    /// Events may have been lost (the bus reconnected): catch up from the stored history and
    /// re-register this node's members.
    Resync,
}

/// Why a subscription yielded nothing.
#[derive(Debug, PartialEq, Eq)]
pub enum RecvError {
    /// The subscriber fell this many events behind and they are gone: resync.
    Lagged(u64),
    /// The bus shut down.
    Closed,
}

/// A node's subscription to one room. Dropping it unsubscribes.
pub struct Subscription {
    rx: broadcast::Receiver<BusItem>,
    /// Told the room when this subscription ends, so the bus can stop listening to it.
    on_drop: Option<(
        mpsc::UnboundedSender<crate::protocol::RoomName>,
        crate::protocol::RoomName,
    )>,
}

impl Subscription {
    pub(crate) fn new(rx: broadcast::Receiver<BusItem>) -> Self {
        Self { rx, on_drop: None }
    }

    pub(crate) fn with_drop_notice(
        rx: broadcast::Receiver<BusItem>,
        notify: mpsc::UnboundedSender<crate::protocol::RoomName>,
        room: crate::protocol::RoomName,
    ) -> Self {
        Self {
            rx,
            on_drop: Some((notify, room)),
        }
    }

    /// The next item, in publication order.
    pub async fn recv(&mut self) -> Result<BusItem, RecvError> {
        self.rx.recv().await.map_err(|e| match e {
            broadcast::error::RecvError::Lagged(n) => RecvError::Lagged(n),
            broadcast::error::RecvError::Closed => RecvError::Closed,
        })
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some((notify, room)) = self.on_drop.take() {
            let _ = notify.send(room);
        }
    }
}
