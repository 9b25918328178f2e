//! What the browser is given over plain HTTP: security headers on pages, compressed files.

use crate::common;

use common::TestServer;
use std::path::PathBuf;

/// A site root of our own, so the test does not depend on a cargo-leptos build: a WASM file of
/// a realistic, compressible size.
fn site_root() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("chorus-site-{}", std::process::id()));
    let pkg = dir.join("pkg");
    std::fs::create_dir_all(&pkg).expect("create the site root");
    // Repetitive like real code: compresses well, but not to nothing.
    let wasm: Vec<u8> = (0..400_000u32)
        .map(|i| (((i * 7) % 251) ^ (i >> 9)) as u8)
        .collect();
    std::fs::write(pkg.join("chorus_wasm.wasm"), &wasm).expect("write wasm");
    // As cargo-leptos names it with hash-files on.
    std::fs::write(pkg.join("chorus.gK0Nbvuw8yQivQZ5ssnnvg.wasm"), &wasm).expect("write wasm");
    dir
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("{name} is missing"))
        .to_str()
        .expect("ASCII header")
}

#[tokio::test]
async fn pages_forbid_framing_sniffing_and_scripts_without_this_pages_nonce() {
    let server = TestServer::start().await;
    let mut nonces = Vec::new();
    for _ in 0..2 {
        let page = reqwest::get(server.http_url("/")).await.expect("GET /");
        assert_eq!(page.status(), 200);
        let policy = header(&page, "content-security-policy").to_owned();
        for directive in [
            "default-src 'self'",
            "'wasm-unsafe-eval'",
            "connect-src 'self'",
            "frame-ancestors 'none'",
            "object-src 'none'",
        ] {
            assert!(
                policy.contains(directive),
                "{directive} missing in {policy}"
            );
        }
        // Outside `cargo leptos watch` no reload socket is allowed, and no reload script sent.
        assert!(!policy.contains("ws:"), "a development socket in {policy}");
        assert_eq!(
            header(&page, "vary"),
            "cookie, accept-language",
            "one copy per language"
        );
        assert_eq!(header(&page, "x-content-type-options"), "nosniff");
        assert_eq!(header(&page, "x-frame-options"), "DENY");
        assert_eq!(header(&page, "referrer-policy"), "same-origin");
        let nonce = policy
            .split("'nonce-")
            .nth(1)
            .and_then(|rest| rest.split('\'').next())
            .expect("a nonce in script-src")
            .to_owned();
        let body = page.text().await.expect("page body");
        assert!(
            !body.contains("live_reload"),
            "the reload script in a production page"
        );
        assert!(
            body.contains(&format!("nonce=\"{nonce}\"")),
            "the hydration script carries the header's nonce"
        );
        nonces.push(nonce);
    }
    assert_ne!(nonces[0], nonces[1], "a fresh nonce per response");
    server.shutdown().await.expect("clean shutdown");
}

#[tokio::test]
async fn the_wasm_is_compressed_when_the_browser_asks() {
    let site = site_root();
    let root = site.to_string_lossy().into_owned();
    let server = TestServer::with(|c| c.node.site_root = root).await;
    let url = server.http_url("/pkg/chorus_wasm.wasm");
    let http = reqwest::Client::new();
    let plain = http.get(&url).send().await.expect("GET the wasm");
    assert_eq!(plain.status(), 200);
    assert!(plain.headers().get("content-encoding").is_none());
    let full = plain.bytes().await.expect("body").len();
    assert_eq!(full, 400_000);
    for encoding in ["br", "gzip"] {
        let packed = http
            .get(&url)
            .header("accept-encoding", encoding)
            .send()
            .await
            .expect("GET the wasm");
        assert_eq!(header(&packed, "content-encoding"), encoding);
        assert_eq!(
            header(&packed, "cache-control"),
            "no-cache",
            "an unhashed name may change content: the browser must ask again"
        );
        let size = packed.bytes().await.expect("body").len();
        assert!(size < full / 2, "{encoding}: {size} of {full} bytes");
    }
    // A file named after its content is kept for a year without asking.
    let hashed = http
        .get(server.http_url("/pkg/chorus.gK0Nbvuw8yQivQZ5ssnnvg.wasm"))
        .send()
        .await
        .expect("GET the hashed wasm");
    assert_eq!(hashed.status(), 200);
    assert_eq!(
        header(&hashed, "cache-control"),
        "public, max-age=31536000, immutable"
    );
    // Named after its content, it is compressed once, at brotli's best, and then served from
    // memory (with its length: not streamed through the compression layer).
    let hashed_url = server.http_url("/pkg/chorus.gK0Nbvuw8yQivQZ5ssnnvg.wasm");
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    let packed = loop {
        let response = http
            .get(&hashed_url)
            .header("accept-encoding", "gzip, br")
            .send()
            .await
            .expect("GET the hashed wasm");
        assert_eq!(header(&response, "content-encoding"), "br");
        assert_eq!(header(&response, "content-type"), "application/wasm");
        let length = response.content_length();
        let body = response.bytes().await.expect("body");
        if length.is_some() {
            break body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "never compressed once"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    let mut unpacked = Vec::new();
    std::io::Read::read_to_end(
        &mut brotli::Decompressor::new(&packed[..], 4096),
        &mut unpacked,
    )
    .expect("valid brotli");
    assert_eq!(unpacked.len(), full, "the same file");
    assert!(packed.len() < full / 2);
    server.shutdown().await.expect("clean shutdown");
    let _ = std::fs::remove_dir_all(site);
}

#[tokio::test]
async fn each_address_is_answered_with_its_page_or_not_found() {
    let server = TestServer::start().await;
    let get = |path: &'static str| {
        let url = server.http_url(path);
        async move {
            let page = reqwest::get(&url).await.expect("GET a page");
            let status = page.status().as_u16();
            (status, page.text().await.expect("the page's body"))
        }
    };
    let (status, lobby) = get("/").await;
    assert_eq!(status, 200);
    assert!(lobby.contains("data-testid=\"messages\""), "{lobby}");
    let (status, room) = get("/r/rust-fans").await;
    assert_eq!(status, 200);
    assert!(room.contains("rust-fans"), "{room}");
    // A room address whose name no room can have: the page says why.
    let (status, bad) = get("/r/Not%20A%20Room").await;
    assert_eq!(status, 200);
    assert!(bad.contains("data-testid=\"error\""), "{bad}");
    for path in ["/nope", "/r/a/b", "/r/"] {
        let (status, page) = get(path).await;
        assert_eq!(status, 404, "{path}");
        assert!(page.contains("class=\"not-found\""), "{path}: {page}");
    }
}
