#!/usr/bin/env bash
# Sets up whatever is missing, then builds (release) and serves Chorus on one node with the
# embedded defaults (in-memory bus) at http://127.0.0.1:3000. Stop it with Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh --release
export PATH="$PWD/.tools/binaryen/node_modules/.bin:$HOME/.cargo/bin:$PATH"
# Content-hashed file names, cached for good by browsers (see Cargo.toml, hash-files).
export LEPTOS_HASH_FILES=true
exec cargo leptos serve --release
