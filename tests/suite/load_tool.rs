//! `chorus-load` against a real server: small, bounded runs whose counts must add up.

use crate::common;

use common::TestServer;
use serde_json::Value;

const LOAD: &str = env!("CARGO_BIN_EXE_chorus-load");

/// Runs the load tool (on a blocking thread, as it is a separate process) and parses its line.
async fn run(args: Vec<String>) -> Value {
    tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new(LOAD)
            .args(&args)
            .args(["--max-secs", "60"])
            .output()
            .expect("chorus-load runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "chorus-load failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            stdout.lines().count(),
            1,
            "one JSON line expected: {stdout}"
        );
        serde_json::from_str(stdout.trim()).expect("the line is JSON")
    })
    .await
    .expect("runner thread")
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[tokio::test]
async fn capacity_opens_every_connection_and_reports_the_servers_memory() {
    let server = TestServer::with(common::unlimited).await;
    let url = server.ws_url();
    let pid = std::process::id().to_string(); // the server runs in this test process
    let report = run(args(&[
        "capacity",
        "--url",
        &url,
        "--pid",
        &pid,
        "--connections",
        "60",
        "--room-size",
        "25",
        "--hold-secs",
        "0",
        "--source",
        "127.0.0.1",
        "--source",
        "127.0.0.2",
    ]))
    .await;
    assert_eq!(report["connected"], 60, "{report}");
    assert_eq!(report["errors"], 0, "{report}");
    assert!(
        report["server_rss_after"].as_u64().unwrap_or(0) > 0,
        "{report}"
    );
}

#[tokio::test]
async fn capacity_can_fill_each_room_s_history_before_its_members_join() {
    let server = TestServer::with(common::unlimited).await;
    let url = server.ws_url();
    let report = run(args(&[
        "capacity",
        "--url",
        &url,
        "--connections",
        "20",
        "--room-size",
        "10",
        "--hold-secs",
        "0",
        "--fill-messages",
        "5",
        "--fill-chars",
        "2000",
    ]))
    .await;
    assert_eq!(report["filled_messages"], 10, "{report}");
    assert_eq!(report["connected"], 20, "{report}");
    assert_eq!(report["errors"], 0, "{report}");
}

#[tokio::test]
async fn fanout_counts_every_delivery_exactly_once() {
    let server = TestServer::with(common::unlimited).await;
    let url = server.ws_url();
    let report = run(args(&[
        "fanout",
        "--url",
        &url,
        "--members",
        "8",
        "--senders",
        "2",
        "--rate",
        "100",
        "--secs",
        "1",
    ]))
    .await;
    let sent = report["sent"].as_u64().unwrap_or(0);
    assert_eq!(sent, 100, "{report}");
    assert_eq!(report["expected_deliveries"], sent * 8, "{report}");
    assert_eq!(report["deliveries"], sent * 8, "{report}");
    assert_eq!(report["lost"], 0, "{report}");
    assert_eq!(report["duplicated"], 0, "{report}");
    assert!(
        report["latency_ms"]["p99"].as_f64().unwrap_or(-1.0) >= 0.0,
        "{report}"
    );
}

#[tokio::test]
async fn crossnode_measures_one_receiver_on_the_second_url() {
    let server = TestServer::with(common::unlimited).await;
    let url = server.ws_url();
    let report = run(args(&[
        "crossnode",
        "--url",
        &url,
        "--url",
        &url,
        "--rate",
        "50",
        "--secs",
        "1",
    ]))
    .await;
    assert_eq!(report["receivers"], 1, "{report}");
    assert_eq!(report["deliveries"], report["sent"], "{report}");
    assert_eq!(report["lost"], 0, "{report}");
}

#[tokio::test]
async fn pubsub_measures_the_redis_floor_with_every_message_received() {
    let redis = common::cluster::Redis::start();
    let report = run(args(&[
        "pubsub",
        "--redis",
        &redis.url(),
        "--rate",
        "100",
        "--secs",
        "1",
    ]))
    .await;
    assert_eq!(report["sent"], 100, "{report}");
    assert_eq!(report["received"], 100, "{report}");
    assert_eq!(report["lost"], 0, "{report}");
    assert!(
        report["latency_ms"]["p50"].as_f64().unwrap_or(0.0) > 0.0,
        "{report}"
    );
}

/// The real `chorus` binary in its own process, so its descriptors are its own.
struct ServerProcess {
    child: std::process::Child,
    port: u16,
}

impl ServerProcess {
    fn start() -> Self {
        let port = common::free_port();
        let child = std::process::Command::new(env!("CARGO_BIN_EXE_chorus"))
            .args(["--listen", &format!("127.0.0.1:{port}"), "--log", "warn"])
            .env("CHORUS_CONFIG", "/dev/null")
            .spawn()
            .expect("chorus starts");
        common::wait_listening(port);
        Self { child, port }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn churn_leaves_no_connections_behind() {
    let server = ServerProcess::start();
    let url = format!("ws://127.0.0.1:{}/ws", server.port);
    let pid = server.child.id().to_string();
    let report = run(args(&[
        "churn", "--url", &url, "--pid", &pid, "--cycles", "300", "--rate", "500",
    ]))
    .await;
    assert_eq!(report["errors"], 0, "{report}");
    assert!(
        report["server_fds_before"].as_u64().unwrap_or(0) > 0,
        "{report}"
    );
    assert_eq!(
        report["server_fds_after"], report["server_fds_before"],
        "descriptors leaked: {report}"
    );
}

#[tokio::test]
async fn rooms_emptied_and_filled_again_fast_keep_their_redis_subscriptions() {
    // Each churn cycle may empty a room and fill it again: an UNSUBSCRIBE then a SUBSCRIBE of its
    // channel. The notice of an UNSUBSCRIBE was taken for Redis dropping the subscription when
    // the room had been forgotten or subscribed again before the notice came: the node then
    // reconnected pub/sub, and joins meanwhile failed (2 to 6 losses and 178 to 720 failed joins
    // in 20,000 cycles at 1,000/s). A race: without the fix this failed in one of two runs here;
    // the bookkeeping itself is unit-tested in `bus::redis`.
    let redis = common::cluster::Redis::start();
    let node = common::cluster::Node::start_with(
        &redis,
        "churn",
        &[
            "--connects-per-sec",
            "1000000",
            "--connect-burst",
            "1000000",
            "--rooms-created-per-min",
            "1000000",
        ],
    );
    let url = format!("ws://127.0.0.1:{}/ws", node.port);
    let report = run(args(&[
        "churn",
        "--url",
        &url,
        "--source",
        "127.0.0.1",
        "--source",
        "127.0.0.2",
        "--cycles",
        "20000",
        "--rate",
        "1000",
        "--concurrency",
        "64",
    ]))
    .await;
    // Only the loss itself is asserted: on a busy machine a debug node may also fail a join
    // or two by being slow (seen once in a full run).
    let seen = common::scrape(&node.http_url("/metrics")).await;
    assert_eq!(
        common::metric(&seen, "chorus_pubsub_lost_total", None),
        0.0,
        "{report}"
    );
}
