use super::*;
use crate::protocol::Change;

/// `who` says `said` in `room` (a plain message, no client id).
async fn say(s: &MemoryStore, room: &RoomName, who: &str, said: &str) -> Stored {
    s.append(room, &name(who), text(said), None, Change::default(), None)
        .await
        .expect("stored")
}
use crate::server::{
    bus::Subscription,
    store::{Departure, Sessions},
};

fn store(history: usize) -> MemoryStore {
    MemoryStore::new(
        HistoryBounds::messages(history),
        100,
        10,
        Duration::from_secs(30),
    )
}
fn name(s: &str) -> UserName {
    UserName::parse(s).expect("valid name")
}
fn text(s: &str) -> MessageText {
    MessageText::parse(s.to_owned(), 100).expect("valid text")
}
fn member(session: &str, n: &str) -> Member {
    Member {
        session: session.into(),
        conn: format!("c-{session}").into(),
        name: name(n),
    }
}

#[tokio::test]
async fn a_name_is_unique_case_insensitively_and_free_again_once_released() {
    let s = store(10);
    let (a, b): (SessionId, SessionId) = ("a".into(), "b".into());
    let (ca, cb): (ConnId, ConnId) = ("ca".into(), "cb".into());
    s.claim_name(&a, &ca, &name("Ann"), None)
        .await
        .expect("free");
    assert_eq!(
        s.claim_name(&b, &cb, &name("ANN"), None)
            .await
            .map_err(|e| matches!(e, StoreError::NameTaken(_))),
        Err(true)
    );
    // The holder may change the case of its own name.
    s.claim_name(&a, &ca, &name("ann"), Some(&name("Ann")))
        .await
        .expect("own name");
    s.release(&a, &ca, Departure::Closed).await;
    s.claim_name(&b, &cb, &name("Ann"), None)
        .await
        .expect("free again");
}

#[tokio::test]
async fn a_dropped_session_keeps_its_name_until_it_expires_or_is_resumed() {
    let s = MemoryStore::new(
        HistoryBounds::messages(10),
        100,
        10,
        Duration::from_millis(50),
    );
    let (a, b): (SessionId, SessionId) = ("a".into(), "b".into());
    let (ca, ca2, cb): (ConnId, ConnId, ConnId) = ("ca".into(), "ca2".into(), "cb".into());
    s.claim_name(&a, &ca, &name("ann"), None)
        .await
        .expect("free");
    s.release(&a, &ca, Departure::Dropped).await;
    assert_eq!(
        s.claim_name(&b, &cb, &name("ann"), None)
            .await
            .map_err(|e| matches!(e, StoreError::NameTaken(_))),
        Err(true),
        "reserved for its session"
    );
    assert_eq!(s.resume(&a, &ca2).await.expect("ok"), Some(name("ann")));
    // The old connection's late release no longer touches the resumed session.
    s.release(&a, &ca, Departure::Closed).await;
    assert_eq!(
        s.claim_name(&b, &cb, &name("ann"), None)
            .await
            .map_err(|e| matches!(e, StoreError::NameTaken(_))),
        Err(true)
    );
    s.release(&a, &ca2, Departure::Dropped).await;
    tokio::time::sleep(Duration::from_millis(80)).await;
    assert_eq!(s.resume(&a, &ca2).await.expect("ok"), None, "expired");
    s.claim_name(&b, &cb, &name("ann"), None)
        .await
        .expect("free after expiry");
}

#[tokio::test]
async fn a_resent_client_id_is_acknowledged_with_its_first_seq_not_stored_again() {
    let s = MemoryStore::new(HistoryBounds::messages(10), 2, 10, Duration::from_secs(30));
    let room = RoomName::lobby();
    s.join(&room, &member("a", "ann"), true, None)
        .await
        .expect("joins");
    let ann = name("ann");
    let send = |id: &'static str| {
        s.append(
            &room,
            &ann,
            text("hi"),
            Some(id.into()),
            Change::default(),
            None,
        )
    };
    let first = send("c1").await.expect("stored");
    assert_eq!(
        first,
        Stored {
            seq: 1,
            duplicate: false
        }
    );
    assert_eq!(
        send("c1").await.expect("ok"),
        Stored {
            seq: 1,
            duplicate: true
        }
    );
    assert_eq!(send("c2").await.expect("ok").seq, 2);
    assert_eq!(send("c3").await.expect("ok").seq, 3);
    // The window holds two ids: c1 has left it and would be stored again.
    assert_eq!(
        send("c1").await.expect("ok"),
        Stored {
            seq: 4,
            duplicate: false
        }
    );
    let snap = s
        .join(&room, &member("b", "bo"), true, None)
        .await
        .expect("joins");
    assert_eq!(snap.history.len(), 4, "the duplicate was not stored");
}

#[tokio::test]
async fn history_keeps_the_newest_messages_in_seq_order() {
    let s = store(3);
    let room = RoomName::lobby();
    s.join(&room, &member("a", "ann"), true, None)
        .await
        .expect("joins");
    for i in 1..=5 {
        let m = say(&s, &room, "ann", &format!("m{i}")).await;
        assert_eq!(m.seq, i);
    }
    let snap = s
        .join(&room, &member("b", "bo"), true, None)
        .await
        .expect("joins");
    let texts: Vec<_> = snap.history.iter().map(|m| m.text.as_str()).collect();
    assert_eq!(texts, ["m3", "m4", "m5"]);
    assert_eq!(snap.last_seq, 5);
    assert_eq!(snap.members, ["ann", "bo"]);
    let epoch = snap.epoch.expect("an epoch");
    let since = s.since(&room, &epoch, 3).await.expect("ok").expect("kept");
    assert_eq!(since.iter().map(|m| m.seq).collect::<Vec<_>>(), [4, 5]);
    assert_eq!(
        s.since(&room, &epoch, 1).await.expect("ok"),
        None,
        "trimmed"
    );
    assert_eq!(
        s.since(&room, "other", 3).await.expect("ok"),
        None,
        "other epoch"
    );
}

/// The notices published on `sub` so far, as (kind, name).
async fn notices(sub: &mut Subscription) -> Vec<(NoticeKind, String)> {
    let mut seen = Vec::new();
    while let Ok(Ok(crate::server::bus::BusItem::Event(e))) =
        tokio::time::timeout(Duration::from_millis(20), sub.recv()).await
    {
        if let ServerMsg::Notice { kind, name, .. } = &e.msg {
            seen.push((*kind, name.clone()));
        }
    }
    seen
}

#[tokio::test]
async fn a_session_held_by_two_connections_is_one_member_until_the_last_leaves() {
    let s = store(3);
    let room = RoomName::lobby();
    let tab1 = member("a", "ann");
    let tab2 = Member {
        conn: "c-tab2".into(),
        ..tab1.clone()
    };
    s.join(&room, &tab1, true, None).await.expect("joins");
    let mut sub = s.subscribe(&room).await.expect("subscribes");
    s.join(&room, &tab2, true, None).await.expect("joins too");
    assert_eq!(
        s.members(&room, &MemberQuery::first(100))
            .await
            .expect("ok")
            .names,
        ["ann"]
    );
    // A rename said by both tabs is announced once.
    let bo = |m: &Member| Member {
        name: name("bo"),
        ..m.clone()
    };
    s.rename(&room, &bo(&tab1)).await.expect("renames");
    s.rename(&room, &bo(&tab2)).await.expect("no-op");
    // The tab that joined last goes first: the first still holds the member.
    s.leave(&room, &tab2).await.expect("one tab goes");
    assert_eq!(
        s.members(&room, &MemberQuery::first(100))
            .await
            .expect("ok")
            .names,
        ["bo"]
    );
    // A connection that is not one of the member's changes nothing.
    s.leave(&room, &tab2).await.expect("no-op");
    s.leave(&room, &tab1).await.expect("the last goes");
    assert_eq!(
        s.members(&room, &MemberQuery::first(100))
            .await
            .expect("ok")
            .names,
        Vec::<String>::new()
    );
    assert_eq!(
        notices(&mut sub).await,
        [
            (NoticeKind::Renamed, "bo".into()),
            (NoticeKind::Left, "bo".into())
        ]
    );
}

#[tokio::test]
async fn a_session_keeps_its_name_while_any_of_its_connections_holds_it() {
    let s = store(3);
    let (a, b): (SessionId, SessionId) = ("a".into(), "b".into());
    let (tab1, tab2, cb): (ConnId, ConnId, ConnId) = ("t1".into(), "t2".into(), "cb".into());
    let taken = |r: Result<(), StoreError>| matches!(r, Err(StoreError::NameTaken(_)));
    s.claim_name(&a, &tab1, &name("ann"), None)
        .await
        .expect("free");
    assert_eq!(s.resume(&a, &tab2).await.expect("ok"), Some(name("ann")));
    // Renamed from one tab: the other still holds the session, under the new name.
    s.claim_name(&a, &tab1, &name("bo"), Some(&name("ann")))
        .await
        .expect("renames");
    s.release(&a, &tab1, Departure::Closed).await;
    assert!(taken(s.claim_name(&b, &cb, &name("bo"), None).await));
    s.claim_name(&b, &cb, &name("ann"), None)
        .await
        .expect("the old name is free");
    // The late release of a connection that no longer holds it changes nothing.
    s.release(&a, &tab1, Departure::Closed).await;
    assert!(taken(s.claim_name(&b, &cb, &name("bo"), None).await));
    s.release(&a, &tab2, Departure::Closed).await;
    s.claim_name(&b, &cb, &name("bo"), Some(&name("ann")))
        .await
        .expect("free once the last tab closed");
}

#[tokio::test]
async fn an_empty_room_without_history_is_forgotten_but_one_with_history_is_kept() {
    let s = store(3);
    let quiet = RoomName::parse("quiet").expect("valid");
    let busy = RoomName::parse("busy").expect("valid");
    let a = member("a", "ann");
    s.join(&quiet, &a, true, None).await.expect("joins");
    s.join(&busy, &a, true, None).await.expect("joins");
    say(&s, &busy, "ann", "hi").await;
    s.leave(&quiet, &a).await.expect("leaves");
    s.leave(&busy, &a).await.expect("leaves");
    let rooms = s.rooms.lock().expect("not poisoned");
    assert!(!rooms.contains_key(&quiet));
    assert!(rooms.contains_key(&busy));
}

#[tokio::test]
async fn the_number_of_rooms_is_bounded() {
    let s = MemoryStore::new(HistoryBounds::messages(10), 100, 2, Duration::from_secs(1));
    let a = member("a", "ann");
    for r in ["r1", "r2"] {
        s.join(&RoomName::parse(r).expect("valid"), &a, true, None)
            .await
            .expect("joins");
    }
    let third = s
        .join(&RoomName::parse("r3").expect("valid"), &a, true, None)
        .await;
    assert_eq!(third.map(|_| ()), Err(StoreError::RoomsFull));
}

/// A room with one stored message whose only member left again.
async fn abandoned(s: &MemoryStore, room: &str) -> RoomName {
    let room = RoomName::parse(room).expect("valid");
    let a = member("a", "ann");
    s.join(&room, &a, true, None).await.expect("joins");
    say(s, &room, "ann", "hi").await;
    s.leave(&room, &a).await.expect("leaves");
    room
}

#[tokio::test]
async fn a_full_node_forgets_the_room_without_members_idle_longest_instead_of_refusing() {
    let s = MemoryStore::new(HistoryBounds::messages(10), 100, 3, Duration::from_secs(30));
    let first = abandoned(&s, "r1").await;
    let old_epoch = s
        .join(&first, &member("b", "bo"), true, None)
        .await
        .expect("joins");
    s.leave(&first, &member("b", "bo")).await.expect("leaves");
    tokio::time::sleep(Duration::from_millis(5)).await;
    let second = abandoned(&s, "r2").await;
    let busy = RoomName::parse("busy").expect("valid");
    s.join(&busy, &member("c", "cy"), true, None)
        .await
        .expect("joins");
    // Full: r1 (idle longest, no members) makes way; the busy room is never touched.
    let fourth = RoomName::parse("r4").expect("valid");
    s.join(&fourth, &member("d", "di"), true, None)
        .await
        .expect("room made");
    {
        let rooms = s.rooms.lock().expect("not poisoned");
        assert!(!rooms.contains_key(&first));
        assert!(rooms.contains_key(&second) && rooms.contains_key(&busy));
    }
    // Opened again, it numbers anew in a new epoch: an old position is not taken for new.
    let again = s
        .join(&first, &member("b", "bo"), true, None)
        .await
        .expect("joins");
    assert!(again.created && again.history.is_empty());
    say(&s, &first, "bo", "new").await;
    let after = s
        .join(&first, &member("b", "bo"), true, None)
        .await
        .expect("joins");
    assert_eq!(after.last_seq, 1);
    assert_ne!(after.epoch, old_epoch.epoch);
    assert_eq!(
        s.since(&first, old_epoch.epoch.as_deref().expect("epoch"), 1)
            .await
            .expect("ok"),
        None
    );
}

#[tokio::test]
async fn idle_rooms_without_members_are_forgotten_rooms_with_members_are_kept() {
    let s = MemoryStore::new(HistoryBounds::messages(10), 100, 3, Duration::from_secs(30))
        .with_room_idle(Duration::from_millis(20));
    let idle = abandoned(&s, "idle").await;
    let kept = RoomName::parse("kept").expect("valid");
    s.join(&kept, &member("b", "bo"), true, None)
        .await
        .expect("joins");
    tokio::time::sleep(Duration::from_millis(40)).await;
    // Sweeps happen as rooms are opened (or when the node is full).
    *s.swept.lock().expect("not poisoned") -= SWEEP_EVERY;
    s.join(
        &RoomName::parse("new").expect("valid"),
        &member("c", "cy"),
        true,
        None,
    )
    .await
    .expect("joins");
    let rooms = s.rooms.lock().expect("not poisoned");
    assert!(!rooms.contains_key(&idle));
    assert!(rooms.contains_key(&kept));
}

#[tokio::test]
async fn without_create_only_rooms_that_exist_can_be_joined() {
    let s = store(10);
    let open = abandoned(&s, "open").await;
    let snap = s
        .join(&open, &member("b", "bo"), false, None)
        .await
        .expect("exists");
    assert!(!snap.created);
    let new = RoomName::parse("new").expect("valid");
    assert_eq!(
        s.join(&new, &member("b", "bo"), false, None)
            .await
            .map(|_| ()),
        Err(StoreError::CreationLimited)
    );
}
