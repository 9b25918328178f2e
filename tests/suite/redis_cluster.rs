//! Nodes on a Redis Cluster: three masters with a replica each, made by `redis-cli --cluster
//! create` on loopback. Rooms live on different shards; each node subscribes to a room's events
//! on the master of the room's slot (sharded pub/sub), and follows a failover by itself.

use crate::common;

use chorus::protocol::ServerMsg;
use common::{
    Client, PATIENCE,
    cluster::{Node, RedisCluster, ask, assert_stored_once, send_until_acked, wait_until},
};
use std::time::{Duration, Instant};

/// The channels each master has sharded subscribers for (`PUBSUB SHARDCHANNELS`), and the
/// classic ones (`PUBSUB CHANNELS`), by master index.
fn channels(cluster: &RedisCluster, master: usize, kind: &str) -> Vec<String> {
    let port = cluster.servers[master].port;
    ask(port, redis::cmd("PUBSUB").arg(kind)).unwrap_or_default()
}

#[tokio::test]
async fn rooms_on_every_shard_reach_the_other_node_once_and_in_order() {
    let cluster = RedisCluster::start(3, 1);
    let masters = cluster.masters();
    assert_eq!(masters.len(), 3);
    let rooms: Vec<String> = masters.iter().map(|&m| cluster.room_on(m)).collect();
    let a = Node::start(&cluster, "node-a");
    let b = Node::start(&cluster, "node-b");
    let (mut ann, _, _) = Client::in_room(&a, "ann", &rooms[0]).await;
    let (mut bo, _, _) = Client::in_room(&b, "bo", &rooms[0]).await;
    for room in &rooms[1..] {
        ann.join(room).await;
        bo.join(room).await;
    }

    // Each master carries exactly its own room's channel, sharded; none is a classic channel.
    for (i, &master) in masters.iter().enumerate() {
        let want = format!("chorus:{{r:{}}}:events", rooms[i]);
        assert_eq!(channels(&cluster, master, "SHARDCHANNELS"), vec![want]);
        assert!(channels(&cluster, master, "CHANNELS").is_empty());
    }

    const PER_ROOM: usize = 10;
    for i in 0..PER_ROOM {
        for room in &rooms {
            ann.say(room, &format!("{room} {i}"), &format!("{room}-{i}"))
                .await;
        }
    }
    let mut got: Vec<Vec<(u64, String)>> = vec![Vec::new(); rooms.len()];
    while got.iter().map(Vec::len).sum::<usize>() < PER_ROOM * rooms.len() {
        let m = bo.next_message().await;
        let r = rooms
            .iter()
            .position(|room| *room == m.room)
            .expect("a room bo is in");
        got[r].push((m.seq, m.text));
    }
    for (r, room) in rooms.iter().enumerate() {
        let want: Vec<(u64, String)> = (0..PER_ROOM)
            .map(|i| (i as u64 + 1, format!("{room} {i}")))
            .collect();
        assert_eq!(got[r], want, "room {room}: every message once, in order");
    }
    // Nothing more arrives.
    let extra = bo
        .listen_for(Duration::from_millis(300))
        .await
        .into_iter()
        .filter(|m| matches!(m, ServerMsg::Message(_)))
        .count();
    assert_eq!(extra, 0);

    // Leaving a room ends the node's subscription to it on its master.
    ann.send(&chorus::protocol::ClientMsg::Leave {
        room: rooms[2].clone(),
    })
    .await;
    bo.send(&chorus::protocol::ClientMsg::Leave {
        room: rooms[2].clone(),
    })
    .await;
    wait_until("the channel is unsubscribed", PATIENCE, || {
        channels(&cluster, masters[2], "SHARDCHANNELS").is_empty()
    });
}

#[tokio::test]
async fn a_master_killed_mid_traffic_is_followed_to_its_replica_and_nothing_is_lost() {
    let mut cluster = RedisCluster::start(3, 1);
    let masters = cluster.masters();
    let doomed = masters[0];
    let room = cluster.room_on(doomed);
    // A room on another shard, which the failover must not disturb.
    let calm = cluster.room_on(masters[1]);
    let a = Node::start(&cluster, "node-a");
    let b = Node::start(&cluster, "node-b");
    let (mut ann, _, _) = Client::in_room(&a, "ann", &room).await;
    let (mut bo, _, _) = Client::in_room(&b, "bo", &room).await;
    ann.say(&room, "before", "before").await;
    assert_eq!(bo.next_message().await.text, "before");

    const N: usize = 30;
    let deadline = Instant::now() + PATIENCE * 4;
    let mut refused = 0;
    for i in 0..N {
        if i == N / 3 {
            cluster.servers[doomed].kill();
        }
        refused += send_until_acked(&mut ann, &room, &format!("m{i}"), deadline).await;
    }
    assert!(refused > 0, "the failover was noticed by the sender");
    let promoted = cluster.master_of(&format!("{{r:{room}}}"));
    assert!(
        promoted.is_some_and(|m| m != doomed),
        "a replica took over the room's slots: {promoted:?}"
    );

    // Neither node was restarted: both are ready, and bo got every message of the new master's
    // history exactly once, in order (recovered from history where pub/sub missed it).
    a.wait_ready_status(200, 2).await;
    b.wait_ready_status(200, 2).await;
    let (mut di, _, history) = Client::in_room(&b, "di", &room).await;
    assert_stored_once(&history, N);
    let mut seen = Vec::new();
    while seen.len() < N {
        let m = bo.next_message().await;
        seen.push(m.text);
    }
    let want: Vec<String> = (0..N).map(|i| format!("m{i}")).collect();
    assert_eq!(seen, want, "bo saw every message once, in order");

    ann.say(&room, "after", "after").await;
    assert_eq!(di.next_message().await.text, "after");
    // The other shard's room works across nodes too.
    ann.join(&calm).await;
    di.join(&calm).await;
    ann.say(&calm, "calm", "calm").await;
    assert_eq!(di.next_message().await.text, "calm");
}

#[tokio::test]
async fn a_room_whose_master_lost_its_data_starts_a_new_epoch_and_says_so() {
    let cluster = RedisCluster::start(3, 0);
    // A room whose master does not also hold the sessions (`{u}`), so that only the room's data
    // is lost.
    let sessions = cluster.master_of("{u}");
    let master = *cluster
        .masters()
        .iter()
        .find(|&&m| Some(m) != sessions)
        .expect("a master without the sessions");
    let room = cluster.room_on(master);
    let a = Node::start(&cluster, "node-a");
    let b = Node::start(&cluster, "node-b");
    let (mut ann, _, _) = Client::in_room(&a, "ann", &room).await;
    ann.say(&room, "before", "c1").await;
    let before = ann.next_message().await;

    // The room's master loses everything it held (as a restart without its disk would).
    let flushed: Option<String> = ask(cluster.servers[master].port, &redis::cmd("FLUSHALL"));
    assert_eq!(flushed.as_deref(), Some("OK"));
    ann.say(&room, "after", "c2").await;
    let after = ann.next_message().await;
    assert_ne!(
        after.epoch, before.epoch,
        "numbering starts again in a new epoch"
    );

    // Someone coming back from where they were is told what they missed is gone.
    let (mut bo, _, _) = Client::in_room(&b, "bo", "elsewhere").await;
    let (_, history, recovered) = bo
        .join_since(
            &room,
            Some(chorus::protocol::Position {
                epoch: before.epoch.clone(),
                seq: before.seq,
            }),
        )
        .await;
    assert_eq!(recovered, Some(false));
    let texts: Vec<&str> = history.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, ["after"]);
}
