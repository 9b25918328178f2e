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
mod tests {
    use super::*;
    use crate::protocol::ErrorCode;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(*k, v.parse().expect("header value"));
        }
        map
    }

    fn origin(s: &str) -> AllowedOrigin {
        AllowedOrigin::parse(s).expect("an origin")
    }

    fn proxy(s: &str) -> IpNet {
        crate::server::config::parse_proxy(s).expect("a network")
    }

    fn gate(tweak: impl FnOnce(&mut Config)) -> Arc<Gate> {
        let mut config = Config::default();
        tweak(&mut config);
        config.validate().expect("valid config");
        Gate::new(&config)
    }

    #[test]
    fn a_page_may_open_a_socket_only_on_its_own_host_unless_allowed() {
        let g = gate(|_| {});
        let own = headers(&[
            ("host", "chat.example.com"),
            ("origin", "https://chat.example.com"),
        ]);
        assert!(g.origin_allowed(&own));
        let with_port = headers(&[
            ("host", "127.0.0.1:3000"),
            ("origin", "http://127.0.0.1:3000"),
        ]);
        assert!(g.origin_allowed(&with_port));
        assert!(
            g.origin_allowed(&headers(&[("host", "chat.example.com")])),
            "no Origin"
        );
        for bad in [
            "http://evil.example",
            "https://chat.example.com.evil.example",
            "https://chat.example.com:8443",
            "null",
            "chat.example.com",
        ] {
            let h = headers(&[("host", "chat.example.com"), ("origin", bad)]);
            assert!(!g.origin_allowed(&h), "{bad}");
        }
        let listed = gate(|c| c.limits.allowed_origins = vec![origin("https://app.example.com")]);
        let h = headers(&[
            ("host", "chat.example.com"),
            ("origin", "https://APP.example.com/"),
        ]);
        assert!(listed.origin_allowed(&h));
        let h = headers(&[
            ("host", "chat.example.com"),
            ("origin", "http://app.example.com"),
        ]);
        assert!(
            !listed.origin_allowed(&h),
            "another scheme is another origin"
        );
        let any = gate(|c| c.limits.allowed_origins = vec![AllowedOrigin::Any]);
        assert!(any.origin_allowed(&headers(&[
            ("host", "a"),
            ("origin", "http://evil.example")
        ])));
    }

    #[test]
    fn forwarded_addresses_count_only_from_trusted_proxies() {
        let g = gate(|c| c.limits.trusted_proxies = vec![proxy("10.0.0.0/8")]);
        let xff = headers(&[("x-forwarded-for", "203.0.113.9, 10.0.0.2")]);
        let proxy: IpAddr = "10.0.0.1".parse().expect("ip");
        let stranger: IpAddr = "198.51.100.4".parse().expect("ip");
        assert_eq!(
            g.client_address(proxy, &xff),
            "203.0.113.9".parse::<IpAddr>().expect("ip")
        );
        assert_eq!(g.client_address(stranger, &xff), stranger);
        // A client cannot hide behind an address it writes itself in front of the real one.
        let forged = headers(&[("x-forwarded-for", "1.2.3.4, 203.0.113.9")]);
        assert_eq!(
            g.client_address(proxy, &forged),
            "203.0.113.9".parse::<IpAddr>().expect("ip")
        );
        let garbage = headers(&[("x-forwarded-for", "nonsense")]);
        assert_eq!(g.client_address(proxy, &garbage), proxy);
    }

    #[test]
    fn caps_per_node_and_per_address_give_places_back_when_connections_end() {
        let g = gate(|c| {
            c.limits.max_connections = 3;
            c.limits.max_connections_per_address = 2;
            c.limits.connects_per_sec = 0;
        });
        let a: IpAddr = "203.0.113.1".parse().expect("ip");
        let b: IpAddr = "203.0.113.2".parse().expect("ip");
        let a1 = g.admit(a).expect("first");
        let _a2 = g.admit(a).expect("second");
        assert_eq!(g.admit(a).err(), Some(Refusal::AddressFull));
        let _b1 = g.admit(b).expect("another address");
        assert_eq!(g.admit(b).err(), Some(Refusal::NodeFull));
        drop(a1);
        let _a3 = g.admit(a).expect("a place was given back");
    }

    #[test]
    fn an_ipv6_subscriber_is_one_address_across_its_64() {
        let g = gate(|c| {
            c.limits.max_connections_per_address = 1;
            c.limits.connects_per_sec = 0;
        });
        let _one = g
            .admit("2001:db8:1:2::1".parse().expect("ip"))
            .expect("first");
        assert_eq!(
            g.admit("2001:db8:1:2:ffff::9".parse().expect("ip")).err(),
            Some(Refusal::AddressFull)
        );
        assert!(g.admit("2001:db8:1:3::1".parse().expect("ip")).is_ok());
    }

    #[test]
    fn connects_past_the_burst_are_refused_with_a_wait() {
        let g = gate(|c| {
            c.limits.connects_per_sec = 1;
            c.limits.connect_burst = 2;
        });
        let a: IpAddr = "203.0.113.1".parse().expect("ip");
        let _t1 = g.admit(a).expect("burst");
        let _t2 = g.admit(a).expect("burst");
        match g.admit(a) {
            Err(Refusal::TooFast(wait)) => assert!(wait <= Duration::from_secs(1), "{wait:?}"),
            Err(other) => panic!("expected TooFast, got {other:?}"),
            Ok(_) => panic!("expected TooFast, got a ticket"),
        }
        assert!(
            g.admit("203.0.113.2".parse().expect("ip")).is_ok(),
            "others are unaffected"
        );
    }

    #[test]
    fn a_flood_is_refused_with_a_wait_and_then_closed() {
        let mut config = Config::default();
        config.limits.sends_per_sec = 1;
        config.limits.send_burst = 3;
        config.limits.rate_limit_strikes = 2;
        let mut limits = FrameLimits::default();
        let now = 7_000_000_000;
        let mut check = |kind| limits.check_at(&config, kind, 10, now);
        for _ in 0..3 {
            assert_eq!(check(FrameKind::Send), Verdict::Take);
        }
        match check(FrameKind::Send) {
            Verdict::Refuse(e) => {
                assert_eq!(e.code, ErrorCode::RateLimited);
                assert!(
                    e.retry_after_ms.is_some_and(|ms| (1..=1000).contains(&ms)),
                    "{e:?}"
                );
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
        // Other kinds of frames have their own bucket.
        assert_eq!(check(FrameKind::Control), Verdict::Take);
        assert!(matches!(check(FrameKind::Send), Verdict::Refuse(_)));
        assert_eq!(check(FrameKind::Send), Verdict::Close);
    }

    #[test]
    fn bytes_are_limited_and_a_largest_frame_always_fits_a_full_bucket() {
        let mut config = Config::default();
        config.limits.bytes_per_sec = 100;
        config.limits.sends_per_sec = 0;
        let mut limits = FrameLimits::default();
        let now = 7_000_000_000;
        assert_eq!(
            limits.check_at(&config, FrameKind::Send, config.conn.max_frame_bytes, now),
            Verdict::Take
        );
        assert!(matches!(
            limits.check_at(&config, FrameKind::Send, 1000, now),
            Verdict::Refuse(_)
        ));
    }

    #[test]
    fn a_connection_opens_only_so_many_rooms_a_minute() {
        let mut config = Config::default();
        config.limits.rooms_created_per_min = 2;
        let mut limits = FrameLimits::default();
        for _ in 0..2 {
            assert!(limits.may_open_room(&config));
            limits.opened_room();
        }
        assert!(!limits.may_open_room(&config));
    }

    #[test]
    fn a_connections_limits_are_small() {
        // One set per connection: they must not undo the per-connection memory work.
        assert!(
            std::mem::size_of::<FrameLimits>() <= 56,
            "{}",
            std::mem::size_of::<FrameLimits>()
        );
    }
}
