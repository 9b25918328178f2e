//! The node's metrics for Prometheus (`GET /metrics`, OpenMetrics text).
//!
//! `prometheus-client` (the Prometheus project's own Rust client) rather than the `metrics`
//! facade: its registry is a value, so each node (and each test server in one test process) has
//! its own counters, and its label sets are types, so cardinality is bounded by construction:
//! labels here are close reasons, frame types and error codes, never a room, session or user.
//!
//! Counters are bumped where the event happens; what the node already knows (open connections,
//! rooms with members here, draining) is read when scraped, and costs nothing per connection.

use crate::protocol::ErrorCode;
use prometheus_client::{
    encoding::{EncodeLabelSet, text::encode},
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};
use std::future::Future;

/// A label set of one `&'static str` label, bounded by the code that names its values.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Reason {
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FrameType {
    pub r#type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Code {
    pub code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Outcome {
    pub outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Operation {
    pub op: &'static str,
}

/// Store call latencies: 100 µs doubling to about 3.3 s (the Redis response timeout is 2 s).
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.000_1, 2.0, 16))
}

pub struct Metrics {
    registry: Registry,
    /// Values read from the node when scraped.
    connections_open: Gauge,
    rooms_local: Gauge,
    draining: Gauge,
    pub connections_opened: Counter,
    /// By how they ended: `client_close`, `dropped`, `slow_reader` (1013), `idle_timeout` (1001),
    /// `restart` (1012), `policy` (1008), `protocol` (1002/1007/1009), `server_error`.
    pub connections_closed: Family<Reason, Counter>,
    pub frames_received: Family<FrameType, Counter>,
    pub errors_sent: Family<Code, Counter>,
    pub messages_stored: Counter,
    pub messages_deduplicated: Counter,
    /// `typing` frames that came sooner than one per `TYPING_EVERY_MS` and were not passed on.
    pub typing_dropped: Counter,
    /// Frames handed to members' queues by the rooms' fan-out.
    pub deliveries: Counter,
    pub resyncs: Counter,
    pub gap_fills: Counter,
    /// The Redis pub/sub link lost (each loss is followed by reconnecting and a resync of every
    /// room).
    pub pubsub_lost: Counter,
    /// Joins with `since`: `complete` (every missed message sent) or `incomplete`.
    pub recoveries: Family<Outcome, Counter>,
    /// Frames the writer found in a connection's outbound queue each time it took them: how far
    /// writing lags behind (a full queue, `outbound_queue`, closes the connection as slow).
    pub outbound_depth: Histogram,
    /// Frames shed from outbound queues to stay within their bounds: member lists replaced by
    /// newer ones, notices dropped.
    pub outbound_shed: Counter,
    /// Seconds a store call took (memory or Redis), by operation.
    store_latency: Family<Operation, Histogram, fn() -> Histogram>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("chorus");
        let m = Self {
            connections_open: Gauge::default(),
            rooms_local: Gauge::default(),
            draining: Gauge::default(),
            connections_opened: Counter::default(),
            connections_closed: Family::default(),
            frames_received: Family::default(),
            errors_sent: Family::default(),
            messages_stored: Counter::default(),
            messages_deduplicated: Counter::default(),
            typing_dropped: Counter::default(),
            deliveries: Counter::default(),
            resyncs: Counter::default(),
            gap_fills: Counter::default(),
            pubsub_lost: Counter::default(),
            recoveries: Family::default(),
            outbound_depth: Histogram::new(exponential_buckets(1.0, 2.0, 12)),
            outbound_shed: Counter::default(),
            store_latency: Family::new_with_constructor(latency_histogram),
            registry: Registry::default(),
        };
        let r = &mut registry;
        r.register(
            "connections_open",
            "WebSocket connections open on this node",
            m.connections_open.clone(),
        );
        r.register(
            "rooms_local",
            "Rooms with members on this node",
            m.rooms_local.clone(),
        );
        r.register(
            "draining",
            "1 while the node drains for a restart",
            m.draining.clone(),
        );
        r.register(
            "connections_opened",
            "WebSocket connections accepted",
            m.connections_opened.clone(),
        );
        r.register(
            "connections_closed",
            "WebSocket connections ended, by reason",
            m.connections_closed.clone(),
        );
        r.register(
            "frames_received",
            "Client frames received, by type",
            m.frames_received.clone(),
        );
        r.register(
            "errors_sent",
            "Error frames sent to clients, by code",
            m.errors_sent.clone(),
        );
        r.register(
            "messages_stored",
            "Chat messages stored",
            m.messages_stored.clone(),
        );
        r.register(
            "messages_deduplicated",
            "Re-sent messages acknowledged again without storing",
            m.messages_deduplicated.clone(),
        );
        r.register(
            "typing_dropped",
            "Typing frames that came too soon after the last one and were not passed on",
            m.typing_dropped.clone(),
        );
        r.register(
            "deliveries",
            "Frames queued to members by room fan-out",
            m.deliveries.clone(),
        );
        r.register(
            "resyncs",
            "Room resyncs after a bus reconnect or lag",
            m.resyncs.clone(),
        );
        r.register(
            "gap_fills",
            "Missed messages fetched from the store to close a gap in a room's stream",
            m.gap_fills.clone(),
        );
        r.register(
            "pubsub_lost",
            "Times the Redis pub/sub link was lost (then reconnected, and every room resynced)",
            m.pubsub_lost.clone(),
        );
        r.register(
            "recoveries",
            "Joins that asked for missed messages, by outcome",
            m.recoveries.clone(),
        );
        r.register(
            "outbound_queue_depth",
            "Frames waiting in a connection's outbound queue when its writer took them",
            m.outbound_depth.clone(),
        );
        r.register(
            "outbound_shed",
            "Frames shed from outbound queues: member lists replaced by newer ones, notices dropped",
            m.outbound_shed.clone(),
        );
        r.register(
            "store_latency_seconds",
            "Store (memory or Redis) call latency, by operation",
            m.store_latency.clone(),
        );
        Self { registry, ..m }
    }

    /// The OpenMetrics text, with the node's current state read in.
    pub fn render(&self, connections: usize, rooms: usize, draining: bool) -> String {
        let gauge = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        self.connections_open.set(gauge(connections));
        self.rooms_local.set(gauge(rooms));
        self.draining.set(i64::from(draining));
        let mut text = String::new();
        if let Err(e) = encode(&mut text, &self.registry) {
            tracing::error!(cause = %e, "cannot encode metrics");
        }
        text
    }

    pub fn closed(&self, reason: &'static str) {
        self.connections_closed
            .get_or_create(&Reason { reason })
            .inc();
    }

    pub fn frame(&self, r#type: &'static str) {
        self.frames_received
            .get_or_create(&FrameType { r#type })
            .inc();
    }

    pub fn error(&self, code: ErrorCode) {
        self.errors_sent
            .get_or_create(&Code {
                code: code.as_str(),
            })
            .inc();
    }

    /// Awaits a store call, recording how long it took under `op`.
    pub async fn timed<T>(&self, op: &'static str, call: impl Future<Output = T>) -> T {
        let started = std::time::Instant::now();
        let result = call.await;
        self.store_latency
            .get_or_create(&Operation { op })
            .observe(started.elapsed().as_secs_f64());
        result
    }

    pub fn recovery(&self, complete: bool) {
        let outcome = if complete { "complete" } else { "incomplete" };
        self.recoveries.get_or_create(&Outcome { outcome }).inc();
    }
}

/// What a close code says about why a connection ended, as a label.
pub fn close_reason(code: u16) -> &'static str {
    match code {
        1001 => "idle_timeout",
        1002 | 1007 | 1009 => "protocol",
        1008 => "policy",
        1012 => "restart",
        1013 => "slow_reader",
        _ => "server_error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_names_every_metric_with_its_labels() {
        let m = Metrics::new();
        m.messages_stored.inc();
        m.closed("slow_reader");
        m.error(ErrorCode::RateLimited);
        m.outbound_shed.inc_by(2);
        let text = m.render(3, 1, false);
        assert!(text.contains("chorus_outbound_shed_total 2"), "{text}");
        assert!(text.contains("chorus_messages_stored_total 1"), "{text}");
        assert!(text.contains("chorus_connections_open 3"), "{text}");
        assert!(
            text.contains("chorus_connections_closed_total{reason=\"slow_reader\"} 1"),
            "{text}"
        );
        assert!(
            text.contains("chorus_errors_sent_total{code=\"rate_limited\"} 1"),
            "{text}"
        );
        assert!(text.ends_with("# EOF\n"));
    }
}
