//! Editing and deleting one's own messages: each change is a numbered entry of the room's
//! stream that names the message it changes, so it reaches every node and a client that was away
//! gets it with `since`. Only the author, only messages, only within the edit window.

use crate::common;

use chorus::protocol::{ChatMessage, ClientMsg, Position};
use common::{
    Client, Endpoint, TestServer,
    cluster::{Node, Redis},
};
use std::time::Duration;

async fn edit(client: &mut Client, m: &ChatMessage, text: &str) {
    client
        .send(&ClientMsg::Edit {
            room: "lobby".into(),
            epoch: m.epoch.clone(),
            seq: m.seq,
            text: text.into(),
            client_id: None,
        })
        .await;
}

async fn delete(client: &mut Client, m: &ChatMessage) {
    client
        .send(&ClientMsg::Delete {
            room: "lobby".into(),
            epoch: m.epoch.clone(),
            seq: m.seq,
            client_id: None,
        })
        .await;
}

/// ann writes on `first`; bo reads on `second`; cy is away while the message changes.
async fn changes_reach_everyone_and_those_who_were_away(
    first: &impl Endpoint,
    second: &impl Endpoint,
) {
    let (mut ann, _, _) = Client::in_room(first, "ann", "lobby").await;
    let (mut bo, _, _) = Client::in_room(second, "bo", "lobby").await;
    let (mut cy, _, _) = Client::in_room(second, "cy", "lobby").await;
    ann.say("lobby", "helo", "a1").await;
    let said = bo.next_message().await;
    assert_eq!(cy.next_message().await, said);
    let seen = Position {
        epoch: said.epoch.clone(),
        seq: said.seq,
    };
    cy.cut();

    // Not bo's to change.
    edit(&mut bo, &said, "hijacked").await;
    assert_eq!(bo.next_error().await, "not_yours");
    delete(&mut bo, &said).await;
    assert_eq!(bo.next_error().await, "not_yours");

    // ann's: the edit reaches bo on the other node, as a change of that message.
    edit(&mut ann, &said, "hello").await;
    let edited = bo.next_message().await;
    assert_eq!(
        (
            edited.edits,
            edited.deleted,
            edited.text.as_str(),
            edited.from.as_str()
        ),
        (Some(said.seq), false, "hello", "ann")
    );
    assert!(edited.seq > said.seq, "numbered in the stream");
    // A change is not a message to change.
    edit(&mut ann, &edited, "again").await;
    assert_eq!(ann.next_error().await, "no_such_message");
    let gone = ChatMessage {
        seq: 999,
        ..said.clone()
    };
    delete(&mut ann, &gone).await;
    assert_eq!(ann.next_error().await, "no_such_message");
    delete(&mut ann, &said).await;
    let deleted = bo.next_message().await;
    assert_eq!((deleted.edits, deleted.deleted), (Some(said.seq), true));
    assert_eq!(deleted.text, "");

    // cy was away for both: its recovery has them, in order.
    let mut cy = Client::named(second, "cy2").await;
    let (_, history, recovered) = cy.join_since("lobby", Some(seen)).await;
    assert_eq!(recovered, Some(true));
    let changes: Vec<_> = history
        .iter()
        .map(|m| (m.edits, m.deleted, m.text.as_str()))
        .collect();
    assert_eq!(
        changes,
        [(Some(said.seq), false, "hello"), (Some(said.seq), true, "")]
    );
}

#[tokio::test]
async fn edits_and_deletes_on_one_node() {
    let server = TestServer::start().await;
    changes_reach_everyone_and_those_who_were_away(&server, &server).await;
}

#[tokio::test]
async fn edits_and_deletes_across_two_nodes() {
    let redis = Redis::start();
    let a = Node::start(&redis, "node-a");
    let b = Node::start(&redis, "node-b");
    changes_reach_everyone_and_those_who_were_away(&a, &b).await;
}

/// Past the edit window a message stays as it was; the window is the server's to say.
#[tokio::test]
async fn the_edit_window_closes() {
    let server = TestServer::with(|c| c.rooms.edit_window_ms = Duration::from_millis(300)).await;
    let (mut ann, _, _) = Client::in_room(&server, "ann", "lobby").await;
    ann.say("lobby", "soon too late", "a1").await;
    let said = ann.next_message().await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    edit(&mut ann, &said, "changed").await;
    assert_eq!(ann.next_error().await, "edit_window_passed");
    delete(&mut ann, &said).await;
    assert_eq!(ann.next_error().await, "edit_window_passed");
    // And the welcome says how long it is.
    let limits = Client::connect(&server)
        .await
        .limits
        .expect("welcome's limits");
    assert_eq!(limits.edit_window_ms, 300);
}

/// A message belongs to who sent it, not to its name: another tab of the person (the same
/// session) may change it; someone who takes the name after the person left may not.
#[tokio::test]
async fn the_name_alone_does_not_make_a_message_yours() {
    let server = TestServer::start().await;
    let metrics = server.http_url("/metrics");
    let (mut ann, _, _) = Client::in_room(&server, "ann", "lobby").await;
    let (mut bo, _, _) = Client::in_room(&server, "bo", "lobby").await;
    ann.say("lobby", "mine", "a1").await;
    let said = bo.next_message().await;

    // ann's other tab.
    let mut tab = Client::connect(&server).await;
    tab.resume(&ann.session).await;
    tab.set_name("ann").await;
    tab.recv_until(|m| matches!(m, chorus::protocol::ServerMsg::NameSet { .. }))
        .await;
    tab.join("lobby").await;
    edit(&mut tab, &said, "mine, from my phone").await;
    assert_eq!(bo.next_message().await.text, "mine, from my phone");

    // ann leaves for good; eve takes the name.
    let open = common::metric(
        &common::scrape(&metrics).await,
        "chorus_connections_open",
        None,
    );
    tab.close().await;
    ann.close().await;
    common::wait_for_metric(&metrics, "chorus_connections_open", None, open - 2.0).await;
    let (mut eve, _, _) = Client::in_room(&server, "ann", "lobby").await;
    edit(&mut eve, &said, "not what ann said").await;
    assert_eq!(eve.next_error().await, "not_yours");
    delete(&mut eve, &said).await;
    assert_eq!(eve.next_error().await, "not_yours");
}

/// A rename does not take one's messages away: they stay the sender's to change.
#[tokio::test]
async fn after_a_rename_ones_messages_are_still_ones_own() {
    let server = TestServer::start().await;
    let (mut ann, _, _) = Client::in_room(&server, "ann", "lobby").await;
    ann.say("lobby", "as ann", "a1").await;
    let said = ann.next_message().await;
    ann.set_name("anna").await;
    ann.recv_until(|m| matches!(m, chorus::protocol::ServerMsg::NameSet { .. }))
        .await;
    edit(&mut ann, &said, "as anna now").await;
    let edited = ann.next_message().await;
    assert_eq!(
        (edited.edits, edited.text.as_str(), edited.from.as_str()),
        (Some(said.seq), "as anna now", "anna")
    );
}
