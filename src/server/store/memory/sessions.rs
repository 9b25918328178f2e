//! Names and sessions on one node: who holds which name, and for how long a dropped
//! connection's session keeps it for a `resume`.

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
    /// The connection holding it; `None` while it waits to be resumed.
    conn: Option<ConnId>,
    /// When a detached session stops holding its name.
    expires: Option<Instant>,
}

impl SessionRec {
    fn live(&self, now: Instant) -> bool {
        self.conn.is_some() || self.expires.is_some_and(|t| t > now)
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
                rec.conn = Some(conn.clone());
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
        s.sessions.insert(
            session.clone(),
            SessionRec {
                name: name.clone(),
                conn: Some(conn.clone()),
                expires: None,
            },
        );
        Ok(())
    }

    async fn release(&self, session: &SessionId, conn: &ConnId, how: Departure) {
        let mut s = self.sessions();
        let Some(rec) = s.sessions.get_mut(session) else {
            return;
        };
        if rec.conn.as_ref() != Some(conn) {
            // Another connection took the session over.
            return;
        }
        match how {
            Departure::Closed => s.drop_session(session),
            Departure::Dropped => {
                let at = Instant::now() + self.session_ttl;
                rec.conn = None;
                rec.expires = Some(at);
                s.expiring.push_back((at, session.clone()));
            }
        }
    }
}
