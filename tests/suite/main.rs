//! Every integration test, as one test binary: each file beside this one is a module, and
//! `common` is their shared harness (a real server on a loopback port, real WebSocket clients,
//! and real redis-server, node processes and nginx for the multi-node tests). One binary links
//! the harness and the crate once, where one binary per file linked them fourteen times.
//!
//! `cargo test --features ssr --test suite chat::` runs one module's tests.

mod common;

mod auth;
mod binary;
mod chat;
mod cluster;
mod edits;
mod faults;
mod fuzz;
mod history;
mod hostile;
mod http;
mod load_tool;
mod logs;
mod metrics;
mod moderation;
mod names;
mod nodes;
mod presence;
mod reading;
mod redis_cluster;
mod reload;
mod sentinel;
mod tabs;
mod tls;
mod typing;
