//! "Ann is typing…": a `typing` frame goes to everyone in the room — across nodes through the
//! bus — and nowhere else: never stored, at most one per connection every few seconds, folded
//! on each node to one frame a second, and never after the message it was typing.

use crate::common;

use chorus::protocol::{ClientMsg, ServerMsg};
use common::{
    Client, Endpoint, TestServer,
    cluster::{Node, Redis},
    wait_for_metric,
};
use std::time::Duration;

async fn types(client: &mut Client) {
    client
        .send(&ClientMsg::Typing {
            room: "lobby".into(),
        })
        .await;
}

/// The names of every `typing` among `heard`, one list per frame.
fn typing(heard: &[ServerMsg]) -> Vec<Vec<String>> {
    heard
        .iter()
        .filter_map(|m| match m {
            ServerMsg::Typing { names, .. } => Some(names.clone()),
            _ => None,
        })
        .collect()
}

/// ann and cy type on `first`; bo reads on `second`.
async fn typing_reaches_the_room_and_stops_at_the_message(
    first: &impl Endpoint,
    second: &impl Endpoint,
    first_metrics: &str,
) {
    let (mut ann, _, _) = Client::in_room(first, "ann", "lobby").await;
    let (mut cy, _, _) = Client::in_room(first, "cy", "lobby").await;
    let (mut bo, _, _) = Client::in_room(second, "bo", "lobby").await;
    ann.drain().await;

    types(&mut ann).await;
    let heard = bo
        .recv_until(|m| matches!(m, ServerMsg::Typing { .. }))
        .await;
    assert_eq!(typing(&[heard]), [vec!["ann".to_owned()]]);

    // Again at once: too soon, dropped without an answer.
    types(&mut ann).await;
    wait_for_metric(first_metrics, "chorus_typing_dropped_total", None, 1.0).await;

    // cy's typing goes out at once; ann's, a moment after, waits for the room's next second…
    // and ann's message comes first: she is not said to be typing after it.
    // (After ann's few seconds, so that hers is passed on.)
    tokio::time::sleep(Duration::from_secs(3)).await;
    types(&mut cy).await;
    cy.recv_until(|m| matches!(m, ServerMsg::Typing { names, .. } if names == &["cy"]))
        .await;
    types(&mut ann).await;
    ann.say("lobby", "hi", "hi-1").await;
    bo.recv_until(|m| matches!(m, ServerMsg::Message(m) if m.text == "hi"))
        .await;
    let after = bo.listen_for(Duration::from_millis(1500)).await;
    assert!(
        typing(&after)
            .iter()
            .all(|names| !names.contains(&"ann".to_owned())),
        "typing after the message: {after:?}"
    );
    // Nothing of it was stored: a newcomer's history has the message only.
    let (_, _, history) = Client::in_room(second, "dee", "lobby").await;
    assert_eq!(
        history.iter().map(|m| m.text.as_str()).collect::<Vec<_>>(),
        ["hi"]
    );
}

#[tokio::test]
async fn typing_on_one_node() {
    let server = TestServer::start().await;
    let metrics = server.http_url("/metrics");
    typing_reaches_the_room_and_stops_at_the_message(&server, &server, &metrics).await;
}

#[tokio::test]
async fn typing_across_two_nodes() {
    let redis = Redis::start();
    let a = Node::start(&redis, "node-a");
    let b = Node::start(&redis, "node-b");
    typing_reaches_the_room_and_stops_at_the_message(&a, &b, &a.http_url("/metrics")).await;
}

/// Five people start typing at once: a reader gets one frame at once and the rest folded into
/// the next second's, at most three names in one (past two a page says "several").
#[tokio::test]
async fn many_typing_at_once_are_folded() {
    let server = TestServer::start().await;
    let (mut reader, _, _) = Client::in_room(&server, "reader", "lobby").await;
    let mut typists = Vec::new();
    for name in ["t1", "t2", "t3", "t4", "t5"] {
        typists.push(Client::in_room(&server, name, "lobby").await.0);
    }
    reader.drain().await;
    for t in &mut typists {
        types(t).await;
    }
    let heard = typing(&reader.listen_for(Duration::from_millis(2500)).await);
    assert!(!heard.is_empty() && heard.len() <= 3, "{heard:?}");
    assert!(heard.iter().all(|names| names.len() <= 3), "{heard:?}");
    assert_eq!(
        heard[0],
        ["t1"],
        "the first after a quiet spell goes at once"
    );
}

/// Typing is for members: a reader without a name, or a room not joined, is refused.
#[tokio::test]
async fn only_members_say_they_type() {
    let server = TestServer::start().await;
    let mut visitor = Client::connect(&server).await;
    types(&mut visitor).await;
    assert_eq!(visitor.next_error().await, "name_required");
    let mut ann = Client::named(&server, "ann").await;
    types(&mut ann).await;
    assert_eq!(ann.next_error().await, "not_in_room");
}
