//! Run-time configuration: one typed struct, loaded in layers — built-in defaults, then
//! `Leptos.toml` (or the file named by `--config` / `CHORUS_CONFIG`), then `CHORUS_*` environment
//! variables, then command-line flags.

use super::bus::Target;
use crate::rate::Rate;
use clap::Parser;
use serde::Deserialize;
use std::{net::SocketAddr, path::PathBuf};

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
    pub log_format: String,
    /// Origins (`scheme://host[:port]`) whose pages may open a WebSocket here, besides pages of
    /// the host the request names itself (its `Host` header). `["*"]` allows every origin. A
    /// browser always sends `Origin`; a request without one (a native client) is not checked.
    pub allowed_origins: Vec<String>,
    /// Peers (addresses or networks, e.g. `10.0.0.0/8`) whose `X-Forwarded-For` names the client;
    /// for any other peer the socket's address is the client's.
    pub trusted_proxies: Vec<String>,
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
    pub metrics_listen: Option<String>,
    /// Whether `/status` (the live status page) and `/status.json` are served.
    pub status_page: bool,
    /// Serve them (and the site they need) on this address only, instead of the main listener.
    pub status_listen: Option<String>,
    /// `anonymous` (names first come, first served) or `jwt` (a host application's signed token
    /// names the user; see `server::auth`).
    pub auth: String,
    /// `HS256` (with `jwt_secret`), `RS256` or `EdDSA` (with `jwt_public_key`, a PEM file).
    pub jwt_algorithm: String,
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
            log_format: "text".to_owned(),
            allowed_origins: Vec::new(),
            trusted_proxies: [
                "127.0.0.0/8",
                "::1/128",
                "10.0.0.0/8",
                "172.16.0.0/12",
                "192.168.0.0/16",
                "fc00::/7",
            ]
            .map(str::to_owned)
            .to_vec(),
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
            auth: "anonymous".to_owned(),
            jwt_algorithm: "HS256".to_owned(),
            jwt_secret: None,
            jwt_public_key: None,
        }
    }
}

/// One layer of settings: every key optional. The file is parsed into it, and clap fills it from
/// flags and environment variables (a flag beats its variable).
#[derive(Debug, Default, Clone, Deserialize, clap::Args)]
#[serde(deny_unknown_fields)]
pub struct Layer {
    #[arg(long, env = "CHORUS_LISTEN")]
    pub listen: Option<SocketAddr>,
    #[arg(long, env = "CHORUS_NODE_ID")]
    pub node_id: Option<String>,
    #[arg(long, env = "CHORUS_REDIS_URL")]
    pub redis_url: Option<String>,
    /// Comma-separated on the command line and in the environment.
    #[arg(long, env = "CHORUS_REDIS_SENTINELS", value_delimiter = ',')]
    pub redis_sentinels: Option<Vec<String>>,
    #[arg(long, env = "CHORUS_REDIS_SENTINEL_MASTER")]
    pub redis_sentinel_master: Option<String>,
    /// Comma-separated on the command line and in the environment.
    #[arg(long, env = "CHORUS_REDIS_CLUSTER", value_delimiter = ',')]
    pub redis_cluster: Option<Vec<String>>,
    #[arg(long, env = "CHORUS_REDIS_WAIT_REPLICAS")]
    pub redis_wait_replicas: Option<u32>,
    #[arg(long, env = "CHORUS_REDIS_WAIT_TIMEOUT_MS")]
    pub redis_wait_timeout_ms: Option<u64>,
    #[arg(long, env = "CHORUS_SESSION_TTL_SECS")]
    pub session_ttl_secs: Option<u64>,
    #[arg(long, env = "CHORUS_NODE_TTL_MS")]
    pub node_ttl_ms: Option<u64>,
    #[arg(long, env = "CHORUS_HISTORY_SIZE")]
    pub history_size: Option<usize>,
    #[arg(long, env = "CHORUS_DEDUP_WINDOW")]
    pub dedup_window: Option<usize>,
    #[arg(long, env = "CHORUS_PING_INTERVAL_MS")]
    pub ping_interval_ms: Option<u64>,
    #[arg(long, env = "CHORUS_IDLE_TIMEOUT_MS")]
    pub idle_timeout_ms: Option<u64>,
    #[arg(long, env = "CHORUS_DRAIN_MS")]
    pub drain_ms: Option<u64>,
    #[arg(long, env = "CHORUS_MAX_TEXT_CHARS")]
    pub max_text_chars: Option<usize>,
    #[arg(long, env = "CHORUS_MAX_FRAME_BYTES")]
    pub max_frame_bytes: Option<usize>,
    #[arg(long, env = "CHORUS_OUTBOUND_QUEUE")]
    pub outbound_queue: Option<usize>,
    #[arg(long, env = "CHORUS_MAX_ROOMS_PER_CONNECTION")]
    pub max_rooms_per_connection: Option<usize>,
    #[arg(long, env = "CHORUS_PRESENCE_INTERVAL_MS")]
    pub presence_interval_ms: Option<u64>,
    #[arg(long, env = "CHORUS_MAX_ROOMS")]
    pub max_rooms: Option<usize>,
    #[arg(long, env = "CHORUS_ROOM_IDLE_SECS")]
    pub room_idle_secs: Option<u64>,
    #[arg(long, env = "CHORUS_ROOMS_CREATED_PER_MIN")]
    pub rooms_created_per_min: Option<u32>,
    #[arg(long, env = "CHORUS_SHUTDOWN_GRACE_SECS")]
    pub shutdown_grace_secs: Option<u64>,
    #[arg(long, env = "LEPTOS_SITE_ROOT")]
    pub site_root: Option<String>,
    #[arg(long, env = "CHORUS_LOG")]
    pub log: Option<String>,
    #[arg(long, env = "CHORUS_LOG_FORMAT")]
    pub log_format: Option<String>,
    /// Comma-separated on the command line and in the environment.
    #[arg(long, env = "CHORUS_ALLOWED_ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Option<Vec<String>>,
    #[arg(long, env = "CHORUS_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Option<Vec<String>>,
    #[arg(long, env = "CHORUS_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    #[arg(long, env = "CHORUS_MAX_CONNECTIONS_PER_ADDRESS")]
    pub max_connections_per_address: Option<usize>,
    #[arg(long, env = "CHORUS_CONNECTS_PER_SEC")]
    pub connects_per_sec: Option<u32>,
    #[arg(long, env = "CHORUS_CONNECT_BURST")]
    pub connect_burst: Option<u32>,
    #[arg(long, env = "CHORUS_SENDS_PER_SEC")]
    pub sends_per_sec: Option<u32>,
    #[arg(long, env = "CHORUS_SEND_BURST")]
    pub send_burst: Option<u32>,
    #[arg(long, env = "CHORUS_BYTES_PER_SEC")]
    pub bytes_per_sec: Option<u32>,
    #[arg(long, env = "CHORUS_CONTROLS_PER_SEC")]
    pub controls_per_sec: Option<u32>,
    #[arg(long, env = "CHORUS_CONTROL_BURST")]
    pub control_burst: Option<u32>,
    #[arg(long, env = "CHORUS_RATE_LIMIT_STRIKES")]
    pub rate_limit_strikes: Option<u32>,
    #[arg(long, env = "CHORUS_TLS_CERT")]
    pub tls_cert: Option<String>,
    #[arg(long, env = "CHORUS_TLS_KEY")]
    pub tls_key: Option<String>,
    #[arg(long, env = "CHORUS_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
    #[arg(long, env = "CHORUS_STATUS_PAGE")]
    pub status_page: Option<bool>,
    #[arg(long, env = "CHORUS_STATUS_LISTEN")]
    pub status_listen: Option<String>,
    #[arg(long, env = "CHORUS_AUTH")]
    pub auth: Option<String>,
    #[arg(long, env = "CHORUS_JWT_ALGORITHM")]
    pub jwt_algorithm: Option<String>,
    /// Prefer the environment variable to the flag: a flag shows in the process list.
    #[arg(long, env = "CHORUS_JWT_SECRET")]
    pub jwt_secret: Option<String>,
    #[arg(long, env = "CHORUS_JWT_PUBLIC_KEY")]
    pub jwt_public_key: Option<String>,
}

/// Command line of the `chorus` binary.
#[derive(Debug, Parser)]
#[command(name = "chorus", version, about = "Chorus real-time chat server")]
pub struct Cli {
    /// Configuration file (TOML); defaults to ./Leptos.toml when present.
    #[arg(long, env = "CHORUS_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub overrides: Layer,
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

    /// The separate address for `/metrics`, if one is set.
    pub fn metrics_address(&self) -> Result<Option<SocketAddr>, std::net::AddrParseError> {
        side_address(&self.metrics_listen)
    }

    /// The separate address for the status page, if one is set.
    pub fn status_address(&self) -> Result<Option<SocketAddr>, std::net::AddrParseError> {
        side_address(&self.status_listen)
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
        if let Some(file) = file {
            config.apply(file);
        }
        config.apply(cli.overrides);
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

    /// Lays one layer over this config: every key the layer sets wins.
    pub fn apply(&mut self, layer: Layer) {
        let Layer {
            listen,
            node_id,
            redis_url,
            redis_sentinels,
            redis_sentinel_master,
            redis_cluster,
            redis_wait_replicas,
            redis_wait_timeout_ms,
            session_ttl_secs,
            node_ttl_ms,
            history_size,
            dedup_window,
            ping_interval_ms,
            idle_timeout_ms,
            drain_ms,
            max_text_chars,
            max_frame_bytes,
            outbound_queue,
            max_rooms_per_connection,
            presence_interval_ms,
            max_rooms,
            room_idle_secs,
            rooms_created_per_min,
            shutdown_grace_secs,
            site_root,
            log,
            log_format,
            allowed_origins,
            trusted_proxies,
            max_connections,
            max_connections_per_address,
            connects_per_sec,
            connect_burst,
            sends_per_sec,
            send_burst,
            bytes_per_sec,
            controls_per_sec,
            control_burst,
            rate_limit_strikes,
            tls_cert,
            tls_key,
            metrics_listen,
            status_page,
            status_listen,
            auth,
            jwt_algorithm,
            jwt_secret,
            jwt_public_key,
        } = layer;
        set(&mut self.listen, listen);
        if node_id.is_some() {
            self.node_id = node_id;
        }
        // An empty value in the environment means an empty list, not one empty entry.
        let list = |v: Option<Vec<String>>| {
            v.map(|v| v.into_iter().filter(|s| !s.trim().is_empty()).collect())
        };
        // An empty value switches Redis off again (e.g. an env var over a file), Sentinel too.
        set_or_clear(&mut self.redis_url, redis_url);
        set(&mut self.redis_sentinels, list(redis_sentinels));
        set(&mut self.redis_sentinel_master, redis_sentinel_master);
        set(&mut self.redis_cluster, list(redis_cluster));
        set(&mut self.redis_wait_replicas, redis_wait_replicas);
        set(&mut self.redis_wait_timeout_ms, redis_wait_timeout_ms);
        set(&mut self.session_ttl_secs, session_ttl_secs);
        set(&mut self.node_ttl_ms, node_ttl_ms);
        set(&mut self.history_size, history_size);
        set(&mut self.dedup_window, dedup_window);
        set(&mut self.ping_interval_ms, ping_interval_ms);
        set(&mut self.idle_timeout_ms, idle_timeout_ms);
        set(&mut self.drain_ms, drain_ms);
        set(&mut self.max_text_chars, max_text_chars);
        set(&mut self.max_frame_bytes, max_frame_bytes);
        set(&mut self.outbound_queue, outbound_queue);
        set(&mut self.max_rooms_per_connection, max_rooms_per_connection);
        set(&mut self.presence_interval_ms, presence_interval_ms);
        set(&mut self.max_rooms, max_rooms);
        set(&mut self.room_idle_secs, room_idle_secs);
        set(&mut self.rooms_created_per_min, rooms_created_per_min);
        set(&mut self.shutdown_grace_secs, shutdown_grace_secs);
        set(&mut self.site_root, site_root);
        set(&mut self.log, log);
        set(&mut self.log_format, log_format);
        set(&mut self.allowed_origins, list(allowed_origins));
        set(&mut self.trusted_proxies, list(trusted_proxies));
        set(&mut self.max_connections, max_connections);
        set(
            &mut self.max_connections_per_address,
            max_connections_per_address,
        );
        set(&mut self.connects_per_sec, connects_per_sec);
        set(&mut self.connect_burst, connect_burst);
        set(&mut self.sends_per_sec, sends_per_sec);
        set(&mut self.send_burst, send_burst);
        set(&mut self.bytes_per_sec, bytes_per_sec);
        set(&mut self.controls_per_sec, controls_per_sec);
        set(&mut self.control_burst, control_burst);
        set(&mut self.rate_limit_strikes, rate_limit_strikes);
        set_or_clear(&mut self.tls_cert, tls_cert);
        set_or_clear(&mut self.tls_key, tls_key);
        set_or_clear(&mut self.metrics_listen, metrics_listen);
        set(&mut self.status_page, status_page);
        set_or_clear(&mut self.status_listen, status_listen);
        set(&mut self.auth, auth);
        set(&mut self.jwt_algorithm, jwt_algorithm);
        set_or_clear(&mut self.jwt_secret, jwt_secret);
        set_or_clear(&mut self.jwt_public_key, jwt_public_key);
    }

    /// Rejects values the server cannot run with, naming the key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let check = |ok: bool, key: &'static str, why: &str| {
            if ok {
                Ok(())
            } else {
                Err(ConfigError::Invalid {
                    key,
                    why: why.to_owned(),
                })
            }
        };
        check(self.history_size <= 10_000, "history_size", "at most 10000")?;
        check(
            self.dedup_window <= 100_000,
            "dedup_window",
            "at most 100000",
        )?;
        check(
            (100..=600_000).contains(&self.ping_interval_ms),
            "ping_interval_ms",
            "between 100 and 600000",
        )?;
        check(
            self.idle_timeout_ms > self.ping_interval_ms && self.idle_timeout_ms <= 3_600_000,
            "idle_timeout_ms",
            "more than ping_interval_ms (a live peer answers each ping) and at most 3600000",
        )?;
        check(self.drain_ms <= 600_000, "drain_ms", "at most 600000")?;
        check(
            (1..=100_000).contains(&self.max_text_chars),
            "max_text_chars",
            "between 1 and 100000",
        )?;
        // A frame must fit the longest text, even if every character takes 4 bytes of UTF-8.
        check(
            self.max_frame_bytes >= self.max_text_chars * 4 + 1024,
            "max_frame_bytes",
            "at least 4 * max_text_chars + 1024, so the longest text fits",
        )?;
        check(self.outbound_queue >= 8, "outbound_queue", "at least 8")?;
        check(
            self.max_rooms_per_connection >= 1,
            "max_rooms_per_connection",
            "at least 1",
        )?;
        check(self.max_rooms >= 1, "max_rooms", "at least 1")?;
        check(
            (1..=366 * 24 * 3600).contains(&self.room_idle_secs),
            "room_idle_secs",
            "between 1 and 31622400 (a year)",
        )?;
        check(
            self.presence_interval_ms <= 60_000,
            "presence_interval_ms",
            "at most 60000",
        )?;
        if let Some(id) = &self.node_id {
            check(
                !id.is_empty()
                    && id.len() <= 64
                    && id
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)),
                "node_id",
                "1 to 64 of A-Z a-z 0-9 - _ .",
            )?;
        }
        if let Some(url) = &self.redis_url {
            check(
                url.starts_with("redis://") || url.starts_with("unix://"),
                "redis_url",
                "a redis:// or unix:// URL",
            )?;
            check(
                self.redis_sentinels.is_empty(),
                "redis_sentinels",
                "not together with redis_url (Sentinel names the master's address)",
            )?;
        }
        check(
            self.redis_cluster.is_empty()
                || (self.redis_url.is_none() && self.redis_sentinels.is_empty()),
            "redis_cluster",
            "not together with redis_url or redis_sentinels (one way to reach Redis)",
        )?;
        for node in &self.redis_cluster {
            let address = node.strip_prefix("redis://").unwrap_or(node);
            let address = address.rsplit_once('@').map_or(address, |(_, a)| a);
            let address = address.trim_end_matches('/');
            check(
                (node.starts_with("redis://") || !node.contains("://")) && is_host_port(address),
                "redis_cluster",
                "host:port (or redis://user:password@host:port) of each node, e.g. 10.0.0.5:7000",
            )?;
        }
        for sentinel in &self.redis_sentinels {
            check(
                is_host_port(sentinel),
                "redis_sentinels",
                "host:port of each sentinel, e.g. 10.0.0.5:26379",
            )?;
        }
        check(
            !self.redis_sentinel_master.is_empty(),
            "redis_sentinel_master",
            "the master's name in the sentinels' configuration",
        )?;
        check(
            (1..=10_000).contains(&self.redis_wait_timeout_ms),
            "redis_wait_timeout_ms",
            "between 1 and 10000",
        )?;
        check(
            self.redis_wait_replicas == 0 || self.uses_redis(),
            "redis_wait_replicas",
            "only with Redis (redis_url, redis_sentinels or redis_cluster)",
        )?;
        check(
            (1..=86_400).contains(&self.session_ttl_secs),
            "session_ttl_secs",
            "between 1 and 86400",
        )?;
        check(
            (400..=600_000).contains(&self.node_ttl_ms),
            "node_ttl_ms",
            "between 400 and 600000",
        )?;
        for origin in &self.allowed_origins {
            check(
                origin == "*" || super::net::parse_origin(origin).is_some(),
                "allowed_origins",
                "\"*\" or origins like https://chat.example.com (scheme, host, optional port)",
            )?;
        }
        for proxy in &self.trusted_proxies {
            check(
                super::net::parse_network(proxy).is_some(),
                "trusted_proxies",
                "addresses or networks, like 10.0.0.7 or 10.0.0.0/8",
            )?;
        }
        for (key, rate, burst) in [
            ("connect_burst", self.connects_per_sec, self.connect_burst),
            ("send_burst", self.sends_per_sec, self.send_burst),
            ("control_burst", self.controls_per_sec, self.control_burst),
        ] {
            check(
                rate == 0 || burst >= 1,
                key,
                "at least 1 while its rate is set",
            )?;
        }
        check(
            self.rate_limit_strikes >= 1,
            "rate_limit_strikes",
            "at least 1",
        )?;
        check(
            self.log_format == "text" || self.log_format == "json",
            "log_format",
            "text or json",
        )?;
        check(
            self.metrics_address().is_ok(),
            "metrics_listen",
            "an address and port, e.g. 127.0.0.1:9100",
        )?;
        check(
            self.status_address().is_ok(),
            "status_listen",
            "an address and port, e.g. 127.0.0.1:9101",
        )?;
        check(
            self.tls_cert.is_some() == self.tls_key.is_some(),
            "tls_cert",
            "set together with tls_key (or neither)",
        )?;
        check(
            self.auth == "anonymous" || self.auth == "jwt",
            "auth",
            "anonymous or jwt",
        )?;
        if self.auth == "jwt" {
            check(
                ["HS256", "RS256", "EdDSA"].contains(&self.jwt_algorithm.as_str()),
                "jwt_algorithm",
                "HS256, RS256 or EdDSA",
            )?;
            if self.jwt_algorithm == "HS256" {
                check(
                    self.jwt_secret.as_ref().is_some_and(|s| s.len() >= 32),
                    "jwt_secret",
                    "at least 32 bytes with HS256 (a shorter shared secret can be guessed)",
                )?;
            } else {
                check(
                    self.jwt_public_key.is_some(),
                    "jwt_public_key",
                    "a PEM file with the public key, with RS256 and EdDSA",
                )?;
            }
        }
        Ok(())
    }
}

/// `host:port` with a host and a port number (the host may be a name or an address).
fn is_host_port(address: &str) -> bool {
    address
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok())
}

/// An address set beside the main listener (`metrics_listen`, `status_listen`), if any.
fn side_address(setting: &Option<String>) -> Result<Option<SocketAddr>, std::net::AddrParseError> {
    setting.as_deref().map(str::parse).transpose()
}

/// For optional text settings: a set value wins, and an empty one unsets the setting (e.g. an
/// environment variable switching off what the file set).
fn set_or_clear(slot: &mut Option<String>, value: Option<String>) {
    if let Some(v) = value {
        *slot = (!v.is_empty()).then_some(v);
    }
}

fn set<T>(slot: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *slot = v;
    }
}

fn read_layer(path: &PathBuf) -> Result<Layer, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.clone(),
        source,
    })?;
    toml::from_str(&text).map_err(|source| ConfigError::Parse {
        path: path.clone(),
        source: Box::new(source),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn later_layers_win_key_by_key() {
        let mut config = Config::default();
        let file: Layer = toml::from_str("history_size = 5\nmax_text_chars = 100").expect("parses");
        config.apply(file);
        config.apply(Layer {
            history_size: Some(7),
            ..Layer::default()
        });
        assert_eq!(config.history_size, 7);
        assert_eq!(config.max_text_chars, 100);
        assert_eq!(config.outbound_queue, Config::default().outbound_queue);
    }

    #[test]
    fn the_shipped_leptos_toml_parses_and_is_valid() {
        let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(DEFAULT_CONFIG_FILE);
        let mut config = Config::default();
        config.apply(read_layer(&path).expect("Leptos.toml parses"));
        config.validate().expect("Leptos.toml is valid");
    }

    #[test]
    fn the_logged_config_hides_the_redis_password() {
        let config = Config {
            redis_url: Some("redis://user:s3cret@db:6379/0".into()),
            ..Config::default()
        };
        let shown = format!("{:?}", config.redacted());
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("db:6379/0"), "{shown}");
    }

    #[test]
    fn an_idle_timeout_shorter_than_the_ping_interval_is_refused() {
        let config = Config {
            ping_interval_ms: 30_000,
            idle_timeout_ms: 20_000,
            ..Config::default()
        };
        assert!(matches!(
            config.validate(),
            Err(ConfigError::Invalid {
                key: "idle_timeout_ms",
                ..
            })
        ));
    }

    #[test]
    fn a_misspelt_key_is_an_error_not_a_silent_default() {
        assert!(toml::from_str::<Layer>("histroy_size = 5").is_err());
    }

    #[test]
    fn a_frame_limit_too_small_for_the_text_limit_is_refused() {
        let config = Config {
            max_frame_bytes: 1000,
            ..Config::default()
        };
        assert!(matches!(
            config.validate(),
            Err(ConfigError::Invalid {
                key: "max_frame_bytes",
                ..
            })
        ));
    }

    #[test]
    fn signed_identity_needs_a_strong_secret_or_a_public_key() {
        let jwt = |tweak: fn(&mut Config)| {
            let mut config = Config {
                auth: "jwt".into(),
                ..Config::default()
            };
            tweak(&mut config);
            config.validate().map_err(|e| match e {
                ConfigError::Invalid { key, .. } => key,
                other => panic!("{other}"),
            })
        };
        assert_eq!(jwt(|_| {}), Err("jwt_secret"));
        assert_eq!(
            jwt(|c| c.jwt_secret = Some("short".into())),
            Err("jwt_secret")
        );
        assert_eq!(jwt(|c| c.jwt_secret = Some("x".repeat(32))), Ok(()));
        assert_eq!(
            jwt(|c| c.jwt_algorithm = "EdDSA".into()),
            Err("jwt_public_key")
        );
        assert_eq!(
            jwt(|c| c.jwt_algorithm = "none".into()),
            Err("jwt_algorithm")
        );
        let config = Config {
            jwt_secret: Some("x".repeat(40)),
            ..Config::default()
        };
        assert!(!format!("{:?}", config.redacted()).contains(&"x".repeat(40)));
    }

    /// The key `validate` names after `tweak` is applied to a copy of `config`.
    fn invalid_key(config: &Config, tweak: fn(&mut Config)) -> &'static str {
        let mut c = config.clone();
        tweak(&mut c);
        match c.validate() {
            Err(ConfigError::Invalid { key, .. }) => key,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn cluster_settings_name_the_target_and_are_checked() {
        let mut config = Config::default();
        let file: Layer = toml::from_str(
            "redis_cluster = [\"10.0.0.5:7000\", \"redis://chat:hunter2@10.0.0.6:7001\"]",
        )
        .expect("parses");
        config.apply(file);
        config.validate().expect("valid");
        assert!(config.uses_redis());
        assert_eq!(
            config.redis_target(),
            Some(Target::Cluster {
                nodes: vec![
                    "10.0.0.5:7000".into(),
                    "redis://chat:hunter2@10.0.0.6:7001".into()
                ],
            })
        );
        assert!(!format!("{:?}", config.redacted()).contains("hunter2"));
        let invalid = |tweak: fn(&mut Config)| invalid_key(&config, tweak);
        assert_eq!(
            invalid(|c| c.redis_url = Some("redis://db/".into())),
            "redis_cluster"
        );
        assert_eq!(
            invalid(|c| c.redis_sentinels = vec!["s:26379".into()]),
            "redis_cluster"
        );
        assert_eq!(
            invalid(|c| c.redis_cluster = vec!["no-port".into()]),
            "redis_cluster"
        );
        assert_eq!(
            invalid(|c| c.redis_cluster = vec!["unix:///tmp/redis.sock".into()]),
            "redis_cluster"
        );
    }

    #[test]
    fn sentinel_settings_name_the_target_and_are_checked() {
        let mut config = Config::default();
        let file: Layer = toml::from_str(
            "redis_sentinels = [\"10.0.0.5:26379\", \"sentinel-b:26379\"]\nredis_sentinel_master = \"chat\"",
        )
        .expect("parses");
        config.apply(file);
        config.validate().expect("valid");
        assert_eq!(
            config.redis_target(),
            Some(Target::Sentinel {
                sentinels: vec!["10.0.0.5:26379".into(), "sentinel-b:26379".into()],
                master: "chat".into(),
            })
        );
        let invalid = |tweak: fn(&mut Config)| invalid_key(&config, tweak);
        assert_eq!(
            invalid(|c| c.redis_url = Some("redis://db/".into())),
            "redis_sentinels"
        );
        assert_eq!(
            invalid(|c| c.redis_sentinels = vec!["no-port".into()]),
            "redis_sentinels"
        );
        assert_eq!(
            invalid(|c| c.redis_wait_timeout_ms = 0),
            "redis_wait_timeout_ms"
        );
        // WAIT needs Redis; an empty list switches Sentinel off again.
        config.apply(Layer {
            redis_sentinels: Some(vec![String::new()]),
            redis_wait_replicas: Some(1),
            ..Layer::default()
        });
        assert_eq!(config.redis_target(), None);
        assert!(matches!(
            config.validate(),
            Err(ConfigError::Invalid {
                key: "redis_wait_replicas",
                ..
            })
        ));
    }

    #[test]
    fn an_empty_value_unsets_an_optional_text_setting() {
        let mut config = Config::default();
        config.apply(Layer {
            redis_url: Some("redis://db/".into()),
            tls_cert: Some("cert.pem".into()),
            ..Layer::default()
        });
        assert_eq!(config.tls_cert.as_deref(), Some("cert.pem"));
        config.apply(Layer {
            redis_url: Some(String::new()),
            tls_cert: Some(String::new()),
            ..Layer::default()
        });
        assert_eq!((config.redis_url, config.tls_cert), (None, None));
    }
}
