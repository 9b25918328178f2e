//! Settings that are not plain numbers or text, parsed once when the layers are applied, so
//! nothing after loading parses a setting again.

use super::settings::Parse;
use crate::server::net::{parse_network, parse_origin};
use ipnet::IpNet;
use std::fmt;

/// How users are named (`auth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// Names first come, first served.
    Anonymous,
    /// A host application's signed token names the user (see `server::auth`).
    Jwt,
}

/// How signed tokens are checked (`jwt_algorithm`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtAlgorithm {
    /// With `jwt_secret`.
    Hs256,
    /// With `jwt_public_key`.
    Rs256,
    EdDsa,
}

/// How log lines are written (`log_format`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// For people.
    Text,
    /// One JSON object a line, for log collectors.
    Json,
}

/// An `allowed_origins` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AllowedOrigin {
    /// `*`: pages of any origin.
    Any,
    /// `scheme://host[:port]`, the host lower-cased, the scheme's port filled in.
    Origin {
        scheme: String,
        host: String,
        port: u16,
    },
}

/// Why a value does not parse: what the key wants.
pub(super) type Wanted = &'static str;

impl Parse for Auth {
    fn parse(s: &str) -> Result<Self, Wanted> {
        match s {
            "anonymous" => Ok(Self::Anonymous),
            "jwt" => Ok(Self::Jwt),
            _ => Err("anonymous or jwt"),
        }
    }
}

impl Parse for JwtAlgorithm {
    fn parse(s: &str) -> Result<Self, Wanted> {
        match s {
            "HS256" => Ok(Self::Hs256),
            "RS256" => Ok(Self::Rs256),
            "EdDSA" => Ok(Self::EdDsa),
            _ => Err("HS256, RS256 or EdDSA"),
        }
    }
}

impl JwtAlgorithm {
    /// As the setting spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hs256 => "HS256",
            Self::Rs256 => "RS256",
            Self::EdDsa => "EdDSA",
        }
    }
}

impl fmt::Display for JwtAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Parse for LogFormat {
    fn parse(s: &str) -> Result<Self, Wanted> {
        match s {
            "text" => Ok(Self::Text),
            "json" => Ok(Self::Json),
            _ => Err("text or json"),
        }
    }
}

impl Parse for AllowedOrigin {
    fn parse(s: &str) -> Result<Self, Wanted> {
        AllowedOrigin::parse(s)
    }
}

impl AllowedOrigin {
    pub fn parse(s: &str) -> Result<Self, Wanted> {
        if s == "*" {
            return Ok(Self::Any);
        }
        parse_origin(s)
            .map(|(scheme, host, port)| Self::Origin { scheme, host, port })
            .ok_or("\"*\" or origins like https://chat.example.com (scheme, host, optional port)")
    }
}

/// A `trusted_proxies` entry: an address (`10.0.0.7`, `::1`) or a network (`10.0.0.0/8`).
pub fn parse_proxy(s: &str) -> Result<IpNet, Wanted> {
    parse_network(s).ok_or("addresses or networks, like 10.0.0.7 or 10.0.0.0/8")
}

impl Parse for IpNet {
    fn parse(s: &str) -> Result<Self, Wanted> {
        parse_proxy(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_value_parses_as_documented_and_nothing_else_does() {
        assert_eq!(Auth::parse("jwt"), Ok(Auth::Jwt));
        assert!(Auth::parse("JWT").is_err());
        for algorithm in ["HS256", "RS256", "EdDSA"] {
            let parsed = JwtAlgorithm::parse(algorithm).expect("an algorithm");
            assert_eq!(parsed.as_str(), algorithm);
        }
        assert!(JwtAlgorithm::parse("none").is_err());
        assert_eq!(LogFormat::parse("json"), Ok(LogFormat::Json));
        assert!(LogFormat::parse("xml").is_err());
        assert_eq!(AllowedOrigin::parse("*"), Ok(AllowedOrigin::Any));
        assert_eq!(
            AllowedOrigin::parse("HTTPS://Chat.Example.com"),
            Ok(AllowedOrigin::Origin {
                scheme: "https".into(),
                host: "chat.example.com".into(),
                port: 443
            })
        );
        assert!(AllowedOrigin::parse("chat.example.com").is_err());
        assert_eq!(
            parse_proxy("10.0.0.7").map(|n| n.to_string()).as_deref(),
            Ok("10.0.0.7/32")
        );
        assert!(parse_proxy("10.0.0.0/33").is_err());
    }
}
