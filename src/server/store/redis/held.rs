//! The sessions this node serves and the names they hold, as this node last knew them: what it
//! puts back when Redis lost its data (`lua/reclaim.lua`), and whose connections it ends when
//! another session turns out to have held a name first (`lua/verify.lua`).

use crate::{
    protocol::UserName,
    server::store::{ConnId, SessionId},
};
use std::collections::HashMap;
use tokio_util::sync::CancellationToken;

struct Held {
    name: UserName,
    /// Since when the session has held the name (ms, Redis's clock): the earlier holder keeps
    /// a name two sessions came to hold.
    since: u64,
    conns: Vec<ConnId>,
}

/// A session to put back: its name, since when, and this node's connections holding it.
pub(super) type Reclaim = (SessionId, UserName, u64, Vec<ConnId>);

#[derive(Default)]
pub(super) struct HeldSessions {
    sessions: HashMap<SessionId, Held>,
    /// What ends each connection of this node (its queue's close).
    ends: HashMap<ConnId, CancellationToken>,
}

impl HeldSessions {
    /// `conn` holds `session`, which holds `name` since `since`.
    pub(super) fn hold(&mut self, session: &SessionId, conn: &ConnId, name: &UserName, since: u64) {
        let held = self
            .sessions
            .entry(session.clone())
            .or_insert_with(|| Held {
                name: name.clone(),
                since,
                conns: Vec::new(),
            });
        (held.name, held.since) = (name.clone(), since);
        if !held.conns.contains(conn) {
            held.conns.push(conn.clone());
        }
    }

    /// `conn` no longer holds `session`.
    pub(super) fn let_go(&mut self, session: &SessionId, conn: &ConnId) {
        if let Some(held) = self.sessions.get_mut(session) {
            held.conns.retain(|c| c != conn);
            if held.conns.is_empty() {
                self.sessions.remove(session);
            }
        }
    }

    pub(super) fn watch(&mut self, conn: &ConnId, end: CancellationToken) {
        self.ends.insert(conn.clone(), end);
    }

    pub(super) fn forget(&mut self, conn: &ConnId) {
        self.ends.remove(conn);
    }

    pub(super) fn to_reclaim(&self) -> Vec<Reclaim> {
        self.sessions
            .iter()
            .map(|(s, h)| (s.clone(), h.name.clone(), h.since, h.conns.clone()))
            .collect()
    }

    pub(super) fn sessions(&self) -> Vec<SessionId> {
        self.sessions.keys().cloned().collect()
    }

    /// The session lost its name: its connections here end (their clients reconnect, find the
    /// session gone and are told the name is taken). Returns how many.
    pub(super) fn end(&mut self, session: &SessionId) -> usize {
        let Some(held) = self.sessions.remove(session) else {
            return 0;
        };
        for conn in &held.conns {
            if let Some(end) = self.ends.get(conn) {
                end.cancel();
            }
        }
        held.conns.len()
    }
}
