//! One layer of settings (the file's, or the command line's with the environment) and how it is
//! laid over the settings below it.

use super::{
    AllowedOrigin, Auth, Config, ConfigError, JwtAlgorithm, LogFormat, parse_proxy,
    values::{Wanted, parse_address},
};
use clap::Parser;
use serde::Deserialize;
use std::{net::SocketAddr, path::PathBuf};

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

impl Layer {
    /// Hands the values `Config::apply` parses to `later`, unless `later` sets them itself, so
    /// that only the value that wins is parsed.
    pub(super) fn defer_parsed(&mut self, later: &mut Layer) {
        fn defer<T>(earlier: &mut Option<T>, later: &mut Option<T>) {
            let value = earlier.take();
            if later.is_none() {
                *later = value;
            }
        }
        defer(&mut self.log_format, &mut later.log_format);
        defer(&mut self.allowed_origins, &mut later.allowed_origins);
        defer(&mut self.trusted_proxies, &mut later.trusted_proxies);
        defer(&mut self.metrics_listen, &mut later.metrics_listen);
        defer(&mut self.status_listen, &mut later.status_listen);
        defer(&mut self.auth, &mut later.auth);
        defer(&mut self.jwt_algorithm, &mut later.jwt_algorithm);
    }
}

impl Config {
    /// Lays one layer over this config: every key the layer sets wins. Values that are not
    /// plain numbers or text are parsed here, once; one that does not parse is refused, naming
    /// its key.
    pub fn apply(&mut self, layer: Layer) -> Result<(), ConfigError> {
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
        set(
            &mut self.log_format,
            parse_one("log_format", log_format, LogFormat::parse)?,
        );
        set(
            &mut self.allowed_origins,
            parse_each(
                "allowed_origins",
                list(allowed_origins),
                AllowedOrigin::parse,
            )?,
        );
        set(
            &mut self.trusted_proxies,
            parse_each("trusted_proxies", list(trusted_proxies), parse_proxy)?,
        );
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
        let example = "an address and port, e.g. 127.0.0.1:9100";
        // An empty value unsets these (parsed as `None`).
        set(
            &mut self.metrics_listen,
            parse_one("metrics_listen", metrics_listen, |s| {
                nonempty(s, |s| parse_address(s, example))
            })?,
        );
        set(&mut self.status_page, status_page);
        let example = "an address and port, e.g. 127.0.0.1:9101";
        set(
            &mut self.status_listen,
            parse_one("status_listen", status_listen, |s| {
                nonempty(s, |s| parse_address(s, example))
            })?,
        );
        set(&mut self.auth, parse_one("auth", auth, Auth::parse)?);
        match parse_one("jwt_algorithm", jwt_algorithm, JwtAlgorithm::parse) {
            Ok(algorithm) => set(&mut self.jwt_algorithm, algorithm),
            // Not used without signed identity, and never checked there.
            Err(_) if self.auth == Auth::Anonymous => {}
            Err(e) => return Err(e),
        }
        set_or_clear(&mut self.jwt_secret, jwt_secret);
        set_or_clear(&mut self.jwt_public_key, jwt_public_key);
        Ok(())
    }
}

/// For optional text settings: a set value wins, and an empty one unsets the setting (e.g. an
/// environment variable switching off what the file set).
fn set_or_clear(slot: &mut Option<String>, value: Option<String>) {
    if let Some(v) = value {
        *slot = (!v.is_empty()).then_some(v);
    }
}

/// Empty text as `None` (unset), anything else parsed.
fn nonempty<T>(s: &str, parse: impl Fn(&str) -> Result<T, Wanted>) -> Result<Option<T>, Wanted> {
    if s.is_empty() {
        Ok(None)
    } else {
        parse(s).map(Some)
    }
}

/// The layer's value of `key`, if set, parsed.
fn parse_one<T>(
    key: &'static str,
    value: Option<String>,
    parse: impl Fn(&str) -> Result<T, Wanted>,
) -> Result<Option<T>, ConfigError> {
    value
        .map(|v| parse(&v).map_err(|why| invalid(key, why)))
        .transpose()
}

/// The layer's list for `key`, if set, each entry parsed.
fn parse_each<T>(
    key: &'static str,
    values: Option<Vec<String>>,
    parse: impl Fn(&str) -> Result<T, Wanted>,
) -> Result<Option<Vec<T>>, ConfigError> {
    values
        .map(|v| {
            v.iter()
                .map(|s| parse(s).map_err(|why| invalid(key, why)))
                .collect()
        })
        .transpose()
}

fn invalid(key: &'static str, why: Wanted) -> ConfigError {
    ConfigError::Invalid {
        key,
        why: why.to_owned(),
    }
}

fn set<T>(slot: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *slot = v;
    }
}

pub(super) fn read_layer(path: &PathBuf) -> Result<Layer, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.clone(),
        source,
    })?;
    toml::from_str(&text).map_err(|source| ConfigError::Parse {
        path: path.clone(),
        source: Box::new(source),
    })
}
