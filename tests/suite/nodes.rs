//! Many nodes in this process on one in-memory store, as nodes share Redis: the cross-node
//! stories of `cluster.rs` without redis-server, each node a real server on its own port with
//! real WebSocket clients.

use crate::common;

use chorus::protocol::{Position, ServerMsg};
use chorus::server::config::Config;
use common::{Client, Ended, TestServer, memory_store};

/// `n` nodes on one store.
async fn nodes(n: usize) -> Vec<TestServer> {
    let store = memory_store(&Config::default());
    let mut nodes = Vec::new();
    for i in 0..n {
        let id = format!("node-{}", (b'a' + i as u8) as char);
        nodes.push(TestServer::on_store(store.clone(), &id, |_| {}).await);
    }
    nodes
}

#[tokio::test]
async fn a_message_sent_on_one_node_reaches_every_other_in_order_exactly_once() {
    let nodes = nodes(3).await;
    let (mut ann, _, _) = Client::in_room(&nodes[0], "ann", "lobby").await;
    let (mut bo, _, _) = Client::in_room(&nodes[1], "bo", "lobby").await;
    let (mut cy, _, _) = Client::in_room(&nodes[2], "cy", "lobby").await;
    ann.drain().await;
    bo.drain().await;

    const N: usize = 20;
    for i in 0..N {
        ann.say("lobby", &format!("m{i}"), &format!("c{i}")).await;
    }
    let expected: Vec<String> = (0..N).map(|i| format!("m{i}")).collect();
    for reader in [&mut bo, &mut cy] {
        common::assert_in_order_once(reader, &expected).await;
    }
}

#[tokio::test]
async fn names_members_and_history_are_one_whichever_node_is_asked() {
    let nodes = nodes(2).await;
    let (mut ann, _, _) = Client::in_room(&nodes[0], "ann", "lobby").await;
    for i in 0..3 {
        ann.say("lobby", &format!("h{i}"), &format!("c{i}")).await;
    }
    ann.drain().await;

    let (_bo, members_b, history_b) = Client::in_room(&nodes[1], "bo", "lobby").await;
    assert_eq!(members_b, ["ann", "bo"]);
    let (_cy, members_a, history_a) = Client::in_room(&nodes[0], "cy", "lobby").await;
    assert_eq!(members_a, ["ann", "bo", "cy"]);
    assert_eq!(history_a, history_b, "one history, whichever node is asked");

    // ann (on the first node) hears of bo (on the second).
    let list = ann
        .recv_until(|m| matches!(m, ServerMsg::Presence { members, .. } if members.len() == 3))
        .await;
    assert!(matches!(list, ServerMsg::Presence { members, .. } if members == ["ann", "bo", "cy"]));

    // A name held on one node is taken on the other, case-insensitively.
    let mut other = Client::connect(&nodes[1]).await;
    other.set_name("ANN").await;
    assert_eq!(other.next_error().await, "name_taken");
}

#[tokio::test]
async fn a_member_sent_away_by_a_draining_node_resumes_on_another_and_misses_nothing() {
    let store = memory_store(&Config::default());
    let leaving = TestServer::on_store(store.clone(), "node-a", |_| {}).await;
    let staying = TestServer::on_store(store.clone(), "node-b", |_| {}).await;
    let (mut ann, _, _) = Client::in_room(&leaving, "ann", "lobby").await;
    let (mut bo, _, _) = Client::in_room(&staying, "bo", "lobby").await;
    bo.say("lobby", "before", "b1").await;
    let last = ann.next_message().await;
    assert_eq!(last.text, "before");

    // The node drains (drain_ms = 0: at once); ann is told to go elsewhere.
    let shutdown = tokio::spawn(leaving.shutdown());
    assert_eq!(ann.until_closed().await, Ended::Closed(Some(1012)));
    bo.say("lobby", "while you moved", "b2").await;

    // ann comes back on the other node with its session, its name and the message it missed.
    let mut back = Client::connect(&staying).await;
    back.resume(&ann.session).await;
    assert!(matches!(back.recv().await, ServerMsg::Resumed { name: Some(n), .. } if n == "ann"));
    back.set_name("ann").await;
    assert!(matches!(back.recv().await, ServerMsg::NameSet { name } if name == "ann"));
    let since = Position {
        epoch: last.epoch.clone(),
        seq: last.seq,
    };
    let (members, missed, recovered) = back.join_since("lobby", Some(since)).await;
    assert_eq!(recovered, Some(true));
    let texts: Vec<&str> = missed.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, ["while you moved"]);
    assert_eq!(members, ["ann", "bo"], "one ann, not two");
    shutdown
        .await
        .expect("no panic")
        .expect("the drained node stops cleanly");
}
