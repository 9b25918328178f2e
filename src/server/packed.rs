//! The site's files named after their content (`chorus.<hash>.wasm`, `.js`, `.css`: cargo-leptos
//! with `hash-files`), compressed once with brotli at its best quality the first time a browser
//! asks for one, and served from memory from then on.
//!
//! Compressing per request (the compression layer) runs brotli at a middling quality every time
//! the page is loaded: the WASM goes out about 20 % larger than it could, and each load costs the
//! node that CPU. A content-named file never changes, so once is enough. The work (a few seconds
//! of one core for the WASM) runs in the background; until a file is ready, and for every other
//! file, the compression layer does as before. A node nobody loads the page from never does it.

use axum::{
    body::{Body, Bytes},
    extract::{Request, State},
    http::{HeaderValue, header},
    middleware::Next,
    response::Response,
};
use std::{
    collections::HashMap,
    io::Write,
    path::PathBuf,
    sync::{Arc, RwLock},
};

/// brotli's best quality and its largest standard window.
const QUALITY: u32 = 11;
const WINDOW: u32 = 22;

/// At most this many files are kept compressed (a build has three).
const FILES_MAX: usize = 32;

/// The compressed files, by name in `pkg`. std RwLock: never held across `.await`.
pub struct Packed {
    pkg: PathBuf,
    /// `None` while being compressed (or when it could not be).
    files: RwLock<HashMap<String, Option<Bytes>>>,
}

/// Whether `name` is named after its content as cargo-leptos names files: `<name>.<22
/// base64url characters>.<ext>`.
pub(super) fn content_named(name: &str) -> bool {
    let mut parts = name.rsplit('.');
    parts.next().is_some()
        && parts.next().is_some_and(|hash| {
            hash.len() == 22
                && hash
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        && parts.next().is_some()
}

fn content_type(name: &str) -> Option<&'static str> {
    match name.rsplit('.').next()? {
        "wasm" => Some("application/wasm"),
        "js" => Some("text/javascript"),
        "css" => Some("text/css"),
        _ => None,
    }
}

impl Packed {
    pub fn new(pkg: PathBuf) -> Arc<Self> {
        Arc::new(Self {
            pkg,
            files: RwLock::default(),
        })
    }

    /// The compressed `name`, if ready; the first ask for a content-named file of the site
    /// starts compressing it.
    fn get(self: &Arc<Self>, name: &str) -> Option<Bytes> {
        if let Some(ready) = self.files.read().ok()?.get(name) {
            return ready.clone();
        }
        if !content_named(name) || content_type(name).is_none() || name.contains(['/', '\\']) {
            return None;
        }
        // Only files that are there, and a bounded few: a made-up name is not an entry.
        if !self.pkg.join(name).is_file() {
            return None;
        }
        let mut files = self.files.write().ok()?;
        if files.contains_key(name) || files.len() >= FILES_MAX {
            return None;
        }
        files.insert(name.to_owned(), None);
        drop(files);
        let (packed, name) = (self.clone(), name.to_owned());
        tokio::task::spawn_blocking(move || packed.compress(name));
        None
    }

    fn compress(&self, name: String) {
        let data = match std::fs::read(self.pkg.join(&name)) {
            Ok(data) => data,
            // Not in the site (a wrong name): the compression layer answers, as for any file.
            Err(_) => return,
        };
        let mut out = Vec::with_capacity(data.len() / 3);
        let written = {
            let mut writer = brotli::CompressorWriter::new(&mut out, 64 * 1024, QUALITY, WINDOW);
            writer.write_all(&data).and_then(|()| writer.flush())
        };
        if let Err(e) = written {
            tracing::warn!(cause = %e, file = %name, "cannot compress a site file");
            return;
        }
        tracing::debug!(file = %name, size = data.len(), compressed = out.len(), "site file compressed");
        if let Ok(mut files) = self.files.write() {
            files.insert(name, Some(Bytes::from(out)));
        }
    }
}

/// Whether the request's `Accept-Encoding` takes brotli.
fn takes_brotli(request: &Request) -> bool {
    request
        .headers()
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|coding| {
            let mut parts = coding.split(';');
            let name = parts.next().unwrap_or_default().trim();
            let refused = parts.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            name.eq_ignore_ascii_case("br") && !refused
        })
}

/// Answers a request for a compressed content-named file from memory; anything else goes on.
pub async fn serve(State(packed): State<Arc<Packed>>, request: Request, next: Next) -> Response {
    let hit = request
        .uri()
        .path()
        .strip_prefix("/pkg/")
        .filter(|_| takes_brotli(&request))
        .and_then(|name| Some((packed.get(name)?, content_type(name)?)));
    let Some((body, kind)) = hit else {
        return next.run(request).await;
    };
    let mut response = Response::new(Body::from(body));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(kind));
    headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("br"));
    headers.insert(header::VARY, HeaderValue::from_static("accept-encoding"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_cargo_leptos_content_names_count() {
        assert!(content_named("chorus.gK0Nbvuw8yQivQZ5ssnnvg.wasm"));
        assert!(!content_named("chorus.wasm"));
        assert!(!content_named("chorus_bg.wasm"));
        assert!(!content_named("chorus.short.wasm"));
    }

    #[test]
    fn brotli_is_taken_unless_refused() {
        let with = |value: &str| {
            let request = Request::builder()
                .header(header::ACCEPT_ENCODING, value)
                .body(Body::empty())
                .expect("a request");
            takes_brotli(&request)
        };
        assert!(with("gzip, deflate, br, zstd"));
        assert!(with("br;q=0.5"));
        assert!(!with("gzip"));
        assert!(!with("br;q=0"));
        assert!(!with("brotli-ish"));
    }
}
