//! One WebSocket connection, in three layers:
//! - [`upgrade`]: the HTTP upgrade (origin, caps and rates, the token, the handshake), then the
//!   connection's task is started;
//! - `socket`: that one task, which reads frames, keeps the timers and writes the queue's
//!   batches, over its WebSocket framing (`socket::link`: no buffers at rest, frames written
//!   from their shared bytes), generic over the socket and knowing nothing of sessions;
//! - `session`: the protocol, one handler per client frame type.

mod session;
mod socket;
mod upgrade;

pub use upgrade::upgrade;
