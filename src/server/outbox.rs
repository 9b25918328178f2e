//! A connection's outbound queue: bounded, fed by its own reader and by the room tasks, drained
//! by its writer.
//!
//! Why not `tokio::sync::mpsc`: an idle connection is what a chat server holds most of, and an
//! mpsc channel keeps its 32-slot blocks (about 1.5 KB each, plus the channel) for the channel's
//! whole life, also after a burst has drained. Here the writer takes the whole queue at once,
//! so an idle connection's queue holds no storage at all. The policy is the same: a frame that
//! does not fit closes a slow reader (`offer`), or makes the connection's own reader wait
//! (`send`), which stops reading from a client that does not read its answers.

use prometheus_client::metrics::histogram::Histogram;
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

struct Shared {
    queue: Mutex<Queue>,
    capacity: usize,
    /// Wakes the writer: frames arrived, or the queue was ended.
    readable: Notify,
    /// Wakes a reader waiting in `send`: the writer took the queue.
    writable: Notify,
    /// Records how many frames the writer found queued each time it took them.
    depth: Option<Histogram>,
}

#[derive(Default)]
struct Queue {
    frames: VecDeque<Message>,
    /// No frame will come any more: once drained, the writer closes the socket.
    ended: bool,
    /// The writer is gone: frames would never be written.
    gone: bool,
    /// A frame found the queue full: the connection is being closed as a slow reader.
    overflowed: bool,
}

/// The queue is closed for good: its writer has gone.
#[derive(Debug)]
pub struct Gone;

impl Outbox {
    /// A queue of at most `capacity` frames; `depth`, if given, observes each batch taken.
    pub fn new(capacity: usize, depth: Option<Histogram>) -> Self {
        Self {
            shared: Arc::new(Shared {
                queue: Mutex::default(),
                capacity,
                readable: Notify::new(),
                writable: Notify::new(),
                depth,
            }),
            close: CancellationToken::new(),
        }
    }

    fn queue(&self) -> MutexGuard<'_, Queue> {
        // Nothing panics while holding the lock; a poisoned queue is still consistent.
        self.shared.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues a frame without waiting. A full queue closes the connection: its client will
    /// reconnect and recover the room, which is better than losing frames silently or letting
    /// one slow reader hold memory for everyone. False when the frame was not queued.
    pub fn offer(&self, frame: Message) -> bool {
        let mut queue = self.queue();
        if queue.gone || queue.ended {
            return false;
        }
        if queue.frames.len() >= self.shared.capacity {
            queue.overflowed = true;
            drop(queue);
            // Once per connection: every room keeps offering until the writer has gone.
            if !self.close.is_cancelled() {
                tracing::warn!("outbound queue full: closing slow connection");
                self.close.cancel();
            }
            return false;
        }
        queue.frames.push_back(frame);
        drop(queue);
        self.shared.readable.notify_one();
        true
    }

    /// Queues a frame, waiting while the queue is full.
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
                if queue.frames.len() < self.shared.capacity {
                    if let Some(frame) = frame.take() {
                        queue.frames.push_back(frame);
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
    pub async fn take(&self) -> Option<VecDeque<Message>> {
        loop {
            {
                let mut queue = self.queue();
                if !queue.frames.is_empty() {
                    // Only a full queue can have a sender waiting for room.
                    let was_full = queue.frames.len() >= self.shared.capacity;
                    let frames = std::mem::take(&mut queue.frames);
                    drop(queue);
                    if was_full {
                        self.shared.writable.notify_waiters();
                    }
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

    #[tokio::test]
    async fn the_writer_takes_everything_queued_in_order_and_the_queue_keeps_no_storage() {
        let outbox = Outbox::new(4, Some(Histogram::new([1.0, 2.0, 4.0])));
        assert!(outbox.offer(text("a")));
        outbox.send(text("b")).await.expect("room");
        let frames = outbox.take().await.expect("frames");
        assert_eq!(frames, [text("a"), text("b")]);
        assert_eq!(outbox.queue().frames.capacity(), 0);
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
        assert_eq!(outbox.take().await.expect("a"), [text("a")]);
        waiting.await.expect("joins").expect("queued");
        assert_eq!(outbox.take().await.expect("b"), [text("b")]);
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
        assert_eq!(outbox.take().await.expect("queued"), [text("last")]);
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
