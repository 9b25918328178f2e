//! Everything that runs only on the server: configuration, HTTP routes, the WebSocket protocol,
//! room state and the message bus.

pub mod bus;
pub mod config;
pub mod hub;
pub mod state;
pub mod ws;

use crate::app::{App, shell};
use axum::{Router, extract::FromRef, routing::get, serve::ListenerExt};
use bus::{Bus, MemoryBus};
use config::Config;
use hub::Hub;
use leptos::prelude::LeptosOptions;
use leptos_axum::{LeptosRoutes, generate_route_list};
use state::SharedState;
use std::{
    future::{Future, IntoFuture},
    sync::Arc,
    time::Duration,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// What every request handler can reach.
#[derive(Clone, FromRef)]
pub struct AppState {
    pub config: Arc<Config>,
    pub node_id: Arc<str>,
    pub state: Arc<SharedState>,
    pub hub: Arc<Hub>,
    pub leptos_options: LeptosOptions,
    /// Cancelled when the server begins to shut down; connections then close with 1001.
    pub shutdown: CancellationToken,
}

impl AppState {
    pub fn new(config: Config, bus: Arc<dyn Bus>) -> Self {
        let node_id: Arc<str> = match &config.node_id {
            Some(id) => id.as_str().into(),
            None => format!("node-{:08x}", rand::random::<u32>()).into(),
        };
        let state = Arc::new(SharedState::new(
            bus.clone(),
            config.history_size,
            config.max_rooms,
        ));
        let hub = Hub::new(
            state.clone(),
            bus,
            Duration::from_millis(config.presence_interval_ms),
        );
        Self {
            leptos_options: leptos_options(&config),
            config: Arc::new(config),
            node_id,
            state,
            hub,
            shutdown: CancellationToken::new(),
        }
    }
}

/// Leptos's settings: names and paths from cargo-leptos's environment when it runs us, the
/// defaults of `[package.metadata.leptos]` otherwise.
fn leptos_options(config: &Config) -> LeptosOptions {
    let env = |key: &str, default: &str| std::env::var(key).unwrap_or_else(|_| default.to_owned());
    LeptosOptions::builder()
        .output_name(env("LEPTOS_OUTPUT_NAME", "chorus"))
        .site_root(config.site_root.as_str())
        .site_pkg_dir(env("LEPTOS_SITE_PKG_DIR", "pkg"))
        .site_addr(config.listen)
        .reload_port(
            env("LEPTOS_RELOAD_PORT", "3001")
                .parse::<u32>()
                .unwrap_or(3001),
        )
        // `Env::from` panics on an unknown value; parsing falls back to the default instead.
        .env(
            std::env::var("LEPTOS_ENV")
                .ok()
                .and_then(|v| v.parse::<leptos::config::Env>().ok())
                .unwrap_or_default(),
        )
        .build()
}

async fn healthz() -> &'static str {
    "ok"
}

pub fn router(app: AppState) -> Router {
    let routes = generate_route_list(App);
    Router::new()
        .route("/ws", get(ws::upgrade))
        .route("/healthz", get(healthz))
        .leptos_routes(&app, routes, {
            let options = app.leptos_options.clone();
            move || shell(options.clone())
        })
        .fallback(leptos_axum::file_and_error_handler::<AppState, _>(shell))
        .with_state(app)
}

/// Serves until `shutdown` resolves, then closes every WebSocket (1001) and waits up to the
/// configured grace period for connections to finish.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let bus: Arc<dyn Bus> = Arc::new(MemoryBus::default());
    let app = AppState::new(config, bus);
    let grace = Duration::from_secs(app.config.shutdown_grace_secs);
    let closing = app.shutdown.clone();
    let addr = listener.local_addr()?;
    tracing::info!(
        %addr,
        node = %app.node_id,
        epoch = %app.state.epoch(),
        "chorus listening"
    );
    // Frames are batched and flushed by the writer, so Nagle's algorithm only adds delay.
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(cause = %e, "cannot set TCP_NODELAY");
        }
    });
    let serve = axum::serve(listener, router(app))
        .with_graceful_shutdown({
            let closing = closing.clone();
            async move {
                shutdown.await;
                tracing::info!("shutting down: closing connections");
                closing.cancel();
            }
        })
        .into_future();
    tokio::pin!(serve);
    tokio::select! {
        result = &mut serve => return result.map_err(Into::into),
        _ = closing.cancelled() => {}
    }
    match tokio::time::timeout(grace, serve).await {
        Ok(result) => result.map_err(Into::into),
        Err(_) => {
            tracing::warn!(
                grace_secs = grace.as_secs(),
                "connections still open after the grace period; exiting"
            );
            Ok(())
        }
    }
}
