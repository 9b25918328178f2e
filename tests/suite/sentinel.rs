//! Redis high availability through Sentinel: a real master, two replicas and three sentinels on
//! loopback; the master is killed while a client sends, and the nodes follow the promoted
//! replica by themselves.

use crate::common;

use common::{
    Client, PATIENCE,
    cluster::{Node, Redis, Sentinel, ask, assert_stored_once, send_until_acked, wait_until},
};
use std::time::Instant;

fn in_sync(replica: &Redis) -> bool {
    ask::<String>(replica.port, redis::cmd("INFO").arg("replication"))
        .is_some_and(|info| info.contains("master_link_status:up"))
}

fn sentinel_lists(sentinel: &Sentinel, what: &str) -> usize {
    ask::<Vec<redis::Value>>(
        sentinel.port,
        redis::cmd("SENTINEL").arg(what).arg("mymaster"),
    )
    .map_or(0, |list| list.len())
}

#[tokio::test]
async fn nodes_follow_a_failover_and_no_acknowledged_message_is_lost() {
    let mut master = Redis::start();
    let replicas = [
        Redis::start_replica_of(&master),
        Redis::start_replica_of(&master),
    ];
    for replica in &replicas {
        wait_until("the replica syncs", PATIENCE, || in_sync(replica));
    }
    let sentinels: Vec<Sentinel> = (0..3).map(|_| Sentinel::start(&master)).collect();
    // They learn the replicas from the master, and each other from its hello channel (every 2 s).
    for sentinel in &sentinels {
        wait_until("the sentinels know the set-up", PATIENCE * 2, || {
            sentinel_lists(sentinel, "replicas") == 2 && sentinel_lists(sentinel, "sentinels") == 2
        });
    }
    let addresses: Vec<String> = sentinels.iter().map(Sentinel::address).collect();
    let redis_args = vec![
        "--redis-sentinels".to_owned(),
        addresses.join(","),
        "--redis-sentinel-master".to_owned(),
        "mymaster".to_owned(),
    ];
    // A message is acknowledged only once a replica has it too.
    let waited = [
        "--redis-wait-replicas",
        "1",
        "--redis-wait-timeout-ms",
        "500",
    ];
    let a = Node::start_on(redis_args.clone(), "node-a", &waited);
    let b = Node::start_on(redis_args, "node-b", &waited);
    let (mut ann, _, _) = Client::in_room(&a, "ann", "lobby").await;
    let (mut bo, _, _) = Client::in_room(&b, "bo", "lobby").await;
    ann.say("lobby", "before", "before").await;
    assert_eq!(
        bo.next_message().await.text,
        "before",
        "cross-node delivery"
    );

    // Mid-traffic, the master dies; the sentinels promote a replica (about 2-5 s here).
    const N: usize = 30;
    let deadline = Instant::now() + PATIENCE * 4;
    let mut refused = 0;
    for i in 0..N {
        if i == N / 3 {
            master.kill();
        }
        refused += send_until_acked(&mut ann, "lobby", &format!("m{i}"), deadline).await;
    }
    assert!(refused > 0, "the failover was noticed by the sender");
    let promoted = ask::<Vec<String>>(
        sentinels[0].port,
        redis::cmd("SENTINEL")
            .arg("get-master-addr-by-name")
            .arg("mymaster"),
    )
    .expect("the sentinels name a master");
    assert_ne!(
        promoted.get(1),
        Some(&master.port.to_string()),
        "a replica was promoted"
    );

    // Neither node was restarted: both are ready and deliver across again.
    a.wait_ready_status(200, 2).await;
    b.wait_ready_status(200, 2).await;
    let (mut di, _, history) = Client::in_room(&b, "di", "lobby").await;
    // The counting check: every acknowledged message is in the new master's history, once.
    assert_stored_once(&history, N);
    ann.say("lobby", "after", "after").await;
    assert_eq!(di.next_message().await.text, "after");
}
