//! Where layers come from: the command line (with the environment) and the file.

use super::{ConfigError, Layer};
use clap::Parser;
use std::path::PathBuf;

/// Command line of the `chorus` binary.
#[derive(Debug, Parser)]
#[command(name = "chorus", version, about = "Chorus real-time chat server")]
pub struct Cli {
    /// Configuration file (TOML); defaults to ./Leptos.toml when present.
    #[arg(long, env = "CHORUS_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub overrides: Layer,
    /// The address cargo-leptos serves the site at (its `site-addr`, or the `LEPTOS_SITE_ADDR`
    /// it was given), which it hands to the server it runs: that server listens there, unless
    /// `listen` is set by variable or flag.
    #[arg(long, env = "LEPTOS_SITE_ADDR", hide = true)]
    pub leptos_site_addr: Option<std::net::SocketAddr>,
}

pub(super) fn read_layer(path: &PathBuf) -> Result<Layer, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.clone(),
        source,
    })?;
    toml::from_str(&text).map_err(|source| ConfigError::Parse {
        path: path.clone(),
        source: Box::new(source),
    })
}
