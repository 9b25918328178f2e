//! A hostile client against a real server: pages of other sites, floods, connection storms from
//! one address, look-alike names. Each attack must be refused or bounded, and the people around it
//! must not notice.

use crate::common;

use chorus::{
    protocol::{ClientMsg, ErrorCode, ServerMsg},
    rate::Bucket,
    server::config::{AllowedOrigin, parse_proxy},
};
use common::{Client, Ended, PATIENCE, TestServer, upgrade_status};
use std::time::{Duration, Instant};
use tokio_tungstenite::connect_async;

/// A WebSocket held open (so it counts against caps) until dropped.
async fn open(server: &TestServer, headers: &[(&'static str, &str)]) -> common::Socket {
    let (ws, _) = connect_async(common::upgrade_request(server, headers))
        .await
        .expect("connection opens");
    ws
}

#[tokio::test]
async fn a_page_of_another_site_cannot_open_a_chat_connection() {
    let server = TestServer::start().await;
    let own = format!("http://{}", server.addr);
    let evil = [("origin", "http://evil.example")];
    assert_eq!(upgrade_status(&server, &evil).await.0, 403);
    assert_eq!(
        upgrade_status(&server, &[("origin", "null")]).await.0,
        403,
        "a sandboxed frame or a file"
    );
    assert_eq!(upgrade_status(&server, &[("origin", &own)]).await.0, 101);
    assert_eq!(
        upgrade_status(&server, &[]).await.0,
        101,
        "no Origin: not a browser"
    );
    server.shutdown().await.expect("clean shutdown");

    let listed = TestServer::with(|c| {
        c.limits.allowed_origins =
            vec![AllowedOrigin::parse("http://app.example").expect("an origin")]
    })
    .await;
    let app = [("origin", "http://app.example")];
    assert_eq!(upgrade_status(&listed, &app).await.0, 101);
    assert_eq!(upgrade_status(&listed, &evil).await.0, 403);
    listed.shutdown().await.expect("clean shutdown");
}

/// Reads `flooder`'s frames until its connection ends: the `retry_after_ms` of each
/// `rate_limited` refusal, in order, and how it ended.
async fn refused_until_closed(flooder: &mut Client) -> (Vec<Option<u64>>, Ended) {
    let mut refusals = Vec::new();
    loop {
        match tokio::time::timeout(PATIENCE, flooder.recv_or_end()).await {
            Ok(Ok(ServerMsg::Error {
                code: ErrorCode::RateLimited,
                retry_after_ms,
                ..
            })) => refusals.push(retry_after_ms),
            Ok(Ok(_)) => continue,
            Ok(Err(ended)) => return (refusals, ended),
            Err(_) => panic!("the flooder was neither refused nor closed"),
        }
    }
}

#[tokio::test]
async fn a_client_that_writes_a_burst_without_reading_still_learns_why_it_was_closed() {
    // The default limits; the client writes 400 sends before it reads anything.
    let server = TestServer::start().await;
    let (mut flooder, _, _) = Client::in_room(&server, "burst", "lobby").await;
    for i in 0..400 {
        flooder.say("lobby", "spam", &format!("f{i}")).await;
    }
    let (refusals, ended) = refused_until_closed(&mut flooder).await;
    // What was sent before the close arrives: the refusals, then the close frame itself (not
    // a reset that discards them).
    assert!(!refusals.is_empty(), "no rate_limited frame arrived");
    assert_eq!(ended, Ended::Closed(Some(1008)));
}

#[tokio::test]
async fn a_flood_is_slowed_then_closed_while_the_room_goes_on() {
    let server = TestServer::with(|c| {
        c.limits.sends_per_sec = 5;
        c.limits.send_burst = 5;
        c.limits.rate_limit_strikes = 3;
    })
    .await;
    let (mut flooder, _, _) = Client::in_room(&server, "flood", "lobby").await;
    let (mut bob, _, _) = Client::in_room(&server, "bob", "lobby").await;
    let (mut cat, _, _) = Client::in_room(&server, "cat", "lobby").await;
    for i in 0..50 {
        flooder.say("lobby", "spam", &format!("f{i}")).await;
    }
    // Told to slow down, with a wait, before being closed for policy (1008).
    let (refusals, ended) = refused_until_closed(&mut flooder).await;
    let told = refusals.into_iter().flatten().next();
    let wait = told.expect("rate_limited came with retry_after_ms");
    assert!((1..=1000).contains(&wait), "retry_after_ms = {wait}");
    assert_eq!(ended, Ended::Closed(Some(1008)));

    // Bob, at a person's pace, is delivered to cat in order, every message.
    for i in 0..5 {
        bob.say("lobby", &format!("b{i}"), &format!("b{i}")).await;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let mut from_bob = Vec::new();
    while from_bob.len() < 5 {
        let m = cat.next_message().await;
        if m.from == "bob" {
            from_bob.push(m.text);
        } else {
            assert_eq!(m.from, "flood");
        }
    }
    assert_eq!(from_bob, ["b0", "b1", "b2", "b3", "b4"]);
    let refused = bob
        .drain()
        .await
        .into_iter()
        .filter(|m| matches!(m, ServerMsg::Error { .. }))
        .count();
    assert_eq!(refused, 0, "bob was never refused");
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_client_keeping_to_the_limits_told_in_welcome_is_never_refused() {
    let server = TestServer::with(|c| {
        c.limits.sends_per_sec = 20;
        c.limits.send_burst = 10;
        c.limits.rate_limit_strikes = 1;
    })
    .await;
    let (mut fast, _, _) = Client::in_room(&server, "fast", "lobby").await;
    let limits = fast.limits.clone().expect("welcome came");
    let told = limits.sends.expect("the send limit is told");
    assert_eq!((told.per_sec, told.burst), (20, 10));
    assert!(limits.bytes.is_some(), "the byte limit is told");
    // Paced as the browser paces itself: as fast as the bucket allows, a tenth under the limit.
    let (rate, mut bucket, origin) = (told.paced(), Bucket::default(), Instant::now());
    let count = 40;
    for i in 0..count {
        while let Err(ns) = bucket.take(rate, origin.elapsed().as_nanos() as u64, 1) {
            tokio::time::sleep(Duration::from_nanos(ns)).await;
        }
        fast.say("lobby", &format!("m{i}"), &format!("c{i}")).await;
    }
    let (mut acks, mut refused) = (0, Vec::new());
    while acks < count {
        match fast.recv().await {
            ServerMsg::Ack { .. } => acks += 1,
            ServerMsg::Error { code, .. } => refused.push(code),
            _ => {}
        }
        assert!(refused.is_empty(), "refused: {refused:?}");
    }
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn control_frames_are_limited_too() {
    let server = TestServer::with(|c| {
        c.limits.controls_per_sec = 1;
        c.limits.control_burst = 3;
        c.limits.rate_limit_strikes = 100;
    })
    .await;
    let mut client = Client::connect(&server).await;
    // A control frame that is refused anyway (members of a room not joined): what is refused
    // past the burst is refused for speed.
    for _ in 0..6 {
        client
            .send(&ClientMsg::Members {
                room: "lobby".into(),
                after: None,
                prefix: None,
                limit: None,
            })
            .await;
    }
    let mut codes = Vec::new();
    for _ in 0..6 {
        match client.recv().await {
            ServerMsg::Error { code, .. } => codes.push(code),
            other => panic!("expected an error, got {other:?}"),
        }
    }
    assert_eq!(
        codes,
        [
            ErrorCode::NotInRoom,
            ErrorCode::NotInRoom,
            ErrorCode::NotInRoom,
            ErrorCode::RateLimited,
            ErrorCode::RateLimited,
            ErrorCode::RateLimited,
        ]
    );
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn one_address_can_hold_only_so_many_connections() {
    let server = TestServer::with(|c| {
        c.limits.max_connections_per_address = 2;
        c.limits.connects_per_sec = 0;
    })
    .await;
    let first = open(&server, &[]).await;
    let _second = open(&server, &[]).await;
    let (status, retry) = upgrade_status(&server, &[]).await;
    assert_eq!(status, 503);
    assert!(retry.is_some(), "a 503 says when to come back");
    // Through a trusted proxy (loopback is one by default), the forwarded address counts.
    let elsewhere = [("x-forwarded-for", "203.0.113.7")];
    assert_eq!(upgrade_status(&server, &elsewhere).await.0, 101);
    // A place is given back when a connection ends.
    drop(first);
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while upgrade_status(&server, &[]).await.0 != 101 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the place never came back"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_forged_forwarded_address_does_not_count_from_an_untrusted_peer() {
    let server = TestServer::with(|c| {
        c.limits.max_connections_per_address = 2;
        c.limits.connects_per_sec = 0;
        c.limits.trusted_proxies = vec![parse_proxy("10.0.0.0/8").expect("a network")];
    })
    .await;
    let _a = open(&server, &[("x-forwarded-for", "203.0.113.1")]).await;
    let _b = open(&server, &[("x-forwarded-for", "203.0.113.2")]).await;
    let forged = [("x-forwarded-for", "203.0.113.3")];
    assert_eq!(upgrade_status(&server, &forged).await.0, 503);
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_node_holds_at_most_max_connections() {
    let server = TestServer::with(|c| {
        c.limits.max_connections = 2;
        c.limits.connects_per_sec = 0;
    })
    .await;
    let _a = open(&server, &[("x-forwarded-for", "203.0.113.1")]).await;
    let _b = open(&server, &[("x-forwarded-for", "203.0.113.2")]).await;
    let other = [("x-forwarded-for", "203.0.113.3")];
    assert_eq!(upgrade_status(&server, &other).await.0, 503);
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn an_address_opening_connections_too_fast_is_told_to_wait() {
    let server = TestServer::with(|c| {
        c.limits.connects_per_sec = 1;
        c.limits.connect_burst = 3;
    })
    .await;
    for _ in 0..3 {
        assert_eq!(upgrade_status(&server, &[]).await.0, 101);
    }
    let (status, retry) = upgrade_status(&server, &[]).await;
    assert_eq!(status, 429);
    let secs: u64 = retry.expect("Retry-After").parse().expect("seconds");
    assert!((1..=2).contains(&secs), "Retry-After: {secs}");
    // Another address is not slowed by this one.
    let other = [("x-forwarded-for", "203.0.113.9")];
    assert_eq!(upgrade_status(&server, &other).await.0, 101);
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn look_alike_and_invisible_names_are_refused() {
    let server = TestServer::start().await;
    let _anna = Client::named(&server, "anna").await;
    let _ian = Client::named(&server, "Ian").await;
    let mut mallory = Client::connect(&server).await;
    for (name, code) in [
        // Cyrillic а twice: looks exactly like "anna".
        ("\u{0430}nn\u{0430}", "name_taken"),
        // Full-width letters fold to "anna" (NFKC).
        ("\u{FF41}\u{FF4E}\u{FF4E}\u{FF41}", "name_taken"),
        // Small l for capital I.
        ("lan", "name_taken"),
        ("ANNA", "name_taken"),
        // Invisible and direction-changing characters.
        ("an\u{200B}na", "invalid_name"),
        ("ann\u{200D}a", "invalid_name"),
        ("\u{202E}anna", "invalid_name"),
        ("\u{2066}anna\u{2069}", "invalid_name"),
    ] {
        mallory.set_name(name).await;
        assert_eq!(mallory.next_error().await, code, "{name:?}");
    }
    // A name that only resembles in part is a different name.
    mallory.set_name("annabel").await;
    match mallory.recv().await {
        ServerMsg::NameSet { name } => assert_eq!(name, "annabel"),
        other => panic!("expected name_set, got {other:?}"),
    }
    server.shutdown().await.expect("clean shutdown");
}

/// Opens `room`, says one thing in it and leaves: a room with history and nobody in it.
async fn leave_a_message_in(client: &mut Client, room: &str) {
    let (_, _) = client.join(room).await;
    client.say(room, "hello?", &format!("{room}-1")).await;
    client
        .recv_until(|m| matches!(m, ServerMsg::Ack { .. }))
        .await;
    client.send(&ClientMsg::Leave { room: room.into() }).await;
    client
        .recv_until(|m| matches!(m, ServerMsg::Left { .. }))
        .await;
}

#[tokio::test]
async fn a_room_flood_in_memory_evicts_idle_rooms_and_new_rooms_still_open() {
    let server = TestServer::with(|c| {
        c.rooms.max_rooms = 5;
        c.limits.rooms_created_per_min = 1000;
        common::unlimited(c);
    })
    .await;
    let mut flooder = Client::named(&server, "flooder").await;
    leave_a_message_in(&mut flooder, "first").await;
    for i in 0..20 {
        leave_a_message_in(&mut flooder, &format!("flood{i}")).await;
    }
    // The node still opens rooms for others; the oldest idle ones were forgotten to make room.
    let (mut ann, _, _) = Client::in_room(&server, "ann", "fresh").await;
    let (_, history) = ann.join("first").await;
    assert!(
        history.is_empty(),
        "the first room was forgotten: {history:?}"
    );
    let (_, history) = ann.join("flood19").await;
    assert_eq!(history.len(), 1, "the newest rooms are kept");
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_connection_opens_only_so_many_new_rooms_a_minute_but_joins_existing_ones() {
    let server = TestServer::with(|c| c.limits.rooms_created_per_min = 3).await;
    let (_bo, _, _) = Client::in_room(&server, "bo", "existing").await;
    let mut ann = Client::named(&server, "ann").await;
    for room in ["n1", "n2", "n3"] {
        ann.join(room).await;
    }
    ann.send(&ClientMsg::join("n4")).await;
    assert_eq!(ann.next_error().await, "too_many_rooms");
    let (members, _) = ann.join("existing").await;
    assert_eq!(members, ["ann", "bo"]);
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_room_flood_in_redis_expires_and_a_reopened_room_starts_a_new_epoch() {
    let redis = common::cluster::Redis::start();
    let url = redis.url();
    let server = TestServer::with(|c| {
        c.redis.redis_url = Some(url.clone());
        c.rooms.room_idle_secs = Duration::from_secs(1);
        c.limits.rooms_created_per_min = 1000;
        common::unlimited(c);
    })
    .await
    .ready()
    .await;
    let mut flooder = Client::named(&server, "flooder").await;
    for i in 0..30 {
        leave_a_message_in(&mut flooder, &format!("flood{i}")).await;
    }
    let client = redis::Client::open(url.as_str()).expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis connects");
    let room_keys = |conn: &mut redis::aio::MultiplexedConnection| {
        let mut conn = conn.clone();
        async move {
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg("chorus:{r:*")
                .query_async(&mut conn)
                .await
                .expect("KEYS");
            keys
        }
    };
    let before = room_keys(&mut conn).await;
    assert!(
        before.len() >= 30,
        "each room stored its message: {before:?}"
    );
    let (_, history) = flooder.join("flood0").await;
    let old_epoch = history.first().map(|m| m.epoch.clone()).expect("history");
    flooder
        .send(&ClientMsg::Leave {
            room: "flood0".into(),
        })
        .await;
    // Idle past room_idle_secs, the rooms' keys are gone: Redis holds only what is in use.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let left = room_keys(&mut conn).await;
        if left.is_empty() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "room keys left: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // A room opened again numbers in a new epoch.
    let (_, history) = flooder.join("flood0").await;
    assert!(history.is_empty());
    flooder.say("flood0", "again", "again-1").await;
    let m = flooder.next_message().await;
    assert_eq!(m.seq, 1);
    assert_ne!(m.epoch, old_epoch);
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn names_of_sessions_that_ended_are_freed_in_redis() {
    let redis = common::cluster::Redis::start();
    let url = redis.url();
    let server = TestServer::with(|c| {
        c.redis.redis_url = Some(url.clone());
        c.rooms.session_ttl_secs = Duration::from_secs(1);
    })
    .await
    .ready()
    .await;
    for i in 0..20 {
        // A dropped link: the name is held for session_ttl_secs, then nobody holds it.
        Client::named(&server, &format!("ghost{i}")).await.cut();
    }
    let client = redis::Client::open(url.as_str()).expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis connects");
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let held: u64 = redis::cmd("HLEN")
            .arg("chorus:{u}:names")
            .query_async(&mut conn)
            .await
            .expect("HLEN");
        if held == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{held} abandoned names still held"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    server.shutdown().await.expect("clean shutdown");
}

/// A client that writes its first frames right behind the upgrade request (before the answer)
/// still reads a refusal whole: the server does not close with those bytes unread, which would
/// reset the connection and could discard the answer before the client reads it.
#[tokio::test]
async fn a_refused_upgrade_is_read_whole_though_frames_followed_the_request() {
    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::TcpStream,
    };
    let server = TestServer::with(|c| {
        c.limits.max_connections_per_address = 1;
        c.limits.connects_per_sec = 0;
    })
    .await;
    let _first = open(&server, &[]).await;
    for _ in 0..5 {
        let mut tcp = TcpStream::connect(server.addr).await.expect("TCP connects");
        let mut bytes = format!(
            "GET /ws HTTP/1.1\r\nHost: {}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
             Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
            server.addr
        )
        .into_bytes();
        // 64 KiB of masked binary frames, as an eager client might send.
        for _ in 0..64 {
            bytes.extend([0x82, 0xfe, 0x03, 0xf8, 1, 2, 3, 4]);
            bytes.extend(std::iter::repeat_n(0x55u8, 1016));
        }
        tcp.write_all(&bytes)
            .await
            .expect("request and frames written");
        // Read after the server has answered and closed (or would have).
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut answer = Vec::new();
        let read = tokio::time::timeout(PATIENCE, tcp.read_to_end(&mut answer)).await;
        let answer = String::from_utf8_lossy(&answer);
        // Ended by the server's FIN, not a reset (which a browser may answer by discarding
        // what it had not read yet).
        assert!(
            matches!(read, Ok(Ok(_))),
            "the answer ended with {read:?}: {answer:?}"
        );
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer:?}");
        assert!(answer.contains("retry-after"), "{answer:?}");
    }
    server.shutdown().await.expect("clean shutdown");
}
