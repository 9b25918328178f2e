//! Run-time configuration: one typed struct, loaded in layers — built-in defaults, then
//! `Leptos.toml` (or the file named by `--config` / `CHORUS_CONFIG`), then `CHORUS_*` environment
//! variables, then command-line flags.

use super::bus::Target;
use crate::rate::Rate;
use std::{net::SocketAddr, path::PathBuf};

mod layer;
#[cfg(test)]
mod tests;
mod validate;
mod values;

use ipnet::IpNet;
use layer::read_layer;
pub use layer::{Cli, Layer};
pub use values::{AllowedOrigin, Auth, JwtAlgorithm, LogFormat, parse_proxy};

/// The file read when none is named; a missing default file is not an error.
pub const DEFAULT_CONFIG_FILE: &str = "Leptos.toml";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {source}")]
    Parse {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("invalid setting {key}: {why}")]
    Invalid { key: &'static str, why: String },
}

/// The server's settings after all layers are applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Address the HTTP and WebSocket listener binds.
    pub listen: SocketAddr,
    /// This node's id, sent in `welcome`; generated when not set.
    pub node_id: Option<String>,
    /// Redis to share state and events with other nodes (`redis://host:port/db`); without it the
    /// node keeps everything in memory and stands alone.
    pub redis_url: Option<String>,
    /// Or Redis through Sentinel: the sentinels' `host:port`s; the node follows the master they
    /// name (`redis_sentinel_master`) through failovers.
    pub redis_sentinels: Vec<String>,
    pub redis_sentinel_master: String,
    /// Or a Redis Cluster (Redis 7 or newer): some of its nodes, `host:port` or `redis://` URLs
    /// (with the user and password, if any); the node finds the others from them.
    pub redis_cluster: Vec<String>,
    /// Replicas that must hold a message before its sender gets `ack` (Redis `WAIT`); 0 (the
    /// default) acknowledges once the master has it, and a failover may lose the last ones.
    pub redis_wait_replicas: u32,
    /// Milliseconds to wait for those replicas; past it the sender gets a retryable error.
    pub redis_wait_timeout_ms: u64,
    /// Seconds a session whose connection dropped keeps its name for a `resume`.
    pub session_ttl_secs: u64,
    /// Milliseconds without a heartbeat after which a node counts as dead and its members are
    /// removed from every room (heartbeats go out four times per period). Redis only.
    pub node_ttl_ms: u64,
    /// Messages kept per room and sent to a joiner; also how far back a reconnecting client can
    /// recover what it missed (`join` with `since`).
    pub history_size: usize,
    /// How many of a room's latest `client_id`s are remembered, so that a re-sent message is
    /// acknowledged again instead of stored twice.
    pub dedup_window: usize,
    /// Milliseconds between two WebSocket pings to each connection; keep it well below the idle
    /// timeout of any balancer in front (nginx's `proxy_read_timeout`, a cloud balancer's 60 s).
    pub ping_interval_ms: u64,
    /// Milliseconds a connection may stay silent (no frame, not even a pong) before it is closed.
    pub idle_timeout_ms: u64,
    /// On SIGTERM, milliseconds over which open connections are told to reconnect elsewhere
    /// (1012), each at a random moment, so they do not all arrive at other nodes at once.
    pub drain_ms: u64,
    /// Longest message text, in characters.
    pub max_text_chars: usize,
    /// Largest WebSocket frame (and message) a client may send, in bytes; larger closes with 1009.
    pub max_frame_bytes: usize,
    /// Frames queued for one connection before it counts as a slow reader and is closed (1013).
    pub outbound_queue: usize,
    /// Rooms one connection may be in at once.
    pub max_rooms_per_connection: usize,
    /// Least milliseconds between two `presence` frames of one room (the newest list wins).
    pub presence_interval_ms: u64,
    /// Rooms the node keeps (with their history) at once. Past it, the room without members idle
    /// longest is forgotten to make space; only when every room has members is a new one refused.
    pub max_rooms: usize,
    /// Seconds a room may go without a message or a join before it is forgotten (in memory:
    /// once it has no members; in Redis: its messages, sequence and dedup ids expire). A room
    /// opened again starts a new epoch, so `seq` is never reused.
    pub room_idle_secs: u64,
    /// New rooms one connection may open per minute (joining rooms that exist is not counted).
    pub rooms_created_per_min: u32,
    /// Seconds to wait, after the drain, for connections to close before exiting anyway.
    pub shutdown_grace_secs: u64,
    /// Where cargo-leptos put the site (JS, WASM, CSS, assets).
    pub site_root: String,
    /// `tracing` filter, e.g. `info` or `chorus=debug,info`; `RUST_LOG` wins when set.
    pub log: String,
    /// `text` (for people) or `json` (one object a line, for log collectors).
    pub log_format: LogFormat,
    /// Origins (`scheme://host[:port]`) whose pages may open a WebSocket here, besides pages of
    /// the host the request names itself (its `Host` header). `["*"]` allows every origin. A
    /// browser always sends `Origin`; a request without one (a native client) is not checked.
    pub allowed_origins: Vec<AllowedOrigin>,
    /// Peers (addresses or networks, e.g. `10.0.0.0/8`) whose `X-Forwarded-For` names the client;
    /// for any other peer the socket's address is the client's.
    pub trusted_proxies: Vec<IpNet>,
    /// WebSocket connections this node holds at once; 0 = the open-file limit less a reserve.
    /// Past it, upgrades get 503 (a balancer then tries another node).
    pub max_connections: usize,
    /// WebSocket connections one client address (an IPv6 /64) may hold on this node; 0 = no cap.
    pub max_connections_per_address: usize,
    /// New WebSocket connections per second from one client address, and the burst allowed
    /// above it; past them, upgrades get 429. 0 = no limit.
    pub connects_per_sec: u32,
    pub connect_burst: u32,
    /// `send` frames per second per connection, and the burst; 0 = no limit.
    pub sends_per_sec: u32,
    pub send_burst: u32,
    /// Bytes of frames per second per connection (the burst is `max_frame_bytes`); 0 = no limit.
    pub bytes_per_sec: u32,
    /// Other frames (`set_name`, `join`, `leave`, `resume`, `ping`, malformed ones) per second
    /// per connection, and the burst; 0 = no limit.
    pub controls_per_sec: u32,
    pub control_burst: u32,
    /// Refusals for speed a connection may collect (one is forgiven per second) before it is
    /// closed with 1008.
    pub rate_limit_strikes: u32,
    /// PEM certificate chain and private key: with both, the node serves HTTPS and WSS itself
    /// (for setups without a balancer that ends TLS).
    pub tls_cert: Option<String>,
    pub tls_key: Option<String>,
    /// Where `GET /metrics` is served: unset, on the main listener; an address (e.g.
    /// `127.0.0.1:9100`), there only, so it need not be public.
    pub metrics_listen: Option<SocketAddr>,
    /// Whether `/status` (the live status page) and `/status.json` are served.
    pub status_page: bool,
    /// Serve them (and the site they need) on this address only, instead of the main listener.
    pub status_listen: Option<SocketAddr>,
    /// `anonymous` (names first come, first served) or `jwt` (a host application's signed token
    /// names the user; see `server::auth`).
    pub auth: Auth,
    /// `HS256` (with `jwt_secret`), `RS256` or `EdDSA` (with `jwt_public_key`, a PEM file).
    pub jwt_algorithm: JwtAlgorithm,
    pub jwt_secret: Option<String>,
    pub jwt_public_key: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 3000)),
            node_id: None,
            redis_url: None,
            redis_sentinels: Vec::new(),
            redis_sentinel_master: "mymaster".to_owned(),
            redis_cluster: Vec::new(),
            redis_wait_replicas: 0,
            redis_wait_timeout_ms: 200,
            session_ttl_secs: 30,
            node_ttl_ms: 5_000,
            history_size: 100,
            dedup_window: 1000,
            ping_interval_ms: 25_000,
            idle_timeout_ms: 60_000,
            drain_ms: 10_000,
            max_text_chars: 4000,
            max_frame_bytes: 64 * 1024,
            outbound_queue: 256,
            max_rooms_per_connection: 16,
            presence_interval_ms: 250,
            max_rooms: 10_000,
            room_idle_secs: 7 * 24 * 3600,
            rooms_created_per_min: 10,
            shutdown_grace_secs: 10,
            site_root: "target/site".to_owned(),
            log: "info".to_owned(),
            log_format: LogFormat::Text,
            allowed_origins: Vec::new(),
            // Each parses (a unit test checks that none is dropped).
            trusted_proxies: [
                "127.0.0.0/8",
                "::1/128",
                "10.0.0.0/8",
                "172.16.0.0/12",
                "192.168.0.0/16",
                "fc00::/7",
            ]
            .iter()
            .filter_map(|net| net.parse().ok())
            .collect(),
            max_connections: 0,
            max_connections_per_address: 1000,
            connects_per_sec: 50,
            connect_burst: 500,
            sends_per_sec: 10,
            send_burst: 30,
            bytes_per_sec: 64 * 1024,
            controls_per_sec: 5,
            control_burst: 30,
            rate_limit_strikes: 10,
            tls_cert: None,
            metrics_listen: None,
            status_page: true,
            status_listen: None,
            tls_key: None,
            auth: Auth::Anonymous,
            jwt_algorithm: JwtAlgorithm::Hs256,
            jwt_secret: None,
            jwt_public_key: None,
        }
    }
}

impl Config {
    /// `send` frames per connection; none when off.
    pub fn send_rate(&self) -> Option<Rate> {
        Rate::new(self.sends_per_sec, self.send_burst)
    }

    /// Bytes of frames per connection; none when off. Any frame the size limit lets through fits
    /// a full bucket.
    pub fn byte_rate(&self) -> Option<Rate> {
        let frame = u32::try_from(self.max_frame_bytes).unwrap_or(u32::MAX);
        Rate::new(self.bytes_per_sec, frame.max(self.bytes_per_sec))
    }

    /// Frames other than `send` per connection; none when off.
    pub fn control_rate(&self) -> Option<Rate> {
        Rate::new(self.controls_per_sec, self.control_burst)
    }

    /// Where Redis is, if the node uses it.
    pub fn redis_target(&self) -> Option<Target> {
        if !self.redis_cluster.is_empty() {
            return Some(Target::Cluster {
                nodes: self.redis_cluster.clone(),
            });
        }
        if !self.redis_sentinels.is_empty() {
            return Some(Target::Sentinel {
                sentinels: self.redis_sentinels.clone(),
                master: self.redis_sentinel_master.clone(),
            });
        }
        self.redis_url.clone().map(Target::Url)
    }

    /// Whether the node uses Redis (one server, through Sentinel, or a cluster).
    pub fn uses_redis(&self) -> bool {
        self.redis_url.is_some()
            || !self.redis_sentinels.is_empty()
            || !self.redis_cluster.is_empty()
    }

    /// Whether the main listener serves the status page.
    pub fn status_on_main(&self) -> bool {
        self.status_page && self.status_listen.is_none()
    }

    /// Refusals for speed: one forgiven a second, `rate_limit_strikes` at most.
    pub fn strike_rate(&self) -> Rate {
        Rate {
            per_sec: 1,
            burst: self.rate_limit_strikes.max(1),
        }
    }

    /// Applies the file (if any) and then the command line's layer on top of the defaults.
    pub fn load(cli: Cli) -> Result<Self, ConfigError> {
        let file = match &cli.config {
            Some(path) => Some(read_layer(path)?),
            None => {
                let path = PathBuf::from(DEFAULT_CONFIG_FILE);
                path.exists().then(|| read_layer(&path)).transpose()?
            }
        };
        let mut config = Config::default();
        let mut overrides = cli.overrides;
        if let Some(mut file) = file {
            // Values that are parsed are parsed once every layer is in, as `validate` checks
            // only what the layers leave: a bad value that a later layer replaces is no error.
            file.defer_parsed(&mut overrides);
            config.apply(file)?;
        }
        config.apply(overrides)?;
        config.validate()?;
        Ok(config)
    }

    /// A copy safe to log: passwords in Redis URLs and the JWT secret are masked.
    pub fn redacted(&self) -> Self {
        let mut copy = self.clone();
        if copy.jwt_secret.is_some() {
            copy.jwt_secret = Some("***".to_owned());
        }
        let mask = |url: &mut String| {
            if let Some((scheme, rest)) = url.split_once("://")
                && let Some((_, host)) = rest.rsplit_once('@')
            {
                *url = format!("{scheme}://***@{host}");
            }
        };
        copy.redis_url.iter_mut().for_each(mask);
        copy.redis_cluster.iter_mut().for_each(mask);
        copy
    }
}
