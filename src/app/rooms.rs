//! The rooms a page is in, all on its one connection: one [`Model`] each, one of them in view.
//! The connection's own frames (`welcome`, `name_set`, …) reach every room's model, and only the
//! room in view answers them for the connection (resume, the name, moderator rights, pings);
//! the others only join their room. A room's frames reach its model alone.

use super::model::Model;
use crate::protocol::ClientMsg;
use leptos::prelude::*;

/// Where the browser keeps the rooms it is in (localStorage, a JSON list of names): a reload
/// opens them again.
pub const ROOMS_KEY: &str = "chorus.rooms";

/// Where the browser keeps the last message of `room` its reader had in view
/// (`<epoch> <seq>`): what came after it counts as unread, across reloads.
pub fn seen_key(room: &str) -> String {
    format!("chorus.seen.{room}")
}

/// `<epoch> <seq>` as [`seen_key`] keeps it.
pub fn parse_seen(raw: &str) -> Option<(String, u64)> {
    let (epoch, seq) = raw.split_once(' ')?;
    Some((epoch.to_owned(), seq.parse().ok()?))
}

#[derive(Clone, Copy)]
pub struct Rooms {
    /// In the order they were opened.
    pub open: RwSignal<Vec<RwSignal<Model>>>,
    /// The one in view.
    pub current: RwSignal<RwSignal<Model>>,
    /// The page's owner: a room opened later lives as long as the page, not as long as the
    /// view it was opened from.
    owner: StoredValue<Option<Owner>, LocalStorage>,
}

impl Rooms {
    pub fn new(first: RwSignal<Model>) -> Self {
        Self {
            open: RwSignal::new(vec![first]),
            current: RwSignal::new(first),
            owner: StoredValue::new_local(Owner::current()),
        }
    }

    /// A room's model, owned by the page.
    pub fn model(&self, model: Model) -> RwSignal<Model> {
        match self.owner.get_value() {
            Some(owner) => owner.with(|| RwSignal::new(model)),
            None => RwSignal::new(model),
        }
    }

    /// The open room called `room`.
    pub fn find(&self, room: &str) -> Option<RwSignal<Model>> {
        self.open.with_untracked(|open| {
            open.iter()
                .copied()
                .find(|m| m.with_untracked(|m| m.room == room))
        })
    }

    pub fn each(&self) -> Vec<RwSignal<Model>> {
        self.open.get_untracked()
    }

    pub fn in_view(&self) -> RwSignal<Model> {
        self.current.get_untracked()
    }

    /// The names of the open rooms (tracked).
    pub fn names(&self) -> Vec<String> {
        self.open
            .with(|open| open.iter().map(|m| m.with(|m| m.room.clone())).collect())
    }
}

/// Whether a room not in view may send `msg` for the connection: its own room's frames only.
pub fn beside_may_send(msg: &ClientMsg) -> bool {
    !matches!(
        msg,
        ClientMsg::Ping
            | ClientMsg::SetName { .. }
            | ClientMsg::Resume { .. }
            | ClientMsg::Moderate { .. }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seen_position_reads_back() {
        assert_eq!(parse_seen("e1 42"), Some(("e1".into(), 42)));
        assert_eq!(parse_seen(" 0"), Some((String::new(), 0)));
        assert_eq!(parse_seen("nonsense"), None);
    }
}
