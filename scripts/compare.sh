#!/usr/bin/env bash
# Compares this checkout with an earlier revision on this machine, alternating old and new so
# that the machine's drift hits both alike (numbers from another day or machine are not
# comparable; see BENCHMARKS.md). Not part of the tests.
#
#   scripts/compare.sh REV          idle memory (10,000 connections) and one-node fan-out at
#                                   400k deliveries/s, 2 rounds
#   ROUNDS=4 scripts/compare.sh REV more rounds
#   RUNS=idle scripts/compare.sh REV only the idle-memory run (or RUNS=fan400k)
#   RUNS="storm cfan cross" scripts/compare.sh REV
#                                   two nodes on one Redis: a join storm (8,000 connections
#                                   at 4,000/s, rooms of 100), fan-out at 400k deliveries/s
#                                   and cross-node latency at 100 messages/s
#
# REV is built in its own worktree and target directory (target/compare/), so its binaries
# never overwrite this checkout's. The same (new) load generator drives both. Prints one line a
# run: "old|new <run> <JSON>".
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
rev=${1:?usage: scripts/compare.sh REV}
source scripts/lib.sh
# As in bench.sh: the load generator is not a person.
export CHORUS_SENDS_PER_SEC=1000000 CHORUS_SEND_BURST=1000000 CHORUS_BYTES_PER_SEC=1000000000 \
  CHORUS_CONTROLS_PER_SEC=1000000 CHORUS_CONTROL_BURST=1000000 CHORUS_CONNECTS_PER_SEC=1000000 \
  CHORUS_CONNECT_BURST=1000000 CHORUS_MAX_CONNECTIONS_PER_ADDRESS=0 \
  CHORUS_ROOMS_CREATED_PER_MIN=1000000

work=target/compare
tree="$work/tree"
mkdir -p "$work"
git worktree remove --force "$tree" 2>/dev/null || true
git worktree add --detach "$tree" "$rev" >/dev/null
trap 'git worktree remove --force "$tree" 2>/dev/null || true' EXIT
(cd "$tree" && CARGO_TARGET_DIR="$PWD/../target" cargo build --release --features ssr --bin chorus)
cp "$work/target/release/chorus" "$work/old-chorus"
cargo build --release --features ssr --bin chorus --bin chorus-load
cp target/release/chorus "$work/new-chorus"

# run LABEL BINARY LOAD-ARGS...: one fresh node, one load run, the node stopped.
run() {
  local label=$1 bin=$2 port pid out
  shift 2
  port=$(free_port)
  CHORUS_CONFIG=/dev/null "$bin" --listen "127.0.0.1:$port" --log warn >/dev/null 2>&1 &
  pid=$!
  wait_ok "http://127.0.0.1:$port/healthz"
  out=$(target/release/chorus-load "$@" --pid "$pid" --url "ws://127.0.0.1:$port/ws" \
    --max-secs 120 | tail -n 1)
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  echo "$label $out"
}
# run2 LABEL BINARY LOAD-ARGS...: a fresh redis-server and two nodes on it, one load run.
run2() {
  local label=$1 bin=$2 redis a b pids out
  shift 2
  redis=$(free_port) a=$(free_port) b=$(free_port)
  redis-server --port "$redis" --bind 127.0.0.1 --save "" --appendonly no >/dev/null 2>&1 &
  pids=($!)
  sleep 0.5
  for port in "$a" "$b"; do
    CHORUS_CONFIG=/dev/null "$bin" --listen "127.0.0.1:$port" --log warn \
      --redis-url "redis://127.0.0.1:$redis/" >/dev/null 2>&1 &
    pids+=($!)
  done
  wait_ok "http://127.0.0.1:$a/readyz"
  wait_ok "http://127.0.0.1:$b/readyz"
  out=$(target/release/chorus-load "$@" --url "ws://127.0.0.1:$a/ws" \
    --url "ws://127.0.0.1:$b/ws" --max-secs 120 | tail -n 1) || out='{"failed":true}'
  # The nodes first, while Redis still answers their goodbyes, then Redis.
  kill "${pids[@]:1}"
  wait "${pids[@]:1}" 2>/dev/null || true
  kill "${pids[0]}"
  wait "${pids[0]}" 2>/dev/null || true
  echo "$label $out"
}
sources=(--source 127.0.0.1 --source 127.0.0.2 --source 127.0.0.3 --source 127.0.0.4)
runs=" ${RUNS:-idle fan400k} "
for _ in $(seq "${ROUNDS:-2}"); do
  for side in old new; do
    if [[ $runs == *" idle "* ]]; then
      run "$side idle" "$work/$side-chorus" capacity "${sources[@]}" --prefix cap \
        --connections 10000 --ramp 3000 --room-size 100 --hold-secs 3
    fi
    if [[ $runs == *" fan400k "* ]]; then
      run "$side fan400k" "$work/$side-chorus" fanout --prefix fan --members 200 --senders 20 \
        --rate 2000 --secs 10
    fi
    if [[ $runs == *" storm "* ]]; then
      run2 "$side storm" "$work/$side-chorus" capacity "${sources[@]}" --prefix storm \
        --connections 8000 --ramp 4000 --room-size 100 --hold-secs 2
    fi
    if [[ $runs == *" cfan "* ]]; then
      run2 "$side cfan" "$work/$side-chorus" fanout --prefix cfan --members 200 --senders 20 \
        --rate 2000 --secs 10
    fi
    if [[ $runs == *" cross "* ]]; then
      run2 "$side cross" "$work/$side-chorus" crossnode --prefix ccross --rate 100 --secs 10
    fi
  done
done
