//! `GET /metrics` on a real server: Prometheus text whose counters move as a scripted session
//! does known things. And the status page's data, `GET /status.json`, where it is served.

use crate::common;

use chorus::protocol::ServerMsg;
use common::{Client, TestServer, free_port, metric, scrape, status_json, wait_for_metric};

#[tokio::test]
async fn counters_follow_what_a_session_does() {
    let server = TestServer::start().await;
    let url = server.http_url("/metrics");
    let (mut ann, _, _) = Client::in_room(&server, "ann", "lobby").await;
    let (mut bo, _, _) = Client::in_room(&server, "bo", "lobby").await;
    let (mut cy, _, _) = Client::in_room(&server, "cy", "lobby").await;
    // Settled: each has the final list (cy got it joining), so no presence frame is still on
    // its way.
    for c in [&mut ann, &mut bo] {
        c.recv_until(|m| matches!(m, ServerMsg::Presence { members, .. } if members.len() == 3))
            .await;
    }
    let before = scrape(&url).await;
    assert_eq!(metric(&before, "chorus_connections_open", None), 3.0);
    assert_eq!(metric(&before, "chorus_rooms_local", None), 1.0);
    assert_eq!(metric(&before, "chorus_draining", None), 0.0);
    assert_eq!(
        metric(&before, "chorus_connections_opened_total", None),
        3.0
    );

    for i in 0..3 {
        ann.say("lobby", &format!("m{i}"), &format!("c{i}")).await;
    }
    // A re-sent message is acknowledged again, not stored again.
    ann.say("lobby", "m2", "c2").await;
    // And one refused: not in that room.
    ann.say("elsewhere", "hello?", "c9").await;
    assert_eq!(ann.next_error().await, "not_in_room");
    for c in [&mut ann, &mut bo, &mut cy] {
        for i in 0..3 {
            assert_eq!(c.next_message().await.text, format!("m{i}"));
        }
    }

    let after = scrape(&url).await;
    let moved = |name: &str, label| metric(&after, name, label) - metric(&before, name, label);
    assert_eq!(moved("chorus_messages_stored_total", None), 3.0);
    assert_eq!(moved("chorus_messages_deduplicated_total", None), 1.0);
    assert_eq!(
        moved("chorus_deliveries_total", None),
        3.0 * 3.0,
        "3 messages × 3 members"
    );
    assert_eq!(
        moved("chorus_frames_received_total", Some(("type", "send"))),
        5.0
    );
    assert_eq!(
        moved("chorus_errors_sent_total", Some(("code", "not_in_room"))),
        1.0
    );
    // Every frame written went through a connection's queue: 9 messages, ann's 4 acks and her
    // error.
    assert_eq!(
        moved("chorus_outbound_queue_depth_sum", None),
        14.0,
        "frames taken from the outbound queues"
    );
    assert!(moved("chorus_outbound_queue_depth_count", None) >= 3.0);
    // Each send (the re-sent one too) was one timed store call.
    assert_eq!(
        moved("chorus_store_latency_seconds_count", Some(("op", "append"))),
        4.0
    );

    // A client that says goodbye is counted as such.
    ann.close().await;
    let closed = Some(("reason", "client_close"));
    let now = wait_for_metric(&url, "chorus_connections_closed_total", closed, 1.0).await;
    assert_eq!(metric(&now, "chorus_connections_open", None), 2.0);
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn metrics_can_be_served_on_their_own_address_only() {
    let port = free_port();
    let server =
        TestServer::with(|c| c.observe.metrics_listen = Some(([127, 0, 0, 1], port).into())).await;
    let public = reqwest::get(server.http_url("/metrics"))
        .await
        .expect("GET /metrics");
    assert_eq!(public.status(), 404, "not on the public listener");
    let own = scrape(&format!("http://127.0.0.1:{port}/metrics")).await;
    assert_eq!(metric(&own, "chorus_connections_open", None), 0.0);
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn the_status_data_counts_this_nodes_connections_and_rooms() {
    let server = TestServer::start().await;
    let url = server.http_url("/status.json");
    let before = status_json(&url).await;
    let node = &before["nodes"][0];
    assert_eq!(node["connections"], 0);
    assert_eq!(node["redis"], serde_json::Value::Null, "no Redis: one node");
    let (_ann, _, _) = Client::in_room(&server, "ann", "lobby").await;
    let (_bo, _, _) = Client::in_room(&server, "bo", "hall").await;
    let after = status_json(&url).await;
    let node = &after["nodes"][0];
    assert_eq!(
        (node["connections"].as_u64(), node["rooms"].as_u64()),
        (Some(2), Some(2))
    );
    assert_eq!(after["nodes"].as_array().map(Vec::len), Some(1));
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn the_status_page_can_be_off_or_on_its_own_address_only() {
    let off = TestServer::with(|c| c.observe.status_page = false).await;
    for path in ["/status", "/status.json"] {
        let response = reqwest::get(off.http_url(path)).await.expect("GET");
        assert_eq!(response.status(), 404, "{path} is off");
    }
    off.shutdown().await.expect("clean shutdown");

    let port = free_port();
    let apart =
        TestServer::with(|c| c.observe.status_listen = Some(([127, 0, 0, 1], port).into())).await;
    let public = reqwest::get(apart.http_url("/status.json"))
        .await
        .expect("GET");
    assert_eq!(public.status(), 404, "not on the public listener");
    let own = status_json(&format!("http://127.0.0.1:{port}/status.json")).await;
    assert_eq!(own["nodes"][0]["connections"], 0);
    let page = reqwest::get(format!("http://127.0.0.1:{port}/status"))
        .await
        .expect("GET /status");
    assert_eq!(page.status(), 200);
    let html = page.text().await.expect("HTML");
    assert!(
        html.contains("Chorus status") && html.contains("ops-connections"),
        "{html}"
    );
    apart.shutdown().await.expect("clean shutdown");
}
