//! Member lists: `presence_changes` carries who came and went to a client that asks for it
//! (others still get whole lists); in big rooms `joined` and `presence` carry the first page and
//! the count, and `members` pages and searches the rest — on one node, on several nodes sharing
//! a store, and on two node processes on one real redis-server.

use crate::common;

use chorus::protocol::{ClientMsg, ServerMsg};
use common::{
    Client, Endpoint, TestServer,
    cluster::{Node, Redis},
    memory_store,
};

/// Asks for one page of `room`'s members.
async fn page(
    client: &mut Client,
    after: Option<&str>,
    prefix: Option<&str>,
    limit: u32,
) -> (Vec<String>, Option<String>) {
    client
        .send(&ClientMsg::Members {
            room: "lobby".into(),
            after: after.map(Into::into),
            prefix: prefix.map(Into::into),
            limit: Some(limit),
        })
        .await;
    match client
        .recv_until(|m| matches!(m, ServerMsg::Members { .. } | ServerMsg::Error { .. }))
        .await
    {
        ServerMsg::Members { members, next, .. } => (members, next),
        other => panic!("expected members, got {other:?}"),
    }
}

/// Every member, page by page.
async fn all_pages(client: &mut Client, limit: u32) -> Vec<String> {
    let (mut all, mut next) = page(client, None, None, limit).await;
    while let Some(after) = next {
        let (more, then) = page(client, Some(&after), None, limit).await;
        assert!(!more.is_empty(), "a page promised by next is empty");
        all.extend(more);
        next = then;
    }
    all
}

const NAMES: [&str; 5] = ["ann", "Bo", "cy", "Dee", "eve"];

/// The five of `NAMES` in the lobby, each on `endpoints[i % len]`; the last one's `joined`.
async fn five_in_the_lobby(endpoints: &[&impl Endpoint]) -> (Vec<Client>, Vec<String>, u32) {
    let mut clients = Vec::new();
    for (i, name) in NAMES.iter().enumerate() {
        let (client, _, _) = Client::in_room(endpoints[i % endpoints.len()], name, "lobby").await;
        clients.push(client);
    }
    // A sixth joins and reads its `joined`.
    let mut late = Client::named(endpoints[0], "zed").await;
    late.send(&ClientMsg::join("lobby")).await;
    let ServerMsg::Joined { members, count, .. } = late
        .recv_until(|m| matches!(m, ServerMsg::Joined { .. }))
        .await
    else {
        unreachable!()
    };
    clients.push(late);
    (clients, members, count)
}

#[tokio::test]
async fn a_big_room_sends_its_first_page_and_count_and_pages_the_rest_on_request() {
    let server = TestServer::with(|c| {
        common::unlimited(c);
        c.rooms.presence_list_max = 3;
    })
    .await;
    let (mut clients, members, count) = five_in_the_lobby(&[&server]).await;
    assert_eq!(members, ["ann", "Bo", "cy"], "the first page, sorted");
    assert_eq!(count, 6);

    // zed's join left the first page as it was: the others hear the new count alone.
    let ann = &mut clients[0];
    let heard = ann
        .recv_until(|m| matches!(m, ServerMsg::MemberCount { count: 6, .. }))
        .await;
    assert!(matches!(heard, ServerMsg::MemberCount { .. }));
    // One that changes the first page sends it.
    let (mut aaron, members, _) = Client::in_room(&server, "aaron", "lobby").await;
    assert_eq!(members, ["aaron", "ann", "Bo"]);
    let list = ann
        .recv_until(|m| matches!(m, ServerMsg::Presence { count: 7, .. }))
        .await;
    assert!(
        matches!(list, ServerMsg::Presence { members, .. } if members == ["aaron", "ann", "Bo"])
    );
    aaron.drain().await;

    // Paging walks the whole room in order; a prefix searches it, ignoring case.
    assert_eq!(
        all_pages(ann, 2).await,
        ["aaron", "ann", "Bo", "cy", "Dee", "eve", "zed"]
    );
    assert_eq!(
        page(ann, None, Some("D"), 10).await,
        (vec!["Dee".into()], None)
    );
    assert_eq!(
        page(ann, Some("bo"), None, 2).await,
        (vec!["cy".into(), "Dee".into()], Some("Dee".into()))
    );

    // Only a member may list a room.
    ann.send(&ClientMsg::Members {
        room: "elsewhere".into(),
        after: None,
        prefix: None,
        limit: None,
    })
    .await;
    assert_eq!(ann.next_error().await, "not_in_room");

    // A small room still gets whole lists.
    let (_solo, members, _) = Client::in_room(&server, "solo", "small").await;
    assert_eq!(members, ["solo"]);
}

#[tokio::test]
async fn members_on_every_node_are_paged_from_any_node() {
    let mut config = chorus::server::config::Config::default();
    config.rooms.presence_list_max = 2;
    let store = memory_store(&config);
    let a = TestServer::on_store(store.clone(), "node-a", |c| c.rooms.presence_list_max = 2).await;
    let b = TestServer::on_store(store, "node-b", |c| c.rooms.presence_list_max = 2).await;
    let (mut clients, members, count) = five_in_the_lobby(&[&a, &b]).await;
    assert_eq!((members.len(), count), (2, 6));
    for client in &mut clients[..2] {
        assert_eq!(
            all_pages(client, 4).await,
            ["ann", "Bo", "cy", "Dee", "eve", "zed"]
        );
    }
}

#[tokio::test]
async fn two_node_processes_on_redis_page_the_same_room() {
    let redis = Redis::start();
    let a = Node::start_with(&redis, "node-a", &["--presence-list-max", "2"]);
    let b = Node::start_with(&redis, "node-b", &["--presence-list-max", "2"]);
    let (mut clients, members, count) = five_in_the_lobby(&[&a, &b]).await;
    assert_eq!((members, count), (vec!["ann".into(), "Bo".into()], 6));
    let bo = &mut clients[1];
    assert_eq!(
        all_pages(bo, 2).await,
        ["ann", "Bo", "cy", "Dee", "eve", "zed"]
    );
    assert_eq!(
        page(bo, None, Some("e"), 5).await,
        (vec!["eve".into()], None)
    );
}

#[tokio::test]
async fn a_room_past_notices_max_members_shows_the_count_not_a_notice_per_joiner() {
    let server = TestServer::with(|c| {
        common::unlimited(c);
        c.rooms.notices_max_members = 3;
    })
    .await;
    let (mut ann, _, _) = Client::in_room(&server, "ann", "lobby").await;
    let mut others = Vec::new();
    for name in ["bo", "cy", "dee", "eve", "fay"] {
        let (client, _, _) = Client::in_room(&server, name, "lobby").await;
        others.push(client);
    }
    // Past three members there are no notices: eve and fay came into a room of four and five,
    // and eve leaves one of six; the count says it. (Whether dee's join, the one that crosses
    // the bound, is announced depends on whether the room saw its own list first.)
    let mut heard = Vec::new();
    let mut until_list = async |ann: &mut Client, with_eve: bool| loop {
        match ann.recv().await {
            ServerMsg::Presence { members, .. }
                if members.iter().any(|m| m == "eve") == with_eve =>
            {
                break;
            }
            ServerMsg::Notice { kind, name, .. } => heard.push((kind, name)),
            _ => {}
        }
    };
    until_list(&mut ann, true).await;
    let eve = others.remove(3);
    eve.close().await;
    until_list(&mut ann, false).await;
    use chorus::protocol::NoticeKind::{Joined, Renamed};
    heard.retain(|(_, name)| name != "dee");
    assert_eq!(
        heard,
        [(Joined, "bo".into()), (Joined, "cy".into())],
        "eve's and fay's joins and eve's leave were not announced"
    );
    // A rename is always shown.
    assert_eq!(others.len(), 4, "bo, cy, dee and fay stay");
    let dee = &mut others[2];
    dee.set_name("deedee").await;
    let renamed = ann
        .recv_until(|m| matches!(m, ServerMsg::Notice { .. }))
        .await;
    assert!(matches!(
        renamed,
        ServerMsg::Notice { kind: Renamed, name, .. } if name == "deedee"
    ));
}

/// A client that joins with `presence_changes` and keeps its member list from what it hears.
struct Roster {
    client: Client,
    members: Vec<String>,
    count: u32,
    /// Whole lists heard since the first one.
    whole_lists: usize,
    /// `presence_changes` heard.
    changes: usize,
}

impl Roster {
    async fn join(endpoint: &impl Endpoint, name: &str) -> Self {
        let mut client = Client::named(endpoint, name).await;
        client
            .send(&ClientMsg::Join {
                room: "lobby".into(),
                since: None,
                presence_changes: true,
            })
            .await;
        let ServerMsg::Joined { members, count, .. } = client
            .recv_until(|m| matches!(m, ServerMsg::Joined { .. }))
            .await
        else {
            unreachable!()
        };
        Self {
            client,
            members,
            count,
            whole_lists: 0,
            changes: 0,
        }
    }

    /// Reads until the list is `want` (sorted as the server sorts), the whole room.
    async fn until(&mut self, want: &[&str]) {
        self.until_page(want, want.len()).await;
    }

    /// Reads until the list is `want` and the room counts `count`.
    async fn until_page(&mut self, want: &[&str], count: usize) {
        while self.members != want || self.count as usize != count {
            self.hear().await;
        }
    }

    /// Reads one frame, applying it to the list.
    async fn hear(&mut self) {
        match self.client.recv().await {
            ServerMsg::Presence { members, count, .. } => {
                self.whole_lists += 1;
                (self.members, self.count) = (members, count);
            }
            ServerMsg::PresenceChanges {
                joined,
                left,
                count,
                ..
            } => {
                self.changes += 1;
                self.members.retain(|m| !left.contains(m));
                self.members.extend(joined);
                self.members.sort_by_key(|m| m.to_lowercase());
                self.count = count;
            }
            ServerMsg::MemberCount { count, .. } => self.count = count,
            _ => {}
        }
    }
}

/// ann (on the first endpoint) takes changes; bo, cy and dee come (bo taking changes too, cy and
/// dee whole lists), then bo and cy go. ann's and bo's lists follow through changes alone, from
/// the first page their `joined` carried; a client that did not ask keeps getting whole lists.
async fn changes_follow_who_comes_and_goes(endpoints: &[&impl Endpoint]) {
    let on = |i: usize| endpoints[i % endpoints.len()];
    let mut ann = Roster::join(on(0), "ann").await;
    let mut bo = Roster::join(on(1), "bo").await;
    let (cy, _, _) = Client::in_room(on(0), "cy", "lobby").await;
    let (mut dee, _, _) = Client::in_room(on(1), "Dee", "lobby").await;
    ann.until(&["ann", "bo", "cy", "Dee"]).await;
    bo.until(&["ann", "bo", "cy", "Dee"]).await;
    bo.client.close().await;
    cy.close().await;
    ann.until(&["ann", "Dee"]).await;
    assert_eq!(
        (ann.whole_lists, bo.whole_lists),
        (0, 0),
        "from its joined on, each hears only what changed"
    );
    assert!(ann.changes >= 2, "the joins and the leaves came as changes");
    // dee did not ask for changes: whole lists, as before.
    let list = dee
        .recv_until(|m| matches!(m, ServerMsg::Presence { members, .. } if members.len() == 2))
        .await;
    assert!(matches!(list, ServerMsg::Presence { members, .. } if members == ["ann", "Dee"]));
}

#[tokio::test]
async fn a_client_that_asks_hears_what_changed_in_the_member_list_not_the_whole_list() {
    let server = TestServer::with(common::unlimited).await;
    changes_follow_who_comes_and_goes(&[&server]).await;
}

#[tokio::test]
async fn two_node_processes_on_redis_send_what_changed_in_the_member_list() {
    let redis = Redis::start();
    let a = Node::start(&redis, "node-a");
    let b = Node::start(&redis, "node-b");
    changes_follow_who_comes_and_goes(&[&a, &b]).await;
}

#[tokio::test]
async fn in_a_big_room_changes_keep_the_first_page_and_the_count() {
    let server = TestServer::with(|c| {
        common::unlimited(c);
        c.rooms.presence_list_max = 3;
    })
    .await;
    let (_clients, members, _) = five_in_the_lobby(&[&server]).await;
    assert_eq!(members, ["ann", "Bo", "cy"]);
    let mut fay = Roster::join(&server, "fay").await;
    assert_eq!((fay.members.len(), fay.count), (3, 7));
    // aaron enters the first page, and cy leaves it; zoe comes past it.
    let (_aaron, _, _) = Client::in_room(&server, "aaron", "lobby").await;
    fay.until_page(&["aaron", "ann", "Bo"], 8).await;
    let (_zoe, _, _) = Client::in_room(&server, "zoe", "lobby").await;
    fay.until_page(&["aaron", "ann", "Bo"], 9).await;
    assert_eq!(
        (fay.whole_lists, fay.changes),
        (0, 1),
        "fay's first page was the one listed: one change, then counts"
    );
}
