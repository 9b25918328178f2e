//! Server frames as they go on the wire: every [`ServerMsg`] the server sends, stores or
//! publishes is serialised by [`json`] and nowhere else, and every close frame is made by
//! [`close`] with one of the codes below.

use crate::protocol::ServerMsg;
use tungstenite::{Message, Utf8Bytes, protocol::CloseFrame};

/// Close codes (RFC 6455 §7.4.1) the server sends.
pub const CLOSE_GOING_AWAY: u16 = 1001;
pub const CLOSE_PROTOCOL_ERROR: u16 = 1002;
/// "Policy violation": kept on sending past the rate limits, or a refused token.
pub const CLOSE_POLICY: u16 = 1008;
pub const CLOSE_TOO_BIG: u16 = 1009;
/// "Service restart": this node is going away; reconnect (another node will answer).
pub const CLOSE_SERVICE_RESTART: u16 = 1012;
/// "Try again later": the server dropped the connection so that its client reconnects and
/// recovers what it missed (`join` with `since`).
pub const CLOSE_TRY_AGAIN: u16 = 1013;

/// What [`json`] gives if a frame could not be serialised: an error a client understands.
const UNENCODABLE: &str =
    r#"{"type":"error","code":"internal","message":"the server could not encode a frame"}"#;

/// `msg` as its JSON text. `ServerMsg` holds only strings, numbers and lists, so this cannot
/// fail; if it ever did, the failure is logged and the client gets an `internal` error instead.
pub fn json(msg: &ServerMsg) -> Utf8Bytes {
    match serde_json::to_string(msg) {
        Ok(json) => Utf8Bytes::from(json),
        Err(e) => {
            tracing::error!(cause = %e, "cannot encode a server frame");
            Utf8Bytes::from_static(UNENCODABLE)
        }
    }
}

/// `msg` as a text frame.
pub fn encode(msg: &ServerMsg) -> Message {
    Message::Text(json(msg))
}

/// A close frame.
pub fn close(code: u16, reason: &'static str) -> Message {
    Message::Close(Some(CloseFrame {
        code: code.into(),
        reason: Utf8Bytes::from_static(reason),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fallback_frame_is_an_error_frame_a_client_can_read() {
        let msg: ServerMsg = serde_json::from_str(UNENCODABLE).expect("a valid server frame");
        assert!(matches!(msg, ServerMsg::Error { .. }));
    }
}
