//! One WebSocket connection, in three layers:
//! - [`upgrade`]: the HTTP upgrade (origin, caps and rates, the token, the handshake), then the
//!   connection's two tasks are started;
//! - `socket`: the reader and writer loops over the frames (timers, batching, fragments), generic
//!   over `Stream` and `Sink` and knowing nothing of sessions;
//! - `session`: the protocol, one handler per client frame type.

mod session;
mod socket;
mod upgrade;

pub use upgrade::upgrade;
