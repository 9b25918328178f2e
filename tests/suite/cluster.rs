//! Many nodes on one Redis: real redis-server, real `chorus` processes, real WebSocket clients.

use crate::common;

use chorus::protocol::ServerMsg;
use common::{
    Client, PATIENCE,
    cluster::{NODE_TTL_MS, Nginx, Node, Redis},
};
use std::time::{Duration, Instant};

fn two_nodes() -> (Redis, Node, Node) {
    let redis = Redis::start();
    let a = Node::start(&redis, "node-a");
    let b = Node::start(&redis, "node-b");
    (redis, a, b)
}

#[tokio::test]
async fn a_message_sent_on_one_node_reaches_the_other_in_order_exactly_once() {
    let (_redis, a, b) = two_nodes();
    let (mut ann, _, _) = Client::in_room(&a, "ann", "lobby").await;
    let (mut bo, _, _) = Client::in_room(&b, "bo", "lobby").await;
    ann.drain().await;

    const N: usize = 50;
    for i in 0..N {
        ann.say("lobby", &format!("m{i}"), &format!("c{i}")).await;
    }
    let expected: Vec<String> = (0..N).map(|i| format!("m{i}")).collect();
    common::assert_in_order_once(&mut bo, &expected).await;
}

#[tokio::test]
async fn names_members_and_history_look_the_same_from_both_nodes() {
    let (_redis, a, b) = two_nodes();
    let (mut ann, _, _) = Client::in_room(&a, "ann", "lobby").await;
    for i in 0..3 {
        ann.say("lobby", &format!("h{i}"), &format!("c{i}")).await;
    }
    ann.drain().await;

    let (_bo, members_b, history_b) = Client::in_room(&b, "bo", "lobby").await;
    assert_eq!(members_b, ["ann", "bo"]);
    let (_cy, members_a, history_a) = Client::in_room(&a, "cy", "lobby").await;
    assert_eq!(members_a, ["ann", "bo", "cy"]);
    assert_eq!(history_a, history_b, "one history, whichever node is asked");
    let texts: Vec<&str> = history_b.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, ["h0", "h1", "h2"]);

    // ann (on A) hears of bo (on B) and sees the same list.
    let list = ann
        .recv_until(|m| matches!(m, ServerMsg::Presence { members, .. } if members.len() == 3))
        .await;
    assert!(matches!(list, ServerMsg::Presence { members, .. } if members == ["ann", "bo", "cy"]));

    // A name held on A is taken on B, case-insensitively.
    let mut other = Client::connect(&b).await;
    other.set_name("ANN").await;
    assert_eq!(other.next_error().await, "name_taken");
}

#[tokio::test]
async fn a_killed_node_s_members_leave_every_list_within_the_bound() {
    let (_redis, a, mut b) = two_nodes();
    let (mut ann, _, _) = Client::in_room(&a, "ann", "lobby").await;
    let (_bo, _, _) = Client::in_room(&b, "bo", "lobby").await;
    ann.recv_until(|m| matches!(m, ServerMsg::Presence { members, .. } if members.len() == 2))
        .await;

    b.kill();
    let killed = Instant::now();
    assert_eq!(ann.next_left().await, "bo");
    ann.recv_until(|m| matches!(m, ServerMsg::Presence { members, .. } if *members == ["ann"]))
        .await;
    // The stated bound: the node TTL plus one heartbeat, with slack for a loaded machine.
    let took = killed.elapsed();
    assert!(
        took < Duration::from_millis(NODE_TTL_MS * 5),
        "ghost lingered {took:?}"
    );
    // A newcomer on A sees no ghost, and bo's name is free again.
    let (_cy, members, _) = Client::in_room(&a, "cy", "lobby").await;
    assert_eq!(members, ["ann", "cy"]);
    Client::named(&a, "bo").await;
}

#[tokio::test]
async fn after_a_redis_restart_delivery_resumes_without_restarting_nodes() {
    let (mut redis, a, b) = two_nodes();
    let (mut ann, _, _) = Client::in_room(&a, "ann", "lobby").await;
    let (mut bo, _, _) = Client::in_room(&b, "bo", "lobby").await;
    a.wait_ready_status(200, 1).await;

    redis.kill();
    a.wait_ready_status(503, 1).await;
    b.wait_ready_status(503, 1).await;
    // While Redis is gone a send is refused with a retryable error, never half-done.
    ann.say("lobby", "into the void", "lost").await;
    assert_eq!(ann.next_error().await, "internal");

    redis.restart();
    // Pub/sub reconnects with backoff (capped at 5 s) and re-subscribes by itself.
    a.wait_ready_status(200, 2).await;
    b.wait_ready_status(200, 2).await;
    ann.drain().await;
    bo.drain().await;
    ann.say("lobby", "back again", "c1").await;
    let m = bo.next_message().await;
    assert_eq!(m.text, "back again");
    bo.say("lobby", "welcome back", "c2").await;
    assert_eq!(ann.next_message().await.text, "back again");
    assert_eq!(ann.next_message().await.text, "welcome back");
    // What an operator sees of it.
    let seen = common::scrape(&a.http_url("/metrics")).await;
    assert_eq!(common::metric(&seen, "chorus_pubsub_lost_total", None), 1.0);
    assert!(common::metric(&seen, "chorus_resyncs_total", None) >= 1.0);
}

#[tokio::test]
async fn a_renamed_member_keeps_the_new_name_on_every_node_after_a_redis_restart() {
    let (mut redis, a, b) = two_nodes();
    let (mut ann, _, _) = Client::in_room(&a, "ann", "lobby").await;
    let (mut bo, _, _) = Client::in_room(&b, "bo", "lobby").await;
    ann.set_name("anna").await;
    ann.recv_until(|m| matches!(m, ServerMsg::NameSet { name } if name == "anna"))
        .await;
    let listed = |want: &'static [&'static str]| move |m: &ServerMsg| matches!(m, ServerMsg::Presence { members, .. } if members == want);
    bo.recv_until(listed(&["anna", "bo"])).await;

    // Each node re-asserts its members when its pub/sub link comes back.
    redis.kill();
    a.wait_ready_status(503, 1).await;
    b.wait_ready_status(503, 1).await;
    redis.restart();
    a.wait_ready_status(200, 2).await;
    b.wait_ready_status(200, 2).await;

    // A message after the restart reaching both nodes' members means both room tasks have
    // handled their resync (the bus queues it before any later event), re-assert included.
    ann.say("lobby", "still here", "c1").await;
    let m = bo.next_message().await;
    assert_eq!((m.from.as_str(), m.text.as_str()), ("anna", "still here"));
    assert_eq!(ann.next_message().await.text, "still here");

    // Newcomers on either node see the name as it is now, and the old one is free again.
    let (_cy, members, _) = Client::in_room(&a, "cy", "lobby").await;
    assert_eq!(members, ["anna", "bo", "cy"]);
    let (_di, members, _) = Client::in_room(&b, "di", "lobby").await;
    assert_eq!(members, ["anna", "bo", "cy", "di"]);
    Client::named(&b, "ann").await;
}

/// What a failover without `WAIT` can do: the new master lacks the room's last messages. The
/// room's numbering must go on after what the nodes delivered, or the next messages would reuse
/// those numbers and be dropped as already seen (here the nodes closed their members instead).
#[tokio::test]
async fn after_redis_lost_the_last_messages_the_next_ones_still_reach_everyone() {
    let (redis, a, b) = two_nodes();
    let (mut ann, _, _) = Client::in_room(&a, "ann", "lobby").await;
    let (mut bo, _, _) = Client::in_room(&b, "bo", "lobby").await;
    for i in 1..=5 {
        ann.say("lobby", &format!("m{i}"), &format!("c{i}")).await;
    }
    for c in [&mut ann, &mut bo] {
        for i in 1..=5 {
            assert_eq!(c.next_message().await.seq, i);
        }
    }
    // Redis forgets messages 3 to 5, as a promoted replica that had not received them would,
    // then the nodes' pub/sub links drop (as they do when the master changes).
    let client = redis::Client::open(redis.url()).expect("redis url");
    let mut conn = client.get_connection().expect("redis answers");
    let _: () = redis::pipe()
        .cmd("HSET")
        .arg("chorus:{r:lobby}:meta")
        .arg("seq")
        .arg(2)
        .cmd("LTRIM")
        .arg("chorus:{r:lobby}:history")
        .arg(0)
        .arg(1)
        .cmd("CLIENT")
        .arg("KILL")
        .arg("TYPE")
        .arg("pubsub")
        .query(&mut conn)
        .expect("redis answers");
    // Each room task resyncs, re-asserting first what it delivered: once that store call is
    // done (it is timed when it ends), the numbering is caught up on both nodes.
    for node in [&a, &b] {
        let url = node.http_url("/metrics");
        let reasserted = Some(("op", "reassert"));
        common::wait_for_metric(&url, "chorus_store_latency_seconds_count", reasserted, 1.0).await;
    }

    ann.say("lobby", "after the loss", "c6").await;
    for c in [&mut bo, &mut ann] {
        let m = c.next_message().await;
        assert_eq!(
            (m.text.as_str(), m.seq),
            ("after the loss", 6),
            "numbered after 5"
        );
    }
}

#[tokio::test]
async fn each_nodes_status_page_lists_every_live_node() {
    let (_redis, a, b) = two_nodes();
    let (_ann, _, _) = Client::in_room(&b, "ann", "lobby").await;
    // Nodes share their status every second, the first time as they start.
    let deadline = Instant::now() + PATIENCE;
    let report = loop {
        let report = common::status_json(&a.http_url("/status.json")).await;
        // A node reports itself every second; right after its start, Redis may not answer it yet.
        if report["nodes"].as_array().is_some_and(|n| n.len() == 2)
            && report["nodes"][1]["redis"] == true
        {
            break report;
        }
        assert!(Instant::now() < deadline, "node-b never listed: {report}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let nodes = &report["nodes"];
    assert_eq!(nodes[0]["node"], "node-a", "the node asked comes first");
    assert_eq!(nodes[0]["redis"], true);
    assert_eq!(nodes[1]["node"], "node-b");
    assert_eq!(nodes[1]["redis"], true);
    assert!(nodes[1]["version"].as_str().is_some_and(|v| !v.is_empty()));
}

#[tokio::test]
async fn a_dropped_session_is_resumed_on_another_node_with_its_name() {
    let (_redis, a, b) = two_nodes();
    let (ann, _, _) = Client::in_room(&a, "ann", "lobby").await;
    let session = ann.session.clone();
    ann.cut();

    // Someone else cannot grab the name meanwhile...
    let mut thief = Client::connect(&b).await;
    let deadline = Instant::now() + PATIENCE;
    thief.set_name("ann").await;
    assert_eq!(thief.next_error().await, "name_taken");
    assert!(Instant::now() < deadline);

    // ...but its owner, reconnecting to the other node, gets it back.
    let mut back = Client::connect(&b).await;
    back.resume(&session).await;
    match back.recv().await {
        ServerMsg::Resumed { session: s, name } => {
            assert_eq!(s, session);
            assert_eq!(name.as_deref(), Some("ann"));
        }
        other => panic!("expected resumed, got {other:?}"),
    }
    back.set_name("ann").await;
    assert!(matches!(back.recv().await, ServerMsg::NameSet { name } if name == "ann"));
    let (members, _) = back.join("lobby").await;
    assert_eq!(members, ["ann"], "one ann, not two");

    // A made-up session resumes nothing.
    let mut stranger = Client::connect(&a).await;
    stranger.resume(&"0".repeat(32)).await;
    assert_eq!(stranger.next_error().await, "unknown_session");
}

#[tokio::test]
async fn clients_behind_nginx_chat_across_nodes() {
    let (_redis, a, b) = two_nodes();
    let nginx = Nginx::start(&[&a, &b]);
    // least_conn spreads these over both nodes; whichever they land on, they must hear each other.
    let (mut ann, _, _) = Client::in_room(&nginx, "ann", "lobby").await;
    let (mut bo, _, _) = Client::in_room(&nginx, "bo", "lobby").await;
    ann.say("lobby", "through nginx", "c1").await;
    assert_eq!(bo.next_message().await.text, "through nginx");
    bo.say("lobby", "and back", "c2").await;
    assert_eq!(ann.next_message().await.text, "through nginx");
    assert_eq!(ann.next_message().await.text, "and back");
}

#[tokio::test]
async fn behind_nginx_the_chat_page_opens_sockets_and_other_sites_do_not() {
    let (_redis, a, b) = two_nodes();
    let nginx = Nginx::start(&[&a, &b]);
    // The page the browser loaded came from nginx's address, port included: the shipped
    // template passes the Host the browser sent, so the node sees the same origin.
    let page = common::Endpoint::ws_url(&nginx)
        .replace("ws://", "http://")
        .replace("/ws", "");
    let own = common::upgrade_status(&nginx, &[("origin", &page)]).await;
    assert_eq!(own.0, 101);
    let other = common::upgrade_status(&nginx, &[("origin", "http://evil.example")]).await;
    assert_eq!(other.0, 403);
}

#[tokio::test]
async fn a_node_told_to_stop_while_redis_is_down_still_stops() {
    let mut redis = Redis::start();
    let mut a = Node::start(&redis, "node-a");
    // Members whose leaves and releases the node cannot tell Redis when it stops.
    let mut members = Vec::new();
    for i in 0..300 {
        let mut client = Client::named(&a, &format!("m{i}")).await;
        client.join("lobby").await;
        members.push(client);
    }
    redis.kill();
    // Bounded (20 s): a node that waits on Redis to stop fails here ("did not exit"). It
    // stopped after 4 s (drain 0, grace 2 s, then 2 s to deregister), and never without the
    // bound on deregistering.
    a.terminate();
}
