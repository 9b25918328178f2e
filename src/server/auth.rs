//! Signed identity (`auth = "jwt"`): a host application vouches for who a user is with a JSON Web
//! Token (`jsonwebtoken`), given at connect as `/ws?token=…` or `Authorization: Bearer …`. Its
//! claims `sub` (who) and `name` (shown to others) bind the connection: the name cannot be
//! changed, and every connection of one `sub` carries the same session.
//!
//! Anonymous mode (the default) has none of this: names are first come, first served.

use super::config::{Auth, Config, JwtAlgorithm};
use crate::protocol::{ErrorCode, Invalid, UserName};
use axum::http::{HeaderMap, Uri, header};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, errors::ErrorKind};
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// Who a verified token says the user is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub subject: String,
    pub name: UserName,
    /// The token's `moderator: true` claim.
    pub moderator: bool,
}

impl Identity {
    /// The session every connection of this subject carries: 128 bits of a hash of `sub`, in
    /// the form of a random session id, the same on every node.
    pub fn session(&self) -> String {
        let digest = Sha256::digest(format!("chorus-session\0{}", self.subject).as_bytes());
        digest[..16].iter().map(|b| format!("{b:02x}")).collect()
    }
}

#[derive(Deserialize)]
struct Claims {
    sub: String,
    name: String,
    #[serde(default)]
    moderator: bool,
}

/// Checks tokens against the configured key and algorithm.
pub struct Verifier {
    key: DecodingKey,
    validation: Validation,
}

impl Verifier {
    /// None in anonymous mode. Fails (naming the setting) when the key cannot be read.
    pub fn from_config(config: &Config) -> anyhow::Result<Option<Self>> {
        if config.identity.auth != Auth::Jwt {
            return Ok(None);
        }
        let algorithm = match config.identity.jwt_algorithm {
            JwtAlgorithm::Hs256 => Algorithm::HS256,
            JwtAlgorithm::Rs256 => Algorithm::RS256,
            JwtAlgorithm::EdDsa => Algorithm::EdDSA,
        };
        let key = match algorithm {
            Algorithm::HS256 => {
                let secret = config.identity.jwt_secret.as_deref().unwrap_or_default();
                DecodingKey::from_secret(secret.as_bytes())
            }
            _ => {
                let path = config
                    .identity
                    .jwt_public_key
                    .as_deref()
                    .unwrap_or_default();
                let pem = std::fs::read(path)
                    .map_err(|e| anyhow::anyhow!("cannot read jwt_public_key {path}: {e}"))?;
                let key = if algorithm == Algorithm::RS256 {
                    DecodingKey::from_rsa_pem(&pem)
                } else {
                    DecodingKey::from_ed_pem(&pem)
                };
                key.map_err(|e| anyhow::anyhow!("jwt_public_key {path} is not a usable key: {e}"))?
            }
        };
        // Only the configured algorithm: a token may not pick a weaker one (or "none").
        let mut validation = Validation::new(algorithm);
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.leeway = 30;
        Ok(Some(Self { key, validation }))
    }

    /// The identity a token vouches for, or why it is refused.
    pub fn verify(&self, token: Option<&str>) -> Result<Identity, Invalid> {
        let token = token.filter(|t| !t.is_empty()).ok_or_else(|| {
            Invalid::new(
                ErrorCode::TokenRequired,
                "this server needs a token from the site you came from (?token= or Authorization)",
            )
        })?;
        let data = jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation).map_err(
            |e| match e.kind() {
                ErrorKind::ExpiredSignature => Invalid::new(
                    ErrorCode::TokenExpired,
                    "the token has expired; get a new one",
                ),
                _ => Invalid::new(
                    ErrorCode::InvalidToken,
                    format!("the token is refused: {e}"),
                ),
            },
        )?;
        let name = UserName::parse(&data.claims.name).map_err(|e| {
            Invalid::new(
                ErrorCode::InvalidToken,
                format!("the token's name is not usable: {}", e.message),
            )
        })?;
        Ok(Identity {
            subject: data.claims.sub,
            name,
            moderator: data.claims.moderator,
        })
    }
}

/// The token of an upgrade request: `Authorization: Bearer …`, else the `token` query parameter
/// (a browser cannot set headers on a WebSocket).
pub fn token_of<'a>(headers: &'a HeaderMap, uri: &'a Uri) -> Option<&'a str> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    bearer.or_else(|| {
        uri.query()?
            .split('&')
            .find_map(|pair| pair.strip_prefix("token="))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_subject_has_one_session_everywhere_and_others_another() {
        let id = |sub: &str| Identity {
            subject: sub.into(),
            name: UserName::parse("ann").expect("valid"),
            moderator: false,
        };
        assert_eq!(id("u1").session(), id("u1").session());
        assert_ne!(id("u1").session(), id("u2").session());
        let session = id("u1").session();
        assert_eq!(session.len(), 32);
        assert!(session.bytes().all(|b| b.is_ascii_hexdigit()));
    }

    #[test]
    fn the_token_comes_from_the_header_or_the_query() {
        let mut headers = HeaderMap::new();
        let uri: Uri = "/ws?x=1&token=abc.def.ghi".parse().expect("uri");
        assert_eq!(token_of(&headers, &uri), Some("abc.def.ghi"));
        headers.insert(
            header::AUTHORIZATION,
            "Bearer h.e.ader".parse().expect("value"),
        );
        assert_eq!(token_of(&headers, &uri), Some("h.e.ader"));
        let bare: Uri = "/ws".parse().expect("uri");
        assert_eq!(token_of(&HeaderMap::new(), &bare), None);
    }
}
