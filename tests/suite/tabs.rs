//! Several tabs of one browser are one person: each tab's connection resumes the one session,
//! which is then one member of its rooms (joined once, renamed once, left with its last tab) and
//! holds its name while any tab is open — on one node, and with the tabs on two nodes.

use crate::common;

use chorus::protocol::{NoticeKind, ServerMsg};
use common::{
    Client, Endpoint, TestServer,
    cluster::{Node, Redis},
    metric, notices, scrape, wait_for_metric,
};

/// Another tab's connection resumes the session of `of` and takes its name, as the same person.
async fn hold(tab: &mut Client, of: &Client, name: &str) {
    tab.resume(&of.session).await;
    match tab
        .recv_until(|m| matches!(m, ServerMsg::Resumed { .. } | ServerMsg::Error { .. }))
        .await
    {
        ServerMsg::Resumed { name: got, .. } => assert_eq!(got.as_deref(), Some(name)),
        other => panic!("expected resumed, got {other:?}"),
    }
    rename(tab, name).await;
}

/// Sets the name and waits for the answer: it must be granted.
async fn rename(tab: &mut Client, name: &str) {
    tab.set_name(name).await;
    let answer = tab
        .recv_until(|m| matches!(m, ServerMsg::NameSet { .. } | ServerMsg::Error { .. }))
        .await;
    assert!(matches!(answer, ServerMsg::NameSet { .. }), "{answer:?}");
}

/// Closes `tab` and waits until its node (metrics at `metrics`) has finished with it: left its
/// rooms and let go of its session.
async fn close_tab(tab: Client, metrics: &str) {
    let open = metric(&scrape(metrics).await, "chorus_connections_open", None);
    tab.close().await;
    wait_for_metric(metrics, "chorus_connections_open", None, open - 1.0).await;
}

/// ann has a tab on `first` and one on `second`; cy watches on `first`.
async fn two_tabs_are_one_person(
    first: &impl Endpoint,
    second: &impl Endpoint,
    (first_metrics, second_metrics): (&str, &str),
) {
    let (tab1, _, _) = Client::in_room(first, "ann", "lobby").await;
    let (mut cy, _, _) = Client::in_room(first, "cy", "lobby").await;
    let mut tab2 = Client::connect(second).await;
    hold(&mut tab2, &tab1, "ann").await;
    let (members, _) = tab2.join("lobby").await;
    assert_eq!(members, ["ann", "cy"], "one ann");
    let mut tab1 = tab1;

    // Nobody else takes the name meanwhile.
    let mut dee = Client::connect(second).await;
    dee.set_name("ann").await;
    assert_eq!(dee.next_error().await, "name_taken");

    // Renamed in one tab; the other tab says it too (as the page's other tabs do): once.
    rename(&mut tab1, "bo").await;
    rename(&mut tab2, "bo").await;
    // The old name is free.
    rename(&mut dee, "ann").await;

    // The tab that came last closes: the person stays, with the name.
    close_tab(tab2, second_metrics).await;
    dee.set_name("bo").await;
    assert_eq!(dee.next_error().await, "name_taken");
    let heard = cy.heard_until_said("one tab closed").await;
    assert_eq!(
        notices(&heard),
        [(NoticeKind::Renamed, "bo".into())],
        "{heard:?}"
    );
    tab1.recv_until(|m| matches!(m, ServerMsg::Message(m) if m.text == "one tab closed"))
        .await;

    // The last tab closes: the person leaves, and the name is free.
    close_tab(tab1, first_metrics).await;
    assert_eq!(cy.next_left().await, "bo");
    rename(&mut dee, "bo").await;
}

#[tokio::test]
async fn two_tabs_on_one_node_are_one_person() {
    let server = TestServer::start().await;
    let metrics = server.http_url("/metrics");
    two_tabs_are_one_person(&server, &server, (&metrics, &metrics)).await;
}

#[tokio::test]
async fn two_tabs_on_two_nodes_are_one_person() {
    let redis = Redis::start();
    let a = Node::start(&redis, "node-a");
    let b = Node::start(&redis, "node-b");
    let metrics = (a.http_url("/metrics"), b.http_url("/metrics"));
    two_tabs_are_one_person(&a, &b, (&metrics.0, &metrics.1)).await;
}

/// A tab opened before the name was picked reads the room; once another tab has the name, it
/// resumes that session and takes part as the same person, unannounced.
#[tokio::test]
async fn a_reading_tab_becomes_the_person_another_tab_named() {
    let server = TestServer::start().await;
    let (mut cy, _, _) = Client::in_room(&server, "cy", "lobby").await;
    let mut reading = Client::connect(&server).await;
    let (members, _) = reading.join("lobby").await;
    assert_eq!(members, ["cy"]);
    let (tab1, _, _) = Client::in_room(&server, "ann", "lobby").await;
    hold(&mut reading, &tab1, "ann").await;
    let (members, _) = reading.join("lobby").await;
    assert_eq!(members, ["ann", "cy"]);
    let heard = cy.heard_until_said("both tabs in").await;
    assert_eq!(
        notices(&heard),
        [(NoticeKind::Joined, "ann".into())],
        "{heard:?}"
    );
}
