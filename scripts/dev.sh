#!/usr/bin/env bash
# The front-end loop: sets up whatever is missing, then builds, serves and rebuilds on save
# (`cargo leptos watch`) on a free port, and prints the URL to open.
#   scripts/dev.sh [--port N] [--host ADDR] [any `cargo leptos watch` flag, e.g. --hot-reload]
#   (--no-setup skips scripts/setup.sh, for a caller that has just run it)
# What survives which edit is in README, "Develop".
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

port="" host=127.0.0.1 args=() setup=true
while (($#)); do
  case "$1" in
    --no-setup) setup=false; shift ;;
    --port) port="${2:?--port needs a number}"; shift 2 ;;
    --host) host="${2:?--host needs an address}"; shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done
[[ -n "$port" ]] || port=$(free_port)
reload_port=$(free_port)

if $setup; then scripts/setup.sh; fi
export PATH="$HOME/.cargo/bin:$PATH"
# Incremental builds: the loop rebuilds one crate many times (test.sh turns them off).
unset CARGO_INCREMENTAL

url_host=$host
[[ "$host" == *:* ]] && url_host="[$host]"
# cargo-leptos hands these to the server it runs. The site folder is the loop's own: watch
# empties it on start, and a release server of this checkout keeps serving target/site.
export LEPTOS_SITE_ADDR="$url_host:$port"
export LEPTOS_RELOAD_PORT="$reload_port"
export LEPTOS_SITE_ROOT="target/dev-site"
# Plain file names: the reload socket swaps /pkg/chorus.css in place, and a reload fetches the
# newest chorus.wasm (hashed names are for release builds; see scripts/run.sh).
export LEPTOS_HASH_FILES=false
# A Rust edit restarts the server: let it go at once instead of draining its connections.
export CHORUS_DRAIN_MS="${CHORUS_DRAIN_MS:-0}" CHORUS_SHUTDOWN_GRACE_SECS="${CHORUS_SHUTDOWN_GRACE_SECS:-1}"
echo "chorus dev: http://$url_host:$port (reload socket on port $reload_port)" >&2
exec cargo leptos watch ${args[@]+"${args[@]}"}
