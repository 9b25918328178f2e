//! How the one table of settings in `config/mod.rs` becomes code: the grouped [`Config`]
//! with its defaults, the [`Layer`] that the file, the environment and the flags fill (every key
//! optional), and the one pass that parses a layer's values into the config's types.
//!
//! [`Config`]: super::Config
//! [`Layer`]: super::Layer

use super::values::Wanted;
use std::{net::SocketAddr, num::ParseIntError, str::FromStr, time::Duration};

/// Declares every setting once. Each key gives its doc (also the flag's help), an optional
/// `#[arg(..)]` for clap, the type a layer reads, `=> the type the config holds` when the value
/// is parsed, its default, and its environment variable; its flag is `--<key-with-dashes>`.
macro_rules! settings {
    ($(
        $(#[doc = $gdoc:literal])*
        $group:ident: $Group:ident {$(
            $(#[doc = $doc:literal])*
            $(#[arg($($arg:tt)*)])?
            $key:ident: $Raw:ty $(=> $T:ty)? = $default:expr, env $env:literal;
        )*}
    )*) => {
        /// The server's settings after all layers are applied, by group. In the file, the
        /// environment and the flags the keys are flat (`history_size`, not `rooms.history_size`).
        #[derive(Debug, Clone, Default, PartialEq, Eq)]
        pub struct Config {$(
            $(#[doc = $gdoc])*
            pub $group: $Group,
        )*}

        $(
            $(#[doc = $gdoc])*
            #[derive(Debug, Clone, PartialEq, Eq)]
            pub struct $Group {$(
                $(#[doc = $doc])*
                pub $key: settings!(@typed $Raw $(, $T)?),
            )*}

            impl Default for $Group {
                fn default() -> Self {
                    Self {$($key: $default,)*}
                }
            }
        )*

        /// One layer of settings: every key optional. The file is parsed into it, and clap fills
        /// it from flags and environment variables (a flag beats its variable).
        #[derive(Debug, Default, Clone, serde::Deserialize, clap::Args)]
        #[serde(deny_unknown_fields)]
        pub struct Layer {$($(
            $(#[doc = $doc])*
            #[arg(long, env = $env)]
            $(#[arg($($arg)*)])?
            pub $key: Option<$Raw>,
        )*)*}

        impl Layer {
            /// This layer laid over `below`: each key this layer sets wins.
            pub fn over(self, below: Layer) -> Layer {
                Layer {$($($key: self.$key.or(below.$key),)*)*}
            }
        }

        impl Config {
            /// Lays one layer over this config: every key the layer sets wins. Values that are
            /// not plain numbers or text are parsed here, once; one that does not parse is
            /// refused, naming its key.
            pub fn apply(&mut self, layer: Layer) -> Result<(), ConfigError> {
                $($(
                    if let Some(raw) = layer.$key {
                        self.$group.$key = Setting::from_setting(raw).map_err(|why: Wanted| {
                            ConfigError::Invalid {
                                key: stringify!($key),
                                why: why.to_owned(),
                            }
                        })?;
                    }
                )*)*
                Ok(())
            }
        }
    };
    (@typed $Raw:ty) => { $Raw };
    (@typed $Raw:ty, $T:ty) => { $T };
}
pub(super) use settings;

/// A value the config holds, made from what a layer read (`Raw`).
pub(super) trait Setting<Raw>: Sized {
    fn from_setting(raw: Raw) -> Result<Self, Wanted>;
}

/// Text that parses into a setting's value (or a list entry).
pub(super) trait Parse: Sized {
    fn parse(s: &str) -> Result<Self, Wanted>;
}

/// Numbers, flags and the listen address are taken as clap and serde read them.
macro_rules! as_read {
    ($($T:ty),*) => {$(
        impl Setting<$T> for $T {
            fn from_setting(raw: $T) -> Result<Self, Wanted> {
                Ok(raw)
            }
        }
    )*};
}
as_read!(u32, u64, usize, bool, SocketAddr);

impl<T: Parse> Setting<String> for T {
    fn from_setting(raw: String) -> Result<Self, Wanted> {
        T::parse(&raw)
    }
}

/// An optional value: empty text unsets it (e.g. an environment variable switching off what
/// the file set).
impl<T: Parse> Setting<String> for Option<T> {
    fn from_setting(raw: String) -> Result<Self, Wanted> {
        if raw.is_empty() {
            Ok(None)
        } else {
            T::parse(&raw).map(Some)
        }
    }
}

/// A list (comma-separated in the environment and on the command line): empty entries are
/// dropped, so an empty variable means an empty list, not one empty entry.
impl<T: Parse> Setting<Vec<String>> for Vec<T> {
    fn from_setting(raw: Vec<String>) -> Result<Self, Wanted> {
        raw.iter()
            .filter(|s| !s.trim().is_empty())
            .map(|s| T::parse(s))
            .collect()
    }
}

impl Parse for String {
    fn parse(s: &str) -> Result<Self, Wanted> {
        Ok(s.to_owned())
    }
}

/// An address beside the main listener (`metrics_listen`, `status_listen`).
impl Parse for SocketAddr {
    fn parse(s: &str) -> Result<Self, Wanted> {
        s.parse()
            .map_err(|_| "an address and port, e.g. 127.0.0.1:9100")
    }
}

/// A duration as a whole number of milliseconds (keys ending in `_ms`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub struct Millis(pub u64);

/// A duration as a whole number of seconds (keys ending in `_secs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub struct Secs(pub u64);

impl FromStr for Millis {
    type Err = ParseIntError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(Self)
    }
}

impl FromStr for Secs {
    type Err = ParseIntError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse().map(Self)
    }
}

impl Setting<Millis> for Duration {
    fn from_setting(raw: Millis) -> Result<Self, Wanted> {
        Ok(Duration::from_millis(raw.0))
    }
}

impl Setting<Secs> for Duration {
    fn from_setting(raw: Secs) -> Result<Self, Wanted> {
        Ok(Duration::from_secs(raw.0))
    }
}
