#!/usr/bin/env bash
# The standard benchmark set on this machine. Not part of the tests.
#   scripts/bench.sh            all four sets (about 11 minutes)
#   scripts/bench.sh single     one node, in-memory bus
#   scripts/bench.sh cluster    two nodes on one Redis behind nginx (scripts/cluster.sh)
#   scripts/bench.sh shards     the two-node fan-out and cross-node runs again, on a Redis Cluster
#                               of three masters with a replica each (REDIS=cluster), to set
#                               beside the one-Redis numbers of `cluster`
#   scripts/bench.sh typing     the two-node fan-out without and with 50 people typing, by turns
#   scripts/bench.sh lists      join storms (rooms of 200, one room of 10,000) by clients that take
#                               presence_changes and by clients that take whole lists, by turns
#   scripts/bench.sh many       100,000 idle connections over six nodes on one Redis, from six
#                               load processes (each process may hold 20,000 open files at most);
#                               RAMP sets each process's connects per second (default 400);
#                               PER_NODE connections per process (default 16,667); ROOM=<name>
#                               puts all of them in that one room instead of rooms of 100;
#                               REDIS=cluster runs it on the three-master cluster instead
#   QUICK=1 scripts/bench.sh    smaller numbers, for a smoke run
# Prints one JSON line per run and keeps them in target/bench/single-node.jsonl,
# target/bench/two-nodes.jsonl, target/bench/two-nodes-cluster.jsonl and
# target/bench/six-nodes.jsonl (six-nodes-cluster.jsonl with REDIS=cluster).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
if [[ -n "${QUICK:-}" ]]; then
  connections=2000 rates="500" cycles=5000 per_node=1000
else
  connections=19000 rates="500 1000 2000 3000" cycles=100000 per_node=16667
fi
which=${1:-all}
# The load generator is not a person: each of its connections sends hundreds of frames a second
# and one address opens thousands of connections, far past the limits set for people. The limits
# are raised out of its way rather than switched off, so every frame and connect still goes
# through the rate limiter. (Inherited by the nodes scripts/cluster.sh starts.)
export CHORUS_SENDS_PER_SEC=1000000 CHORUS_SEND_BURST=1000000 CHORUS_BYTES_PER_SEC=1000000000 \
  CHORUS_CONTROLS_PER_SEC=1000000 CHORUS_CONTROL_BURST=1000000 CHORUS_CONNECTS_PER_SEC=1000000 \
  CHORUS_CONNECT_BURST=1000000 CHORUS_MAX_CONNECTIONS_PER_ADDRESS=0 \
  CHORUS_ROOMS_CREATED_PER_MIN=1000000

# Starts Redis (one server, or with REDIS=cluster a Redis Cluster), $1 release nodes and nginx
# (scripts/cluster.sh, logging to $2) in the background and loads the URLs and pids it writes.
start_cluster() {
  rm -f target/cluster/urls.env
  NODES=$1 CHORUS_BIN=${CHORUS_BIN:-target/release/chorus} scripts/cluster.sh --no-build >"$2" 2>&1 &
  cluster=$!
  trap 'kill "$cluster" 2>/dev/null || true' EXIT
  for _ in $(seq 300); do
    [[ -f target/cluster/urls.env ]] && break
    sleep 0.2
  done
  set -a; source target/cluster/urls.env; set +a
}
stop_cluster() {
  kill "$cluster" 2>/dev/null || true
  wait "$cluster" 2>/dev/null || true
}
cargo build --release --features ssr --bin chorus --bin chorus-load
mkdir -p target/bench

# A fresh single node: memory runs start from a process that has not yet freed anything (the
# allocator keeps freed pages, so a second run in one process would reuse them and read low).
start_node() {
  port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  CHORUS_CONFIG=/dev/null target/release/chorus --listen "127.0.0.1:$port" --log warn &
  pid=$!
  trap 'kill "$pid" 2>/dev/null || true' EXIT
  for _ in $(seq 100); do
    python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 1)" 2>/dev/null && break
    sleep 0.1
  done
  url="ws://127.0.0.1:$port/ws"
}
stop_node() {
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
load() { target/release/chorus-load "$@" --url "$url" --max-secs 300 | tee -a "$out"; }
sources=(--source 127.0.0.1 --source 127.0.0.2 --source 127.0.0.3 --source 127.0.0.4)

if [[ "$which" == all || "$which" == single ]]; then
out=target/bench/single-node.jsonl
: >"$out"


# Memory per idle, named, joined connection (rooms of 100). One node's open-file limit is 20,000.
start_node
load capacity --pid "$pid" "${sources[@]}" --prefix cap --connections "$connections" \
  --ramp 3000 --room-size 100 --hold-secs 5
stop_node
# The same after joins that carry a full history (100 messages of 1,000 characters per room):
# what a connection keeps of the largest frame it was sent.
start_node
load capacity --pid "$pid" "${sources[@]}" --prefix hist --connections "$((connections / 4))" \
  --ramp 3000 --room-size 100 --fill-messages 100 --fill-chars 1000 --hold-secs 5
# The capacity connections are closed again before the next run (they belong to that process).
sleep 3

# Fan-out to a 200-member room at rising offered rates (deliveries = rate x 200).
for rate in $rates; do
  load fanout --pid "$pid" --prefix "fan$rate" --members 200 --senders 20 --rate "$rate" --secs 10
done

# Latency of one sender to one receiver at 100 messages/s (same node here).
load crossnode --prefix cross --url "$url" --rate 100 --secs 10

# Leaks: RSS and descriptors after many connect/join/close cycles.
load churn --pid "$pid" --prefix churn --cycles "$cycles" --rate 2000 --concurrency 128
stop_node
fi

# Two nodes: a 200-member room, half its members on each node, senders on both: every message
# crosses Redis once and is fanned out by both nodes; then a sender on node A and a receiver on
# node B, through Redis pub/sub.
two_nodes() {
  a="ws://${NODE_A_URL#http://}/ws" b="ws://${NODE_B_URL#http://}/ws" lb="ws://${CLUSTER_URL#http://}/ws"
  nodes=(--pid "$NODE_A_PID" --pid "$NODE_B_PID")
  run() { target/release/chorus-load "$@" --max-secs 300 | tee -a "$out"; }
  for rate in $rates; do
    run fanout --url "$a" --url "$b" "${nodes[@]}" --prefix "cfan$rate" --members 200 \
      --senders 20 --rate "$rate" --secs 10
  done
  run crossnode --url "$a" --url "$b" --prefix ccross --rate 100 --secs 10
}

if [[ "$which" == all || "$which" == shards ]]; then
  out=target/bench/two-nodes-cluster.jsonl
  : >"$out"
  REDIS=cluster start_cluster 2 target/bench/cluster-shards.log
  two_nodes
  stop_cluster
fi

if [[ "$which" == all || "$which" == cluster ]]; then
  out=target/bench/two-nodes.jsonl
  : >"$out"
  REDIS=single start_cluster 2 target/bench/cluster.log
  two_nodes
  # Room tasks that fell behind their bus ring and resynced from Redis during the fan-out.
  for node in "$NODE_A_URL" "$NODE_B_URL"; do
    resyncs=$(curl -s "$node/metrics" | awk '/^chorus_resyncs_total/ {print $2}')
    echo "{\"test\":\"resyncs\",\"node\":\"$node\",\"resyncs\":${resyncs:-null}}" | tee -a "$out"
  done
  # The floor under it: one Redis pub/sub hop alone (PUBLISH -> subscriber), no Chorus in the path.
  run pubsub --redis "$REDIS_URL" --rate 100 --secs 10
  # Idle connections on both nodes (directly: nginx's 8,192 worker connections would cap it at
  # about 4,000 proxied WebSockets), to see what Redis membership costs per connection.
  run capacity --url "$a" --url "$b" "${nodes[@]}" --source 127.0.0.1 --source 127.0.0.2 \
    --source 127.0.0.3 --source 127.0.0.4 --prefix ccap --connections "$((connections / 2))" \
    --ramp 2000 --room-size 100 --hold-secs 5
  sleep 3
  # Connect/join/close cycles through nginx.
  run churn --url "$lb" "${nodes[@]}" --prefix cchurn --cycles "$((cycles / 5))" --rate 1000 \
    --concurrency 64
  stop_cluster
fi

# Typing beside the fan-out (issue 19): the two-node 400k deliveries/s run, by turns without and
# with 50 of its members saying `typing` every 3 s, three rounds.
if [[ "$which" == typing ]]; then
  out=target/bench/typing.jsonl
  : >"$out"
  REDIS=single start_cluster 2 target/bench/cluster-typing.log
  a="ws://${NODE_A_URL#http://}/ws" b="ws://${NODE_B_URL#http://}/ws"
  for round in 1 2 3; do
    for typists in 0 50; do
      target/release/chorus-load fanout --url "$a" --url "$b" --pid "$NODE_A_PID" --pid "$NODE_B_PID" \
        --prefix "typ$round-$typists" --members 200 --senders 20 --rate 2000 --secs 10 \
        --typists "$typists" --max-secs 300 | tee -a "$out"
    done
  done
  stop_cluster
fi

# Member lists in a join storm (issue 17): the same storm joined by clients that take
# `presence_changes` and by clients that take whole lists (--whole-lists), by turns, each on a
# fresh node; capacity reports the member-list bytes its connections read after joining.
if [[ "$which" == lists ]]; then
  out=target/bench/lists.jsonl
  : >"$out"
  for round in 1 2; do
    for how in c w; do
      flag=(); [[ "$how" == w ]] && flag=(--whole-lists)
      # Rooms of 200 that all grow at once (a restart's reconnect storm), 50 joins a second each.
      start_node
      load capacity --pid "$pid" "${sources[@]}" --prefix "r$round$how" --connections 4000 \
        --ramp 1000 --room-size 200 --interleave --hold-secs 5 "${flag[@]}"
      stop_node
      start_node
      load capacity --pid "$pid" "${sources[@]}" --prefix "b$round$how" --connections 10000 \
        --ramp 1000 --room everyone --hold-secs 5 "${flag[@]}"
      stop_node
    done
  done
fi

if [[ "$which" == all || "$which" == many ]]; then
  if [[ "${REDIS:-single}" == cluster ]]; then out=target/bench/six-nodes-cluster.jsonl; else out=target/bench/six-nodes.jsonl; fi
  : >"$out"
  start_cluster 6 target/bench/cluster-six.log
  read -r -a node_urls <<<"$NODE_URLS"
  read -r -a node_pids <<<"$NODE_PIDS"
  # One load process per node, each from its own two source addresses, all at once; each holds
  # its connections 90 s after its last one is in, so all of them are open together.
  fds() { local n=0 p; for p in "${node_pids[@]}"; do n=$((n + $(ls /proc/"$p"/fd | wc -l))); done; echo "$n"; }
  base=$(fds) peak=0
  loads=()
  for i in "${!node_urls[@]}"; do
    url="ws://${node_urls[$i]#http://}/ws"
    target/release/chorus-load capacity --url "$url" --pid "${node_pids[$i]}" \
      --source "127.0.$((i + 1)).1" --source "127.0.$((i + 1)).2" --prefix "six$i" \
      --connections "${PER_NODE:-$per_node}" --ramp "${RAMP:-400}" --room-size 100 \
      ${ROOM:+--room "$ROOM"} --hold-secs 90 --max-secs 500 \
      >"target/bench/six-$i.json" &
    loads+=($!)
  done
  # The most connections open at once: descriptors of all six nodes, sampled every second.
  while kill -0 "${loads[@]}" 2>/dev/null; do
    now=$(fds); ((now > peak)) && peak=$now
    sleep 1
  done
  wait "${loads[@]}" || true
  cat target/bench/six-*.json | tee -a "$out"
  echo "{\"test\":\"six-nodes\",\"nodes\":6,\"node_fds_at_start\":$base,\"peak_node_fds\":$peak,\"peak_connections\":$((peak - base))}" | tee -a "$out"
  stop_cluster
fi
