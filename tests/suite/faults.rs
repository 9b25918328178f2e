//! No message lost: traffic through one room from clients on two nodes while a socket is cut, a
//! node is killed, Redis restarts, the nodes are restarted one after the other behind nginx, or
//! the room stays idle past nginx's timeout. Each test then counts that every acknowledged
//! message reached every client exactly once, in `seq` order (`traffic::assert_exactly_once`).
//!
//! The socket cut, the node kill and the rolling restart run twice: on one Redis, and on a
//! Redis Cluster of three masters with a replica each (rooms on sharded pub/sub).
//!
//! Real redis-server, real `chorus` processes, real nginx, on loopback; every run is bounded.

use crate::common;

use common::{
    Client, PATIENCE,
    cluster::{Backing, Nginx, Node, Redis, RedisCluster},
    traffic::{Fault, Participant, Record, assert_exactly_once, settle, wait_joined},
};
use std::time::Duration;

/// Larger than all the traffic of a test, so every reconnect can recover all it missed.
const NODE_ARGS: &[&str] = &["--history-size", "1000"];
const ROOM: &str = "faults";

fn nodes(redis: &impl Backing, extra: &[&str]) -> (Node, Node) {
    let args: Vec<&str> = NODE_ARGS.iter().chain(extra).copied().collect();
    (
        Node::start_with(redis, "node-a", &args),
        Node::start_with(redis, "node-b", &args),
    )
}

/// Four participants, two starting on each node (and moving to the other when theirs fails).
fn participants(a: &Node, b: &Node, to_send: usize, every: Duration) -> Vec<Participant> {
    let (ua, ub) = (common::Endpoint::ws_url(a), common::Endpoint::ws_url(b));
    (0..4)
        .map(|i| {
            let urls = if i % 2 == 0 {
                vec![ua.clone(), ub.clone()]
            } else {
                vec![ub.clone(), ua.clone()]
            };
            Participant::start(&format!("p{i}"), urls, ROOM, to_send, every)
        })
        .collect()
}

/// Four participants that all connect through the balancer, silent for `quiet` first.
fn behind(nginx: &Nginx, to_send: usize, every: Duration, quiet: Duration) -> Vec<Participant> {
    let url = common::Endpoint::ws_url(nginx);
    (0..4)
        .map(|i| {
            let name = format!("p{i}");
            Participant::start_after(&name, vec![url.clone()], ROOM, to_send, every, quiet)
        })
        .collect()
}

fn total(records: &[Record], f: impl Fn(&Record) -> usize) -> usize {
    records.iter().map(f).sum()
}

#[tokio::test]
async fn a_socket_cut_mid_traffic_recovers_every_message_after_reconnecting() {
    socket_cut(&Redis::start()).await;
}

#[tokio::test]
async fn on_a_redis_cluster_a_socket_cut_mid_traffic_recovers_every_message() {
    socket_cut(&RedisCluster::start(3, 1)).await;
}

async fn socket_cut(redis: &impl Backing) {
    let (a, b) = nodes(redis, &[]);
    let all = participants(&a, &b, 40, Duration::from_millis(30));
    wait_joined(&all).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // p1 (on node B) loses its link without a close frame and is gone for two seconds, while
    // the others go on talking.
    all[1].inject(Fault::Cut(Duration::from_secs(2)));
    let records = settle(all, PATIENCE * 2).await;
    assert_exactly_once(&records);
    let cut = &records[1];
    assert!(cut.connections >= 2, "p1 never reconnected: {cut:?}");
    assert!(cut.recovered >= 1, "p1 did not recover by `since`: {cut:?}");
    assert_eq!(total(&records, |r| r.incomplete), 0);
}

#[tokio::test]
async fn a_node_killed_mid_traffic_loses_nothing_its_clients_move_to_the_other() {
    node_killed(&Redis::start()).await;
}

#[tokio::test]
async fn on_a_redis_cluster_a_node_killed_mid_traffic_loses_nothing() {
    node_killed(&RedisCluster::start(3, 1)).await;
}

async fn node_killed(redis: &impl Backing) {
    let (a, mut b) = nodes(redis, &[]);
    let all = participants(&a, &b, 40, Duration::from_millis(30));
    wait_joined(&all).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    b.kill();
    let records = settle(all, PATIENCE * 2).await;
    assert_exactly_once(&records);
    for moved in [&records[1], &records[3]] {
        assert!(
            moved.connections >= 2,
            "{} stayed on the dead node?",
            moved.name
        );
        assert!(
            moved.recovered >= 1,
            "{} did not recover: {moved:?}",
            moved.name
        );
    }
}

#[tokio::test]
async fn a_redis_restart_mid_traffic_loses_nothing() {
    let mut redis = Redis::start();
    let (a, b) = nodes(&redis, &[]);
    let all = participants(&a, &b, 40, Duration::from_millis(40));
    wait_joined(&all).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    redis.kill();
    let down = std::time::Instant::now();
    // The nodes noticed: the outage is real. (Sends meanwhile may be refused and re-sent, or
    // merely wait for the store's own reconnect: both are fine, and both are counted below.)
    a.wait_ready_status(503, 1).await;
    b.wait_ready_status(503, 1).await;
    tokio::time::sleep(Duration::from_secs(1).saturating_sub(down.elapsed())).await;
    redis.restart();
    let records = settle(all, PATIENCE * 3).await;
    assert_exactly_once(&records);
}

#[tokio::test]
async fn a_rolling_restart_behind_nginx_loses_nothing() {
    rolling_restart(&Redis::start()).await;
}

#[tokio::test]
async fn on_a_redis_cluster_a_rolling_restart_behind_nginx_loses_nothing() {
    rolling_restart(&RedisCluster::start(3, 1)).await;
}

async fn rolling_restart(redis: &impl Backing) {
    // Each node spreads its clients' 1012s over a second when it gets SIGTERM.
    let (mut a, mut b) = nodes(redis, &["--drain-ms", "1000"]);
    let nginx = Nginx::start(&[&a, &b]);
    let all = behind(&nginx, 60, Duration::from_millis(100), Duration::ZERO);
    wait_joined(&all).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    for node in [&mut a, &mut b] {
        node.terminate();
        node.restart();
        node.wait_ready_status(200, 1).await;
        // nginx skips a node for fail_timeout (2 s) after it answered 503 while draining.
        tokio::time::sleep(Duration::from_millis(2100)).await;
    }
    let records = settle(all, PATIENCE * 3).await;
    assert_exactly_once(&records);
    // Every participant was on one of the two nodes, so each moved at least once.
    for r in &records {
        assert!(r.connections >= 2, "{} never moved: {r:?}", r.name);
        assert!(r.recovered >= 1, "{} did not recover: {r:?}", r.name);
    }
    assert_eq!(total(&records, |r| r.incomplete), 0);
}

#[tokio::test]
async fn heartbeats_keep_an_idle_connection_open_past_nginx_s_read_timeout() {
    let redis = Redis::start();
    // Pings every 300 ms; nginx cuts a proxied WebSocket silent for 1 s.
    let (a, b) = nodes(&redis, &["--ping-interval-ms", "300"]);
    let nginx = Nginx::start_with_read_timeout(&[&a, &b], Some(1));
    // The control: the same nginx timeout in front of a node that pings only every 20 s.
    let quiet = Node::start_with(
        &redis,
        "node-quiet",
        &["--ping-interval-ms", "20000", "--idle-timeout-ms", "60000"],
    );
    let quiet_nginx = Nginx::start_with_read_timeout(&[&quiet], Some(1));
    let mut control = Client::connect(&quiet_nginx).await;

    // Joined at once, then silent for 3.5 of nginx's timeouts before they talk.
    let all = behind(
        &nginx,
        10,
        Duration::from_millis(50),
        Duration::from_millis(3500),
    );
    wait_joined(&all).await;
    // Without pings, nginx does cut a quiet connection.
    let ended = control.until_closed().await;
    assert!(
        matches!(ended, common::Ended::Dropped | common::Ended::Closed(_)),
        "{ended:?}"
    );
    let records = settle(all, PATIENCE * 2).await;
    assert_exactly_once(&records);
    for r in &records {
        assert_eq!(r.connections, 1, "{} was reconnected: {r:?}", r.name);
    }
}

#[tokio::test]
async fn a_node_started_while_redis_is_down_waits_unready_then_serves_by_itself() {
    let mut redis = Redis::start();
    redis.kill();
    let node = Node::start_listening(&redis, "node-early");
    // Alive, not ready, and no chat connections: a balancer sends people elsewhere.
    let health = reqwest::get(node.http_url("/healthz"))
        .await
        .expect("GET /healthz");
    assert_eq!(health.status(), 200);
    node.wait_ready_status(503, 1).await;
    assert_eq!(common::upgrade_status(&node, &[]).await.0, 503);

    redis.restart();
    // Retried with backoff (at most 5 s apart): ready without a restart.
    node.wait_ready_status(200, 2).await;
    let (mut ann, _, _) = Client::in_room(&node, "ann", "lobby").await;
    let (mut bo, _, _) = Client::in_room(&node, "bo", "lobby").await;
    ann.say("lobby", "made it", "c1").await;
    assert_eq!(bo.next_message().await.text, "made it");
}
