//! Traffic through a room while things fail, and the count that proves nothing was lost.
//!
//! Each [`Participant`] is a client that behaves as the browser does: it reconnects (to the next
//! of its URLs) whenever its link ends, resumes its session, rejoins with the last `(epoch, seq)`
//! it has, and re-sends every message not yet acknowledged, with the same `client_id`. It records
//! every message frame it is given, in arrival order, without filtering anything out, so that
//! [`assert_exactly_once`] sees what the server really delivered.

use super::PATIENCE;
use chorus::protocol::{ClientMsg, ErrorCode, Position, ServerMsg};
use futures_util::{SinkExt, StreamExt};
use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::{Arc, Mutex},
    time::Duration,
};
use tokio::{
    net::TcpStream,
    sync::mpsc,
    time::{Instant, sleep, timeout},
};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async, tungstenite::Message};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What a participant saw and did, readable while it runs.
#[derive(Debug, Default, Clone)]
pub struct Record {
    pub name: String,
    /// Every `message` frame delivered (in `joined` or live), in arrival order: (epoch, seq,
    /// client_id).
    pub delivered: Vec<(String, u64, Option<String>)>,
    /// client_id → the seq its `ack` named.
    pub acked: HashMap<String, u64>,
    /// Messages it was to send, and how many it has sent (at least once).
    pub to_send: usize,
    pub sent: usize,
    /// Sent and not acknowledged yet.
    pub pending: usize,
    /// Connections opened (and got through `joined`).
    pub connections: usize,
    /// Rejoins whose `joined` said `recovered: true` / `false`.
    pub recovered: usize,
    pub incomplete: usize,
    /// `send`s the server refused for now (`internal`), to be re-sent.
    pub refused: usize,
}

impl Record {
    fn done(&self) -> bool {
        self.sent == self.to_send && self.pending == 0
    }
}

/// Something done to one participant from outside.
pub enum Fault {
    /// Drop the socket without a close frame and stay away this long.
    Cut(Duration),
}

pub struct Participant {
    pub record: Arc<Mutex<Record>>,
    faults: mpsc::UnboundedSender<Fault>,
    task: tokio::task::JoinHandle<()>,
}

impl Participant {
    /// Starts a participant that connects to `urls[0]` first (then the next on any failure) and
    /// sends `to_send` messages, one every `every`, once it is in `room`.
    pub fn start(
        name: &str,
        urls: Vec<String>,
        room: &str,
        to_send: usize,
        every: Duration,
    ) -> Self {
        Self::start_after(name, urls, room, to_send, every, Duration::ZERO)
    }

    /// As [`Participant::start`], but says nothing for `quiet` first.
    pub fn start_after(
        name: &str,
        urls: Vec<String>,
        room: &str,
        to_send: usize,
        every: Duration,
        quiet: Duration,
    ) -> Self {
        let record = Arc::new(Mutex::new(Record {
            name: name.to_owned(),
            to_send,
            ..Record::default()
        }));
        let (faults, fault_rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(
            Run {
                name: name.to_owned(),
                room: room.to_owned(),
                urls,
                every,
                record: record.clone(),
                session: None,
                position: None,
                pending: Vec::new(),
                next: 0,
                next_at: Instant::now() + quiet,
            }
            .run(fault_rx),
        );
        Self {
            record,
            faults,
            task,
        }
    }

    pub fn inject(&self, fault: Fault) {
        let _ = self.faults.send(fault);
    }

    pub fn snapshot(&self) -> Record {
        self.record.lock().expect("record lock").clone()
    }

    /// Has it connected and joined at least once?
    pub fn joined(&self) -> bool {
        self.snapshot().connections > 0
    }

    pub fn stop(self) -> Record {
        self.task.abort();
        self.snapshot()
    }
}

/// Waits until every participant is in the room (bounded).
pub async fn wait_joined(all: &[Participant]) {
    let deadline = Instant::now() + PATIENCE;
    while !all.iter().all(Participant::joined) {
        assert!(Instant::now() < deadline, "participants did not all join");
        sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until every message was sent and acknowledged, and every participant was given every
/// acknowledged message; then stops them all and returns their records. Bounded by `limit`.
pub async fn settle(all: Vec<Participant>, limit: Duration) -> Vec<Record> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(p) = all.iter().find(|p| p.task.is_finished()) {
            panic!("participant {} stopped (it panicked)", p.snapshot().name);
        }
        let records: Vec<Record> = all.iter().map(Participant::snapshot).collect();
        let acked: BTreeSet<u64> = records
            .iter()
            .flat_map(|r| r.acked.values().copied())
            .collect();
        let complete = records.iter().all(|r| {
            r.done() && {
                let got: BTreeSet<u64> = r.delivered.iter().map(|d| d.1).collect();
                acked.is_subset(&got)
            }
        });
        if complete {
            break;
        }
        if Instant::now() >= deadline {
            let summary: Vec<String> = records
                .iter()
                .map(|r| {
                    let got: BTreeSet<u64> = r.delivered.iter().map(|d| d.1).collect();
                    let missing: Vec<u64> = acked.difference(&got).copied().collect();
                    format!(
                        "{}: sent {}/{}, pending {}, delivered {}, connections {}, missing {:?}",
                        r.name,
                        r.sent,
                        r.to_send,
                        r.pending,
                        r.delivered.len(),
                        r.connections,
                        missing
                    )
                })
                .collect();
            panic!(
                "traffic did not settle within {limit:?} ({} acked): {summary:#?}",
                acked.len()
            );
        }
        sleep(Duration::from_millis(50)).await;
    }
    all.into_iter().map(Participant::stop).collect()
}

/// The promise, counted: every message was acknowledged exactly once under one seq, nothing was
/// stored twice, and every participant was given every acknowledged message exactly once, in
/// `seq` order, and nothing else.
pub fn assert_exactly_once(records: &[Record]) {
    let mut by_seq: BTreeMap<u64, &str> = BTreeMap::new();
    let mut expected = 0;
    for r in records {
        expected += r.to_send;
        assert_eq!(
            r.acked.len(),
            r.to_send,
            "{}: not every message acked",
            r.name
        );
        for (id, seq) in &r.acked {
            if let Some(other) = by_seq.insert(*seq, id) {
                panic!("seq {seq} acknowledged for both {other} and {id}");
            }
        }
    }
    assert_eq!(by_seq.len(), expected, "every message has its own seq");
    let acked: Vec<u64> = by_seq.keys().copied().collect();
    for r in records {
        let epochs: BTreeSet<&str> = r.delivered.iter().map(|d| d.0.as_str()).collect();
        assert_eq!(epochs.len(), 1, "{}: messages of several epochs", r.name);
        let seqs: Vec<u64> = r.delivered.iter().map(|d| d.1).collect();
        if let Some(w) = seqs.windows(2).find(|w| w[1] <= w[0]) {
            panic!(
                "{}: delivered out of order or twice: {} then {} (of {} deliveries, {} connections)",
                r.name,
                w[0],
                w[1],
                seqs.len(),
                r.connections
            );
        }
        assert_eq!(
            seqs, acked,
            "{}: delivered exactly the acknowledged messages",
            r.name
        );
        for (_, seq, id) in &r.delivered {
            assert_eq!(
                id.as_deref(),
                by_seq.get(seq).copied(),
                "{}: seq {seq} carries another message",
                r.name
            );
        }
    }
}

struct Run {
    name: String,
    room: String,
    urls: Vec<String>,
    every: Duration,
    record: Arc<Mutex<Record>>,
    session: Option<String>,
    position: Option<Position>,
    /// Unacknowledged (client_id, text, last sent), oldest first.
    pending: Vec<(String, String, Instant)>,
    /// The next message to send, and when.
    next: usize,
    next_at: Instant,
}

/// How a connection ended.
enum End {
    Lost,
    Away(Duration),
}

/// Re-sends what is unacknowledged this long after it was last sent.
const RESEND_AFTER: Duration = Duration::from_millis(500);

impl Run {
    fn note(&self, f: impl FnOnce(&mut Record)) {
        f(&mut self.record.lock().expect("record lock"));
    }

    async fn run(mut self, mut faults: mpsc::UnboundedReceiver<Fault>) {
        let mut attempt = 0usize;
        loop {
            let url = self.urls[attempt % self.urls.len()].clone();
            let end = match self.connect(&url).await {
                Some(ws) => self.serve(ws, &mut faults).await,
                None => End::Lost,
            };
            attempt += 1;
            let pause = match end {
                End::Away(d) => d,
                // Like the browser: a short, jittered pause before the next try.
                End::Lost => Duration::from_millis(50 + rand::random::<u64>() % 200),
            };
            sleep(pause).await;
        }
    }

    /// Opens a connection and gets it into the room: welcome, resume, name, join since.
    async fn connect(&mut self, url: &str) -> Option<Ws> {
        let (mut ws, _) = timeout(PATIENCE, connect_async(url)).await.ok()?.ok()?;
        let ServerMsg::Welcome { session, .. } = recv(&mut ws).await? else {
            return None;
        };
        if let Some(old) = self.session.clone() {
            send(&mut ws, &ClientMsg::Resume { session: old }).await?;
            match recv(&mut ws).await? {
                ServerMsg::Resumed { .. } => {}
                ServerMsg::Error {
                    code: ErrorCode::UnknownSession,
                    ..
                } => self.session = Some(session),
                _ => return None,
            }
        } else {
            self.session = Some(session);
        }
        let name = self.name.clone();
        send(&mut ws, &ClientMsg::SetName { name }).await?;
        let ServerMsg::NameSet { .. } = recv(&mut ws).await? else {
            return None;
        };
        let join = ClientMsg::Join {
            room: self.room.clone(),
            since: self.position.clone(),
            presence_changes: false,
        };
        send(&mut ws, &join).await?;
        loop {
            match recv(&mut ws).await? {
                ServerMsg::Joined {
                    history, recovered, ..
                } => {
                    for m in history {
                        self.delivered(m.epoch, m.seq, m.client_id);
                    }
                    self.note(|r| {
                        r.connections += 1;
                        match recovered {
                            Some(true) => r.recovered += 1,
                            Some(false) => r.incomplete += 1,
                            None => {}
                        }
                    });
                    break;
                }
                ServerMsg::Error { .. } => return None,
                _ => {}
            }
        }
        // Whatever the last link may have lost goes again.
        self.resend(&mut ws, Duration::ZERO).await?;
        Some(ws)
    }

    /// Sends again every unacknowledged message last sent at least `after` ago.
    async fn resend(&mut self, ws: &mut Ws, after: Duration) -> Option<()> {
        let (now, room) = (Instant::now(), &self.room);
        let due: Vec<ClientMsg> = self
            .pending
            .iter_mut()
            .filter(|p| now - p.2 >= after)
            .map(|p| {
                p.2 = now;
                send_frame(room, p.0.clone(), p.1.clone())
            })
            .collect();
        for frame in &due {
            send(ws, frame).await?;
        }
        Some(())
    }

    fn delivered(&mut self, epoch: String, seq: u64, id: Option<String>) {
        self.position = Some(Position {
            epoch: epoch.clone(),
            seq,
        });
        self.note(|r| r.delivered.push((epoch, seq, id)));
    }

    async fn serve(&mut self, mut ws: Ws, faults: &mut mpsc::UnboundedReceiver<Fault>) -> End {
        let to_send = self.record.lock().expect("record lock").to_send;
        // After time away, carry on at the same pace rather than in a burst.
        self.next_at = self.next_at.max(Instant::now());
        let mut resend_check = tokio::time::interval(RESEND_AFTER / 2);
        loop {
            tokio::select! {
                frame = ws.next() => match frame {
                    Some(Ok(Message::Text(text))) => {
                        let Ok(msg) = serde_json::from_str::<ServerMsg>(&text) else {
                            panic!("{}: undecodable frame {text}", self.name);
                        };
                        self.handle(msg);
                    }
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return End::Lost,
                    Some(Ok(_)) => {}
                },
                _ = tokio::time::sleep_until(self.next_at), if self.next < to_send => {
                    let id = format!("{}-{}", self.name, self.next);
                    let text = format!("message {} from {}", self.next, self.name);
                    self.next += 1;
                    self.pending.push((id.clone(), text.clone(), Instant::now()));
                    let (sent, pending) = (self.next, self.pending.len());
                    self.note(|r| {
                        r.sent = sent;
                        r.pending = pending;
                    });
                    self.next_at += self.every;
                    if send(&mut ws, &send_frame(&self.room, id, text)).await.is_none() {
                        return End::Lost;
                    }
                }
                _ = resend_check.tick() => {
                    if self.resend(&mut ws, RESEND_AFTER).await.is_none() {
                        return End::Lost;
                    }
                }
                fault = faults.recv() => match fault {
                    Some(Fault::Cut(away)) => {
                        drop(ws);
                        return End::Away(away);
                    }
                    None => std::future::pending::<()>().await,
                },
            }
        }
    }

    fn handle(&mut self, msg: ServerMsg) {
        match msg {
            ServerMsg::Message(m) => self.delivered(m.epoch, m.seq, m.client_id),
            ServerMsg::Ack {
                client_id: Some(id),
                seq,
                ..
            } => {
                self.pending.retain(|p| p.0 != id);
                let pending = self.pending.len();
                self.note(|r| {
                    if let Some(first) = r.acked.insert(id.clone(), seq) {
                        assert_eq!(first, seq, "{id} acknowledged under two seqs");
                    }
                    r.pending = pending;
                });
            }
            ServerMsg::Error {
                code: ErrorCode::Internal,
                ..
            } => self.note(|r| r.refused += 1),
            ServerMsg::Error { code, message, .. } => {
                panic!("{}: unexpected error {code}: {message}", self.name)
            }
            _ => {}
        }
    }
}

fn send_frame(room: &str, id: String, text: String) -> ClientMsg {
    ClientMsg::Send {
        room: room.to_owned(),
        text,
        client_id: Some(id),
    }
}

async fn send(ws: &mut Ws, msg: &ClientMsg) -> Option<()> {
    let json = serde_json::to_string(msg).expect("serializes");
    ws.send(Message::text(json)).await.ok()
}

/// The next server frame, or `None` if the link ends or nothing comes in time.
async fn recv(ws: &mut Ws) -> Option<ServerMsg> {
    loop {
        match timeout(PATIENCE, ws.next()).await.ok()?? {
            Ok(Message::Text(text)) => return serde_json::from_str(&text).ok(),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => continue,
        }
    }
}
