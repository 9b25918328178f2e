//! The store of a node that started while its Redis was unreachable: until the Redis store
//! connects (retried in the background, see [`Later::connect_in_background`]) the node is alive
//! but not ready: `/readyz` and WebSocket upgrades answer 503, and any call gets the retryable
//! `internal` error. Once connected, every call goes straight to the Redis store.

use super::{
    Act, Broker, ConnId, Departure, Health, Member, MemberPage, MemberQuery, Page, Presence, Rule,
    SessionId, Sessions, Snapshot, StoreError, Stored,
    redis::{RedisSettings, RedisStore},
};
use crate::{
    protocol::{Change, ChatMessage, MessageText, Position, RoomName, ServerMsg, UserName},
    server::bus::Subscription,
};
use std::{
    sync::{Arc, OnceLock},
    time::Duration,
};
use tokio_util::sync::CancellationToken;

#[derive(Default)]
pub struct Later {
    inner: OnceLock<Arc<RedisStore>>,
}

/// Waits between connection attempts: doubling from 250 ms to 5 s.
const RETRY_MIN: Duration = Duration::from_millis(250);
const RETRY_MAX: Duration = Duration::from_secs(5);

impl Later {
    /// Connects to Redis until it answers (or `stop`), then serves through it.
    pub fn connect_in_background(settings: RedisSettings, stop: CancellationToken) -> Arc<Self> {
        let later = Arc::new(Self::default());
        let weak = Arc::downgrade(&later);
        tokio::spawn(async move {
            let mut wait = RETRY_MIN;
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(wait) => {}
                }
                match RedisStore::connect(settings.clone(), stop.clone()).await {
                    Ok(store) => {
                        if let Some(later) = weak.upgrade() {
                            tracing::info!("redis answers: the node is becoming ready");
                            let _ = later.inner.set(store);
                        }
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(cause = %e, retry_in_ms = wait.as_millis() as u64, "redis still unreachable");
                        wait = (wait * 2).min(RETRY_MAX);
                    }
                }
            }
        });
        later
    }

    fn store(&self) -> Result<&Arc<RedisStore>, StoreError> {
        self.inner.get().ok_or_else(|| {
            StoreError::Unavailable("redis has not answered since the node started".into())
        })
    }
}

#[async_trait::async_trait]
impl Sessions for Later {
    async fn resume(
        &self,
        session: &SessionId,
        conn: &ConnId,
    ) -> Result<Option<UserName>, StoreError> {
        self.store()?.resume(session, conn).await
    }

    async fn claim_name(
        &self,
        session: &SessionId,
        conn: &ConnId,
        name: &UserName,
        old: Option<&UserName>,
    ) -> Result<(), StoreError> {
        self.store()?.claim_name(session, conn, name, old).await
    }

    async fn release(&self, session: &SessionId, conn: &ConnId, how: Departure) {
        if let Ok(store) = self.store() {
            store.release(session, conn, how).await;
        }
    }

    // A node without Redis yet takes no connections (it is not ready), so none goes unwatched.
    fn watch(&self, conn: &ConnId, end: CancellationToken) {
        if let Ok(store) = self.store() {
            store.watch(conn, end);
        }
    }

    fn forget(&self, conn: &ConnId) {
        if let Ok(store) = self.store() {
            store.forget(conn);
        }
    }
}

#[async_trait::async_trait]
impl Presence for Later {
    async fn join(
        &self,
        room: &RoomName,
        member: &Member,
        create: bool,
        since: Option<&Position>,
    ) -> Result<Snapshot, StoreError> {
        self.store()?.join(room, member, create, since).await
    }

    async fn peek(&self, room: &RoomName) -> Result<Snapshot, StoreError> {
        self.store()?.peek(room).await
    }

    async fn leave(&self, room: &RoomName, member: &Member) -> Result<(), StoreError> {
        self.store()?.leave(room, member).await
    }

    async fn rename(&self, room: &RoomName, member: &Member) -> Result<(), StoreError> {
        self.store()?.rename(room, member).await
    }

    async fn members(
        &self,
        room: &RoomName,
        query: &MemberQuery,
    ) -> Result<MemberPage, StoreError> {
        self.store()?.members(room, query).await
    }

    async fn reassert(
        &self,
        room: &RoomName,
        members: &[Member],
        delivered: Option<(&str, u64)>,
    ) -> Result<(), StoreError> {
        self.store()?.reassert(room, members, delivered).await
    }
}

#[async_trait::async_trait]
impl Broker for Later {
    async fn append(
        &self,
        room: &RoomName,
        from: &UserName,
        text: MessageText,
        client_id: Option<String>,
        change: Change,
        author: Option<String>,
    ) -> Result<Stored, StoreError> {
        self.store()?
            .append(room, from, text, client_id, change, author)
            .await
    }

    async fn since(
        &self,
        room: &RoomName,
        epoch: &str,
        seq: u64,
    ) -> Result<Option<Vec<ChatMessage>>, StoreError> {
        self.store()?.since(room, epoch, seq).await
    }

    async fn page(
        &self,
        room: &RoomName,
        before: Option<&Position>,
        limit: usize,
    ) -> Result<Page, StoreError> {
        self.store()?.page(room, before, limit).await
    }

    async fn subscribe(&self, room: &RoomName) -> Result<Subscription, StoreError> {
        self.store()?.subscribe(room).await
    }

    async fn signal(&self, room: &RoomName, msg: &ServerMsg) -> Result<(), StoreError> {
        self.store()?.signal(room, msg).await
    }

    async fn rule(&self, room: &RoomName, rule: Rule) -> Result<(), StoreError> {
        self.store()?.rule(room, rule).await
    }

    async fn gate(&self, room: &RoomName, who: &[String], act: Act) -> Result<u64, StoreError> {
        self.store()?.gate(room, who, act).await
    }
}

#[async_trait::async_trait]
impl Health for Later {
    async fn share_status(&self, status: String, ttl: Duration) {
        if let Some(store) = self.inner.get() {
            store.share_status(status, ttl).await;
        }
    }

    async fn node_statuses(&self) -> Vec<String> {
        match self.inner.get() {
            Some(store) => store.node_statuses().await,
            None => Vec::new(),
        }
    }

    async fn ready(&self) -> bool {
        match self.inner.get() {
            Some(store) => store.ready().await,
            None => false,
        }
    }

    fn accepting(&self) -> bool {
        self.inner.get().is_some_and(|store| store.accepting())
    }

    async fn close(&self) {
        if let Some(store) = self.inner.get() {
            store.close().await;
        }
    }
}
