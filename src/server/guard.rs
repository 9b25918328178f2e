//! What stands between the open internet and the chat: which pages may open a WebSocket here
//! (`Origin`), who the client is (its address, through trusted proxies), how many connections a
//! node and an address may hold and open, and how fast one connection may send.
//!
//! The rate limits are GCRA token buckets: a bucket refills at its rate and holds at most its
//! burst; a frame that finds it empty is refused with the time until it would pass. Connects per
//! address use `governor`'s keyed limiter (one map for the node); a connection's own buckets are
//! [`crate::rate`]'s, 8 bytes each with the quota kept once in the configuration, and the same
//! arithmetic the browser paces itself by.

use super::{
    config::{AllowedOrigin, Config},
    net::{parse_origin, split_host_port},
};
use crate::{protocol::Invalid, rate::Bucket};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use governor::{
    Quota, RateLimiter,
    clock::{Clock, MonotonicClock},
    middleware::NoOpMiddleware,
    state::keyed::DefaultKeyedStateStore,
};
use ipnet::IpNet;
use std::{
    collections::HashMap,
    net::{IpAddr, Ipv6Addr},
    num::NonZeroU32,
    sync::{
        Arc, Mutex, OnceLock,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

/// Connects per client address, shared by the node.
type KeyedBucket = RateLimiter<
    IpAddr,
    DefaultKeyedStateStore<IpAddr>,
    MonotonicClock,
    NoOpMiddleware<std::time::Instant>,
>;

/// File descriptors kept back from `max_connections` when it is derived from the open-file
/// limit: Redis connections, the listener, log files, and room to answer 503.
const FD_RESERVE_MIN: usize = 64;

/// A bucket refilling `per_sec` a second and holding `burst`; none when `per_sec` is 0.
fn bucket_quota(per_sec: u32, burst: u32) -> Option<Quota> {
    let rate = NonZeroU32::new(per_sec)?;
    Some(Quota::per_second(rate).allow_burst(NonZeroU32::new(burst).unwrap_or(rate)))
}

/// The key an address is counted under: IPv4 as it is, IPv6 by its /64 (one subscriber usually
/// holds a whole /64), an IPv4-mapped IPv6 address as the IPv4 one.
fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
        v4 => v4,
    }
}

/// Why an upgrade was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The page's origin is not allowed (403).
    Origin,
    /// The node holds `max_connections` (503: a balancer tries another node).
    NodeFull,
    /// The address holds `max_connections_per_address` (503).
    AddressFull,
    /// The address opens connections too fast (429, with when to try again).
    TooFast(Duration),
}

impl Refusal {
    pub fn status(&self) -> StatusCode {
        match self {
            Refusal::Origin => StatusCode::FORBIDDEN,
            Refusal::NodeFull | Refusal::AddressFull => StatusCode::SERVICE_UNAVAILABLE,
            Refusal::TooFast(_) => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    pub fn reason(&self) -> &'static str {
        match self {
            Refusal::Origin => "pages of this origin may not open a chat connection here",
            Refusal::NodeFull => "this node holds all the connections it can; try another",
            Refusal::AddressFull => "too many connections from your address",
            Refusal::TooFast(_) => "too many new connections from your address; try again soon",
        }
    }

    /// Seconds for a `Retry-After` header.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            Refusal::TooFast(wait) => Some(wait.as_secs_f64().ceil().max(1.0) as u64),
            Refusal::NodeFull | Refusal::AddressFull => Some(1),
            Refusal::Origin => None,
        }
    }
}

/// The node's door: origin check, client addresses, connection caps and connect rates.
pub struct Gate {
    any_origin: bool,
    origins: Vec<(String, String, u16)>,
    trusted: Vec<IpNet>,
    max_connections: usize,
    max_per_address: usize,
    open: AtomicUsize,
    per_address: Mutex<HashMap<IpAddr, u32>>,
    connects: Option<KeyedBucket>,
    /// Admissions since the connect buckets were last swept of addresses that are full again.
    since_sweep: AtomicUsize,
}

/// A place on the node, held by a connection for its whole life and given back when dropped.
pub struct Ticket {
    gate: Arc<Gate>,
    address: IpAddr,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.gate.open.fetch_sub(1, Ordering::Relaxed);
        self.gate.release_address(self.address);
    }
}

impl Gate {
    pub fn new(config: &Config) -> Arc<Self> {
        let max_connections = match config.limits.max_connections {
            0 => connections_below_file_limit(),
            n => n,
        };
        Arc::new(Self {
            any_origin: config.limits.allowed_origins.contains(&AllowedOrigin::Any),
            origins: (config.limits.allowed_origins.iter())
                .filter_map(|o| match o {
                    AllowedOrigin::Origin { scheme, host, port } => {
                        Some((scheme.clone(), host.clone(), *port))
                    }
                    AllowedOrigin::Any => None,
                })
                .collect(),
            trusted: config.limits.trusted_proxies.clone(),
            max_connections,
            max_per_address: config.limits.max_connections_per_address,
            open: AtomicUsize::new(0),
            per_address: Mutex::new(HashMap::new()),
            connects: bucket_quota(config.limits.connects_per_sec, config.limits.connect_burst)
                .map(|q| RateLimiter::dashmap_with_clock(q, MonotonicClock)),
            since_sweep: AtomicUsize::new(0),
        })
    }

    pub fn max_connections(&self) -> usize {
        self.max_connections
    }

    /// Whether a page of the request's `Origin` may open a WebSocket: always without an
    /// `Origin` (not a browser), a page of the host the request was sent to, or an allowed one.
    pub fn origin_allowed(&self, headers: &HeaderMap) -> bool {
        let Some(origin) = headers.get(header::ORIGIN) else {
            return true;
        };
        if self.any_origin {
            return true;
        }
        let Some((scheme, host, port)) = origin.to_str().ok().and_then(parse_origin) else {
            // "null" (a sandboxed frame, a file) and anything malformed.
            return false;
        };
        let same_host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| split_host_port(h, if scheme == "https" { 443 } else { 80 }))
            .is_some_and(|(h, p)| h == host && p == port);
        same_host
            || self
                .origins
                .iter()
                .any(|(s, h, p)| *s == scheme && *h == host && *p == port)
    }

    /// The client's address: the peer's, or, when the peer is a trusted proxy, the nearest
    /// address in `X-Forwarded-For` that is not itself a trusted proxy.
    pub fn client_address(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let trusted = |ip: &IpAddr| self.trusted.iter().any(|net| net.contains(ip));
        let mut client = peer;
        if !trusted(&client) {
            return client;
        }
        // Hops are appended on the right: read from the nearest one back.
        let hops = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v: &HeaderValue| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .collect::<Vec<_>>();
        for hop in hops.into_iter().rev() {
            match hop.trim().parse::<IpAddr>() {
                Ok(ip) => {
                    client = ip;
                    if !trusted(&ip) {
                        break;
                    }
                }
                // Garbage from further away is the client's own to write: stop at it.
                Err(_) => break,
            }
        }
        client
    }

    /// Takes a place for a new connection from `client`, or says why there is none.
    pub fn admit(self: &Arc<Self>, client: IpAddr) -> Result<Ticket, Refusal> {
        let address = address_key(client);
        if let Some(connects) = &self.connects {
            if let Err(not_until) = connects.check_key(&address) {
                return Err(Refusal::TooFast(
                    not_until.wait_time_from(MonotonicClock.now()),
                ));
            }
            // Addresses whose bucket is full again need no entry: drop them now and then.
            if self.since_sweep.fetch_add(1, Ordering::Relaxed) >= 4096 {
                self.since_sweep.store(0, Ordering::Relaxed);
                connects.retain_recent();
                connects.shrink_to_fit();
            }
        }
        if self.max_per_address > 0 {
            let mut counts = self.per_address.lock().unwrap_or_else(|p| p.into_inner());
            let held = counts.entry(address).or_insert(0);
            if *held as usize >= self.max_per_address {
                return Err(Refusal::AddressFull);
            }
            *held += 1;
        }
        if self.open.fetch_add(1, Ordering::Relaxed) >= self.max_connections {
            self.open.fetch_sub(1, Ordering::Relaxed);
            self.release_address(address);
            return Err(Refusal::NodeFull);
        }
        Ok(Ticket {
            gate: self.clone(),
            address,
        })
    }

    fn release_address(&self, address: IpAddr) {
        if self.max_per_address > 0 {
            let mut counts = self.per_address.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(n) = counts.get_mut(&address) {
                *n -= 1;
                if *n == 0 {
                    counts.remove(&address);
                }
            }
        }
    }
}

/// The open-file limit less a reserve (5 %, at least [`FD_RESERVE_MIN`]): one descriptor per
/// connection, and the node must still open Redis connections and answer 503.
fn connections_below_file_limit() -> usize {
    match rlimit::getrlimit(rlimit::Resource::NOFILE) {
        Ok((soft, _)) => {
            let soft = usize::try_from(soft).unwrap_or(usize::MAX);
            soft.saturating_sub((soft / 20).max(FD_RESERVE_MIN)).max(1)
        }
        Err(e) => {
            tracing::warn!(cause = %e, "cannot read the open-file limit; max_connections = 1000");
            1000
        }
    }
}

/// What a client frame costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    Send,
    Control,
}

/// What a connection may do with a frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    Take,
    /// Refused for speed: answer this error and carry on.
    Refuse(Invalid),
    /// Refused once too often: close the connection (1008).
    Close,
}

/// A connection's rate limits: one bucket per kind of frame, one for bytes, and one of strikes
/// (refusals) that closes the connection when empty. Only the buckets' state lives here, 8 bytes
/// each; their quotas come from the node's configuration at each check.
#[derive(Default)]
pub struct FrameLimits {
    sends: Bucket,
    controls: Bucket,
    bytes: Bucket,
    strikes: Bucket,
    /// When this connection opened new rooms, within the last minute (a sliding window: only a
    /// join that turns out to open a room counts, which a bucket cannot be asked beforehand).
    opened: Vec<std::time::Instant>,
}

/// Nanoseconds since the process began: the buckets' clock (monotonic; a fresh bucket is full).
fn now_ns() -> u64 {
    static ORIGIN: OnceLock<std::time::Instant> = OnceLock::new();
    let origin = *ORIGIN.get_or_init(std::time::Instant::now);
    u64::try_from(origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

impl FrameLimits {
    /// Whether this connection may open another room now.
    pub fn may_open_room(&mut self, config: &Config) -> bool {
        let now = std::time::Instant::now();
        self.opened
            .retain(|at| now.duration_since(*at) < Duration::from_secs(60));
        self.opened.len() < config.limits.rooms_created_per_min as usize
    }

    /// This connection opened a room.
    pub fn opened_room(&mut self) {
        self.opened.push(std::time::Instant::now());
    }

    /// Charges a frame of `len` bytes to the buckets of its kind.
    pub fn check(&mut self, config: &Config, kind: FrameKind, len: usize) -> Verdict {
        self.check_at(config, kind, len, now_ns())
    }

    fn check_at(&mut self, config: &Config, kind: FrameKind, len: usize, now: u64) -> Verdict {
        let frames = match kind {
            FrameKind::Send => config.limits.send_rate().map(|r| (r, &mut self.sends)),
            FrameKind::Control => config
                .limits
                .control_rate()
                .map(|r| (r, &mut self.controls)),
        };
        let mut wait = frames.and_then(|(rate, bucket)| bucket.take(rate, now, 1).err());
        if wait.is_none()
            && let Some(rate) = config.byte_rate()
        {
            let n = u32::try_from(len).unwrap_or(u32::MAX);
            wait = self.bytes.take(rate, now, n).err();
        }
        match wait {
            None => Verdict::Take,
            Some(_)
                if self
                    .strikes
                    .take(config.limits.strike_rate(), now, 1)
                    .is_err() =>
            {
                Verdict::Close
            }
            Some(ns) => {
                // Rounded up, so a client that waits exactly this long gets through.
                Verdict::Refuse(Invalid::rate_limited(ns.div_ceil(1_000_000).max(1)))
            }
        }
    }
}

#[cfg(test)]
mod tests;
