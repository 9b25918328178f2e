//! The message bus: how an event published for a room reaches every node that has members in it.
//!
//! One node needs nothing but [`MemoryBus`]. The Redis implementation (many nodes) plugs in behind
//! the same trait: operations are async and fallible, and everything is scoped to one room so a
//! node only hears about rooms it serves.

mod memory;

pub use memory::MemoryBus;

use crate::protocol::{RoomName, ServerMsg};
use std::sync::Arc;
use tokio::sync::broadcast;

/// An event as it travels between nodes: the typed frame every member of the room receives.
pub type BusEvent = Arc<ServerMsg>;

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The bus cannot be reached now; the caller reports a retryable error to the user.
    #[error("message bus unavailable: {0}")]
    Unavailable(String),
}

/// Why a subscription yielded no event.
#[derive(Debug, PartialEq, Eq)]
pub enum RecvError {
    /// The subscriber fell this many events behind and they are gone: its listeners must resync.
    Lagged(u64),
    /// The bus shut down.
    Closed,
}

/// A node's subscription to one room. Dropping it unsubscribes.
pub struct Subscription {
    rx: broadcast::Receiver<BusEvent>,
}

impl Subscription {
    pub(crate) fn new(rx: broadcast::Receiver<BusEvent>) -> Self {
        Self { rx }
    }

    /// The next event, in publication order.
    pub async fn recv(&mut self) -> Result<BusEvent, RecvError> {
        self.rx.recv().await.map_err(|e| match e {
            broadcast::error::RecvError::Lagged(n) => RecvError::Lagged(n),
            broadcast::error::RecvError::Closed => RecvError::Closed,
        })
    }
}

/// Publish to a room, subscribe to a room.
///
/// Events one caller publishes to one room are received by every subscriber in that order.
#[async_trait::async_trait]
pub trait Bus: Send + Sync + 'static {
    async fn publish(&self, room: &RoomName, event: BusEvent) -> Result<(), BusError>;
    async fn subscribe(&self, room: &RoomName) -> Result<Subscription, BusError>;
}
