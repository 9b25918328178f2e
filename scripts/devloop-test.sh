#!/usr/bin/env bash
# Tests the front-end loop as a developer uses it: scripts/dev.sh serving a copy of this checkout
# (target/devloop/src, so the edits never touch the real files), then a stylesheet edit and a Rust
# string edit checked in Chromium (end2end/tests/devloop.spec.ts). Run by scripts/test.sh; prints
# Playwright's summary. The page is opened at localhost (the reload socket must be allowed for
# the host the page was asked for). The copy builds into this checkout's target/, reusing its
# dependencies.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
scripts/setup.sh >/dev/null
export PATH="$HOME/.cargo/bin:$PATH"
root=$PWD
work=target/devloop
copy=$work/src
rm -rf "$copy"
mkdir -p "$copy"
# Tracked and new files as they are now (uncommitted edits included), nothing ignored; dated now
# (-m), so that cargo rebuilds what an earlier run of this test edited.
git ls-files -co --exclude-standard -z | tar --null -T - --ignore-failed-read -cf - | tar -xmf - -C "$copy"

port=$(free_port)
# Its own process group, so that stopping it stops cargo-leptos and the server it runs.
(cd "$copy" && CARGO_TARGET_DIR="$root/target" exec setsid scripts/dev.sh --no-setup --port "$port") >"$work/dev.log" 2>&1 &
dev_pid=$!
stop() {
  kill -- -"$dev_pid" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap stop EXIT
if ! wait_ok "http://127.0.0.1:$port/healthz" 1200; then
  echo "the dev loop did not start:"; tail -n 40 "$work/dev.log"; exit 1
fi
status=0
(cd end2end && DEVLOOP_URL="http://localhost:$port" DEVLOOP_DIR="$root/$copy" npx playwright test devloop) || status=$?
if ((status != 0)); then echo "dev loop log (last lines):"; tail -n 40 "$work/dev.log"; fi
exit $status
