#!/usr/bin/env bash
# What `redis_wait_replicas = 1` costs: two release nodes on a Redis master with one replica,
# measured without and then with WAIT, alternately, ROUNDS times (default 2).
#   - crossnode: one sender on node A, one receiver on node B, 100 messages/s for 10 s (latency
#     from send to delivery across nodes; the ack waits for WAIT, delivery does not);
#   - fanout: 20 senders, 20 members over both nodes, 4,000 messages/s offered for 10 s
#     (whether the append path keeps up).
# Results: target/bench/wait.jsonl, one JSON object per run, with "wait" set to 0 or 1.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH:/usr/sbin"
source scripts/lib.sh
cargo build --release --features ssr --bin chorus --bin chorus-load
mkdir -p target/bench
out=target/bench/wait.jsonl
: >"$out"
dir=$(mktemp -d)
pids=()
node_pids=()
cleanup() {
  kill "${node_pids[@]}" "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$dir"
}
trap cleanup EXIT

master=$(free_port)
replica=$(free_port)
redis-server --port "$master" --bind 127.0.0.1 --save "" --dir "$dir" >/dev/null 2>&1 &
pids+=($!)
redis-server --port "$replica" --bind 127.0.0.1 --save "" --dir "$dir" \
  --replicaof 127.0.0.1 "$master" >/dev/null 2>&1 &
pids+=($!)
sleep 1

for round in $(seq 1 "${ROUNDS:-2}"); do
  for wait in 0 1; do
    a=$(free_port) b=$(free_port)
    node_pids=()
    for port in "$a" "$b"; do
      CHORUS_CONFIG=/dev/null CHORUS_LOG=warn target/release/chorus --listen "127.0.0.1:$port" \
        --redis-url "redis://127.0.0.1:$master/" --redis-wait-replicas "$wait" \
        --sends-per-sec 0 --bytes-per-sec 0 --controls-per-sec 0 >/dev/null 2>&1 &
      node_pids+=($!)
    done
    wait_ok "http://127.0.0.1:$a/readyz"
    wait_ok "http://127.0.0.1:$b/readyz"
    urls=(--url "ws://127.0.0.1:$a/ws" --url "ws://127.0.0.1:$b/ws")
    for run in "crossnode --rate 100 --secs 10" \
      "fanout --members 20 --senders 20 --rate 4000 --secs 10"; do
      # shellcheck disable=SC2086
      result=$(target/release/chorus-load $run "${urls[@]}" --prefix "w$round$wait${run%% *}")
      printf '{"wait":%s,"round":%s,"run":"%s","result":%s}\n' "$wait" "$round" "${run%% *}" \
        "$result" | tee -a "$out"
    done
    kill "${node_pids[@]}"
    wait "${node_pids[@]}" 2>/dev/null || true
  done
done
