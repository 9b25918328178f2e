//! Run-time configuration: one typed struct of groups, loaded in layers — built-in defaults,
//! then `Leptos.toml` (or the file named by `--config` / `CHORUS_CONFIG`), then `CHORUS_*`
//! environment variables, then command-line flags.
//!
//! Every key is declared once, in the `settings!` table below: its doc (also its `--help`), the
//! type a layer reads (durations as whole `Millis` or `Secs`, as the key's name says), the type it
//! is parsed into, its default and its variable. Adding a key is
//! one entry there (and a check in `validate.rs` if it has limits, a row in README's table).

use super::bus::Target;
use crate::rate::Rate;
use std::{net::SocketAddr, path::PathBuf, time::Duration};

mod layer;
mod settings;
#[cfg(test)]
mod tests;
mod validate;
mod values;

use ipnet::IpNet;
pub use layer::Cli;
use layer::read_layer;
pub use settings::{Millis, Secs};
use settings::{Setting, settings};
use values::Wanted;
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

settings! {
    /// Where the node listens, who it is, and how it starts and stops.
    node: Node {
        /// Address the HTTP and WebSocket listener binds.
        listen: SocketAddr = SocketAddr::from(([127, 0, 0, 1], 3000)), env "CHORUS_LISTEN";
        /// This node's id, sent in `welcome`; generated when not set.
        node_id: String => Option<String> = None, env "CHORUS_NODE_ID";
        /// Where cargo-leptos put the site (JS, WASM, CSS, assets).
        site_root: String = "target/site".to_owned(), env "LEPTOS_SITE_ROOT";
        /// A PEM certificate chain: with it and `tls_key`, the node serves HTTPS and WSS itself
        /// (for setups without a balancer that ends TLS).
        tls_cert: String => Option<String> = None, env "CHORUS_TLS_CERT";
        /// The private key (PEM) of `tls_cert`.
        tls_key: String => Option<String> = None, env "CHORUS_TLS_KEY";
        /// On SIGTERM, milliseconds over which open connections are told to reconnect elsewhere
        /// (1012), each at a random moment, so they do not all arrive at other nodes at once.
        drain_ms: Millis => Duration = Duration::from_millis(10_000), env "CHORUS_DRAIN_MS";
        /// Seconds to wait, after the drain, for connections to close before exiting anyway.
        shutdown_grace_secs: Secs => Duration = Duration::from_secs(10), env "CHORUS_SHUTDOWN_GRACE_SECS";
    }

    /// Redis, shared by the nodes; without it the node keeps everything in memory and stands
    /// alone.
    redis: Redis {
        /// One Redis server (`redis://host:port/db`); an empty value switches Redis off again.
        redis_url: String => Option<String> = None, env "CHORUS_REDIS_URL";
        /// Or Redis through Sentinel: the sentinels' `host:port`s (comma-separated here); the
        /// node follows the master they name (`redis_sentinel_master`) through failovers.
        #[arg(value_delimiter = ',')]
        redis_sentinels: Vec<String> = Vec::new(), env "CHORUS_REDIS_SENTINELS";
        /// The master's name in the sentinels' configuration.
        redis_sentinel_master: String = "mymaster".to_owned(), env "CHORUS_REDIS_SENTINEL_MASTER";
        /// Or a Redis Cluster (Redis 7 or newer): some of its nodes, `host:port` or `redis://`
        /// URLs with the user and password, if any (comma-separated here); the node finds the
        /// others from them.
        #[arg(value_delimiter = ',')]
        redis_cluster: Vec<String> = Vec::new(), env "CHORUS_REDIS_CLUSTER";
        /// Replicas that must hold a message before its sender gets `ack` (Redis `WAIT`); 0
        /// acknowledges once the master has it, and a failover may lose the last ones.
        redis_wait_replicas: u32 = 0, env "CHORUS_REDIS_WAIT_REPLICAS";
        /// Milliseconds to wait for those replicas; past it the sender gets a retryable error.
        redis_wait_timeout_ms: Millis => Duration = Duration::from_millis(200), env "CHORUS_REDIS_WAIT_TIMEOUT_MS";
        /// Milliseconds without a heartbeat after which a node counts as dead and its members
        /// are removed from every room (heartbeats go out four times per period).
        node_ttl_ms: Millis => Duration = Duration::from_millis(5_000), env "CHORUS_NODE_TTL_MS";
    }

    /// Rooms, their history and the sessions in them.
    rooms: Rooms {
        /// Messages kept per room (in memory or in Redis): how far back readers can page
        /// (`history`) and a reconnecting client can recover what it missed (`join` with
        /// `since`, up to 1,000 messages). 0 keeps none.
        history_size: usize = 10_000, env "CHORUS_HISTORY_SIZE";
        /// Bytes of messages kept per room, whatever their number: past it the oldest go.
        history_bytes: usize = 4 * 1024 * 1024, env "CHORUS_HISTORY_BYTES";
        /// How many of a room's newest messages a joiner is sent in `joined`; older ones are
        /// read with `history`.
        join_history: usize = 50, env "CHORUS_JOIN_HISTORY";
        /// How many of a room's latest `client_id`s are remembered, so that a re-sent message is
        /// acknowledged again instead of stored twice.
        dedup_window: usize = 1000, env "CHORUS_DEDUP_WINDOW";
        /// Milliseconds a member whose connection dropped, or whose page went away (a reload
        /// closes with 1001), stays in its rooms before it is announced as left: a client that
        /// resumes its session and joins again within it comes back without a left/joined pair.
        /// 0 announces at once.
        leave_grace_ms: Millis => Duration = Duration::from_millis(5_000), env "CHORUS_LEAVE_GRACE_MS";
        /// Milliseconds after sending a message during which its author may edit or delete it
        /// (`edit`, `delete`). 0 turns editing and deleting off.
        edit_window_ms: Millis => Duration = Duration::from_millis(3_600_000), env "CHORUS_EDIT_WINDOW_MS";
        /// Seconds a session whose connection dropped keeps its name for a `resume`.
        session_ttl_secs: Secs => Duration = Duration::from_secs(30), env "CHORUS_SESSION_TTL_SECS";
        /// Most names in a `joined` or `presence` frame. A bigger room sends its first that many
        /// (sorted) and its member count; clients page the rest with `members`.
        presence_list_max: usize = 200, env "CHORUS_PRESENCE_LIST_MAX";
        /// Rooms with more members than this get no join or leave notices (renames are always
        /// shown): the count in `presence` says who comes and goes, and a join storm in the big
        /// room is not a notice to each of its members per joiner.
        notices_max_members: usize = 1000, env "CHORUS_NOTICES_MAX_MEMBERS";
        /// Least milliseconds between two `presence` frames of one room (the newest list wins).
        presence_interval_ms: Millis => Duration = Duration::from_millis(250), env "CHORUS_PRESENCE_INTERVAL_MS";
        /// Rooms the node keeps (with their history) at once. Past it, the room without members
        /// idle longest is forgotten to make space; only when every room has members is a new
        /// one refused.
        max_rooms: usize = 10_000, env "CHORUS_MAX_ROOMS";
        /// Seconds a room may go without a message or a join before it is forgotten (in memory:
        /// once it has no members; in Redis: its messages, sequence and dedup ids expire). A
        /// room opened again starts a new epoch, so `seq` is never reused.
        room_idle_secs: Secs => Duration = Duration::from_secs(7 * 24 * 3600), env "CHORUS_ROOM_IDLE_SECS";
    }

    /// One connection: its heartbeat, its frames and its queue.
    conn: Connections {
        /// Milliseconds between two WebSocket pings to each connection; keep it well below the
        /// idle timeout of any balancer in front (nginx's `proxy_read_timeout`, a cloud
        /// balancer's 60 s).
        ping_interval_ms: Millis => Duration = Duration::from_millis(25_000), env "CHORUS_PING_INTERVAL_MS";
        /// Milliseconds a connection may stay silent (no frame, not even a pong) before it is
        /// closed.
        idle_timeout_ms: Millis => Duration = Duration::from_millis(60_000), env "CHORUS_IDLE_TIMEOUT_MS";
        /// Longest message text, in characters.
        max_text_chars: usize = 4000, env "CHORUS_MAX_TEXT_CHARS";
        /// Largest WebSocket frame (and message) a client may send, in bytes; larger closes
        /// with 1009.
        max_frame_bytes: usize = 64 * 1024, env "CHORUS_MAX_FRAME_BYTES";
        /// Frames, and bytes, queued for one connection. To stay within them member lists
        /// replace older ones and join/leave notices are dropped; when messages themselves do not
        /// fit, the connection counts as a slow reader and is closed (1013), and its client
        /// recovers what it missed.
        outbound_queue: usize = 4096, env "CHORUS_OUTBOUND_QUEUE";
        outbound_queue_bytes: usize = 1024 * 1024, env "CHORUS_OUTBOUND_QUEUE_BYTES";
        /// Rooms one connection may be in at once.
        max_rooms_per_connection: usize = 16, env "CHORUS_MAX_ROOMS_PER_CONNECTION";
    }

    /// What a client may do, facing the open internet (see SECURITY.md).
    limits: Limits {
        /// Origins (`scheme://host[:port]`) whose pages may open a WebSocket here, besides pages
        /// of the host the request names itself (its `Host` header). `*` allows every origin. A
        /// browser always sends `Origin`; a request without one (a native client) is not
        /// checked. Comma-separated here.
        #[arg(value_delimiter = ',')]
        allowed_origins: Vec<String> => Vec<AllowedOrigin> = Vec::new(), env "CHORUS_ALLOWED_ORIGINS";
        /// Peers (addresses or networks, e.g. `10.0.0.0/8`) whose `X-Forwarded-For` names the
        /// client; for any other peer the socket's address is the client's. Comma-separated here.
        #[arg(value_delimiter = ',')]
        trusted_proxies: Vec<String> => Vec<IpNet> = default_trusted_proxies(), env "CHORUS_TRUSTED_PROXIES";
        /// WebSocket connections this node holds at once; 0 = the open-file limit less a
        /// reserve. Past it, upgrades get 503 (a balancer then tries another node).
        max_connections: usize = 0, env "CHORUS_MAX_CONNECTIONS";
        /// WebSocket connections one client address (an IPv6 /64) may hold on this node; 0 = no
        /// cap.
        max_connections_per_address: usize = 1000, env "CHORUS_MAX_CONNECTIONS_PER_ADDRESS";
        /// New WebSocket connections per second from one client address, and the burst allowed
        /// above it; past them, upgrades get 429. 0 = no limit.
        connects_per_sec: u32 = 50, env "CHORUS_CONNECTS_PER_SEC";
        /// Connections from one address allowed at once above `connects_per_sec`.
        connect_burst: u32 = 500, env "CHORUS_CONNECT_BURST";
        /// `send` frames per second per connection, and the burst; 0 = no limit.
        sends_per_sec: u32 = 10, env "CHORUS_SENDS_PER_SEC";
        /// `send` frames allowed at once above `sends_per_sec`.
        send_burst: u32 = 30, env "CHORUS_SEND_BURST";
        /// Bytes of frames per second per connection (the burst is `max_frame_bytes`); 0 = no
        /// limit.
        bytes_per_sec: u32 = 64 * 1024, env "CHORUS_BYTES_PER_SEC";
        /// Other frames (`set_name`, `join`, `leave`, `resume`, `ping`, malformed ones) per
        /// second per connection, and the burst; 0 = no limit.
        controls_per_sec: u32 = 5, env "CHORUS_CONTROLS_PER_SEC";
        /// Other frames allowed at once above `controls_per_sec`.
        control_burst: u32 = 30, env "CHORUS_CONTROL_BURST";
        /// Refusals for speed a connection may collect (one is forgiven per second) before it
        /// is closed with 1008.
        rate_limit_strikes: u32 = 10, env "CHORUS_RATE_LIMIT_STRIKES";
        /// New rooms one connection may open per minute (joining rooms that exist is not
        /// counted).
        rooms_created_per_min: u32 = 10, env "CHORUS_ROOMS_CREATED_PER_MIN";
    }

    /// Who users are.
    identity: Identity {
        /// `anonymous` (names first come, first served) or `jwt` (a host application's signed
        /// token names the user; see `server::auth`).
        auth: String => Auth = Auth::Anonymous, env "CHORUS_AUTH";
        /// `HS256` (with `jwt_secret`), `RS256` or `EdDSA` (with `jwt_public_key`, a PEM file).
        jwt_algorithm: String => JwtAlgorithm = JwtAlgorithm::Hs256, env "CHORUS_JWT_ALGORITHM";
        /// The shared secret for `HS256`, at least 32 bytes. Prefer the environment variable to
        /// the flag: a flag shows in the process list.
        jwt_secret: String => Option<String> = None, env "CHORUS_JWT_SECRET";
        /// The public key (a PEM file) for `RS256` and `EdDSA`.
        jwt_public_key: String => Option<String> = None, env "CHORUS_JWT_PUBLIC_KEY";
        /// A secret that makes a connection a moderator (`moderate {token}`): it may mute, kick,
        /// set slow mode and delete any message. At least 16 bytes; unset, only tokens with a
        /// `moderator` claim make moderators. Prefer the environment variable to the flag.
        operator_token: String => Option<String> = None, env "CHORUS_OPERATOR_TOKEN";
    }

    /// Logs, metrics and the status page.
    observe: Observe {
        /// `tracing` filter, e.g. `info` or `chorus=debug,info`; `RUST_LOG` wins when set.
        log: String = "info".to_owned(), env "CHORUS_LOG";
        /// `text` (for people) or `json` (one object a line, for log collectors).
        log_format: String => LogFormat = LogFormat::Text, env "CHORUS_LOG_FORMAT";
        /// Where `GET /metrics` is served: unset, on the main listener; an address (e.g.
        /// `127.0.0.1:9100`), there only, so it need not be public.
        metrics_listen: String => Option<SocketAddr> = None, env "CHORUS_METRICS_LISTEN";
        /// Whether `/status` (the live status page) and `/status.json` are served.
        status_page: bool = true, env "CHORUS_STATUS_PAGE";
        /// Serve them (and the site they need) on this address only, instead of the main
        /// listener.
        status_listen: String => Option<SocketAddr> = None, env "CHORUS_STATUS_LISTEN";
    }
}

/// Loopback and the private networks, where balancers live. (A unit test checks that each
/// parses, so that none is dropped.)
fn default_trusted_proxies() -> Vec<IpNet> {
    [
        "127.0.0.0/8",
        "::1/128",
        "10.0.0.0/8",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "fc00::/7",
    ]
    .iter()
    .filter_map(|net| net.parse().ok())
    .collect()
}

impl Limits {
    /// `send` frames per connection; none when off.
    pub fn send_rate(&self) -> Option<Rate> {
        Rate::new(self.sends_per_sec, self.send_burst)
    }

    /// Frames other than `send` per connection; none when off.
    pub fn control_rate(&self) -> Option<Rate> {
        Rate::new(self.controls_per_sec, self.control_burst)
    }

    /// Refusals for speed: one forgiven a second, `rate_limit_strikes` at most.
    pub fn strike_rate(&self) -> Rate {
        Rate {
            per_sec: 1,
            burst: self.rate_limit_strikes.max(1),
        }
    }
}

impl Redis {
    /// Where Redis is, if the node uses it.
    pub fn target(&self) -> Option<Target> {
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
    pub fn in_use(&self) -> bool {
        self.redis_url.is_some()
            || !self.redis_sentinels.is_empty()
            || !self.redis_cluster.is_empty()
    }
}

impl Observe {
    /// Whether the main listener serves the status page.
    pub fn status_on_main(&self) -> bool {
        self.status_page && self.status_listen.is_none()
    }
}

impl Config {
    /// What each room keeps of its history, and what a joiner is sent.
    pub fn history(&self) -> crate::server::store::HistoryBounds {
        crate::server::store::HistoryBounds {
            size: self.rooms.history_size,
            bytes: self.rooms.history_bytes,
            window: self.rooms.join_history,
        }
    }

    /// Bytes of frames per connection; none when off. Any frame the size limit lets through fits
    /// a full bucket.
    pub fn byte_rate(&self) -> Option<Rate> {
        let frame = u32::try_from(self.conn.max_frame_bytes).unwrap_or(u32::MAX);
        let per_sec = self.limits.bytes_per_sec;
        Rate::new(per_sec, frame.max(per_sec))
    }

    /// Lays the file (if any) and then the command line's layer over the defaults. Layers are
    /// merged key by key first, so only the value that wins is parsed (a bad value that a later
    /// layer replaces is no error).
    pub fn load(cli: Cli) -> Result<Self, ConfigError> {
        let file = match &cli.config {
            Some(path) => Some(read_layer(path)?),
            None => {
                let path = PathBuf::from(DEFAULT_CONFIG_FILE);
                path.exists().then(|| read_layer(&path)).transpose()?
            }
        };
        let mut overrides = cli.overrides;
        if overrides.listen.is_none() {
            overrides.listen = cli.leptos_site_addr;
        }
        let layer = match file {
            Some(file) => overrides.over(file),
            None => overrides,
        };
        let mut config = Config::default();
        config.apply(layer)?;
        config.validate()?;
        Ok(config)
    }

    /// A copy safe to log: passwords in Redis URLs and the JWT secret are masked.
    pub fn redacted(&self) -> Self {
        let mut copy = self.clone();
        for secret in [
            &mut copy.identity.jwt_secret,
            &mut copy.identity.operator_token,
        ] {
            if secret.is_some() {
                *secret = Some("***".to_owned());
            }
        }
        let mask = |url: &mut String| {
            if let Some((scheme, rest)) = url.split_once("://")
                && let Some((_, host)) = rest.rsplit_once('@')
            {
                *url = format!("{scheme}://***@{host}");
            }
        };
        copy.redis.redis_url.iter_mut().for_each(mask);
        copy.redis.redis_cluster.iter_mut().for_each(mask);
        copy
    }
}
