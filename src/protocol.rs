//! The wire protocol: one JSON object per WebSocket text frame, tagged by `"type"`.
//!
//! These types are compiled into both the server and the WASM client, so the two cannot drift
//! apart. External clients depend on the names: add fields and variants freely, rename nothing, and
//! document every frame in `PROTOCOL.md`.
//!
//! Client frames carry plain strings; the server turns them into [`UserName`], [`RoomName`] and
//! [`MessageText`] at the edge, so a bad value gets its own error code instead of a generic decode
//! failure.

pub use crate::rate::Rate;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Bumped only for changes an existing client would misread.
pub const PROTOCOL_VERSION: u32 = 1;

/// The room a client lands in at `/`.
pub const DEFAULT_ROOM: &str = "lobby";

/// Longest user name, in characters after trimming.
pub const MAX_NAME_CHARS: usize = 32;
/// Longest room name, in characters.
pub const MAX_ROOM_CHARS: usize = 64;
/// Longest `client_id`, in bytes; it is echoed to the whole room, so it stays short.
pub const MAX_CLIENT_ID_BYTES: usize = 64;

/// Messages in a `history` page when the client does not say, and the most it may ask for.
pub const HISTORY_PAGE: u32 = 50;
pub const HISTORY_PAGE_MAX: u32 = 200;

/// A frame from a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientMsg {
    /// Pick (or change) the name shown to others.
    SetName { name: String },
    /// Hold the session an earlier connection was given in `welcome`, keeping its name, on any
    /// node — beside other connections that hold it (a browser's tabs are one person). Sent
    /// before `set_name` and before joining with a name; the answer is `resumed` or an
    /// `unknown_session` error (then this connection simply keeps its own new session).
    Resume { session: String },
    /// Enter a room: the answer is `joined`, with the members and recent history — or, with
    /// `since`, only the messages after that position (see `joined.recovered`).
    Join {
        room: String,
        /// The last message this client has of the room, after a reconnect.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since: Option<Position>,
        /// The client applies `presence_changes` (who joined and left since the list it has)
        /// instead of getting the whole list again for every change.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        presence_changes: bool,
    },
    /// Leave a room: the answer is `left`.
    Leave { room: String },
    /// Say something in a room the client has joined.
    Send {
        room: String,
        text: String,
        /// Chosen by the client; comes back in the `ack` and in the `message`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_id: Option<String>,
    },
    /// An application-level heartbeat: the answer is `pong`. Browsers cannot see WebSocket
    /// pings, so this is how a page finds out that its link is dead.
    Ping,
    /// A page of a room's members, sorted as `presence` sorts them: those after the name
    /// `after` (from the start without it) whose names begin with `prefix` (ignoring case), at
    /// most `limit` (default and most: 100). The answer is `members`. Only for rooms joined.
    Members {
        room: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        prefix: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
    },
    /// A page of a room's stored messages before `before` (the newest without it), at most
    /// `limit` (default 50, most 200): how a reader scrolls back past what `joined` gave. The
    /// answer is `history`. Only for rooms joined.
    History {
        room: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        before: Option<Position>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        limit: Option<u32>,
    },
    /// "I am typing in `room`": sent while the composer's text changes, at most once per
    /// [`TYPING_EVERY_MS`]. Never stored and never answered; the room hears `typing`. Only for
    /// rooms joined with a name.
    Typing { room: String },
    /// Changes the text of one's own message `seq` (of `epoch`) in `room`, within the server's
    /// edit window (`limits.edit_window_ms`). The room gets a `message` that `edits` it.
    Edit {
        room: String,
        epoch: String,
        seq: u64,
        text: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_id: Option<String>,
    },
    /// Deletes one's own message `seq` (of `epoch`) in `room`, within the edit window. The room
    /// gets a `message` that `edits` it with `deleted`.
    Delete {
        room: String,
        epoch: String,
        seq: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_id: Option<String>,
    },
    /// Asks for moderator rights on this connection with the server's operator token (its
    /// `operator_token` setting). The answer is `moderator`, or a `not_moderator` error. With
    /// signed identity, a token's `moderator: true` claim gives them from the start.
    Moderate { token: String },
    /// Moderators: `name` may not say anything in `room` for `seconds` (at most a week); 0
    /// lets them speak again. The room gets a `message` with its `moderation`.
    Mute {
        room: String,
        name: String,
        seconds: u64,
    },
    /// Moderators: removes `name` (every connection of theirs, on every node) from `room`, and
    /// keeps them out of it for `seconds` (default 300, at most a week).
    Kick {
        room: String,
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        seconds: Option<u64>,
    },
    /// Moderators: each person may send one message per `seconds` in `room` (at most an hour;
    /// 0 turns slow mode off). Moderators are not slowed.
    SlowMode { room: String, seconds: u64 },
}

/// The longest a mute or a kick lasts, in seconds.
pub const MODERATION_MAX_S: u64 = 7 * 24 * 3600;
/// The longest slow-mode interval, in seconds.
pub const SLOW_MODE_MAX_S: u64 = 3600;
/// How long a kick keeps someone out of the room when the moderator does not say.
pub const KICK_DEFAULT_S: u64 = 300;

/// A typing person says so again at most this often; the server passes on at most one `typing`
/// per connection in this time, whatever the room (earlier ones are dropped without an answer).
pub const TYPING_EVERY_MS: u64 = 3_000;

/// How long a page shows someone as typing after the last `typing` that named them (unless their
/// message comes first).
pub const TYPING_SHOWN_MS: u64 = 6_000;

impl ClientMsg {
    /// Every `type` a client may send; used to tell an unknown type from a malformed known one.
    pub const TYPES: &'static [&'static str] = &[
        "set_name",
        "resume",
        "join",
        "leave",
        "send",
        "ping",
        "members",
        "history",
        "typing",
        "edit",
        "delete",
        "moderate",
        "mute",
        "kick",
        "slow_mode",
    ];

    /// The frame's `type`, as on the wire: what metrics and logs call it.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::SetName { .. } => "set_name",
            Self::Resume { .. } => "resume",
            Self::Join { .. } => "join",
            Self::Leave { .. } => "leave",
            Self::Send { .. } => "send",
            Self::Ping => "ping",
            Self::Members { .. } => "members",
            Self::History { .. } => "history",
            Self::Typing { .. } => "typing",
            Self::Edit { .. } => "edit",
            Self::Delete { .. } => "delete",
            Self::Moderate { .. } => "moderate",
            Self::Mute { .. } => "mute",
            Self::Kick { .. } => "kick",
            Self::SlowMode { .. } => "slow_mode",
        }
    }

    /// The room the frame is about, if it names one.
    pub fn room(&self) -> Option<&str> {
        match self {
            Self::Join { room, .. }
            | Self::Leave { room }
            | Self::Send { room, .. }
            | Self::Members { room, .. }
            | Self::History { room, .. }
            | Self::Typing { room }
            | Self::Edit { room, .. }
            | Self::Delete { room, .. }
            | Self::Mute { room, .. }
            | Self::Kick { room, .. }
            | Self::SlowMode { room, .. } => Some(room),
            Self::SetName { .. } | Self::Resume { .. } | Self::Ping | Self::Moderate { .. } => None,
        }
    }

    /// `join` without a position: the room's recent history.
    pub fn join(room: impl Into<String>) -> Self {
        Self::Join {
            room: room.into(),
            since: None,
            presence_changes: false,
        }
    }
}

/// A place in a room's message stream: the `seq` of a message and the epoch it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    pub epoch: String,
    pub seq: u64,
}

/// A chat message as stored in a room's history and delivered to its members.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    pub room: String,
    /// Strictly increasing within a room (and an epoch).
    pub seq: u64,
    /// Names the history `seq` belongs to; a new epoch means earlier sequence numbers are void.
    pub epoch: String,
    pub from: String,
    pub text: String,
    /// Server time, milliseconds since the Unix epoch.
    pub ts: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// This entry changes the room's earlier message `edits` (its `seq`, of this epoch): its text
    /// is now `text`, or, with `deleted`, it is deleted. Shown in that message's place, never as
    /// a message of its own. Numbered in the room's stream like any message, so a client that
    /// was away gets it with `since` or `history`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub edits: Option<u64>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub deleted: bool,
    /// A moderator's action (the entry is from the moderator, with an empty `text`): shown as
    /// a notice. With `edits`, a moderator deleted someone else's message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moderation: Option<Moderation>,
    /// Who may change this message (a key the server derives from the sender's session, or its
    /// signed identity). Kept by the store, never sent.
    #[serde(skip)]
    pub author: Option<String>,
}

impl ChatMessage {
    /// Something someone said, shown as a message of its own: not a change of an earlier
    /// message, nor a moderator's action.
    pub fn is_said(&self) -> bool {
        self.edits.is_none() && self.moderation.is_none()
    }
}

/// What an entry of a room's stream does to an earlier message (see [`ChatMessage::edits`]),
/// or which moderator's action it records.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Change {
    pub edits: Option<u64>,
    pub deleted: bool,
    pub moderation: Option<Moderation>,
}

impl Change {
    pub fn edit(seq: u64) -> Self {
        Self {
            edits: Some(seq),
            ..Self::default()
        }
    }

    pub fn delete(seq: u64) -> Self {
        Self {
            edits: Some(seq),
            deleted: true,
            ..Self::default()
        }
    }

    /// A moderator's action, recorded in the room's stream.
    pub fn moderation(moderation: Moderation) -> Self {
        Self {
            moderation: Some(moderation),
            ..Self::default()
        }
    }
}

/// What a moderator did (see [`ChatMessage::moderation`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Moderation {
    pub action: ModAction,
    /// Whom it was done to: the muted or kicked name, or the author of the deleted message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// How long it lasts (mute, kick), or the slow-mode interval; 0 ends it.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub seconds: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The moderators' actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModAction {
    Delete,
    Mute,
    Kick,
    SlowMode,
}

/// What a `notice` announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoticeKind {
    Joined,
    Left,
    Renamed,
}

/// A frame from the server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerMsg {
    /// First frame on every connection.
    Welcome {
        session: String,
        node: String,
        protocol: u32,
        limits: Limits,
        /// How often the server pings this connection; a client that cannot see WebSocket pings
        /// (a browser) sends `ping` this often and counts the link dead after two silent periods.
        ping_interval_ms: u64,
        /// With signed identity: the name the token gives; claim it with `set_name` (no other
        /// name is taken).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        /// With signed identity: the token makes this connection a moderator.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        moderator: bool,
    },
    /// Answer to `moderate`: this connection may now `mute`, `kick`, set `slow_mode` and
    /// delete anyone's message.
    Moderator,
    /// The room's slow mode: sent after `joined` while it is on, and to the members whenever a
    /// moderator changes it. Each person may send one message per `seconds` (0: off).
    SlowMode {
        room: String,
        seconds: u64,
    },
    /// Answer to `resume`: this connection now carries that session, and the name it held is
    /// reserved for it (claim it with `set_name`).
    Resumed {
        session: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
    },
    /// The name was accepted (also after a rename).
    NameSet {
        name: String,
    },
    /// Answer to `join`: who is here and what was said last, oldest first.
    Joined {
        room: String,
        /// The members, sorted; in a room of more than the server's `presence_list_max`, only
        /// the first that many (`count` says how many there are; `members` pages the rest).
        members: Vec<String>,
        /// How many members the room has.
        #[serde(default)]
        count: u32,
        history: Vec<ChatMessage>,
        /// Present when the join asked for messages `since` a position: `true` when `history`
        /// is exactly the messages after it (possibly none); `false` when some are no longer
        /// stored (trimmed, or the room's epoch changed) and `history` is the recent history.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        recovered: Option<bool>,
    },
    /// Answer to `leave`.
    Left {
        room: String,
    },
    Message(ChatMessage),
    Notice {
        room: String,
        kind: NoticeKind,
        name: String,
        /// The previous name, for `renamed` only.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        old_name: Option<String>,
    },
    /// The room's member list changed; this is the whole new list, sorted (in a big room its
    /// first page, as in `joined`).
    Presence {
        room: String,
        members: Vec<String>,
        /// How many members the room has.
        #[serde(default)]
        count: u32,
    },
    /// What changed in the room's member list since the one this member has (its `joined`, or
    /// the last `presence` or `presence_changes`), for a member that joined with
    /// `presence_changes`: remove `left`, then add `joined`, keeping the list sorted. In a big
    /// room the list is its first page, as in `joined`; `count` is the whole room.
    PresenceChanges {
        room: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        joined: Vec<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        left: Vec<String>,
        count: u32,
    },
    /// The room's member count changed and the names a `presence` would list did not: in a
    /// big room most joins and leaves are past its first page, and re-sending the same page
    /// to every member for each would cost the room the square of its size.
    MemberCount {
        room: String,
        count: u32,
    },
    /// Who said they were typing in `room` lately: the `typing` frames of the room's members,
    /// folded on each node to at most one of these per room a second. A page shows each name
    /// for [`TYPING_SHOWN_MS`], or until that person's message. Never stored, not recovered
    /// after a reconnect, and the first thing dropped when a reader's queue is full.
    Typing {
        room: String,
        names: Vec<String>,
    },
    /// Answer to `members`: a page of the room's members, sorted. `next`, when present, is the
    /// `after` that asks for the page that follows.
    Members {
        room: String,
        members: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        next: Option<String>,
    },
    /// Answer to `history`: stored messages before the position asked for, oldest first. `more`
    /// says whether older ones are stored; `epoch` is the room's (absent before its first
    /// message). Asked with a position of another epoch, the page is empty: the room's
    /// numbering restarted and nothing before that position is kept.
    History {
        room: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        epoch: Option<String>,
        messages: Vec<ChatMessage>,
        more: bool,
    },
    /// The message with this `client_id` is stored under `seq`.
    Ack {
        room: String,
        client_id: Option<String>,
        seq: u64,
    },
    Error {
        code: ErrorCode,
        message: String,
        /// With `rate_limited`: milliseconds after which the refused frame would be taken.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after_ms: Option<u64>,
        /// The room of the refused frame, when it named one: a client in several rooms knows
        /// which of them it concerns.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        room: Option<String>,
    },
    /// Answer to `ping`.
    Pong,
}

impl ServerMsg {
    /// The room the frame is about: `None` for what concerns the whole connection (`welcome`,
    /// `name_set`, …, and errors about no room).
    pub fn room(&self) -> Option<&str> {
        match self {
            Self::Joined { room, .. }
            | Self::Left { room }
            | Self::Notice { room, .. }
            | Self::Presence { room, .. }
            | Self::MemberCount { room, .. }
            | Self::PresenceChanges { room, .. }
            | Self::Typing { room, .. }
            | Self::Members { room, .. }
            | Self::History { room, .. }
            | Self::Ack { room, .. }
            | Self::SlowMode { room, .. } => Some(room),
            Self::Message(m) => Some(&m.room),
            Self::Error { room, .. } => room.as_deref(),
            Self::Welcome { .. }
            | Self::Resumed { .. }
            | Self::NameSet { .. }
            | Self::Moderator
            | Self::Pong => None,
        }
    }
}

/// Limits a client should respect, sent in `welcome` so clients need not hard-code them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    pub max_name_chars: usize,
    pub max_text_chars: usize,
    pub max_frame_bytes: usize,
    pub max_rooms_per_connection: usize,
    /// `send` frames this connection may send: on average `per_sec` a second, `burst` at once.
    /// Absent when unlimited (and from servers before it was sent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sends: Option<Rate>,
    /// Bytes of frames this connection may send, as a rate and a burst. Absent when unlimited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<Rate>,
    /// How long after sending a message its author may edit or delete it (0: never).
    #[serde(default)]
    pub edit_window_ms: u64,
}

/// Stable, machine-readable error codes. Clients match on these, never on `message`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The frame is not valid JSON (or not a JSON object).
    InvalidJson,
    /// The object has no string `type`.
    MissingType,
    /// `type` names no known client frame.
    UnknownType,
    /// A field the frame's type requires is absent.
    MissingField,
    /// A field is present but has the wrong JSON type.
    InvalidField,
    /// Binary frames are not part of the protocol.
    BinaryNotSupported,
    /// Set a name before sending (a `join` without one reads the room).
    NameRequired,
    /// Someone online already uses this name, or one that reads the same: compared after NFKC,
    /// case-insensitively and by the Unicode confusable skeleton (Latin `a` and Cyrillic `а` match).
    NameTaken,
    InvalidName,
    InvalidRoom,
    /// The message text is empty (or only white space).
    EmptyText,
    /// The message text is longer than the limit; nothing was sent.
    TooLong,
    InvalidClientId,
    /// Sending to a room this connection has not joined.
    NotInRoom,
    /// Joining more rooms than a connection (or the server) allows.
    TooManyRooms,
    /// `resume` named a session that has expired, was closed, or never existed.
    UnknownSession,
    /// Signed identity: the connection came without a token.
    TokenRequired,
    /// Signed identity: the token's signature, algorithm or claims are not accepted.
    InvalidToken,
    /// Signed identity: the token has expired.
    TokenExpired,
    /// Signed identity: the name comes from the token and cannot be changed.
    NameBound,
    /// Too many frames (or bytes) too fast; nothing was done. Send again after `retry_after_ms`.
    /// A client that keeps on regardless is closed with 1008.
    RateLimited,
    /// `edit`/`delete`: no such message in the room's kept history (or it is a change itself).
    NoSuchMessage,
    /// `edit`/`delete`: the message is someone else's.
    NotYours,
    /// `edit`/`delete`: the message is older than the edit window.
    EditWindowPassed,
    /// A moderator muted this name here: nothing is said until `retry_after_ms`.
    Muted,
    /// The room is in slow mode: the next message may go after `retry_after_ms`.
    SlowMode,
    /// A moderator removed this person from the room: they may join again after
    /// `retry_after_ms`.
    Kicked,
    /// Moderators only (or `moderate` with a wrong token, or on a server without one).
    NotModerator,
    /// The server could not do it; retrying later may work.
    Internal,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidJson => "invalid_json",
            Self::MissingType => "missing_type",
            Self::UnknownType => "unknown_type",
            Self::MissingField => "missing_field",
            Self::InvalidField => "invalid_field",
            Self::BinaryNotSupported => "binary_not_supported",
            Self::NameRequired => "name_required",
            Self::NameTaken => "name_taken",
            Self::InvalidName => "invalid_name",
            Self::InvalidRoom => "invalid_room",
            Self::EmptyText => "empty_text",
            Self::TooLong => "too_long",
            Self::InvalidClientId => "invalid_client_id",
            Self::NotInRoom => "not_in_room",
            Self::TooManyRooms => "too_many_rooms",
            Self::UnknownSession => "unknown_session",
            Self::RateLimited => "rate_limited",
            Self::TokenRequired => "token_required",
            Self::InvalidToken => "invalid_token",
            Self::TokenExpired => "token_expired",
            Self::NameBound => "name_bound",
            Self::NoSuchMessage => "no_such_message",
            Self::NotYours => "not_yours",
            Self::EditWindowPassed => "edit_window_passed",
            Self::Muted => "muted",
            Self::SlowMode => "slow_mode",
            Self::Kicked => "kicked",
            Self::NotModerator => "not_moderator",
            Self::Internal => "internal",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rejected value: the code for the wire and a sentence for people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Invalid {
    pub code: ErrorCode,
    pub message: String,
    /// When trying again may work, and when (`rate_limited`).
    pub retry_after_ms: Option<u64>,
}

impl Invalid {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            retry_after_ms: None,
        }
    }

    /// A refusal that lasts until `retry_after_ms` (mute, slow mode, kick).
    pub fn until(code: ErrorCode, message: impl Into<String>, retry_after_ms: u64) -> Self {
        Self {
            code,
            message: message.into(),
            retry_after_ms: Some(retry_after_ms),
        }
    }

    /// A `rate_limited` refusal: the frame would be taken after `retry_after_ms`.
    pub fn rate_limited(retry_after_ms: u64) -> Self {
        Self {
            code: ErrorCode::RateLimited,
            message: format!("too fast; nothing was done: try again in {retry_after_ms} ms"),
            retry_after_ms: Some(retry_after_ms),
        }
    }
}

impl From<Invalid> for ServerMsg {
    fn from(e: Invalid) -> Self {
        ServerMsg::Error {
            code: e.code,
            message: e.message,
            retry_after_ms: e.retry_after_ms,
            room: None,
        }
    }
}

/// Code points no name may hold: the Unicode default-ignorable ones (invisible, zero-width,
/// bidi controls, tags, Hangul fillers; DerivedCoreProperties.txt, Default_Ignorable_Code_Point),
/// line and paragraph separators, non-characters and private-use characters, whose look depends
/// on the reader's fonts. The common variation selectors, also default-ignorable, are removed
/// instead (see [`is_variation_selector`]).
fn is_forbidden_in_name(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}'..='\u{1160}' | '\u{17B4}'..='\u{17B5}'
            | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}' | '\u{2028}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}' | '\u{3164}' | '\u{FEFF}' | '\u{FFA0}' | '\u{FFF0}'..='\u{FFF8}'
            | '\u{1BCA0}'..='\u{1BCA3}' | '\u{1D173}'..='\u{1D17A}' | '\u{E0000}'..='\u{E0FFF}'
            | '\u{E000}'..='\u{F8FF}' | '\u{F0000}'..='\u{10FFFF}' | '\u{FDD0}'..='\u{FDEF}')
        || (c as u32) & 0xFFFE == 0xFFFE
}

/// Variation selectors 1–16 only choose how a character is drawn (an emoji in colour or as
/// text); a phone keyboard adds them by itself, so they are dropped from names, not refused.
fn is_variation_selector(c: char) -> bool {
    matches!(c, '\u{FE00}'..='\u{FE0F}')
}

/// A user's display name: NFKC-normalised, white space trimmed and runs of it made one space,
/// then 1–32 characters with no control, invisible, bidi or private-use characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserName(String);

impl UserName {
    /// The name of a connection that reads a room without taking part: empty, so that no
    /// name that parses is ever taken for it. Kept on this node only; never stored or sent.
    pub fn reader() -> Self {
        Self(String::new())
    }

    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        use unicode_normalization::UnicodeNormalization;
        // Checked before normalising, which could fold some of them into plain characters.
        if raw.chars().any(is_forbidden_in_name) {
            return Err(Invalid::new(
                ErrorCode::InvalidName,
                "the name contains control, invisible or direction-changing characters",
            ));
        }
        // Counting stops early, so a huge name costs no more than the limit to refuse.
        if raw.chars().take(MAX_NAME_CHARS * 8).count() == MAX_NAME_CHARS * 8 {
            return Err(Invalid::new(
                ErrorCode::InvalidName,
                format!("the name is too long; at most {MAX_NAME_CHARS} characters are allowed"),
            ));
        }
        let normal: String = raw.nfkc().filter(|c| !is_variation_selector(*c)).collect();
        let name = normal.split_whitespace().collect::<Vec<_>>().join(" ");
        let chars = name.chars().count();
        if chars == 0 {
            return Err(Invalid::new(ErrorCode::InvalidName, "the name is empty"));
        }
        if chars > MAX_NAME_CHARS {
            return Err(Invalid::new(
                ErrorCode::InvalidName,
                format!("the name has {chars} characters; at most {MAX_NAME_CHARS} are allowed"),
            ));
        }
        if name.chars().any(is_forbidden_in_name) {
            return Err(Invalid::new(
                ErrorCode::InvalidName,
                "the name contains control, invisible or direction-changing characters",
            ));
        }
        Ok(Self(name))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The key under which names are unique: two names that readers could take for each other
    /// share it. Lower case first ("Ann" and "aNN"), then the UTS #39 confusable skeleton
    /// (Latin "a" and Cyrillic "а"; "0" and "O"), lower case and skeleton once more, and last
    /// "i" made "l": a capital I is one letter with "i" by case and looks like "l", so one key
    /// cannot keep "i" and "l" apart without letting "Ian" pass for "lan" or "IAN" for "ian".
    /// ("Eli" and "Ell" are then one name; the rarer mistake.) Not for display.
    pub fn key(&self) -> String {
        use unicode_security::confusable_detection::skeleton;
        let once: String = skeleton(&self.0.to_lowercase()).collect::<String>();
        let twice: String = skeleton(&once.to_lowercase()).collect();
        twice.replace('i', "l")
    }
}

impl fmt::Display for UserName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A room name: 1–64 of `a-z 0-9 - _`; upper-case ASCII is folded so `/r/Dev` and `/r/dev` meet.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RoomName(String);

impl RoomName {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let room = raw.to_ascii_lowercase();
        if room.is_empty() || room.len() > MAX_ROOM_CHARS {
            return Err(Invalid::new(
                ErrorCode::InvalidRoom,
                format!("a room name has 1 to {MAX_ROOM_CHARS} characters"),
            ));
        }
        if !room
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        {
            return Err(Invalid::new(
                ErrorCode::InvalidRoom,
                "a room name uses only letters a-z, digits, '-' and '_'",
            ));
        }
        Ok(Self(room))
    }

    pub fn lobby() -> Self {
        Self(DEFAULT_ROOM.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RoomName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Message text: at least one visible character, at most `max_chars` characters, never cut.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageText(String);

impl MessageText {
    /// The text of a `delete`: none.
    pub fn deleted() -> Self {
        Self(String::new())
    }

    pub fn parse(raw: String, max_chars: usize) -> Result<Self, Invalid> {
        if raw.trim().is_empty() {
            return Err(Invalid::new(ErrorCode::EmptyText, "the message is empty"));
        }
        // Counting stops early: a huge text costs no more than the limit to reject.
        let chars = raw.chars().take(max_chars + 1).count();
        if chars > max_chars {
            return Err(Invalid::new(
                ErrorCode::TooLong,
                format!("the message is longer than {max_chars} characters; nothing was sent"),
            ));
        }
        Ok(Self(raw))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// Orders a member list as the protocol promises: case-insensitively, as people read names.
/// The server sorts `joined`/`presence` lists with it and clients keep their lists with it.
pub fn sort_members(names: &mut [String]) {
    names.sort_by_cached_key(|n| n.to_lowercase());
}

/// Checks a client-chosen id: short, printable ASCII, so it is safe to echo to everyone.
pub fn parse_client_id(raw: Option<String>) -> Result<Option<String>, Invalid> {
    match raw {
        None => Ok(None),
        Some(id)
            if !id.is_empty()
                && id.len() <= MAX_CLIENT_ID_BYTES
                && id.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            Ok(Some(id))
        }
        Some(_) => Err(Invalid::new(
            ErrorCode::InvalidClientId,
            format!("client_id is 1 to {MAX_CLIENT_ID_BYTES} printable ASCII characters"),
        )),
    }
}

/// Decodes a client frame, classifying failures so each gets its own error code.
///
/// The well-formed case costs one parse; only a bad frame pays for the diagnosis.
pub fn decode_client(text: &str) -> Result<ClientMsg, Invalid> {
    match serde_json::from_str::<ClientMsg>(text) {
        Ok(msg) => Ok(msg),
        Err(err) => Err(classify_decode_error(text, &err)),
    }
}

fn classify_decode_error(text: &str, err: &serde_json::Error) -> Invalid {
    let value: serde_json::Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(e) => return Invalid::new(ErrorCode::InvalidJson, format!("invalid JSON: {e}")),
    };
    let Some(obj) = value.as_object() else {
        return Invalid::new(ErrorCode::InvalidJson, "a frame must be a JSON object");
    };
    let Some(kind) = obj.get("type").and_then(|t| t.as_str()) else {
        return Invalid::new(ErrorCode::MissingType, "the frame has no string \"type\"");
    };
    if !ClientMsg::TYPES.contains(&kind) {
        return Invalid::new(
            ErrorCode::UnknownType,
            format!(
                "unknown type {kind:?}; expected one of {:?}",
                ClientMsg::TYPES
            ),
        );
    }
    // serde's wording for an absent field is fixed by `de::Error::missing_field`.
    let detail = err.to_string();
    if detail.starts_with("missing field") {
        Invalid::new(ErrorCode::MissingField, format!("{kind}: {detail}"))
    } else {
        Invalid::new(ErrorCode::InvalidField, format!("{kind}: {detail}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_frames_round_trip_with_their_documented_names() {
        let cases = [
            (
                r#"{"type":"set_name","name":"ann"}"#,
                ClientMsg::SetName { name: "ann".into() },
            ),
            (
                r#"{"type":"join","room":"lobby"}"#,
                ClientMsg::join("lobby"),
            ),
            (
                r#"{"type":"join","room":"lobby","since":{"epoch":"e","seq":7}}"#,
                ClientMsg::Join {
                    room: "lobby".into(),
                    since: Some(Position {
                        epoch: "e".into(),
                        seq: 7,
                    }),
                    presence_changes: false,
                },
            ),
            (
                r#"{"type":"join","room":"lobby","presence_changes":true}"#,
                ClientMsg::Join {
                    room: "lobby".into(),
                    since: None,
                    presence_changes: true,
                },
            ),
            (r#"{"type":"ping"}"#, ClientMsg::Ping),
            (
                r#"{"type":"members","room":"lobby","after":"bo","prefix":"d","limit":10}"#,
                ClientMsg::Members {
                    room: "lobby".into(),
                    after: Some("bo".into()),
                    prefix: Some("d".into()),
                    limit: Some(10),
                },
            ),
            (
                r#"{"type":"members","room":"lobby"}"#,
                ClientMsg::Members {
                    room: "lobby".into(),
                    after: None,
                    prefix: None,
                    limit: None,
                },
            ),
            (
                r#"{"type":"history","room":"lobby","before":{"epoch":"e","seq":51},"limit":20}"#,
                ClientMsg::History {
                    room: "lobby".into(),
                    before: Some(Position {
                        epoch: "e".into(),
                        seq: 51,
                    }),
                    limit: Some(20),
                },
            ),
            (
                r#"{"type":"history","room":"lobby"}"#,
                ClientMsg::History {
                    room: "lobby".into(),
                    before: None,
                    limit: None,
                },
            ),
            (
                r#"{"type":"resume","session":"s"}"#,
                ClientMsg::Resume {
                    session: "s".into(),
                },
            ),
            (
                r#"{"type":"leave","room":"lobby"}"#,
                ClientMsg::Leave {
                    room: "lobby".into(),
                },
            ),
            (
                r#"{"type":"send","room":"lobby","text":"hi","client_id":"c1"}"#,
                ClientMsg::Send {
                    room: "lobby".into(),
                    text: "hi".into(),
                    client_id: Some("c1".into()),
                },
            ),
            (
                r#"{"type":"typing","room":"lobby"}"#,
                ClientMsg::Typing {
                    room: "lobby".into(),
                },
            ),
            (
                r#"{"type":"edit","room":"lobby","epoch":"e","seq":3,"text":"hi!"}"#,
                ClientMsg::Edit {
                    room: "lobby".into(),
                    epoch: "e".into(),
                    seq: 3,
                    text: "hi!".into(),
                    client_id: None,
                },
            ),
            (
                r#"{"type":"delete","room":"lobby","epoch":"e","seq":3,"client_id":"d1"}"#,
                ClientMsg::Delete {
                    room: "lobby".into(),
                    epoch: "e".into(),
                    seq: 3,
                    client_id: Some("d1".into()),
                },
            ),
            (
                r#"{"type":"moderate","token":"t"}"#,
                ClientMsg::Moderate { token: "t".into() },
            ),
            (
                r#"{"type":"mute","room":"lobby","name":"bo","seconds":600}"#,
                ClientMsg::Mute {
                    room: "lobby".into(),
                    name: "bo".into(),
                    seconds: 600,
                },
            ),
            (
                r#"{"type":"kick","room":"lobby","name":"bo"}"#,
                ClientMsg::Kick {
                    room: "lobby".into(),
                    name: "bo".into(),
                    seconds: None,
                },
            ),
            (
                r#"{"type":"slow_mode","room":"lobby","seconds":30}"#,
                ClientMsg::SlowMode {
                    room: "lobby".into(),
                    seconds: 30,
                },
            ),
        ];
        let mut kinds = Vec::new();
        for (json, msg) in cases {
            assert_eq!(decode_client(json).as_ref(), Ok(&msg), "{json}");
            let back = serde_json::to_string(&msg).expect("serializes");
            // `kind` is the wire's `type`, and a type `decode_client` knows.
            let value: serde_json::Value = serde_json::from_str(&back).expect("json");
            assert_eq!(value["type"], msg.kind(), "{json}");
            kinds.push(msg.kind());
            assert_eq!(decode_client(&back), Ok(msg));
        }
        kinds.sort_unstable();
        kinds.dedup();
        let mut types = ClientMsg::TYPES.to_vec();
        types.sort_unstable();
        assert_eq!(kinds, types, "every type has a case here");
    }

    #[test]
    fn server_frames_use_the_documented_tags_and_fields() {
        let msg = ServerMsg::Message(ChatMessage {
            room: "lobby".into(),
            seq: 7,
            epoch: "e1".into(),
            from: "ann".into(),
            text: "hi".into(),
            ts: 1,
            client_id: Some("c".into()),
            edits: None,
            deleted: false,
            moderation: None,
            author: None,
        });
        let v: serde_json::Value = serde_json::to_value(&msg).expect("serializes");
        assert_eq!(v["type"], "message");
        assert_eq!(v["seq"], 7);
        assert_eq!(v["from"], "ann");
        let back: ServerMsg = serde_json::from_value(v).expect("deserializes");
        assert_eq!(back, msg);

        let err = ServerMsg::Error {
            code: ErrorCode::NameTaken,
            message: "x".into(),
            retry_after_ms: None,
            room: None,
        };
        let v = serde_json::to_value(&err).expect("serializes");
        assert_eq!(v["type"], "error");
        assert_eq!(v["code"], "name_taken");

        let notice = ServerMsg::Notice {
            room: "r".into(),
            kind: NoticeKind::Left,
            name: "bo".into(),
            old_name: None,
        };
        let v = serde_json::to_value(&notice).expect("serializes");
        assert_eq!(v["kind"], "left");
        assert!(v.get("old_name").is_none());

        let pong = serde_json::to_string(&ServerMsg::Pong).expect("serializes");
        assert_eq!(pong, r#"{"type":"pong"}"#);

        let changes = ServerMsg::PresenceChanges {
            room: "r".into(),
            joined: vec!["ann".into()],
            left: Vec::new(),
            count: 3,
        };
        let json = serde_json::to_string(&changes).expect("serializes");
        assert_eq!(
            json,
            r#"{"type":"presence_changes","room":"r","joined":["ann"],"count":3}"#
        );
        assert_eq!(serde_json::from_str::<ServerMsg>(&json).ok(), Some(changes));
    }

    #[test]
    fn every_error_code_serializes_as_its_documented_string() {
        let all = [
            ErrorCode::InvalidJson,
            ErrorCode::MissingType,
            ErrorCode::UnknownType,
            ErrorCode::MissingField,
            ErrorCode::InvalidField,
            ErrorCode::BinaryNotSupported,
            ErrorCode::NameRequired,
            ErrorCode::NameTaken,
            ErrorCode::InvalidName,
            ErrorCode::InvalidRoom,
            ErrorCode::EmptyText,
            ErrorCode::TooLong,
            ErrorCode::InvalidClientId,
            ErrorCode::NotInRoom,
            ErrorCode::TooManyRooms,
            ErrorCode::UnknownSession,
            ErrorCode::RateLimited,
            ErrorCode::TokenRequired,
            ErrorCode::InvalidToken,
            ErrorCode::TokenExpired,
            ErrorCode::NameBound,
            ErrorCode::NoSuchMessage,
            ErrorCode::NotYours,
            ErrorCode::EditWindowPassed,
            ErrorCode::Internal,
        ];
        for code in all {
            let json = serde_json::to_value(code).expect("serializes");
            assert_eq!(json, code.as_str());
        }
    }

    #[test]
    fn bad_frames_are_classified() {
        let code = |s: &str| decode_client(s).map_err(|e| e.code).err();
        assert_eq!(code("not json"), Some(ErrorCode::InvalidJson));
        assert_eq!(code("[1,2]"), Some(ErrorCode::InvalidJson));
        assert_eq!(code(r#"{"name":"x"}"#), Some(ErrorCode::MissingType));
        assert_eq!(code(r#"{"type":7}"#), Some(ErrorCode::MissingType));
        assert_eq!(code(r#"{"type":"dance"}"#), Some(ErrorCode::UnknownType));
        assert_eq!(code(r#"{"type":"join"}"#), Some(ErrorCode::MissingField));
        assert_eq!(
            code(r#"{"type":"send","room":"a"}"#),
            Some(ErrorCode::MissingField)
        );
        assert_eq!(
            code(r#"{"type":"join","room":5}"#),
            Some(ErrorCode::InvalidField)
        );
    }

    #[test]
    fn names_are_trimmed_bounded_and_free_of_control_characters() {
        assert_eq!(UserName::parse("  ann ").map(|n| n.0), Ok("ann".to_owned()));
        assert_eq!(
            UserName::parse("李小龙").map(|n| n.0),
            Ok("李小龙".to_owned())
        );
        assert!(UserName::parse(&"x".repeat(32)).is_ok());
        // 32 characters of 3 bytes each: the limit counts characters, not bytes.
        assert!(UserName::parse(&"語".repeat(32)).is_ok());
        for bad in [
            "",
            "   ",
            &"x".repeat(33),
            "a\u{0007}b",
            "tab\there",
            "an\u{202E}n",
            "a\u{200B}",
            // Zero-width joiner and non-joiner, word joiner, soft hyphen, bidi isolate, tag
            // characters, a Hangul filler, private use, a line separator.
            "a\u{200D}nn",
            "a\u{200C}nn",
            "a\u{2060}nn",
            "an\u{00AD}n",
            "\u{2067}ann",
            "ann\u{E0041}",
            "\u{3164}",
            "ann\u{E000}",
            "ann\u{2028}lee",
            &"x".repeat(10_000),
        ] {
            assert_eq!(
                UserName::parse(bad).map_err(|e| e.code),
                Err(ErrorCode::InvalidName),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn names_compare_case_insensitively_for_uniqueness() {
        let a = UserName::parse("Ann").expect("valid");
        let b = UserName::parse("aNN").expect("valid");
        assert_eq!(a.key(), b.key());
        assert_eq!(a.as_str(), "Ann");
        // Seen in the browser test with a random name: a capital I was taken for an l and "SAMI"
        // passed next to "sami".
        let key = |n: &str| UserName::parse(n).expect("valid").key();
        assert_eq!(key("SAMQ5PNI3"), key("samq5pni3"));
    }

    #[test]
    fn every_letter_keys_alike_in_either_case() {
        // Letters whose case maps round-trip one to one (not ß, final sigma, long s, ...).
        let key = |s: &str| UserName(s.to_owned()).key();
        for c in (0..0x2_0000)
            .filter_map(char::from_u32)
            .filter(|c| c.is_alphanumeric())
        {
            let (lower, upper) = (c.to_lowercase().to_string(), c.to_uppercase().to_string());
            if upper.to_lowercase() != lower || lower.to_uppercase() != upper {
                continue;
            }
            let k = key(&c.to_string());
            assert!(
                k == key(&lower) && k == key(&upper),
                "{c:?} ({:#x})",
                c as u32
            );
        }
    }

    #[test]
    fn look_alike_names_share_a_key_and_different_names_do_not() {
        let key = |n: &str| UserName::parse(n).expect("valid").key();
        // Cyrillic а (U+0430) and Latin a; Cyrillic А and Latin A; capital I and small l;
        // full-width letters (NFKC); mathematical bold letters (NFKC).
        for (a, b) in [
            ("anna", "\u{0430}nn\u{0430}"),
            ("Anna", "\u{0410}nna"),
            ("Ian", "lan"),
            ("bob", "\u{FF42}\u{FF4F}\u{FF42}"),
            ("rust", "\u{1D42B}\u{1D42E}\u{1D42C}\u{1D42D}"),
            ("paypal", "p\u{0430}yp\u{0430}l"),
        ] {
            assert_eq!(key(a), key(b), "{a:?} vs {b:?}");
        }
        for (a, b) in [("ann", "anne"), ("bob", "rob"), ("李小龙", "李小虎")] {
            assert_ne!(key(a), key(b), "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn names_are_normalised_before_they_are_shown() {
        let shown = |n: &str| UserName::parse(n).map(|n| n.0);
        // Full-width letters and a ligature become plain ones; white space runs become one.
        assert_eq!(shown("\u{FF21}nn"), Ok("Ann".to_owned()));
        assert_eq!(shown("\u{FB01}sh"), Ok("fish".to_owned()));
        assert_eq!(shown("  ann \u{3000}  lee "), Ok("ann lee".to_owned()));
        // A variation selector (an emoji drawn in colour) is dropped, not refused.
        assert_eq!(shown("\u{2764}\u{FE0F} ann"), Ok("\u{2764} ann".to_owned()));
        // Combining accents are composed: one name whichever way it was typed.
        assert_eq!(shown("Jose\u{0301}"), shown("Jos\u{00E9}"));
    }

    #[test]
    fn room_names_are_folded_and_restricted() {
        assert_eq!(
            RoomName::parse("Dev-Ops_2").map(|r| r.0),
            Ok("dev-ops_2".to_owned())
        );
        assert!(RoomName::parse(&"a".repeat(64)).is_ok());
        for bad in ["", "a b", "a/b", "é", &"a".repeat(65), "<script>"] {
            assert_eq!(
                RoomName::parse(bad).map_err(|e| e.code),
                Err(ErrorCode::InvalidRoom),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn texts_are_bounded_by_characters_and_never_cut() {
        assert!(MessageText::parse("x".repeat(10), 10).is_ok());
        assert!(MessageText::parse("語".repeat(10), 10).is_ok());
        assert_eq!(
            MessageText::parse("x".repeat(11), 10).map_err(|e| e.code),
            Err(ErrorCode::TooLong)
        );
        assert_eq!(
            MessageText::parse(" \n ".into(), 10).map_err(|e| e.code),
            Err(ErrorCode::EmptyText)
        );
        let kept = MessageText::parse("  two  spaces\n".into(), 100).expect("valid");
        assert_eq!(kept.as_str(), "  two  spaces\n");
    }

    #[test]
    fn client_ids_are_short_printable_ascii() {
        assert_eq!(parse_client_id(None), Ok(None));
        assert_eq!(
            parse_client_id(Some("abc-1".into())),
            Ok(Some("abc-1".into()))
        );
        for bad in ["", "a b", "é", &"x".repeat(65)] {
            assert_eq!(
                parse_client_id(Some(bad.to_owned())).map_err(|e| e.code),
                Err(ErrorCode::InvalidClientId),
                "{bad:?}"
            );
        }
    }
}
