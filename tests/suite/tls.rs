//! HTTPS and WSS served by the node itself, with a self-signed certificate made here.

use crate::common;

use chorus::protocol::{ClientMsg, ServerMsg};
use common::{PATIENCE, TestServer};
use futures_util::{SinkExt, StreamExt};
use std::{path::PathBuf, sync::Arc};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};
use tokio_rustls::{
    TlsConnector,
    rustls::{self, pki_types::ServerName},
};
use tokio_tungstenite::tungstenite::Message;

struct Certificate {
    dir: PathBuf,
    der: rustls::pki_types::CertificateDer<'static>,
}

impl Certificate {
    fn make() -> Self {
        let made = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()])
            .expect("a self-signed certificate");
        let dir = std::env::temp_dir().join(format!("chorus-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create the certificate dir");
        std::fs::write(dir.join("cert.pem"), made.cert.pem()).expect("write cert");
        std::fs::write(dir.join("key.pem"), made.signing_key.serialize_pem()).expect("write key");
        Self {
            dir,
            der: made.cert.der().clone(),
        }
    }

    fn path(&self, file: &str) -> String {
        self.dir.join(file).to_string_lossy().into_owned()
    }

    /// A client that trusts only this certificate.
    fn connector(&self) -> TlsConnector {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.der.clone()).expect("a usable root");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("TLS versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        TlsConnector::from(Arc::new(config))
    }
}

impl Drop for Certificate {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn tls_stream(
    server: &TestServer,
    cert: &Certificate,
) -> tokio_rustls::client::TlsStream<TcpStream> {
    let tcp = TcpStream::connect(server.addr).await.expect("TCP connects");
    let name = ServerName::try_from("localhost").expect("server name");
    tokio::time::timeout(PATIENCE, cert.connector().connect(name, tcp))
        .await
        .expect("handshake in time")
        .expect("TLS handshake with the node's certificate")
}

#[tokio::test]
async fn a_node_with_a_certificate_serves_https_and_wss() {
    let cert = Certificate::make();
    let server = TestServer::with(|c| {
        c.node.tls_cert = Some(cert.path("cert.pem"));
        c.node.tls_key = Some(cert.path("key.pem"));
    })
    .await;

    // HTTPS: the health check, over TLS.
    let mut https = tls_stream(&server, &cert).await;
    https
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .await
        .expect("request written");
    let mut answer = String::new();
    https.read_to_string(&mut answer).await.ok();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");

    // WSS: two people chat through the node's own TLS.
    let url = format!("wss://localhost:{}/ws", server.addr.port());
    let mut people = Vec::new();
    for name in ["ann", "bo"] {
        let stream = tls_stream(&server, &cert).await;
        let (mut ws, _) = tokio_tungstenite::client_async(url.as_str(), stream)
            .await
            .expect("WebSocket over TLS");
        for msg in [
            ClientMsg::SetName { name: name.into() },
            ClientMsg::join("secure"),
        ] {
            let json = serde_json::to_string(&msg).expect("encodes");
            ws.send(Message::text(json)).await.expect("sent");
        }
        // In the room before anyone speaks.
        tokio::time::timeout(PATIENCE, async {
            while let Some(Ok(frame)) = ws.next().await {
                if let Message::Text(text) = frame
                    && let Ok(ServerMsg::Joined { .. }) = serde_json::from_str(&text)
                {
                    return;
                }
            }
            panic!("connection ended before joined");
        })
        .await
        .expect("joined in time");
        people.push(ws);
    }
    let say = ClientMsg::Send {
        room: "secure".into(),
        text: "over tls".into(),
        client_id: Some("t1".into()),
    };
    let json = serde_json::to_string(&say).expect("encodes");
    people[0].send(Message::text(json)).await.expect("sent");
    let heard = tokio::time::timeout(PATIENCE, async {
        while let Some(Ok(frame)) = people[1].next().await {
            if let Message::Text(text) = frame
                && let Ok(ServerMsg::Message(m)) = serde_json::from_str(&text)
            {
                return Some(m.text);
            }
        }
        None
    })
    .await
    .expect("in time");
    assert_eq!(heard.as_deref(), Some("over tls"));

    // Plain HTTP on the TLS port gets no page.
    let mut plain = TcpStream::connect(server.addr).await.expect("TCP connects");
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .expect("written");
    let mut bytes = Vec::new();
    let _ = tokio::time::timeout(PATIENCE, plain.read_to_end(&mut bytes)).await;
    assert!(!bytes.starts_with(b"HTTP/1.1 200"), "plain HTTP was served");
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn a_missing_certificate_stops_the_node_at_start_with_a_reason() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let mut config = chorus::server::config::Config::default();
    config.node.tls_cert = Some("/nonexistent/cert.pem".into());
    config.node.tls_key = Some("/nonexistent/key.pem".into());
    let result = chorus::server::run(listener, config, std::future::pending()).await;
    let why = result.expect_err("refuses to start").to_string();
    assert!(why.contains("tls_cert"), "{why}");
}
