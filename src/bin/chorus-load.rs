//! `chorus-load`: a load generator for Chorus that speaks only the public protocol.
//!
//! Every subcommand is bounded in count and time and prints one JSON line on stdout.
//! Connections are spread over the given loopback source addresses (`--source`), so one process
//! can pass the ~28,000 ephemeral ports of one address; run several processes (with different
//! `--prefix`) to pass the open-file limit of one.

use chorus::protocol::{ClientMsg, ServerMsg};
use clap::{Args, Parser, Subcommand};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use serde_json::json;
use std::{
    io::Write,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    sync::{
        Arc, LazyLock,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};
use tokio::{
    net::{TcpSocket, TcpStream},
    sync::mpsc,
    time::Instant,
};
use tokio_tungstenite::{
    WebSocketStream, client_async_with_config,
    tungstenite::{Message, protocol::WebSocketConfig},
};
use tokio_util::sync::CancellationToken;

type Ws = WebSocketStream<TcpStream>;
type AnyError = Box<dyn std::error::Error + Send + Sync>;

/// All latencies are measured against this one clock, inside this one process.
static START: LazyLock<Instant> = LazyLock::new(Instant::now);

fn now_us() -> u64 {
    START.elapsed().as_micros() as u64
}

#[derive(Parser)]
#[command(
    name = "chorus-load",
    about = "Load generator for Chorus (one JSON line per run)"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Open N named, joined connections, hold them, report memory per connection.
    Capacity(CapacityArgs),
    /// N members in one room, S of them sending at an aggregate rate; latency and losses.
    Fanout(FanoutArgs),
    /// One sender on the first URL, one receiver on the second, paced; latency and losses.
    Crossnode(CrossnodeArgs),
    /// Open and close connections at a rate; server RSS and descriptors before and after.
    Churn(ChurnArgs),
    /// The floor under `crossnode`: PUBLISH on one Redis connection, received on another
    /// subscribed one, paced; no Chorus in the path.
    Pubsub(PubsubArgs),
}

#[derive(Args, Clone)]
struct Common {
    /// WebSocket URL of a node (repeat for several; connections are spread round-robin).
    #[arg(long = "url", required = true)]
    urls: Vec<String>,
    /// Local source address for connections (repeat to spread over several).
    #[arg(long = "source", default_value = "127.0.0.1")]
    sources: Vec<Ipv4Addr>,
    /// Server process ids whose RSS (and descriptors) to report.
    #[arg(long = "pid")]
    pids: Vec<u32>,
    /// Prefix of user names and rooms; give each concurrent process its own.
    #[arg(long, default_value = "lt")]
    prefix: String,
    /// Hard bound on the whole run, in seconds.
    #[arg(long, default_value_t = 600)]
    max_secs: u64,
    /// Join as clients before `presence_changes` did: whole member lists after every change
    /// (the browser asks for the changes).
    #[arg(long)]
    whole_lists: bool,
}

impl Common {
    /// Whether joins ask for `presence_changes`.
    fn changes(&self) -> bool {
        !self.whole_lists
    }
}

#[derive(Args)]
struct CapacityArgs {
    #[command(flatten)]
    common: Common,
    #[arg(long, default_value_t = 1000)]
    connections: usize,
    /// New connections per second.
    #[arg(long, default_value_t = 2000)]
    ramp: u64,
    /// Members per room (rooms are `<prefix>-cap-<k>`).
    #[arg(long, default_value_t = 100)]
    room_size: usize,
    /// Every connection joins this one room instead (several processes can fill one room).
    #[arg(long)]
    room: Option<String>,
    /// Connections join the rooms in turn (connection i the room i mod rooms) instead of
    /// filling one after the other: every room grows through the whole ramp, as when a node's
    /// people all come back after a restart.
    #[arg(long)]
    interleave: bool,
    /// Seconds to hold the connections open before measuring.
    #[arg(long, default_value_t = 5)]
    hold_secs: u64,
    /// Messages posted to each room before its members come, so every join carries a history
    /// (the server's memory is measured after they are stored).
    #[arg(long, default_value_t = 0)]
    fill_messages: usize,
    /// Characters per filling message.
    #[arg(long, default_value_t = 1000)]
    fill_chars: usize,
}

#[derive(Args, Clone)]
struct FanoutArgs {
    #[command(flatten)]
    common: Common,
    #[arg(long, default_value_t = 200)]
    members: usize,
    #[arg(long, default_value_t = 10)]
    senders: usize,
    /// Messages per second offered, all senders together.
    #[arg(long, default_value_t = 1000)]
    rate: u64,
    #[arg(long, default_value_t = 10)]
    secs: u64,
    /// Bytes of padding per message.
    #[arg(long, default_value_t = 32)]
    size: usize,
    /// While sending: this many more people a second join the room, each leaving (a clean
    /// close) a second later, so the room sees as many joins and leaves a second.
    #[arg(long, default_value_t = 0)]
    churn: u64,
    /// While sending: this many of the members who do not send say `typing` every 3 s (as a
    /// page does while its composer changes), staggered.
    #[arg(long, default_value_t = 0)]
    typists: usize,
    /// Seconds the members read before the first send: what the joins left unread (the
    /// notices of the first thousand joiners, a room's counts) is read by then, as a page
    /// reads it while the others come, instead of delaying the first messages measured.
    #[arg(long, default_value_t = 0)]
    settle_secs: u64,
}

#[derive(Args)]
struct CrossnodeArgs {
    #[command(flatten)]
    common: Common,
    #[arg(long, default_value_t = 100)]
    rate: u64,
    #[arg(long, default_value_t = 10)]
    secs: u64,
}

#[derive(Args)]
struct ChurnArgs {
    #[command(flatten)]
    common: Common,
    #[arg(long, default_value_t = 1000)]
    cycles: u64,
    /// Connections opened per second.
    #[arg(long, default_value_t = 500)]
    rate: u64,
    /// Connections in flight at most.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
}

#[derive(Args)]
struct PubsubArgs {
    /// Redis URL, e.g. redis://127.0.0.1:6379
    #[arg(long)]
    redis: String,
    #[arg(long, default_value_t = 100)]
    rate: u64,
    #[arg(long, default_value_t = 10)]
    secs: u64,
    /// Hard bound on the whole run, in seconds.
    #[arg(long, default_value_t = 600)]
    max_secs: u64,
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    LazyLock::force(&START);
    let cli = Cli::parse();
    let max = Duration::from_secs(match &cli.cmd {
        Cmd::Capacity(a) => a.common.max_secs,
        Cmd::Fanout(a) => a.common.max_secs,
        Cmd::Crossnode(a) => a.common.max_secs,
        Cmd::Churn(a) => a.common.max_secs,
        Cmd::Pubsub(a) => a.max_secs,
    });
    let run = async {
        match cli.cmd {
            Cmd::Capacity(a) => capacity(a).await,
            Cmd::Fanout(a) => fanout(a, false).await,
            Cmd::Crossnode(a) => crossnode(a).await,
            Cmd::Churn(a) => churn(a).await,
            Cmd::Pubsub(a) => pubsub(a).await,
        }
    };
    let report = match tokio::time::timeout(max, run).await {
        Ok(Ok(report)) => report,
        Ok(Err(e)) => {
            tracing::error!(cause = %e, "run failed");
            return std::process::ExitCode::FAILURE;
        }
        Err(_) => {
            tracing::error!(max_secs = max.as_secs(), "run exceeded --max-secs");
            return std::process::ExitCode::FAILURE;
        }
    };
    let mut out = std::io::stdout().lock();
    if writeln!(out, "{report}").is_err() {
        return std::process::ExitCode::FAILURE;
    }
    std::process::ExitCode::SUCCESS
}

// ---- connections -------------------------------------------------------------------------------

/// Opens a WebSocket from `source` to `url` with small buffers (the tool must not be the limit).
async fn connect(url: &str, source: Ipv4Addr) -> Result<Ws, AnyError> {
    let uri: tokio_tungstenite::tungstenite::http::Uri = url.parse()?;
    let host = uri.host().ok_or("URL has no host")?;
    let port = uri.port_u16().unwrap_or(80);
    let addr: SocketAddr = tokio::net::lookup_host((host, port))
        .await?
        .find(|a| a.is_ipv4())
        .ok_or("no IPv4 address for host")?;
    let socket = TcpSocket::new_v4()?;
    socket.bind(SocketAddr::new(IpAddr::V4(source), 0))?;
    let stream = socket.connect(addr).await?;
    stream.set_nodelay(true)?;
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0);
    let (ws, _) = client_async_with_config(url, stream, Some(config)).await?;
    Ok(ws)
}

async fn send(ws: &mut Ws, msg: &ClientMsg) -> Result<(), AnyError> {
    ws.send(Message::text(serde_json::to_string(msg)?)).await?;
    Ok(())
}

/// The next server frame (skipping pings); `None` when the connection ended.
async fn recv(ws: &mut Ws) -> Option<ServerMsg> {
    loop {
        match ws.next().await? {
            Ok(Message::Text(t)) => return serde_json::from_str(&t).ok(),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => continue,
        }
    }
}

/// Connects, takes `name` and joins `room` (asking for `presence_changes` with `changes`).
async fn session(
    url: &str,
    source: Ipv4Addr,
    name: &str,
    room: &str,
    changes: bool,
) -> Result<Ws, AnyError> {
    let mut ws = connect(url, source).await?;
    send(&mut ws, &ClientMsg::SetName { name: name.into() }).await?;
    let join = ClientMsg::Join {
        room: room.into(),
        since: None,
        presence_changes: changes,
    };
    send(&mut ws, &join).await?;
    loop {
        match recv(&mut ws).await.ok_or("closed while joining")? {
            ServerMsg::Joined { .. } => return Ok(ws),
            ServerMsg::Error { code, message, .. } => {
                return Err(format!("{code}: {message}").into());
            }
            _ => {}
        }
    }
}

fn pick<T: Clone>(items: &[T], i: usize) -> T {
    items[i % items.len()].clone()
}

// ---- process measurements ----------------------------------------------------------------------

/// Resident set size of a process, in bytes (0 if unreadable).
fn rss_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

fn open_fds(pid: u32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count() as u64)
}

fn total(pids: &[u32], f: fn(u32) -> u64) -> u64 {
    pids.iter().map(|&p| f(p)).sum()
}

/// CPU seconds this process has used (user + system).
fn own_cpu_secs() -> f64 {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces) start at field 3.
    let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
        return 0.0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i).and_then(|v| v.parse::<u64>().ok()))
        .sum();
    ticks as f64 / 100.0 // USER_HZ is 100 on Linux
}

// ---- capacity ----------------------------------------------------------------------------------

async fn capacity(a: CapacityArgs) -> Result<serde_json::Value, AnyError> {
    let c = &a.common;
    let rooms = a.connections.div_ceil(a.room_size.max(1)).max(1);
    let room_name = |k: usize| match &a.room {
        Some(room) => room.clone(),
        None => format!("{}-cap-{k}", c.prefix),
    };
    let room_of = |i: usize| match a.interleave {
        false => room_name(i / a.room_size.max(1)),
        true => room_name(i % rooms),
    };
    let mut filled = 0;
    if a.fill_messages > 0 {
        for k in 0..rooms {
            let filler = format!("{}-fill-{k}", c.prefix);
            fill(c, &filler, &room_name(k), a.fill_messages, a.fill_chars).await?;
            filled += a.fill_messages;
        }
    }
    let rss_before = total(&c.pids, rss_bytes);
    let stop = CancellationToken::new();
    let heard = Arc::new(Heard::default());
    let (done_tx, mut done_rx) = mpsc::channel::<Result<(), String>>(1024);
    let started = Instant::now();
    let spacing = Duration::from_secs_f64(1.0 / a.ramp.max(1) as f64);
    for i in 0..a.connections {
        tokio::time::sleep_until(started + spacing * i as u32).await;
        let (url, source) = (pick(&c.urls, i), pick(&c.sources, i));
        let name = format!("{}-c{i}", c.prefix);
        let room = room_of(i);
        let (stop, done) = (stop.clone(), done_tx.clone());
        let (changes, heard) = (c.changes(), heard.clone());
        tokio::spawn(async move {
            match session(&url, source, &name, &room, changes).await {
                Ok(mut ws) => {
                    let _ = done.send(Ok(())).await;
                    // Keep reading (notices, member lists) until told to stop.
                    loop {
                        tokio::select! {
                            _ = stop.cancelled() => break,
                            m = ws.next() => match m {
                                Some(Ok(Message::Text(t))) => heard.count(&t),
                                Some(Ok(Message::Close(_)) | Err(_)) | None => break,
                                Some(Ok(_)) => {}
                            },
                        }
                    }
                    let _ = ws.close(None).await;
                }
                Err(e) => {
                    let _ = done.send(Err(e.to_string())).await;
                }
            }
        });
    }
    drop(done_tx);
    // Exactly one result per connection; the senders live on with the held connections.
    let (mut connected, mut errors, mut first_error) = (0u64, 0u64, None);
    for _ in 0..a.connections {
        match done_rx.recv().await {
            Some(Ok(())) => connected += 1,
            Some(Err(e)) => {
                errors += 1;
                first_error.get_or_insert(e);
            }
            None => break,
        }
    }
    let connect_secs = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(a.hold_secs)).await;
    let rss_after = total(&c.pids, rss_bytes);
    let fds_after = total(&c.pids, open_fds);
    stop.cancel();
    Ok(json!({
        "test": "capacity",
        "filled_messages": filled,
        "connected": connected,
        "errors": errors,
        "first_error": first_error,
        "connect_secs": connect_secs,
        "connect_rate": connected as f64 / connect_secs.max(1e-9),
        "server_rss_before": rss_before,
        "server_rss_after": rss_after,
        "server_fds_after": fds_after,
        "bytes_per_connection": (rss_after.saturating_sub(rss_before)) as f64 / (connected.max(1)) as f64,
        "received_after_join": heard.report(),
        "whole_lists": c.whole_lists,
        "load_cpu_secs": own_cpu_secs(),
    }))
}

/// The member-list frames `Heard` counts apart.
const LIST_TYPES: [&str; 3] = ["presence", "presence_changes", "member_count"];

/// What the held connections read after their `joined`: all text frames, and each kind of
/// member-list frame among them ([`LIST_TYPES`]), as (frames, bytes).
#[derive(Default)]
struct Heard {
    all: [AtomicU64; 2],
    lists: [[AtomicU64; 2]; LIST_TYPES.len()],
}

impl Heard {
    fn count(&self, frame: &str) {
        let add = |[frames, bytes]: &[AtomicU64; 2]| {
            frames.fetch_add(1, Ordering::Relaxed);
            bytes.fetch_add(frame.len() as u64, Ordering::Relaxed);
        };
        add(&self.all);
        // The server writes the tag first.
        let tag = frame
            .strip_prefix(r#"{"type":""#)
            .and_then(|rest| rest.split_once('"'))
            .map(|(tag, _)| tag);
        if let Some(k) = LIST_TYPES.iter().position(|t| Some(*t) == tag) {
            add(&self.lists[k]);
        }
    }

    fn report(&self) -> serde_json::Value {
        let pair = |[frames, bytes]: &[AtomicU64; 2]| json!({"frames": frames.load(Ordering::Relaxed), "bytes": bytes.load(Ordering::Relaxed)});
        let mut report = json!({"all": pair(&self.all)});
        for (kind, counts) in LIST_TYPES.iter().zip(&self.lists) {
            report[*kind] = pair(counts);
        }
        report
    }
}

/// As `name`, posts `count` messages of `chars` characters to `room` and waits until all are
/// stored.
async fn fill(
    c: &Common,
    name: &str,
    room: &str,
    count: usize,
    chars: usize,
) -> Result<(), AnyError> {
    let mut ws = session(
        &pick(&c.urls, 0),
        pick(&c.sources, 0),
        name,
        room,
        c.changes(),
    )
    .await?;
    let text = "x".repeat(chars);
    for _ in 0..count {
        let msg = ClientMsg::Send {
            room: room.into(),
            text: text.clone(),
            client_id: None,
        };
        send(&mut ws, &msg).await?;
    }
    let mut acked = 0;
    while acked < count {
        match recv(&mut ws).await.ok_or("closed while filling")? {
            ServerMsg::Ack { .. } => acked += 1,
            ServerMsg::Error { code, message, .. } => {
                return Err(format!("{code}: {message}").into());
            }
            _ => {}
        }
    }
    let _ = ws.close(None).await;
    Ok(())
}

// ---- fanout and crossnode ----------------------------------------------------------------------

/// A delivery later than this counts as late in `late_share_by_second`.
const LATE_US: u64 = 250_000;

/// The fields of a server frame the fan-out readers look at, borrowed from the frame. Decoding
/// every delivery into a `ServerMsg` (an internally tagged enum, which serde buffers before
/// reading it) is work the generator, which shares the machine with the node, need not do.
#[derive(serde::Deserialize)]
struct Peek<'a> {
    #[serde(rename = "type", borrow)]
    kind: std::borrow::Cow<'a, str>,
    #[serde(default, borrow)]
    from: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow)]
    text: Option<std::borrow::Cow<'a, str>>,
    #[serde(default, borrow)]
    client_id: Option<std::borrow::Cow<'a, str>>,
}

/// What one member saw.
struct Seen {
    latency: Histogram<u64>,
    /// A sender's: from each send to its `ack` (the message stored; with `redis_wait_replicas`,
    /// replicated too).
    acks: Histogram<u64>,
    /// Whether this member's deliveries count (crossnode leaves the sender's out).
    counts: bool,
    /// One bit per (sender, sequence) message: set once received.
    bits: Vec<u64>,
    deliveries: u64,
    duplicates: u64,
    closed_early: bool,
    /// `typing` frames received.
    typing: u64,
    /// Per second of sending (by when a message was sent): deliveries, and those later than
    /// [`LATE_US`].
    by_second: Vec<[u64; 2]>,
}

async fn fanout(
    a: FanoutArgs,
    receivers_exclude_senders: bool,
) -> Result<serde_json::Value, AnyError> {
    let c = &a.common;
    let room = format!("{}-fan", c.prefix);
    let senders = a.senders.clamp(1, a.members);
    let per_sender = (a.rate * a.secs).div_ceil(senders as u64);
    let slots = senders as u64 * per_sender;

    // Join everyone first (bounded concurrency keeps the join storm gentle).
    let mut members = Vec::with_capacity(a.members);
    for i in 0..a.members {
        let ws = session(
            &pick(&c.urls, i),
            pick(&c.sources, i),
            &format!("{}-m{i}", c.prefix),
            &room,
            c.changes(),
        )
        .await
        .map_err(|e| format!("member {i} could not join: {e}"))?;
        members.push(ws);
    }
    let prefix = format!("{}-m", c.prefix);
    let stop = CancellationToken::new();
    let sent = Arc::new(AtomicU64::new(0));
    let mut readers = Vec::new();
    let mut writers = Vec::new();
    let settle = Duration::from_secs(a.settle_secs);
    let started = Instant::now() + settle;
    let started_us = now_us() + settle.as_micros() as u64;
    for (i, ws) in members.into_iter().enumerate() {
        let (mut sink, mut stream) = ws.split();
        let is_sender = i < senders;
        let is_typist = !is_sender && i >= a.members.saturating_sub(a.typists);
        {
            let (stop, prefix) = (stop.clone(), prefix.clone());
            let counts = !(receivers_exclude_senders && is_sender);
            readers.push(tokio::spawn(async move {
                let mut seen = Seen {
                    latency: latency_histogram(),
                    acks: latency_histogram(),
                    counts,
                    bits: vec![0; slots.div_ceil(64) as usize],
                    deliveries: 0,
                    duplicates: 0,
                    closed_early: false,
                    typing: 0,
                    by_second: Vec::new(),
                };
                loop {
                    let frame = tokio::select! {
                        _ = stop.cancelled() => break,
                        f = stream.next() => f,
                    };
                    let text = match frame {
                        Some(Ok(Message::Text(t))) => t,
                        Some(Ok(_)) => continue,
                        _ => {
                            seen.closed_early = true;
                            break;
                        }
                    };
                    let Ok(frame) = serde_json::from_str::<Peek>(&text) else {
                        continue;
                    };
                    let (from, said) = match (&*frame.kind, frame.from, frame.text) {
                        ("message", Some(from), Some(said)) if seen.counts => (from, said),
                        ("typing", _, _) => {
                            seen.typing += 1;
                            continue;
                        }
                        // client_id: "<sender>:<seq>:<sent at, µs>"
                        ("ack", _, _) => {
                            let id = frame.client_id.unwrap_or_default();
                            if let Some(t) = id.rsplit(':').next().and_then(|t| t.parse().ok()) {
                                let _ = seen.acks.record(now_us().saturating_sub(t).max(1));
                            }
                            continue;
                        }
                        _ => continue,
                    };
                    if !from.starts_with(&*prefix) {
                        continue;
                    }
                    // text: "<sender>:<seq>:<sent at, µs>:<padding>"
                    let mut parts = said.splitn(4, ':');
                    let (Some(s), Some(n), Some(t)) = (parts.next(), parts.next(), parts.next())
                    else {
                        continue;
                    };
                    let (Ok(s), Ok(n), Ok(t)) =
                        (s.parse::<u64>(), n.parse::<u64>(), t.parse::<u64>())
                    else {
                        continue;
                    };
                    let slot = s * per_sender + n;
                    let (word, bit) = ((slot / 64) as usize, 1u64 << (slot % 64));
                    let Some(w) = seen.bits.get_mut(word) else {
                        continue;
                    };
                    if *w & bit != 0 {
                        seen.duplicates += 1;
                    } else {
                        *w |= bit;
                    }
                    seen.deliveries += 1;
                    let late = now_us().saturating_sub(t);
                    let _ = seen.latency.record(late.max(1));
                    let second = (t.saturating_sub(started_us) / 1_000_000) as usize;
                    if seen.by_second.len() <= second {
                        seen.by_second.resize(second + 1, [0, 0]);
                    }
                    seen.by_second[second][0] += 1;
                    seen.by_second[second][1] += u64::from(late > LATE_US);
                }
                seen
            }));
        }
        if is_sender {
            let (sent, pad, room) = (sent.clone(), "x".repeat(a.size), room.clone());
            let interval = Duration::from_secs_f64(senders as f64 / a.rate.max(1) as f64);
            // Senders take turns, so the room hears the aggregate rate evenly rather than
            // `senders` messages at once every interval.
            let first = started + interval.mul_f64(i as f64 / senders as f64);
            writers.push(tokio::spawn(async move {
                for n in 0..per_sender {
                    tokio::time::sleep_until(first + interval * n as u32).await;
                    let at = now_us();
                    let msg = ClientMsg::Send {
                        room: room.clone(),
                        text: format!("{i}:{n}:{at}:{pad}"),
                        client_id: Some(format!("{i}:{n}:{at}")),
                    };
                    let Ok(json) = serde_json::to_string(&msg) else {
                        break;
                    };
                    if sink.send(Message::text(json)).await.is_err() {
                        break;
                    }
                    sent.fetch_add(1, Ordering::Relaxed);
                }
                sink
            }));
        } else if is_typist {
            let (room, until) = (room.clone(), started + Duration::from_secs(a.secs));
            let every = Duration::from_millis(chorus::protocol::TYPING_EVERY_MS);
            let k = i - a.members.saturating_sub(a.typists);
            let first = started + every.mul_f64(k as f64 / a.typists as f64);
            writers.push(tokio::spawn(async move {
                let json = serde_json::to_string(&ClientMsg::Typing { room }).unwrap_or_default();
                let mut at = first;
                while at < until {
                    tokio::time::sleep_until(at).await;
                    if sink.send(Message::text(json.clone())).await.is_err() {
                        break;
                    }
                    at += every;
                }
                sink
            }));
        }
    }
    tokio::time::sleep_until(started).await;
    let cpu_before = own_cpu_secs();
    let churned = churn_through(&a, &room, started, stop.clone());
    let mut sinks = Vec::new();
    for w in writers {
        sinks.push(w.await?);
    }
    let send_secs = started.elapsed().as_secs_f64();
    let (churn_joins, churn_errors) = churned.await?;
    // Let the last messages arrive, then stop reading.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.cancel();
    let (mut latency, mut acks) = (latency_histogram(), latency_histogram());
    let (mut deliveries, mut duplicates, mut unique, mut closed) = (0u64, 0u64, 0u64, 0u64);
    let mut typing = 0u64;
    let mut receivers = 0u64;
    let mut by_second: Vec<[u64; 2]> = Vec::new();
    for r in readers {
        let seen = r.await?;
        if by_second.len() < seen.by_second.len() {
            by_second.resize(seen.by_second.len(), [0, 0]);
        }
        for (all, [n, late]) in by_second.iter_mut().zip(&seen.by_second) {
            all[0] += n;
            all[1] += late;
        }
        acks.add(&seen.acks).map_err(|e| e.to_string())?;
        typing += seen.typing;
        if !seen.counts {
            continue;
        }
        receivers += 1;
        latency.add(&seen.latency).map_err(|e| e.to_string())?;
        deliveries += seen.deliveries;
        duplicates += seen.duplicates;
        unique += seen
            .bits
            .iter()
            .map(|w| u64::from(w.count_ones()))
            .sum::<u64>();
        closed += u64::from(seen.closed_early);
    }
    let cpu = own_cpu_secs() - cpu_before;
    drop(sinks);
    let sent = sent.load(Ordering::Relaxed);
    Ok(json!({
        "test": if receivers_exclude_senders { "crossnode" } else { "fanout" },
        "members": a.members,
        "senders": senders,
        "receivers": receivers,
        "secs": send_secs,
        "offered_msgs_per_sec": sent as f64 / send_secs.max(1e-9),
        "delivered_per_sec": deliveries as f64 / send_secs.max(1e-9),
        "sent": sent,
        "expected_deliveries": sent * receivers,
        "deliveries": deliveries,
        "lost": (sent * receivers).saturating_sub(unique),
        "duplicated": duplicates,
        "connections_closed_early": closed,
        "churn_joins": churn_joins,
        "churn_errors": churn_errors,
        "typists": a.typists,
        "typing_frames_received": typing,
        "latency_ms": latency_ms(&latency),
        // Per second of sending: the share of its deliveries that took over 250 ms.
        "late_share_by_second": by_second
            .iter()
            .map(|[n, late]| (*late as f64 / (*n).max(1) as f64 * 1000.0).round() / 1000.0)
            .collect::<Vec<_>>(),
        "acked": acks.len(),
        "ack_latency_ms": latency_ms(&acks),
        "load_cpu_secs": cpu,
        "load_cpu_share": cpu / send_secs.max(1e-9),
    }))
}

/// `--churn`: from `started`, `churn` people a second join `room` and leave a second later, for
/// the run's `secs` (or until `stop`). Returns how many joined, and how many could not.
fn churn_through(
    a: &FanoutArgs,
    room: &str,
    started: Instant,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<(u64, u64)> {
    let (rate, total) = (a.churn, a.churn * a.secs);
    let (urls, sources) = (a.common.urls.clone(), a.common.sources.clone());
    let (prefix, room) = (a.common.prefix.clone(), room.to_owned());
    let changes = a.common.changes();
    tokio::spawn(async move {
        let (joined, errors) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
        let spacing = Duration::from_secs_f64(1.0 / rate.max(1) as f64);
        let mut tasks = tokio::task::JoinSet::new();
        for k in 0..total {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep_until(started + spacing * k as u32) => {}
            }
            let (url, source) = (pick(&urls, k as usize), pick(&sources, k as usize));
            let (name, room) = (format!("{prefix}-c{k}"), room.clone());
            let (joined, errors) = (joined.clone(), errors.clone());
            tasks.spawn(async move {
                match session(&url, source, &name, &room, changes).await {
                    Ok(mut ws) => {
                        joined.fetch_add(1, Ordering::Relaxed);
                        let _ = tokio::time::timeout(Duration::from_secs(1), async {
                            while recv(&mut ws).await.is_some() {}
                        })
                        .await;
                        let _ = ws.close(None).await;
                        while recv(&mut ws).await.is_some() {}
                    }
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
            while tasks.try_join_next().is_some() {}
        }
        while tasks.join_next().await.is_some() {}
        (
            joined.load(Ordering::Relaxed),
            errors.load(Ordering::Relaxed),
        )
    })
}

/// Latencies in microseconds, from 1 µs to a minute, three significant digits.
fn latency_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("constant bounds are valid")
}

/// Percentiles of latencies recorded in microseconds, in milliseconds.
fn latency_ms(latency: &Histogram<u64>) -> serde_json::Value {
    let ms = |q: f64| latency.value_at_quantile(q) as f64 / 1000.0;
    json!({
        "p50": ms(0.50), "p90": ms(0.90), "p99": ms(0.99),
        "max": latency.max() as f64 / 1000.0,
    })
}

async fn crossnode(a: CrossnodeArgs) -> Result<serde_json::Value, AnyError> {
    let mut common = a.common;
    if common.urls.len() < 2 {
        return Err("crossnode needs two --url: the sender's node, then the receiver's".into());
    }
    common.urls.truncate(2);
    fanout(
        FanoutArgs {
            common,
            members: 2,
            senders: 1,
            rate: a.rate,
            secs: a.secs,
            size: 32,
            churn: 0,
            typists: 0,
            settle_secs: 0,
        },
        true,
    )
    .await
}

// ---- the Redis floor ---------------------------------------------------------------------------

async fn pubsub(a: PubsubArgs) -> Result<serde_json::Value, AnyError> {
    let client = redis::Client::open(a.redis.as_str())?;
    let mut publisher = client.get_multiplexed_async_connection().await?;
    let mut subscriber = client.get_async_pubsub().await?;
    let channel = format!("chorus-load:floor:{}", std::process::id());
    subscriber.subscribe(&channel).await?;
    let count = a.rate * a.secs;
    let interval = Duration::from_secs_f64(1.0 / a.rate.max(1) as f64);
    let cpu_before = own_cpu_secs();
    let started = Instant::now();
    let sender = tokio::spawn({
        let channel = channel.clone();
        async move {
            for n in 0..count {
                tokio::time::sleep_until(started + interval * n as u32).await;
                let published: Result<(), _> = redis::cmd("PUBLISH")
                    .arg(&channel)
                    .arg(now_us())
                    .exec_async(&mut publisher)
                    .await;
                if published.is_err() {
                    break;
                }
            }
        }
    });
    let mut latency = latency_histogram();
    let mut stream = subscriber.on_message();
    let deadline = started + interval * count as u32 + Duration::from_secs(2);
    while latency.len() < count {
        let msg = tokio::select! {
            m = stream.next() => m,
            _ = tokio::time::sleep_until(deadline) => None,
        };
        let Some(msg) = msg else { break };
        if let Ok(sent) = msg.get_payload::<u64>() {
            let _ = latency.record(now_us().saturating_sub(sent).max(1));
        }
    }
    sender.await?;
    let secs = started.elapsed().as_secs_f64();
    let cpu = own_cpu_secs() - cpu_before;
    Ok(json!({
        "test": "pubsub",
        "sent": count,
        "received": latency.len(),
        "lost": count.saturating_sub(latency.len()),
        "latency_ms": latency_ms(&latency),
        "load_cpu_secs": cpu,
        "load_cpu_share": cpu / secs.max(1e-9),
    }))
}

// ---- churn -------------------------------------------------------------------------------------

async fn churn(a: ChurnArgs) -> Result<serde_json::Value, AnyError> {
    let c = &a.common;
    let rss_before = total(&c.pids, rss_bytes);
    let fds_before = total(&c.pids, open_fds);
    let permits = Arc::new(tokio::sync::Semaphore::new(a.concurrency.max(1)));
    let errors = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let spacing = Duration::from_secs_f64(1.0 / a.rate.max(1) as f64);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..a.cycles {
        tokio::time::sleep_until(started + spacing * i as u32).await;
        let permit = permits.clone().acquire_owned().await?;
        let (url, source) = (pick(&c.urls, i as usize), pick(&c.sources, i as usize));
        let (name, room) = (
            format!("{}-ch{i}", c.prefix),
            format!("{}-churn-{}", c.prefix, i % 10),
        );
        let (errors, changes) = (errors.clone(), c.changes());
        tasks.spawn(async move {
            match session(&url, source, &name, &room, changes).await {
                Ok(mut ws) => {
                    let _ = ws.close(None).await;
                    // Read until the server's close arrives, so the cycle is complete.
                    while recv(&mut ws).await.is_some() {}
                }
                Err(_) => {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            drop(permit);
        });
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    let secs = started.elapsed().as_secs_f64();
    // Give the server a moment to finish its own clean-up before measuring: its closes linger
    // up to 2 s, longer on a busy machine. Leaked descriptors never come back, so waiting until
    // they do (at most 10 s) still finds a leak.
    let settle = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    while total(&c.pids, open_fds) > fds_before && settle.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(json!({
        "test": "churn",
        "cycles": a.cycles,
        "errors": errors.load(Ordering::Relaxed),
        "secs": secs,
        "cycles_per_sec": a.cycles as f64 / secs.max(1e-9),
        "server_rss_before": rss_before,
        "server_rss_after": total(&c.pids, rss_bytes),
        "server_fds_before": fds_before,
        "server_fds_after": total(&c.pids, open_fds),
        "load_cpu_secs": own_cpu_secs(),
    }))
}
