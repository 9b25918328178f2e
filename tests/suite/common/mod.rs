//! Test harness: a real Chorus server on a free loopback port, and real WebSocket clients.
#![allow(dead_code)]

use chorus::{
    protocol::{ChatMessage, ClientMsg, ErrorCode, NoticeKind, Position, ServerMsg},
    server::{
        Server,
        config::Config,
        store::{MemoryStore, Store},
    },
};
use futures_util::{SinkExt, StreamExt};
use std::{net::SocketAddr, sync::Arc, time::Duration};
use tokio::{net::TcpStream, sync::oneshot, task::JoinHandle};
use tokio_tungstenite::{
    MaybeTlsStream, WebSocketStream, connect_async_with_config,
    tungstenite::{Message, protocol::CloseFrame},
};

/// Long enough for any loaded CI machine; only guards against a hang, never measures speed.
pub const PATIENCE: Duration = Duration::from_secs(10);

pub mod cluster;
pub mod traffic;

/// Anything a test client can connect to: an in-process server, a node process, nginx.
pub trait Endpoint {
    fn ws_url(&self) -> String;
}

impl Endpoint for TestServer {
    fn ws_url(&self) -> String {
        TestServer::ws_url(self)
    }
}

pub struct TestServer {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::with(|_| {}).await
    }

    pub async fn with(tweak: impl FnOnce(&mut Config)) -> Self {
        Self::serve(None, tweak).await
    }

    /// A node on `store`: nodes started on one store share it (and its bus) as nodes share
    /// Redis, all in this process.
    pub async fn on_store(
        store: Arc<dyn Store>,
        node_id: &str,
        tweak: impl FnOnce(&mut Config),
    ) -> Self {
        let node_id = node_id.to_owned();
        Self::serve(Some(store), |config| {
            config.node.node_id = Some(node_id);
            tweak(config);
        })
        .await
    }

    async fn serve(store: Option<Arc<dyn Store>>, tweak: impl FnOnce(&mut Config)) -> Self {
        init_logs();
        let mut config = Config::default();
        config.node.node_id = Some("test-node".into());
        config.node.shutdown_grace_secs = Duration::from_secs(2);
        // Tests that shut down a server close everyone at once unless they test the drain.
        config.node.drain_ms = Duration::ZERO;
        tweak(&mut config);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let addr = listener.local_addr().expect("bound address");
        let (stop, stopped) = oneshot::channel::<()>();
        let server = match store {
            Some(store) => Server::new(config).with_store(store),
            None => Server::new(config),
        };
        let task = tokio::spawn(server.run(listener, async {
            let _ = stopped.await;
        }));
        Self {
            addr,
            stop: Some(stop),
            task,
        }
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// Waits (bounded by [`PATIENCE`]) until `/readyz` answers 200: with Redis, the pub/sub
    /// link is up and WebSockets are taken.
    pub async fn ready(self) -> Self {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let status = reqwest::get(self.http_url("/readyz"))
                .await
                .map(|r| r.status());
            if status.is_ok_and(|s| s.is_success()) {
                return self;
            }
            assert!(tokio::time::Instant::now() < deadline, "never ready");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn http_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Starts a graceful shutdown and waits for the server to finish.
    pub async fn shutdown(mut self) -> anyhow::Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(PATIENCE, &mut self.task)
            .await
            .expect("server stops within the grace period")
            .expect("server task did not panic")
    }
}

/// An in-memory store as a node with `config`'s settings would make it, for nodes started with
/// [`TestServer::on_store`].
pub fn memory_store(config: &Config) -> Arc<dyn Store> {
    Arc::new(MemoryStore::from_config(config))
}

/// Lifts the per-connection rate limits, for tests whose senders are load generators rather
/// than people (hostile.rs tests the limits themselves).
pub fn unlimited(config: &mut Config) {
    config.limits.sends_per_sec = 0;
    config.limits.bytes_per_sec = 0;
    config.limits.controls_per_sec = 0;
}

/// `TEST_LOG=1` shows the server's logs.
fn init_logs() {
    if std::env::var_os("TEST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("chorus=debug,info"))
            .with_test_writer()
            .try_init();
    }
}

pub struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub session: String,
    /// What `welcome` said this connection may send.
    pub limits: Option<chorus::protocol::Limits>,
}

/// What ended a connection, as the client saw it.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    Closed(Option<u16>),
    Dropped,
}

impl Client {
    /// Connects and reads the `welcome`.
    pub async fn connect(server: &impl Endpoint) -> Self {
        let (ws, _) = connect_async_with_config(server.ws_url(), None, true)
            .await
            .expect("WebSocket connects");
        let mut client = Self {
            ws,
            session: String::new(),
            limits: None,
        };
        match client.recv().await {
            ServerMsg::Welcome {
                session, limits, ..
            } => (client.session, client.limits) = (session, Some(limits)),
            other => panic!("expected welcome, got {other:?}"),
        }
        client
    }

    /// Connects and takes a name.
    pub async fn named(server: &impl Endpoint, name: &str) -> Self {
        let mut client = Self::connect(server).await;
        client.set_name(name).await;
        match client.recv().await {
            ServerMsg::NameSet { name: got } => assert_eq!(got, name),
            other => panic!("expected name_set, got {other:?}"),
        }
        client
    }

    /// Connects, takes a name and joins `room`; returns the client and its `joined` frame.
    pub async fn in_room(
        server: &impl Endpoint,
        name: &str,
        room: &str,
    ) -> (Self, Vec<String>, Vec<ChatMessage>) {
        let mut client = Self::named(server, name).await;
        let (members, history) = client.join(room).await;
        // Its own `joined` notice and then a member list with it follow (the list is read by the
        // room after the notice; in a big room, a first page without it, or only the count when
        // the first page stayed as it was); start the story after them.
        loop {
            match client.recv().await {
                ServerMsg::Presence { members, count, .. }
                    if members.iter().any(|m| m == name) || count as usize > members.len() =>
                {
                    break;
                }
                ServerMsg::MemberCount { .. } => break,
                _ => {}
            }
        }
        client.drain().await;
        (client, members, history)
    }

    pub async fn send(&mut self, msg: &ClientMsg) {
        let json = serde_json::to_string(msg).expect("serializes");
        self.send_raw(&json).await;
    }

    pub async fn send_raw(&mut self, text: &str) {
        self.ws.send(Message::text(text)).await.expect("frame sent");
    }

    pub async fn send_binary(&mut self, bytes: Vec<u8>) {
        self.ws
            .send(Message::binary(bytes))
            .await
            .expect("frame sent");
    }

    pub async fn set_name(&mut self, name: &str) {
        self.send(&ClientMsg::SetName { name: name.into() }).await;
    }

    /// Joins and waits for the `joined` answer.
    pub async fn join(&mut self, room: &str) -> (Vec<String>, Vec<ChatMessage>) {
        let (members, history, _) = self.join_since(room, None).await;
        (members, history)
    }

    /// Joins asking for the messages after `since`; returns members, history and `recovered`.
    pub async fn join_since(
        &mut self,
        room: &str,
        since: Option<Position>,
    ) -> (Vec<String>, Vec<ChatMessage>, Option<bool>) {
        self.send(&ClientMsg::Join {
            room: room.into(),
            since,
            presence_changes: false,
        })
        .await;
        match self
            .recv_until(|m| matches!(m, ServerMsg::Joined { .. } | ServerMsg::Error { .. }))
            .await
        {
            ServerMsg::Joined {
                members,
                history,
                recovered,
                ..
            } => (members, history, recovered),
            other => panic!("expected joined, got {other:?}"),
        }
    }

    pub async fn say(&mut self, room: &str, text: &str, client_id: &str) {
        self.send(&ClientMsg::Send {
            room: room.into(),
            text: text.into(),
            client_id: Some(client_id.into()),
        })
        .await;
    }

    /// The next server frame; panics on close or after [`PATIENCE`].
    pub async fn recv(&mut self) -> ServerMsg {
        loop {
            let frame = tokio::time::timeout(PATIENCE, self.ws.next())
                .await
                .expect("a frame arrives in time")
                .expect("connection still open")
                .expect("frame reads");
            match frame {
                Message::Text(text) => {
                    return serde_json::from_str(&text)
                        .unwrap_or_else(|e| panic!("server frame {text} does not decode: {e}"));
                }
                Message::Ping(_) | Message::Pong(_) => continue,
                other => panic!("expected a text frame, got {other:?}"),
            }
        }
    }

    /// The next server frame, or how the connection ended (no time limit of its own).
    pub async fn recv_or_end(&mut self) -> Result<ServerMsg, Ended> {
        loop {
            match self.ws.next().await {
                Some(Ok(Message::Text(text))) => {
                    return Ok(serde_json::from_str(&text)
                        .unwrap_or_else(|e| panic!("server frame {text} does not decode: {e}")));
                }
                Some(Ok(Message::Close(frame))) => {
                    return Err(Ended::Closed(frame.map(|f: CloseFrame| u16::from(f.code))));
                }
                Some(Ok(_)) => continue,
                None | Some(Err(_)) => return Err(Ended::Dropped),
            }
        }
    }

    /// Skips frames until one matches.
    pub async fn recv_until(&mut self, want: impl Fn(&ServerMsg) -> bool) -> ServerMsg {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no matching frame in time"
            );
            let msg = self.recv().await;
            if want(&msg) {
                return msg;
            }
        }
    }

    /// Waits for the next chat message.
    pub async fn next_message(&mut self) -> ChatMessage {
        match self
            .recv_until(|m| matches!(m, ServerMsg::Message(_)))
            .await
        {
            ServerMsg::Message(m) => m,
            _ => unreachable!(),
        }
    }

    /// Waits for a `left` notice and returns the name it announces.
    pub async fn next_left(&mut self) -> String {
        match self
            .recv_until(|m| {
                matches!(
                    m,
                    ServerMsg::Notice {
                        kind: NoticeKind::Left,
                        ..
                    }
                )
            })
            .await
        {
            ServerMsg::Notice { name, .. } => name,
            _ => unreachable!(),
        }
    }

    /// Waits for an `error` frame and returns its code as the wire spells it.
    pub async fn next_error(&mut self) -> String {
        match self
            .recv_until(|m| matches!(m, ServerMsg::Error { .. }))
            .await
        {
            ServerMsg::Error { code, .. } => code.as_str().to_owned(),
            _ => unreachable!(),
        }
    }

    /// Reads until a WebSocket ping arrives (answering it, as every read does).
    pub async fn until_ping(&mut self) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left, self.ws.next()).await {
                Err(_) => panic!("no ping in time"),
                Ok(Some(Ok(Message::Ping(_)))) => return,
                Ok(Some(Ok(_))) => continue,
                Ok(other) => panic!("connection ended before a ping: {other:?}"),
            }
        }
    }

    /// Reads (and so answers pings) for `how_long`; panics if the connection ends meanwhile.
    pub async fn listen_for(&mut self, how_long: Duration) -> Vec<ServerMsg> {
        let until = tokio::time::Instant::now() + how_long;
        let mut seen = Vec::new();
        loop {
            match tokio::time::timeout_at(until, self.ws.next()).await {
                Err(_) => return seen,
                Ok(Some(Ok(Message::Text(text)))) => {
                    seen.push(serde_json::from_str(&text).expect("server frame decodes"))
                }
                Ok(Some(Ok(Message::Close(frame)))) => panic!("closed while listening: {frame:?}"),
                Ok(Some(Ok(_))) => continue,
                Ok(other) => panic!("connection ended while listening: {other:?}"),
            }
        }
    }

    /// Reads until the connection ends; returns the close code the server sent, if any.
    pub async fn until_closed(&mut self) -> Ended {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left, self.ws.next()).await {
                Err(_) => panic!("connection not closed in time"),
                Ok(None) | Ok(Some(Err(_))) => return Ended::Dropped,
                Ok(Some(Ok(Message::Close(frame)))) => {
                    return Ended::Closed(frame.map(|f: CloseFrame| u16::from(f.code)));
                }
                Ok(Some(Ok(_))) => continue,
            }
        }
    }

    /// A round trip through the server: returns every frame the server had queued for this
    /// client before it answered the barrier (an unknown frame type, which changes nothing).
    pub async fn drain(&mut self) -> Vec<ServerMsg> {
        self.send_raw(r#"{"type":"zz_barrier"}"#).await;
        let mut seen = Vec::new();
        loop {
            match self.recv().await {
                ServerMsg::Error {
                    code: ErrorCode::UnknownType,
                    message,
                    ..
                } if message.contains("zz_barrier") => {
                    return seen;
                }
                other => seen.push(other),
            }
        }
    }

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }

    /// Says `marker` in the lobby and returns everything heard until it comes back: what the
    /// room sent this client before that point.
    pub async fn heard_until_said(&mut self, marker: &str) -> Vec<ServerMsg> {
        self.say("lobby", marker, &marker.replace(' ', "-")).await;
        let mut heard = Vec::new();
        loop {
            match self.recv().await {
                ServerMsg::Message(m) if m.text == marker => return heard,
                other => heard.push(other),
            }
        }
    }

    /// Closes as a browser does when its page goes away (a reload, a navigation): code 1001.
    pub async fn go_away(mut self) {
        let frame = CloseFrame {
            code: tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode::Away,
            reason: "".into(),
        };
        let _ = self.ws.close(Some(frame)).await;
    }

    /// Ends the connection without a close frame, as a dropped network link does.
    pub fn cut(self) {
        drop(self.ws);
    }

    /// Asks to take over an earlier session.
    pub async fn resume(&mut self, session: &str) {
        self.send(&ClientMsg::Resume {
            session: session.into(),
        })
        .await;
    }
}

/// The join, leave and rename notices among `heard`, as (kind, name).
pub fn notices(heard: &[ServerMsg]) -> Vec<(NoticeKind, String)> {
    heard
        .iter()
        .filter_map(|m| match m {
            ServerMsg::Notice { kind, name, .. } => Some((*kind, name.clone())),
            _ => None,
        })
        .collect()
}

/// Reads `expected.len()` chat messages from `reader` and checks they are `expected`, in that
/// order, with consecutive seqs, and that none comes twice.
pub async fn assert_in_order_once(reader: &mut Client, expected: &[String]) {
    let mut got = Vec::new();
    while got.len() < expected.len() {
        got.push(reader.next_message().await);
    }
    let texts: Vec<String> = got.iter().map(|m| m.text.clone()).collect();
    assert_eq!(texts, expected, "in the order sent");
    let seqs: Vec<u64> = got.iter().map(|m| m.seq).collect();
    assert!(
        seqs.windows(2).all(|w| w[1] == w[0] + 1),
        "consecutive seqs: {seqs:?}"
    );
    // Exactly once: nothing more is on its way.
    let extra = reader.drain().await;
    assert!(
        !extra.iter().any(|m| matches!(m, ServerMsg::Message(_))),
        "a message came twice: {extra:?}"
    );
}

pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// An upgrade request to `endpoint` with extra headers (an `Origin`, an `X-Forwarded-For`).
pub fn upgrade_request(
    endpoint: &impl Endpoint,
    headers: &[(&'static str, &str)],
) -> tokio_tungstenite::tungstenite::handshake::client::Request {
    use tokio_tungstenite::tungstenite::{client::IntoClientRequest, http::HeaderValue};
    let mut request = endpoint.ws_url().into_client_request().expect("request");
    for (name, value) in headers {
        request
            .headers_mut()
            .insert(*name, HeaderValue::from_str(value).expect("header value"));
    }
    request
}

/// Opens a WebSocket with extra request headers; returns the HTTP status of the answer (101
/// when it opened) and, when refused, its `Retry-After`.
pub async fn upgrade_status(
    endpoint: &impl Endpoint,
    headers: &[(&'static str, &str)],
) -> (u16, Option<String>) {
    use tokio_tungstenite::{connect_async, tungstenite};
    let request = upgrade_request(endpoint, headers);
    match tokio::time::timeout(PATIENCE, connect_async(request))
        .await
        .expect("answered in time")
    {
        Ok((ws, response)) => {
            drop(ws);
            (response.status().as_u16(), None)
        }
        Err(tungstenite::Error::Http(response)) => (
            response.status().as_u16(),
            response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        ),
        Err(e) => panic!("upgrade failed without an HTTP answer: {e}"),
    }
}

/// A free loopback port for a server started as a separate process.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Waits (bounded by [`PATIENCE`]) until something listens on the port.
pub fn wait_listening(port: u16) {
    let deadline = std::time::Instant::now() + PATIENCE;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "nothing listens on port {port}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `GET url` read as Prometheus text (the server sends OpenMetrics, its superset).
pub async fn scrape(url: &str) -> Vec<prometheus_parse::Sample> {
    let response = reqwest::get(url).await.expect("GET /metrics");
    assert_eq!(response.status(), 200, "GET {url}");
    let text = response.text().await.expect("a body");
    let lines = text.lines().map(|l| Ok(l.to_owned()));
    prometheus_parse::Scrape::parse(lines)
        .expect("/metrics parses as Prometheus text")
        .samples
}

/// `GET url` (a node's `/status.json`) read as JSON; it must answer 200.
pub async fn status_json(url: &str) -> serde_json::Value {
    let response = reqwest::get(url).await.expect("GET /status.json");
    assert_eq!(response.status(), 200, "GET {url}");
    serde_json::from_str(&response.text().await.expect("a body")).expect("JSON")
}

/// The value of the sample named `name` (with the label `label = value`, if given); 0 if absent
/// (a labelled counter appears once it first moves).
pub fn metric(
    samples: &[prometheus_parse::Sample],
    name: &str,
    label: Option<(&str, &str)>,
) -> f64 {
    use prometheus_parse::Value;
    samples
        .iter()
        .filter(|s| s.metric == name)
        .filter(|s| label.is_none_or(|(k, v)| s.labels.get(k) == Some(v)))
        .map(|s| match s.value {
            Value::Counter(v) | Value::Gauge(v) | Value::Untyped(v) => v,
            _ => panic!("{name} is not a number"),
        })
        .sum()
}

/// Scrapes `url` until the metric reads `want` (bounded by [`PATIENCE`]): what a connection's
/// end counts is counted once its task has finished, a moment after the client saw the close.
pub async fn wait_for_metric(
    url: &str,
    name: &str,
    label: Option<(&str, &str)>,
    want: f64,
) -> Vec<prometheus_parse::Sample> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let samples = scrape(url).await;
        let got = metric(&samples, name, label);
        if got == want {
            return samples;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{name} {label:?} stayed at {got}, not {want}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits (bounded by [`PATIENCE`]) until the server on the port answers 200 on `/readyz`: with
/// Redis, a node that listens may not have its pub/sub subscription yet, and refuses upgrades
/// with 503 until it has.
pub fn wait_ready(port: u16) {
    use std::io::{Read, Write};
    let deadline = std::time::Instant::now() + PATIENCE;
    let status = || -> Option<String> {
        let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
        tcp.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        tcp.write_all(b"GET /readyz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
            .ok()?;
        let mut head = [0u8; 12];
        tcp.read_exact(&mut head).ok()?;
        Some(String::from_utf8_lossy(&head[9..12]).into_owned())
    };
    loop {
        let last = status();
        if last.as_deref() == Some("200") {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "port {port} never answered 200 on /readyz (last: {last:?})"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Sends SIGTERM to a child process, as a deploy or `systemctl stop` does, and waits (bounded by
/// `patience`) for it to exit; `None` if it did not (it is then killed).
pub fn terminate(
    child: &mut std::process::Child,
    patience: Duration,
) -> Option<std::process::ExitStatus> {
    let sent = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(sent.success(), "SIGTERM could not be sent");
    let deadline = std::time::Instant::now() + patience;
    while std::time::Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    None
}
