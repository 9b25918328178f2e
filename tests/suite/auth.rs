//! Signed identity (`auth = "jwt"`): a host application's token names the user.

use crate::common;

use chorus::{
    protocol::{ClientMsg, ServerMsg},
    server::config::{Auth, JwtAlgorithm},
};
use common::{Client, Endpoint, PATIENCE, TestServer};
use futures_util::StreamExt;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde::Serialize;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio_tungstenite::tungstenite::Message;

const SECRET: &str = "a shared secret of at least 32 bytes, for tests";

#[derive(Serialize)]
struct Claims<'a> {
    sub: &'a str,
    name: &'a str,
    exp: u64,
}

fn in_secs(secs: i64) -> u64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs();
    now.saturating_add_signed(secs)
}

/// What a host application does: sign who the user is, valid for a while.
fn mint(alg: Algorithm, key: &EncodingKey, sub: &str, name: &str, exp: u64) -> String {
    jsonwebtoken::encode(&Header::new(alg), &Claims { sub, name, exp }, key).expect("signs")
}

fn hs256(sub: &str, name: &str) -> String {
    let key = EncodingKey::from_secret(SECRET.as_bytes());
    mint(Algorithm::HS256, &key, sub, name, in_secs(3600))
}

/// The server's WebSocket, with a token in the address as the browser page passes it.
struct WithToken<'a>(&'a TestServer, String);

impl Endpoint for WithToken<'_> {
    fn ws_url(&self) -> String {
        format!("{}?token={}", self.0.ws_url(), self.1)
    }
}

async fn jwt_server() -> TestServer {
    TestServer::with(|c| {
        c.identity.auth = Auth::Jwt;
        c.identity.jwt_secret = Some(SECRET.into());
    })
    .await
}

/// Connects with `url` and returns the error code the server sends before closing with 1008.
async fn refused(url: String) -> String {
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("the upgrade itself succeeds");
    let mut code = None;
    loop {
        match tokio::time::timeout(PATIENCE, ws.next())
            .await
            .expect("in time")
        {
            Some(Ok(Message::Text(text))) => match serde_json::from_str(&text).expect("decodes") {
                ServerMsg::Error { code: c, .. } => code = Some(c.as_str().to_owned()),
                other => panic!("expected only an error, got {other:?}"),
            },
            Some(Ok(Message::Close(frame))) => {
                assert_eq!(frame.map(|f| u16::from(f.code)), Some(1008));
                return code.expect("an error before the close");
            }
            Some(Ok(_)) => continue,
            other => panic!("ended without a close frame: {other:?}"),
        }
    }
}

#[tokio::test]
async fn a_valid_token_names_the_user_and_the_name_cannot_be_changed() {
    let server = jwt_server().await;
    let mut ann = Client::connect(&WithToken(&server, hs256("user-1", "Ann"))).await;
    ann.set_name("Ann").await;
    assert!(matches!(ann.recv().await, ServerMsg::NameSet { name } if name == "Ann"));
    ann.set_name("Queen Ann").await;
    assert_eq!(ann.next_error().await, "name_bound");
    // Another user cannot pass for Ann, not even with a look-alike name in a valid token.
    let mut fake = Client::connect(&WithToken(&server, hs256("user-2", "\u{0410}nn"))).await;
    fake.set_name("\u{0410}nn").await;
    assert_eq!(fake.next_error().await, "name_taken");
    // Ann in a second tab is the same person: same session, same name.
    let mut tab = Client::connect(&WithToken(&server, hs256("user-1", "Ann"))).await;
    assert_eq!(tab.session, ann.session);
    tab.set_name("Ann").await;
    assert!(matches!(tab.recv().await, ServerMsg::NameSet { name } if name == "Ann"));
    let (members, _) = tab.join("signed").await;
    assert_eq!(members, ["Ann"]);
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn missing_expired_forged_and_wrong_algorithm_tokens_are_refused_with_a_code() {
    let server = jwt_server().await;
    let url = |token: &str| format!("{}?token={token}", server.ws_url());
    assert_eq!(refused(server.ws_url()).await, "token_required");
    let key = EncodingKey::from_secret(SECRET.as_bytes());
    let expired = mint(Algorithm::HS256, &key, "u", "ann", in_secs(-3600));
    assert_eq!(refused(url(&expired)).await, "token_expired");
    let wrong_key = EncodingKey::from_secret(b"another secret of at least 32 bytes long!");
    let forged = mint(Algorithm::HS256, &wrong_key, "u", "ann", in_secs(3600));
    assert_eq!(refused(url(&forged)).await, "invalid_token");
    // The same secret, another HMAC: the token may not choose the algorithm.
    let hs512 = mint(Algorithm::HS512, &key, "u", "ann", in_secs(3600));
    assert_eq!(refused(url(&hs512)).await, "invalid_token");
    assert_eq!(refused(url("not.a.token")).await, "invalid_token");
    let unnamed = mint(Algorithm::HS256, &key, "u", "an\u{200B}n", in_secs(3600));
    assert_eq!(refused(url(&unnamed)).await, "invalid_token");
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn an_eddsa_public_key_verifies_tokens_signed_with_its_private_key() {
    let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).expect("an Ed25519 key");
    let dir = std::env::temp_dir().join(format!("chorus-jwt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let public = dir.join("public.pem");
    std::fs::write(&public, pair.public_key_pem()).expect("write the public key");
    let path = public.to_string_lossy().into_owned();
    let server = TestServer::with(|c| {
        c.identity.auth = Auth::Jwt;
        c.identity.jwt_algorithm = JwtAlgorithm::EdDsa;
        c.identity.jwt_public_key = Some(path);
    })
    .await;
    let signing = EncodingKey::from_ed_pem(pair.serialize_pem().as_bytes()).expect("private key");
    let token = mint(Algorithm::EdDSA, &signing, "user-9", "bo", in_secs(600));
    // Given as a bearer token, as a native client would.
    let bearer = format!("Bearer {token}");
    let request = common::upgrade_request(&server, &[("authorization", &bearer)]);
    let (mut ws, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("connects");
    let welcome = loop {
        if let Some(Ok(Message::Text(text))) = ws.next().await {
            break serde_json::from_str::<ServerMsg>(&text).expect("decodes");
        }
    };
    match welcome {
        ServerMsg::Welcome { name, .. } => assert_eq!(name.as_deref(), Some("bo")),
        other => panic!("expected welcome, got {other:?}"),
    }
    // A token signed with the shared-secret algorithm is not taken by an EdDSA server.
    let hs = EncodingKey::from_secret(SECRET.as_bytes());
    let wrong_alg = mint(Algorithm::HS256, &hs, "user-9", "bo", in_secs(600));
    assert_eq!(
        refused(format!("{}?token={wrong_alg}", server.ws_url())).await,
        "invalid_token"
    );
    drop(ws);
    server.shutdown().await.expect("clean shutdown");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn an_rs256_public_key_verifies_tokens_signed_with_its_private_key() {
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let public = fixtures.join("rs256-test-public.pem");
    let path = public.to_string_lossy().into_owned();
    let server = TestServer::with(|c| {
        c.identity.auth = Auth::Jwt;
        c.identity.jwt_algorithm = JwtAlgorithm::Rs256;
        c.identity.jwt_public_key = Some(path);
    })
    .await;
    let private = std::fs::read(fixtures.join("rs256-test-private.pem")).expect("the test key");
    let signing = EncodingKey::from_rsa_pem(&private).expect("an RSA private key");
    let token = mint(Algorithm::RS256, &signing, "user-7", "cy", in_secs(600));
    let mut cy = Client::connect(&WithToken(&server, token)).await;
    cy.set_name("cy").await;
    assert!(matches!(cy.recv().await, ServerMsg::NameSet { name } if name == "cy"));
    // HS256 signed with the public key's bytes as the secret: the classic algorithm-confusion
    // forgery, refused because only RS256 is accepted.
    let pem = std::fs::read(fixtures.join("rs256-test-public.pem")).expect("the public key");
    let confused = mint(
        Algorithm::HS256,
        &EncodingKey::from_secret(&pem),
        "user-7",
        "cy",
        in_secs(600),
    );
    assert_eq!(
        refused(format!("{}?token={confused}", server.ws_url())).await,
        "invalid_token"
    );
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn anonymous_mode_ignores_tokens() {
    let server = TestServer::start().await;
    let mut client = Client::connect(&WithToken(&server, "whatever".into())).await;
    client.send(&ClientMsg::SetName { name: "cy".into() }).await;
    assert!(matches!(client.recv().await, ServerMsg::NameSet { .. }));
    server.shutdown().await.expect("clean shutdown");
}
