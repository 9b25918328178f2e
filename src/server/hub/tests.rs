use super::*;
use crate::{
    protocol::{Change, ChatMessage, MessageText, Position, ServerMsg, UserName},
    server::{
        bus::{BusItem, Subscription},
        store::{
            Broker, ConnId, Departure, Health, HistoryBounds, MemberPage, MemberQuery, MemoryStore,
            Page, Presence, SessionId, Sessions, Snapshot, Stored,
        },
    },
};
use room::REFILL_FIRST;
use std::sync::atomic::Ordering::Relaxed;
use tungstenite::Message;

fn member(id: &str) -> (Member, Outbox) {
    let member = Member {
        session: id.into(),
        conn: id.into(),
        name: UserName::parse(id).expect("valid name"),
    };
    (member, Outbox::new(64, None))
}

fn memory_store() -> MemoryStore {
    MemoryStore::new(
        HistoryBounds::messages(100),
        100,
        10,
        Duration::from_secs(30),
    )
}

/// A hub on `store` sending member lists at most every `presence_interval` (whole lists up to the
/// default 200 names).
fn hub_on(store: &Arc<dyn Store>, presence_interval: Duration) -> Arc<Hub> {
    let mut config = crate::server::config::Config::default();
    config.rooms.presence_interval_ms = presence_interval;
    Hub::new(store.clone(), &config, Arc::default())
}

/// A hub on `store` with ann in the lobby.
async fn lobby_with_ann(store: &Arc<dyn Store>) -> (Arc<Hub>, RoomName, Member, Outbox) {
    let hub = hub_on(store, Duration::from_millis(50));
    let room = RoomName::lobby();
    let (ann, ann_out) = member("ann");
    hub.join(&room, &ann, &ann_out, Joining::open())
        .await
        .expect("joins");
    (hub, room, ann, ann_out)
}

/// The `seq`s of the chat messages queued for a member so far.
async fn seqs(outbox: &Outbox) -> Vec<u64> {
    let mut seqs = Vec::new();
    outbox.end();
    while let Some(frames) = outbox.take().await {
        for frame in frames {
            let Message::Text(text) = frame else { continue };
            match serde_json::from_str::<ServerMsg>(&text) {
                Ok(ServerMsg::Message(m)) => seqs.push(m.seq),
                Ok(ServerMsg::Joined { history, .. }) => seqs.extend(history.iter().map(|m| m.seq)),
                _ => {}
            }
        }
    }
    seqs
}

// One thread: the room task runs only when the test awaits, so the order is exact.
#[tokio::test(flavor = "current_thread")]
async fn a_join_taken_before_queued_live_messages_does_not_take_them_from_earlier_members() {
    let store: Arc<dyn Store> = Arc::new(memory_store());
    let (hub, room, ann, ann_out) = lobby_with_ann(&store).await;
    // Two messages are published; before the room task has delivered them, bo's join is
    // queued too, and the task takes commands first: bo's snapshot already holds them.
    for text in ["one", "two"] {
        say(&*store, &room, &ann, text).await;
    }
    let (bo, bo_out) = member("bo");
    hub.join(&room, &bo, &bo_out, Joining::open())
        .await
        .expect("joins");
    tokio::task::yield_now().await;
    assert_eq!(seqs(&ann_out).await, [1, 2], "ann gets them live");
    assert_eq!(
        seqs(&bo_out).await,
        [1, 2],
        "bo gets them once, in its history"
    );
}

/// The in-memory store, but leaving a room and reading its member list take 2 s, as a Redis
/// call might near its timeout; so does a join once `slow_joins` is set (its snapshot is
/// taken first, the answer comes 2 s later).
/// With `say_in_join`, a join first stores (and publishes) a message from "ann", so that
/// its snapshot holds a message the room task has not delivered yet.
/// With `lossy`, its bus drops the next `drop_next` chat messages on their way to the room
/// (as pub/sub does while a link is down), and `since` fails `failing_since` more times (as
/// while Redis fails over).
struct SlowStore {
    memory: MemoryStore,
    slow_joins: std::sync::atomic::AtomicBool,
    say_in_join: Mutex<Option<&'static str>>,
    lossy: bool,
    drop_next: Arc<std::sync::atomic::AtomicU32>,
    failing_since: std::sync::atomic::AtomicU32,
}

impl SlowStore {
    fn new() -> Self {
        Self {
            memory: memory_store(),
            slow_joins: std::sync::atomic::AtomicBool::new(false),
            say_in_join: Mutex::new(None),
            lossy: false,
            drop_next: Arc::default(),
            failing_since: Default::default(),
        }
    }

    fn lossy() -> Self {
        Self {
            lossy: true,
            ..Self::new()
        }
    }
}

const SLOW: Duration = Duration::from_secs(2);

/// Counts `n` down by one; false if it was already 0.
fn take_one(n: &std::sync::atomic::AtomicU32) -> bool {
    n.fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1))
        .is_ok()
}

#[async_trait::async_trait]
impl Sessions for SlowStore {
    async fn resume(
        &self,
        session: &SessionId,
        conn: &ConnId,
    ) -> Result<Option<UserName>, StoreError> {
        self.memory.resume(session, conn).await
    }
    async fn claim_name(
        &self,
        session: &SessionId,
        conn: &ConnId,
        name: &UserName,
        old: Option<&UserName>,
    ) -> Result<(), StoreError> {
        self.memory.claim_name(session, conn, name, old).await
    }
    async fn release(&self, session: &SessionId, conn: &ConnId, how: Departure) {
        self.memory.release(session, conn, how).await
    }
}

#[async_trait::async_trait]
impl Presence for SlowStore {
    async fn join(
        &self,
        room: &RoomName,
        member: &Member,
        create: bool,
        since: Option<&Position>,
    ) -> Result<Snapshot, StoreError> {
        let said = self.say_in_join.lock().expect("not poisoned").take();
        if let Some(text) = said {
            let ann = UserName::parse("ann").expect("valid name");
            let text = MessageText::parse(text.into(), 100).expect("valid text");
            self.memory
                .append(room, &ann, text, None, Change::default(), None)
                .await?;
        }
        let snapshot = self.memory.join(room, member, create, since).await;
        if self.slow_joins.load(std::sync::atomic::Ordering::Relaxed) {
            tokio::time::sleep(SLOW).await;
        }
        snapshot
    }
    async fn peek(&self, room: &RoomName) -> Result<Snapshot, StoreError> {
        self.memory.peek(room).await
    }

    async fn leave(&self, room: &RoomName, member: &Member) -> Result<(), StoreError> {
        tokio::time::sleep(SLOW).await;
        self.memory.leave(room, member).await
    }
    async fn rename(&self, room: &RoomName, member: &Member) -> Result<(), StoreError> {
        self.memory.rename(room, member).await
    }
    async fn members(
        &self,
        room: &RoomName,
        query: &MemberQuery,
    ) -> Result<MemberPage, StoreError> {
        tokio::time::sleep(SLOW).await;
        self.memory.members(room, query).await
    }
    async fn reassert(
        &self,
        room: &RoomName,
        members: &[Member],
        delivered: Option<(&str, u64)>,
    ) -> Result<(), StoreError> {
        self.memory.reassert(room, members, delivered).await
    }
}

#[async_trait::async_trait]
impl Broker for SlowStore {
    async fn append(
        &self,
        room: &RoomName,
        from: &UserName,
        text: MessageText,
        client_id: Option<String>,
        change: Change,
        author: Option<String>,
    ) -> Result<Stored, StoreError> {
        self.memory
            .append(room, from, text, client_id, change, author)
            .await
    }
    async fn since(
        &self,
        room: &RoomName,
        epoch: &str,
        seq: u64,
    ) -> Result<Option<Vec<ChatMessage>>, StoreError> {
        if take_one(&self.failing_since) {
            return Err(StoreError::Unavailable("failing over".into()));
        }
        self.memory.since(room, epoch, seq).await
    }
    async fn page(
        &self,
        room: &RoomName,
        before: Option<&Position>,
        limit: usize,
    ) -> Result<Page, StoreError> {
        self.memory.page(room, before, limit).await
    }

    async fn subscribe(&self, room: &RoomName) -> Result<Subscription, StoreError> {
        let mut inner = self.memory.subscribe(room).await?;
        if !self.lossy {
            return Ok(inner);
        }
        let (tx, rx) = tokio::sync::broadcast::channel(64);
        let drop_next = self.drop_next.clone();
        tokio::spawn(async move {
            while let Ok(item) = inner.recv().await {
                let message =
                    matches!(&item, BusItem::Event(e) if matches!(e.msg, ServerMsg::Message(_)));
                let dropped = message && take_one(&drop_next);
                if !dropped && tx.send(item).is_err() {
                    return;
                }
            }
        });
        Ok(Subscription::new(rx))
    }

    async fn signal(&self, room: &RoomName, msg: &ServerMsg) -> Result<(), StoreError> {
        self.memory.signal(room, msg).await
    }
    async fn rule(
        &self,
        room: &RoomName,
        rule: crate::server::store::Rule,
    ) -> Result<(), StoreError> {
        self.memory.rule(room, rule).await
    }
    async fn gate(
        &self,
        room: &RoomName,
        who: &[String],
        act: crate::server::store::Act,
    ) -> Result<u64, StoreError> {
        self.memory.gate(room, who, act).await
    }
}

#[async_trait::async_trait]
impl Health for SlowStore {
    async fn ready(&self) -> bool {
        true
    }
}

#[tokio::test(start_paused = true)]
async fn a_gap_fill_the_store_cannot_answer_yet_is_tried_again_and_nobody_is_closed() {
    let lossy = Arc::new(SlowStore::lossy());
    let store: Arc<dyn Store> = lossy.clone();
    let (_hub, room, ann, ann_out) = lobby_with_ann(&store).await;
    say(&*store, &room, &ann, "one").await;
    assert_eq!(next_text(&ann_out).await, "one");

    // "two" is lost on the bus; "three" shows the gap, whose fill fails twice (Redis failing
    // over); "four" comes meanwhile.
    lossy.drop_next.store(1, Relaxed);
    lossy.failing_since.store(2, Relaxed);
    for text in ["two", "three", "four"] {
        say(&*store, &room, &ann, text).await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(REFILL_FIRST * 4).await;
    assert_eq!(
        lossy.failing_since.load(Relaxed),
        0,
        "the fill was tried again"
    );
    // ann stayed, and got each message once, in order.
    assert_eq!(seqs(&ann_out).await, [2, 3, 4]);
}

/// Waits for the next chat message queued for the member; returns its text.
async fn next_text(outbox: &Outbox) -> String {
    loop {
        let frames = outbox.take().await.expect("queue open");
        for frame in frames {
            let Message::Text(text) = frame else { continue };
            if let Ok(ServerMsg::Message(m)) = serde_json::from_str::<ServerMsg>(&text) {
                return m.text;
            }
        }
    }
}

// Paused time: a task stuck in a 2 s store call would let the clock jump 2 s ahead.
#[tokio::test(start_paused = true)]
async fn a_slow_leave_or_member_list_does_not_hold_up_delivery() {
    let store: Arc<dyn Store> = Arc::new(SlowStore::new());
    let (hub, room, ann, _ann_out) = lobby_with_ann(&store).await;
    let (bo, bo_out) = member("bo");
    let (cy, cy_out) = member("cy");
    for (m, out) in [(&bo, &bo_out), (&cy, &cy_out)] {
        hub.join(&room, m, out, Joining::open())
            .await
            .expect("joins");
    }
    // The joins asked for a member list (2 s to read), and cy leaves (2 s to store).
    tokio::time::sleep(Duration::from_millis(60)).await;
    let leaving = tokio::spawn({
        let (hub, room, cy) = (hub.clone(), room.clone(), cy.clone());
        async move { hub.leave(&room, &cy, Duration::ZERO).await }
    });
    tokio::task::yield_now().await;

    let sent = tokio::time::Instant::now();
    say(&*store, &room, &ann, "still flowing").await;
    assert_eq!(next_text(&bo_out).await, "still flowing");
    assert!(
        sent.elapsed() < SLOW,
        "delivered after {:?}: the room waited for the store",
        sent.elapsed()
    );
    leaving.await.expect("the leave ends");
    assert!(
        sent.elapsed() >= SLOW - Duration::from_millis(100),
        "the leave itself was slow"
    );
}

async fn say(store: &dyn Store, room: &RoomName, from: &Member, text: &str) {
    let text = MessageText::parse(text.into(), 100).expect("valid text");
    store
        .append(room, &from.name, text, None, Change::default(), None)
        .await
        .expect("stored");
}

/// Starts bo's join of `room`, which `slow` answers 2 s after taking its snapshot (at once).
/// Returns bo's queue and the join.
async fn join_slowly(
    slow: &SlowStore,
    hub: &Arc<Hub>,
    room: &RoomName,
) -> (Outbox, tokio::task::JoinHandle<Result<bool, StoreError>>) {
    slow.slow_joins
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let (bo, bo_out) = member("bo");
    let joining = tokio::spawn({
        let (hub, room, bo_out) = (hub.clone(), room.clone(), bo_out.clone());
        async move { hub.join(&room, &bo, &bo_out, Joining::open()).await }
    });
    tokio::task::yield_now().await;
    (bo_out, joining)
}

#[tokio::test(start_paused = true)]
async fn a_slow_join_holds_up_no_one_and_the_joiner_misses_nothing() {
    let slow = Arc::new(SlowStore::new());
    let store: Arc<dyn Store> = slow.clone();
    let (hub, room, ann, ann_out) = lobby_with_ann(&store).await;
    say(&*store, &room, &ann, "one").await;
    assert_eq!(next_text(&ann_out).await, "one");

    // bo's join takes 2 s to answer; its snapshot (holding "one") was taken at once.
    let (bo_out, joining) = join_slowly(&slow, &hub, &room).await;
    let sent = tokio::time::Instant::now();
    say(&*store, &room, &ann, "two").await;
    assert_eq!(next_text(&ann_out).await, "two");
    assert!(
        sent.elapsed() < SLOW,
        "ann waited {:?} for bo's join",
        sent.elapsed()
    );

    joining.await.expect("ends").expect("joins");
    say(&*store, &room, &ann, "three").await;
    tokio::time::sleep(Duration::from_millis(10)).await;
    // bo: "one" in its history, "two" (delivered while it joined) right after, then "three"
    // live, each once and in order.
    assert_eq!(seqs(&bo_out).await, [1, 2, 3]);
}

#[tokio::test(start_paused = true)]
async fn a_slow_join_to_a_room_without_messages_misses_none_said_while_it_ran() {
    let slow = Arc::new(SlowStore::new());
    let store: Arc<dyn Store> = slow.clone();
    let (hub, room, ann, ann_out) = lobby_with_ann(&store).await;
    // bo's snapshot is taken before the room's first message (it has no epoch yet); its
    // join answers 2 s later, after the first two.
    let (bo_out, joining) = join_slowly(&slow, &hub, &room).await;
    for text in ["one", "two"] {
        say(&*store, &room, &ann, text).await;
        assert_eq!(next_text(&ann_out).await, text);
    }
    joining.await.expect("ends").expect("joins");
    say(&*store, &room, &ann, "three").await;
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(seqs(&bo_out).await, [1, 2, 3], "each once, in order");
}

#[tokio::test(start_paused = true)]
async fn a_slow_join_with_no_other_member_here_misses_none_said_while_it_ran() {
    let slow = Arc::new(SlowStore::new());
    let store: Arc<dyn Store> = slow.clone();
    let hub = hub_on(&store, Duration::from_millis(50));
    let room = RoomName::lobby();
    // ann is in the room through another node: the store has her, this hub does not.
    let (ann, _) = member("ann");
    store.join(&room, &ann, true, None).await.expect("joins");
    // bo's snapshot is taken at once, before any message; the task has nobody else to serve.
    let (bo_out, joining) = join_slowly(&slow, &hub, &room).await;
    for text in ["one", "two"] {
        say(&*store, &room, &ann, text).await;
    }
    joining.await.expect("ends").expect("joins");
    say(&*store, &room, &ann, "three").await;
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(seqs(&bo_out).await, [1, 2, 3], "each once, in order");
}

// One thread, and the task takes finished joins before live events: the joiner is added
// while a message its snapshot holds still waits to be delivered live.
#[tokio::test(flavor = "current_thread")]
async fn a_join_back_before_a_message_its_snapshot_holds_leaves_that_message_to_the_others() {
    let slow = Arc::new(SlowStore::new());
    let store: Arc<dyn Store> = slow.clone();
    let (hub, room, ann, ann_out) = lobby_with_ann(&store).await;
    *slow.say_in_join.lock().expect("not poisoned") = Some("during");
    let (bo, bo_out) = member("bo");
    hub.join(&room, &bo, &bo_out, Joining::open())
        .await
        .expect("joins");
    say(&*store, &room, &ann, "after").await;
    tokio::time::sleep(Duration::from_millis(10)).await;
    assert_eq!(seqs(&ann_out).await, [1, 2], "ann gets both live");
    assert_eq!(
        seqs(&bo_out).await,
        [1, 2],
        "bo: the first in its history, once"
    );
}

#[tokio::test]
async fn a_reader_that_stalls_in_a_busy_room_keeps_every_message_while_lists_and_notices_are_shed()
{
    let store: Arc<dyn Store> = Arc::new(memory_store());
    // Every change sends the whole member list at once.
    let hub = hub_on(&store, Duration::ZERO);
    let room = RoomName::lobby();
    let (stalled, _) = member("stalled");
    // Its queue is never taken, and holds 16 frames.
    let stalled_out = Outbox::bounded(16, usize::MAX, None, None);
    hub.join(&room, &stalled, &stalled_out, Joining::open())
        .await
        .expect("joins");
    let (talker, _) = member("talker");
    let talker_out = Outbox::new(100_000, None);
    hub.join(&room, &talker, &talker_out, Joining::open())
        .await
        .expect("joins");
    let mut said = Vec::new();
    for i in 0..60 {
        let (visitor, visitor_out) = member(&format!("visitor{i}"));
        hub.join(&room, &visitor, &visitor_out, Joining::open())
            .await
            .expect("joins");
        if i % 6 == 0 {
            let text = format!("message {i}");
            say(&*store, &room, &talker, &text).await;
            said.push(text);
        }
        hub.leave(&room, &visitor, Duration::ZERO).await;
    }
    // Everything the room sent has reached the talker, so the stalled queue has been offered it.
    let last = said.last().cloned().expect("said something");
    let heard = async {
        loop {
            let frames = talker_out.take().await.expect("queue open");
            for frame in frames {
                let Message::Text(text) = frame else { continue };
                if let Ok(ServerMsg::Message(m)) = serde_json::from_str::<ServerMsg>(&text)
                    && m.text == last
                {
                    return;
                }
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), heard)
        .await
        .expect("the talker hears its last message");
    tokio::time::sleep(Duration::from_millis(50)).await;

    assert!(!stalled_out.close.is_cancelled(), "closed as a slow reader");
    stalled_out.end();
    let mut texts = Vec::new();
    let mut lists = 0;
    while let Some(frames) = stalled_out.take().await {
        for frame in frames {
            let Message::Text(frame) = frame else {
                continue;
            };
            match serde_json::from_str::<ServerMsg>(&frame) {
                Ok(ServerMsg::Message(m)) => texts.push(m.text),
                Ok(ServerMsg::Presence { .. }) => lists += 1,
                _ => {}
            }
        }
    }
    assert_eq!(texts, said, "every message, once, in order");
    assert_eq!(lists, 1, "one member list waits: the newest");
}

#[tokio::test(start_paused = true)]
async fn a_room_past_its_first_page_sends_its_list_at_most_once_a_second() {
    let store: Arc<dyn Store> = Arc::new(memory_store());
    let mut config = crate::server::config::Config::default();
    config.rooms.presence_interval_ms = Duration::from_millis(50);
    config.rooms.presence_list_max = 2;
    let hub = Hub::new(store.clone(), &config, Arc::default());
    let room = RoomName::lobby();
    let mut outs = Vec::new();
    for name in ["ann", "bo", "cy"] {
        let (m, out) = member(name);
        hub.join(&room, &m, &out, Joining::open())
            .await
            .expect("joins");
        outs.push(out);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    // ann reads as it comes (a count still queued would be replaced by the next).
    let ann_out = outs[0].clone();
    ann_out.take().await.expect("the room so far");
    let reader = tokio::spawn(async move {
        let mut counts = Vec::new();
        while let Some(frames) = ann_out.take().await {
            for frame in frames {
                let Message::Text(text) = frame else { continue };
                if let Ok(
                    ServerMsg::MemberCount { count, .. } | ServerMsg::Presence { count, .. },
                ) = serde_json::from_str::<ServerMsg>(&text)
                {
                    counts.push(count);
                }
            }
        }
        counts
    });
    // Twenty joins, one every 100 ms: in a room of three, the 50 ms interval would send a list
    // (here a count) for each.
    for i in 0..20 {
        let (visitor, visitor_out) = member(&format!("visitor{i}"));
        hub.join(&room, &visitor, &visitor_out, Joining::open())
            .await
            .expect("joins");
        outs.push(visitor_out);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    outs[0].end();
    let counts = reader.await.expect("reader");
    assert!(
        (2..=4).contains(&counts.len()),
        "{counts:?}: 2 s of joins, a list a second"
    );
    assert_eq!(counts.last(), Some(&23), "the last one counts everyone");
}
