//! How much of a room's history is kept and handed out, and the in-memory history itself.
//! Redis keeps the same bounds in its scripts (`lua/append.lua`); both stores answer the same
//! three questions: the newest messages (a joiner's window), the messages after a position (a
//! reconnect's recovery) and a page of messages before one (`history`).

use crate::protocol::{ChatMessage, Position};
use std::collections::VecDeque;

/// Most messages a reconnecting client is sent in its `joined`: a client that missed more is
/// told of a gap, gets the recent window and pages back with `history`.
pub const RECOVER_MAX: usize = 1000;

/// How much of each room's history a store keeps, and how much a joiner is sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryBounds {
    /// Most messages kept per room; 0 keeps none.
    pub size: usize,
    /// Most bytes of messages kept per room (as stored: text, names and ids); the newest
    /// message is kept whatever its size.
    pub bytes: usize,
    /// How many of the newest messages a joiner is sent.
    pub window: usize,
}

impl HistoryBounds {
    /// Bounds for tests and tools: `size` messages, a joiner sent all of them.
    pub fn messages(size: usize) -> Self {
        Self {
            size,
            bytes: usize::MAX,
            window: size,
        }
    }
}

/// A page of older messages (answer to `history`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Page {
    /// The room's current epoch (`None` before its first message).
    pub epoch: Option<String>,
    /// Oldest first.
    pub messages: Vec<ChatMessage>,
    /// Older messages than these are still stored.
    pub more: bool,
}

impl Page {
    /// The answer to `history` in a room whose numbering is `epoch`: what `read` finds (the
    /// messages, and whether older ones are stored) — or, for a position of another epoch,
    /// nothing, since nothing before it is kept.
    pub(crate) fn answer(
        epoch: Option<String>,
        before: Option<&Position>,
        read: impl FnOnce() -> (Vec<ChatMessage>, bool),
    ) -> Self {
        if before.is_some_and(|b| epoch.as_deref() != Some(b.epoch.as_str())) {
            return Self {
                epoch,
                ..Self::default()
            };
        }
        let (messages, more) = read();
        Self {
            epoch,
            messages,
            more,
        }
    }
}

/// One room's stored messages, oldest first, in `seq` order, within its bounds.
#[derive(Debug, Default)]
pub(crate) struct History {
    messages: VecDeque<ChatMessage>,
    bytes: usize,
}

/// What a message costs a history's byte bound: what Redis stores of it, near enough.
pub(crate) fn stored_bytes(m: &ChatMessage) -> usize {
    m.text.len() + m.from.len() + m.room.len() + m.client_id.as_ref().map_or(0, String::len) + 64
}

impl History {
    pub(crate) fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// Keeps `m` (the room's newest), dropping the oldest past the bounds.
    pub(crate) fn push(&mut self, m: ChatMessage, bounds: &HistoryBounds) {
        if bounds.size == 0 {
            return;
        }
        self.bytes += stored_bytes(&m);
        self.messages.push_back(m);
        while self.messages.len() > 1
            && (self.messages.len() > bounds.size || self.bytes > bounds.bytes)
        {
            if let Some(old) = self.messages.pop_front() {
                self.bytes -= stored_bytes(&old);
            }
        }
    }

    /// The newest `n` messages, oldest first.
    pub(crate) fn recent(&self, n: usize) -> Vec<ChatMessage> {
        let skip = self.messages.len().saturating_sub(n);
        self.messages.iter().skip(skip).cloned().collect()
    }

    /// Index of the first message with a `seq` above `seq`.
    fn after_index(&self, seq: u64) -> usize {
        self.messages.partition_point(|m| m.seq <= seq)
    }

    /// The messages after `seq`, given the room's newest is `last_seq` — `None` when some are no
    /// longer here, or there are more than `max`.
    pub(crate) fn after(&self, seq: u64, last_seq: u64, max: usize) -> Option<Vec<ChatMessage>> {
        if last_seq.saturating_sub(seq) > max as u64 {
            return None;
        }
        let from = self.after_index(seq);
        super::messages_after(self.messages.range(from..).cloned(), last_seq, seq)
    }

    /// Up to `limit` messages before `seq` (the newest without it), oldest first, and whether
    /// older ones are stored.
    pub(crate) fn before(&self, seq: Option<u64>, limit: usize) -> (Vec<ChatMessage>, bool) {
        let end = match seq {
            Some(seq) => self.messages.partition_point(|m| m.seq < seq),
            None => self.messages.len(),
        };
        let start = end.saturating_sub(limit);
        (
            self.messages.range(start..end).cloned().collect(),
            start > 0,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(seq: u64, text: &str) -> ChatMessage {
        ChatMessage {
            room: "r".into(),
            seq,
            epoch: "e".into(),
            from: "ann".into(),
            text: text.into(),
            ts: 0,
            client_id: None,
            edits: None,
            deleted: false,
            moderation: None,
            author: None,
        }
    }

    fn seqs(v: &[ChatMessage]) -> Vec<u64> {
        v.iter().map(|m| m.seq).collect()
    }

    #[test]
    fn a_history_keeps_the_newest_within_its_count_and_its_bytes() {
        let mut h = History::default();
        let bounds = HistoryBounds {
            size: 5,
            bytes: 10 * stored_bytes(&msg(1, "x")),
            window: 3,
        };
        for seq in 1..=8 {
            h.push(msg(seq, "x"), &bounds);
        }
        assert_eq!(seqs(&h.recent(100)), [4, 5, 6, 7, 8]);
        assert_eq!(seqs(&h.recent(bounds.window)), [6, 7, 8]);
        // One long message pushes out as many short ones as its bytes need…
        let long = "y".repeat(8 * stored_bytes(&msg(1, "x")));
        h.push(msg(9, &long), &bounds);
        assert_eq!(seqs(&h.recent(100)), [8, 9]);
        // …and the newest stays even when it alone is over the bound.
        h.push(msg(10, &long.repeat(3)), &bounds);
        assert_eq!(seqs(&h.recent(100)), [10]);
        let mut off = History::default();
        off.push(msg(1, "x"), &HistoryBounds::messages(0));
        assert!(off.is_empty());
    }

    #[test]
    fn pages_before_a_seq_and_recovery_after_one() {
        let mut h = History::default();
        for seq in 3..=12 {
            h.push(msg(seq, "x"), &HistoryBounds::messages(100));
        }
        assert_eq!(h.before(None, 4), (h.recent(4), true));
        let (page, more) = h.before(Some(9), 4);
        assert_eq!((seqs(&page), more), (vec![5, 6, 7, 8], true));
        let (page, more) = h.before(Some(5), 4);
        assert_eq!((seqs(&page), more), (vec![3, 4], false));
        assert_eq!(h.before(Some(3), 4), (vec![], false));
        assert_eq!(h.after(9, 12, 10).map(|v| seqs(&v)), Some(vec![10, 11, 12]));
        assert_eq!(h.after(12, 12, 10).map(|v| seqs(&v)), Some(vec![]));
        // 2 is gone; and a client that missed more than it may be sent pages back instead.
        assert_eq!(h.after(1, 12, 100), None);
        assert_eq!(h.after(4, 12, 5), None);
    }
}
