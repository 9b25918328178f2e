//! Moderation: moderators (by the operator token, or a token's `moderator` claim) delete
//! anyone's message, mute and kick names, and set slow mode; each action is an entry of the
//! room's stream (so every node and a client recovering with `since` sees it), and the rules are
//! kept in the store, so every node enforces them.

use crate::common;

use chorus::protocol::{ChatMessage, ClientMsg, ModAction, NoticeKind, Position, ServerMsg};
use common::{
    Client, Endpoint, TestServer,
    cluster::{Node, Redis, ask},
};
use std::time::Duration;

const OPERATOR_TOKEN: &str = "an operator token for tests";

/// The next error's code and how long it says to wait.
async fn refusal(client: &mut Client) -> (String, Option<u64>) {
    match client
        .recv_until(|m| matches!(m, ServerMsg::Error { .. }))
        .await
    {
        ServerMsg::Error {
            code,
            retry_after_ms,
            ..
        } => (code.as_str().to_owned(), retry_after_ms),
        _ => unreachable!(),
    }
}

fn lobby() -> String {
    "lobby".into()
}

/// The next moderation entry `client` hears (past other messages): its action, whom and how
/// long.
async fn next_moderation(client: &mut Client) -> (ModAction, Option<String>, u64, ChatMessage) {
    loop {
        let m = client.next_message().await;
        if let Some(md) = m.moderation.clone() {
            return (md.action, md.name, md.seconds, m);
        }
    }
}

/// ann moderates from `first`; bo (a nuisance) and cy are on `second`; dee is away for a while.
async fn moderators_act_on_every_node(first: &impl Endpoint, second: &impl Endpoint) {
    let (mut ann, _, _) = Client::in_room(first, "ann", "lobby").await;
    let (mut bo, _, _) = Client::in_room(second, "bo", "lobby").await;
    let (mut cy, _, _) = Client::in_room(second, "cy", "lobby").await;
    let (mut dee, _, _) = Client::in_room(second, "dee", "lobby").await;
    bo.say("lobby", "spam", "b1").await;
    let spam = ann.next_message().await;
    assert_eq!(cy.next_message().await, spam);
    assert_eq!(dee.next_message().await, spam);
    assert_eq!(bo.next_message().await, spam);
    let seen = Position {
        epoch: spam.epoch.clone(),
        seq: spam.seq,
    };
    dee.cut();

    // Not a moderator yet, and not with a wrong token.
    let mute_bo = |seconds| ClientMsg::Mute {
        room: lobby(),
        name: "bo".into(),
        seconds,
    };
    ann.send(&mute_bo(60)).await;
    assert_eq!(ann.next_error().await, "not_moderator");
    ann.send(&ClientMsg::Moderate {
        token: "guess".into(),
    })
    .await;
    assert_eq!(ann.next_error().await, "not_moderator");
    ann.send(&ClientMsg::Moderate {
        token: OPERATOR_TOKEN.into(),
    })
    .await;
    ann.recv_until(|m| matches!(m, ServerMsg::Moderator)).await;

    // Anyone's message, on the other node: the room sees it deleted, and by whom.
    ann.send(&ClientMsg::Delete {
        room: lobby(),
        epoch: spam.epoch.clone(),
        seq: spam.seq,
        client_id: None,
    })
    .await;
    let (action, name, _, deleted) = next_moderation(&mut cy).await;
    assert_eq!((action, name.as_deref()), (ModAction::Delete, Some("bo")));
    assert_eq!(
        (deleted.edits, deleted.deleted, deleted.from.as_str()),
        (Some(spam.seq), true, "ann")
    );
    assert_eq!(next_moderation(&mut bo).await.3, deleted);

    // A mute holds on every node, and a new name does not lift it.
    ann.send(&mute_bo(60)).await;
    let (action, name, seconds, _) = next_moderation(&mut bo).await;
    assert_eq!(
        (action, name.as_deref(), seconds),
        (ModAction::Mute, Some("bo"), 60)
    );
    bo.say("lobby", "more spam", "b2").await;
    let (code, wait) = refusal(&mut bo).await;
    assert_eq!(code, "muted");
    assert!(
        wait.is_some_and(|ms| ms > 50_000 && ms <= 60_000),
        "{wait:?}"
    );
    // The room task on bo's node mutes bo's session beside delivering the entry.
    tokio::time::sleep(Duration::from_millis(300)).await;
    bo.set_name("bo2").await;
    bo.recv_until(|m| matches!(m, ServerMsg::NameSet { .. }))
        .await;
    bo.say("lobby", "spam as bo2", "b3").await;
    assert_eq!(refusal(&mut bo).await.0, "muted");
    // Others still speak.
    assert_eq!(next_moderation(&mut cy).await.0, ModAction::Mute);
    cy.say("lobby", "hello", "c1").await;
    let hello = cy.next_message().await;
    assert_eq!(hello.text, "hello");
    // Nor is a muted person said to be typing; others are.
    let typing = ClientMsg::Typing { room: lobby() };
    bo.send(&typing).await;
    ann.send(&typing).await;
    let heard: Vec<Vec<String>> = cy
        .listen_for(Duration::from_millis(1500))
        .await
        .into_iter()
        .filter_map(|m| match m {
            ServerMsg::Typing { names, .. } => Some(names),
            _ => None,
        })
        .collect();
    assert!(
        heard.iter().any(|names| names.contains(&"ann".to_owned())),
        "{heard:?}"
    );
    assert!(
        heard.iter().flatten().all(|name| name != "bo2"),
        "{heard:?}"
    );

    // Slow mode: one message per person per interval, counted across nodes.
    ann.send(&ClientMsg::SlowMode {
        room: lobby(),
        seconds: 30,
    })
    .await;
    let (action, _, seconds, _) = next_moderation(&mut cy).await;
    assert_eq!((action, seconds), (ModAction::SlowMode, 30));
    cy.say("lobby", "one", "c2").await;
    assert_eq!(cy.next_message().await.text, "one");
    cy.say("lobby", "two", "c3").await;
    let (code, wait) = refusal(&mut cy).await;
    assert_eq!(code, "slow_mode");
    assert!(
        wait.is_some_and(|ms| ms > 20_000 && ms <= 30_000),
        "{wait:?}"
    );
    // cy's other tab, on the other node, waits its turn too.
    let mut cy_tab = Client::connect(first).await;
    cy_tab.resume(&cy.session).await;
    cy_tab.set_name("cy").await;
    cy_tab.join("lobby").await;
    let slow = cy_tab
        .recv_until(|m| matches!(m, ServerMsg::SlowMode { .. }))
        .await;
    assert_eq!(
        slow,
        ServerMsg::SlowMode {
            room: lobby(),
            seconds: 30
        }
    );
    cy_tab.say("lobby", "two again", "c4").await;
    assert_eq!(refusal(&mut cy_tab).await.0, "slow_mode");
    // Moderators are not slowed.
    ann.say("lobby", "rules: be kind", "a1").await;
    ann.say("lobby", "and brief", "a2").await;
    assert_eq!(cy.next_message().await.text, "rules: be kind");
    assert_eq!(cy.next_message().await.text, "and brief");

    // A kick takes bo (by the name he holds now) out of the room on his node, and keeps him out.
    ann.send(&ClientMsg::Kick {
        room: lobby(),
        name: "bo2".into(),
        seconds: Some(120),
    })
    .await;
    assert_eq!(next_moderation(&mut bo).await.0, ModAction::SlowMode);
    let (action, name, seconds, _) = next_moderation(&mut bo).await;
    assert_eq!(
        (action, name.as_deref(), seconds),
        (ModAction::Kick, Some("bo2"), 120)
    );
    let left = cy
        .recv_until(|m| {
            matches!(
                m,
                ServerMsg::Notice {
                    kind: NoticeKind::Left,
                    ..
                }
            )
        })
        .await;
    assert!(matches!(left, ServerMsg::Notice { name, .. } if name == "bo2"));
    bo.say("lobby", "still here?", "b4").await;
    assert_eq!(refusal(&mut bo).await.0, "kicked");
    bo.send(&ClientMsg::join("lobby")).await;
    let (code, wait) = refusal(&mut bo).await;
    assert_eq!(code, "kicked");
    assert!(
        wait.is_some_and(|ms| ms > 100_000 && ms <= 120_000),
        "{wait:?}"
    );

    // dee was away for all of it: the recovery has every action, in order.
    let mut dee = Client::named(second, "dee2").await;
    let (_, history, recovered) = dee.join_since("lobby", Some(seen)).await;
    assert_eq!(recovered, Some(true));
    let actions: Vec<_> = history
        .iter()
        .filter_map(|m| m.moderation.as_ref())
        .map(|md| (md.action, md.name.clone(), md.seconds))
        .collect();
    assert_eq!(
        actions,
        [
            (ModAction::Delete, Some("bo".into()), 0),
            (ModAction::Mute, Some("bo".into()), 60),
            (ModAction::SlowMode, None, 30),
            (ModAction::Kick, Some("bo2".into()), 120),
        ]
    );
}

#[tokio::test]
async fn moderation_on_one_node() {
    let server =
        TestServer::with(|c| c.identity.operator_token = Some(OPERATOR_TOKEN.into())).await;
    moderators_act_on_every_node(&server, &server).await;
}

#[tokio::test]
async fn moderation_across_two_nodes() {
    let redis = Redis::start();
    let args = ["--operator-token", OPERATOR_TOKEN];
    let a = Node::start_with(&redis, "node-a", &args);
    let b = Node::start_with(&redis, "node-b", &args);
    moderators_act_on_every_node(&a, &b).await;
}

/// Lifting a mute lets the person speak again at once; bad values are refused, and a server
/// without an operator token makes no moderators that way.
#[tokio::test]
async fn a_mute_is_lifted_and_bad_values_are_refused() {
    let server =
        TestServer::with(|c| c.identity.operator_token = Some(OPERATOR_TOKEN.into())).await;
    let (mut ann, _, _) = Client::in_room(&server, "ann", "lobby").await;
    let (mut bo, _, _) = Client::in_room(&server, "bo", "lobby").await;
    ann.send(&ClientMsg::Moderate {
        token: OPERATOR_TOKEN.into(),
    })
    .await;
    ann.recv_until(|m| matches!(m, ServerMsg::Moderator)).await;
    for bad in [
        ClientMsg::Mute {
            room: lobby(),
            name: "bo".into(),
            seconds: 8 * 24 * 3600,
        },
        ClientMsg::Kick {
            room: lobby(),
            name: "bo".into(),
            seconds: Some(0),
        },
        ClientMsg::SlowMode {
            room: lobby(),
            seconds: 3601,
        },
    ] {
        ann.send(&bad).await;
        assert_eq!(ann.next_error().await, "invalid_field");
    }
    ann.send(&ClientMsg::Mute {
        room: lobby(),
        name: "not a valid\u{0}name".into(),
        seconds: 10,
    })
    .await;
    assert_eq!(ann.next_error().await, "invalid_name");
    ann.send(&ClientMsg::Mute {
        room: lobby(),
        name: "bo".into(),
        seconds: 600,
    })
    .await;
    next_moderation(&mut bo).await;
    bo.say("lobby", "hm", "b1").await;
    // The refusal names the room it is about (a page may be in several).
    let muted = bo
        .recv_until(|m| matches!(m, ServerMsg::Error { .. }))
        .await;
    assert!(
        matches!(&muted, ServerMsg::Error { code, room: Some(room), .. }
            if code.as_str() == "muted" && room == "lobby"),
        "{muted:?}"
    );
    ann.send(&ClientMsg::Mute {
        room: lobby(),
        name: "bo".into(),
        seconds: 0,
    })
    .await;
    let (action, _, seconds, _) = next_moderation(&mut bo).await;
    assert_eq!((action, seconds), (ModAction::Mute, 0));
    tokio::time::sleep(Duration::from_millis(200)).await;
    bo.say("lobby", "thanks", "b2").await;
    assert_eq!(bo.next_message().await.text, "thanks");

    let plain = TestServer::start().await;
    let mut eve = Client::named(&plain, "eve").await;
    eve.send(&ClientMsg::Moderate {
        token: OPERATOR_TOKEN.into(),
    })
    .await;
    assert_eq!(eve.next_error().await, "not_moderator");
}

/// With signed identity, the host application names moderators in the token.
#[tokio::test]
async fn a_tokens_moderator_claim_makes_a_moderator() {
    use chorus::server::config::Auth;
    use jsonwebtoken::{EncodingKey, Header};
    const SECRET: &str = "a shared secret of at least 32 bytes, for tests";
    let server = TestServer::with(|c| {
        c.identity.auth = Auth::Jwt;
        c.identity.jwt_secret = Some(SECRET.into());
    })
    .await;
    let token = |sub: &str, moderator: bool| {
        let claims = serde_json::json!({
            "sub": sub, "name": sub, "moderator": moderator, "exp": u64::MAX / 2,
        });
        let key = EncodingKey::from_secret(SECRET.as_bytes());
        jsonwebtoken::encode(&Header::default(), &claims, &key).expect("signs")
    };
    struct WithToken<'a>(&'a TestServer, String);
    impl Endpoint for WithToken<'_> {
        fn ws_url(&self) -> String {
            format!("{}?token={}", self.0.ws_url(), self.1)
        }
    }
    let slow = ClientMsg::SlowMode {
        room: lobby(),
        seconds: 5,
    };
    let (mut bo, _, _) =
        Client::in_room(&WithToken(&server, token("bo", false)), "bo", "lobby").await;
    bo.send(&slow).await;
    assert_eq!(bo.next_error().await, "not_moderator");
    let (mut ann, _, _) =
        Client::in_room(&WithToken(&server, token("ann", true)), "ann", "lobby").await;
    ann.send(&slow).await;
    let (action, _, seconds, entry) = next_moderation(&mut bo).await;
    assert_eq!(
        (action, seconds, entry.from.as_str()),
        (ModAction::SlowMode, 5, "ann")
    );
}

/// What `client` said: `Ok` once the room has it, or the code of the refusal.
async fn outcome(client: &mut Client, text: &str, id: &str) -> Result<(), String> {
    client.say("lobby", text, id).await;
    match client
        .recv_until(|m| {
            matches!(m, ServerMsg::Error { .. })
                || matches!(m, ServerMsg::Message(m) if m.client_id.as_deref() == Some(id))
        })
        .await
    {
        ServerMsg::Error { code, .. } => Err(code.as_str().to_owned()),
        _ => Ok(()),
    }
}

/// A mute and slow mode outlast Redis losing its data: the nodes that delivered them put them
/// back with the room's members.
#[tokio::test]
async fn rules_are_put_back_after_redis_lost_its_data() {
    let redis = Redis::start();
    let args = ["--operator-token", OPERATOR_TOKEN];
    let a = Node::start_with(&redis, "node-a", &args);
    let b = Node::start_with(&redis, "node-b", &args);
    let (mut ann, _, _) = Client::in_room(&a, "ann", "lobby").await;
    let (mut bo, _, _) = Client::in_room(&b, "bo", "lobby").await;
    let (mut cy, _, _) = Client::in_room(&b, "cy", "lobby").await;
    ann.send(&ClientMsg::Moderate {
        token: OPERATOR_TOKEN.into(),
    })
    .await;
    ann.recv_until(|m| matches!(m, ServerMsg::Moderator)).await;
    ann.send(&ClientMsg::Mute {
        room: lobby(),
        name: "bo".into(),
        seconds: 600,
    })
    .await;
    assert_eq!(next_moderation(&mut bo).await.0, ModAction::Mute);
    ann.send(&ClientMsg::SlowMode {
        room: lobby(),
        seconds: 600,
    })
    .await;
    assert_eq!(next_moderation(&mut cy).await.0, ModAction::Mute);
    assert_eq!(next_moderation(&mut cy).await.0, ModAction::SlowMode);
    assert_eq!(outcome(&mut bo, "spam", "b1").await, Err("muted".into()));

    let flushed: Option<String> = ask(redis.port, &redis::cmd("FLUSHALL"));
    assert_eq!(flushed.as_deref(), Some("OK"));
    // Once the nodes have noticed (a heartbeat), bo is muted again and cy slowed.
    let mut tries = 0;
    while outcome(&mut bo, "spam again", &format!("b-{tries}")).await != Err("muted".into()) {
        tries += 1;
        assert!(
            tries < 50,
            "bo was not muted again 10 s after Redis lost its data"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut tries = 0;
    while outcome(&mut cy, "and again", &format!("c-{tries}")).await != Err("slow_mode".into()) {
        tries += 1;
        assert!(tries < 10, "no slow mode after Redis lost its data");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
