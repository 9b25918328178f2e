//! Addresses as the settings and the requests spell them: origins, `host:port` authorities,
//! networks. Shared by `config` (checking settings) and `guard` (checking requests).

use ipnet::IpNet;
use std::net::IpAddr;

/// `scheme://host[:port]` of an `Origin` header or an `allowed_origins` entry, with the host in
/// lower case and the scheme's default port filled in.
pub fn parse_origin(origin: &str) -> Option<(String, String, u16)> {
    let (scheme, rest) = origin.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let default = match scheme.as_str() {
        "http" => 80,
        "https" => 443,
        _ => return None,
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let (host, port) = split_host_port(rest, default)?;
    Some((scheme, host, port))
}

/// `host[:port]` (the host may be a bracketed IPv6 address), lower-cased, with `default` for a
/// missing port. None for anything else (paths, user info, empty hosts).
pub fn split_host_port(authority: &str, default: u16) -> Option<(String, u16)> {
    let (host, port) = match authority.rsplit_once(':') {
        // A bare IPv6 address has colons but no brackets: not a valid authority.
        Some((host, port)) if !port.contains(']') => (host, Some(port.parse::<u16>().ok()?)),
        _ => (authority, None),
    };
    let valid = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._[]:".contains(&b))
        && (host.starts_with('[') == host.ends_with(']'))
        && (host.starts_with('[') || !host.contains(':'));
    valid.then(|| (host.to_ascii_lowercase(), port.unwrap_or(default)))
}

/// An address (`10.0.0.7`, `::1`) or a network (`10.0.0.0/8`).
pub fn parse_network(s: &str) -> Option<IpNet> {
    let s = s.trim();
    s.parse::<IpNet>()
        .ok()
        .or_else(|| s.parse::<IpAddr>().ok().map(IpNet::from))
}
