//! Opening a connection: the HTTP upgrade request is checked (the node can serve, the
//! handshake is valid, the origin is allowed, the client's address is under its caps and connect
//! rate, the token if signed identity is on), answered with 101, and the connection's task is
//! started on the WebSocket.
//!
//! The upgrade is axum's and hyper's; the WebSocket on top of it is ours (`socket::Link`), not
//! axum's, so that an idle connection holds no buffers and frames go out from their shared
//! bytes.

use super::{
    session::{Connection, random_id},
    socket::{Limits, Link, refuse, run},
};
use crate::protocol::Invalid;
use crate::server::{
    AppState,
    auth::{self, Identity},
    frame::{self, CLOSE_POLICY},
    guard::{Refusal, Ticket},
    hub::Outbox,
    store::ConnId,
};
use axum::{
    body::Body,
    extract::{ConnectInfo, Request, State},
    http::{HeaderMap, Method, StatusCode, header},
    response::{IntoResponse, Response},
};
use tracing::Instrument;
use tungstenite::handshake::derive_accept_key;

type Socket = Link<hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>>;

pub async fn upgrade(State(app): State<AppState>, mut req: Request) -> Response {
    // A node that cannot serve (shutting down, Redis unreachable) refuses new connections, so a
    // balancer retries them on another node and clients back off and come again.
    if app.shutdown.is_cancelled() || !app.store.accepting() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "this node cannot serve now; try another",
        )
            .into_response();
    }
    let accept = match accept_key(req.method(), req.headers()) {
        Ok(accept) => accept,
        Err(why) => return (StatusCode::BAD_REQUEST, why).into_response(),
    };
    // A page of another site must not open a connection with its visitor's browser.
    let gate = &app.gate;
    let admitted = if gate.origin_allowed(req.headers()) {
        // Without connect info (a router served without it) every client is one address.
        let peer = req
            .extensions()
            .get::<ConnectInfo<std::net::SocketAddr>>()
            .map_or(std::net::Ipv4Addr::UNSPECIFIED.into(), |c| c.0.ip());
        gate.admit(gate.client_address(peer, req.headers()))
    } else {
        Err(Refusal::Origin)
    };
    let ticket = match admitted {
        Ok(ticket) => ticket,
        Err(refusal) => {
            tracing::debug!(?refusal, "websocket upgrade refused");
            let mut response = (refusal.status(), refusal.reason()).into_response();
            if let Some(secs) = refusal.retry_after_secs() {
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, secs.into());
            }
            return response;
        }
    };
    // With signed identity, the token is checked now; a refusal is told over the socket, where
    // a browser can read it.
    let identity = app
        .verifier
        .as_ref()
        .map(|v| v.verify(auth::token_of(req.headers(), req.uri())));
    let Some(on_upgrade) = req.extensions_mut().remove::<hyper::upgrade::OnUpgrade>() else {
        return (
            StatusCode::UPGRADE_REQUIRED,
            "this connection cannot be upgraded",
        )
            .into_response();
    };
    let max = app.config.conn.max_frame_bytes;
    let limits = Limits {
        frame: max,
        message: max,
    };
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                // What waits to be written is bounded by the connection's queue
                // (`outbound_queue` frames, `outbound_queue_bytes`).
                let socket = Link::new(hyper_util::rt::TokioIo::new(upgraded), limits);
                // This task ends here, and its state with it; the connection lives on in the
                // task `start` spawns.
                start(socket, &app, ticket, identity);
            }
            Err(e) => tracing::debug!(cause = %e, "websocket upgrade failed"),
        }
    });
    Response::builder()
        .status(StatusCode::SWITCHING_PROTOCOLS)
        .header(header::CONNECTION, "upgrade")
        .header(header::UPGRADE, "websocket")
        .header(header::SEC_WEBSOCKET_ACCEPT, accept)
        .body(Body::empty())
        .unwrap_or_else(|e| {
            tracing::error!(cause = %e, "cannot build the upgrade response");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        })
}

/// Checks a WebSocket opening handshake (RFC 6455 §4.2.1, HTTP/1.1 only) and returns the
/// `Sec-WebSocket-Accept` value for it.
fn accept_key(method: &Method, headers: &HeaderMap) -> Result<String, &'static str> {
    let has = |name: header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|value| {
            value
                .to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    if method != Method::GET {
        return Err("a websocket handshake is a GET request");
    }
    if !has(header::CONNECTION, "upgrade") || !has(header::UPGRADE, "websocket") {
        return Err("expected Connection: upgrade and Upgrade: websocket");
    }
    if !has(header::SEC_WEBSOCKET_VERSION, "13") {
        return Err("only websocket version 13 is supported");
    }
    let key = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .ok_or("Sec-WebSocket-Key is missing")?;
    Ok(derive_accept_key(key.as_bytes()))
}

/// Starts the connection's task. Done outside any async fn, so that what is moved into the
/// task (the socket above all) is not kept a second time inside a future for the connection's
/// whole life.
fn start(
    socket: Socket,
    app: &AppState,
    ticket: Ticket,
    identity: Option<Result<Identity, Invalid>>,
) {
    let conn_id: ConnId = random_id().into();
    // Every log line of the connection carries it; the name is filled in once it is known
    // (never the session, a bearer secret).
    let span = tracing::info_span!(
        parent: None,
        "conn",
        node = %app.node_id,
        conn = %conn_id,
        user = tracing::field::Empty
    );
    let outbox = Outbox::bounded(
        app.config.conn.outbound_queue,
        app.config.conn.outbound_queue_bytes,
        Some(app.metrics.outbound_depth.clone()),
        Some(app.metrics.outbound_shed.clone()),
    );
    let identity = match identity {
        Some(Err(refused)) => {
            // No chat without a valid token: say why, close (1008), and read nothing.
            tracing::debug!(code = %refused.code, "token refused");
            outbox.offer(frame::encode(&refused.into()));
            outbox.offer(frame::close(CLOSE_POLICY, "authentication failed"));
            outbox.end();
            tokio::spawn(refuse(socket, outbox).instrument(span));
            return;
        }
        Some(Ok(identity)) => Some(identity),
        None => None,
    };
    let conn = Connection::new(app, conn_id, identity, outbox, ticket);
    conn.welcome(&app.node_id);
    app.metrics.connections_opened.inc();
    let link_bytes = std::mem::size_of_val(&socket);
    let conn_bytes = std::mem::size_of_val(&conn);
    let task = run(socket, conn);
    // What each connection costs at rest is mostly this future (see BENCHMARKS.md).
    tracing::trace!(
        task_bytes = std::mem::size_of_val(&task),
        link_bytes,
        conn_bytes,
        "connection started"
    );
    // Tracked, so a draining server knows when its last connection has gone.
    app.connections.spawn(task.instrument(span));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handshake_needs_get_upgrade_headers_version_13_and_a_key() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONNECTION,
            "keep-alive, Upgrade".parse().expect("valid"),
        );
        headers.insert(header::UPGRADE, "websocket".parse().expect("valid"));
        headers.insert(header::SEC_WEBSOCKET_VERSION, "13".parse().expect("valid"));
        headers.insert(
            header::SEC_WEBSOCKET_KEY,
            "dGhlIHNhbXBsZSBub25jZQ==".parse().expect("valid"),
        );
        // RFC 6455 §1.3's example.
        assert_eq!(
            accept_key(&Method::GET, &headers).as_deref(),
            Ok("s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
        );
        assert!(accept_key(&Method::POST, &headers).is_err());
        let mut old = headers.clone();
        old.insert(header::SEC_WEBSOCKET_VERSION, "8".parse().expect("valid"));
        assert!(accept_key(&Method::GET, &old).is_err());
        let mut keyless = headers.clone();
        keyless.remove(header::SEC_WEBSOCKET_KEY);
        assert!(accept_key(&Method::GET, &keyless).is_err());
        headers.remove(header::UPGRADE);
        assert!(accept_key(&Method::GET, &headers).is_err());
    }
}
