//! A page that reloads, or a link that drops for a moment, is not announced: the member stays
//! in its rooms for `leave_grace_ms`, and a client that resumes its session and joins again
//! within it (on any node) comes back without a left/joined pair. One that does not come back
//! is announced as left once the grace is over; a close on purpose is announced at once.

use crate::common;

use chorus::protocol::{ClientMsg, ServerMsg};
use common::{
    Client, Endpoint, TestServer,
    cluster::{Node, Redis},
    notices,
};
use std::time::{Duration, Instant};

const GRACE: Duration = Duration::from_millis(1500);

/// bo's page goes away on `first` and comes back on `second`, resuming its session: ann, who
/// watches on `first`, hears nothing of it, before or after the grace.
async fn a_reload_is_not_announced(first: &impl Endpoint, second: &impl Endpoint) {
    let (mut ann, _, _) = Client::in_room(first, "ann", "lobby").await;
    let (bo, _, _) = Client::in_room(first, "bo", "lobby").await;
    ann.drain().await;
    let session = bo.session.clone();
    bo.go_away().await;

    let mut back = Client::connect(second).await;
    back.resume(&session).await;
    assert!(matches!(back.recv().await, ServerMsg::Resumed { .. }));
    back.set_name("bo").await;
    let (members, _) = back.join("lobby").await;
    assert_eq!(members, ["ann", "bo"]);
    // Past the grace: the old connection's leave came to nothing.
    tokio::time::sleep(GRACE + Duration::from_millis(500)).await;
    let heard = ann.heard_until_said("after the grace").await;
    assert_eq!(notices(&heard), [], "{heard:?}");
    // bo is still there, and hears the room.
    back.recv_until(|m| matches!(m, ServerMsg::Message(m) if m.text == "after the grace"))
        .await;
}

#[tokio::test]
async fn one_node_does_not_announce_a_reload() {
    let server = TestServer::with(|c| c.rooms.leave_grace_ms = GRACE).await;
    a_reload_is_not_announced(&server, &server).await;
}

#[tokio::test]
async fn a_reload_onto_another_node_is_not_announced() {
    let redis = Redis::start();
    let flags = ["--leave-grace-ms", "1500"];
    let a = Node::start_with(&redis, "node-a", &flags);
    let b = Node::start_with(&redis, "node-b", &flags);
    a_reload_is_not_announced(&a, &b).await;
}

#[tokio::test]
async fn a_page_that_does_not_come_back_is_announced_after_the_grace_and_a_close_at_once() {
    let server = TestServer::with(|c| c.rooms.leave_grace_ms = GRACE).await;
    let (mut ann, _, _) = Client::in_room(&server, "ann", "lobby").await;
    let (bo, _, _) = Client::in_room(&server, "bo", "lobby").await;
    let (cy, _, _) = Client::in_room(&server, "cy", "lobby").await;
    ann.drain().await;

    let gone = Instant::now();
    bo.go_away().await;
    assert_eq!(ann.next_left().await, "bo");
    assert!(
        gone.elapsed() >= GRACE,
        "announced before the grace was over"
    );
    let closed = Instant::now();
    cy.close().await;
    assert_eq!(ann.next_left().await, "cy");
    assert!(
        closed.elapsed() < GRACE,
        "a close on purpose waits for nothing"
    );
}

#[tokio::test]
async fn a_member_is_listed_while_its_page_may_still_come_back() {
    let server = TestServer::with(|c| c.rooms.leave_grace_ms = GRACE).await;
    let (_ann, _, _) = Client::in_room(&server, "ann", "lobby").await;
    let (bo, _, _) = Client::in_room(&server, "bo", "lobby").await;
    bo.cut();
    let mut late = Client::named(&server, "dee").await;
    late.send(&ClientMsg::join("lobby")).await;
    let (members, _) = match late
        .recv_until(|m| matches!(m, ServerMsg::Joined { .. }))
        .await
    {
        ServerMsg::Joined {
            members, history, ..
        } => (members, history),
        _ => unreachable!(),
    };
    assert_eq!(members, ["ann", "bo", "dee"]);
}
