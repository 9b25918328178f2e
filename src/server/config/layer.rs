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
