//! A room's long history: `joined` sends the newest window, `history` pages back to the first
//! stored message, a reconnect recovers more than the window, and the stores keep their bounds
//! (messages and bytes) — on one node, and on two node processes sharing a real redis-server.

use crate::common;

use chorus::protocol::{ChatMessage, ClientMsg, Position, ServerMsg};
use common::{
    Client, Endpoint, TestServer,
    cluster::{Node, Redis},
};

/// Flags that lift a node process's send limits: these tests' writers are load generators.
const UNLIMITED: [&str; 4] = ["--sends-per-sec", "0", "--bytes-per-sec", "0"];

/// Says `n` messages `m1`…`mn` (each `pad` long at least) in `room` and waits until the last one
/// comes back.
async fn fill(writer: &mut Client, room: &str, n: usize, pad: usize) -> String {
    for i in 1..=n {
        let text = format!("m{i:x<pad$}");
        writer.say(room, &text, &format!("c{i}")).await;
    }
    let last = format!("c{n}");
    loop {
        let m = writer.next_message().await;
        if m.client_id.as_deref() == Some(last.as_str()) {
            return m.epoch;
        }
    }
}

/// One `history` page: its epoch, the `seq`s of its messages and whether older ones exist.
async fn page(
    client: &mut Client,
    room: &str,
    before: Option<Position>,
    limit: Option<u32>,
) -> (Option<String>, Vec<ChatMessage>, bool) {
    client
        .send(&ClientMsg::History {
            room: room.into(),
            before,
            limit,
        })
        .await;
    match client
        .recv_until(|m| matches!(m, ServerMsg::History { .. } | ServerMsg::Error { .. }))
        .await
    {
        ServerMsg::History {
            epoch,
            messages,
            more,
            ..
        } => (epoch, messages, more),
        other => panic!("expected history, got {other:?}"),
    }
}

fn seqs(messages: &[ChatMessage]) -> Vec<u64> {
    messages.iter().map(|m| m.seq).collect()
}

fn at(epoch: &str, seq: u64) -> Option<Position> {
    Some(Position {
        epoch: epoch.into(),
        seq,
    })
}

/// 130 messages written on `a`, read back on `b`: the newest 50 on join, then pages of 50
/// before them down to the first; a reconnect 70 messages behind recovers them all.
async fn read_back_to_the_first_message(a: &impl Endpoint, b: &impl Endpoint) {
    let (mut writer, _, _) = Client::in_room(a, "ann", "lobby").await;
    let epoch = fill(&mut writer, "lobby", 130, 0).await;

    let (mut reader, _, history) = Client::in_room(b, "bo", "lobby").await;
    assert_eq!(
        seqs(&history),
        (81..=130).collect::<Vec<_>>(),
        "the newest window"
    );
    let (got, older, more) = page(&mut reader, "lobby", at(&epoch, 81), None).await;
    assert_eq!(got.as_deref(), Some(epoch.as_str()));
    assert_eq!((seqs(&older), more), ((31..=80).collect(), true));
    assert_eq!(older[0].text, "m31");
    let (_, oldest, more) = page(&mut reader, "lobby", at(&epoch, 31), Some(50)).await;
    assert_eq!((seqs(&oldest), more), ((1..=30).collect(), false));
    let (_, none, more) = page(&mut reader, "lobby", at(&epoch, 1), None).await;
    assert_eq!((none.len(), more), (0, false), "nothing before the first");
    // Without a position: the newest.
    let (_, newest, more) = page(&mut reader, "lobby", None, Some(3)).await;
    assert_eq!((seqs(&newest), more), (vec![128, 129, 130], true));
    // A position from another life of the room has nothing before it here.
    let (got, stale, more) = page(&mut reader, "lobby", at("gone", 90), None).await;
    assert_eq!(
        (got.as_deref(), stale.len(), more),
        (Some(epoch.as_str()), 0, false)
    );

    // Seventy behind (more than the window): all of them recovered.
    let mut back = Client::named(b, "cy").await;
    let (_, missed, recovered) = back.join_since("lobby", at(&epoch, 60)).await;
    assert_eq!(recovered, Some(true));
    assert_eq!(seqs(&missed), (61..=130).collect::<Vec<_>>());

    // Only a member may read a room.
    reader
        .send(&ClientMsg::History {
            room: "elsewhere".into(),
            before: None,
            limit: None,
        })
        .await;
    assert_eq!(reader.next_error().await, "not_in_room");
}

#[tokio::test]
async fn one_node_pages_back_to_the_first_message() {
    let server = TestServer::with(common::unlimited).await;
    read_back_to_the_first_message(&server, &server).await;
}

#[tokio::test]
async fn two_node_processes_on_redis_page_back_to_the_first_message() {
    let redis = Redis::start();
    let a = Node::start_with(&redis, "node-a", &UNLIMITED);
    let b = Node::start_with(&redis, "node-b", &UNLIMITED);
    read_back_to_the_first_message(&a, &b).await;
}

#[tokio::test]
async fn pages_are_capped_and_the_history_keeps_to_its_count() {
    let server = TestServer::with(|c| {
        common::unlimited(c);
        c.rooms.history_size = 220;
    })
    .await;
    let (mut writer, _, _) = Client::in_room(&server, "ann", "lobby").await;
    let epoch = fill(&mut writer, "lobby", 250, 0).await;
    // At most 200 a page, however many are asked for.
    let (_, newest, more) = page(&mut writer, "lobby", None, Some(10_000)).await;
    assert_eq!((seqs(&newest), more), ((51..=250).collect(), true));
    // The 220 newest are kept: 31 is the first.
    let (_, rest, more) = page(&mut writer, "lobby", at(&epoch, 51), Some(200)).await;
    assert_eq!((seqs(&rest), more), ((31..=50).collect(), false));
    // A reconnect further back than what is kept is told of the gap.
    let mut late = Client::named(&server, "bo").await;
    let (_, history, recovered) = late.join_since("lobby", at(&epoch, 10)).await;
    assert_eq!(recovered, Some(false));
    assert_eq!(seqs(&history), (201..=250).collect::<Vec<_>>());
}

/// Long messages: the history keeps to `history_bytes`, whatever `history_size` allows.
async fn keeps_to_its_bytes(node: &impl Endpoint) {
    let (mut writer, _, _) = Client::in_room(node, "ann", "lobby").await;
    // Forty messages of 4,000 bytes into 65,536 bytes of history: about fifteen fit.
    fill(&mut writer, "lobby", 40, 3990).await;
    let (_, kept, more) = page(&mut writer, "lobby", None, Some(200)).await;
    assert!(!more);
    assert!(
        (12..=16).contains(&kept.len()),
        "{} messages kept in 64 KiB",
        kept.len()
    );
    assert_eq!(kept.last().map(|m| m.seq), Some(40), "the newest are kept");
}

#[tokio::test]
async fn one_node_keeps_a_room_s_history_to_its_bytes() {
    let server = TestServer::with(|c| {
        common::unlimited(c);
        c.rooms.history_bytes = 64 * 1024;
    })
    .await;
    keeps_to_its_bytes(&server).await;
}

#[tokio::test]
async fn redis_keeps_a_room_s_history_to_its_bytes() {
    let redis = Redis::start();
    let mut flags = UNLIMITED.to_vec();
    flags.extend(["--history-bytes", "65536"]);
    let node = Node::start_with(&redis, "node-a", &flags);
    keeps_to_its_bytes(&node).await;
}
