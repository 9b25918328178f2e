#!/usr/bin/env bash
# Installs whatever Chorus needs that this machine lacks, and nothing it already has.
# Idempotent: safe to run before every build. Works from a bare machine of the project's kind
# (Debian, Rust 1.95, Node 20; registries: Debian, crates.io, npm).
#
#   scripts/setup.sh           what building, running and testing need
#   scripts/setup.sh --release also wasm-opt, for `cargo leptos ... --release`
set -euo pipefail
cd "$(dirname "$0")/.."

CARGO_LEPTOS_VERSION=0.3.4   # the newest that builds on Rust 1.95 (see shared TOOLCHAIN notes)
BINARYEN_VERSION=132.0.0     # Debian's wasm-opt (108) silently breaks the WASM; this one works
release=false
[[ "${1:-}" == "--release" ]] && release=true

log() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }
export PATH="$HOME/.cargo/bin:$PATH"

# System packages: Chromium drives the end-to-end tests; redis-server and nginx make the local
# cluster (scripts/cluster.sh) and the multi-node tests.
export PATH="$PATH:/usr/sbin"
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
command -v nginx >/dev/null 2>&1 || missing+=(nginx)
if ((${#missing[@]})); then
  log "installing Debian packages: ${missing[*]}"
  sudo_cmd=""
  [[ $(id -u) -ne 0 ]] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -q "${missing[@]}"
fi

# The browser build target.
if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  log "adding the wasm32-unknown-unknown target"
  rustup target add wasm32-unknown-unknown
fi

# cargo-leptos, pinned.
if [[ "$(cargo leptos --version 2>/dev/null || true)" != *"$CARGO_LEPTOS_VERSION"* ]]; then
  log "installing cargo-leptos $CARGO_LEPTOS_VERSION (about 13 minutes on 2 cores)"
  cargo install cargo-leptos --version "$CARGO_LEPTOS_VERSION" --locked
fi

# wasm-bindgen-cli must equal the wasm-bindgen in Cargo.lock, or the bundle will not load.
wb_version=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)
if [[ -z "$wb_version" ]]; then
  log "cannot find wasm-bindgen in Cargo.lock"; exit 1
fi
if [[ "$(wasm-bindgen --version 2>/dev/null || true)" != "wasm-bindgen $wb_version" ]]; then
  log "installing wasm-bindgen-cli $wb_version"
  # --locked fails here: the registry mirror lacks one of its locked dependency versions.
  cargo install wasm-bindgen-cli --version "$wb_version" --force
fi

# Playwright (the test runner only: it drives Debian's Chromium, it downloads no browser) and
# axe-core, exactly as end2end/package-lock.json pins them: installed again whenever the lock file
# changes (its hash is kept beside the packages).
lock_hash=$(sha256sum end2end/package-lock.json | cut -d' ' -f1)
if [[ "$(cat end2end/node_modules/.chorus-lock-hash 2>/dev/null || true)" != "$lock_hash" ]]; then
  log "installing end-to-end test packages"
  (cd end2end && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund)
  echo "$lock_hash" > end2end/node_modules/.chorus-lock-hash
fi

# wasm-opt for release builds, kept inside the project (.tools/, ignored by git).
if $release && [[ "$(.tools/binaryen/node_modules/.bin/wasm-opt --version 2>/dev/null || true)" != *"${BINARYEN_VERSION%%.*}"* ]]; then
  log "installing wasm-opt (npm binaryen $BINARYEN_VERSION)"
  mkdir -p .tools/binaryen
  npm install --prefix .tools/binaryen --no-audit --no-fund --no-save "binaryen@$BINARYEN_VERSION"
fi
log "ready"
