//! The `chorus` server binary: configuration, logging, then `server::run` until SIGTERM/Ctrl-C.

use chorus::server::{
    self,
    config::{Cli, Config, LogFormat},
};
use clap::Parser;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let config = match Config::load(Cli::parse()) {
        Ok(config) => config,
        Err(e) => {
            // The log filter is part of the configuration, so log this with the default one.
            tracing_subscriber::fmt()
                .with_env_filter(EnvFilter::new("info"))
                .init();
            tracing::error!(cause = %e, "invalid configuration");
            return std::process::ExitCode::from(2);
        }
    };
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.observe.log))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt().with_env_filter(filter);
    if config.observe.log_format == LogFormat::Json {
        // One object a line: the event's fields, and the span it happened in (a connection's
        // node, id and user name; an HTTP request's method and path).
        logs.json()
            .with_current_span(true)
            .with_span_list(false)
            .init();
    } else {
        logs.init();
    }
    tracing::info!(config = ?config.redacted(), "configuration");

    let listener = match tokio::net::TcpListener::bind(config.node.listen).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(addr = %config.node.listen, cause = %e, "cannot listen");
            return std::process::ExitCode::FAILURE;
        }
    };
    match server::run(listener, config, shutdown_signal()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(cause = %e, "server failed");
            std::process::ExitCode::FAILURE
        }
    }
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(cause = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sig) => {
                sig.recv().await;
            }
            Err(e) => {
                tracing::error!(cause = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}
