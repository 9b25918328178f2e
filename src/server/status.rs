//! The status page's data: this node samples itself every [`SAMPLE_SECS`] (connections, rooms,
//! messages stored and deliveries per second over the last five minutes), shares its status
//! through the store every second so every node's page can show every live node, and answers
//! `GET /status.json` with all of them.

use super::AppState;
use crate::status::{NodeStatus, SAMPLE_SECS, SAMPLES, Series, StatusReport};
use axum::{Json, extract::State};
use std::{
    collections::VecDeque,
    sync::Mutex,
    time::{Duration, Instant},
};
use tokio_util::sync::CancellationToken;

/// How often a node publishes its status for the other nodes' pages.
const SHARE_EVERY: Duration = Duration::from_secs(1);
/// A node's published status outlives a few missed updates, then it is gone from the pages.
const SHARED_FOR: Duration = Duration::from_secs(SAMPLE_SECS * 3);

/// This node's recent history.
pub struct Sampler {
    started: Instant,
    ring: Mutex<Ring>,
}

#[derive(Default)]
struct Ring {
    samples: VecDeque<Sample>,
    /// The counters at the previous sample, for the rates.
    last: Option<(Instant, u64, u64)>,
}

#[derive(Clone, Copy)]
struct Sample {
    connections: f64,
    rooms: f64,
    messages_per_sec: f64,
    deliveries_per_sec: f64,
}

impl Default for Sampler {
    fn default() -> Self {
        Self {
            started: Instant::now(),
            ring: Mutex::default(),
        }
    }
}

impl Sampler {
    fn ring(&self) -> std::sync::MutexGuard<'_, Ring> {
        // Nothing panics while holding it; a poisoned ring is still whole.
        self.ring.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records the node as it is now.
    fn sample(&self, app: &AppState, now: Instant) {
        let messages = app.metrics.messages_stored.get();
        let deliveries = app.metrics.deliveries.get();
        let mut ring = self.ring();
        let (messages_per_sec, deliveries_per_sec) = match ring.last {
            Some((then, m, d)) => {
                let secs = now.duration_since(then).as_secs_f64().max(0.001);
                (
                    messages.saturating_sub(m) as f64 / secs,
                    deliveries.saturating_sub(d) as f64 / secs,
                )
            }
            None => (0.0, 0.0),
        };
        ring.last = Some((now, messages, deliveries));
        if ring.samples.len() == SAMPLES {
            ring.samples.pop_front();
        }
        ring.samples.push_back(Sample {
            connections: app.connections.len() as f64,
            rooms: app.hub.room_count() as f64,
            messages_per_sec,
            deliveries_per_sec,
        });
    }

    fn series(&self) -> Series {
        let ring = self.ring();
        let pick = |f: fn(&Sample) -> f64| ring.samples.iter().map(f).collect();
        Series {
            connections: pick(|s| s.connections),
            rooms: pick(|s| s.rooms),
            messages_per_sec: pick(|s| s.messages_per_sec),
            deliveries_per_sec: pick(|s| s.deliveries_per_sec),
        }
    }
}

/// This node now: counts read live, series from the samples.
pub async fn this_node(app: &AppState) -> NodeStatus {
    let redis = if app.config.redis.in_use() {
        Some(app.store.ready().await)
    } else {
        None
    };
    NodeStatus {
        node: app.node_id.to_string(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        uptime_secs: app.status.started.elapsed().as_secs(),
        redis,
        draining: app.shutdown.is_cancelled(),
        connections: app.connections.len() as u64,
        rooms: app.hub.room_count() as u64,
        series: app.status.series(),
    }
}

/// This node, then every other live node as it last reported itself.
pub async fn report(app: &AppState) -> StatusReport {
    let mut others: Vec<NodeStatus> = app
        .store
        .node_statuses()
        .await
        .iter()
        .filter_map(|json| serde_json::from_str::<NodeStatus>(json).ok())
        .filter(|n| n.node != *app.node_id)
        .collect();
    others.sort_by(|a, b| a.node.cmp(&b.node));
    let mut nodes = vec![this_node(app).await];
    nodes.extend(others);
    StatusReport { nodes }
}

/// `GET /status.json`.
pub async fn status_json(State(app): State<AppState>) -> Json<StatusReport> {
    Json(report(&app).await)
}

/// Samples the node every [`SAMPLE_SECS`] and shares its status with the other nodes every
/// [`SHARE_EVERY`] (so their pages show its counts, and whether Redis answers it, within a
/// second), until `stop`.
pub fn spawn(app: AppState, stop: CancellationToken) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(SHARE_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_sample: Option<Instant> = None;
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = every.tick() => {}
            }
            let now = Instant::now();
            if last_sample.is_none_or(|t| now.duration_since(t).as_secs() >= SAMPLE_SECS) {
                app.status.sample(&app, now);
                last_sample = Some(now);
            }
            if app.config.redis.in_use() {
                match serde_json::to_string(&this_node(&app).await) {
                    Ok(json) => app.store.share_status(json, SHARED_FOR).await,
                    Err(e) => tracing::error!(cause = %e, "cannot encode this node's status"),
                }
            }
        }
    });
}
