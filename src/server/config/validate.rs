//! What the server cannot run with, refused at load with the key named.

use super::{Auth, Config, ConfigError, JwtAlgorithm};
use std::time::Duration;

const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

const fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

impl Config {
    /// Rejects values the server cannot run with, naming the key. (Values that do not even
    /// parse were refused when their layer was applied.)
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
        check(
            self.rooms.history_size <= 1_000_000,
            "history_size",
            "at most 1000000",
        )?;
        check(
            (64 * 1024..=1 << 30).contains(&self.rooms.history_bytes),
            "history_bytes",
            "between 65536 and 1073741824",
        )?;
        check(
            self.rooms.join_history <= 1000,
            "join_history",
            "at most 1000",
        )?;
        check(
            self.rooms.dedup_window <= 100_000,
            "dedup_window",
            "at most 100000",
        )?;
        check(
            (ms(100)..=ms(600_000)).contains(&self.conn.ping_interval_ms),
            "ping_interval_ms",
            "between 100 and 600000",
        )?;
        check(
            self.conn.idle_timeout_ms > self.conn.ping_interval_ms
                && self.conn.idle_timeout_ms <= ms(3_600_000),
            "idle_timeout_ms",
            "more than ping_interval_ms (a live peer answers each ping) and at most 3600000",
        )?;
        check(
            self.node.drain_ms <= ms(600_000),
            "drain_ms",
            "at most 600000",
        )?;
        check(
            (1..=100_000).contains(&self.conn.max_text_chars),
            "max_text_chars",
            "between 1 and 100000",
        )?;
        // A frame must fit the longest text, even if every character takes 4 bytes of UTF-8.
        check(
            self.conn.max_frame_bytes >= self.conn.max_text_chars * 4 + 1024,
            "max_frame_bytes",
            "at least 4 * max_text_chars + 1024, so the longest text fits",
        )?;
        check(
            self.conn.outbound_queue >= 8,
            "outbound_queue",
            "at least 8",
        )?;
        check(
            self.conn.outbound_queue_bytes >= 64 * 1024,
            "outbound_queue_bytes",
            "at least 65536",
        )?;
        check(
            self.conn.max_rooms_per_connection >= 1,
            "max_rooms_per_connection",
            "at least 1",
        )?;
        check(self.rooms.max_rooms >= 1, "max_rooms", "at least 1")?;
        check(
            (1..=10_000).contains(&self.rooms.presence_list_max),
            "presence_list_max",
            "between 1 and 10000",
        )?;
        check(
            (secs(1)..=secs(366 * 24 * 3600)).contains(&self.rooms.room_idle_secs),
            "room_idle_secs",
            "between 1 and 31622400 (a year)",
        )?;
        check(
            self.rooms.presence_interval_ms <= ms(60_000),
            "presence_interval_ms",
            "at most 60000",
        )?;
        if let Some(id) = &self.node.node_id {
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
        if let Some(url) = &self.redis.redis_url {
            check(
                url.starts_with("redis://") || url.starts_with("unix://"),
                "redis_url",
                "a redis:// or unix:// URL",
            )?;
            check(
                self.redis.redis_sentinels.is_empty(),
                "redis_sentinels",
                "not together with redis_url (Sentinel names the master's address)",
            )?;
        }
        check(
            self.redis.redis_cluster.is_empty()
                || (self.redis.redis_url.is_none() && self.redis.redis_sentinels.is_empty()),
            "redis_cluster",
            "not together with redis_url or redis_sentinels (one way to reach Redis)",
        )?;
        for node in &self.redis.redis_cluster {
            let address = node.strip_prefix("redis://").unwrap_or(node);
            let address = address.rsplit_once('@').map_or(address, |(_, a)| a);
            let address = address.trim_end_matches('/');
            check(
                (node.starts_with("redis://") || !node.contains("://")) && is_host_port(address),
                "redis_cluster",
                "host:port (or redis://user:password@host:port) of each node, e.g. 10.0.0.5:7000",
            )?;
        }
        for sentinel in &self.redis.redis_sentinels {
            check(
                is_host_port(sentinel),
                "redis_sentinels",
                "host:port of each sentinel, e.g. 10.0.0.5:26379",
            )?;
        }
        check(
            !self.redis.redis_sentinel_master.is_empty(),
            "redis_sentinel_master",
            "the master's name in the sentinels' configuration",
        )?;
        check(
            (ms(1)..=ms(10_000)).contains(&self.redis.redis_wait_timeout_ms),
            "redis_wait_timeout_ms",
            "between 1 and 10000",
        )?;
        check(
            self.redis.redis_wait_replicas == 0 || self.redis.in_use(),
            "redis_wait_replicas",
            "only with Redis (redis_url, redis_sentinels or redis_cluster)",
        )?;
        check(
            (secs(1)..=secs(86_400)).contains(&self.rooms.session_ttl_secs),
            "session_ttl_secs",
            "between 1 and 86400",
        )?;
        check(
            self.rooms.leave_grace_ms <= self.rooms.session_ttl_secs
                && self.rooms.leave_grace_ms <= ms(600_000),
            "leave_grace_ms",
            "at most 600000 and at most session_ttl_secs (a member is not kept longer than its session)",
        )?;
        check(
            (ms(400)..=ms(600_000)).contains(&self.redis.node_ttl_ms),
            "node_ttl_ms",
            "between 400 and 600000",
        )?;
        for (key, rate, burst) in [
            (
                "connect_burst",
                self.limits.connects_per_sec,
                self.limits.connect_burst,
            ),
            (
                "send_burst",
                self.limits.sends_per_sec,
                self.limits.send_burst,
            ),
            (
                "control_burst",
                self.limits.controls_per_sec,
                self.limits.control_burst,
            ),
        ] {
            check(
                rate == 0 || burst >= 1,
                key,
                "at least 1 while its rate is set",
            )?;
        }
        check(
            self.limits.rate_limit_strikes >= 1,
            "rate_limit_strikes",
            "at least 1",
        )?;
        check(
            self.node.tls_cert.is_some() == self.node.tls_key.is_some(),
            "tls_cert",
            "set together with tls_key (or neither)",
        )?;
        check(
            self.identity
                .operator_token
                .as_ref()
                .is_none_or(|t| t.len() >= 16),
            "operator_token",
            "at least 16 bytes (a shorter one can be guessed)",
        )?;
        if self.identity.auth == Auth::Jwt {
            if self.identity.jwt_algorithm == JwtAlgorithm::Hs256 {
                check(
                    self.identity
                        .jwt_secret
                        .as_ref()
                        .is_some_and(|s| s.len() >= 32),
                    "jwt_secret",
                    "at least 32 bytes with HS256 (a shorter shared secret can be guessed)",
                )?;
            } else {
                check(
                    self.identity.jwt_public_key.is_some(),
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
