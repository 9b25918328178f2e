//! Reading before taking part: a connection without a name that joins a room gets its members,
//! count and newest messages and then its live events — and is not a member: nobody is told,
//! nothing is stored, it cannot send. Picking a name and joining makes it one.

use crate::common;

use chorus::protocol::{ClientMsg, NoticeKind, ServerMsg};
use common::{
    Client, Endpoint, TestServer,
    cluster::{Node, Redis},
};

/// A connection without a name, reading the lobby.
async fn reading_the_lobby(server: &TestServer) -> Client {
    let mut visitor = Client::connect(server).await;
    visitor.send(&ClientMsg::join("lobby")).await;
    visitor
        .recv_until(|m| matches!(m, ServerMsg::Joined { .. }))
        .await;
    visitor
}

fn announced(heard: &[ServerMsg]) -> bool {
    heard
        .iter()
        .any(|m| matches!(m, ServerMsg::Notice { .. } | ServerMsg::Presence { .. }))
}

async fn a_visitor_reads_without_taking_part(a: &impl Endpoint, b: &impl Endpoint) {
    let (mut ann, _, _) = Client::in_room(a, "ann", "lobby").await;
    for i in 1..=3 {
        ann.say("lobby", &format!("before {i}"), &format!("b{i}"))
            .await;
    }
    ann.heard_until_said("settled").await;

    let mut visitor = Client::connect(b).await;
    visitor.send(&ClientMsg::join("lobby")).await;
    let ServerMsg::Joined {
        members,
        count,
        history,
        ..
    } = visitor
        .recv_until(|m| matches!(m, ServerMsg::Joined { .. }))
        .await
    else {
        unreachable!()
    };
    assert_eq!((members, count), (vec!["ann".to_owned()], 1), "not counted");
    let texts: Vec<_> = history.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, ["before 1", "before 2", "before 3", "settled"]);

    // Nobody hears of a reader; the reader hears the room.
    let heard = ann.heard_until_said("live").await;
    assert!(!announced(&heard), "{heard:?}");
    let live = visitor.next_message().await;
    assert_eq!(live.text, "live");
    // It may page the room, but not speak in it.
    visitor
        .send(&ClientMsg::History {
            room: "lobby".into(),
            before: None,
            limit: Some(2),
        })
        .await;
    assert!(matches!(
        visitor.recv_until(|m| matches!(m, ServerMsg::History { .. })).await,
        ServerMsg::History { messages, .. } if messages.len() == 2
    ));
    visitor.say("lobby", "hello?", "v1").await;
    assert_eq!(visitor.next_error().await, "name_required");

    // With a name and a join it takes part, and is announced.
    visitor.set_name("vi").await;
    let (members, _) = visitor.join("lobby").await;
    assert_eq!(members, ["ann", "vi"]);
    let joined = ann
        .recv_until(|m| matches!(m, ServerMsg::Notice { .. }))
        .await;
    assert!(matches!(
        joined,
        ServerMsg::Notice { kind: NoticeKind::Joined, name, .. } if name == "vi"
    ));
    visitor.say("lobby", "hello!", "v2").await;
    assert_eq!(ann.next_message().await.text, "hello!");
}

#[tokio::test]
async fn one_node_lets_a_visitor_read_before_it_takes_part() {
    let server = TestServer::with(common::unlimited).await;
    a_visitor_reads_without_taking_part(&server, &server).await;
}

#[tokio::test]
async fn a_visitor_on_another_node_reads_the_room_through_redis() {
    let redis = Redis::start();
    let flags = ["--sends-per-sec", "0", "--bytes-per-sec", "0"];
    let a = Node::start_with(&redis, "node-a", &flags);
    let b = Node::start_with(&redis, "node-b", &flags);
    a_visitor_reads_without_taking_part(&a, &b).await;
}

#[tokio::test]
async fn a_reader_that_goes_is_not_announced_and_opens_no_room() {
    // Each connection may open one room a minute: ann opens the lobby, and then can only join
    // rooms that exist.
    let server = TestServer::with(|c| c.limits.rooms_created_per_min = 1).await;
    let (mut ann, _, _) = Client::in_room(&server, "ann", "lobby").await;
    let mut visitor = reading_the_lobby(&server).await;
    // A room nobody opened stays unopened: read, it is empty; it does not count as created.
    visitor.send(&ClientMsg::join("nowhere")).await;
    let empty = visitor
        .recv_until(|m| matches!(m, ServerMsg::Joined { .. }))
        .await;
    assert!(matches!(
        empty,
        ServerMsg::Joined { count: 0, ref history, .. } if history.is_empty()
    ));
    visitor.close().await;
    let heard = ann.heard_until_said("after").await;
    assert!(!announced(&heard), "{heard:?}");
    // Had the reader opened "nowhere", ann could join it now.
    ann.send(&ClientMsg::join("nowhere")).await;
    assert_eq!(ann.next_error().await, "too_many_rooms");
}

#[tokio::test]
async fn a_reader_that_takes_a_name_must_join_before_it_speaks() {
    let server = TestServer::start().await;
    let (mut ann, _, _) = Client::in_room(&server, "ann", "lobby").await;
    let mut visitor = reading_the_lobby(&server).await;
    visitor.set_name("vi").await;
    visitor
        .recv_until(|m| matches!(m, ServerMsg::NameSet { .. }))
        .await;
    // Named, but still only reading: not a member, so not heard.
    visitor.say("lobby", "unannounced", "v1").await;
    assert_eq!(visitor.next_error().await, "not_in_room");
    let heard = ann.heard_until_said("after").await;
    assert!(!announced(&heard), "{heard:?}");
}
