//! Local fan-out: one task per room with members on this node.
//!
//! The room task is the only owner of the room's local member list. It subscribes to the room on
//! the bus, serializes each event once and hands the same bytes to every member's bounded queue.
//! Joins go through the task too, so the history snapshot a joiner gets and the live events it
//! receives after it meet without a gap or an overlap: events are processed one at a time, and a
//! joiner skips live messages whose `seq` its snapshot already holds.

use super::{
    bus::{Bus, BusEvent, RecvError},
    state::{SessionId, SharedState},
};
use crate::protocol::{ErrorCode, Invalid, RoomName, ServerMsg, UserName};
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes};
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};
use tokio::{
    sync::{mpsc, oneshot},
    time::Instant,
};
use tokio_util::sync::CancellationToken;

/// Close code for a connection the server drops so that its client reconnects and resyncs:
/// 1013 "try again later".
pub const CLOSE_TRY_AGAIN: u16 = 1013;

/// How the hub reaches one connection.
#[derive(Clone)]
pub struct Outbox {
    /// Bounded: when full, the reader is too slow and is closed (never waited for, never grown).
    pub tx: mpsc::Sender<Message>,
    /// Cancelled to close the connection from outside its own task.
    pub close: CancellationToken,
}

impl Outbox {
    /// Queues a frame without waiting. A full queue closes the connection: its client will
    /// reconnect and reload the room, which is better than losing frames silently or letting one
    /// slow reader hold memory for everyone.
    pub fn offer(&self, frame: Message) -> bool {
        match self.tx.try_send(frame) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::warn!("outbound queue full: closing slow connection");
                self.close.cancel();
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

pub fn encode(msg: &ServerMsg) -> Message {
    match serde_json::to_string(msg) {
        Ok(json) => Message::Text(Utf8Bytes::from(json)),
        // ServerMsg holds only strings, numbers and lists: serialization cannot fail.
        Err(e) => {
            tracing::error!(cause = %e, "cannot encode a server frame");
            Message::Close(Some(CloseFrame {
                code: 1011,
                reason: Utf8Bytes::from_static("internal error"),
            }))
        }
    }
}

enum Command {
    Join {
        session: SessionId,
        name: UserName,
        outbox: Outbox,
        reply: oneshot::Sender<Result<(), Invalid>>,
    },
    Leave {
        session: SessionId,
        reply: oneshot::Sender<()>,
    },
}

struct LocalMember {
    session: SessionId,
    outbox: Outbox,
    /// Live messages with a `seq` up to this were in the member's join snapshot.
    skip_through: u64,
}

pub struct Hub {
    state: Arc<SharedState>,
    bus: Arc<dyn Bus>,
    /// Least time between two `presence` frames of one room from this node.
    presence_interval: Duration,
    /// Room → its task's command queue. The queue is unbounded, yet bounded in practice: each
    /// connection waits for the answer to its command before sending another.
    rooms: Mutex<HashMap<RoomName, mpsc::UnboundedSender<Command>>>,
}

impl Hub {
    pub fn new(
        state: Arc<SharedState>,
        bus: Arc<dyn Bus>,
        presence_interval: Duration,
    ) -> Arc<Self> {
        Arc::new(Self {
            state,
            bus,
            presence_interval,
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

    /// Joins `session` to the room on this node: on success its `joined` frame is queued, followed
    /// by the room's live events.
    pub async fn join(
        self: &Arc<Self>,
        room: &RoomName,
        session: &SessionId,
        name: &UserName,
        outbox: &Outbox,
    ) -> Result<(), Invalid> {
        let (reply, answer) = oneshot::channel();
        self.command(
            room,
            Command::Join {
                session: session.clone(),
                name: name.clone(),
                outbox: outbox.clone(),
                reply,
            },
        );
        answer
            .await
            .unwrap_or_else(|_| Err(Invalid::new(ErrorCode::Internal, "the room stopped")))
    }

    /// Stops delivering the room to `session` and tells the others it left.
    pub async fn leave(self: &Arc<Self>, room: &RoomName, session: &SessionId) {
        let (reply, answer) = oneshot::channel();
        self.command(
            room,
            Command::Leave {
                session: session.clone(),
                reply,
            },
        );
        let _ = answer.await;
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

async fn room_task(hub: Arc<Hub>, room: RoomName, mut commands: mpsc::UnboundedReceiver<Command>) {
    let mut sub = match hub.bus.subscribe(&room).await {
        Ok(sub) => sub,
        Err(e) => {
            tracing::error!(cause = %e, %room, "cannot subscribe to room");
            refuse_all(&hub, &room, &mut commands);
            return;
        }
    };
    let mut members: Vec<LocalMember> = Vec::new();
    let mut presence = PresenceThrottle::new(hub.presence_interval);
    loop {
        tokio::select! {
            biased;
            cmd = commands.recv() => match cmd {
                Some(cmd) => handle(&hub, &room, &mut members, cmd).await,
                None => break,
            },
            event = sub.recv() => {
                if !deliver(&room, &mut members, &mut presence, event) {
                    break;
                }
            }
            _ = tokio::time::sleep_until(presence.next_at), if presence.pending.is_some() => {
                if let Some(frame) = presence.take_due() {
                    fan_out(&mut members, &frame, None);
                }
            }
        }
        while members.is_empty() {
            match hub.retire(&room, &mut commands) {
                Some(cmd) => handle(&hub, &room, &mut members, cmd).await,
                None => return,
            }
        }
    }
    // The bus closed: close every local member so its client reconnects and resyncs.
    for m in &members {
        m.outbox.close.cancel();
    }
    refuse_all(&hub, &room, &mut commands);
}

/// Answers every queued command with an error and forgets the room, so the next join starts a
/// fresh task.
fn refuse_all(hub: &Hub, room: &RoomName, commands: &mut mpsc::UnboundedReceiver<Command>) {
    loop {
        match hub.retire(room, commands) {
            Some(Command::Join { reply, .. }) => {
                let _ = reply.send(Err(Invalid::new(
                    ErrorCode::Internal,
                    "the room is unavailable; try again",
                )));
            }
            Some(Command::Leave { reply, .. }) => {
                let _ = reply.send(());
            }
            None => return,
        }
    }
}

async fn handle(hub: &Hub, room: &RoomName, members: &mut Vec<LocalMember>, cmd: Command) {
    match cmd {
        Command::Join {
            session,
            name,
            outbox,
            reply,
        } => {
            let result = match hub.state.join(room, &session, &name).await {
                Ok(snapshot) => {
                    // A repeated join replaces the member's entry and resends the room.
                    members.retain(|m| m.session != session);
                    let joined = ServerMsg::Joined {
                        room: room.to_string(),
                        members: snapshot.members,
                        history: snapshot.history,
                    };
                    if outbox.offer(encode(&joined)) {
                        members.push(LocalMember {
                            session,
                            outbox,
                            skip_through: snapshot.last_seq,
                        });
                    }
                    Ok(())
                }
                Err(e) => Err(e),
            };
            let _ = reply.send(result);
        }
        Command::Leave { session, reply } => {
            members.retain(|m| m.session != session);
            if let Err(e) = hub.state.leave(room, &session).await {
                tracing::warn!(cause = %e, %room, "leave was not announced");
            }
            let _ = reply.send(());
        }
    }
}

/// Sends `presence` frames of one room at most once per interval, the newest winning.
///
/// Every join or leave lists the whole room; sent to every member each time, a reconnect storm
/// of n users would cost O(n²) bytes. Notices stay immediate; the list catches up within the
/// interval, and the first change after a quiet spell goes out at once.
struct PresenceThrottle {
    interval: Duration,
    next_at: Instant,
    pending: Option<Message>,
}

impl PresenceThrottle {
    fn new(interval: Duration) -> Self {
        Self {
            interval,
            next_at: Instant::now(),
            pending: None,
        }
    }

    /// Returns the frame if it may go out now; otherwise keeps it (replacing an older one).
    fn offer(&mut self, frame: Message) -> Option<Message> {
        if self.pending.is_none() && Instant::now() >= self.next_at {
            self.next_at = Instant::now() + self.interval;
            Some(frame)
        } else {
            self.pending = Some(frame);
            None
        }
    }

    /// The kept frame, once its time has come.
    fn take_due(&mut self) -> Option<Message> {
        if Instant::now() < self.next_at {
            return None;
        }
        let frame = self.pending.take()?;
        self.next_at = Instant::now() + self.interval;
        Some(frame)
    }
}

/// Queues `frame` for every local member. A member whose queue is full is closed by `offer` and
/// dropped here; its connection then leaves the room properly.
fn fan_out(members: &mut Vec<LocalMember>, frame: &Message, seq: Option<u64>) {
    members.retain(|m| match seq {
        Some(seq) if seq <= m.skip_through => true,
        _ => m.outbox.offer(frame.clone()),
    });
}

/// Hands one bus event to every local member. Returns false when the subscription is over.
fn deliver(
    room: &RoomName,
    members: &mut Vec<LocalMember>,
    presence: &mut PresenceThrottle,
    event: Result<BusEvent, RecvError>,
) -> bool {
    match event {
        Ok(event) => {
            let frame = encode(&event);
            match &*event {
                ServerMsg::Message(m) => fan_out(members, &frame, Some(m.seq)),
                ServerMsg::Presence { .. } => {
                    if let Some(frame) = presence.offer(frame) {
                        fan_out(members, &frame, None);
                    }
                }
                _ => fan_out(members, &frame, None),
            }
            true
        }
        Err(RecvError::Lagged(n)) => {
            // Events are gone for every local member: close them all so they reconnect and
            // reload the room rather than miss messages unknowingly.
            tracing::error!(%room, missed = n, "room fell behind the bus: closing its local members");
            for m in members.drain(..) {
                m.outbox.close.cancel();
            }
            true
        }
        Err(RecvError::Closed) => false,
    }
}
