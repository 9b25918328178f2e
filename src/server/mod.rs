//! Everything that runs only on the server: configuration, HTTP routes, the WebSocket protocol,
//! room state and the message bus.
//!
//! # Layout
//! - this file: the node's shared state ([`AppState`]), its routes ([`router`]) and its life
//!   ([`run`], or [`Server`] to hand it a store): serve, drain, stop.
//! - [`config`]: the settings, from `Leptos.toml`, the environment and the flags.
//! - [`conn`]: one WebSocket connection: the upgrade, the connection's one task and its
//!   WebSocket framing, and the protocol's commands (one handler per client frame type).
//! - [`frame`]: every server frame's encoding, and the close codes.
//! - [`guard`]: who may connect and how fast: origins, client addresses, caps, rate limits.
//! - [`auth`]: signed identity (JWT).
//! - [`net`]: origins, `host:port`s and networks as settings and requests spell them.
//! - [`hub`]: each room's task on this node: fan-out to its members here, gap fills from history.
//! - `outbox`: a connection's bounded outbound queue, fed by the hub and the connection.
//! - [`store`]: shared state (sessions, names, members, history): in memory or in Redis.
//! - [`bus`]: how a room's events reach every node: in memory, or Redis pub/sub (`bus::link`
//!   finds the Redis master, through Sentinel or a Redis Cluster's slot map).
//! - [`metrics`], [`status`]: `/metrics` and the status page's data.
//! - `site`: the pages and the files cargo-leptos built, and the Leptos settings they use.
//! - `tls`: serving HTTPS and WSS directly.

pub mod auth;
pub mod bus;
pub mod config;
pub mod conn;
pub mod frame;
pub mod guard;
pub mod hub;
mod linger;
pub mod metrics;
pub mod net;
mod outbox;
mod packed;
mod site;
pub mod status;
pub mod store;
mod tls;

use axum::{Router, extract::FromRef, routing::get, serve::ListenerExt};
use axum::{http::StatusCode, response::IntoResponse};
use config::Config;
use hub::Hub;
use leptos::prelude::LeptosOptions;
use std::{
    future::{Future, IntoFuture},
    sync::Arc,
    time::Duration,
};
use store::{MemoryStore, RedisStore, Store, redis::RedisSettings};
use tokio::net::TcpListener;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

/// What every request handler can reach.
#[derive(Clone, FromRef)]
pub struct AppState {
    pub config: Arc<Config>,
    pub node_id: Arc<str>,
    pub store: Arc<dyn Store>,
    pub hub: Arc<Hub>,
    pub leptos_options: LeptosOptions,
    /// Cancelled when the node begins to drain: `/readyz` and new WebSockets get 503, and open
    /// connections are closed with 1012 over `drain_ms`.
    pub shutdown: CancellationToken,
    /// Every open WebSocket connection.
    pub connections: TaskTracker,
    /// Origin check, client addresses, connection caps and connect rates.
    pub gate: Arc<guard::Gate>,
    /// Checks tokens when `auth = "jwt"`.
    pub verifier: Option<Arc<auth::Verifier>>,
    pub metrics: Arc<metrics::Metrics>,
    /// This node's recent history, for the status page.
    pub status: Arc<status::Sampler>,
    /// The site's content-named files, compressed once.
    pub packed: Arc<packed::Packed>,
}

impl AppState {
    /// Builds the node on `store`, or on the store `config` names: the in-memory store, or the
    /// Redis store when `redis_url` is set. If Redis is unreachable, the node starts anyway, not
    /// ready, and connects as soon as Redis answers. `stop` ends the store's background tasks.
    pub async fn new(
        config: Config,
        store: Option<Arc<dyn Store>>,
        stop: CancellationToken,
    ) -> anyhow::Result<Self> {
        let node_id: Arc<str> = match &config.node.node_id {
            Some(id) => id.as_str().into(),
            None => format!("node-{:08x}", rand::random::<u32>()).into(),
        };
        let session_ttl = config.rooms.session_ttl_secs;
        let room_idle = config.rooms.room_idle_secs;
        let metrics = Arc::new(metrics::Metrics::new());
        let store: Arc<dyn Store> = match (store, config.redis.target()) {
            (Some(store), _) => store,
            (None, None) => Arc::new(MemoryStore::from_config(&config)),
            (None, Some(target)) => {
                let settings = RedisSettings {
                    target,
                    wait_replicas: config.redis.redis_wait_replicas,
                    wait_timeout: config.redis.redis_wait_timeout_ms,
                    node: node_id.clone(),
                    history: config.history(),
                    dedup_window: config.rooms.dedup_window,
                    list_max: config.rooms.presence_list_max,
                    session_ttl,
                    node_ttl: config.redis.node_ttl_ms,
                    room_ttl: room_idle,
                    pubsub_lost: metrics.pubsub_lost.clone(),
                };
                match RedisStore::connect(settings.clone(), stop.clone()).await {
                    Ok(store) => store,
                    // Alive without Redis: not ready (503) until it answers, then by itself.
                    Err(e) => {
                        tracing::warn!(cause = %e, "redis unreachable at start: serving 503 until it answers");
                        store::Later::connect_in_background(settings, stop)
                    }
                }
            }
        };
        let hub = Hub::new(store.clone(), &config, metrics.clone());
        let gate = guard::Gate::new(&config);
        let verifier = auth::Verifier::from_config(&config)?.map(Arc::new);
        let leptos_options = site::leptos_options(&config);
        let pkg =
            std::path::Path::new(&*leptos_options.site_root).join(&*leptos_options.site_pkg_dir);
        Ok(Self {
            verifier,
            packed: packed::Packed::new(pkg),
            leptos_options,
            gate,
            config: Arc::new(config),
            node_id,
            store,
            hub,
            shutdown: CancellationToken::new(),
            connections: TaskTracker::new(),
            metrics,
            status: Arc::default(),
        })
    }
}

/// Liveness: the process serves HTTP.
async fn healthz() -> &'static str {
    "ok"
}

/// Readiness: 200 when this node can serve users (its store answers, Redis when configured),
/// 503 otherwise or once shutdown began, so a balancer sends new users elsewhere.
async fn readyz(axum::extract::State(app): axum::extract::State<AppState>) -> impl IntoResponse {
    if app.shutdown.is_cancelled() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down")
    } else if app.store.ready().await {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "store unreachable")
    }
}

/// `GET /metrics`: the node's counters and its current state, in the OpenMetrics text format.
async fn metrics(axum::extract::State(app): axum::extract::State<AppState>) -> impl IntoResponse {
    let text = app.metrics.render(
        app.connections.len(),
        app.hub.room_count(),
        app.shutdown.is_cancelled(),
    );
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
}

/// `/metrics` alone, for its own address (`metrics_listen`).
fn metrics_router(app: AppState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(app)
}

pub fn router(app: AppState) -> Router {
    let site = site::site(&app, app.config.observe.status_on_main());
    let routes = Router::new()
        .route("/ws", get(conn::upgrade))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz));
    let routes = if app.config.observe.metrics_listen.is_none() {
        routes.route("/metrics", get(metrics))
    } else {
        routes
    };
    // One line per HTTP request (the WebSocket upgrade included): method and path (never the
    // query, which may hold a token), then status and latency when the response starts. A 503
    // while draining is an answer, not a failure of this node: not logged as an error.
    let access_log = tower_http::trace::TraceLayer::new_for_http()
        .make_span_with(|req: &axum::http::Request<axum::body::Body>| {
            tracing::info_span!("http", method = %req.method(), path = %req.uri().path())
        })
        .on_response(tower_http::trace::DefaultOnResponse::new().level(tracing::Level::INFO))
        .on_body_chunk(())
        .on_eos(())
        .on_failure(());
    routes.merge(site).with_state(app).layer(access_log)
}

/// Serves `service` on its own address (`key` names the setting) until `stop`.
async fn serve_beside(
    key: &'static str,
    addr: std::net::SocketAddr,
    service: Router,
    stop: &CancellationToken,
) -> anyhow::Result<()> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {key} {addr}: {e}"))?;
    tracing::info!(%addr, key, "listening beside the main address");
    let stop = stop.clone();
    tokio::spawn(async move {
        let served = axum::serve(linger::Lingering(listener), service)
            .with_graceful_shutdown(async move { stop.cancelled().await })
            .await;
        if let Err(e) = served {
            tracing::warn!(cause = %e, key, "listener failed");
        }
    });
    Ok(())
}

fn set_nodelay(tcp: &mut tokio::net::TcpStream) {
    if let Err(e) = tcp.set_nodelay(true) {
        tracing::debug!(cause = %e, "cannot set TCP_NODELAY");
    }
}

/// Serves one node with `config` until `shutdown` resolves: `Server::new(config).run(…)`.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    Server::new(config).run(listener, shutdown).await
}

/// A node to serve: its settings, and the shared state it uses when that is not the one its
/// settings name.
pub struct Server {
    config: Config,
    store: Option<Arc<dyn Store>>,
}

impl Server {
    pub fn new(config: Config) -> Self {
        Self {
            config,
            store: None,
        }
    }

    /// Serves on `store` (its bus included) instead of the store `redis_url` and the other Redis
    /// settings name. Several nodes in one process on one [`MemoryStore`] share sessions, rooms,
    /// history and events as nodes on one Redis do: how tests run many nodes without Redis.
    pub fn with_store(mut self, store: Arc<dyn Store>) -> Self {
        self.store = Some(store);
        self
    }

    /// Serves until `shutdown` resolves, then drains: `/readyz` and new WebSockets answer 503 at
    /// once, open connections are told to reconnect elsewhere (1012) each at a random moment
    /// within `drain_ms`, and once they are gone (or after `shutdown_grace_secs` more) the server
    /// stops.
    pub async fn run(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let Server { config, store } = self;
        let stop = CancellationToken::new();
        // Stops the store's background tasks however this function ends.
        let _stop_guard = stop.clone().drop_guard();
        let app = AppState::new(config, store, stop.clone()).await?;
        let store = app.store.clone();
        let drain = app.config.node.drain_ms;
        let grace = app.config.node.shutdown_grace_secs;
        let draining = app.shutdown.clone();
        let connections = app.connections.clone();
        let addr = listener.local_addr()?;
        let tls = match (&app.config.node.tls_cert, &app.config.node.tls_key) {
            (Some(cert), Some(key)) => Some(tls::acceptor(cert.as_ref(), key.as_ref())?),
            _ => None,
        };
        if let Some(addr) = app.config.observe.metrics_listen {
            serve_beside("metrics_listen", addr, metrics_router(app.clone()), &stop).await?;
        }
        if app.config.observe.status_page
            && let Some(addr) = app.config.observe.status_listen
        {
            serve_beside(
                "status_listen",
                addr,
                site::status_router(app.clone()),
                &stop,
            )
            .await?;
        }
        if app.config.observe.status_page {
            status::spawn(app.clone(), stop.clone());
        }
        tracing::info!(
            %addr,
            node = %app.node_id,
            redis = app.config.redis.in_use(),
            tls = tls.is_some(),
            max_connections = app.gate.max_connections(),
            "chorus listening"
        );
        tokio::spawn({
            let draining = draining.clone();
            async move {
                shutdown.await;
                tracing::info!(
                    drain_ms = drain.as_millis() as u64,
                    "draining: connections are moved elsewhere"
                );
                draining.cancel();
            }
        });
        // The listener stays open while draining, so balancers see the 503s and move on.
        let graceful = {
            let draining = draining.clone();
            async move {
                draining.cancelled().await;
                connections.close();
                if tokio::time::timeout(drain + grace, connections.wait())
                    .await
                    .is_err()
                {
                    tracing::warn!(
                        open = connections.len(),
                        "connections still open after the drain and grace period; exiting"
                    );
                } else {
                    tracing::info!("drained: stopping");
                }
            }
        };
        // Each request knows its peer's address: the client's, or a trusted proxy's (see `guard`).
        let service = router(app).into_make_service_with_connect_info::<std::net::SocketAddr>();
        let serve: std::pin::Pin<Box<dyn Future<Output = std::io::Result<()>> + Send>> = match tls {
            // Frames are batched and flushed by the writer, so Nagle's algorithm only adds delay.
            // Every connection closes gently (`linger`): what was written last is read.
            None => Box::pin(
                axum::serve(
                    linger::Lingering(listener).tap_io(|io| {
                        if let Some(tcp) = io.get_mut() {
                            set_nodelay(tcp);
                        }
                    }),
                    service,
                )
                .with_graceful_shutdown(graceful)
                .into_future(),
            ),
            // The TLS listener sets TCP_NODELAY itself; `tap_io` is what lends it connect info.
            Some(acceptor) => Box::pin(
                axum::serve(
                    linger::Lingering(tls::TlsListener::new(listener, acceptor)?).tap_io(|_| {}),
                    service,
                )
                .with_graceful_shutdown(graceful)
                .into_future(),
            ),
        };
        tokio::pin!(serve);
        let result = tokio::select! {
            result = &mut serve => result,
            // Plain HTTP requests still in flight get the grace period once the drain is over.
            _ = draining.cancelled() => match tokio::time::timeout(drain + grace * 2, serve).await {
                Ok(result) => result,
                Err(_) => {
                    tracing::warn!("requests still open after the grace period; exiting");
                    Ok(())
                }
            },
        };
        // Saying goodbye to the other nodes needs the store: with Redis out of reach it would wait
        // behind every leave and release still queued for it, for minutes. The node's heartbeat
        // expires without it (its members are then removed as a dead node's).
        let patience = grace.max(Duration::from_secs(2));
        if tokio::time::timeout(patience, store.close()).await.is_err() {
            tracing::warn!("the store did not answer in time; stopping without deregistering");
        }
        result.map_err(Into::into)
    }
}
