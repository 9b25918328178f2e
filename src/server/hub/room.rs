//! One room's task on this node: its local members, its place in the room's stream, joins
//! merged with the live stream, gap fills and throttled member lists (see the module above).

use super::{
    Command, Hub, Joining, Outbox,
    joined::joined_frame,
    presence::{Lists, PresenceThrottle},
};
use crate::protocol::{
    ChatMessage, ModAction, Moderation, NoticeKind, RoomName, ServerMsg, UserName,
};
use crate::server::outbox::Class;
use crate::server::{
    bus::{BusEvent, BusItem, RecvError, Subscription},
    frame::encode,
    store::{
        KnownRules, Member, MemberPage, MemberQuery, Rule, Snapshot, StoreError, name_key, now_ms,
        session_key, until,
    },
};
use std::{sync::Arc, time::Duration};
use tokio::{
    sync::{mpsc, oneshot},
    time::Instant,
};
use tungstenite::Message;

/// A join whose store call finished beside the room task.
struct JoinDone {
    member: Member,
    reader: bool,
    /// It takes `presence_changes`.
    changes: bool,
    outbox: Outbox,
    reply: oneshot::Sender<Result<bool, StoreError>>,
    snapshot: Result<Snapshot, StoreError>,
}

struct LocalMember {
    member: Member,
    /// Reads the room without being a member (no name yet): never stored or re-asserted.
    reader: bool,
    outbox: Outbox,
    /// It takes `presence_changes` (what changed) rather than whole lists.
    changes: bool,
    /// The list it holds, when not the one this node last sent (`RoomTask::listed`): a
    /// joiner's first page. Its next changes are counted from that.
    holds: Option<Vec<String>>,
    /// Live messages of this epoch up to `skip_through` were in the member's join snapshot.
    epoch: Option<String>,
    skip_through: u64,
}

impl LocalMember {
    fn has(&self, m: &ChatMessage) -> bool {
        m.seq <= self.skip_through && self.epoch.as_deref() == Some(m.epoch.as_str())
    }
}

/// One room on this node.
struct RoomTask {
    hub: Arc<Hub>,
    room: RoomName,
    members: Vec<LocalMember>,
    presence: PresenceThrottle,
    /// The names the last `presence` from here listed: while a list would repeat them, only
    /// the count goes out (`member_count`); when it changes, members who know it get what
    /// changed (`presence_changes`) if they take that. `None`: nothing was listed yet.
    listed: Option<Vec<String>>,
    /// How many members the room had at the last look (a join's snapshot, a member list):
    /// above `notices_max`, joins and leaves are not announced.
    count: usize,
    /// The last message this node delivered (or knew of from a snapshot): `(epoch, seq)`.
    epoch: Option<String>,
    delivered: u64,
    /// Joins whose store call is running beside the task, and the messages delivered meanwhile
    /// (epoch, seq, frame): a joiner whose snapshot ends before them gets them after it.
    joins: usize,
    held: Vec<(String, u64, Message)>,
    /// Join results come back here.
    joined: (
        mpsc::UnboundedSender<JoinDone>,
        mpsc::UnboundedReceiver<JoinDone>,
    ),
    /// Member lists read beside the task come back here, so a slow read never holds up
    /// delivery.
    lists: (
        mpsc::UnboundedSender<MemberList>,
        mpsc::UnboundedReceiver<MemberList>,
    ),
    /// Who said they were typing since the last `typing` went out, and when the next may.
    typing: TypingFold,
    /// A gap fill the store could not answer (unreachable, failing over) is tried again then,
    /// and live messages wait for it; the count says how many tries in a row failed.
    refill: Option<(Instant, u32)>,
    /// The mutes, kicks and slow mode set for the room while this task ran, put back when the
    /// store lost them (`resync`).
    rules: KnownRules,
}

/// The first wait before a failed gap fill is tried again, and the longest.
pub(super) const REFILL_FIRST: Duration = Duration::from_millis(100);
const REFILL_MAX: Duration = Duration::from_secs(2);

/// A room's `typing` frames go out from a node at most this often, each with the names heard
/// since the one before: however many type, a member gets one a second.
const TYPING_FOLD: Duration = Duration::from_secs(1);

/// At most this many names in one `typing`: past two, a page says "several people".
const TYPING_NAMES_MAX: usize = 3;

/// The names heard typing since the room's last `typing` went out from here.
struct TypingFold {
    names: Vec<String>,
    next_at: Instant,
}

impl Default for TypingFold {
    fn default() -> Self {
        Self {
            names: Vec::new(),
            next_at: Instant::now(),
        }
    }
}

impl TypingFold {
    fn heard(&mut self, names: &[String]) {
        for name in names {
            if self.names.len() < TYPING_NAMES_MAX && !self.names.contains(name) {
                self.names.push(name.clone());
            }
        }
    }
}

/// The first page of a room's member list as read from the store.
type MemberList = Result<MemberPage, StoreError>;

pub(super) async fn room_task(
    hub: Arc<Hub>,
    room: RoomName,
    mut commands: mpsc::UnboundedReceiver<Command>,
) {
    let mut sub = match hub
        .metrics
        .timed("subscribe", hub.store.subscribe(&room))
        .await
    {
        Ok(sub) => sub,
        Err(e) => {
            tracing::warn!(cause = %e, %room, "cannot subscribe to room");
            refuse_all(&hub, &room, &mut commands);
            return;
        }
    };
    let mut task = RoomTask {
        presence: PresenceThrottle::new(hub.presence_interval),
        hub,
        room,
        members: Vec::new(),
        listed: None,
        epoch: None,
        delivered: 0,
        count: 0,
        joins: 0,
        held: Vec::new(),
        joined: mpsc::unbounded_channel(),
        lists: mpsc::unbounded_channel(),
        typing: TypingFold::default(),
        refill: None,
        rules: KnownRules::default(),
    };
    let open = task.run(&mut sub, &mut commands).await;
    if !open {
        // The bus closed: close every local member so its client reconnects and resyncs.
        task.close_all();
    }
    refuse_all(&task.hub, &task.room, &mut commands);
}

impl RoomTask {
    /// Serves until the room has no members here (true) or the bus closed (false).
    async fn run(
        &mut self,
        sub: &mut Subscription,
        commands: &mut mpsc::UnboundedReceiver<Command>,
    ) -> bool {
        loop {
            tokio::select! {
                biased;
                cmd = commands.recv() => match cmd {
                    Some(cmd) => self.handle(cmd).await,
                    None => return true,
                },
                Some(done) = self.joined.1.recv() => self.add_member(done),
                item = sub.recv() => match item {
                    Ok(BusItem::Event(event)) => self.deliver(&event).await,
                    // Events may be gone (bus reconnected, or this task fell behind).
                    Ok(BusItem::Resync) | Err(RecvError::Lagged(_)) => self.resync().await,
                    Err(RecvError::Closed) => return false,
                },
                _ = tokio::time::sleep_until(self.presence.next_at),
                    if self.presence.pending && !self.presence.reading => {
                    self.read_presence();
                }
                Some(list) = self.lists.1.recv() => self.send_presence(list),
                _ = tokio::time::sleep_until(self.typing.next_at), if !self.typing.names.is_empty() => {
                    self.send_typing();
                }
                // (Without a retry due the branch is off and its deadline never looked at.)
                _ = tokio::time::sleep_until(self.refill.map_or(self.presence.next_at, |(at, _)| at)),
                    if self.refill.is_some() => {
                    self.resync().await;
                }
            }
            while self.members.is_empty() && self.joins == 0 {
                match self.hub.retire(&self.room, commands) {
                    Some(cmd) => self.handle(cmd).await,
                    None => return true,
                }
            }
        }
    }

    async fn handle(&mut self, cmd: Command) {
        match cmd {
            Command::Join {
                member,
                outbox,
                joining:
                    Joining {
                        since,
                        create,
                        changes,
                    },
                reader,
                reply,
            } => {
                // Stored beside the task, which goes on delivering; the result comes back as a
                // `JoinDone` and the joiner is added then (`add_member`).
                self.joins += 1;
                let (hub, room, done) =
                    (self.hub.clone(), self.room.clone(), self.joined.0.clone());
                tokio::spawn(async move {
                    let snapshot = match reader {
                        true => hub.metrics.timed("peek", hub.store.peek(&room)).await,
                        false => {
                            let join = hub.store.join(&room, &member, create, since.as_ref());
                            hub.metrics.timed("join", join).await
                        }
                    };
                    let _ = done.send(JoinDone {
                        member,
                        reader,
                        changes,
                        outbox,
                        reply,
                        snapshot,
                    });
                });
            }
            Command::Leave {
                member,
                grace,
                reply,
            } => {
                let reader = self
                    .members
                    .iter()
                    .any(|m| m.member.conn == member.conn && m.reader);
                self.members.retain(|m| m.member.conn != member.conn);
                if reader {
                    // Nothing was stored of it.
                    let _ = reply.send(());
                    return;
                }
                // Stored beside the task; the connection hears back once it is — or at once
                // when the store is to keep the member a while (a leave the session's return
                // made moot changes nothing there).
                let (hub, room) = (self.hub.clone(), self.room.clone());
                let reply = match grace.is_zero() {
                    true => Some(reply),
                    false => {
                        let _ = reply.send(());
                        None
                    }
                };
                tokio::spawn(async move {
                    if !grace.is_zero() {
                        tokio::time::sleep(grace).await;
                    }
                    let leave = hub.store.leave(&room, &member);
                    if let Err(e) = hub.metrics.timed("leave", leave).await {
                        tracing::warn!(cause = %e, %room, "leave was not announced");
                    }
                    if let Some(reply) = reply {
                        let _ = reply.send(());
                    }
                });
            }
            Command::Rename { member, reply } => {
                let Some(local) = self
                    .members
                    .iter_mut()
                    .find(|m| m.member.conn == member.conn)
                else {
                    let _ = reply.send(Ok(()));
                    return;
                };
                local.member.name = member.name.clone();
                let (hub, room) = (self.hub.clone(), self.room.clone());
                tokio::spawn(async move {
                    let rename = hub.store.rename(&room, &member);
                    let _ = reply.send(hub.metrics.timed("rename", rename).await);
                });
            }
        }
    }

    /// Adds a joiner whose store call is done: its `joined` frame, then the messages this task
    /// delivered after the snapshot was taken, then the live stream. The snapshot and the stream
    /// meet without a gap or an overlap: what the snapshot holds and is still to come live is
    /// skipped for the joiner (`skip_through`), and what came live before the snapshot ended is
    /// in it.
    fn add_member(&mut self, done: JoinDone) {
        let JoinDone {
            member,
            reader,
            changes,
            outbox,
            reply,
            snapshot,
        } = done;
        self.joins -= 1;
        let result = snapshot.map(|snapshot| {
            let created = snapshot.created;
            self.count = snapshot.count;
            // A joiner whose first page is not the one last listed here hears the next changes
            // from its own page (or, if it takes whole lists, the next list whole).
            let holds =
                (self.listed.as_ref() != Some(&snapshot.members)).then(|| snapshot.members.clone());
            // A repeated join replaces the connection's entry and resends the room.
            self.members.retain(|m| m.member.conn != member.conn);
            let (epoch, last_seq) = (snapshot.epoch.clone(), snapshot.last_seq);
            // With nobody else here, the stream starts where the snapshot ends (or where this
            // task already got to). With others, it must not: they still need the live messages
            // this snapshot already holds (the joiner skips those itself).
            if self.members.is_empty() {
                // A snapshot without an epoch saw no message: where the stream is stays.
                if epoch.is_none() || self.epoch == epoch {
                    self.delivered = self.delivered.max(last_seq);
                } else {
                    self.epoch = epoch.clone();
                    self.delivered = last_seq;
                }
            }
            let joined = joined_frame(&self.room, snapshot);
            if let ServerMsg::Joined {
                recovered: Some(complete),
                ..
            } = &joined
            {
                self.hub.metrics.recovery(*complete);
            }
            let mut skip_through = last_seq;
            let mut whole = outbox.offer_as(encode(&joined), Class::Catchup);
            // The joiner's place in the stream: the snapshot's, then each held message's.
            let mut at = epoch.clone();
            for (held_epoch, seq, frame) in self.held.iter().filter(|(e, seq, _)| match &epoch {
                // What the snapshot holds is skipped; a message of another epoch is kept, and
                // stops the joiner below.
                Some(epoch) => e != epoch || *seq > last_seq,
                // The snapshot was taken before the room's first message: everything held
                // came after it.
                None => true,
            }) {
                if !whole {
                    break;
                }
                // A message this node never got live is missing between them, or the store
                // began another epoch meanwhile: the joiner reconnects and recovers (`join`
                // with `since`), rather than miss anything.
                if *seq != skip_through + 1 || at.as_ref().is_some_and(|at| at != held_epoch) {
                    whole = false;
                    outbox.close.cancel();
                    break;
                }
                whole = outbox.offer_as(frame.clone(), Class::Catchup);
                skip_through = *seq;
                at = Some(held_epoch.clone());
            }
            if whole {
                self.members.push(LocalMember {
                    member,
                    reader,
                    outbox,
                    changes,
                    holds,
                    epoch: at,
                    skip_through,
                });
                // Notices that came while the join ran (its own `joined` among them) went to
                // the others only: a fresh member list follows for everyone.
                if !reader {
                    self.presence.pending = true;
                }
            }
            created
        });
        if self.joins == 0 {
            self.held = Vec::new();
        }
        let _ = reply.send(result);
    }

    /// Keeps a delivered message for the joins in flight.
    fn hold(&mut self, m: &ChatMessage, frame: &Message) {
        if self.joins > 0 {
            self.held.push((m.epoch.clone(), m.seq, frame.clone()));
        }
    }

    async fn deliver(&mut self, event: &BusEvent) {
        if let ServerMsg::Message(m) = &event.msg {
            // Said, not typing any more: not announced after the message it typed.
            self.typing.names.retain(|name| *name != m.from);
        }
        match &event.msg {
            ServerMsg::Message(m) if self.members.is_empty() => {
                // Only joiners are waiting: nobody to fill a gap for; note where the stream is.
                if self.epoch.as_deref() == Some(m.epoch.as_str()) && m.seq <= self.delivered {
                    return;
                }
                self.epoch = Some(m.epoch.clone());
                self.delivered = m.seq;
                self.hold(m, &Message::Text(event.frame.clone()));
            }
            // A gap fill is due again: this message comes with it, from the history.
            ServerMsg::Message(_) if self.refill.is_some() => {}
            ServerMsg::Message(m) => {
                if self.epoch.as_deref() == Some(m.epoch.as_str()) {
                    if m.seq <= self.delivered {
                        return; // already delivered (e.g. by a gap fill)
                    }
                    if m.seq > self.delivered + 1 && !self.fill(Some(m.seq - 1)).await {
                        return;
                    }
                } else {
                    // The first message of this room here, or the store started a new epoch
                    // (its data was lost): numbering starts afresh, and whatever of the new
                    // epoch came before this message is fetched first.
                    self.epoch = Some(m.epoch.clone());
                    self.delivered = 0;
                    if m.seq > 1 && !self.fill(Some(m.seq - 1)).await {
                        return;
                    }
                }
                self.delivered = m.seq;
                let frame = Message::Text(event.frame.clone());
                let n = fan_out(&mut self.members, &frame, Class::Keep, |lm| lm.has(m));
                self.hub.metrics.deliveries.inc_by(n);
                self.hold(m, &frame);
                if let Some(moderation) = &m.moderation {
                    self.moderated(m.ts, moderation);
                }
            }
            ServerMsg::Notice { kind, .. } => {
                self.presence.pending = true;
                // In a big room the count says it: a notice per joiner to every member would
                // cost the room the square of its size.
                let muted = *kind != NoticeKind::Renamed && self.count > self.hub.notices_max;
                if !muted {
                    self.fan_out(&Message::Text(event.frame.clone()), Class::Notice);
                }
            }
            ServerMsg::Typing { names, .. } => {
                self.typing.heard(names);
                if Instant::now() >= self.typing.next_at {
                    self.send_typing();
                }
            }
            _ => self.fan_out(&Message::Text(event.frame.clone()), Class::Keep),
        }
    }

    /// A moderator muted or kicked a name (the rule for the name is stored already): whoever
    /// holds it here now is muted (or kept out) by their session too, so that taking another
    /// name does not lift it; a kick also takes them out of the room here, and the room hears
    /// they left. Each node does this for its own members.
    fn moderated(&mut self, at_ms: u64, moderation: &Moderation) {
        let now = now_ms();
        if moderation.action == ModAction::SlowMode {
            self.rules.keep(&Rule::Slow(moderation.seconds), now);
            return;
        }
        let (Some(name), ModAction::Mute | ModAction::Kick) = (&moderation.name, moderation.action)
        else {
            return;
        };
        let Ok(target) = UserName::parse(name) else {
            return;
        };
        let key = target.key();
        let kick = moderation.action == ModAction::Kick;
        let until_ms = until(at_ms, moderation.seconds);
        let rule = move |who: String| match kick {
            true => Rule::Kick { who, until_ms },
            false => Rule::Mute { who, until_ms },
        };
        // The name's rule, as the moderator's node stored it.
        self.rules.keep(&rule(name_key(&key)), now);
        let mut sessions: Vec<Arc<str>> = Vec::new();
        let mut gone = Vec::new();
        self.members.retain(|lm| {
            if lm.reader || lm.member.name.key() != key {
                return true;
            }
            if !sessions.contains(&lm.member.session) {
                sessions.push(lm.member.session.clone());
            }
            if kick {
                gone.push(lm.member.clone());
            }
            !kick
        });
        let rules: Vec<Rule> = sessions
            .iter()
            .map(|session| rule(session_key(session)))
            .collect();
        for each in &rules {
            self.rules.keep(each, now);
        }
        if rules.is_empty() {
            return;
        }
        let (hub, room) = (self.hub.clone(), self.room.clone());
        tokio::spawn(async move {
            for rule in rules {
                if let Err(e) = hub.store.rule(&room, rule).await {
                    tracing::warn!(cause = %e, %room, "moderation not kept for a session");
                }
            }
            for member in gone {
                if let Err(e) = hub.store.leave(&room, &member).await {
                    tracing::warn!(cause = %e, %room, "kicked member's leave not announced");
                }
            }
        });
    }

    /// Tells the members here who said they were typing since the last time.
    fn send_typing(&mut self) {
        let names = std::mem::take(&mut self.typing.names);
        self.typing.next_at = Instant::now() + TYPING_FOLD;
        let frame = encode(&ServerMsg::Typing {
            room: self.room.to_string(),
            names,
        });
        self.fan_out(&frame, Class::Typing(self.presence.id));
    }

    /// Queues `frame` for every local member.
    fn fan_out(&mut self, frame: &Message, class: Class) {
        let n = fan_out(&mut self.members, frame, class, |_| false);
        self.hub.metrics.deliveries.inc_by(n);
    }

    /// Delivers the stored messages after the last one delivered, up to `upto` (or all).
    /// Returns false if they could not be had. When the store no longer has them every local
    /// member is closed (1013) so its client reconnects and reloads the room, rather than
    /// silently miss messages; when the store did not answer, the fill is tried again after a
    /// backoff ([`REFILL_FIRST`] doubling to [`REFILL_MAX`]) and live messages wait for it, so a
    /// Redis failover costs the members a delay, not a reconnect.
    async fn fill(&mut self, upto: Option<u64>) -> bool {
        let tries = self.refill.take().map_or(0, |(_, tries)| tries);
        let Some(epoch) = self.epoch.clone() else {
            return true;
        };
        let since = self.hub.store.since(&self.room, &epoch, self.delivered);
        match self.hub.metrics.timed("since", since).await {
            Ok(Some(missed)) => {
                if !missed.is_empty() {
                    self.hub.metrics.gap_fills.inc();
                }
                for m in missed
                    .into_iter()
                    .filter(|m| upto.is_none_or(|u| m.seq <= u))
                {
                    let seq = m.seq;
                    let frame = encode(&ServerMsg::Message(m.clone()));
                    let n = fan_out(&mut self.members, &frame, Class::Keep, |lm| lm.has(&m));
                    self.hub.metrics.deliveries.inc_by(n);
                    self.hold(&m, &frame);
                    self.delivered = seq;
                }
                true
            }
            Ok(None) => {
                tracing::warn!(room = %self.room, after = self.delivered, "missed messages are no longer stored: members must reload");
                self.close_all();
                false
            }
            Err(e) => {
                let wait = REFILL_FIRST
                    .saturating_mul(1 << tries.min(8))
                    .min(REFILL_MAX);
                tracing::warn!(cause = %e, room = %self.room, retry_in = ?wait, "cannot fetch missed messages yet");
                self.refill = Some((Instant::now() + wait, tries + 1));
                false
            }
        }
    }

    async fn resync(&mut self) {
        self.hub.metrics.resyncs.inc();
        // First what is true here (members, and how far the room's numbering got), so that a
        // store that lost it (a failover) neither misses members nor numbers a message twice.
        let members: Vec<Member> = self
            .members
            .iter()
            .filter(|m| !m.reader)
            .map(|m| m.member.clone())
            .collect();
        let delivered = self.epoch.as_deref().map(|e| (e, self.delivered));
        let reassert = self.hub.store.reassert(&self.room, &members, delivered);
        if let Err(e) = self.hub.metrics.timed("reassert", reassert).await {
            tracing::warn!(cause = %e, room = %self.room, "cannot re-register members");
        }
        // And the rules seen set here (written again as they were: harmless if the store kept
        // them), beside the task.
        let rules = self.rules.live(now_ms());
        if !rules.is_empty() {
            let (hub, room) = (self.hub.clone(), self.room.clone());
            tokio::spawn(async move {
                for rule in rules {
                    if let Err(e) = hub.store.rule(&room, rule).await {
                        tracing::warn!(cause = %e, %room, "a rule not put back");
                    }
                }
            });
        }
        if !self.fill(None).await {
            return;
        }
        self.presence.pending = true;
    }

    /// Starts reading the member list beside the task; it comes back through `lists`.
    fn read_presence(&mut self) {
        self.presence.sent(self.count > self.hub.list_max);
        self.presence.reading = true;
        let (hub, room, done) = (self.hub.clone(), self.room.clone(), self.lists.0.clone());
        tokio::spawn(async move {
            let first = MemberQuery::first(hub.list_max);
            let list = hub
                .metrics
                .timed("members", hub.store.members(&room, &first));
            let list = list.await;
            let _ = done.send(list);
        });
    }

    /// Tells each member here how the list changed: the whole list to a member that does not
    /// hold the last one sent (and to every member that takes only whole lists), what changed
    /// to the others, and only the count when the names stayed as they were.
    fn send_presence(&mut self, list: MemberList) {
        self.presence.reading = false;
        let page = match list {
            Ok(page) => page,
            Err(e) => {
                tracing::warn!(cause = %e, room = %self.room, "no member list");
                return;
            }
        };
        self.count = page.count;
        let mut lists = Lists::new(&self.room, self.listed.as_deref(), page);
        let (id, count_id) = (self.presence.id, self.presence.count_id());
        let mut queued = 0;
        self.members.retain_mut(|m| {
            let holds = m.holds.take();
            let changes = match (m.changes, &holds) {
                (false, _) => None,
                (true, None) => lists.changes(),
                (true, Some(names)) => lists.changes_from(names),
            };
            let same = match &holds {
                None => lists.same(),
                Some(names) => lists.is(names),
            };
            let ok = match changes {
                Some(changes) => m.outbox.offer_changes(changes, || lists.whole(), id),
                None if same => m.outbox.offer_as(lists.count(), Class::Presence(count_id)),
                None => m.outbox.offer_as(lists.whole(), Class::Presence(id)),
            };
            queued += u64::from(ok);
            ok
        });
        self.hub.metrics.deliveries.inc_by(queued);
        self.listed = Some(lists.into_names());
    }

    fn close_all(&mut self) {
        for m in self.members.drain(..) {
            m.outbox.close.cancel();
        }
    }
}

/// Answers every queued command with an error and forgets the room, so the next join starts a
/// fresh task.
fn refuse_all(hub: &Hub, room: &RoomName, commands: &mut mpsc::UnboundedReceiver<Command>) {
    loop {
        match hub.retire(room, commands) {
            Some(Command::Join { reply, .. }) => {
                let _ = reply.send(Err(StoreError::Unavailable(
                    "the room's task could not subscribe".into(),
                )));
            }
            Some(Command::Leave { reply, .. }) => {
                let _ = reply.send(());
            }
            // The room has no members here any more: nobody to rename.
            Some(Command::Rename { reply, .. }) => {
                let _ = reply.send(Ok(()));
            }
            None => return,
        }
    }
}

/// Queues `frame` for every local member but those `skip` says already have it, shed as `class`
/// says when a member's queue is full. A member whose queue cannot take a frame that must arrive
/// is closed by `offer_as` and dropped here; its connection then leaves the room properly.
/// Returns how many were queued.
fn fan_out(
    members: &mut Vec<LocalMember>,
    frame: &Message,
    class: Class,
    skip: impl Fn(&LocalMember) -> bool,
) -> u64 {
    let mut queued = 0;
    members.retain(|m| {
        if skip(m) {
            return true;
        }
        let ok = m.outbox.offer_as(frame.clone(), class);
        queued += u64::from(ok);
        ok
    });
    queued
}
