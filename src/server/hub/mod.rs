//! Local fan-out: one task per room with members on this node.
//!
//! The room task is the only owner of the room's local member list. It subscribes to the room on
//! the bus and hands each event's bytes (encoded once per node: by the node that published it on
//! the in-memory bus, by each node's bus as it reads a Redis payload) to every member's bounded
//! queue.
//!
//! The task also keeps the room's stream whole on this node: it remembers the last `(epoch, seq)`
//! it delivered, drops repeats, and when a `seq` jumps or the bus says events may be lost
//! (reconnect, lag) it fetches the missing messages from the store before going on. Member lists
//! (`presence`) are read from the store at most once per `presence_interval` after a change.
//!
//! What the task awaits from the store: gap fills and the resync, whose order matters, and
//! nothing else. A fill the store cannot answer (Redis unreachable or failing over) is tried
//! again with a backoff while later live messages wait for it; only a gap the store no longer
//! holds closes the members (1013) to reload. Joins, leaves, renames and member-list reads run
//! beside it and report back, so a slow store call there never holds up delivery to the room. A join's snapshot and the live
//! stream still meet without a gap or an overlap: messages the task delivers while a join is in
//! flight are held, and the joiner gets those after its snapshot's end once the join is back,
//! while live messages its snapshot already holds are skipped for it.
//!
//! This file is the node's side (`Hub`: the rooms' tasks and their command queues); `room.rs`
//! is one room's task.

pub use super::outbox::Outbox;
use super::{
    config::Config,
    metrics::Metrics,
    store::{Member, Store, StoreError},
};
use crate::protocol::{Position, RoomName};
pub use presence::MEMBERS_PAGE_MAX;
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};
use tokio::sync::{mpsc, oneshot};

mod joined;
mod presence;
mod room;
#[cfg(test)]
mod tests;

use room::room_task;

/// How a connection joins a room.
#[derive(Debug, Clone, Default)]
pub struct Joining {
    /// The messages after this position are sent, when still stored.
    pub since: Option<Position>,
    /// Whether the join may open a room that does not exist yet.
    pub create: bool,
    /// The member takes `presence_changes` instead of whole lists.
    pub changes: bool,
}

impl Joining {
    /// A plain join that may open the room.
    pub fn open() -> Self {
        Self {
            create: true,
            ..Self::default()
        }
    }
}

enum Command {
    Join {
        member: Member,
        outbox: Outbox,
        joining: Joining,
        /// A reader without a name: it gets the room (its `joined` and live events) without
        /// being a member; nothing is stored or announced, and no room is opened.
        reader: bool,
        /// Whether it opened the room.
        reply: oneshot::Sender<Result<bool, StoreError>>,
    },
    Leave {
        member: Member,
        /// How long the store keeps the member before the leave is announced.
        grace: Duration,
        reply: oneshot::Sender<()>,
    },
    /// The member (by connection) now goes by `member.name`.
    Rename {
        member: Member,
        reply: oneshot::Sender<Result<(), StoreError>>,
    },
}

pub struct Hub {
    store: Arc<dyn Store>,
    metrics: Arc<Metrics>,
    /// Least time between two `presence` frames of one room from this node.
    presence_interval: Duration,
    /// Most names in a `joined` or `presence` frame: bigger rooms send their first page and the
    /// count (`presence_list_max`).
    list_max: usize,
    /// Rooms with more members get no join or leave notices (`notices_max_members`).
    notices_max: usize,
    /// Room → its task's command queue. The queue is unbounded, yet bounded in practice: each
    /// connection waits for the answer to its command before sending another.
    rooms: Mutex<HashMap<RoomName, mpsc::UnboundedSender<Command>>>,
}

impl Hub {
    pub fn new(store: Arc<dyn Store>, config: &Config, metrics: Arc<Metrics>) -> Arc<Self> {
        Arc::new(Self {
            store,
            metrics,
            presence_interval: config.rooms.presence_interval_ms,
            list_max: config.rooms.presence_list_max,
            notices_max: config.rooms.notices_max_members,
            rooms: Mutex::new(HashMap::new()),
        })
    }

    /// Sends a command to the room's task, starting the task if the room has none.
    fn command(self: &Arc<Self>, room: &RoomName, cmd: Command) {
        let mut rooms = self.rooms.lock().unwrap_or_else(|p| p.into_inner());
        let cmd = match rooms.get(room) {
            Some(tx) => match tx.send(cmd) {
                Ok(()) => return,
                Err(mpsc::error::SendError(cmd)) => cmd,
            },
            None => cmd,
        };
        let (tx, rx) = mpsc::unbounded_channel();
        // Cannot fail: `rx` is alive.
        let _ = tx.send(cmd);
        rooms.insert(room.clone(), tx);
        tokio::spawn(room_task(self.clone(), room.clone(), rx));
    }

    /// Joins the member to the room on this node: on success its `joined` frame is queued
    /// (with the messages after `since`, when given and still stored), followed by the room's
    /// live events. Without `create`, a room that does not exist is not opened (see
    /// `Store::join`). Returns whether the join opened the room.
    pub async fn join(
        self: &Arc<Self>,
        room: &RoomName,
        member: &Member,
        outbox: &Outbox,
        joining: Joining,
    ) -> Result<bool, StoreError> {
        self.ask(room, |reply| Command::Join {
            member: member.clone(),
            outbox: outbox.clone(),
            joining,
            reader: false,
            reply,
        })
        .await
    }

    /// Lets a connection without a name read the room (`joined`, then its live events) without
    /// being a member: others are told nothing and the room is not opened. `reader` is the
    /// connection as a member named [`UserName::reader`]. A later [`Hub::join`] of the same
    /// connection makes it a member. With `changes`, it takes `presence_changes`.
    pub async fn read(
        self: &Arc<Self>,
        room: &RoomName,
        reader: &Member,
        outbox: &Outbox,
        changes: bool,
    ) -> Result<(), StoreError> {
        self.ask(room, |reply| Command::Join {
            member: reader.clone(),
            outbox: outbox.clone(),
            joining: Joining {
                changes,
                ..Joining::default()
            },
            reader: true,
            reply,
        })
        .await
        .map(|_| ())
    }

    /// Stops delivering the room to the member's connection and tells the others it left —
    /// after `grace`, unless its session joined again meanwhile (then nobody hears of it).
    pub async fn leave(self: &Arc<Self>, room: &RoomName, member: &Member, grace: Duration) {
        let (reply, answer) = oneshot::channel();
        self.command(
            room,
            Command::Leave {
                member: member.clone(),
                grace,
                reply,
            },
        );
        let _ = answer.await;
    }

    /// Tells the room the member's connection goes by a new name: the room task keeps it (so
    /// what it re-asserts after a resync is the name now, not the one joined with), then the
    /// store records it and announces it. Does nothing if the connection is not in the room here.
    pub async fn rename(
        self: &Arc<Self>,
        room: &RoomName,
        member: &Member,
    ) -> Result<(), StoreError> {
        self.ask(room, |reply| Command::Rename {
            member: member.clone(),
            reply,
        })
        .await
    }

    /// Sends the room the command `make` builds around a reply channel and waits for its
    /// answer; a room task that stopped first answers `internal`.
    async fn ask<T>(
        self: &Arc<Self>,
        room: &RoomName,
        make: impl FnOnce(oneshot::Sender<Result<T, StoreError>>) -> Command,
    ) -> Result<T, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.command(room, make(reply));
        answer
            .await
            .unwrap_or_else(|_| Err(StoreError::Unavailable("the room's task stopped".into())))
    }

    /// Rooms with a task (members) on this node.
    pub fn room_count(&self) -> usize {
        self.rooms.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// Called by a room task with no members: removes the room unless a command is waiting, which
    /// is returned to be handled instead. Both happen under the map's lock, so no command can be
    /// sent to a task that is about to end.
    fn retire(
        &self,
        room: &RoomName,
        rx: &mut mpsc::UnboundedReceiver<Command>,
    ) -> Option<Command> {
        let mut rooms = self.rooms.lock().unwrap_or_else(|p| p.into_inner());
        match rx.try_recv() {
            Ok(cmd) => Some(cmd),
            Err(_) => {
                rooms.remove(room);
                None
            }
        }
    }
}
