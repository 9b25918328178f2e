//! What a joiner gets first: the room's members and either its recent history or exactly what
//! the client missed (the store chose, see [`Snapshot`]).

use super::presence::first_page;
use crate::{
    protocol::{RoomName, ServerMsg},
    server::store::Snapshot,
};

/// The `joined` frame for a snapshot.
pub(super) fn joined_frame(list_max: usize, room: &RoomName, snapshot: Snapshot) -> ServerMsg {
    let Snapshot {
        members,
        history,
        recovered,
        ..
    } = snapshot;
    let (members, count) = first_page(members, list_max);
    ServerMsg::Joined {
        room: room.to_string(),
        members,
        count,
        history,
        recovered,
    }
}
