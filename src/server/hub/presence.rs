//! How often a room's member list goes out.

use crate::protocol::{RoomName, ServerMsg};
use crate::server::{frame::encode, store::MemberPage};
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::time::{Duration, Instant};
use tungstenite::Message;

/// Most names in one `members` page, and how many when the client does not say.
pub const MEMBERS_PAGE_MAX: usize = 100;

/// A room bigger than its first page sends its list (mostly a new count) at most this often,
/// however short `presence_interval` is: a page shows its count, and four counts a second to
/// each of 10,000 members would be 40,000 frames a second of the room's fan-out.
pub(super) const BIG_ROOM_INTERVAL: Duration = Duration::from_secs(1);

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

    /// A list goes out now; the next may in an interval, or in a big room (`big`) in
    /// [`BIG_ROOM_INTERVAL`] if that is longer.
    pub(super) fn sent(&mut self, big: bool) {
        self.pending = false;
        let interval = match big {
            true => self.interval.max(BIG_ROOM_INTERVAL),
            false => self.interval,
        };
        self.next_at = Instant::now() + interval;
    }
}

/// The frames one read of a room's list may go out as, each encoded once, when first needed.
pub(super) struct Lists<'a> {
    room: &'a RoomName,
    /// The names last listed from this node, if any.
    before: Option<&'a [String]>,
    page: MemberPage,
    whole: Option<Message>,
    count: Option<Message>,
    changes: Option<Option<Message>>,
}

impl<'a> Lists<'a> {
    pub(super) fn new(room: &'a RoomName, before: Option<&'a [String]>, page: MemberPage) -> Self {
        Self {
            room,
            before,
            page,
            whole: None,
            count: None,
            changes: None,
        }
    }

    fn count_u32(&self) -> u32 {
        u32::try_from(self.page.count).unwrap_or(u32::MAX)
    }

    /// The names are the ones last listed.
    pub(super) fn same(&self) -> bool {
        self.before == Some(self.page.names.as_slice())
    }

    /// The names are `names`.
    pub(super) fn is(&self, names: &[String]) -> bool {
        self.page.names == names
    }

    /// `presence`: the whole list (in a big room, its first page) and the count.
    pub(super) fn whole(&mut self) -> Message {
        let (room, count) = (self.room.to_string(), self.count_u32());
        let names = &self.page.names;
        self.whole
            .get_or_insert_with(|| {
                encode(&ServerMsg::Presence {
                    room,
                    members: names.clone(),
                    count,
                })
            })
            .clone()
    }

    /// `member_count`: the count alone.
    pub(super) fn count(&mut self) -> Message {
        let (room, count) = (self.room.to_string(), self.count_u32());
        self.count
            .get_or_insert_with(|| encode(&ServerMsg::MemberCount { room, count }))
            .clone()
    }

    /// `presence_changes` from the names last listed to these; None when nothing was listed
    /// before, or nothing changed.
    pub(super) fn changes(&mut self) -> Option<Message> {
        if self.changes.is_none() {
            let before = self.before.filter(|_| !self.same());
            self.changes = Some(before.map(|before| self.changes_frame(before)));
        }
        self.changes.clone().flatten()
    }

    /// `presence_changes` from `held` (a joiner's first page) to these names; None when they
    /// are the same. Encoded for the one member that holds it.
    pub(super) fn changes_from(&self, held: &[String]) -> Option<Message> {
        (!self.is(held)).then(|| self.changes_frame(held))
    }

    fn changes_frame(&self, before: &[String]) -> Message {
        let (joined, left) = changed(before, &self.page.names);
        encode(&ServerMsg::PresenceChanges {
            room: self.room.to_string(),
            joined,
            left,
            count: self.count_u32(),
        })
    }

    pub(super) fn into_names(self) -> Vec<String> {
        self.page.names
    }
}

/// Who is in `after` and not in `before` (joined), and who is in `before` and not in `after`
/// (left), each in the order of its list.
fn changed(before: &[String], after: &[String]) -> (Vec<String>, Vec<String>) {
    fn of(list: &[String]) -> HashSet<&str> {
        list.iter().map(String::as_str).collect()
    }
    let (was, is) = (of(before), of(after));
    let joined = after.iter().filter(|n| !was.contains(n.as_str()));
    let left = before.iter().filter(|n| !is.contains(n.as_str()));
    (joined.cloned().collect(), left.cloned().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn changes_are_who_came_and_who_went_in_list_order() {
        let before = names(&["ann", "Bo", "cy", "Dee"]);
        let after = names(&["Abe", "ann", "cy", "Dee", "eve"]);
        assert_eq!(
            changed(&before, &after),
            (names(&["Abe", "eve"]), names(&["Bo"]))
        );
        // A rename that only changes case is one name gone and another come.
        assert_eq!(
            changed(&names(&["ann"]), &names(&["Ann"])),
            (names(&["Ann"]), names(&["ann"]))
        );
        assert_eq!(changed(&before, &before), (Vec::new(), Vec::new()));
    }

    #[test]
    fn one_read_goes_out_as_the_frame_each_member_needs() {
        let room = RoomName::parse("lobby").expect("valid room");
        let before = names(&["ann", "Bo"]);
        let page = |list: &[&str], count| MemberPage {
            names: names(list),
            next: None,
            count,
        };
        let text = |m: Message| m.into_text().expect("text").to_string();

        let mut lists = Lists::new(&room, Some(&before), page(&["ann", "cy"], 2));
        assert!(!lists.same());
        assert_eq!(
            lists.changes().map(text).as_deref(),
            Some(
                r#"{"type":"presence_changes","room":"lobby","joined":["cy"],"left":["Bo"],"count":2}"#
            )
        );
        assert_eq!(
            text(lists.whole()),
            r#"{"type":"presence","room":"lobby","members":["ann","cy"],"count":2}"#
        );

        // The same first page of a bigger room: the count is what changed.
        let mut lists = Lists::new(&room, Some(&before), page(&["ann", "Bo"], 900));
        assert!(lists.same());
        assert_eq!(lists.changes(), None);
        assert_eq!(
            text(lists.count()),
            r#"{"type":"member_count","room":"lobby","count":900}"#
        );

        // Nothing listed yet: a joiner's changes are counted from its own first page.
        let mut lists = Lists::new(&room, None, page(&["ann", "bo"], 2));
        assert!(!lists.same());
        assert_eq!(lists.changes(), None);
        assert_eq!(
            lists.changes_from(&names(&["bo"])).map(text).as_deref(),
            Some(r#"{"type":"presence_changes","room":"lobby","joined":["ann"],"count":2}"#)
        );
        assert!(lists.is(&names(&["ann", "bo"])));
        assert_eq!(lists.changes_from(&names(&["ann", "bo"])), None);
    }
}
