//! What the Redis scripts store in a room's history and publish on its channel: opaque payloads
//! whose every byte of JSON Rust wrote. A script adds only what it alone knows, as a prefix
//! (the `seq` and epoch it assigned; a name it read), never JSON of its own, and [`decode`] reads
//! the payload back into the frame it stands for.
//!
//! | payload | made by | stands for |
//! |---|---|---|
//! | `m<seq> <epoch> <body>` | `append.lua`, around [`message_body`] | the message `seq` of `epoch` |
//! | `f<frame>` | [`frame`]: Rust's whole frame (notices) | that frame |
//! | `l<name>` | `reap.lua` | notice: `name` left |
//! | `r<old name>\n<name>` | `join.lua` | notice: `old name` is now `name` |
//! | `{…}` | nodes before this format | that frame, as JSON (still read) |

use crate::protocol::{Change, ChatMessage, Moderation, NoticeKind, ServerMsg};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;

/// A message without the `seq` and epoch the append script puts in front of it. Borrowed while
/// it is written, so appending copies no text.
#[derive(Serialize, Deserialize)]
struct Body<'a> {
    #[serde(borrow)]
    room: Cow<'a, str>,
    #[serde(borrow)]
    from: Cow<'a, str>,
    #[serde(borrow)]
    text: Cow<'a, str>,
    ts: u64,
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    client_id: Option<Cow<'a, str>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    edits: Option<u64>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    deleted: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    moderation: Option<Moderation>,
    /// Who may change the message (see [`ChatMessage::author`]).
    #[serde(default, borrow, skip_serializing_if = "Option::is_none")]
    author: Option<Cow<'a, str>>,
}

/// What the append script is given: the message's body.
pub fn message_body(
    room: &str,
    from: &str,
    text: &str,
    ts: u64,
    client_id: Option<&str>,
    change: Change,
    author: Option<&str>,
) -> String {
    let body = Body {
        room: room.into(),
        from: from.into(),
        text: text.into(),
        ts,
        client_id: client_id.map(Cow::from),
        edits: change.edits,
        deleted: change.deleted,
        moderation: change.moderation,
        author: author.map(Cow::from),
    };
    // Strings and numbers only: this cannot fail.
    serde_json::to_string(&body).unwrap_or_default()
}

/// A frame to publish as it is (joined, left and renamed notices Rust knows in full).
pub fn frame(msg: &ServerMsg) -> String {
    format!("f{}", crate::server::frame::json(msg))
}

/// Why a payload could not be read.
#[derive(Debug, thiserror::Error)]
pub enum Unreadable {
    #[error("unknown payload kind {0:?}")]
    Kind(char),
    #[error("a message without its seq and epoch")]
    Prefix,
    #[error("a notice without its names")]
    Names,
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

/// The frame `payload` (published on `room`'s channel, or stored in its history) stands for.
pub fn decode(room: &str, payload: &str) -> Result<ServerMsg, Unreadable> {
    let mut chars = payload.chars();
    let kind = chars.next().unwrap_or('\0');
    let rest = chars.as_str();
    match kind {
        'm' => decode_message(rest).map(ServerMsg::Message),
        'f' => Ok(serde_json::from_str(rest)?),
        'l' => Ok(notice(room, NoticeKind::Left, rest, None)),
        'r' => {
            let (old, name) = rest.split_once('\n').ok_or(Unreadable::Names)?;
            Ok(notice(room, NoticeKind::Renamed, name, Some(old)))
        }
        '{' => Ok(serde_json::from_str(payload)?),
        other => Err(Unreadable::Kind(other)),
    }
}

/// A stored message: `payload` as [`decode`] reads it, when it is a message.
pub fn decode_stored(payload: &str) -> Result<ChatMessage, Unreadable> {
    match payload.strip_prefix('m') {
        Some(rest) => decode_message(rest),
        // Stored by a node before this format: the whole message frame.
        None => Ok(serde_json::from_str(payload)?),
    }
}

/// `<seq> <epoch> <body>`: the append script's prefix, then the body it was given.
fn decode_message(rest: &str) -> Result<ChatMessage, Unreadable> {
    let (seq, rest) = rest.split_once(' ').ok_or(Unreadable::Prefix)?;
    let (epoch, body) = rest.split_once(' ').ok_or(Unreadable::Prefix)?;
    let seq = seq.parse().map_err(|_| Unreadable::Prefix)?;
    let body: Body = serde_json::from_str(body)?;
    Ok(ChatMessage {
        room: body.room.into_owned(),
        seq,
        epoch: epoch.to_owned(),
        from: body.from.into_owned(),
        text: body.text.into_owned(),
        ts: body.ts,
        client_id: body.client_id.map(Cow::into_owned),
        edits: body.edits,
        deleted: body.deleted,
        moderation: body.moderation,
        author: body.author.map(Cow::into_owned),
    })
}

fn notice(room: &str, kind: NoticeKind, name: &str, old: Option<&str>) -> ServerMsg {
    ServerMsg::Notice {
        room: room.to_owned(),
        kind,
        name: name.to_owned(),
        old_name: old.map(str::to_owned),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `append.lua` makes of the body it is given.
    fn appended(seq: u64, epoch: &str, body: &str) -> String {
        format!("m{seq} {epoch} {body}")
    }

    #[test]
    fn a_message_reads_back_with_the_seq_and_epoch_the_script_put_in_front() {
        let text = "hé \"quoted\" \\ {json} \n two lines";
        let body = message_body(
            "lobby",
            "ann",
            text,
            17,
            Some("c1"),
            Change::default(),
            None,
        );
        let payload = appended(42, "00ff", &body);
        let ServerMsg::Message(m) = decode("lobby", &payload).expect("readable") else {
            panic!("a message");
        };
        assert_eq!(
            (m.seq, m.epoch.as_str(), m.text.as_str()),
            (42, "00ff", text)
        );
        assert_eq!(
            (m.from.as_str(), m.ts, m.client_id.as_deref()),
            ("ann", 17, Some("c1"))
        );
        assert_eq!(decode_stored(&payload).expect("readable"), m);
    }

    #[test]
    fn notices_read_back_whoever_wrote_their_names() {
        let joined = ServerMsg::Notice {
            room: "lobby".into(),
            kind: NoticeKind::Joined,
            name: "ann".into(),
            old_name: None,
        };
        assert_eq!(decode("lobby", &frame(&joined)).expect("readable"), joined);
        assert_eq!(
            decode("lobby", "lann").expect("readable"),
            notice("lobby", NoticeKind::Left, "ann", None)
        );
        assert_eq!(
            decode("lobby", "rann\nanna").expect("readable"),
            notice("lobby", NoticeKind::Renamed, "anna", Some("ann"))
        );
    }

    #[test]
    fn frames_of_nodes_before_this_format_are_still_read() {
        let old = r#"{"type":"message","seq":3,"epoch":"e","room":"lobby","from":"ann","text":"hi","ts":1}"#;
        assert!(matches!(decode("lobby", old), Ok(ServerMsg::Message(m)) if m.seq == 3));
        assert_eq!(decode_stored(old).expect("readable").text, "hi");
    }

    #[test]
    fn anything_else_is_refused_not_guessed() {
        for bad in ["", "x", "m3", "m3 e", "m3 e {}", "mx e {}", "rann", "f{"] {
            assert!(decode("lobby", bad).is_err(), "{bad:?}");
        }
    }
}
