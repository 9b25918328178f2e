//! A connection's outbound queue: bounded, fed by its own reader and by the room tasks, drained
//! by its writer.
//!
//! Why not `tokio::sync::mpsc`: an idle connection is what a chat server holds most of, and an
//! mpsc channel keeps its 32-slot blocks (about 1.5 KB each, plus the channel) for the channel's
//! whole life, also after a burst has drained. Here the writer takes the whole queue at once,
//! so an idle connection's queue holds no storage at all.
//!
//! The queue is bounded in frames and in bytes, and what does not fit is shed in order
//! ([`Class`]): a room's member list replaces the one still queued for that room (the newest list
//! wins, so at most one per room waits, and so does who is typing); who is typing, and join and
//! leave notices, are dropped to make room; only
//! when what must arrive (messages, answers) does not fit is the reader closed as too slow
//! (`offer`), and its client recovers what it missed with `since`. The connection's own reader
//! waits instead (`send`), which stops reading from a client that does not read its answers.

use prometheus_client::metrics::{counter::Counter, histogram::Histogram};
use std::{
    collections::VecDeque,
    sync::{Arc, Mutex, MutexGuard},
};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tungstenite::Message;

/// How the hub and the connection's reader reach its writer. Cloning shares the queue.
#[derive(Clone)]
pub struct Outbox {
    shared: Arc<Shared>,
    /// Cancelled to close the connection from outside its own task.
    pub close: CancellationToken,
}

/// What a queued frame is, for shedding when the queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Must arrive, or the connection is closed: messages, answers, `joined`.
    Keep,
    /// A join, leave or rename notice: dropped when what must arrive needs the room (the member
    /// list, which follows, still tells who is there).
    Notice,
    /// A room's member list (`presence`), for the room with this id: replaces the one still
    /// queued for the same room (the old one goes, the new one queues behind what came since).
    Presence(u64),
    /// What changed in the member list of the room with this id (`presence_changes`): must
    /// arrive, as each is applied to the one before; a newer one finding it (or a list) still
    /// queued replaces it with the whole list ([`Outbox::offer_changes`]).
    Changes(u64),
    /// Who is typing in the room with this id: replaces the one still queued for the room, and
    /// is dropped, not waited for, whenever anything else needs the room.
    Typing(u64),
    /// What a joiner gets first (`joined` and the messages held while it joined): must arrive,
    /// and is not held to the byte bound, as a full history of long messages can exceed it.
    Catchup,
}

impl Class {
    /// Dropped to make room for anything else (and dropped itself when there is none).
    fn sheddable(self) -> bool {
        matches!(self, Class::Notice | Class::Typing(_))
    }

    /// A newer frame of this class replaces the one still queued.
    fn replaceable(self) -> bool {
        matches!(self, Class::Presence(_) | Class::Typing(_))
    }
}

struct Shared {
    queue: Mutex<Queue>,
    /// At most this many frames, and this many bytes (a single frame is let in alone whatever
    /// its size: a `joined` with long history can be larger).
    capacity: usize,
    max_bytes: usize,
    /// Wakes the writer: frames arrived, or the queue was ended.
    readable: Notify,
    /// Wakes a reader waiting in `send`: the writer took the queue.
    writable: Notify,
    /// Records how many frames the writer found queued each time it took them.
    depth: Option<Histogram>,
    /// Counts notices dropped and member lists replaced.
    shed: Option<Counter>,
}

#[derive(Default)]
struct Queue {
    frames: VecDeque<(Message, Class)>,
    /// The payload bytes of `frames`.
    bytes: usize,
    /// No frame will come any more: once drained, the writer closes the socket.
    ended: bool,
    /// The writer is gone: frames would never be written.
    gone: bool,
    /// A frame found the queue full: the connection is being closed as a slow reader.
    overflowed: bool,
}

/// The frames the writer took at once, in order.
pub struct Batch(VecDeque<(Message, Class)>);

impl Batch {
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Takes the frames out in order, leaving the batch empty.
    pub fn drain(&mut self) -> impl Iterator<Item = Message> + '_ {
        self.0.drain(..).map(|(frame, _)| frame)
    }
}

impl IntoIterator for Batch {
    type Item = Message;
    type IntoIter = std::iter::Map<
        std::collections::vec_deque::IntoIter<(Message, Class)>,
        fn((Message, Class)) -> Message,
    >;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter().map(|(frame, _)| frame)
    }
}

/// The queue is closed for good: its writer has gone.
#[derive(Debug)]
pub struct Gone;

impl Outbox {
    /// A queue of at most `capacity` frames (and no byte bound); `depth`, if given, observes
    /// each batch taken.
    pub fn new(capacity: usize, depth: Option<Histogram>) -> Self {
        Self::bounded(capacity, usize::MAX, depth, None)
    }

    /// A queue of at most `capacity` frames and `max_bytes` bytes; `shed`, if given, counts the
    /// frames shed to stay within them.
    pub fn bounded(
        capacity: usize,
        max_bytes: usize,
        depth: Option<Histogram>,
        shed: Option<Counter>,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                queue: Mutex::default(),
                capacity,
                max_bytes,
                readable: Notify::new(),
                writable: Notify::new(),
                depth,
                shed,
            }),
            close: CancellationToken::new(),
        }
    }

    fn queue(&self) -> MutexGuard<'_, Queue> {
        // Nothing panics while holding the lock; a poisoned queue is still consistent.
        self.shared.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a frame that must arrive, without waiting (see [`Outbox::offer_as`]).
    pub fn offer(&self, frame: Message) -> bool {
        self.offer_as(frame, Class::Keep)
    }

    /// Queues a frame without waiting, shedding member lists and notices to make room as
    /// [`Class`] says. When a frame that must arrive still does not fit, the connection is
    /// closed: its client will reconnect and recover the room, which is better than losing
    /// frames silently or letting one slow reader hold memory for everyone. False when the
    /// connection is closing (the frame was not queued and the room should let it go); a
    /// notice dropped for room is not that.
    pub fn offer_as(&self, frame: Message, class: Class) -> bool {
        let mut queue = self.queue();
        if queue.gone || queue.ended {
            return false;
        }
        if class.replaceable() && self.replace(&mut queue, |c| c == class, || frame.clone(), class)
        {
            return true;
        }
        self.offer_locked(queue, frame, class)
    }

    /// Queues what changed in the member list of the room `id` (`presence_changes`), or, when
    /// the room's list or changes are still queued (the client has not seen the list these
    /// changes apply to), replaces those with `whole()`, the room's whole list now (made only
    /// then). So a slow reader has at most one of them queued per room, and never a change
    /// without the one before it.
    pub fn offer_changes(
        &self,
        changes: Message,
        whole: impl FnOnce() -> Message,
        id: u64,
    ) -> bool {
        let mut queue = self.queue();
        if queue.gone || queue.ended {
            return false;
        }
        let queued = |c: Class| c == Class::Presence(id) || c == Class::Changes(id);
        if self.replace(&mut queue, queued, whole, Class::Presence(id)) {
            return true;
        }
        self.offer_locked(queue, changes, Class::Changes(id))
    }

    /// Replaces the first queued frame whose class `old` accepts with `frame()`, queued last
    /// (behind the notices queued since the old one, which the new one already counts).
    fn replace(
        &self,
        queue: &mut Queue,
        old: impl Fn(Class) -> bool,
        frame: impl FnOnce() -> Message,
        class: Class,
    ) -> bool {
        let Some(at) = queue.frames.iter().position(|(_, c)| old(*c)) else {
            return false;
        };
        let Some((gone, _)) = queue.frames.remove(at) else {
            return false;
        };
        let frame = frame();
        queue.bytes = queue.bytes - gone.len() + frame.len();
        queue.frames.push_back((frame, class));
        self.count_shed(1);
        tracing::trace!(?class, "replaced in the outbound queue");
        true
    }

    fn offer_locked(&self, mut queue: MutexGuard<'_, Queue>, frame: Message, class: Class) -> bool {
        if !self.admit(&mut queue, frame.len(), class) {
            if class.sheddable() {
                drop(queue);
                self.count_shed(1);
                return true;
            }
            queue.overflowed = true;
            drop(queue);
            // Once per connection: every room keeps offering until the writer has gone.
            if !self.close.is_cancelled() {
                tracing::warn!("outbound queue full: closing slow connection");
                self.close.cancel();
            }
            return false;
        }
        queue.bytes += frame.len();
        queue.frames.push_back((frame, class));
        drop(queue);
        self.shared.readable.notify_one();
        true
    }

    /// Whether a frame of `size` bytes and `class` fits, after dropping queued notices if it
    /// would not (a notice does not push out other notices: it is dropped itself).
    fn admit(&self, queue: &mut Queue, size: usize, class: Class) -> bool {
        let fits = |q: &Queue| {
            q.frames.is_empty()
                || (q.frames.len() < self.shared.capacity
                    && (class == Class::Catchup
                        || q.bytes.saturating_add(size) <= self.shared.max_bytes))
        };
        if fits(queue) {
            return true;
        }
        if class.sheddable() {
            return false;
        }
        let before = queue.frames.len();
        queue.frames.retain(|(_, class)| !class.sheddable());
        queue.bytes = queue.frames.iter().map(|(f, _)| f.len()).sum();
        self.count_shed(before - queue.frames.len());
        fits(queue)
    }

    fn count_shed(&self, n: usize) {
        if let (Some(shed), true) = (&self.shared.shed, n > 0) {
            shed.inc_by(n as u64);
        }
    }

    /// Queues a frame that must arrive, waiting while the queue is full.
    pub async fn send(&self, frame: Message) -> Result<(), Gone> {
        let mut frame = Some(frame);
        loop {
            // Registered before looking, so a `take` between the look and the wait is not missed.
            let writable = self.shared.writable.notified();
            {
                let mut queue = self.queue();
                if queue.gone || queue.ended {
                    return Err(Gone);
                }
                let size = frame.as_ref().map_or(0, Message::len);
                if self.admit(&mut queue, size, Class::Keep) {
                    if let Some(frame) = frame.take() {
                        queue.bytes += frame.len();
                        queue.frames.push_back((frame, Class::Keep));
                    }
                    drop(queue);
                    self.shared.readable.notify_one();
                    return Ok(());
                }
            }
            writable.await;
        }
    }

    /// Whether the connection was closed for reading too slowly.
    pub fn overflowed(&self) -> bool {
        self.queue().overflowed
    }

    /// No frames will follow: the writer sends what is queued, then closes the socket.
    pub fn end(&self) {
        self.queue().ended = true;
        self.shared.readable.notify_one();
    }

    /// The writer's side: waits for frames and takes all that are queued, leaving the queue
    /// without storage. None once the queue was ended and everything in it taken.
    pub async fn take(&self) -> Option<Batch> {
        loop {
            {
                let mut queue = self.queue();
                if !queue.frames.is_empty() {
                    let frames = Batch(std::mem::take(&mut queue.frames));
                    queue.bytes = 0;
                    drop(queue);
                    // A sender may be waiting for room.
                    self.shared.writable.notify_waiters();
                    if let Some(depth) = &self.shared.depth {
                        depth.observe(frames.len() as f64);
                    }
                    return Some(frames);
                }
                if queue.ended {
                    return None;
                }
            }
            // `notify_one` keeps a permit when the writer is not waiting yet: nothing is missed.
            self.shared.readable.notified().await;
        }
    }

    /// The writer's side, when it stops: nothing queued later could be written.
    pub fn writer_gone(&self) {
        let mut queue = self.queue();
        queue.gone = true;
        queue.frames = VecDeque::new();
        queue.bytes = 0;
        drop(queue);
        self.shared.writable.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tungstenite::Utf8Bytes;

    fn text(s: &'static str) -> Message {
        Message::Text(Utf8Bytes::from_static(s))
    }

    async fn taken(outbox: &Outbox) -> Vec<Message> {
        outbox.take().await.expect("frames").into_iter().collect()
    }

    #[tokio::test]
    async fn the_writer_takes_everything_queued_in_order_and_the_queue_keeps_no_storage() {
        let outbox = Outbox::new(4, Some(Histogram::new([1.0, 2.0, 4.0])));
        assert!(outbox.offer(text("a")));
        outbox.send(text("b")).await.expect("room");
        let frames = outbox.take().await.expect("frames");
        assert_eq!(
            frames.into_iter().collect::<Vec<_>>(),
            [text("a"), text("b")]
        );
        assert_eq!(outbox.queue().frames.capacity(), 0);
    }

    fn presence(room: u64, s: &'static str) -> (Message, Class) {
        (text(s), Class::Presence(room))
    }

    #[tokio::test]
    async fn a_rooms_newer_member_list_replaces_the_one_still_queued_in_its_place() {
        let shed = Counter::default();
        let outbox = Outbox::bounded(8, usize::MAX, None, Some(shed.clone()));
        for (frame, class) in [presence(1, "list 1a"), presence(2, "list 2a")] {
            assert!(outbox.offer_as(frame, class));
        }
        assert!(outbox.offer(text("message")));
        let (frame, class) = presence(1, "list 1b");
        assert!(outbox.offer_as(frame, class));
        // The newer list queues behind what came since (which it already reflects).
        assert_eq!(
            taken(&outbox).await,
            [text("list 2a"), text("message"), text("list 1b")]
        );
        assert_eq!(shed.get(), 1);
        // Taken, a list is no longer replaced: the next one queues.
        let (frame, class) = presence(1, "list 1c");
        assert!(outbox.offer_as(frame, class));
        assert_eq!(taken(&outbox).await, [text("list 1c")]);
    }

    #[tokio::test]
    async fn changes_still_queued_become_the_whole_list_so_none_is_applied_without_the_one_before()
    {
        let outbox = Outbox::bounded(8, usize::MAX, None, None);
        assert!(outbox.offer_changes(text("1: +bo"), || text("list: ann bo"), 1));
        assert!(outbox.offer_changes(text("2: +eve"), || text("list: eve"), 2));
        assert!(outbox.offer(text("message")));
        // Room 1's first changes are still queued: the client gets room 1's list now instead.
        assert!(outbox.offer_changes(text("1: -ann"), || text("list: bo"), 1));
        assert_eq!(
            taken(&outbox).await,
            [text("2: +eve"), text("message"), text("list: bo")]
        );
        // Once taken, changes queue again; a whole list still queued is replaced the same way.
        assert!(outbox.offer_changes(text("1: +cy"), || text("list: bo cy"), 1));
        assert_eq!(taken(&outbox).await, [text("1: +cy")]);
        let (frame, class) = presence(1, "list: bo cy");
        assert!(outbox.offer_as(frame, class));
        assert!(outbox.offer_changes(text("1: +dee"), || text("list: bo cy dee"), 1));
        assert_eq!(taken(&outbox).await, [text("list: bo cy dee")]);
    }

    #[tokio::test]
    async fn notices_make_room_for_messages_and_only_messages_that_do_not_fit_close() {
        // Room for three frames, or 30 bytes.
        let shed = Counter::default();
        let outbox = Outbox::bounded(3, 30, None, Some(shed.clone()));
        assert!(outbox.offer_as(text("joined a"), Class::Notice));
        assert!(outbox.offer(text("hello")));
        assert!(outbox.offer_as(text("joined b"), Class::Notice));
        // Full: the notices go, the message stays, the new message is queued.
        assert!(outbox.offer(text("world")));
        assert_eq!(shed.get(), 2);
        // A notice that does not fit is dropped, and the connection stays.
        assert!(outbox.offer(text("again")));
        assert!(outbox.offer_as(text("joined c"), Class::Notice));
        assert!(!outbox.close.is_cancelled());
        assert_eq!(shed.get(), 3);
        // Messages that do not fit close it.
        assert!(!outbox.offer(text("too many")));
        assert!(outbox.close.is_cancelled(), "a slow reader is closed");
        assert_eq!(
            taken(&outbox).await,
            [text("hello"), text("world"), text("again")]
        );
    }

    #[tokio::test]
    async fn who_is_typing_waits_once_per_room_and_never_closes_a_reader() {
        let shed = Counter::default();
        let outbox = Outbox::bounded(3, usize::MAX, None, Some(shed.clone()));
        assert!(outbox.offer_as(text("ann typing"), Class::Typing(1)));
        assert!(outbox.offer(text("hello")));
        // Newer news of the room replaces what still waits.
        assert!(outbox.offer_as(text("bo typing"), Class::Typing(1)));
        assert!(outbox.offer_as(text("cy typing in 2"), Class::Typing(2)));
        assert_eq!(shed.get(), 1);
        // Full: a message pushes them out; another typing frame is dropped, not waited for.
        assert!(outbox.offer(text("world")));
        assert!(outbox.offer_as(text("dee typing in 3"), Class::Typing(3)));
        assert!(outbox.offer(text("again")));
        assert!(outbox.offer_as(text("eve typing in 4"), Class::Typing(4)));
        assert!(!outbox.close.is_cancelled());
        assert_eq!(
            taken(&outbox).await,
            [text("hello"), text("world"), text("again")]
        );
        assert_eq!(shed.get(), 5);
    }

    #[tokio::test]
    async fn one_frame_larger_than_the_byte_bound_still_goes_alone() {
        let outbox = Outbox::bounded(8, 4, None, None);
        assert!(outbox.offer(text("a long joined frame")));
        assert!(!outbox.offer(text("more")), "nothing else fits beside it");
        // What a joiner catches up with is not held to the byte bound.
        let outbox = Outbox::bounded(8, 4, None, None);
        assert!(outbox.offer_as(text("joined, long"), Class::Catchup));
        assert!(outbox.offer_as(text("held message"), Class::Catchup));
        assert!(!outbox.close.is_cancelled());
        // And bytes count as well as frames: 2 + 2 fit in 4, a third does not.
        let outbox = Outbox::bounded(8, 4, None, None);
        assert!(outbox.offer(text("ab")));
        assert!(outbox.offer(text("cd")));
        assert!(!outbox.offer(text("e")));
    }

    #[tokio::test]
    async fn a_full_queue_closes_the_connection_on_offer() {
        let outbox = Outbox::new(2, None);
        assert!(outbox.offer(text("a")));
        assert!(outbox.offer(text("b")));
        assert!(!outbox.close.is_cancelled());
        assert!(!outbox.offer(text("c")));
        assert!(outbox.close.is_cancelled(), "a slow reader is closed");
    }

    /// A queue of one holding "a", and a task waiting to send "b".
    async fn full_with_a_sender_waiting() -> (Outbox, tokio::task::JoinHandle<Result<(), Gone>>) {
        let outbox = Outbox::new(1, None);
        outbox.send(text("a")).await.expect("room");
        let waiting = tokio::spawn({
            let outbox = outbox.clone();
            async move { outbox.send(text("b")).await }
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished(), "the queue is full");
        (outbox, waiting)
    }

    #[tokio::test]
    async fn send_waits_for_room_and_goes_on_once_the_writer_takes() {
        let (outbox, waiting) = full_with_a_sender_waiting().await;
        assert_eq!(taken(&outbox).await, [text("a")]);
        waiting.await.expect("joins").expect("queued");
        assert_eq!(taken(&outbox).await, [text("b")]);
    }

    #[tokio::test]
    async fn an_ended_queue_is_drained_then_reports_the_end() {
        let outbox = Outbox::new(4, None);
        assert!(outbox.offer(text("last")));
        outbox.end();
        assert!(
            !outbox.offer(text("late")),
            "nothing is queued after the end"
        );
        assert_eq!(taken(&outbox).await, [text("last")]);
        assert!(outbox.take().await.is_none());
    }

    #[tokio::test]
    async fn a_sender_waiting_on_a_full_queue_fails_when_the_writer_goes() {
        let (outbox, waiting) = full_with_a_sender_waiting().await;
        outbox.writer_gone();
        assert!(waiting.await.expect("joins").is_err());
        assert!(!outbox.offer(text("c")));
    }
}
