//! How often a room's member list goes out.

use std::sync::atomic::{AtomicU64, Ordering};
use tokio::time::{Duration, Instant};

/// Most names in one `members` page, and how many when the client does not say.
pub const MEMBERS_PAGE_MAX: usize = 100;

/// Numbers the rooms' throttles, so a connection's queue can tell one room's list from another's.
static NEXT_ID: AtomicU64 = AtomicU64::new(0);

/// Sends `presence` frames of one room at most once per interval.
///
/// Every join or leave changes the whole list; sent to every member each time, a reconnect storm
/// of n users would cost O(n²) bytes. Notices stay immediate; the list is read from the store
/// and sent once the interval allows, so the first change after a quiet spell goes out at once.
pub(super) struct PresenceThrottle {
    /// This room's lists in a connection's queue: a newer one replaces an older one still there.
    pub(super) id: u64,
    interval: Duration,
    pub(super) next_at: Instant,
    /// A change happened since the last list went out.
    pub(super) pending: bool,
    /// A list is being read.
    pub(super) reading: bool,
}

impl PresenceThrottle {
    pub(super) fn new(interval: Duration) -> Self {
        Self {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            interval,
            next_at: Instant::now(),
            pending: false,
            reading: false,
        }
    }

    /// This room's counts in a connection's queue: a newer one replaces an older one, and a
    /// count never replaces a list (whose names would be lost).
    pub(super) fn count_id(&self) -> u64 {
        self.id | 1 << 63
    }

    pub(super) fn sent(&mut self) {
        self.pending = false;
        self.next_at = Instant::now() + self.interval;
    }
}
