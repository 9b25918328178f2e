//! Where this node's Redis is, and a command connection that follows it.
//!
//! Either one address (`redis_url`), or the master that Redis Sentinel names
//! (`redis_sentinels` + `redis_sentinel_master`). With Sentinel, a watcher asks the sentinels
//! every [`WATCH_EVERY`] which server is the master (redis-rs's `SentinelClient`: `SENTINEL
//! MASTERS`, then `ROLE` on the answer, so a demoted server is never taken for the master). When
//! the answer changes, the command connection is replaced and [`Link::moved`] fires, so the
//! pub/sub supervisor reconnects to the new master and every room resyncs, as after a Redis
//! restart. Redis-rs's `ConnectionManager` alone reconnects to the address it was built with,
//! which after a failover is the old master: dead, or a replica refusing writes.

use redis::{
    Client,
    aio::{ConnectionManager, ConnectionManagerConfig},
    sentinel::{SentinelClient, SentinelServerType},
};
use std::{
    sync::{Arc, RwLock},
    time::Duration,
};
use tokio::sync::{Mutex, watch};
use tokio_util::sync::CancellationToken;

/// How often the sentinels are asked who the master is.
pub const WATCH_EVERY: Duration = Duration::from_secs(1);
/// The longest one question to the sentinels may take.
const ASK_TIMEOUT: Duration = Duration::from_secs(2);

/// Where Redis is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// One server: a `redis://` or `unix://` URL.
    Url(String),
    /// The master of `master`, as the sentinels at `sentinels` (`host:port`) name it.
    Sentinel {
        sentinels: Vec<String>,
        master: String,
    },
}

/// A handle on the current Redis master: cheap to clone, shared by the store and the bus.
#[derive(Clone)]
pub struct Link {
    inner: Arc<Inner>,
}

struct Inner {
    current: RwLock<Current>,
    config: ConnectionManagerConfig,
    /// Whether each master gets a second connection for writes followed by `WAIT`.
    with_waited: bool,
    /// Counts master changes; the bus waits on it.
    moved: watch::Sender<u64>,
    /// Asks the sentinels; None for a plain URL.
    sentinel: Option<Mutex<SentinelClient>>,
}

#[derive(Clone)]
struct Current {
    client: Client,
    conn: ConnectionManager,
    /// A second connection, for writes followed by `WAIT` (only when they are asked for):
    /// `WAIT` holds up every command behind it on its connection, which must not be the
    /// heartbeats' and joins'.
    waited: Option<ConnectionManager>,
    /// The master's address, to tell a move from the same answer again.
    addr: String,
}

impl Link {
    /// Connects to the target's current master, with a second connection for writes followed by
    /// `WAIT` if `with_waited`. With Sentinel, watches for failovers until `stop`.
    pub async fn connect(
        target: &Target,
        config: ConnectionManagerConfig,
        with_waited: bool,
        stop: CancellationToken,
    ) -> anyhow::Result<Self> {
        let (client, sentinel) = match target {
            Target::Url(url) => (Client::open(url.as_str())?, None),
            Target::Sentinel { sentinels, master } => {
                let urls: Vec<String> = sentinels.iter().map(|s| format!("redis://{s}")).collect();
                let mut sentinel =
                    SentinelClient::build(urls, master.clone(), None, SentinelServerType::Master)?;
                let client = ask(&mut sentinel).await?;
                (client, Some(Mutex::new(sentinel)))
            }
        };
        let current = Current::connect(client, &config, with_waited).await?;
        let link = Self {
            inner: Arc::new(Inner {
                current: RwLock::new(current),
                config,
                with_waited,
                moved: watch::channel(0).0,
                sentinel,
            }),
        };
        if link.inner.sentinel.is_some() {
            tokio::spawn(link.clone().watch(stop));
        }
        Ok(link)
    }

    fn current(&self) -> Current {
        // Nothing panics while holding the lock; a poisoned one still holds a whole value.
        self.inner
            .current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The command connection to the current master (it reconnects by itself).
    pub fn conn(&self) -> ConnectionManager {
        self.current().conn
    }

    /// The connection for writes that are followed by `WAIT`, if the link has one.
    pub fn waited_conn(&self) -> Option<ConnectionManager> {
        self.current().waited
    }

    /// A client for the current master, to open the pub/sub connection with.
    pub fn client(&self) -> Client {
        self.current().client
    }

    /// Fires on every change of master.
    pub fn moved(&self) -> watch::Receiver<u64> {
        self.inner.moved.subscribe()
    }

    async fn watch(self, stop: CancellationToken) {
        let mut every = tokio::time::interval(WATCH_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = every.tick() => {}
            }
            if let Err(e) = self.follow().await {
                // The sentinels disagree or are unreachable: keep the master we have.
                tracing::debug!(cause = %e, "cannot ask the sentinels for the master");
            }
        }
    }

    /// Asks the sentinels for the master; moves to it if it changed.
    async fn follow(&self) -> anyhow::Result<()> {
        let Some(sentinel) = &self.inner.sentinel else {
            return Ok(());
        };
        let client = ask(&mut *sentinel.lock().await).await?;
        let addr = client.get_connection_info().addr.to_string();
        let from = self.current().addr;
        if addr == from {
            return Ok(());
        }
        let current = Current::connect(client, &self.inner.config, self.inner.with_waited).await?;
        *self
            .inner
            .current
            .write()
            .unwrap_or_else(|p| p.into_inner()) = current;
        tracing::warn!(%from, to = %addr, "redis master moved: following it");
        self.inner.moved.send_modify(|n| *n += 1);
        Ok(())
    }
}

impl Current {
    async fn connect(
        client: Client,
        config: &ConnectionManagerConfig,
        with_waited: bool,
    ) -> anyhow::Result<Self> {
        let conn = ConnectionManager::new_with_config(client.clone(), config.clone()).await?;
        let waited = if with_waited {
            Some(ConnectionManager::new_with_config(client.clone(), config.clone()).await?)
        } else {
            None
        };
        let addr = client.get_connection_info().addr.to_string();
        Ok(Self {
            client,
            conn,
            waited,
            addr,
        })
    }
}

/// The current master, as the sentinels name it and as it says of itself.
async fn ask(sentinel: &mut SentinelClient) -> anyhow::Result<Client> {
    match tokio::time::timeout(ASK_TIMEOUT, sentinel.async_get_client()).await {
        Ok(client) => Ok(client?),
        Err(_) => anyhow::bail!("the sentinels did not answer in time"),
    }
}
