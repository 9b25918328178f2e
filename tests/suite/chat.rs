//! The chat room on one node, as its users see it: real server, real WebSocket clients.

use crate::common;

use chorus::protocol::{ClientMsg, NoticeKind, Position, ServerMsg};
use common::{Client, Ended, PATIENCE, TestServer};
use std::time::{Duration, Instant};

#[tokio::test]
async fn two_clients_chat_both_ways_and_each_sees_its_own_message() {
    let server = TestServer::start().await;
    let (mut ann, _, _) = Client::in_room(&server, "ann", "lobby").await;
    let (mut bo, members, _) = Client::in_room(&server, "bo", "lobby").await;
    assert_eq!(members, ["ann", "bo"]);

    ann.say("lobby", "hi bo", "a1").await;
    for client in [&mut ann, &mut bo] {
        let m = client.next_message().await;
        assert_eq!((m.from.as_str(), m.text.as_str()), ("ann", "hi bo"));
        assert_eq!(m.client_id.as_deref(), Some("a1"));
    }
    bo.say("lobby", "hello ann", "b1").await;
    for client in [&mut ann, &mut bo] {
        let m = client.next_message().await;
        assert_eq!((m.from.as_str(), m.text.as_str()), ("bo", "hello ann"));
    }
}

#[tokio::test]
async fn the_sender_gets_an_ack_with_its_client_id_and_the_stored_seq() {
    let server = TestServer::start().await;
    let (mut ann, _, _) = Client::in_room(&server, "ann", "lobby").await;
    ann.say("lobby", "one", "c-1").await;
    let ack = ann.recv_until(|m| matches!(m, ServerMsg::Ack { .. })).await;
    let ServerMsg::Ack {
        client_id,
        seq,
        room,
    } = ack
    else {
        unreachable!()
    };
    assert_eq!(
        (client_id.as_deref(), seq, room.as_str()),
        (Some("c-1"), 1, "lobby")
    );
}

#[tokio::test]
async fn the_server_greets_every_connection_with_its_session_and_node() {
    let server = TestServer::start().await;
    let a = Client::connect(&server).await;
    let b = Client::connect(&server).await;
    assert!(!a.session.is_empty());
    assert_ne!(a.session, b.session);
}

#[tokio::test]
async fn sending_before_a_name_is_refused_and_joining_only_reads_and_nothing_is_broadcast() {
    let server = TestServer::start().await;
    let (mut ann, _, _) = Client::in_room(&server, "ann", "lobby").await;
    let mut anon = Client::connect(&server).await;

    anon.say("lobby", "psst", "x").await;
    assert_eq!(anon.next_error().await, "name_required");
    // Without a name a join reads the room (reading.rs); speaking in it is still refused.
    anon.send(&ClientMsg::join("lobby")).await;
    anon.recv_until(|m| matches!(m, ServerMsg::Joined { .. }))
        .await;
    anon.say("lobby", "psst", "y").await;
    assert_eq!(anon.next_error().await, "name_required");

    assert!(ann.drain().await.is_empty(), "ann saw something");
}

#[tokio::test]
async fn a_name_in_use_is_refused_case_insensitively_until_its_holder_leaves() {
    let server = TestServer::start().await;
    let ann = Client::named(&server, "Ann").await;
    let mut other = Client::connect(&server).await;
    other.set_name("aNN").await;
    assert_eq!(other.next_error().await, "name_taken");

    ann.close().await;
    // The name is released when the server notices the close; retry until then (bounded).
    let mut freed = false;
    for _ in 0..50 {
        other.set_name("ann").await;
        match other.recv().await {
            ServerMsg::NameSet { .. } => {
                freed = true;
                break;
            }
            _ => tokio::time::sleep(std::time::Duration::from_millis(20)).await,
        }
    }
    assert!(freed, "the name was not released after its holder left");
}

#[tokio::test]
async fn invalid_names_are_refused_with_their_own_code() {
    let server = TestServer::start().await;
    let mut c = Client::connect(&server).await;
    for bad in ["", "   ", &"x".repeat(33), "bell\u{7}"] {
        c.set_name(bad).await;
        assert_eq!(c.next_error().await, "invalid_name", "{bad:?}");
    }
}

#[tokio::test]
async fn a_text_over_the_limit_is_refused_whole_and_not_broadcast() {
    let server = TestServer::with(|c| c.conn.max_text_chars = 10).await;
    let (mut ann, _, _) = Client::in_room(&server, "ann", "lobby").await;
    let (mut bo, _, _) = Client::in_room(&server, "bo", "lobby").await;
    ann.drain().await;

    bo.say("lobby", "this is eleven", "t").await;
    assert_eq!(bo.next_error().await, "too_long");
    bo.say("lobby", "   ", "t").await;
    assert_eq!(bo.next_error().await, "empty_text");
    // Exactly at the limit, counted in characters rather than bytes, is fine.
    bo.say("lobby", "語語語語語語語語語語", "ok").await;
    assert_eq!(ann.next_message().await.text, "語語語語語語語語語語");
    let seen = ann.drain().await;
    assert!(seen.is_empty(), "ann saw more: {seen:?}");
}

#[tokio::test]
async fn malformed_frames_each_get_their_own_error_and_the_connection_stays_usable() {
    let server = TestServer::start().await;
    let (mut ann, _, _) = Client::in_room(&server, "ann", "lobby").await;
    let (mut bo, _, _) = Client::in_room(&server, "bo", "lobby").await;
    ann.drain().await;

    let cases = [
        ("{not json", "invalid_json"),
        ("42", "invalid_json"),
        (r#"{"room":"lobby"}"#, "missing_type"),
        (r#"{"type":"shout","text":"x"}"#, "unknown_type"),
        (r#"{"type":"send","room":"lobby"}"#, "missing_field"),
        (r#"{"type":"join","room":["lobby"]}"#, "invalid_field"),
        (r#"{"type":"join","room":"no spaces"}"#, "invalid_room"),
        (
            r#"{"type":"send","room":"elsewhere","text":"x"}"#,
            "not_in_room",
        ),
        (r#"{"type":"leave","room":"elsewhere"}"#, "not_in_room"),
        (
            r#"{"type":"send","room":"lobby","text":"x","client_id":"has space"}"#,
            "invalid_client_id",
        ),
    ];
    for (frame, code) in cases {
        bo.send_raw(frame).await;
        assert_eq!(bo.next_error().await, code, "{frame}");
    }
    bo.send_binary(vec![1, 2, 3]).await;
    assert_eq!(bo.next_error().await, "binary_not_supported");

    // Still connected and still in the room; ann noticed nothing but the real message.
    bo.say("lobby", "still here", "b").await;
    assert_eq!(ann.next_message().await.text, "still here");
    assert!(ann.drain().await.is_empty());
}

#[tokio::test]
async fn an_oversized_frame_closes_only_that_connection_with_1009() {
    let server = TestServer::with(|c| {
        c.conn.max_text_chars = 100;
        c.conn.max_frame_bytes = 2048;
    })
    .await;
    let (mut ann, _, _) = Client::in_room(&server, "ann", "lobby").await;
    let (mut bo, _, _) = Client::in_room(&server, "bo", "lobby").await;
    ann.drain().await;

    let huge = format!(
        r#"{{"type":"send","room":"lobby","text":"{}"}}"#,
        "x".repeat(4096)
    );
    bo.send_raw(&huge).await;
    assert_eq!(bo.until_closed().await, Ended::Closed(Some(1009)));

    assert_eq!(ann.next_left().await, "bo");
    // The server is unharmed: ann can still talk.
    ann.say("lobby", "fine", "a").await;
    assert_eq!(ann.next_message().await.text, "fine");
}

/// The next two frames in the lobby announce `kind` for `name`, then the new member list.
async fn expect_announcement(
    client: &mut Client,
    kind: NoticeKind,
    name: &str,
    old_name: Option<&str>,
    members: &[&str],
) {
    assert_eq!(
        client.recv().await,
        ServerMsg::Notice {
            room: "lobby".into(),
            kind,
            name: name.into(),
            old_name: old_name.map(Into::into),
        }
    );
    assert_eq!(
        client.recv().await,
        ServerMsg::Presence {
            room: "lobby".into(),
            members: members.iter().map(|m| m.to_string()).collect(),
            count: members.len() as u32,
        }
    );
}

#[tokio::test]
async fn joins_leaves_renames_and_disconnects_are_announced_with_presence() {
    let server = TestServer::start().await;
    let (mut ann, _, _) = Client::in_room(&server, "ann", "lobby").await;

    let (mut bo, _, _) = Client::in_room(&server, "bo", "lobby").await;
    expect_announcement(&mut ann, NoticeKind::Joined, "bo", None, &["ann", "bo"]).await;

    bo.set_name("Bob").await;
    expect_announcement(
        &mut ann,
        NoticeKind::Renamed,
        "Bob",
        Some("bo"),
        &["ann", "Bob"],
    )
    .await;

    bo.send(&ClientMsg::Leave {
        room: "lobby".into(),
    })
    .await;
    bo.recv_until(|m| matches!(m, ServerMsg::Left { .. })).await;
    expect_announcement(&mut ann, NoticeKind::Left, "Bob", None, &["ann"]).await;

    bo.join("lobby").await;
    expect_announcement(&mut ann, NoticeKind::Joined, "Bob", None, &["ann", "Bob"]).await;
    bo.close().await;
    expect_announcement(&mut ann, NoticeKind::Left, "Bob", None, &["ann"]).await;
}

#[tokio::test]
async fn a_late_joiner_receives_the_recent_history_in_order() {
    let server = TestServer::with(|c| c.rooms.history_size = 5).await;
    let (mut ann, _, _) = Client::in_room(&server, "ann", "lobby").await;
    for i in 1..=8 {
        ann.say("lobby", &format!("m{i}"), &format!("c{i}")).await;
    }
    ann.recv_until(|m| matches!(m, ServerMsg::Ack { seq: 8, .. }))
        .await;

    let (mut bo, members, history) = Client::in_room(&server, "bo", "lobby").await;
    assert_eq!(members, ["ann", "bo"]);
    let texts: Vec<_> = history.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, ["m4", "m5", "m6", "m7", "m8"]);
    let seqs: Vec<_> = history.iter().map(|m| m.seq).collect();
    assert_eq!(seqs, [4, 5, 6, 7, 8]);

    // What comes next continues the sequence, and nothing from the history repeats live.
    ann.say("lobby", "m9", "c9").await;
    let next = bo.next_message().await;
    assert_eq!((next.seq, next.text.as_str()), (9, "m9"));
}

#[tokio::test]
async fn rooms_are_separate_and_history_stays_in_its_room() {
    let server = TestServer::start().await;
    let (mut ann, _, _) = Client::in_room(&server, "ann", "lobby").await;
    let (mut bo, _, _) = Client::in_room(&server, "bo", "dev").await;
    ann.drain().await;
    bo.say("dev", "in dev", "b").await;
    assert_eq!(bo.next_message().await.room, "dev");
    assert!(ann.drain().await.is_empty(), "lobby heard dev");

    let (members, history) = ann.join("DEV").await;
    assert_eq!(members, ["ann", "bo"]);
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].seq, 1);
}

#[tokio::test]
async fn seq_strictly_increases_in_a_room_with_concurrent_senders() {
    let server = TestServer::with(common::unlimited).await;
    let (mut reader, _, _) = Client::in_room(&server, "reader", "lobby").await;
    let mut senders = Vec::new();
    for i in 0..4 {
        let (c, _, _) = Client::in_room(&server, &format!("s{i}"), "lobby").await;
        senders.push(c);
    }
    const EACH: usize = 50;
    let tasks: Vec<_> = senders
        .into_iter()
        .enumerate()
        .map(|(i, mut c)| {
            tokio::spawn(async move {
                for n in 0..EACH {
                    c.say("lobby", &format!("{i}-{n}"), &format!("{i}-{n}"))
                        .await;
                }
                c
            })
        })
        .collect();
    let mut last = 0;
    for _ in 0..(4 * EACH) {
        let m = reader.next_message().await;
        assert!(m.seq > last, "seq {} after {last}", m.seq);
        last = m.seq;
    }
    assert_eq!(last, (4 * EACH) as u64);
    for t in tasks {
        t.await.expect("sender finished");
    }
}

#[tokio::test]
async fn a_connection_may_be_in_a_bounded_number_of_rooms() {
    let server = TestServer::with(|c| c.conn.max_rooms_per_connection = 2).await;
    let mut ann = Client::named(&server, "ann").await;
    ann.join("a").await;
    ann.join("b").await;
    ann.send(&ClientMsg::join("c")).await;
    assert_eq!(ann.next_error().await, "too_many_rooms");
    // Re-joining a room it is already in is not a new room.
    ann.join("a").await;
}

#[tokio::test]
async fn a_reader_too_slow_for_the_room_is_closed_with_1013_and_the_room_goes_on() {
    let server = TestServer::with(|c| {
        common::unlimited(c);
        c.conn.outbound_queue = 8;
    })
    .await;
    let (mut slow, _, _) = Client::in_room(&server, "slow", "lobby").await;
    let (mut fast, _, _) = Client::in_room(&server, "fast", "lobby").await;
    let big = "x".repeat(4000);
    // Enough to fill the socket buffers between server and the idle client, then its queue;
    // bounded so the test ends either way.
    let mut kicked = false;
    'sending: for i in 0..4000 {
        fast.say("lobby", &big, &format!("f{i}")).await;
        loop {
            match fast.recv().await {
                ServerMsg::Notice {
                    kind: NoticeKind::Left,
                    name,
                    ..
                } if name == "slow" => {
                    kicked = true;
                    break 'sending;
                }
                ServerMsg::Message(m) if m.client_id.as_deref() == Some(&format!("f{i}")) => break,
                _ => {}
            }
        }
    }
    assert!(kicked, "the slow reader was never dropped from the room");
    assert_eq!(slow.until_closed().await, Ended::Closed(Some(1013)));
    // And an operator sees it.
    let slow_reader = Some(("reason", "slow_reader"));
    let url = server.http_url("/metrics");
    common::wait_for_metric(&url, "chorus_connections_closed_total", slow_reader, 1.0).await;
}

#[tokio::test]
async fn health_and_the_server_rendered_page_answer_over_http() {
    let server = TestServer::start().await;
    let health = reqwest::get(server.http_url("/healthz"))
        .await
        .expect("GET /healthz");
    assert_eq!(health.status(), 200);

    let page = reqwest::get(server.http_url("/r/dev"))
        .await
        .expect("GET /r/dev");
    assert_eq!(page.status(), 200);
    let html = page.text().await.expect("body");
    assert!(html.contains("#dev"), "room not rendered: {html}");
    assert!(
        html.contains("data-testid=\"composer\""),
        "composer not rendered"
    );
}

#[tokio::test]
async fn shutdown_drains_connections_with_1012_spread_over_the_window_then_stops() {
    let drain = Duration::from_millis(1500);
    let server = TestServer::with(|c| c.node.drain_ms = drain).await;
    let readyz = server.http_url("/readyz");
    let ws_url = server.ws_url();
    let mut clients = Vec::new();
    for i in 0..8 {
        let (c, _, _) = Client::in_room(&server, &format!("u{i}"), "lobby").await;
        clients.push(c);
    }
    assert_eq!(
        reqwest::get(&readyz).await.expect("GET /readyz").status(),
        200
    );
    let started = Instant::now();
    let stopping = tokio::spawn(server.shutdown());
    let waits: Vec<_> = clients
        .into_iter()
        .map(|mut c| {
            tokio::spawn(async move {
                let ended = c.until_closed().await;
                (ended, started.elapsed())
            })
        })
        .collect();
    // Draining: not ready, and no new connections — but the listener still answers.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(
        reqwest::get(&readyz).await.expect("GET /readyz").status(),
        503
    );
    let refused = tokio_tungstenite::connect_async(ws_url.as_str()).await;
    assert!(refused.is_err(), "a draining node accepted a WebSocket");
    let mut at = Vec::new();
    for w in waits {
        let (ended, when) = w.await.expect("reader task");
        assert_eq!(ended, Ended::Closed(Some(1012)));
        at.push(when);
    }
    at.sort();
    let spread = at[at.len() - 1] - at[0];
    // Eight uniform moments in 1.5 s spread over less than a fifth of it with odds below 1e-4.
    assert!(
        spread >= drain / 5,
        "closes were not spread over the drain window: {at:?}"
    );
    stopping
        .await
        .expect("shutdown task")
        .expect("server stopped cleanly");
}

#[tokio::test]
async fn a_rejoin_since_a_position_gets_exactly_the_missed_messages_or_says_it_cannot() {
    let server = TestServer::with(|c| c.rooms.history_size = 4).await;
    let (mut ann, _, _) = Client::in_room(&server, "ann", "lobby").await;
    for i in 1..=3 {
        ann.say("lobby", &format!("m{i}"), &format!("c{i}")).await;
    }
    let mut seen = Vec::new();
    while seen.len() < 3 {
        seen.push(ann.next_message().await);
    }
    let epoch = seen[0].epoch.clone();
    let at = |seq| {
        Some(Position {
            epoch: epoch.clone(),
            seq,
        })
    };
    let mut bo = Client::named(&server, "bo").await;

    let (_, history, recovered) = bo.join_since("lobby", at(1)).await;
    assert_eq!(recovered, Some(true));
    assert_eq!(history.iter().map(|m| m.seq).collect::<Vec<_>>(), [2, 3]);

    let (_, history, recovered) = bo.join_since("lobby", at(3)).await;
    assert_eq!(
        (history.len(), recovered),
        (0, Some(true)),
        "nothing missed"
    );

    let (_, history, recovered) = bo.join_since("lobby", None).await;
    assert_eq!(
        (history.len(), recovered),
        (3, None),
        "a plain join gets the history"
    );

    // Three more: the history keeps 4, so seq 2 is gone and recovery from 1 is incomplete.
    for i in 4..=6 {
        ann.say("lobby", &format!("m{i}"), &format!("c{i}")).await;
    }
    while ann.next_message().await.seq < 6 {}
    let (_, history, recovered) = bo.join_since("lobby", at(1)).await;
    assert_eq!(recovered, Some(false));
    assert_eq!(
        history.iter().map(|m| m.seq).collect::<Vec<_>>(),
        [3, 4, 5, 6]
    );
    let (_, history, recovered) = bo.join_since("lobby", at(2)).await;
    assert_eq!(recovered, Some(true), "3..6 are all still stored");
    assert_eq!(history.len(), 4);

    let other = Some(Position {
        epoch: "another-epoch".into(),
        seq: 1,
    });
    let (_, history, recovered) = bo.join_since("lobby", other).await;
    assert_eq!(
        (history.len(), recovered),
        (4, Some(false)),
        "the numbering changed"
    );
}

#[tokio::test]
async fn a_message_sent_again_with_its_client_id_is_acknowledged_again_and_stored_once() {
    let server = TestServer::start().await;
    let (mut ann, _, _) = Client::in_room(&server, "ann", "lobby").await;
    let (mut bo, _, _) = Client::in_room(&server, "bo", "lobby").await;
    ann.drain().await;
    let ack = |frames: &[ServerMsg]| {
        frames.iter().find_map(|f| match f {
            ServerMsg::Ack { seq, client_id, .. } => Some((*seq, client_id.clone())),
            _ => None,
        })
    };
    ann.say("lobby", "once", "c-1").await;
    let first = ack(&ann.drain().await).expect("acknowledged");
    // As a client does after a reconnect when it never saw the ack.
    ann.say("lobby", "once", "c-1").await;
    let again = ack(&ann.drain().await).expect("acknowledged again");
    assert_eq!(first, again);
    assert_eq!(first.1.as_deref(), Some("c-1"));
    ann.say("lobby", "twice", "c-2").await;
    assert_eq!(ack(&ann.drain().await).map(|a| a.0), Some(first.0 + 1));

    let texts: Vec<String> = bo
        .drain()
        .await
        .into_iter()
        .filter_map(|f| match f {
            ServerMsg::Message(m) => Some(m.text),
            _ => None,
        })
        .collect();
    assert_eq!(texts, ["once", "twice"]);
    let (_, history) = Client::named(&server, "cy").await.join("lobby").await;
    assert_eq!(history.len(), 2, "the re-send was not stored");
}

#[tokio::test]
async fn the_server_pings_and_closes_a_peer_that_stays_silent() {
    let server = TestServer::with(|c| {
        c.conn.ping_interval_ms = Duration::from_millis(100);
        c.conn.idle_timeout_ms = Duration::from_millis(500);
    })
    .await;
    let mut live = Client::connect(&server).await;
    live.until_ping().await;
    let mut silent = Client::connect(&server).await;
    // `live` reads (and so answers every ping) for three idle timeouts and stays open...
    live.listen_for(Duration::from_millis(1500)).await;
    live.send(&ClientMsg::Ping).await;
    assert_eq!(live.recv().await, ServerMsg::Pong);
    // ...while `silent`, which read nothing meanwhile, was closed. (Reading now answers the
    // queued pings; the pong may hit the closed socket first, so the close frame may be lost.)
    let ended = silent.until_closed().await;
    assert!(
        matches!(ended, Ended::Closed(Some(1001)) | Ended::Dropped),
        "{ended:?}"
    );
}

#[tokio::test]
async fn a_burst_of_joins_announces_each_but_folds_the_member_lists() {
    let server = TestServer::with(|c| c.rooms.presence_interval_ms = Duration::from_secs(1)).await;
    let (mut ann, _, _) = Client::in_room(&server, "ann", "lobby").await;
    // All at once, as after a node restart.
    let names: Vec<String> = (0..20).map(|i| format!("u{i:02}")).collect();
    let _others =
        futures_util::future::join_all(names.iter().map(|n| Client::in_room(&server, n, "lobby")))
            .await;
    let (mut notices, mut lists) = (0, 0);
    loop {
        match ann.recv().await {
            ServerMsg::Notice {
                kind: NoticeKind::Joined,
                ..
            } => notices += 1,
            ServerMsg::Presence { members, .. } => {
                lists += 1;
                if members.len() == 21 {
                    break;
                }
            }
            _ => {}
        }
    }
    assert_eq!(notices, 20, "every join is announced");
    assert!(lists < 20, "{lists} member lists for 20 joins: not folded");
}

#[tokio::test]
async fn joining_mid_conversation_gives_history_and_live_messages_without_gap_or_repeat() {
    let server = TestServer::with(|c| {
        common::unlimited(c);
        c.rooms.history_size = 1000;
    })
    .await;
    let (mut talker, _, _) = Client::in_room(&server, "talker", "lobby").await;
    const TOTAL: u64 = 400;
    let talking = tokio::spawn(async move {
        for i in 1..=TOTAL {
            talker
                .say("lobby", &format!("m{i}"), &format!("c{i}"))
                .await;
        }
        talker
    });
    // Join while the talker is (most likely) mid-way; correctness must not depend on when.
    tokio::task::yield_now().await;
    // Not `in_room`: its drain would swallow the live messages that follow `joined`.
    let mut late = Client::named(&server, "late").await;
    let (_, history) = late.join("lobby").await;
    let mut seqs: Vec<u64> = history.iter().map(|m| m.seq).collect();
    while seqs.last().copied().unwrap_or(0) < TOTAL {
        seqs.push(late.next_message().await.seq);
    }
    let first = seqs.first().copied().unwrap_or(1);
    let expected: Vec<u64> = (first..=TOTAL).collect();
    assert_eq!(
        seqs, expected,
        "history + live stream has a gap or a repeat"
    );
    talking.await.expect("talker finished");
}

#[tokio::test]
async fn a_full_history_of_the_longest_messages_still_reaches_a_joiner() {
    let server = TestServer::with(|c| {
        common::unlimited(c);
        c.rooms.join_history = 100;
    })
    .await;
    let (mut ann, _, _) = Client::in_room(&server, "ann", "lobby").await;
    // A window of 100 messages of 4,000 three-byte characters: a `joined` of ~1.2 MB.
    let long = "語".repeat(4000);
    for i in 1..=100 {
        ann.say("lobby", &long, &format!("c{i}")).await;
        ann.recv_until(|m| matches!(m, ServerMsg::Ack { .. })).await;
    }
    let (mut bo, _, history) = Client::in_room(&server, "bo", "lobby").await;
    assert_eq!(history.len(), 100);
    assert!(history.iter().all(|m| m.text == long));
    // And the connection is still usable afterwards.
    bo.say("lobby", "hi", "b").await;
    assert_eq!(bo.next_message().await.text, "hi");
}

#[tokio::test]
async fn a_dropped_connection_s_name_waits_for_its_session_to_resume() {
    let server = TestServer::start().await;
    let (ann, _, _) = Client::in_room(&server, "ann", "lobby").await;
    let session = ann.session.clone();
    ann.cut();

    let mut thief = Client::connect(&server).await;
    thief.set_name("Ann").await;
    assert_eq!(thief.next_error().await, "name_taken");

    let mut back = Client::connect(&server).await;
    back.resume(&session).await;
    assert!(matches!(
        back.recv().await,
        ServerMsg::Resumed { name: Some(n), .. } if n == "ann"
    ));
    back.set_name("ann").await;
    assert!(matches!(back.recv().await, ServerMsg::NameSet { name } if name == "ann"));
    // A resume after the connection has a name is refused: it would swap identities mid-way.
    back.resume(&session).await;
    assert_eq!(back.next_error().await, "invalid_field");
}

#[tokio::test]
async fn a_clean_close_frees_the_name_at_once_and_ends_the_session() {
    let server = TestServer::start().await;
    let ann = Client::named(&server, "ann").await;
    let session = ann.session.clone();
    ann.close().await;
    // The server handles the close asynchronously; the name is free once it has.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let mut other = Client::connect(&server).await;
        other.set_name("ann").await;
        match other.recv().await {
            ServerMsg::NameSet { .. } => break,
            ServerMsg::Error { code, .. } => assert_eq!(code.as_str(), "name_taken"),
            m => panic!("unexpected {m:?}"),
        }
        assert!(tokio::time::Instant::now() < deadline, "name never freed");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let mut late = Client::connect(&server).await;
    late.resume(&session).await;
    assert_eq!(late.next_error().await, "unknown_session");
}

#[tokio::test]
async fn a_resumed_session_is_released_even_if_its_connection_never_set_the_name() {
    let server = TestServer::start().await;
    let ann = Client::named(&server, "ann").await;
    let session = ann.session.clone();
    ann.cut();
    let mut back = Client::connect(&server).await;
    back.resume(&session).await;
    assert!(matches!(back.recv().await, ServerMsg::Resumed { .. }));
    back.close().await;
    // Closed cleanly: the name must come free, not stay with a connection that is gone.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let mut other = Client::connect(&server).await;
        other.set_name("ann").await;
        if matches!(other.recv().await, ServerMsg::NameSet { .. }) {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "name never freed");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// A client that speaks WebSocket by hand over a blocking socket, to see the frames themselves
/// (every library client would reassemble fragments).
mod raw {
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpStream};
    use tungstenite::protocol::frame::{Frame, FrameSocket};

    pub struct RawClient {
        frames: FrameSocket<TcpStream>,
    }

    impl RawClient {
        pub fn connect(addr: SocketAddr) -> Self {
            let mut tcp = TcpStream::connect(addr).expect("connects");
            tcp.set_read_timeout(Some(super::PATIENCE))
                .expect("timeout set");
            write!(
                tcp,
                "GET /ws HTTP/1.1\r\nHost: {addr}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
                 Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
            )
            .expect("handshake sent");
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                tcp.read_exact(&mut byte).expect("handshake answer");
                head.push(byte[0]);
            }
            let head = String::from_utf8_lossy(&head);
            assert!(head.starts_with("HTTP/1.1 101"), "{head}");
            assert!(head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{head}");
            Self {
                frames: FrameSocket::new(tcp),
            }
        }

        /// Sends one text frame, masked with a zero key (clients must mask; any key will do).
        pub fn send(&mut self, text: &str) {
            assert!(text.len() < 126, "short frames only");
            let mut frame = vec![0x81, 0x80 | text.len() as u8, 0, 0, 0, 0];
            frame.extend_from_slice(text.as_bytes());
            self.frames.get_mut().write_all(&frame).expect("frame sent");
        }

        pub fn frame(&mut self) -> Frame {
            match self.frames.read(None) {
                Ok(Some(frame)) => frame,
                other => panic!("no frame: {other:?}"),
            }
        }
    }
}

#[tokio::test]
async fn a_long_joined_arrives_as_one_whole_frame() {
    // Frames are written from their shared bytes, whatever their size: no fragments, and no
    // per-connection copy to bound.
    use tungstenite::protocol::frame::coding::{Data, OpCode};
    let server = TestServer::start().await;
    let (mut ann, _, _) = Client::in_room(&server, "ann", "lobby").await;
    let long = "語".repeat(700); // 2,100 bytes
    for i in 1..=3 {
        ann.say("lobby", &long, &format!("c{i}")).await;
        ann.recv_until(|m| matches!(m, ServerMsg::Ack { .. })).await;
    }
    let addr = server.addr;
    let joined = tokio::task::spawn_blocking(move || {
        let mut bo = raw::RawClient::connect(addr);
        bo.send(r#"{"type":"set_name","name":"bo"}"#);
        bo.send(r#"{"type":"join","room":"lobby"}"#);
        // welcome, name_set, then the joined.
        let frames: Vec<_> = (0..3).map(|_| bo.frame()).collect();
        for frame in &frames {
            assert!(frame.header().is_final, "a whole frame");
            assert_eq!(frame.header().opcode, OpCode::Data(Data::Text));
        }
        frames[2].payload().to_vec()
    })
    .await
    .expect("raw client");
    assert!(joined.len() > 6_300, "{} bytes", joined.len());
    match serde_json::from_slice::<ServerMsg>(&joined) {
        Ok(ServerMsg::Joined { history, .. }) => {
            assert_eq!(history.len(), 3);
            assert!(history.iter().all(|m| m.text == long));
        }
        other => panic!("expected joined, got {other:?}"),
    }
}

#[tokio::test]
async fn a_plain_request_to_the_websocket_path_gets_a_clear_400() {
    let server = TestServer::start().await;
    let response = reqwest::get(server.http_url("/ws")).await.expect("GET /ws");
    assert_eq!(response.status(), 400);
    let body = response.text().await.expect("body");
    assert!(body.contains("Upgrade: websocket"), "{body}");
}
