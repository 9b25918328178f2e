//! What a joiner gets first: the room's members and either its recent history or exactly what
//! the client missed.

use super::presence::first_page;
use crate::{
    protocol::{Position, RoomName, ServerMsg},
    server::store::{Snapshot, messages_after},
};

/// The `joined` frame for a snapshot: the recent history, or — for a client that names the last
/// message it has — exactly the messages after it, if the store still has them all.
pub(super) fn joined_frame(
    list_max: usize,
    room: &RoomName,
    snapshot: Snapshot,
    since: Option<Position>,
) -> ServerMsg {
    let Snapshot {
        members,
        history,
        epoch,
        last_seq,
        ..
    } = snapshot;
    let (history, recovered) = match since {
        None => (history, None),
        Some(since) if epoch.as_deref() == Some(since.epoch.as_str()) => {
            // `history` is shared by the fallback, so only its messages after `since` are cloned.
            match messages_after(
                history.iter().filter(|m| m.seq > since.seq).cloned(),
                last_seq,
                since.seq,
            ) {
                Some(missed) => (missed, Some(true)),
                None => (history, Some(false)),
            }
        }
        // The room's numbering restarted (its stored data was lost) or it has none yet.
        Some(_) => (history, Some(false)),
    };
    let (members, count) = first_page(members, list_max);
    ServerMsg::Joined {
        room: room.to_string(),
        members,
        count,
        history,
        recovered,
    }
}
