//! Chorus: a self-hosted real-time chat server.
//!
//! # Layout
//! - [`protocol`]: the wire protocol (client and server frames, validated names and texts),
//!   shared by the server and the WASM client.
//! - [`rate`]: the rate limits' token buckets, enforced by the server and kept to by the client.
//! - [`status`]: what the status page shows of each node, gathered by the server and drawn by
//!   `app::status`.
//! - [`i18n`]: every string the UI shows, in English, Simplified Chinese and Japanese.
//! - [`app`]: the reactive Leptos UI, rendered on the server and hydrated in the browser; the
//!   browser's WebSocket client lives in `app::client`.
//! - `server` (feature `ssr` only): configuration, routes, the per-connection protocol, room
//!   state, local fan-out and the message bus. Nothing in it reaches the WASM build.

// Leptos view types nest deeply.
#![recursion_limit = "256"]

pub mod app;
pub mod i18n;
pub mod protocol;
pub mod rate;
#[cfg(feature = "ssr")]
pub mod server;
pub mod status;

/// Entry point of the WASM bundle: hydrates the server-rendered page.
#[cfg(feature = "hydrate")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    leptos::mount::hydrate_body(app::App);
}
