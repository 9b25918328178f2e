//! What the Lua scripts build, read back as the protocol's Rust types: a real redis-server
//! runs them (the frames are made in Redis, so only Redis can say what they are).
use super::*;
use futures_util::StreamExt;
use std::process::{Child, Command, Stdio};

/// A throwaway redis-server on a free loopback port, killed on drop.
struct Server(Child, u16);

impl Server {
    fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server starts (scripts/setup.sh installs it)");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "redis-server listens");
            std::thread::sleep(Duration::from_millis(20));
        }
        Self(child, port)
    }
}

impl Server {
    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.1)
    }
}

/// A store with `settings`, and what stops it.
async fn store(settings: RedisSettings) -> (Arc<RedisStore>, CancellationToken) {
    let stop = CancellationToken::new();
    let store = RedisStore::connect(settings, stop.clone())
        .await
        .expect("connects");
    (store, stop)
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A store's settings for node `n1` on the Redis at `url`.
fn settings(url: &str, history: HistoryBounds) -> RedisSettings {
    RedisSettings {
        target: Target::Url(url.to_owned()),
        wait_replicas: 0,
        wait_timeout: Duration::from_millis(200),
        node: "n1".into(),
        history,
        dedup_window: 10,
        list_max: 200,
        session_ttl: Duration::from_secs(30),
        node_ttl: Duration::from_secs(5),
        room_ttl: Duration::from_secs(60),
        pubsub_lost: Counter::default(),
    }
}

fn member(session: &str, name: &str) -> Member {
    Member {
        session: session.into(),
        conn: format!("c-{session}").into(),
        name: UserName::parse(name).expect("valid name"),
    }
}

#[test]
fn on_a_cluster_every_script_publishes_on_sharded_pub_sub() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/src/server/store/lua");
    let mut publishing = 0;
    for entry in std::fs::read_dir(dir).expect("the scripts' directory") {
        let path = entry.expect("a script").path();
        let source = std::fs::read_to_string(&path).expect("a readable script");
        publishing += usize::from(source.contains(PUBLISH));
        // Any other spelling of PUBLISH would escape the replacement and go to a classic
        // channel no node listens to on a cluster.
        let sharded = source.replace(PUBLISH, SPUBLISH);
        assert!(
            !sharded
                .to_uppercase()
                .replace("SPUBLISH", "")
                .contains("PUBLISH"),
            "{}: publishes in a form the cluster's replacement misses",
            path.display()
        );
    }
    assert_eq!(
        publishing, 6,
        "join, leave, rename, append, reassert and reap publish"
    );
}

/// Keeps Redis busy for ARGV[1] microseconds (as a heavy join script would).
const BUSY: &str = "local t = redis.call('TIME') local t0 = t[1] * 1000000 + t[2] \
    repeat t = redis.call('TIME') until t[1] * 1000000 + t[2] - t0 >= tonumber(ARGV[1]) \
    return 1";

#[tokio::test]
async fn a_burst_past_redis_s_pace_queues_in_the_node_and_the_heartbeat_goes_first() {
    let server = Server::start();
    let url = server.url();
    let link = Link::connect(&Target::Url(url), false, CancellationToken::new())
        .await
        .expect("redis answers");
    // 300 calls of 10 ms each at once: 3 s of Redis's time, past the 2 s a call may wait
    // for its answer. Unbounded, the last third would time out (while Redis still ran them).
    let busy = Script::new(BUSY);
    let calls: Vec<_> = (0..300)
        .map(|_| {
            let (mut conn, busy) = (link.conn(), busy.clone());
            async move { busy.arg(10_000).invoke_async::<i64>(&mut conn).await }
        })
        .collect();
    let burst = tokio::spawn(futures_util::future::join_all(calls));
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The heartbeat's connection is not queued behind the burst.
    let pong: String = redis::cmd("PING")
        .query_async(&mut link.beats_conn())
        .await
        .expect("the heartbeat's ping is answered");
    assert_eq!(pong, "PONG");
    assert!(!burst.is_finished(), "answered while the burst still runs");
    let failed: Vec<String> = burst
        .await
        .expect("the burst ran")
        .into_iter()
        .filter_map(|r| r.err().map(|e| e.to_string()))
        .collect();
    assert!(
        failed.is_empty(),
        "{} calls failed: {:?}",
        failed.len(),
        failed.first()
    );
}

#[tokio::test]
async fn what_the_scripts_publish_reads_back_as_protocol_frames() {
    let server = Server::start();
    let url = server.url();
    let (store, stop) = store(settings(&url, HistoryBounds::messages(10))).await;
    let room = RoomName::lobby();
    let mut events = redis::Client::open(url.as_str())
        .expect("url")
        .get_async_pubsub()
        .await
        .expect("pub/sub");
    events
        .subscribe(room_channel(&room))
        .await
        .expect("subscribed");
    let mut events = events.into_on_message();
    let mut next = async || -> ServerMsg {
        let msg = tokio::time::timeout(Duration::from_secs(5), events.next())
            .await
            .expect("an event in time")
            .expect("pub/sub open");
        let payload: String = msg.get_payload().expect("text");
        payload::decode("lobby", &payload)
            .unwrap_or_else(|e| panic!("{payload} is not a server frame: {e}"))
    };

    store
        .join(&room, &member("s1", "ann"), true, None)
        .await
        .expect("joins");
    assert!(matches!(
        next().await,
        ServerMsg::Notice {
            kind: NoticeKind::Joined,
            ..
        }
    ));
    // The same session joining under another name: the script itself announces it.
    store
        .join(&room, &member("s1", "anna"), true, None)
        .await
        .expect("joins");
    assert_eq!(
        next().await,
        ServerMsg::Notice {
            room: room.to_string(),
            kind: NoticeKind::Renamed,
            name: "anna".into(),
            old_name: Some("ann".into()),
        }
    );

    let text = MessageText::parse("hé \"quoted\" \\ {json}".into(), 100).expect("valid");
    let from = UserName::parse("anna").expect("valid name");
    let stored = store
        .append(
            &room,
            &from,
            text,
            Some("c1".into()),
            Change::default(),
            None,
        )
        .await
        .expect("stored");
    let ServerMsg::Message(m) = next().await else {
        panic!("a message frame");
    };
    assert_eq!(
        (m.seq, m.room.as_str(), m.from.as_str(), m.text.as_str()),
        (stored.seq, "lobby", "anna", "hé \"quoted\" \\ {json}")
    );
    assert_eq!(m.client_id.as_deref(), Some("c1"));
    assert!(!m.epoch.is_empty());
    let history = store.since(&room, &m.epoch, 0).await.expect("read");
    assert_eq!(
        history,
        Some(vec![m]),
        "the stored frame is the published one"
    );

    // The node's members removed as a dead node's are: each announced as left.
    let reaped: i64 = store
        .scripts
        .reap
        .key(room_key(&room, "members"))
        .key(room_key(&room, "owners"))
        .key(room_key(&room, "names"))
        .arg("n1 ")
        .arg(room_channel(&room))
        .invoke_async(&mut store.link.conn())
        .await
        .expect("reaps");
    assert_eq!(reaped, 1);
    assert_eq!(
        next().await,
        ServerMsg::Notice {
            room: room.to_string(),
            kind: NoticeKind::Left,
            name: "anna".into(),
            old_name: None,
        }
    );
    stop.cancel();
}

#[tokio::test]
async fn history_a_node_before_the_stream_kept_is_adopted_and_paged() {
    let server = Server::start();
    let url = server.url();
    let history = HistoryBounds {
        size: 100,
        bytes: 1 << 20,
        window: 2,
    };
    let (store, stop) = store(settings(&url, history)).await;
    let room = RoomName::lobby();
    // What an older node left: a list of three payloads and the room's numbering.
    let mut conn = store.link.conn();
    for seq in 1..=3 {
        let body = payload::message_body(
            "lobby",
            "ann",
            &format!("old {seq}"),
            0,
            None,
            Change::default(),
            None,
        );
        let _: () = redis::cmd("RPUSH")
            .arg(room_key(&room, "history"))
            .arg(format!("m{seq} e1 {body}"))
            .query_async(&mut conn)
            .await
            .expect("written");
    }
    let _: () = redis::cmd("HSET")
        .arg(room_key(&room, "meta"))
        .arg("epoch")
        .arg("e1")
        .arg("seq")
        .arg(3)
        .query_async(&mut conn)
        .await
        .expect("written");

    let joined = store
        .join(&room, &member("s1", "ann"), true, None)
        .await
        .expect("joins");
    let texts = |v: &[ChatMessage]| v.iter().map(|m| m.text.clone()).collect::<Vec<_>>();
    assert_eq!(texts(&joined.history), ["old 2", "old 3"], "the window");
    let text = MessageText::parse("new".into(), 100).expect("valid");
    let from = UserName::parse("ann").expect("valid name");
    let stored = store
        .append(&room, &from, text, None, Change::default(), None)
        .await
        .expect("stored");
    assert_eq!(stored.seq, 4);
    let page = store.page(&room, None, 10).await.expect("read");
    assert_eq!(page.epoch.as_deref(), Some("e1"));
    assert_eq!(texts(&page.messages), ["old 1", "old 2", "old 3", "new"]);
    assert!(!page.more);
    let before = Position {
        epoch: "e1".into(),
        seq: 3,
    };
    let page = store.page(&room, Some(&before), 1).await.expect("read");
    assert_eq!(
        (texts(&page.messages), page.more),
        (vec!["old 2".into()], true)
    );
    let list: bool = redis::cmd("EXISTS")
        .arg(room_key(&room, "history"))
        .query_async(&mut conn)
        .await
        .expect("asked");
    assert!(!list, "the old list is gone once adopted");
    // A joiner one behind recovers exactly what it missed.
    let since = Position {
        epoch: "e1".into(),
        seq: 3,
    };
    let back = store
        .join(&room, &member("s2", "bo"), true, Some(&since))
        .await
        .expect("joins");
    assert_eq!(
        (texts(&back.history), back.recovered),
        (vec!["new".into()], Some(true))
    );
    stop.cancel();
}

#[tokio::test]
async fn a_history_count_that_lost_its_entries_starts_again_and_nothing_precedes_the_first() {
    let server = Server::start();
    let url = server.url();
    let history = HistoryBounds {
        size: 100,
        bytes: 64 * 1024,
        window: 10,
    };
    let (store, stop) = store(settings(&url, history)).await;
    let room = RoomName::lobby();
    let ann = UserName::parse("ann").expect("valid name");
    let say = async |text: &str| {
        let text = MessageText::parse(text.into(), 100).expect("valid");
        store
            .append(&room, &ann, text, None, Change::default(), None)
            .await
            .expect("stored")
    };
    say("one").await;
    say("two").await;
    // The stream loses its entries behind the count's back (evicted, deleted by hand), and the
    // count says far more than is there.
    let mut conn = store.link.conn();
    let _: () = redis::cmd("DEL")
        .arg(room_key(&room, "log"))
        .query_async(&mut conn)
        .await
        .expect("deleted");
    let _: () = redis::cmd("HSET")
        .arg(room_key(&room, "meta"))
        .arg("bytes")
        .arg(1 << 30)
        .query_async(&mut conn)
        .await
        .expect("set");
    say("three").await;
    say("four").await;
    let page = store.page(&room, None, 10).await.expect("read");
    let texts: Vec<_> = page.messages.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, ["three", "four"], "kept again, not trimmed to one");
    // Before the first message there is nothing (and no error).
    let first = Position {
        epoch: page.epoch.clone().expect("an epoch"),
        seq: 1,
    };
    for seq in [0, 1] {
        let before = Position {
            seq,
            ..first.clone()
        };
        let page = store.page(&room, Some(&before), 10).await.expect("read");
        assert!(page.messages.is_empty() && !page.more);
    }
    stop.cancel();
}

/// A browser's two tabs on two nodes: one session, one member, held while either tab is; the
/// tab on a node that died stops holding them and the other keeps them.
#[tokio::test]
async fn a_session_held_on_two_nodes_outlives_the_tab_on_a_dead_one() {
    let server = Server::start();
    let url = server.url();
    let (n1, stop1) = store(settings(&url, HistoryBounds::messages(10))).await;
    let (n2, stop2) = store(RedisSettings {
        node: "n2".into(),
        ..settings(&url, HistoryBounds::messages(10))
    })
    .await;
    let (room, ann) = (RoomName::lobby(), UserName::parse("ann").expect("valid"));
    let (s1, s2): (SessionId, SessionId) = ("s1".into(), "s2".into());
    let (tab1, tab2, other): (ConnId, ConnId, ConnId) = ("t1".into(), "t2".into(), "o".into());
    n1.claim_name(&s1, &tab1, &ann, None).await.expect("free");
    assert_eq!(n2.resume(&s1, &tab2).await.expect("ok"), Some(ann.clone()));
    for (store, conn) in [(&n1, &tab1), (&n2, &tab2)] {
        let member = Member {
            session: s1.clone(),
            conn: conn.clone(),
            name: ann.clone(),
        };
        store.join(&room, &member, true, None).await.expect("joins");
    }
    let mut conn = n2.link.conn();
    let reader = conn.clone();
    let owners = |key: String, field: &'static str| {
        let mut conn = reader.clone();
        async move {
            redis::cmd("HGET")
                .arg(key)
                .arg(field)
                .query_async::<Option<String>>(&mut conn)
                .await
                .expect("reads")
        }
    };
    assert_eq!(
        owners(room_key(&room, "owners"), "s1").await.as_deref(),
        Some("n1 t1,n2 t2")
    );

    // n1 dies: its tab stops holding the member and the session; n2's keeps both.
    stop1.cancel();
    redis::cmd("DEL")
        .arg(node_key("n1"))
        .arg(SWEEP_KEY)
        .exec_async(&mut conn)
        .await
        .expect("deletes");
    let reaped: i64 = n2
        .scripts
        .reap
        .key(room_key(&room, "members"))
        .key(room_key(&room, "owners"))
        .key(room_key(&room, "names"))
        .arg("n1 ")
        .arg(room_channel(&room))
        .invoke_async(&mut conn)
        .await
        .expect("reaps");
    assert_eq!(reaped, 0, "ann still has a tab");
    assert_eq!(
        n2.members(&room, &MemberQuery::first(100))
            .await
            .expect("reads")
            .names,
        ["ann"]
    );
    n2.sweep_names().await.expect("sweeps");
    assert_eq!(
        owners(session_key("s1"), "owners").await.as_deref(),
        Some("n2 t2")
    );
    let taken = n2.claim_name(&s2, &other, &ann, None).await;
    assert!(matches!(taken, Err(StoreError::NameTaken(_))), "{taken:?}");

    // The last tab closes: the name is free.
    n2.release(&s1, &tab2, Departure::Closed).await;
    n2.claim_name(&s2, &other, &ann, None)
        .await
        .expect("free once the last tab closed");
    stop2.cancel();
}

/// Pages of a room's members come from its sorted names (no read of the whole room), in the
/// protocol's order, with `after` and `prefix` ignoring case, also past ASCII; and agree with
/// what the in-memory store answers.
#[tokio::test]
async fn member_pages_are_read_from_the_sorted_names_in_the_protocol_s_order() {
    let server = Server::start();
    let url = server.url();
    let (redis, stop) = store(settings(&url, HistoryBounds::messages(10))).await;
    let memory = crate::server::store::MemoryStore::new(
        HistoryBounds::messages(10),
        10,
        10,
        Duration::from_secs(30),
    )
    .with_list_max(3);
    let room = RoomName::lobby();
    let names = ["öz", "Zoë", "ann", "Ödön", "Bo"];
    for (i, name) in names.iter().enumerate() {
        let m = member(&format!("s{i}"), name);
        redis.join(&room, &m, true, None).await.expect("joins");
        memory.join(&room, &m, true, None).await.expect("joins");
    }
    let page = async |after, prefix, limit| {
        let q = MemberQuery::new(after, prefix, limit);
        let r = redis.members(&room, &q).await.expect("reads");
        let m = memory.members(&room, &q).await.expect("reads");
        assert_eq!(r, m, "both stores answer alike");
        assert_eq!(r.count, 5);
        (r.names, r.next)
    };
    let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        page(None, None, 10).await,
        (strings(&["ann", "Bo", "Zoë", "Ödön", "öz"]), None)
    );
    assert_eq!(
        page(Some("BO"), None, 2).await,
        (strings(&["Zoë", "Ödön"]), Some("Ödön".into()))
    );
    assert_eq!(
        page(None, Some("Ö"), 10).await,
        (strings(&["Ödön", "öz"]), None)
    );
    assert_eq!(
        page(Some("ödön"), Some("ö"), 10).await,
        (strings(&["öz"]), None)
    );
    assert_eq!(
        page(Some("a"), Some("z"), 10).await,
        (strings(&["Zoë"]), None)
    );
    // A rename moves the name; a leave removes it.
    let renamed = Member {
        name: UserName::parse("Al").expect("valid"),
        ..member("s1", "Zoë")
    };
    redis.rename(&room, &renamed).await.expect("renames");
    redis
        .leave(&room, &member("s0", "öz"))
        .await
        .expect("leaves");
    let first = redis
        .members(&room, &MemberQuery::first(10))
        .await
        .expect("reads");
    assert_eq!(first.names, strings(&["Al", "ann", "Bo", "Ödön"]));
    assert_eq!(first.count, 4);
    // A joiner gets the first `list_max` and the count.
    let snap = redis
        .join(&room, &member("s9", "cy"), true, None)
        .await
        .expect("joins");
    assert_eq!((snap.members.len(), snap.count), (5, 5));
    stop.cancel();
}
