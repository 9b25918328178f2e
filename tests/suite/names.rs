//! Names survive Redis losing its data: each node puts back the names and sessions of the people
//! it serves (a `FLUSHALL`, a restart without persistence). Someone who took a name in the gap
//! loses it to the person who held it first, and a newcomer is refused it, on every node.

use crate::common;

use chorus::protocol::ServerMsg;
use common::{
    Client, Ended,
    cluster::{Node, Redis, ask, wait_until},
};
use std::time::Duration;

/// Sets the name and waits for the answer: true if granted.
async fn claims(client: &mut Client, name: &str) -> bool {
    client.set_name(name).await;
    match client
        .recv_until(|m| matches!(m, ServerMsg::NameSet { .. } | ServerMsg::Error { .. }))
        .await
    {
        ServerMsg::NameSet { .. } => true,
        ServerMsg::Error { code, .. } => {
            assert_eq!(code.as_str(), "name_taken");
            false
        }
        _ => unreachable!(),
    }
}

#[tokio::test]
async fn names_are_put_back_after_redis_lost_its_data_and_the_first_holder_keeps_them() {
    let redis = Redis::start();
    let a = Node::start(&redis, "node-a");
    let b = Node::start(&redis, "node-b");
    let (mut ann, _, _) = Client::in_room(&a, "ann", "lobby").await;
    let (mut bo, _, _) = Client::in_room(&b, "bo", "lobby").await;

    let flushed: Option<String> = ask(redis.port, &redis::cmd("FLUSHALL"));
    assert_eq!(flushed.as_deref(), Some("OK"));
    // In the gap, before the nodes notice, someone on node B takes "ann".
    let mut twin = Client::connect(&b).await;
    let took_it = claims(&mut twin, "ann").await;

    // Once the nodes have put their people back, "ann" is ann's again on both nodes.
    let mut tries = 0;
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let mut newcomer = Client::connect(if tries % 2 == 0 { &a } else { &b }).await;
        if !claims(&mut newcomer, "ann").await {
            break;
        }
        tries += 1;
        assert!(
            tries < 50,
            "\"ann\" was still free 10 s after Redis lost its data"
        );
    }
    for node in [&a, &b] {
        let mut newcomer = Client::connect(node).await;
        assert!(!claims(&mut newcomer, "ann").await, "refused on every node");
        assert!(!claims(&mut newcomer, "bo").await, "bo's name is back too");
    }
    // The one who took it in the gap is ended (its client reconnects, finds its session gone
    // and is told the name is taken); the first holder carries on.
    if took_it {
        assert!(
            matches!(
                twin.until_closed().await,
                Ended::Closed(Some(1013)) | Ended::Dropped
            ),
            "the later holder's connection ends"
        );
    }
    let heard = ann.heard_until_said("still ann").await;
    assert!(
        !heard.iter().any(|m| matches!(m, ServerMsg::Error { .. })),
        "{heard:?}"
    );
    bo.recv_until(
        |m| matches!(m, ServerMsg::Message(m) if m.text == "still ann" && m.from == "ann"),
    )
    .await;
    // And the room lists one ann.
    wait_until("the room lists ann once", Duration::from_secs(10), || {
        let members: Vec<String> = ask(
            redis.port,
            redis::cmd("HVALS").arg("chorus:{r:lobby}:members"),
        )
        .unwrap_or_default();
        members.iter().filter(|m| m.ends_with("\nann")).count() == 1
    });
}
