//! The chat as one browser tab sees it, as plain data: what server frames do to it and what it
//! sends in answer. Kept free of signals and browser APIs so it is unit-tested natively; the UI
//! keeps one of these in a signal.

use super::{mention, typing::Typists};
use crate::{
    protocol::{
        ChatMessage, ClientMsg, ErrorCode, HISTORY_PAGE, ModAction, NoticeKind, Position,
        ServerMsg, TYPING_EVERY_MS, sort_members,
    },
    rate::{Bucket, Rate},
};
use std::collections::HashMap;

/// Items kept on screen while the reader follows the newest; older ones are let go (and read
/// again with `history`) so a long session stays light. Pages the reader asked for stay until
/// they are back at the newest.
pub const MAX_ITEMS: usize = 500;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Status {
    #[default]
    Connecting,
    Online,
    Reconnecting,
    /// The browser says it has no network: nothing is tried until it has.
    Offline,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Message(ChatMessage),
    /// Someone joined, left or was renamed. Joins (or leaves) that follow each other with
    /// nothing between are one item, oldest name first: "ann, bo and 10 others joined".
    Notice {
        key: u64,
        kind: NoticeKind,
        names: Vec<String>,
        old_name: Option<String>,
    },
    /// Messages were missed and could not be recovered; what follows is the recent history.
    Gap {
        key: u64,
    },
}

/// The top of the message list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edge {
    /// No message is shown.
    Empty,
    /// The room's first message is shown.
    Begins,
    /// Older messages were not kept.
    Trimmed,
    /// An older page is on its way.
    Loading,
    /// Older messages can be asked for.
    More,
}

/// A message the user sent that is not yet shown as delivered. Until it is acknowledged it is
/// sent again, with the same `client_id`, after a reconnect and whenever a heartbeat passes
/// without an answer; the server stores it once however often it arrives. Once acknowledged it
/// stays on screen (as sending) until the message itself arrives, so it never blinks out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    pub client_id: String,
    pub text: String,
    /// The heartbeat tick it was last sent at.
    sent_tick: u64,
    acked: bool,
    /// To be sent as soon as the pace allows.
    due: bool,
    /// How often it was sent without an answer.
    tries: u32,
}

/// Where a message the user wrote is, as the page shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendState {
    /// Waiting for the link, the room or its turn.
    Queued,
    /// On its way (or stored, and on its way back).
    Sending,
    /// Sent several times without an answer: it is tried again by itself, and can be now.
    Failed,
}

/// Why the page holds what is written a while: the room's rules, as the server told them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// Slow mode: this person's next message goes after the interval.
    Slow,
    /// A moderator muted this person here.
    Muted,
    /// A moderator removed this person from the room; the page joins again after.
    Kicked,
}

/// Name look-ups waited for at once (one per keystroke after an `@`, in a big room).
const ASKED_MAX: usize = 8;

/// Unanswered tries after which a message is shown as not sent.
const TRIES_BEFORE_FAILED: u32 = 3;

impl Pending {
    fn frame(&self, room: &str) -> ClientMsg {
        ClientMsg::Send {
            room: room.to_owned(),
            text: self.text.clone(),
            client_id: Some(self.client_id.clone()),
        }
    }
}

impl Item {
    /// Stable identity for keyed rendering.
    pub fn key(&self) -> String {
        match self {
            Item::Message(m) => format!("m-{}-{}", m.epoch, m.seq),
            Item::Notice { key, .. } | Item::Gap { key } => format!("n-{key}"),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Model {
    pub room: String,
    pub status: Status,
    /// The name to (re)claim on every connect: remembered, or typed in the form.
    pub wanted_name: Option<String>,
    /// The name the server confirmed on this connection.
    pub name: Option<String>,
    /// The server confirmed a name on some connection of this page: what is typed from now on
    /// waits through any drop and goes out once the name is claimed again.
    pub named_once: bool,
    /// The browser reports no network.
    pub offline: bool,
    /// The network came back while the client waited to reconnect: it should try now.
    pub wake: bool,
    /// How many times the browser said it went offline: a link open across one is dropped and
    /// made again, however short the gap (the status said Offline meanwhile).
    pub drops: u64,
    pub joined: bool,
    /// A `join` went out right behind the name claim on connect: the claim's `name_set` need
    /// not ask for the room again (see `welcome`).
    joining: bool,
    /// The room is read without a name (what is said, who is there; no part in it yet).
    pub reading: bool,
    /// The room's members, sorted: all of them, or in a big room the first page the server sent.
    pub members: Vec<String>,
    /// How many members the room has (at least `members.len()`).
    pub member_count: usize,
    pub items: Vec<Item>,
    /// The last refusal, until dismissed or superseded.
    pub error: Option<ErrorCode>,
    /// Set when the name should be claimed again after this many milliseconds; the client
    /// takes it and schedules the retry.
    pub retry_name_in_ms: Option<u32>,
    /// Set when the server said to slow down: after this many milliseconds what it refused is
    /// sent again (see [`Model::retry_now`]); the client takes it and schedules the retry.
    pub retry_in_ms: Option<u32>,
    /// A retry after `rate_limited` is scheduled: more refusals in the meantime add none.
    retry_scheduled: bool,
    /// Tries left to reclaim our own name after a reconnect: the server may not yet have noticed
    /// that our previous connection is gone, and still count the name as taken.
    reclaims_left: u32,
    /// The session the server gave this page; resumed after a reconnect (any node), so the name
    /// stays ours while the server has not yet noticed that the old connection is gone.
    session: Option<String>,
    epoch: Option<String>,
    last_seq: u64,
    /// The server said nothing is stored before the first message shown.
    history_start: bool,
    /// A `history` page is on its way.
    pub loading_older: bool,
    /// Seconds until the next try to connect, while waiting for it.
    pub reconnect_in_s: Option<u32>,
    /// The tab is hidden: what others say meanwhile is counted in `unread` (the tab's title
    /// shows it).
    pub away: bool,
    pub unread: usize,
    /// This connection may mute, kick, set slow mode and delete anyone's message.
    pub moderator: bool,
    /// The operator token this page became a moderator with: asked with again on a new link.
    operator_token: Option<String>,
    /// The room's slow-mode interval (0: off).
    pub slow_mode_s: u64,
    /// What holds the composer, and until when (the page's clock, ms).
    hold: Option<(Hold, u64)>,
    /// The last message shown when the reader last left the tab: the first one after it is
    /// marked "new" until the reader writes.
    read_marker: Option<(String, u64)>,
    /// The reader asked for older pages and has not come back to the newest since: nothing
    /// shown is let go meanwhile.
    reading_back: bool,
    next_notice: u64,
    /// Sent but not yet delivered back to us, oldest first.
    pub pending: Vec<Pending>,
    /// Heartbeat ticks so far (see [`Model::tick`]).
    ticks: u64,
    /// How often the server pings; the page sends its own `ping` this often.
    pub ping_interval_ms: u64,
    /// Longest text the server takes, from `welcome`.
    max_text_chars: Option<usize>,
    /// The send limits from `welcome`, kept to so a burst goes out paced instead of refused.
    pacer: Pacer,
    /// Most rooms a connection may be in (`welcome`'s limits; 0 before it came).
    pub max_rooms: usize,
    /// The server refused frames for speed: what is unacknowledged goes again at the retry.
    refused: bool,
    /// The time of the current call, in nanoseconds from any fixed origin (see [`Model::set_clock`]).
    now_ns: u64,
    /// In a room bigger than its member list: names the server found for the last `@` prefix
    /// asked about (`members {prefix}`), and that prefix.
    found: Vec<String>,
    found_for: Option<String>,
    /// The prefixes asked about, oldest first, until their answers come (in the same order).
    asked: std::collections::VecDeque<String>,
    /// The newest message of the room the reader had in view (the room shown, the tab
    /// visible): what came after it is news. Kept by the page across reloads (`seen_key`).
    pub seen: Option<(String, u64)>,
    /// Messages pushed now are counted, not announced (a first join's history).
    quiet: bool,
    /// Of `unread`, the messages that mention this page's person.
    pub unread_mentions: usize,
    /// What raises a browser notification while the tab is hidden (the reader's choice, kept
    /// per room).
    pub notify: Notify,
    /// Notifications due (who, what), taken by the page as it shows them.
    pub to_notify: Vec<(String, String)>,
    /// Who is typing in the room.
    pub typists: Typists,
    /// How long after sending a message it may be edited or deleted (from `welcome`).
    pub edit_window_ms: u64,
    /// The `seq` of the reader's message being edited in the composer.
    pub editing: Option<u64>,
    /// When this page last said it was typing (ms on the model's clock).
    typing_said_ms: Option<u64>,
}

/// The server's send limits (a little under them, see [`Rate::paced`]) and this page's buckets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Pacer {
    sends: Option<Rate>,
    bytes: Option<Rate>,
    send_bucket: Bucket,
    byte_bucket: Bucket,
}

impl Pacer {
    fn new(sends: Option<Rate>, bytes: Option<Rate>) -> Self {
        Self {
            sends: sends.map(Rate::paced),
            bytes: bytes.map(Rate::paced),
            ..Self::default()
        }
    }

    /// Takes one frame of `len` bytes at `now`, or says how many nanoseconds until it may go.
    fn take(&mut self, now: u64, len: usize) -> Result<(), u64> {
        let (mut sends, mut bytes) = (self.send_bucket, self.byte_bucket);
        if let Some(rate) = self.sends {
            sends.take(rate, now, 1)?;
        }
        if let Some(rate) = self.bytes {
            bytes.take(rate, now, u32::try_from(len).unwrap_or(u32::MAX))?;
        }
        // Both buckets agree: charge them.
        (self.send_bucket, self.byte_bucket) = (sends, bytes);
        Ok(())
    }
}

/// A message as changed by later entries of the stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Changed {
    pub text: String,
    pub deleted: bool,
    /// Deleted by a moderator (not its author).
    pub by_moderator: bool,
}

/// What raises a notification while the tab is hidden.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Notify {
    All,
    #[default]
    Mentions,
    Nothing,
}

impl Notify {
    pub const ALL: [Notify; 3] = [Notify::All, Notify::Mentions, Notify::Nothing];

    pub fn tag(self) -> &'static str {
        match self {
            Notify::All => "all",
            Notify::Mentions => "mentions",
            Notify::Nothing => "nothing",
        }
    }

    pub fn from_tag(tag: &str) -> Option<Notify> {
        Notify::ALL.into_iter().find(|n| n.tag() == tag)
    }
}

/// At most this many notifications wait to be shown (a burst is not a notification each).
const NOTIFY_MAX: usize = 3;

/// Reclaim attempts after a reconnect, spaced 250 ms, 500 ms, … apart.
const RECLAIM_TRIES: u32 = 6;

impl Model {
    pub fn new(room: &str, remembered_name: Option<String>) -> Self {
        Self {
            room: room.to_owned(),
            wanted_name: remembered_name.filter(|n| !n.trim().is_empty()),
            ..Self::default()
        }
    }

    /// Another room on the same connection as this one: it shares what the connection knows
    /// (the link, the session, the name, the limits, moderator rights); the frames join it
    /// (with the name, or to read it) when the link is up, else on the next `welcome`.
    /// `seen` is where its reader left it on an earlier visit.
    pub fn beside(&self, room: &str, seen: Option<(String, u64)>) -> (Model, Vec<ClientMsg>) {
        let mut other = Model {
            status: self.status,
            wanted_name: self.wanted_name.clone(),
            name: self.name.clone(),
            named_once: self.named_once,
            offline: self.offline,
            drops: self.drops,
            session: self.session.clone(),
            ping_interval_ms: self.ping_interval_ms,
            max_text_chars: self.max_text_chars,
            max_rooms: self.max_rooms,
            edit_window_ms: self.edit_window_ms,
            pacer: self.pacer,
            moderator: self.moderator,
            operator_token: self.operator_token.clone(),
            seen,
            ..Model::new(room, None)
        };
        // Another room is read (or taken part in) beside this one: not in view.
        other.away = true;
        let join = match other.status {
            Status::Online => vec![other.join()],
            _ => Vec::new(),
        };
        (other, join)
    }

    /// Leaves the room (the page closes it).
    pub fn leave(&mut self) -> Vec<ClientMsg> {
        let was = std::mem::replace(&mut self.joined, false);
        match was && self.status == Status::Online {
            true => vec![ClientMsg::Leave {
                room: self.room.clone(),
            }],
            false => Vec::new(),
        }
    }

    /// Frames go out only once the server has us in the room.
    pub fn can_send(&self) -> bool {
        self.status == Status::Online && self.joined && self.name.is_some()
    }

    /// The composer takes messages once we have had a name, also through a drop: they wait
    /// (shown as sending) and go out, once each, when the room is ours again. Not while a
    /// moderator keeps us quiet or out.
    pub fn can_compose(&self) -> bool {
        let silenced = matches!(self.held(), Some((Hold::Muted | Hold::Kicked, _)));
        !silenced && (self.can_send() || (self.named_once && self.wanted_name.is_some()))
    }

    /// What holds the composer now, and for how many more seconds.
    pub fn held(&self) -> Option<(Hold, u64)> {
        let (hold, until) = self.hold?;
        let left = until.saturating_sub(self.now_ms());
        (left > 0).then(|| (hold, left.div_ceil(1000)))
    }

    /// Holds what is written for `ms` (the server's word, or slow mode after our own message),
    /// then asks again for what was refused: the room, and every message not yet stored.
    fn hold_for(&mut self, hold: Hold, ms: u64) {
        self.hold = Some((hold, self.now_ms().saturating_add(ms)));
        self.refused = true;
        self.retry_scheduled = false;
        self.schedule_retry(ms.max(50));
    }

    /// A slash command typed in the composer, as the frames it stands for: `/mod <token>`,
    /// `/mute <name> [minutes]`, `/unmute <name>`, `/kick <name> [minutes]`,
    /// `/slow <seconds>|off`. None when `text` is not one (it is then a message).
    pub fn command(&mut self, text: &str) -> Option<Vec<ClientMsg>> {
        let (verb, rest) = text.trim().split_once(' ').unwrap_or((text.trim(), ""));
        let rest = rest.trim();
        // "ann lee 10": a trailing number is minutes; the rest is the name.
        let name_and_minutes = |default: u64| {
            let (name, minutes) = match rest.rsplit_once(' ') {
                Some((name, n)) if n.parse::<u64>().is_ok() => (name, n.parse().unwrap_or(default)),
                _ => (rest, default),
            };
            (
                name.trim().trim_start_matches('@').to_owned(),
                minutes.saturating_mul(60),
            )
        };
        let room = self.room.clone();
        let frame = match verb {
            "/mod" if !rest.is_empty() => {
                self.operator_token = Some(rest.to_owned());
                ClientMsg::Moderate {
                    token: rest.to_owned(),
                }
            }
            "/mute" if !rest.is_empty() => {
                let (name, seconds) = name_and_minutes(10);
                ClientMsg::Mute {
                    room,
                    name,
                    seconds,
                }
            }
            "/unmute" if !rest.is_empty() => ClientMsg::Mute {
                room,
                name: rest.trim_start_matches('@').to_owned(),
                seconds: 0,
            },
            "/kick" if !rest.is_empty() => {
                let (name, seconds) = name_and_minutes(5);
                ClientMsg::Kick {
                    room,
                    name,
                    seconds: Some(seconds),
                }
            }
            "/slow" => ClientMsg::SlowMode {
                room,
                seconds: rest.parse().unwrap_or(0),
            },
            _ => return None,
        };
        self.clear_error();
        Some(vec![frame])
    }

    /// What a moderator's entry in the stream means for this page.
    fn moderated(&mut self, m: &ChatMessage) {
        let Some(md) = &m.moderation else {
            return;
        };
        let mine = md.name.is_some() && md.name == self.name;
        match md.action {
            ModAction::SlowMode => {
                self.slow_mode_s = md.seconds;
                if md.seconds == 0 && matches!(self.hold, Some((Hold::Slow, _))) {
                    self.hold = None;
                }
            }
            ModAction::Mute if mine && md.seconds == 0 => self.hold = None,
            ModAction::Mute if mine => self.hold_for(Hold::Muted, md.seconds.saturating_mul(1000)),
            ModAction::Kick if mine => {
                self.joined = false;
                self.hold_for(Hold::Kicked, md.seconds.saturating_mul(1000));
            }
            _ => {}
        }
    }

    /// What the browser says of its network (`navigator.onLine` and its events).
    pub fn set_network(&mut self, online: bool) {
        self.offline = !online;
        if !online {
            self.drops += 1;
            self.status = Status::Offline;
        } else if self.status == Status::Offline {
            self.status = Status::Reconnecting;
            self.wake = true;
        }
    }

    /// The link dropped: everything per-connection is void until the next `welcome`.
    pub fn disconnected(&mut self) {
        // Questions of the old link are not answered.
        self.asked.clear();
        self.status = if self.offline {
            Status::Offline
        } else {
            Status::Reconnecting
        };
        self.joined = false;
        self.joining = false;
        if let Some(name) = self.name.take() {
            self.wanted_name = Some(name);
            self.reclaims_left = RECLAIM_TRIES;
        }
    }

    /// The user asks for a name.
    pub fn request_name(&mut self, raw: &str) -> Vec<ClientMsg> {
        let name = raw.trim().to_owned();
        if name.is_empty() {
            return Vec::new();
        }
        self.wanted_name = Some(name.clone());
        self.error = None;
        self.reclaims_left = 0;
        if self.status == Status::Online {
            vec![ClientMsg::SetName { name }]
        } else {
            Vec::new()
        }
    }

    /// The time now, in milliseconds from any fixed origin (the page's `performance.now()`): the
    /// pace of sending is measured by it. Set before each call that may send.
    pub fn set_clock(&mut self, now_ms: f64) {
        if now_ms.is_finite() && now_ms >= 0.0 {
            self.now_ns = (now_ms * 1e6) as u64;
        }
    }

    fn now_ms(&self) -> u64 {
        self.now_ns / 1_000_000
    }

    /// The composer's text changed to `text`: the room hears that we are typing, at most once
    /// per [`TYPING_EVERY_MS`], and only while there is something to send and we take part.
    pub fn typed(&mut self, text: &str) -> Vec<ClientMsg> {
        let now = self.now_ms();
        let due = self
            .typing_said_ms
            .is_none_or(|said| now.saturating_sub(said) >= TYPING_EVERY_MS);
        if !due || !self.can_send() || text.trim().is_empty() {
            return Vec::new();
        }
        self.typing_said_ms = Some(now);
        vec![ClientMsg::Typing {
            room: self.room.clone(),
        }]
    }

    /// Stops showing whoever has not said they were typing for a while.
    pub fn expire_typing(&mut self) -> Vec<ClientMsg> {
        let now = self.now_ms();
        self.typists.expire(now);
        Vec::new()
    }

    /// The user sends `text`; `client_id` identifies it in the server's answers. It stays
    /// pending until it comes back as a `message`. `None` when it cannot be sent (the text
    /// stays in the composer); otherwise the frames to send now, which may be none while the
    /// pace holds it back (then `retry_in_ms` says when to call [`Model::retry_now`]).
    pub fn compose(&mut self, text: &str, client_id: String) -> Option<Vec<ClientMsg>> {
        if text.trim_start().starts_with('/')
            && let Some(frames) = self.command(text)
        {
            // A command goes now or not at all: the draft stays until it can.
            return self.can_send().then_some(frames);
        }
        if !self.can_compose() || text.trim().is_empty() {
            return None;
        }
        if self
            .max_text_chars
            .is_some_and(|max| text.chars().count() > max)
        {
            // Refused here: a text the server would refuse must not wait to be re-sent forever.
            self.error = Some(ErrorCode::TooLong);
            return None;
        }
        self.clear_error();
        // Writing is reading: what came while away is no longer new.
        self.read_marker = None;
        self.pending.push(Pending {
            client_id,
            text: text.to_owned(),
            sent_tick: self.ticks,
            acked: false,
            due: true,
            tries: 0,
        });
        Some(self.flush())
    }

    /// Sends every pending message again (after a reconnect: the old link may have lost them),
    /// or with `only_older_than`, those sent at least that many ticks ago. Acknowledged ones
    /// are stored and never sent again.
    fn resend_pending(&mut self, only_older_than: Option<u64>) -> Vec<ClientMsg> {
        if !self.can_send() {
            return Vec::new();
        }
        let now = self.ticks;
        self.pending
            .iter_mut()
            .filter(|p| !p.acked)
            .filter(|p| only_older_than.is_none_or(|age| p.sent_tick + age <= now))
            .for_each(|p| p.due = true);
        self.flush()
    }

    /// The messages due to be sent, oldest first, as far as the pace allows; the first that
    /// must wait holds back those after it (so they arrive in order), shows the calm note and
    /// schedules [`Model::retry_now`].
    fn flush(&mut self) -> Vec<ClientMsg> {
        if !self.can_send() {
            return Vec::new();
        }
        if let Some((_, left_s)) = self.held() {
            // Goes once the hold is over.
            self.schedule_retry(left_s.saturating_mul(1000));
            return Vec::new();
        }
        let (now, tick, room) = (self.now_ns, self.ticks, &self.room);
        let mut out = Vec::new();
        let mut wait = None;
        for p in self.pending.iter_mut().filter(|p| p.due && !p.acked) {
            let frame = p.frame(room);
            let len = serde_json::to_string(&frame).map_or(0, |json| json.len());
            if let Err(ns) = self.pacer.take(now, len) {
                wait = Some(ns);
                break;
            }
            p.due = false;
            p.sent_tick = tick;
            p.tries += 1;
            out.push(frame);
        }
        if let Some(ns) = wait {
            self.error = Some(ErrorCode::RateLimited);
            self.schedule_retry(ns.div_ceil(1_000_000));
        }
        out
    }

    /// Asks the client to call [`Model::retry_now`] in `ms` (one retry at a time).
    fn schedule_retry(&mut self, ms: u64) {
        if !self.retry_scheduled {
            self.retry_scheduled = true;
            self.retry_in_ms = Some(u32::try_from(ms.clamp(1, 60_000)).unwrap_or(60_000));
        }
    }

    /// A heartbeat passed (every `ping_interval_ms`): returns the frames to send now — a `ping`,
    /// and any message still unacknowledged two ticks after it was sent (the server was
    /// perhaps unable to store it then; it stores a `client_id` only once).
    /// Also asks again for the name and the room when the server could not grant them (it
    /// answers `internal` while its store is unreachable); a repeated `set_name` or `join` is
    /// harmless.
    pub fn tick(&mut self) -> Vec<ClientMsg> {
        self.ticks += 1;
        let mut out = vec![ClientMsg::Ping];
        out.extend(self.ask_again());
        out.extend(self.resend_pending(Some(2)));
        out
    }

    /// The room's `join`: after a reconnect, only what was missed since the last message shown;
    /// the member list kept current by what changes in it.
    fn join(&self) -> ClientMsg {
        ClientMsg::Join {
            room: self.room.clone(),
            since: self.position(),
            presence_changes: true,
        }
    }

    /// The name or the room, if the server has not granted what this page wants.
    fn ask_again(&self) -> Option<ClientMsg> {
        if self.status != Status::Online || self.retry_name_in_ms.is_some() {
            return None;
        }
        match (&self.name, &self.wanted_name) {
            (None, Some(name)) if self.reclaims_left == 0 => {
                Some(ClientMsg::SetName { name: name.clone() })
            }
            (Some(_), _) if !self.joined => Some(self.join()),
            _ => None,
        }
    }

    /// The wait is over, whether the server asked for it (`rate_limited`) or the pace did: sends
    /// what is due, and after a refusal again what the server may have refused (the name, the
    /// room, every unacknowledged message; each stored once).
    pub fn retry_now(&mut self) -> Vec<ClientMsg> {
        self.retry_scheduled = false;
        if !std::mem::take(&mut self.refused) {
            return self.flush();
        }
        let mut out: Vec<ClientMsg> = self.ask_again().into_iter().collect();
        out.extend(self.resend_pending(None));
        out
    }

    /// The position to recover from after a reconnect: the last message shown.
    fn position(&self) -> Option<Position> {
        self.epoch.as_ref().map(|epoch| Position {
            epoch: epoch.clone(),
            seq: self.last_seq,
        })
    }

    /// The message arrived: it is no longer pending.
    fn settle(&mut self, client_id: Option<&str>) {
        if let Some(id) = client_id {
            self.pending.retain(|p| p.client_id != id);
        }
        self.note_when_all_out();
    }

    /// The note that the server asked us to slow down stays until everything it held back is
    /// stored, so the user sees why a message still says "sending".
    fn note_when_all_out(&mut self) {
        if self.error == Some(ErrorCode::RateLimited) && self.pending.iter().all(|p| p.acked) {
            self.error = None;
        }
    }

    /// A new success clears the last refusal, except the note about slowing down while
    /// messages it held back are still on their way.
    fn clear_error(&mut self) {
        if self.error != Some(ErrorCode::RateLimited) {
            self.error = None;
        }
        self.note_when_all_out();
    }

    /// Applies a server frame; returns the frames to send in answer.
    pub fn apply(&mut self, msg: ServerMsg) -> Vec<ClientMsg> {
        if matches!(msg, ServerMsg::Error { .. }) {
            // Perhaps the page asked for (refused for speed, say): the next scroll asks again.
            self.loading_older = false;
        }
        if let ServerMsg::Error {
            code: ErrorCode::NotModerator,
            ..
        } = &msg
            && !self.moderator
        {
            // A token refused is not offered again on the next connection.
            self.operator_token = None;
        }
        match msg {
            ServerMsg::Welcome {
                session,
                limits,
                ping_interval_ms,
                name: bound,
                moderator,
                ..
            } => {
                self.moderator = moderator;
                // Signed in by the site we came from: that is our name.
                if let Some(bound) = bound {
                    self.wanted_name = Some(bound);
                }
                self.ping_interval_ms = ping_interval_ms;
                self.max_text_chars = Some(limits.max_text_chars);
                self.max_rooms = limits.max_rooms_per_connection;
                self.edit_window_ms = limits.edit_window_ms;
                // A new connection: the server's buckets for it start full, and so do ours.
                self.pacer = Pacer::new(limits.sends, limits.bytes);
                self.status = Status::Online;
                self.reconnect_in_s = None;
                // Tries are counted per link: what the old one lost is no failure yet.
                self.pending.iter_mut().for_each(|p| p.tries = 0);
                // Whatever the browser said, the server has answered.
                self.offline = false;
                self.joined = false;
                self.name = None;
                // A page asked for on the old link will not come.
                self.loading_older = false;
                let mut answers = Vec::new();
                // Resume first: the server handles frames in order, so the name claim after it
                // already counts as ours. If the session is gone, the new one is kept.
                if let Some(previous) = self.session.replace(session) {
                    answers.push(ClientMsg::Resume { session: previous });
                }
                // Moderator rights by the operator token are the link's: asked for again.
                if let Some(token) = self.operator_token.clone() {
                    answers.push(ClientMsg::Moderate { token });
                }
                // The room is asked for right behind the name, not after `name_set`: one round
                // trip less to a usable page (the server takes frames in order, so the join is
                // a member's if the claim succeeded, a reader's if not). Without a name yet, the
                // room is read until one is picked. After a reconnect, only what was missed.
                if let Some(name) = &self.wanted_name {
                    answers.push(ClientMsg::SetName { name: name.clone() });
                }
                self.joining = self.wanted_name.is_some();
                answers.push(self.join());
                answers
            }
            ServerMsg::Resumed { session, name } => {
                self.session = Some(session);
                // Another tab's session, resumed by a tab that had no name: it is ours now.
                match name {
                    Some(name) if self.name.is_none() && self.wanted_name.is_none() => {
                        self.wanted_name = Some(name.clone());
                        vec![ClientMsg::SetName { name }]
                    }
                    _ => Vec::new(),
                }
            }
            // Expected after a long absence: carry on with the new session.
            ServerMsg::Error {
                code: ErrorCode::UnknownSession,
                ..
            } => Vec::new(),
            ServerMsg::NameSet { name } => {
                self.named_once = true;
                self.reclaims_left = 0;
                self.wanted_name = Some(name.clone());
                self.name = Some(name);
                self.clear_error();
                if std::mem::take(&mut self.joining) || (self.joined && !self.reading) {
                    Vec::new()
                } else {
                    // From reading to taking part: a member once the server says so.
                    self.joined = false;
                    // After a reconnect, only what was missed since the last message shown.
                    vec![self.join()]
                }
            }
            ServerMsg::Joined {
                room,
                members,
                count,
                history,
                recovered,
            } if room == self.room => {
                self.joined = true;
                self.joining = false;
                self.reading = self.name.is_none();
                self.set_members(members, count);
                // A refusal for want of the store is over once the room is ours again.
                if self.error == Some(ErrorCode::Internal) {
                    self.error = None;
                }
                // What is shown cannot be continued by what came (the server could not send all
                // that was missed, or a reader's window starts after a hole, or the room's
                // numbering restarted): start again from the window, with a note. Paging back
                // from it fills the hole, as far as the room still keeps it.
                let continues = match (&self.epoch, history.first()) {
                    (Some(epoch), Some(first)) => {
                        *epoch == first.epoch && first.seq <= self.last_seq + 1
                    }
                    _ => true,
                };
                if recovered == Some(false) || (!continues && !self.items.is_empty()) {
                    self.items.clear();
                    self.epoch = None;
                    self.last_seq = 0;
                    self.history_start = false;
                    self.reading_back = false;
                    self.next_notice += 1;
                    self.push(Item::Gap {
                        key: self.next_notice,
                    });
                }
                // A first join (a page loading) brings news it should count, not announce.
                self.quiet = recovered.is_none();
                for m in history {
                    self.push_message(m);
                }
                self.quiet = false;
                // A room seen for the first time: what it holds is not news.
                if self.seen.is_none() {
                    self.seen = Some((self.epoch.clone().unwrap_or_default(), self.last_seq));
                }
                // Stored messages that were not in what came (they fell in a gap) are not
                // waited for; whatever the old link may have lost goes again, stored once.
                self.pending.retain(|p| !p.acked);
                self.resend_pending(None)
            }
            ServerMsg::History {
                room,
                epoch,
                messages,
                more,
            } if room == self.room => {
                self.loading_older = false;
                if epoch.is_some() && epoch != self.epoch && self.epoch.is_some() {
                    // The room's numbering restarted since: nothing older goes with what is shown.
                    self.history_start = true;
                    return Vec::new();
                }
                self.prepend(messages);
                self.history_start = !more;
                Vec::new()
            }
            ServerMsg::Ack {
                room, client_id, ..
            } if room == self.room => {
                // Stored: never sent again; shown until the message itself arrives.
                if let Some(p) = self
                    .pending
                    .iter_mut()
                    .find(|p| Some(&p.client_id) == client_id.as_ref())
                {
                    p.acked = true;
                    if self.slow_mode_s > 0 && !self.moderator {
                        self.hold_for(Hold::Slow, self.slow_mode_s.saturating_mul(1000));
                    }
                }
                self.note_when_all_out();
                Vec::new()
            }
            ServerMsg::Members { room, members, .. } if room == self.room => {
                if let Some(asked) = self.asked.pop_front() {
                    self.found = members;
                    self.found_for = Some(asked);
                }
                Vec::new()
            }
            ServerMsg::Moderator => {
                self.moderator = true;
                self.clear_error();
                Vec::new()
            }
            ServerMsg::SlowMode { room, seconds } if room == self.room => {
                self.slow_mode_s = seconds;
                Vec::new()
            }
            ServerMsg::Error {
                code: code @ (ErrorCode::SlowMode | ErrorCode::Muted | ErrorCode::Kicked),
                retry_after_ms,
                ..
            } => {
                let hold = match code {
                    ErrorCode::SlowMode => Hold::Slow,
                    ErrorCode::Muted => Hold::Muted,
                    _ => {
                        self.joined = false;
                        Hold::Kicked
                    }
                };
                self.hold_for(hold, retry_after_ms.unwrap_or(1000));
                Vec::new()
            }
            ServerMsg::Left { room } if room == self.room => {
                self.joined = false;
                Vec::new()
            }
            ServerMsg::Message(m) if m.room == self.room => {
                self.typists.stopped(&m.from);
                self.moderated(&m);
                self.push_message(m);
                Vec::new()
            }
            ServerMsg::Typing { room, names } if room == self.room => {
                let now = self.now_ms();
                self.typists.heard(&names, self.name.as_deref(), now);
                Vec::new()
            }
            ServerMsg::Notice {
                room,
                kind,
                name,
                old_name,
            } if room == self.room => {
                self.typists.stopped(old_name.as_deref().unwrap_or(&name));
                // The list and the count are the server's (`presence_changes` follows at once
                // after a quiet spell): a notice applied here could add a name past a big
                // room's first page, which no change would ever take away.
                self.notice(kind, name, old_name);
                Vec::new()
            }
            ServerMsg::Presence {
                room,
                members,
                count,
            } if room == self.room => {
                self.set_members(members, count);
                Vec::new()
            }
            // What changed since the list this page has (applying it twice changes nothing).
            ServerMsg::PresenceChanges {
                room,
                joined,
                left,
                count,
            } if room == self.room => {
                self.members.retain(|m| !left.contains(m));
                for name in &joined {
                    self.add_member(name);
                }
                self.member_count = (count as usize).max(self.members.len());
                Vec::new()
            }
            // A big room's count moved past the names shown.
            ServerMsg::MemberCount { room, count } if room == self.room => {
                self.member_count = (count as usize).max(self.members.len());
                Vec::new()
            }
            ServerMsg::Error {
                code: ErrorCode::NameTaken,
                ..
            } if self.name.is_none() && self.reclaims_left > 0 => {
                // Probably our own previous connection, not yet reaped: try again shortly.
                self.retry_name_in_ms = Some(250 * (RECLAIM_TRIES + 1 - self.reclaims_left));
                self.reclaims_left -= 1;
                Vec::new()
            }
            // Too fast: shown calmly, and whatever was refused goes again once the server's wait
            // is over (one retry at a time, however many frames were refused).
            ServerMsg::Error {
                code: ErrorCode::RateLimited,
                retry_after_ms,
                ..
            } => {
                self.error = Some(ErrorCode::RateLimited);
                self.refused = true;
                self.schedule_retry(retry_after_ms.unwrap_or(1000).max(50));
                Vec::new()
            }
            // A send the server could not store now: the heartbeat sends it again, so there is
            // nothing for the user to do (it stays shown as sending).
            ServerMsg::Error {
                code: ErrorCode::Internal,
                ..
            } if self.pending.iter().any(|p| !p.acked) => Vec::new(),
            ServerMsg::Error { code, .. } => {
                // A refused name that was never confirmed goes back to the form.
                if matches!(code, ErrorCode::NameTaken | ErrorCode::InvalidName)
                    && self.name.is_none()
                {
                    self.wanted_name = None;
                }
                self.error = Some(code);
                Vec::new()
            }
            _ => Vec::new(),
        }
    }

    /// The oldest message shown.
    fn oldest(&self) -> Option<&ChatMessage> {
        self.items.iter().find_map(|item| match item {
            Item::Message(m) => Some(m),
            _ => None,
        })
    }

    /// Whether what is shown starts at the room's first stored message.
    pub fn history_begins(&self) -> bool {
        self.history_start || self.oldest().is_some_and(|m| m.seq == 1)
    }

    /// Asks for the page of messages before the oldest shown, unless one is on its way or there
    /// is none.
    pub fn older(&mut self) -> Vec<ClientMsg> {
        if !self.joined || self.loading_older || self.history_begins() {
            return Vec::new();
        }
        self.loading_older = true;
        self.reading_back = true;
        vec![ClientMsg::History {
            room: self.room.clone(),
            before: self.oldest().map(|m| Position {
                epoch: m.epoch.clone(),
                seq: m.seq,
            }),
            limit: Some(HISTORY_PAGE),
        }]
    }

    /// What the top of the list says: how far back it goes, and whether more can be asked for.
    pub fn edge(&self) -> Edge {
        match self.oldest() {
            None => Edge::Empty,
            Some(m) if m.seq == 1 => Edge::Begins,
            Some(_) if self.history_start => Edge::Trimmed,
            Some(_) if self.loading_older => Edge::Loading,
            Some(_) => Edge::More,
        }
    }

    /// The reader scrolled up: nothing shown is let go until they are back at the newest (a
    /// trimmed top would move what they read).
    pub fn hold_items(&mut self) {
        self.reading_back = true;
    }

    /// Whether the message with this key (`Item::key`) can still be paged to: it is of the
    /// room's current numbering.
    pub fn may_page_to(&self, key: &str) -> bool {
        let epoch = key
            .strip_prefix("m-")
            .and_then(|rest| rest.rsplit_once('-'))
            .map(|(epoch, _)| epoch);
        epoch.is_some() && epoch == self.epoch.as_deref()
    }

    /// Pages read back are being kept (see [`Model::at_newest`]).
    pub fn reading_back(&self) -> bool {
        self.reading_back
    }

    /// Where a pending message is (see [`SendState`]).
    pub fn send_state(&self, p: &Pending) -> SendState {
        if p.acked {
            SendState::Sending
        } else if !self.can_send() || p.due {
            SendState::Queued
        } else if p.tries >= TRIES_BEFORE_FAILED {
            SendState::Failed
        } else {
            SendState::Sending
        }
    }

    /// The user asks to try now: the link at once if it is down, and every message not yet
    /// stored.
    pub fn try_now(&mut self) -> Vec<ClientMsg> {
        if self.status != Status::Online {
            self.wake = true;
            return Vec::new();
        }
        self.resend_pending(None)
    }

    /// The session of the browser's person (a reload's, another tab's): resumed on connect,
    /// so that the room sees no left/joined and the name stays ours.
    pub fn resume_session(&mut self, session: String) {
        self.session.get_or_insert(session);
    }

    /// The session to resume after a reload.
    pub fn session(&self) -> Option<&str> {
        self.session.as_deref()
    }

    /// The operator token as this tab is to keep it (for a reload): the token once the server
    /// took it, "" once there is none (never given, or refused), nothing while it is asked.
    pub fn operator_token_to_keep(&self) -> Option<&str> {
        match (&self.operator_token, self.moderator) {
            (None, _) => Some(""),
            (Some(token), true) => Some(token),
            (Some(_), false) => None,
        }
    }

    /// The operator token this tab kept from before a reload: asked for again on connect.
    pub fn restore_operator_token(&mut self, token: String) {
        if self.operator_token.is_none() && !token.is_empty() {
            self.operator_token = Some(token);
        }
    }

    /// The session, once it holds a name: the one the browser's other tabs are to resume.
    pub fn named_session(&self) -> Option<&str> {
        self.name.as_ref().and(self.session.as_deref())
    }

    /// Another tab of this browser took a name in `session` (both as the browser now keeps
    /// them). A tab without a name becomes that person (it resumes the session, whose name the
    /// answer brings); a tab that is that person takes the name too, if it was renamed there. A
    /// tab that is another person stays who it is.
    pub fn other_tab(&mut self, session: Option<String>, name: Option<String>) -> Vec<ClientMsg> {
        let Some(session) = session else {
            return Vec::new();
        };
        if self.name.is_none() {
            if self.session.as_deref() == Some(session.as_str()) {
                return Vec::new();
            }
            self.wanted_name = None;
            if self.status != Status::Online {
                // The next connection resumes it, and claims its name.
                self.session = Some(session);
                self.wanted_name = name;
                return Vec::new();
            }
            // Ours once the server says `resumed`; until then the tab stays what it was.
            return vec![ClientMsg::Resume { session }];
        }
        match name {
            Some(name)
                if self.session.as_deref() == Some(session.as_str())
                    && self.name.as_deref() != Some(name.as_str()) =>
            {
                self.request_name(&name)
            }
            _ => Vec::new(),
        }
    }

    /// What was written and not yet stored, oldest first, as `(client_id, text)`: kept by the
    /// tab across a reload and sent again after it with the same ids (stored once).
    pub fn outbox(&self) -> Vec<(String, String)> {
        self.pending
            .iter()
            .map(|p| (p.client_id.clone(), p.text.clone()))
            .collect()
    }

    /// Puts back what a reload interrupted (see [`Model::outbox`]); it goes out once the room
    /// is joined, before anything written since.
    pub fn restore_outbox(&mut self, saved: Vec<(String, String)>) {
        let restored = saved
            .into_iter()
            .filter(|(id, _)| !self.pending.iter().any(|p| &p.client_id == id))
            .map(|(client_id, text)| Pending {
                client_id,
                text,
                sent_tick: self.ticks,
                acked: false,
                due: true,
                tries: 0,
            });
        let mut pending: Vec<Pending> = restored.collect();
        pending.append(&mut self.pending);
        self.pending = pending;
    }

    /// The tab was hidden (`true`) or shown again.
    pub fn set_away(&mut self, away: bool) {
        if away && !self.away {
            self.read_marker = self.epoch.clone().map(|e| (e, self.last_seq));
        }
        // Before the room is ours, its first `joined` says what was there.
        if self.joined && (!away || self.seen.is_none()) {
            self.seen = Some((self.epoch.clone().unwrap_or_default(), self.last_seq));
        }
        self.away = away;
        self.unread = 0;
        self.unread_mentions = 0;
    }

    /// Whether `m` mentions this page's person (and is not theirs).
    pub fn mentions_me(&self, m: &ChatMessage) -> bool {
        mention::names_reader(&m.text, &m.from, self.name.as_deref())
    }

    /// The first message that came while the reader was away, if it is shown.
    pub fn first_unread(&self) -> Option<u64> {
        let (epoch, seq) = self.read_marker.as_ref()?;
        self.items.iter().find_map(|item| match item {
            Item::Message(m) if &m.epoch == epoch && m.seq > *seq && m.is_said() => Some(m.seq),
            _ => None,
        })
    }

    /// Messages from others after `seq` (in the current epoch): what a reader scrolled up has
    /// not seen yet.
    pub fn newer_than(&self, seq: u64) -> usize {
        self.items
            .iter()
            .rev()
            .map_while(|item| match item {
                Item::Message(m) if m.seq > seq && Some(&m.epoch) == self.epoch.as_ref() => {
                    Some(usize::from(!self.is_mine(m) && m.is_said()))
                }
                Item::Message(_) => None,
                _ => Some(0),
            })
            .sum()
    }

    /// The changes (edits and deletes) among the items, by the `seq` of the message each
    /// changes: the latest edit, or the delete whatever came after it.
    pub fn changes(&self) -> HashMap<u64, Changed> {
        let mut changes: HashMap<u64, Changed> = HashMap::new();
        for item in &self.items {
            if let Item::Message(m) = item
                && let Some(target) = m.edits
                && Some(&m.epoch) == self.epoch.as_ref()
            {
                let was_deleted = changes.get(&target).is_some_and(|c| c.deleted);
                if !was_deleted {
                    changes.insert(
                        target,
                        Changed {
                            text: m.text.clone(),
                            deleted: m.deleted,
                            by_moderator: m.moderation.is_some(),
                        },
                    );
                }
            }
        }
        changes
    }

    /// The text of message `seq` as shown now (after its edits), if shown.
    pub fn text_of(&self, seq: u64) -> Option<String> {
        if let Some(changed) = self.changes().remove(&seq) {
            return Some(changed.text);
        }
        self.items.iter().find_map(|item| match item {
            Item::Message(m) if m.seq == seq && m.is_said() => Some(m.text.clone()),
            _ => None,
        })
    }

    /// Whether this page may offer to edit or delete `m` at `now_ms` (wall clock): ours, a
    /// message (not a change), and, as far as this clock tells, within the server's window.
    pub fn may_change(&self, m: &ChatMessage, now_ms: u64) -> bool {
        self.is_mine(m)
            && m.is_said()
            && self.can_send()
            && now_ms.saturating_sub(m.ts) < self.edit_window_ms
    }

    /// The names to offer after `@prefix`: the room's listed members, and in a room bigger
    /// than its list, those the server found for the prefix (or a shorter one).
    pub fn offer(&self, prefix: &str) -> Vec<String> {
        let me = self.name.as_deref();
        let found = match &self.found_for {
            Some(asked) if prefix.to_lowercase().starts_with(&asked.to_lowercase()) => {
                &self.found[..]
            }
            _ => &[],
        };
        let mut names = mention::suggest(&self.members, prefix, me);
        for name in mention::suggest(found, prefix, me) {
            if names.len() < mention::SUGGEST_MAX && !names.contains(&name) {
                names.push(name);
            }
        }
        names
    }

    /// The names the server found for the last prefix asked about.
    pub fn found(&self) -> &[String] {
        &self.found
    }

    /// In a room bigger than its member list, asks the server for the names that begin with
    /// `prefix` (once per prefix, unless what it found already covers it).
    pub fn look_up(&mut self, prefix: &str) -> Vec<ClientMsg> {
        let partial = self.member_count > self.members.len();
        let covered = self.found_for.as_deref().is_some_and(|asked| {
            prefix.to_lowercase().starts_with(&asked.to_lowercase())
                && self.found.len() < mention::SUGGEST_MAX
        });
        let pending = self.asked.back().is_some_and(|last| last == prefix);
        if !partial || prefix.is_empty() || covered || pending || !self.can_send() {
            return Vec::new();
        }
        // Answers lost with a dropped link are not waited for.
        if self.asked.len() >= ASKED_MAX {
            self.asked.pop_front();
        }
        self.asked.push_back(prefix.to_owned());
        vec![ClientMsg::Members {
            room: self.room.clone(),
            after: None,
            prefix: Some(prefix.to_owned()),
            limit: Some(mention::SUGGEST_MAX as u32),
        }]
    }

    /// Whether the reader may delete `m` now: its own within the window, anyone's as a
    /// moderator.
    pub fn may_delete(&self, m: &ChatMessage, now_ms: u64) -> bool {
        self.may_change(m, now_ms) || (self.moderator && m.is_said() && self.can_send())
    }

    /// The reader starts editing its message `seq` (the composer takes its text).
    pub fn start_edit(&mut self, seq: u64) -> Vec<ClientMsg> {
        self.editing = Some(seq);
        Vec::new()
    }

    pub fn cancel_edit(&mut self) -> Vec<ClientMsg> {
        self.editing = None;
        Vec::new()
    }

    /// Saves the message being edited with `text`: the frame to send. None, and still editing,
    /// when the text is empty (deleting is its own action) or nothing can be sent now.
    pub fn save_edit(&mut self, text: &str) -> Vec<ClientMsg> {
        // Kept in the composer (still editing) while it cannot go: offline, or emptied.
        if text.trim().is_empty() || !self.can_send() {
            return Vec::new();
        }
        let (Some(seq), Some(epoch)) = (self.editing.take(), self.epoch.clone()) else {
            return Vec::new();
        };
        vec![ClientMsg::Edit {
            room: self.room.clone(),
            epoch,
            seq,
            text: text.to_owned(),
            client_id: None,
        }]
    }

    /// Deletes the reader's message `seq`.
    pub fn delete(&mut self, seq: u64) -> Vec<ClientMsg> {
        if self.editing == Some(seq) {
            self.editing = None;
        }
        match (&self.epoch, self.can_send()) {
            (Some(epoch), true) => vec![ClientMsg::Delete {
                room: self.room.clone(),
                epoch: epoch.clone(),
                seq,
                client_id: None,
            }],
            _ => Vec::new(),
        }
    }

    /// Whether we wrote `m` (under the name this connection holds).
    fn is_mine(&self, m: &ChatMessage) -> bool {
        self.name.as_deref() == Some(m.from.as_str())
    }

    /// The `seq` of the newest message shown.
    pub fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// The reader is back at the newest: what was kept for them past [`MAX_ITEMS`] goes.
    pub fn at_newest(&mut self) {
        if !self.reading_back {
            return;
        }
        self.reading_back = false;
        self.trim();
    }

    /// Puts an older page above what is shown (skipping anything already there). A note of
    /// missed messages at the top goes: the page joins on to what follows it.
    fn prepend(&mut self, messages: Vec<ChatMessage>) {
        if !messages.is_empty() && matches!(self.items.first(), Some(Item::Gap { .. })) {
            self.items.remove(0);
        }
        let first = self.oldest().map(|m| m.seq);
        let older = messages
            .into_iter()
            .filter(|m| first.is_none_or(|first| m.seq < first))
            .map(Item::Message);
        self.items.splice(0..0, older);
        if first.is_none()
            && let Some(Item::Message(m)) = self.items.last()
        {
            // Nothing was shown: this page is where the stream is.
            self.epoch = Some(m.epoch.clone());
            self.last_seq = self.last_seq.max(m.seq);
        }
    }

    /// How many members the room has, as far as this page knows.
    pub fn member_total(&self) -> usize {
        self.member_count.max(self.members.len())
    }

    /// Whether `name` was not listed yet.
    fn add_member(&mut self, name: &str) -> bool {
        if self.members.iter().any(|m| m == name) {
            return false;
        }
        self.members.push(name.to_owned());
        sort_members(&mut self.members);
        true
    }

    /// A list from the server, and the room's count (an older server sends none: 0).
    fn set_members(&mut self, members: Vec<String>, count: u32) {
        self.member_count = (count as usize).max(members.len());
        self.members = members;
    }

    /// Adds a message unless it is already shown; a new epoch means the history restarted.
    /// Whether `m` is news to the reader: said by someone else after the last message they had
    /// in view (in another epoch: the room started again since).
    fn is_news(&self, m: &ChatMessage) -> bool {
        !self.is_mine(m)
            && m.is_said()
            && self
                .seen
                .as_ref()
                .is_some_and(|(epoch, seq)| *epoch != m.epoch || m.seq > *seq)
    }

    fn push_message(&mut self, m: ChatMessage) {
        // Our own message is stored, whether or not its `ack` made it back.
        self.settle(m.client_id.as_deref());
        if self.epoch.as_deref() != Some(m.epoch.as_str()) {
            self.epoch = Some(m.epoch.clone());
            self.last_seq = 0;
        } else if m.seq <= self.last_seq {
            return;
        }
        self.last_seq = m.seq;
        if !self.away {
            self.seen = Some((m.epoch.clone(), m.seq));
        } else if self.is_news(&m) {
            self.unread += 1;
            let mentioned = self.mentions_me(&m);
            self.unread_mentions += usize::from(mentioned);
            let notify = !self.quiet
                && match self.notify {
                    Notify::All => true,
                    Notify::Mentions => mentioned,
                    Notify::Nothing => false,
                };
            if notify && self.to_notify.len() < NOTIFY_MAX {
                self.to_notify.push((m.from.clone(), m.text.clone()));
            }
        }
        self.push(Item::Message(m));
    }

    /// Shows a notice, folded into the one before it when that is of the same kind (renames are
    /// always shown alone). The folded item gets a new key, so a keyed list redraws it.
    fn notice(&mut self, kind: NoticeKind, name: String, old_name: Option<String>) {
        let mut names = match self.items.last() {
            Some(Item::Notice { kind: last, .. })
                if *last == kind && kind != NoticeKind::Renamed =>
            {
                match self.items.pop() {
                    Some(Item::Notice { names, .. }) => names,
                    _ => Vec::new(),
                }
            }
            _ => Vec::new(),
        };
        names.push(name);
        self.next_notice += 1;
        self.push(Item::Notice {
            key: self.next_notice,
            kind,
            names,
            old_name,
        });
    }

    fn push(&mut self, item: Item) {
        self.items.push(item);
        if !self.reading_back {
            self.trim();
        }
    }

    /// Lets the oldest items go past [`MAX_ITEMS`]; they can be paged in again.
    fn trim(&mut self) {
        if self.items.len() > MAX_ITEMS {
            let excess = self.items.len() - MAX_ITEMS;
            self.items.drain(..excess);
            self.history_start = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::typing::Typing;

    /// The server's refusal with `code`, of nothing in particular.
    fn refused(code: ErrorCode) -> ServerMsg {
        ServerMsg::Error {
            code,
            message: String::new(),
            retry_after_ms: None,
            room: None,
        }
    }

    fn welcome() -> ServerMsg {
        ServerMsg::Welcome {
            session: "s".into(),
            node: "n".into(),
            protocol: 1,
            limits: crate::protocol::Limits {
                max_name_chars: 32,
                max_text_chars: 4000,
                max_frame_bytes: 65536,
                max_rooms_per_connection: 16,
                sends: None,
                bytes: None,
                edit_window_ms: 3_600_000,
            },
            ping_interval_ms: 1000,
            name: None,
            moderator: false,
        }
    }

    /// Named and in the lobby on a server that limits sends.
    fn online_with_limits(sends: Option<Rate>, bytes: Option<Rate>) -> Model {
        let mut m = Model::new("lobby", Some("ann".into()));
        let mut w = welcome();
        if let ServerMsg::Welcome { limits, .. } = &mut w {
            (limits.sends, limits.bytes) = (sends, bytes);
        }
        m.apply(w);
        m.apply(ServerMsg::NameSet { name: "ann".into() });
        m.apply(empty_lobby());
        m
    }
    #[test]
    fn slash_commands_become_moderation_frames_and_holds_keep_what_is_written() {
        let mut m = online_with_limits(None, None);
        m.set_clock(1_000.0);
        let frames = |m: &mut Model, text: &str| m.compose(text, "c".into()).unwrap_or_default();
        assert_eq!(
            frames(&mut m, "/mute @Ann Lee 3"),
            [ClientMsg::Mute {
                room: "lobby".into(),
                name: "Ann Lee".into(),
                seconds: 180
            }]
        );
        assert_eq!(
            frames(&mut m, "/kick bo"),
            [ClientMsg::Kick {
                room: "lobby".into(),
                name: "bo".into(),
                seconds: Some(300)
            }]
        );
        assert_eq!(
            frames(&mut m, "/slow off"),
            [ClientMsg::SlowMode {
                room: "lobby".into(),
                seconds: 0
            }]
        );
        // Not a command: a message.
        assert!(matches!(
            &frames(&mut m, "/shrug")[..],
            [ClientMsg::Send { .. }]
        ));
        // The operator token is asked with again on the next link.
        frames(&mut m, "/mod sesame");
        assert_eq!(
            m.operator_token_to_keep(),
            None,
            "not kept before it is taken"
        );
        m.apply(ServerMsg::Moderator);
        assert_eq!(m.operator_token_to_keep(), Some("sesame"));
        let again = m.apply(welcome_as("s2"));
        assert!(again.contains(&ClientMsg::Moderate {
            token: "sesame".into()
        }));
        // A token kept over a reload is offered; refused, it is dropped, here and in the tab.
        let mut m = Model::new("lobby", Some("ann".into()));
        m.restore_operator_token("stale".into());
        assert!(m.apply(welcome()).contains(&ClientMsg::Moderate {
            token: "stale".into()
        }));
        m.apply(refused(ErrorCode::NotModerator));
        assert_eq!(m.operator_token_to_keep(), Some(""));
        assert!(
            !m.apply(welcome_as("s3"))
                .iter()
                .any(|f| matches!(f, ClientMsg::Moderate { .. }))
        );

        // Slow mode: after our message is stored, the next waits its turn, then goes.
        let mut m = online_with_limits(None, None);
        m.set_clock(1_000.0);
        m.apply(ServerMsg::SlowMode {
            room: "lobby".into(),
            seconds: 30,
        });
        let sent = frames(&mut m, "one");
        assert_eq!(sent.len(), 1);
        m.apply(ServerMsg::Ack {
            room: "lobby".into(),
            client_id: Some("c".into()),
            seq: 1,
        });
        assert_eq!(m.held(), Some((Hold::Slow, 30)));
        assert!(m.can_compose(), "slow mode still lets one write");
        assert!(m.compose("two", "c2".into()).is_some_and(|f| f.is_empty()));
        m.set_clock(31_500.0);
        assert_eq!(m.held(), None);
        assert!(matches!(&m.retry_now()[..], [ClientMsg::Send { .. }]));

        // A mute of us closes the composer until it ends, or is lifted.
        let mut muted = msg(2, "e");
        muted.from = "mod".into();
        muted.text = String::new();
        muted.moderation = Some(crate::protocol::Moderation {
            action: ModAction::Mute,
            name: Some("ann".into()),
            seconds: 60,
        });
        m.apply(ServerMsg::Message(muted.clone()));
        assert_eq!(m.held(), Some((Hold::Muted, 60)));
        assert!(!m.can_compose());
        muted.seq = 3;
        if let Some(md) = muted.moderation.as_mut() {
            md.seconds = 0;
        }
        m.apply(ServerMsg::Message(muted));
        assert_eq!(m.held(), None);
        assert!(m.can_compose());
    }

    fn msg(seq: u64, epoch: &str) -> ChatMessage {
        ChatMessage {
            room: "lobby".into(),
            seq,
            epoch: epoch.into(),
            from: "ann".into(),
            text: format!("m{seq}"),
            ts: 0,
            client_id: None,
            edits: None,
            deleted: false,
            moderation: None,
            author: None,
        }
    }
    fn seqs(m: &Model) -> Vec<u64> {
        m.items
            .iter()
            .filter_map(|i| match i {
                Item::Message(m) => Some(m.seq),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_remembered_name_is_claimed_and_the_room_joined_on_connect() {
        let mut m = Model::new("lobby", Some("ann".into()));
        // Both at once: the join is taken after the claim, without waiting for its answer.
        assert_eq!(
            m.apply(welcome()),
            vec![ClientMsg::SetName { name: "ann".into() }, joins("lobby")]
        );
        assert!(!m.can_send());
        assert_eq!(
            m.apply(ServerMsg::NameSet { name: "ann".into() }),
            vec![],
            "the room was asked for already"
        );
        assert!(!m.can_send(), "a member once the server says so");
        m.apply(ServerMsg::Joined {
            room: "lobby".into(),
            members: vec!["ann".into()],
            count: 0,
            history: vec![msg(1, "e")],
            recovered: None,
        });
        assert!(m.can_send());
        assert_eq!(seqs(&m), [1]);
    }

    #[test]
    fn a_name_refused_on_connect_leaves_a_reader_who_joins_once_it_is_granted() {
        let mut m = Model::new("lobby", Some("ann".into()));
        m.apply(welcome());
        m.apply(refused(ErrorCode::NameTaken));
        // The join behind the claim came in without the name: the room is read.
        m.apply(ServerMsg::Joined {
            room: "lobby".into(),
            members: vec!["ann".into()],
            count: 1,
            history: vec![msg(1, "e")],
            recovered: None,
        });
        assert!(m.reading && !m.can_send());
        m.request_name("bo");
        assert_eq!(
            m.apply(ServerMsg::NameSet { name: "bo".into() }),
            vec![rejoin_from(1)],
            "from reading to taking part"
        );
    }

    #[test]
    fn without_a_name_the_room_is_read_and_picking_one_joins_it() {
        let mut m = Model::new("lobby", None);
        // Read at once: what is said and who is there.
        assert_eq!(m.apply(welcome()), vec![joins("lobby")]);
        m.apply(ServerMsg::Joined {
            room: "lobby".into(),
            members: vec!["ann".into()],
            count: 1,
            history: vec![msg(1, "e"), msg(2, "e")],
            recovered: None,
        });
        assert!(m.reading);
        assert_eq!((seqs(&m), m.member_total()), (vec![1, 2], 1));
        // Nothing to say without a name.
        assert_eq!(m.compose("hi", "c".into()), None);
        assert!(!m.can_send());
        assert_eq!(
            m.request_name("  bo "),
            vec![ClientMsg::SetName { name: "bo".into() }]
        );
        // Named: joined as a member, from where the reading got to; no sending before that.
        let asked = m.apply(ServerMsg::NameSet { name: "bo".into() });
        assert!(!m.can_send());
        assert_eq!(asked, vec![rejoin_from(2)]);
        m.apply(ServerMsg::Joined {
            room: "lobby".into(),
            members: vec!["ann".into(), "bo".into()],
            count: 2,
            history: vec![],
            recovered: Some(true),
        });
        assert!(!m.reading && m.can_send());
    }

    #[test]
    fn a_taken_name_returns_the_user_to_the_form() {
        let mut m = Model::new("lobby", Some("ann".into()));
        m.apply(welcome());
        m.apply(refused(ErrorCode::NameTaken));
        assert_eq!(m.wanted_name, None);
        assert_eq!(m.error, Some(ErrorCode::NameTaken));
    }

    #[test]
    fn after_a_reconnect_our_own_name_is_reclaimed_patiently_before_giving_up() {
        let mut m = Model::new("lobby", Some("ann".into()));
        m.apply(welcome());
        m.apply(ServerMsg::NameSet { name: "ann".into() });
        m.disconnected();
        m.apply(welcome());
        let taken = || refused(ErrorCode::NameTaken);
        let mut delays = Vec::new();
        for _ in 0..RECLAIM_TRIES {
            m.apply(taken());
            delays.push(m.retry_name_in_ms.take().expect("a retry is scheduled"));
            assert_eq!(m.error, None, "no error shown while reclaiming");
            assert_eq!(m.wanted_name.as_deref(), Some("ann"));
        }
        assert!(delays.windows(2).all(|w| w[0] < w[1]), "{delays:?}");
        // Out of patience: the user is told, and asked for a name.
        m.apply(taken());
        assert_eq!(m.retry_name_in_ms, None);
        assert_eq!(m.error, Some(ErrorCode::NameTaken));
        assert_eq!(m.wanted_name, None);
    }

    fn welcome_as(session: &str) -> ServerMsg {
        match welcome() {
            ServerMsg::Welcome {
                node,
                protocol,
                limits,
                ping_interval_ms,
                ..
            } => ServerMsg::Welcome {
                session: session.into(),
                node,
                protocol,
                limits,
                ping_interval_ms,
                name: None,
                moderator: false,
            },
            _ => unreachable!(),
        }
    }

    #[test]
    fn a_reconnect_resumes_the_previous_session_before_claiming_the_name() {
        let mut m = Model::new("lobby", Some("ann".into()));
        assert_eq!(
            m.apply(welcome_as("s1"))[0],
            ClientMsg::SetName { name: "ann".into() },
            "nothing to resume on the first connection"
        );
        m.apply(ServerMsg::NameSet { name: "ann".into() });
        m.disconnected();
        assert_eq!(
            m.apply(welcome_as("s2")),
            vec![
                ClientMsg::Resume {
                    session: "s1".into()
                },
                ClientMsg::SetName { name: "ann".into() },
                joins("lobby")
            ]
        );
        m.apply(ServerMsg::Resumed {
            session: "s1".into(),
            name: Some("ann".into()),
        });
        m.disconnected();
        // Still s1: the resumed session is the one to carry on with.
        assert_eq!(
            m.apply(welcome_as("s3"))[0],
            ClientMsg::Resume {
                session: "s1".into()
            }
        );
        // A session that expired is no error worth showing.
        m.apply(refused(ErrorCode::UnknownSession));
        assert_eq!(m.error, None);
        m.disconnected();
        assert_eq!(
            m.apply(welcome_as("s4"))[0],
            ClientMsg::Resume {
                session: "s3".into()
            }
        );
    }

    #[test]
    fn a_tab_without_a_name_becomes_the_person_another_tab_named() {
        let mut m = Model::new("lobby", None);
        m.apply(welcome_as("mine"));
        assert_eq!(m.named_session(), None, "no name: nothing to share");
        let other = || (Some("s1".to_owned()), Some("ann".to_owned()));
        let (session, name) = other();
        assert_eq!(
            m.other_tab(session, name),
            vec![ClientMsg::Resume {
                session: "s1".into()
            }]
        );
        assert_eq!(
            m.session(),
            Some("mine"),
            "not ours until the server says so"
        );
        assert_eq!(
            m.apply(ServerMsg::Resumed {
                session: "s1".into(),
                name: Some("ann".into()),
            }),
            vec![ClientMsg::SetName { name: "ann".into() }]
        );
        m.apply(ServerMsg::NameSet { name: "ann".into() });
        assert_eq!(m.named_session(), Some("s1"));
        // Nothing new: nothing to do.
        let (session, name) = other();
        assert_eq!(m.other_tab(session, name), vec![]);
        // Renamed in the other tab: here too.
        assert_eq!(
            m.other_tab(Some("s1".into()), Some("bo".into())),
            vec![ClientMsg::SetName { name: "bo".into() }]
        );
        // Another person's tab leaves this one as it is.
        assert_eq!(m.other_tab(Some("s9".into()), Some("cy".into())), vec![]);
    }

    #[test]
    fn a_tab_offline_without_a_name_resumes_another_tab_s_person_on_its_next_connection() {
        let mut m = Model::new("lobby", None);
        m.apply(welcome_as("mine"));
        m.disconnected();
        assert_eq!(m.other_tab(Some("s1".into()), Some("ann".into())), vec![]);
        assert_eq!(
            m.apply(welcome_as("new")),
            vec![
                ClientMsg::Resume {
                    session: "s1".into()
                },
                ClientMsg::SetName { name: "ann".into() },
                joins("lobby")
            ]
        );
    }

    #[test]
    fn a_name_taken_on_first_try_is_not_retried() {
        let mut m = Model::new("lobby", Some("ann".into()));
        m.apply(welcome());
        m.apply(refused(ErrorCode::NameTaken));
        assert_eq!(m.retry_name_in_ms, None);
    }

    fn online_in_lobby(m: &mut Model) {
        m.apply(welcome());
        m.apply(ServerMsg::NameSet { name: "ann".into() });
        m.apply(ServerMsg::Joined {
            room: "lobby".into(),
            members: vec![],
            count: 0,
            history: vec![msg(1, "e"), msg(2, "e")],
            recovered: None,
        });
    }

    /// The link dropped and came back: welcome, name, and the `joined` the server answers with.
    fn rejoin(m: &mut Model, history: Vec<ChatMessage>, recovered: Option<bool>) -> Vec<ClientMsg> {
        m.disconnected();
        m.apply(welcome());
        m.apply(ServerMsg::NameSet { name: "ann".into() });
        m.apply(ServerMsg::Joined {
            room: "lobby".into(),
            members: vec![],
            count: 0,
            history,
            recovered,
        })
    }

    #[test]
    fn offline_the_status_says_so_and_the_composer_keeps_taking_messages_that_go_out_after() {
        let mut m = Model::new("lobby", Some("ann".into()));
        // Before any name was ours, there is nothing to compose for.
        assert!(!m.can_compose());
        online_in_lobby(&mut m);
        m.set_network(false);
        assert_eq!(m.status, Status::Offline);
        assert!(!m.can_send() && m.can_compose());
        assert_eq!(
            m.compose("typed offline", "c1".into()),
            Some(vec![]),
            "waits"
        );
        assert_eq!(m.pending.len(), 1);
        // The client closes the link; it stays offline, not reconnecting.
        m.disconnected();
        assert_eq!(m.status, Status::Offline);
        assert!(m.can_compose(), "the name is still ours to claim again");
        // The network is back: try now.
        m.set_network(true);
        assert_eq!((m.status, m.wake), (Status::Reconnecting, true));
        assert_eq!(m.drops, 1, "the link open across the gap is made again");
        let sent = rejoin(&mut m, vec![msg(1, "e"), msg(2, "e")], Some(true));
        assert!(
            sent.iter()
                .any(|f| matches!(f, ClientMsg::Send { text, .. } if text == "typed offline")),
            "{sent:?}"
        );
        assert_eq!(m.status, Status::Online);
    }

    #[test]
    fn messages_already_shown_are_not_shown_twice_after_a_rejoin() {
        let mut m = Model::new("lobby", Some("ann".into()));
        online_in_lobby(&mut m);
        m.apply(ServerMsg::Message(msg(3, "e")));
        m.disconnected();
        assert!(!m.can_send());
        assert_eq!(m.apply(welcome()).last(), Some(&rejoin_from(3)));
        m.apply(ServerMsg::NameSet { name: "ann".into() });
        m.apply(ServerMsg::Joined {
            room: "lobby".into(),
            members: vec![],
            count: 0,
            history: vec![msg(2, "e"), msg(3, "e"), msg(4, "e")],
            recovered: None,
        });
        assert_eq!(seqs(&m), [1, 2, 3, 4]);
    }

    #[test]
    fn after_a_reconnect_the_room_is_joined_since_the_last_message_shown() {
        let mut m = Model::new("lobby", Some("ann".into()));
        online_in_lobby(&mut m);
        m.apply(ServerMsg::Message(msg(3, "e")));
        m.disconnected();
        assert_eq!(
            m.apply(welcome())[1..],
            [ClientMsg::SetName { name: "ann".into() }, rejoin_from(3)]
        );
        assert_eq!(m.apply(ServerMsg::NameSet { name: "ann".into() }), vec![]);
        m.apply(ServerMsg::Joined {
            room: "lobby".into(),
            members: vec![],
            count: 0,
            history: vec![msg(4, "e"), msg(5, "e")],
            recovered: Some(true),
        });
        assert_eq!(seqs(&m), [1, 2, 3, 4, 5]);
        assert!(!m.items.iter().any(|i| matches!(i, Item::Gap { .. })));
    }

    #[test]
    fn an_incomplete_recovery_is_shown_and_the_recent_history_follows_it() {
        let mut m = Model::new("lobby", Some("ann".into()));
        online_in_lobby(&mut m);
        rejoin(&mut m, vec![msg(40, "e"), msg(41, "e")], Some(false));
        assert!(matches!(m.items[0], Item::Gap { .. }), "{:?}", m.items);
        assert_eq!(seqs(&m), [40, 41], "shown from the window");
        // Paging back from the window fills the hole, and the note goes.
        assert!(matches!(
            &m.older()[..],
            [ClientMsg::History {
                before: Some(Position { seq: 40, .. }),
                ..
            }]
        ));
        m.apply(page((3..=39).map(|s| msg(s, "e")).collect(), true));
        assert_eq!(seqs(&m), (3..=41).collect::<Vec<_>>());
        assert!(!m.items.iter().any(|i| matches!(i, Item::Gap { .. })));
        // The room's numbering restarted (its store lost its data): the new epoch is shown.
        rejoin(&mut m, vec![msg(1, "f")], Some(false));
        assert_eq!(seqs(&m), [1]);
    }

    #[test]
    fn a_place_from_another_life_of_the_room_is_not_paged_to() {
        let mut m = online_with_limits(None, None);
        rejoin(&mut m, (51..=60).map(|s| msg(s, "e")).collect(), None);
        let key = Item::Message(msg(7, "e")).key();
        assert!(m.may_page_to(&key));
        assert!(!m.may_page_to(&Item::Message(msg(7, "old")).key()));
        assert!(!m.may_page_to("n-3"));
    }

    #[test]
    fn a_reader_s_window_after_a_hole_starts_again_with_a_note() {
        let mut m = Model::new("lobby", None);
        m.apply(welcome());
        let read = |m: &mut Model, history: Vec<ChatMessage>| {
            m.apply(ServerMsg::Joined {
                room: "lobby".into(),
                members: vec![],
                count: 0,
                history,
                recovered: None,
            })
        };
        read(&mut m, (1..=5).map(|s| msg(s, "e")).collect());
        // Reconnected after 60 more: the window is 16..65, and 6..15 are not shown.
        m.disconnected();
        m.apply(welcome());
        read(&mut m, (16..=65).map(|s| msg(s, "e")).collect());
        assert!(matches!(m.items[0], Item::Gap { .. }));
        assert_eq!(seqs(&m), (16..=65).collect::<Vec<_>>());
        // A window that goes on from what is shown is simply added.
        m.disconnected();
        m.apply(welcome());
        read(&mut m, (60..=70).map(|s| msg(s, "e")).collect());
        assert_eq!(seqs(&m), (16..=70).collect::<Vec<_>>());
    }

    #[test]
    fn an_unacknowledged_message_is_sent_again_after_a_reconnect_with_its_client_id() {
        let mut m = Model::new("lobby", Some("ann".into()));
        online_in_lobby(&mut m);
        let first = m.compose("hello", "c1".into()).expect("sent").remove(0);
        m.compose("again", "c2".into()).expect("sent");
        m.apply(ServerMsg::Ack {
            room: "lobby".into(),
            client_id: Some("c2".into()),
            seq: 3,
        });
        assert_eq!(m.pending.len(), 2, "c2 is shown until it arrives");
        let mut c2 = msg(3, "e");
        c2.client_id = Some("c2".into());
        m.apply(ServerMsg::Message(c2));
        assert_eq!(m.pending.len(), 1, "c2 arrived");
        let resent = rejoin(&mut m, vec![], Some(true));
        assert_eq!(resent, vec![first], "the same frame, the same client_id");
        // Its delivery settles it, even before the ack.
        let mut mine = msg(4, "e");
        mine.client_id = Some("c1".into());
        m.apply(ServerMsg::Message(mine));
        assert!(m.pending.is_empty());
    }

    #[test]
    fn a_message_the_server_could_not_store_is_sent_again_by_the_heartbeat() {
        let mut m = Model::new("lobby", Some("ann".into()));
        online_in_lobby(&mut m);
        let frame = m.compose("hello", "c1".into()).expect("sent").remove(0);
        // The server refused it for now (e.g. Redis was restarting).
        m.apply(refused(ErrorCode::Internal));
        assert_eq!(m.error, None, "nothing for the user to do: it is re-sent");
        assert_eq!(m.tick(), vec![ClientMsg::Ping], "one tick is not yet late");
        assert_eq!(m.tick(), vec![ClientMsg::Ping, frame]);
        m.apply(ServerMsg::Ack {
            room: "lobby".into(),
            client_id: Some("c1".into()),
            seq: 3,
        });
        assert_eq!(m.tick(), vec![ClientMsg::Ping]);
        assert_eq!(
            m.tick(),
            vec![ClientMsg::Ping],
            "acknowledged: not sent again"
        );
    }

    #[test]
    fn a_message_refused_for_speed_is_noted_until_stored_and_sent_again_once_the_wait_is_over() {
        let mut m = Model::new("lobby", Some("ann".into()));
        online_in_lobby(&mut m);
        let first = m.compose("one", "c1".into()).expect("sent").remove(0);
        let second = m.compose("two", "c2".into()).expect("sent").remove(0);
        let slow = |ms| ServerMsg::Error {
            code: ErrorCode::RateLimited,
            message: String::new(),
            retry_after_ms: Some(ms),
            room: None,
        };
        assert_eq!(m.apply(slow(300)), vec![]);
        assert_eq!(m.error, Some(ErrorCode::RateLimited));
        assert_eq!(m.retry_in_ms.take(), Some(300));
        // Both were refused: still one retry.
        m.apply(slow(600));
        assert_eq!(m.retry_in_ms, None);
        assert_eq!(
            m.retry_now(),
            vec![first, second],
            "both go again, same client_ids"
        );
        // A later refusal schedules a new retry.
        m.apply(slow(100));
        assert_eq!(m.retry_in_ms, Some(100));
        // The note stays while a held-back message is on its way, and goes once all are stored.
        let ack = |id: &str| ServerMsg::Ack {
            room: "lobby".into(),
            client_id: Some(id.into()),
            seq: 1,
        };
        m.apply(ack("c1"));
        assert_eq!(m.error, Some(ErrorCode::RateLimited));
        m.apply(ack("c2"));
        assert_eq!(m.error, None, "the note goes once everything is stored");
    }

    #[test]
    fn a_burst_goes_out_in_order_at_the_pace_the_server_allows_with_a_calm_note() {
        // 10 a second with bursts of 5: the page keeps to 9 a second, bursts of 5 (a tenth under).
        let mut m = online_with_limits(Rate::new(10, 5), None);
        let ms = 1_000.0;
        m.set_clock(ms);
        let mut sent = Vec::new();
        for i in 0..8 {
            sent.extend(m.compose(&format!("m{i}"), format!("c{i}")).expect("taken"));
        }
        assert_eq!(sent.len(), 5, "the burst goes at once");
        assert_eq!(
            m.error,
            Some(ErrorCode::RateLimited),
            "the rest wait, calmly"
        );
        assert_eq!(m.pending.len(), 8, "all shown as sending");
        // The next may go after one interval (1/9 s).
        assert_eq!(m.retry_in_ms.take(), Some(112));
        m.set_clock(ms + 50.0);
        assert_eq!(m.retry_now(), vec![], "too early: nothing");
        assert_eq!(m.retry_in_ms.take(), Some(62));
        m.set_clock(ms + 112.0);
        sent.extend(m.retry_now());
        assert_eq!(sent.len(), 6);
        assert_eq!(m.retry_in_ms.take(), Some(111), "one more wait");
        m.set_clock(ms + 400.0);
        sent.extend(m.retry_now());
        let ids: Vec<_> = sent
            .iter()
            .map(|f| match f {
                ClientMsg::Send { client_id, .. } => client_id.clone().unwrap_or_default(),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(
            ids,
            ["c0", "c1", "c2", "c3", "c4", "c5", "c6", "c7"],
            "in order, once each"
        );
        assert_eq!(m.retry_in_ms, None, "nothing left to wait for");
        // The note goes once all are stored.
        for i in 0..8 {
            m.apply(ServerMsg::Ack {
                room: "lobby".into(),
                client_id: Some(format!("c{i}")),
                seq: i + 1,
            });
        }
        assert_eq!(m.error, None);
    }

    #[test]
    fn long_messages_are_paced_by_bytes_too() {
        let mut m = online_with_limits(None, Rate::new(10_000, 10_000));
        m.set_clock(1_000.0);
        let text = "x".repeat(4_000);
        let now: Vec<_> = (0..3)
            .flat_map(|i| m.compose(&text, format!("c{i}")).expect("taken"))
            .collect();
        // 9,000 bytes of the paced bucket: two frames of about 4,050 fit, the third waits.
        assert_eq!(now.len(), 2);
        assert!(m.retry_in_ms.is_some());
    }

    #[test]
    fn a_name_or_join_the_server_could_not_grant_is_asked_again_by_the_heartbeat() {
        let mut m = Model::new("lobby", Some("ann".into()));
        m.apply(welcome());
        let internal = || refused(ErrorCode::Internal);
        m.apply(internal());
        assert_eq!(
            m.tick(),
            vec![ClientMsg::Ping, ClientMsg::SetName { name: "ann".into() }]
        );
        m.apply(ServerMsg::NameSet { name: "ann".into() });
        m.apply(internal());
        assert_eq!(m.tick(), vec![ClientMsg::Ping, joins("lobby")]);
        m.apply(empty_lobby());
        assert_eq!(m.tick(), vec![ClientMsg::Ping], "all granted: nothing more");
        assert_eq!(m.error, None, "the refusal is no longer shown");
    }

    #[test]
    fn a_text_over_the_server_s_limit_is_refused_before_it_is_sent() {
        let mut m = Model::new("lobby", Some("ann".into()));
        online_in_lobby(&mut m);
        assert_eq!(m.compose(&"x".repeat(4001), "c".into()), None);
        assert_eq!(m.error, Some(ErrorCode::TooLong));
        assert!(m.pending.is_empty());
    }

    #[test]
    fn a_member_count_moves_the_count_and_keeps_the_names() {
        let mut m = Model::new("lobby", None);
        m.apply(ServerMsg::Presence {
            room: "lobby".into(),
            members: vec!["ann".into(), "Zed".into()],
            count: 2,
        });
        m.apply(ServerMsg::MemberCount {
            room: "lobby".into(),
            count: 1,
        });
        assert_eq!(m.member_total(), 2, "never fewer than the names shown");
        m.apply(ServerMsg::MemberCount {
            room: "lobby".into(),
            count: 5000,
        });
        assert_eq!(m.member_total(), 5000);
        assert_eq!(m.members, ["ann", "Zed"], "the names stay");
    }

    #[test]
    fn joins_and_leaves_in_a_row_fold_into_one_notice_and_renames_stay_apart() {
        let mut m = Model::new("lobby", Some("ann".into()));
        online_in_lobby(&mut m);
        let notice = |kind, name: &str| ServerMsg::Notice {
            room: "lobby".into(),
            kind,
            name: name.into(),
            old_name: (kind == NoticeKind::Renamed).then(|| "old".into()),
        };
        let before = m.items.len();
        for name in ["bo", "cy", "dee"] {
            m.apply(notice(NoticeKind::Joined, name));
        }
        m.apply(notice(NoticeKind::Left, "bo"));
        m.apply(notice(NoticeKind::Renamed, "eve"));
        m.apply(notice(NoticeKind::Renamed, "fay"));
        m.apply(ServerMsg::Message(msg(3, "e")));
        m.apply(notice(NoticeKind::Joined, "gus"));
        let shown: Vec<(NoticeKind, Vec<&str>)> = m.items[before..]
            .iter()
            .filter_map(|item| match item {
                Item::Notice { kind, names, .. } => {
                    Some((*kind, names.iter().map(String::as_str).collect()))
                }
                _ => None,
            })
            .collect();
        assert_eq!(
            shown,
            [
                (NoticeKind::Joined, vec!["bo", "cy", "dee"]),
                (NoticeKind::Left, vec!["bo"]),
                (NoticeKind::Renamed, vec!["eve"]),
                (NoticeKind::Renamed, vec!["fay"]),
                (NoticeKind::Joined, vec!["gus"]),
            ]
        );
        // Each fold is a new item to a keyed list.
        let keys: std::collections::HashSet<String> = m.items.iter().map(Item::key).collect();
        assert_eq!(keys.len(), m.items.len());
    }

    #[test]
    fn the_member_list_is_the_servers_and_notices_leave_it_to_the_changes() {
        let mut m = Model::new("lobby", None);
        m.apply(ServerMsg::Presence {
            room: "lobby".into(),
            members: vec!["ann".into(), "Zed".into()],
            count: 2,
        });
        m.apply(notice(NoticeKind::Joined, "bo"));
        assert_eq!(
            m.members,
            ["ann", "Zed"],
            "the notice is shown, the list waits"
        );
        let changes = |joined: &[&str], left: &[&str], count| ServerMsg::PresenceChanges {
            room: "lobby".into(),
            joined: joined.iter().map(|n| n.to_string()).collect(),
            left: left.iter().map(|n| n.to_string()).collect(),
            count,
        };
        m.apply(changes(&["bo", "cy"], &["Zed"], 3));
        assert_eq!(m.members, ["ann", "bo", "cy"]);
        assert_eq!(m.member_total(), 3);
        // Applied twice, or naming someone not listed, it changes nothing more.
        m.apply(changes(&["bo"], &["Zed"], 3));
        assert_eq!(m.members, ["ann", "bo", "cy"]);

        // In a big room the list is the first page: whoever comes past it is only counted,
        // and the changes bring whoever enters the page.
        m.apply(changes(&[], &[], 900));
        m.apply(notice(NoticeKind::Joined, "zoe"));
        assert_eq!(m.members, ["ann", "bo", "cy"], "zoe is past the page");
        m.apply(ServerMsg::MemberCount {
            room: "lobby".into(),
            count: 901,
        });
        assert_eq!(m.member_total(), 901);
        m.apply(changes(&["abe"], &["cy"], 901));
        assert_eq!(m.members, ["abe", "ann", "bo"]);
        assert_eq!(m.member_total(), 901);
    }

    fn page(messages: Vec<ChatMessage>, more: bool) -> ServerMsg {
        ServerMsg::History {
            room: "lobby".into(),
            epoch: Some("e".into()),
            messages,
            more,
        }
    }

    #[test]
    fn older_pages_go_above_what_is_shown_until_the_first_message() {
        let mut m = online_with_limits(None, None);
        rejoin(&mut m, (51..=100).map(|s| msg(s, "e")).collect(), None);
        assert!(!m.history_begins());
        let asked = m.older();
        assert_eq!(
            asked,
            vec![ClientMsg::History {
                room: "lobby".into(),
                before: Some(Position {
                    epoch: "e".into(),
                    seq: 51
                }),
                limit: Some(HISTORY_PAGE),
            }]
        );
        // One page at a time.
        assert!(m.older().is_empty());
        m.apply(page((2..=50).map(|s| msg(s, "e")).collect(), true));
        assert_eq!(seqs(&m), (2..=100).collect::<Vec<_>>());
        assert!(!m.history_begins() && !m.loading_older);
        assert_eq!(m.older().len(), 1);
        // A page that overlaps what is shown adds only what is older.
        m.apply(page((1..=3).map(|s| msg(s, "e")).collect(), false));
        assert_eq!(seqs(&m), (1..=100).collect::<Vec<_>>());
        assert!(m.history_begins());
        assert!(m.older().is_empty(), "nothing before the first message");
    }

    #[test]
    fn pages_read_back_stay_until_the_reader_returns_to_the_newest() {
        let mut m = online_with_limits(None, None);
        rejoin(&mut m, (51..=550).map(|s| msg(s, "e")).collect(), None);
        assert_eq!(m.items.len(), MAX_ITEMS);
        m.older();
        m.apply(page((1..=50).map(|s| msg(s, "e")).collect(), false));
        m.apply(ServerMsg::Message(msg(551, "e")));
        assert_eq!(m.items.len(), 551, "nothing let go while reading back");
        assert!(m.history_begins());
        m.at_newest();
        assert_eq!(m.items.len(), MAX_ITEMS);
        assert_eq!(seqs(&m).first(), Some(&52));
        assert!(
            !m.history_begins(),
            "the start was let go: it can be paged in again"
        );
    }

    #[test]
    fn a_page_from_another_epoch_is_not_mixed_in_and_a_reconnect_may_ask_again() {
        let mut m = online_with_limits(None, None);
        rejoin(&mut m, (51..=60).map(|s| msg(s, "e")).collect(), None);
        m.older();
        m.apply(ServerMsg::History {
            room: "lobby".into(),
            epoch: Some("other".into()),
            messages: vec![msg(1, "other")],
            more: false,
        });
        assert_eq!(seqs(&m), (51..=60).collect::<Vec<_>>());
        let mut m = online_with_limits(None, None);
        rejoin(&mut m, (51..=60).map(|s| msg(s, "e")).collect(), None);
        m.older();
        m.disconnected();
        m.apply(welcome());
        assert!(
            !m.loading_older,
            "the page asked on the old link will not come"
        );
    }

    /// `joined` for an empty lobby.
    #[test]
    fn a_room_beside_shares_the_connection_and_counts_only_what_came_after_its_reader_left() {
        let ann = online_with_limits(None, None);
        let said = |room: &str, seq: u64, from: &str, text: &str| ChatMessage {
            room: room.into(),
            from: from.into(),
            text: text.into(),
            ..msg(seq, "e")
        };
        let joined = |history: Vec<ChatMessage>| ServerMsg::Joined {
            room: "dev".into(),
            members: vec!["ann".into(), "bo".into()],
            count: 2,
            history,
            recovered: None,
        };
        // First visit: what the room holds is not news; what comes after is.
        let (mut dev, frames) = ann.beside("dev", None);
        assert_eq!(frames, [joins("dev")]);
        assert_eq!(
            (dev.name.as_deref(), dev.status),
            (Some("ann"), Status::Online)
        );
        dev.apply(joined(vec![
            said("dev", 1, "bo", "old"),
            said("dev", 2, "bo", "older"),
        ]));
        assert!(dev.can_send());
        assert_eq!(dev.unread, 0);
        dev.apply(ServerMsg::Message(said("dev", 3, "bo", "@ann hi")));
        dev.apply(ServerMsg::Message(said("dev", 4, "ann", "mine")));
        assert_eq!((dev.unread, dev.unread_mentions), (1, 1));
        // In view, it is read, and where the reader is is kept.
        dev.set_away(false);
        assert_eq!((dev.unread, dev.seen.clone()), (0, Some(("e".into(), 4))));

        // After a reload, the messages after where the reader left count, without notifications.
        let (mut again, _) = ann.beside("dev", Some(("e".into(), 2)));
        again.notify = Notify::All;
        again.apply(joined((1..=4).map(|n| said("dev", n, "bo", "x")).collect()));
        assert_eq!(again.unread, 2);
        assert!(
            again.to_notify.is_empty(),
            "old news is counted, not announced"
        );
        again.apply(ServerMsg::Message(said("dev", 5, "bo", "new")));
        assert_eq!((again.unread, again.to_notify.len()), (3, 1));
        assert_eq!(again.leave(), [ClientMsg::Leave { room: "dev".into() }]);
    }

    #[test]
    fn in_a_big_room_the_server_is_asked_for_names_past_the_first_page() {
        let mut m = online_with_limits(None, None);
        m.apply(ServerMsg::Presence {
            room: "lobby".into(),
            members: vec!["ann".into(), "bea".into()],
            count: 500,
        });
        assert_eq!(
            m.look_up("zo"),
            [ClientMsg::Members {
                room: "lobby".into(),
                after: None,
                prefix: Some("zo".into()),
                limit: Some(6)
            }]
        );
        assert!(m.look_up("zo").is_empty(), "asked once");
        m.apply(ServerMsg::Members {
            room: "lobby".into(),
            members: vec!["zoe".into(), "Zora".into()],
            next: None,
        });
        assert_eq!(m.offer("zo"), ["zoe", "Zora"]);
        assert_eq!(m.offer("zor"), ["Zora"]);
        // All the names with "zo" came: a longer prefix needs no question.
        assert!(m.look_up("zor").is_empty());
        assert_eq!(m.offer("b"), ["bea"]);
        // A small room's list is all of it: nothing to ask.
        let mut small = online_with_limits(None, None);
        assert!(small.look_up("zo").is_empty());
    }

    fn empty_lobby() -> ServerMsg {
        ServerMsg::Joined {
            room: "lobby".into(),
            members: vec![],
            count: 0,
            history: vec![],
            recovered: None,
        }
    }

    /// A page's first join of `room`.
    fn joins(room: &str) -> ClientMsg {
        ClientMsg::Join {
            room: room.into(),
            since: None,
            presence_changes: true,
        }
    }

    /// The join after a reconnect, from the message `seq` of epoch "e".
    fn rejoin_from(seq: u64) -> ClientMsg {
        ClientMsg::Join {
            room: "lobby".into(),
            since: Some(Position {
                epoch: "e".into(),
                seq,
            }),
            presence_changes: true,
        }
    }

    /// Someone joined or left the lobby.
    fn notice(kind: NoticeKind, name: &str) -> ServerMsg {
        ServerMsg::Notice {
            room: "lobby".into(),
            kind,
            name: name.into(),
            old_name: None,
        }
    }

    fn said(seq: u64, from: &str) -> ServerMsg {
        ServerMsg::Message(ChatMessage {
            from: from.into(),
            ..msg(seq, "e")
        })
    }

    #[test]
    fn typing_is_said_every_few_seconds_while_there_is_text_and_ends_with_the_message() {
        let mut m = Model::new("lobby", None);
        let at = |m: &mut Model, ms: u64| m.set_clock(ms as f64);
        at(&mut m, 1_000);
        assert!(m.typed("hi").is_empty(), "not before the room is joined");
        online_in_lobby(&mut m);
        assert!(m.typed("  ").is_empty(), "nothing to send yet");
        assert_eq!(
            m.typed("h"),
            [ClientMsg::Typing {
                room: "lobby".into()
            }]
        );
        at(&mut m, 1_000 + TYPING_EVERY_MS - 1);
        assert!(m.typed("hi").is_empty(), "once per few seconds");
        at(&mut m, 1_000 + TYPING_EVERY_MS);
        assert_eq!(m.typed("hi b").len(), 1);

        // Others typing; ourselves never shown.
        let typing = |names: &[&str]| ServerMsg::Typing {
            room: "lobby".into(),
            names: names.iter().map(|n| n.to_string()).collect(),
        };
        m.apply(typing(&["bo", "ann"]));
        assert_eq!(m.typists.line(), Typing::One("bo".into()));
        m.apply(typing(&["cy"]));
        assert_eq!(m.typists.line(), Typing::Two("bo".into(), "cy".into()));
        // bo's message ends bo's typing; cy, renamed, is not typing under the old name.
        m.apply(said(3, "bo"));
        m.apply(ServerMsg::Notice {
            room: "lobby".into(),
            kind: NoticeKind::Renamed,
            name: "cyd".into(),
            old_name: Some("cy".into()),
        });
        assert_eq!(m.typists.line(), Typing::Nobody);
        // And a name not heard again is let go after a while.
        m.apply(typing(&["dee"]));
        at(
            &mut m,
            1_000 + TYPING_EVERY_MS + crate::protocol::TYPING_SHOWN_MS,
        );
        m.expire_typing();
        assert_eq!(m.typists.line(), Typing::Nobody);
    }

    #[test]
    fn edits_and_deletes_change_the_message_they_name_and_are_not_messages_themselves() {
        let mut m = Model::new("lobby", None);
        online_in_lobby(&mut m);
        let change = |seq: u64, of: u64, text: &str, deleted: bool| {
            ServerMsg::Message(ChatMessage {
                text: text.into(),
                edits: Some(of),
                deleted,
                ..msg(seq, "e")
            })
        };
        // ann's own messages 1 and 2 (see `msg`), from the joined history.
        assert!(m.may_change(&msg(1, "e"), 1_000));
        assert!(!m.may_change(&msg(1, "e"), 3_600_000), "past the window");
        m.set_away(true);
        m.apply(said(3, "bo"));
        m.apply(change(4, 3, "bo's, edited", false));
        assert_eq!(m.unread, 1, "a change is not news");
        assert_eq!(m.text_of(3).as_deref(), Some("bo's, edited"));
        let bos = ChatMessage {
            from: "bo".into(),
            ..msg(3, "e")
        };
        assert!(!m.may_change(&bos, 1_000), "not ours");
        m.apply(change(5, 1, "", true));
        m.apply(change(6, 1, "too late", false));
        let changes = m.changes();
        assert!(changes[&1].deleted, "deleted stays deleted");
        assert_eq!(m.newer_than(2), 1);
        // Editing ours in the composer.
        m.set_away(false);
        m.start_edit(2);
        assert_eq!(
            m.save_edit("m2, better"),
            [ClientMsg::Edit {
                room: "lobby".into(),
                epoch: "e".into(),
                seq: 2,
                text: "m2, better".into(),
                client_id: None,
            }]
        );
        assert_eq!(m.editing, None);
        assert_eq!(m.delete(2).len(), 1);
    }

    #[test]
    fn mentions_are_counted_apart_and_notify_as_the_reader_chose() {
        let mut m = Model::new("lobby", None);
        online_in_lobby(&mut m);
        let text = |seq: u64, from: &str, text: &str| {
            ServerMsg::Message(ChatMessage {
                from: from.into(),
                text: text.into(),
                ..msg(seq, "e")
            })
        };
        m.apply(text(3, "bo", "@ann hi"));
        assert!(m.to_notify.is_empty(), "not while the tab is shown");
        m.set_away(true);
        m.apply(text(4, "bo", "@Ann, look"));
        m.apply(text(5, "bo", "no one"));
        m.apply(text(6, "ann", "@ann talking to myself"));
        assert_eq!((m.unread, m.unread_mentions), (2, 1));
        assert_eq!(m.to_notify, [("bo".to_owned(), "@Ann, look".to_owned())]);
        m.to_notify.clear();
        m.notify = Notify::All;
        m.apply(text(7, "bo", "anything"));
        assert_eq!(m.to_notify.len(), 1);
        m.notify = Notify::Nothing;
        m.apply(text(8, "bo", "@ann anything"));
        assert_eq!(m.to_notify.len(), 1);
        m.set_away(false);
        assert_eq!((m.unread, m.unread_mentions), (0, 0));
    }

    #[test]
    fn what_others_say_while_the_tab_is_hidden_is_counted_and_marked_new() {
        let mut m = online_with_limits(None, None);
        rejoin(&mut m, (1..=3).map(|s| msg(s, "e")).collect(), None);
        m.apply(ServerMsg::NameSet { name: "me".into() });
        assert_eq!(m.first_unread(), None);
        m.set_away(true);
        m.apply(said(4, "bo"));
        m.apply(said(5, "me"));
        m.apply(said(6, "cy"));
        assert_eq!(m.unread, 2, "one's own messages are not unread");
        m.set_away(false);
        assert_eq!(m.unread, 0);
        assert_eq!(m.first_unread(), Some(4));
        // Away again with nothing new: the marker moves to where the reader left.
        m.set_away(true);
        m.set_away(false);
        assert_eq!(m.first_unread(), None);
        m.set_away(true);
        m.apply(said(7, "bo"));
        m.set_away(false);
        assert_eq!(m.first_unread(), Some(7));
        m.compose("back", "c1".into());
        assert_eq!(m.first_unread(), None, "writing is reading");
    }

    #[test]
    fn a_reader_scrolled_up_is_told_how_many_came_from_others() {
        let mut m = online_with_limits(None, None);
        rejoin(&mut m, (1..=3).map(|s| msg(s, "e")).collect(), None);
        m.apply(ServerMsg::NameSet { name: "me".into() });
        let seen = m.last_seq();
        assert_eq!(m.newer_than(seen), 0);
        m.apply(said(4, "bo"));
        m.apply(notice(NoticeKind::Joined, "dee"));
        m.apply(said(5, "me"));
        m.apply(said(6, "cy"));
        assert_eq!(m.newer_than(seen), 2);
        assert_eq!(m.newer_than(m.last_seq()), 0);
    }

    #[test]
    fn a_reloaded_tab_resumes_its_session_and_sends_what_it_had_not_sent_once_joined() {
        let mut before = online_with_limits(None, None);
        before.compose("one", "c1".into());
        before.compose("two", "c2".into());
        before.apply(ServerMsg::Ack {
            room: "lobby".into(),
            client_id: Some("c1".into()),
            seq: 1,
        });
        let saved = before.outbox();
        assert_eq!(
            saved.len(),
            2,
            "acknowledged but not yet seen back: kept too"
        );

        let mut after = Model::new("lobby", Some("ann".into()));
        after.resume_session(before.session().expect("a session").to_owned());
        after.restore_outbox(saved);
        assert_eq!(after.pending.len(), 2, "shown as sending at once");
        let answers = after.apply(welcome_as("s2"));
        assert_eq!(
            answers[0],
            ClientMsg::Resume {
                session: "s".into()
            },
            "the old session first"
        );
        after.apply(ServerMsg::Resumed {
            session: "s".into(),
            name: Some("ann".into()),
        });
        after.apply(ServerMsg::NameSet { name: "ann".into() });
        let sent = after.apply(empty_lobby());
        let ids: Vec<_> = sent
            .iter()
            .filter_map(|f| match f {
                ClientMsg::Send { client_id, .. } => client_id.clone(),
                _ => None,
            })
            .collect();
        assert_eq!(ids, ["c1", "c2"], "in order, with their ids");
    }

    #[test]
    fn a_message_is_queued_then_sending_then_not_sent_after_tries_and_can_be_tried_now() {
        let mut m = online_with_limits(None, None);
        m.compose("hi", "c1".into());
        let state = |m: &Model| m.send_state(&m.pending[0]);
        assert_eq!(state(&m), SendState::Sending);
        // Unanswered through two heartbeats and their resends.
        for _ in 0..4 {
            m.tick();
        }
        assert_eq!(state(&m), SendState::Failed);
        assert!(matches!(m.try_now()[..], [ClientMsg::Send { .. }]));
        // The link drops: waiting for it, and "try now" wakes the reconnect instead.
        m.disconnected();
        assert_eq!(state(&m), SendState::Queued);
        assert!(m.try_now().is_empty());
        assert!(m.wake);
        // A new link starts counting again.
        m.apply(welcome());
        m.apply(ServerMsg::NameSet { name: "ann".into() });
        m.apply(empty_lobby());
        assert_eq!(state(&m), SendState::Sending);
        m.apply(ServerMsg::Ack {
            room: "lobby".into(),
            client_id: Some("c1".into()),
            seq: 1,
        });
        assert_eq!(state(&m), SendState::Sending, "stored, on its way back");
    }

    #[test]
    fn frames_for_other_rooms_are_ignored() {
        let mut m = Model::new("lobby", None);
        let mut other = msg(1, "e");
        other.room = "dev".into();
        m.apply(ServerMsg::Message(other));
        assert!(m.items.is_empty());
    }

    #[test]
    fn the_list_keeps_only_the_newest_items() {
        let mut m = Model::new("lobby", None);
        for seq in 1..=(MAX_ITEMS as u64 + 10) {
            m.apply(ServerMsg::Message(msg(seq, "e")));
        }
        assert_eq!(m.items.len(), MAX_ITEMS);
        assert_eq!(seqs(&m).first(), Some(&11));
    }
}
