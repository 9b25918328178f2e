//! How often a room's member list goes out.

use std::sync::atomic::{AtomicU64, Ordering};
use tokio::time::{Duration, Instant};

/// The first `max` of a room's sorted members, and how many it has.
pub(super) fn first_page(mut members: Vec<String>, max: usize) -> (Vec<String>, u32) {
    let count = u32::try_from(members.len()).unwrap_or(u32::MAX);
    members.truncate(max);
    (members, count)
}

/// Most names in one `members` page, and how many when the client does not say.
pub const MEMBERS_PAGE_MAX: usize = 100;

/// A page of a room's sorted members (see `ClientMsg::Members`): those after `after` whose
/// names begin with `prefix`, ignoring case, at most `limit`; and the `after` of the next page,
/// if any name is left.
pub fn members_page(
    sorted: Vec<String>,
    after: Option<&str>,
    prefix: Option<&str>,
    limit: usize,
) -> (Vec<String>, Option<String>) {
    let after = after.map(str::to_lowercase);
    let prefix = prefix.map(str::to_lowercase).unwrap_or_default();
    let mut matching = sorted.into_iter().filter(|name| {
        let key = name.to_lowercase();
        after.as_ref().is_none_or(|a| key > *a) && key.starts_with(&prefix)
    });
    let page: Vec<String> = matching
        .by_ref()
        .take(limit.clamp(1, MEMBERS_PAGE_MAX))
        .collect();
    let next = matching.next().and(page.last().cloned());
    (page, next)
}

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

    pub(super) fn sent(&mut self) {
        self.pending = false;
        self.next_at = Instant::now() + self.interval;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_page_in_order_from_after_and_by_prefix_ignoring_case() {
        let room: Vec<String> = ["abe", "Ann", "bo", "Cy", "cyd", "Dee"]
            .map(String::from)
            .into();
        let page = |after, prefix, limit| members_page(room.clone(), after, prefix, limit);
        assert_eq!(
            page(None, None, 2),
            (vec!["abe".into(), "Ann".into()], Some("Ann".into()))
        );
        assert_eq!(
            page(Some("Ann"), None, 3),
            (
                vec!["bo".into(), "Cy".into(), "cyd".into()],
                Some("cyd".into())
            )
        );
        assert_eq!(page(Some("cyd"), None, 3), (vec!["Dee".into()], None));
        assert_eq!(
            page(None, Some("CY"), 5),
            (vec!["Cy".into(), "cyd".into()], None)
        );
        assert_eq!(page(Some("Cy"), Some("cy"), 1), (vec!["cyd".into()], None));
        assert_eq!(page(None, None, 0).0.len(), 1, "at least one");
        assert_eq!(first_page(room.clone(), 4).1, 6);
        assert_eq!(first_page(room, 4).0.len(), 4);
    }
}
