#!/usr/bin/env bash
# Sets up whatever is missing, then runs every test:
#   1. unit and integration tests (cargo test: real server on loopback, real WebSocket clients)
#   2. end-to-end tests (Playwright in Debian's Chromium against the cargo-leptos build)
# Ends with one line "chorus: N passed, M failed"; exits non-zero if anything failed.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
export PATH="$HOME/.cargo/bin:$PATH:/usr/sbin"
mkdir -p target
log() { printf '\033[1m[test]\033[0m %s\n' "$*"; }
source scripts/lib.sh

passed=0 failed=0
count_cargo() {  # sums the "test result: ... N passed; M failed" lines of a cargo test log
  local p f
  p=$(awk '/^test result:/ { for (i = 2; i <= NF; i++) if ($i ~ /^passed/) s += $(i-1) } END { print s+0 }' "$1")
  f=$(awk '/^test result:/ { for (i = 2; i <= NF; i++) if ($i ~ /^failed/) s += $(i-1) } END { print s+0 }' "$1")
  passed=$((passed + p)); failed=$((failed + f))
}

log "unit and integration tests"
# One build from clean: incremental caches would only cost disk (they were 5 GB of a CI run's 14).
export CARGO_INCREMENTAL=0
cargo_status=0
cargo test --features ssr 2>&1 | tee target/test-cargo.log || cargo_status=$?
count_cargo target/test-cargo.log
if ((cargo_status != 0)) && ((failed == 0)); then failed=1; fi  # e.g. a compile error

log "building the site for the end-to-end tests"
cargo leptos build

port=$(free_port)
url="http://127.0.0.1:$port"
log "starting chorus on $url"
# Pings every second, so the offline test sees the page notice a dead link within seconds.
# The operator token makes moderators of the pages that give it (moderation.spec.ts).
CHORUS_OPERATOR_TOKEN=e2e-operator-token-0123 \
LEPTOS_SITE_ROOT=target/site target/debug/chorus --listen "127.0.0.1:$port" --ping-interval-ms 1000 \
  >target/e2e-server.log 2>&1 &
server_pid=$!
cluster_pid=""
stop_servers() {
  kill $server_pid $cluster_pid 2>/dev/null || true
  wait 2>/dev/null || true
  server_pid="" cluster_pid=""  # the EXIT trap must not signal reused pids
}
trap stop_servers EXIT
wait_ok "$url/healthz"

log "starting a local cluster (redis, two nodes, nginx) for the multi-node end-to-end tests"
rm -f target/cluster/urls.env
scripts/cluster.sh --no-build >target/e2e-cluster.log 2>&1 &
cluster_pid=$!
for _ in $(seq 1 300); do
  [[ -f target/cluster/urls.env ]] && break
  kill -0 "$cluster_pid" 2>/dev/null || break
  sleep 0.2
done
if [[ -f target/cluster/urls.env ]]; then
  set -a; source target/cluster/urls.env; set +a
else
  log "the cluster did not start:"; tail -n 40 target/e2e-cluster.log
fi

# Adds Playwright's summary in log $1 ("  7 passed (12.0s)", "  1 failed", "  1 flaky") to the
# counts; $2 is its exit status (a failure that printed no summary counts as one).
count_playwright() {
  local p f
  p=$(awk '$2 == "passed" && $1 ~ /^[0-9]+$/ { s += $1 } END { print s+0 }' "$1")
  f=$(awk '($2 == "failed" || $2 == "flaky") && $1 ~ /^[0-9]+$/ { s += $1 } END { print s+0 }' "$1")
  if (($2 != 0)) && ((f == 0)); then f=1; fi
  passed=$((passed + p)); failed=$((failed + f))
}

log "end-to-end tests"
e2e_status=0
(cd end2end && CHORUS_URL="$url" npx playwright test) 2>&1 | tee target/test-e2e.log || e2e_status=$?
count_playwright target/test-e2e.log "$e2e_status"
if ((e2e_status != 0)); then
  log "server log (last lines):"; tail -n 40 target/e2e-server.log
fi
stop_servers

log "the front-end loop (scripts/dev.sh on a copy: a CSS edit, a Rust edit)"
devloop_status=0
scripts/devloop-test.sh 2>&1 | tee target/test-devloop.log || devloop_status=$?
count_playwright target/test-devloop.log "$devloop_status"

log "disk used by target/: $(du -sh target 2>/dev/null | cut -f1)"
echo "chorus: $passed passed, $failed failed"
((failed == 0))
