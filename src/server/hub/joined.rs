//! What a joiner gets first: the room's members and either its recent history or exactly what
//! the client missed (the store chose, see [`Snapshot`]).

use crate::{
    protocol::{RoomName, ServerMsg},
    server::store::Snapshot,
};

/// The `joined` frame for a snapshot.
pub(super) fn joined_frame(room: &RoomName, snapshot: Snapshot) -> ServerMsg {
    let Snapshot {
        members,
        count,
        history,
        recovered,
        ..
    } = snapshot;
    ServerMsg::Joined {
        room: room.to_string(),
        members,
        count: u32::try_from(count).unwrap_or(u32::MAX),
        history,
        recovered,
    }
}
