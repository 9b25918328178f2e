//! The site: the pages (server-rendered Leptos) and the files cargo-leptos built (JS, WASM, CSS,
//! assets), with their headers, and the Leptos settings they are served with.

use super::{AppState, status};
use crate::app::{STATUS_PATH, shell};
use axum::{Router, http::StatusCode, routing::get};
use leptos::config::LeptosOptions;
use std::{path::Path, sync::Arc};

use super::config::Config;

/// Leptos's settings: names and paths from cargo-leptos's environment when it runs us, the
/// defaults of `[package.metadata.leptos]` otherwise.
pub(super) fn leptos_options(config: &Config) -> LeptosOptions {
    let env = |key: &str| std::env::var(key).ok();
    let output_name = env("LEPTOS_OUTPUT_NAME").unwrap_or_else(|| "chorus".to_owned());
    let pkg_dir = env("LEPTOS_SITE_PKG_DIR").unwrap_or_else(|| "pkg".to_owned());
    let hash_file = env("LEPTOS_HASH_FILE_NAME").unwrap_or_else(|| "hash.txt".to_owned());
    // cargo-leptos tells the server it runs whether it named the site's files after their
    // content. Run otherwise (a release deployed by hand, the tests' own binaries), the server
    // uses the hashes cargo-leptos wrote beside it only if the files they name are in the site:
    // a hash.txt left by another build must not point the page at files that are not there.
    let hashed = match env("LEPTOS_HASH_FILES") {
        Some(hashed) => hashed == "true",
        None => std::env::current_exe().ok().is_some_and(|exe| {
            let pkg = Path::new(&config.node.site_root).join(&pkg_dir);
            exe.parent()
                .is_some_and(|dir| hashes_name_files_in(&dir.join(&hash_file), &pkg, &output_name))
        }),
    };
    // Development (the reload script and its socket in the page's policy) only under
    // `cargo leptos watch`, unless LEPTOS_ENV says otherwise; every other run is production.
    let leptos_env = match (env("LEPTOS_ENV"), env("LEPTOS_WATCH")) {
        // Only the spellings that mean development do (leptos's own parse falls back to it).
        (Some(v), _) => match v.to_ascii_lowercase().as_str() {
            "dev" | "development" => leptos::config::Env::DEV,
            _ => leptos::config::Env::PROD,
        },
        (None, Some(w)) if w == "true" => leptos::config::Env::DEV,
        (None, _) => leptos::config::Env::PROD,
    };
    LeptosOptions::builder()
        .output_name(output_name)
        .site_root(config.node.site_root.as_str())
        .site_pkg_dir(pkg_dir)
        .site_addr(config.node.listen)
        .reload_port(
            env("LEPTOS_RELOAD_PORT")
                .and_then(|p| p.parse::<u32>().ok())
                .unwrap_or(3001),
        )
        .env(leptos_env)
        .hash_file(Arc::<str>::from(hash_file))
        .hash_files(hashed)
        .build()
}

/// How long a browser may keep a response: a file named after its content (cargo-leptos's
/// `chorus.<22 base64url characters>.wasm`) for a year without asking, since a new build has a
/// new name; anything else it may keep but must ask about again (a cheap 304 when unchanged),
/// so a release is never half-loaded.
fn cache_policy(path: &str) -> &'static str {
    let name = path.rsplit('/').next().unwrap_or_default();
    if path.starts_with("/pkg/") && super::packed::content_named(name) {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    }
}

/// The pages and the site's files: compressed when the browser asks (the WASM shrinks to about a
/// third), never framed or sniffed, cached by content hash. The pages' Content-Security-Policy
/// carries a per-response nonce, so the shell sets it (`app::shell`). With `status`, the status
/// page and its data are served too; without, `/status` is not found.
pub(super) fn site(app: &AppState, status: bool) -> Router<AppState> {
    use axum::http::{HeaderValue, header};
    use tower_http::{compression::CompressionLayer, set_header::SetResponseHeaderLayer};
    let header =
        |name, value| SetResponseHeaderLayer::if_not_present(name, HeaderValue::from_static(value));
    // Leptos renders pages with tasks on tokio. Set once per process; a second call is
    // refused, harmlessly.
    let _ = any_spawner::Executor::init_tokio();
    // The app's pages (`app::Page`), streamed as they render; the app picks what to show
    // from the path.
    let page = leptos_axum::render_app_to_stream_with_context(
        {
            // The status page reads the node through this (when rendered on the server).
            let app = app.clone();
            move || leptos::context::provide_context(app.clone())
        },
        {
            let options = app.leptos_options.clone();
            move || shell(options.clone())
        },
    );
    let site = Router::new()
        .route("/", get(page.clone()))
        .route("/r/{room}", get(page.clone()));
    let site = if status {
        site.route(STATUS_PATH, get(page))
            .route("/status.json", get(status::status_json))
    } else {
        site.route(STATUS_PATH, get(|| async { StatusCode::NOT_FOUND }))
    };
    site.fallback(leptos_axum::file_and_error_handler::<AppState, _>(shell))
        .layer(axum::middleware::from_fn_with_state(
            app.packed.clone(),
            super::packed::serve,
        ))
        .layer(CompressionLayer::new().gzip(true).br(true))
        .layer(header(header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .layer(header(header::X_FRAME_OPTIONS, "DENY"))
        .layer(header(header::REFERRER_POLICY, "same-origin"))
        .layer(axum::middleware::map_response(
            |uri: axum::http::Uri, mut response: axum::response::Response| async move {
                let policy = cache_policy(uri.path());
                response
                    .headers_mut()
                    .entry(header::CACHE_CONTROL)
                    .or_insert(HeaderValue::from_static(policy));
                response
            },
        ))
}

/// The site with its status page, for its own address (`status_listen`).
pub(super) fn status_router(app: AppState) -> Router {
    site(&app, true).with_state(app)
}

/// Whether the hashes in `hash_file` (cargo-leptos's `js: …`, `wasm: …`, `css: …` lines) name
/// files that are in `pkg`, and no build with plain names came after them (its `chorus.wasm` is
/// not newer than the hashed one).
fn hashes_name_files_in(hash_file: &Path, pkg: &Path, output_name: &str) -> bool {
    let Ok(hashes) = std::fs::read_to_string(hash_file) else {
        return false;
    };
    let modified = |file: &Path| std::fs::metadata(file).and_then(|m| m.modified()).ok();
    let mut hashed_wasm = None;
    for (kind, hash) in hashes.lines().filter_map(|l| l.split_once(':')) {
        let (kind, hash) = (kind.trim(), hash.trim());
        // Other lines (a split WASM's manifest) name files of other patterns.
        if !matches!(kind, "js" | "wasm" | "css") {
            continue;
        }
        let file = pkg.join(format!("{output_name}.{hash}.{kind}"));
        if !file.is_file() {
            return false;
        }
        if kind == "wasm" {
            hashed_wasm = modified(&file);
        }
    }
    let plain_wasm = modified(&pkg.join(format!("{output_name}.wasm")));
    match (hashed_wasm, plain_wasm) {
        (Some(hashed), Some(plain)) => hashed >= plain,
        (hashed, _) => hashed.is_some(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_count_only_when_the_files_they_name_are_in_the_site() {
        let dir = std::env::temp_dir().join(format!("chorus-site-{}", std::process::id()));
        let pkg = dir.join("pkg");
        std::fs::create_dir_all(&pkg).expect("a temporary folder");
        let hash_file = dir.join("hash.txt");
        let named = |text: &str| {
            std::fs::write(&hash_file, text).expect("written");
            hashes_name_files_in(&hash_file, &pkg, "chorus")
        };
        for file in [
            "chorus.js",
            "chorus.wasm",
            "chorus.css",
            "chorus.abc.js",
            "chorus.def.wasm",
        ] {
            std::fs::write(pkg.join(file), "").expect("written");
        }
        assert!(named("js: abc\nwasm: def\n"));
        // A build since wrote other names (or none: a development build's plain names).
        assert!(!named("js: abc\nwasm: def\ncss: old\n"));
        assert!(!named(""));
        std::fs::remove_file(&hash_file).expect("removed");
        assert!(!hashes_name_files_in(&hash_file, &pkg, "chorus"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
