//! Many-node harness: a real redis-server, `chorus` node processes and nginx, each on a free
//! loopback port, each killed when dropped.

use super::{Client, Endpoint, PATIENCE, free_port, wait_listening, wait_ready};
use chorus::protocol::ServerMsg;
use std::{
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

const BIN: &str = env!("CARGO_BIN_EXE_chorus");

/// A scratch directory removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(what: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "chorus-test-{what}-{}-{:x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&dir).expect("create a scratch directory");
        Self(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Starts a helper server with its output discarded; `what` says what failed to start.
fn spawn_quiet(cmd: &mut Command, what: &str) -> Child {
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{what} does not start ({e}); scripts/setup.sh installs it"))
}

fn stop(child: &mut Option<Child>) {
    if let Some(mut c) = child.take() {
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// redis-server with an append-only file fsynced on every write, so a restart keeps the data.
pub struct Redis {
    pub port: u16,
    dir: Scratch,
    extra: Vec<String>,
    child: Option<Child>,
}

impl Redis {
    pub fn start() -> Self {
        Self::start_with(Vec::new())
    }

    /// A replica of `master`, following it from the start.
    pub fn start_replica_of(master: &Redis) -> Self {
        Self::start_with(vec![
            "--replicaof".into(),
            "127.0.0.1".into(),
            master.port.to_string(),
        ])
    }

    fn start_with(extra: Vec<String>) -> Self {
        let mut redis = Self::new(extra);
        redis.restart();
        redis
    }

    /// A server not started yet.
    fn new(extra: Vec<String>) -> Self {
        Self {
            port: free_port(),
            dir: Scratch::new("redis"),
            extra,
            child: None,
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Kills the server (SIGKILL: no goodbye to its clients).
    pub fn kill(&mut self) {
        stop(&mut self.child);
    }

    /// Starts it (again) on the same port and data directory.
    pub fn restart(&mut self) {
        stop(&mut self.child);
        let port = self.port.to_string();
        let child = spawn_quiet(
            Command::new("redis-server")
                .args(["--port", &port, "--bind", "127.0.0.1", "--save", ""])
                .args(["--appendonly", "yes", "--appendfsync", "always"])
                .arg("--dir")
                .arg(&self.dir.0)
                .args(&self.extra),
            "redis-server",
        );
        self.child = Some(child);
        wait_listening(self.port);
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// Where nodes find Redis: the command-line settings that say so.
pub trait Backing {
    fn node_args(&self) -> Vec<String>;
}

impl Backing for Redis {
    fn node_args(&self) -> Vec<String> {
        vec!["--redis-url".into(), self.url()]
    }
}

/// Asks the Redis server on `port`; None if it does not answer.
pub fn ask<T: redis::FromRedisValue>(port: u16, cmd: &redis::Cmd) -> Option<T> {
    let client = redis::Client::open(format!("redis://127.0.0.1:{port}/")).ok()?;
    let mut conn = client
        .get_connection_with_timeout(Duration::from_millis(500))
        .ok()?;
    cmd.query(&mut conn).ok()
}

/// Polls `check` every 100 ms until it holds; panics after `within`.
pub fn wait_until(what: &str, within: Duration, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + within;
    while !check() {
        assert!(Instant::now() < deadline, "{what}: not within {within:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Sends `text` to `room` until it is acknowledged, waiting out refusals while the cluster
/// fails over (Sentinel or a cluster's replica taking over). Returns how many times it was refused.
pub async fn send_until_acked(
    client: &mut Client,
    room: &str,
    text: &str,
    deadline: Instant,
) -> u32 {
    let mut refused = 0;
    loop {
        client.say(room, text, text).await;
        let answer = client
            .recv_until(|m| matches!(m, ServerMsg::Ack { .. } | ServerMsg::Error { .. }))
            .await;
        match answer {
            ServerMsg::Ack { client_id, .. } if client_id.as_deref() == Some(text) => {
                return refused;
            }
            ServerMsg::Ack { .. } => continue,
            other => {
                refused += 1;
                assert!(
                    Instant::now() < deadline,
                    "{text} still refused after the failover: {other:?}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// The counting check after a failover: each of the acknowledged messages `m0`…`m{n-1}` is in
/// the room's `history` exactly once, and no `seq` was given twice.
pub fn assert_stored_once(history: &[chorus::protocol::ChatMessage], n: usize) {
    let lost: Vec<String> = (0..n)
        .map(|i| format!("m{i}"))
        .filter(|text| history.iter().filter(|m| &m.text == text).count() != 1)
        .collect();
    assert!(
        lost.is_empty(),
        "acknowledged but lost or stored twice: {lost:?}"
    );
    let seqs: Vec<u64> = history.iter().map(|m| m.seq).collect();
    assert!(
        seqs.windows(2).all(|w| w[1] > w[0]),
        "no seq given twice: {seqs:?}"
    );
}

/// A Redis Cluster on loopback: `masters` masters with `replicas` replicas each, joined by
/// `redis-cli --cluster create`. A node counts as failed after 1 s without an answer, so a
/// replica takes over from a killed master within a few seconds.
pub struct RedisCluster {
    pub servers: Vec<Redis>,
}

impl RedisCluster {
    pub fn start(masters: usize, replicas: usize) -> Self {
        let servers: Vec<Redis> = (0..masters * (1 + replicas))
            .map(|_| {
                // The cluster bus port is the client port + 10000 unless set, which is out of
                // range for half of the ports `free_port` may give.
                let bus = format!("--cluster-port {}", free_port());
                Redis::start_with(
                    [
                        "--cluster-enabled yes",
                        "--cluster-config-file nodes.conf",
                        "--cluster-node-timeout 1000",
                        // A replica takes over however long it was cut off from its master.
                        "--cluster-replica-validity-factor 0",
                        &bus,
                    ]
                    .iter()
                    .flat_map(|kv| kv.split(' ').map(str::to_owned))
                    .collect(),
                )
            })
            .collect();
        let made = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(servers.iter().map(|s| format!("127.0.0.1:{}", s.port)))
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("redis-cli runs; scripts/setup.sh installs it");
        assert!(made.success(), "redis-cli --cluster create failed");
        let cluster = Self { servers };
        wait_until("the cluster is up", PATIENCE * 2, || {
            cluster.servers.iter().all(|s| {
                ask::<String>(s.port, redis::cmd("CLUSTER").arg("INFO"))
                    .is_some_and(|info| info.contains("cluster_state:ok"))
                    && ask::<String>(s.port, redis::cmd("INFO").arg("replication")).is_some_and(
                        |info| {
                            info.contains("role:master") || info.contains("master_link_status:up")
                        },
                    )
            })
        });
        cluster
    }

    /// The servers that are masters now, by index.
    pub fn masters(&self) -> Vec<usize> {
        (0..self.servers.len())
            .filter(|&i| {
                ask::<String>(self.servers[i].port, redis::cmd("INFO").arg("replication"))
                    .is_some_and(|info| info.contains("role:master"))
            })
            .collect()
    }

    /// The index of the server that is master of `key`'s slot, as a live server sees it.
    pub fn master_of(&self, key: &str) -> Option<usize> {
        let live = self
            .servers
            .iter()
            .find(|s| ask::<String>(s.port, &redis::cmd("PING")).is_some())?;
        let slot: i64 = ask(live.port, redis::cmd("CLUSTER").arg("KEYSLOT").arg(key))?;
        let ranges: Vec<redis::Value> = ask(live.port, redis::cmd("CLUSTER").arg("SLOTS"))?;
        let port = ranges.iter().find_map(|range| {
            let redis::Value::Array(fields) = range else {
                return None;
            };
            let (Some(redis::Value::Int(start)), Some(redis::Value::Int(end))) =
                (fields.first(), fields.get(1))
            else {
                return None;
            };
            let Some(redis::Value::Array(master)) = fields.get(2) else {
                return None;
            };
            match master.get(1) {
                Some(redis::Value::Int(port)) if (*start..=*end).contains(&slot) => Some(*port),
                _ => None,
            }
        })?;
        self.servers.iter().position(|s| i64::from(s.port) == port)
    }

    /// A room on the master `master` (by index): the first of `lobby-0`, `lobby-1`, … whose
    /// slot it owns.
    pub fn room_on(&self, master: usize) -> String {
        (0..1000)
            .map(|i| format!("lobby-{i}"))
            .find(|room| self.master_of(&format!("{{r:{room}}}")) == Some(master))
            .expect("a room on every master")
    }
}

impl Backing for RedisCluster {
    fn node_args(&self) -> Vec<String> {
        let seeds: Vec<String> = self
            .servers
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect();
        vec!["--redis-cluster".into(), seeds.join(",")]
    }
}

/// A Redis Sentinel process watching one master, under the name `mymaster`, with short timeouts:
/// the master counts as down after 1 s without an answer (quorum 2).
pub struct Sentinel {
    pub port: u16,
    _dir: Scratch,
    child: Option<Child>,
}

impl Sentinel {
    pub fn start(master: &Redis) -> Self {
        let port = free_port();
        let dir = Scratch::new("sentinel");
        let conf = dir.0.join("sentinel.conf");
        // Sentinel rewrites its file as it learns the topology, so each has its own.
        let text = format!(
            "port {port}\nbind 127.0.0.1\ndir {dir}\n\
             sentinel monitor mymaster 127.0.0.1 {master} 2\n\
             sentinel down-after-milliseconds mymaster 1000\n\
             sentinel failover-timeout mymaster 4000\n\
             sentinel parallel-syncs mymaster 1\n",
            dir = dir.0.display(),
            master = master.port,
        );
        std::fs::write(&conf, text).expect("write sentinel.conf");
        let child = spawn_quiet(
            Command::new("redis-server").arg(&conf).arg("--sentinel"),
            "redis-server --sentinel",
        );
        wait_listening(port);
        Self {
            port,
            _dir: dir,
            child: Some(child),
        }
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// A `chorus` node process on the Redis bus.
pub struct Node {
    pub id: String,
    pub port: u16,
    /// How it finds Redis: `--redis-url …`, or the Sentinel flags.
    redis_args: Vec<String>,
    extra: Vec<String>,
    child: Option<Child>,
}

/// Short enough that tests see a dead node go within seconds.
pub const NODE_TTL_MS: u64 = 1000;

impl Node {
    pub fn start(redis: &impl Backing, id: &str) -> Self {
        Self::start_with(redis, id, &[])
    }

    /// Starts a node with extra command-line settings, e.g. `["--drain-ms", "1000"]`.
    pub fn start_with(redis: &impl Backing, id: &str, extra: &[&str]) -> Self {
        Self::start_on(redis.node_args(), id, extra)
    }

    /// Starts a node that finds Redis through `redis_args`, with extra settings.
    pub fn start_on(redis_args: Vec<String>, id: &str, extra: &[&str]) -> Self {
        let mut node = Self {
            id: id.to_owned(),
            port: free_port(),
            redis_args,
            extra: extra.iter().map(|s| s.to_string()).collect(),
            child: None,
        };
        node.restart();
        node
    }

    /// Starts the node's process (again) on the same port with the same settings, and waits
    /// until it is ready.
    pub fn restart(&mut self) {
        self.spawn();
        wait_ready(self.port);
    }

    /// A node whose process is started and listening, ready or not (its Redis may be down).
    pub fn start_listening(redis: &Redis, id: &str) -> Self {
        let mut node = Self {
            id: id.to_owned(),
            port: free_port(),
            redis_args: redis.node_args(),
            extra: Vec::new(),
            child: None,
        };
        node.spawn();
        wait_listening(node.port);
        node
    }

    fn spawn(&mut self) {
        stop(&mut self.child);
        let logs = std::env::var_os("TEST_LOG").is_some();
        let child = Command::new(BIN)
            .args(["--listen", &format!("127.0.0.1:{}", self.port)])
            .args(&self.redis_args)
            .args(["--node-id", &self.id])
            .args(["--node-ttl-ms", &NODE_TTL_MS.to_string()])
            .args(["--presence-interval-ms", "50"])
            .args(["--shutdown-grace-secs", "2"])
            .args(&self.extra)
            .env("CHORUS_CONFIG", "/dev/null")
            // Flags in `extra` win over these defaults.
            .env("CHORUS_DRAIN_MS", "0")
            // The traffic here comes from test participants sending as fast as they can, not
            // from people: per-connection rate limits are tested in hostile.rs.
            .env("CHORUS_SENDS_PER_SEC", "0")
            .env("CHORUS_BYTES_PER_SEC", "0")
            .env("CHORUS_CONTROLS_PER_SEC", "0")
            .env(
                "CHORUS_LOG",
                if logs { "chorus=debug,info" } else { "warn" },
            )
            // The node logs to stdout; `TEST_LOG=1` shows it.
            .stdout(if logs {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .stderr(if logs {
                Stdio::inherit()
            } else {
                Stdio::null()
            })
            .spawn()
            .expect("the chorus binary starts");
        self.child = Some(child);
    }

    /// SIGTERM, as a deploy does, then waits (bounded) for the process to drain and exit.
    pub fn terminate(&mut self) {
        if let Some(mut child) = self.child.take() {
            let exit = super::terminate(&mut child, PATIENCE * 2);
            let exit = exit.unwrap_or_else(|| panic!("node {} did not exit", self.id));
            assert!(exit.success(), "node {} exited with {exit}", self.id);
        }
    }

    pub fn http_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    /// SIGKILL: the node vanishes without telling anyone.
    pub fn kill(&mut self) {
        stop(&mut self.child);
    }

    /// The HTTP status of `/readyz`, or `None` if the node does not answer.
    pub async fn readyz(&self) -> Option<u16> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .ok()?;
        let resp = client.get(self.http_url("/readyz")).send().await.ok()?;
        Some(resp.status().as_u16())
    }

    /// Polls `/readyz` until it answers `status` (bounded by [`PATIENCE`] times `factor`).
    pub async fn wait_ready_status(&self, status: u16, factor: u32) {
        let deadline = Instant::now() + PATIENCE * factor;
        loop {
            if self.readyz().await == Some(status) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "node {} never answered {status} on /readyz",
                self.id
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Endpoint for Node {
    fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}/ws", self.port)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// nginx with the shipped configuration (deploy/nginx.conf.template) in front of `nodes`.
pub struct Nginx {
    pub port: u16,
    _dir: Scratch,
    child: Option<Child>,
}

impl Nginx {
    pub fn start(nodes: &[&Node]) -> Self {
        Self::start_with_read_timeout(nodes, None)
    }

    /// The shipped configuration, but with nginx's idle timeout for proxied WebSockets
    /// (`proxy_read_timeout`, `proxy_send_timeout`) shortened to `secs`.
    pub fn start_with_read_timeout(nodes: &[&Node], secs: Option<u32>) -> Self {
        let port = free_port();
        let dir = Scratch::new("nginx");
        let template = std::fs::read_to_string(
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("deploy/nginx.conf.template"),
        )
        .expect("the nginx template is readable");
        let servers: String = nodes
            .iter()
            .map(|n| {
                format!(
                    "        server 127.0.0.1:{} max_fails=1 fail_timeout=2s;\n",
                    n.port
                )
            })
            .collect();
        let user = std::env::var("USER").unwrap_or_else(|_| "root".into());
        let conf = template
            .replace("@PREFIX@", &dir.0.to_string_lossy())
            .replace("@LISTEN@", &format!("127.0.0.1:{port}"))
            .replace("@SERVERS@", &servers)
            .replace("@USER@", &user);
        let conf = match secs {
            None => conf,
            Some(secs) => {
                let shipped = "proxy_read_timeout 75s;\n            proxy_send_timeout 75s;";
                assert!(conf.contains(shipped), "the template's timeouts moved");
                conf.replace(
                    shipped,
                    &format!(
                        "proxy_read_timeout {secs}s;\n            proxy_send_timeout {secs}s;"
                    ),
                )
            }
        };
        let path = dir.0.join("nginx.conf");
        std::fs::write(&path, conf).expect("write nginx.conf");
        let child = spawn_quiet(
            Command::new("nginx")
                .arg("-p")
                .arg(&dir.0)
                .arg("-c")
                .arg(&path)
                .args(["-g", "daemon off;"]),
            "nginx",
        );
        wait_listening(port);
        Self {
            port,
            _dir: dir,
            child: Some(child),
        }
    }
}

impl Endpoint for Nginx {
    fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}/ws", self.port)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM, not SIGKILL: nginx's master then stops its workers, which a SIGKILL to the
        // master would leave running (they piled up on the test machine).
        if let Some(mut child) = self.child.take() {
            // Not yet reaped, so the signal reaches it even if it has just exited.
            let running = matches!(child.try_wait(), Ok(None));
            if !running || super::terminate(&mut child, PATIENCE).is_none() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }
}
