//! Names and sessions on one node: who holds which name, which connections hold each session
//! (a browser's tabs share one), and for how long a session whose last connection dropped keeps
//! its name for a `resume`.

use super::MemoryStore;
use crate::{
    protocol::UserName,
    server::store::{ConnId, Departure, SessionId, Sessions, StoreError},
};
use std::{
    collections::{HashMap, VecDeque},
    time::Instant,
};

pub(super) struct SessionRec {
    name: UserName,
    /// The connections holding it; none while it waits to be resumed.
    conns: Vec<ConnId>,
    /// When a detached session stops holding its name.
    expires: Option<Instant>,
}

impl SessionRec {
    fn live(&self, now: Instant) -> bool {
        !self.conns.is_empty() || self.expires.is_some_and(|t| t > now)
    }
}

#[derive(Default)]
pub(super) struct SessionTable {
    /// Lower-cased name → the session holding it.
    names: HashMap<String, SessionId>,
    sessions: HashMap<SessionId, SessionRec>,
    /// Detached sessions in expiry order, swept as operations pass by.
    expiring: VecDeque<(Instant, SessionId)>,
}

impl SessionTable {
    pub(super) fn sweep(&mut self, now: Instant) {
        while let Some((at, _)) = self.expiring.front() {
            if *at > now {
                break;
            }
            let Some((_, sid)) = self.expiring.pop_front() else {
                break;
            };
            if self.sessions.get(&sid).is_some_and(|r| !r.live(now)) {
                self.drop_session(&sid);
            }
        }
    }

    fn drop_session(&mut self, sid: &SessionId) {
        if let Some(rec) = self.sessions.remove(sid)
            && self.names.get(&rec.name.key()) == Some(sid)
        {
            self.names.remove(&rec.name.key());
        }
    }
}

#[async_trait::async_trait]
impl Sessions for MemoryStore {
    async fn resume(
        &self,
        session: &SessionId,
        conn: &ConnId,
    ) -> Result<Option<UserName>, StoreError> {
        let mut s = self.sessions();
        let now = Instant::now();
        Ok(match s.sessions.get_mut(session) {
            Some(rec) if rec.live(now) => {
                hold(&mut rec.conns, conn);
                rec.expires = None;
                Some(rec.name.clone())
            }
            _ => None,
        })
    }

    async fn claim_name(
        &self,
        session: &SessionId,
        conn: &ConnId,
        name: &UserName,
        old: Option<&UserName>,
    ) -> Result<(), StoreError> {
        let mut s = self.sessions();
        let now = Instant::now();
        let key = name.key();
        if let Some(owner) = s.names.get(&key).cloned()
            && owner != *session
        {
            if s.sessions.get(&owner).is_some_and(|r| r.live(now)) {
                return Err(StoreError::NameTaken(name.clone()));
            }
            s.drop_session(&owner);
        }
        if let Some(old) = old
            && old.key() != key
            && s.names.get(&old.key()) == Some(session)
        {
            s.names.remove(&old.key());
        }
        s.names.insert(key, session.clone());
        // The session's other connections (tabs) keep holding it, under the new name.
        let rec = s
            .sessions
            .entry(session.clone())
            .or_insert_with(|| SessionRec {
                name: name.clone(),
                conns: Vec::new(),
                expires: None,
            });
        rec.name = name.clone();
        rec.expires = None;
        hold(&mut rec.conns, conn);
        Ok(())
    }

    async fn release(&self, session: &SessionId, conn: &ConnId, how: Departure) {
        let mut s = self.sessions();
        let Some(rec) = s.sessions.get_mut(session) else {
            return;
        };
        let before = rec.conns.len();
        rec.conns.retain(|c| c != conn);
        // Not one of its holders (any more), or others still hold it.
        if rec.conns.len() == before || !rec.conns.is_empty() {
            return;
        }
        match how {
            Departure::Closed => s.drop_session(session),
            Departure::Dropped => {
                let at = Instant::now() + self.session_ttl;
                rec.expires = Some(at);
                s.expiring.push_back((at, session.clone()));
            }
        }
    }
}

/// Adds `conn` to a session's (or a room member's) connections, once.
pub(super) fn hold(conns: &mut Vec<ConnId>, conn: &ConnId) {
    if !conns.contains(conn) {
        conns.push(conn.clone());
    }
}
