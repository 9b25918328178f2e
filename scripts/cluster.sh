#!/usr/bin/env bash
# A local Chorus cluster on loopback: one redis-server, two chorus nodes on the Redis bus, and nginx
# in front of them (deploy/nginx.conf.template), each on a free port. Runs until Ctrl-C (or until
# one of them dies), then stops them all.
#
#   scripts/cluster.sh              set up what is missing, build, start; open the printed URL
#   scripts/cluster.sh --no-build   start from the existing debug build (the test script's way)
#
# CLUSTER_PORT picks nginx's port (default: a free one); CHORUS_BIN the server binary (default:
# the debug build; scripts/bench.sh uses the release build); NODES how many nodes (default 2, at
# most 26: node-a, node-b, …). Once everything answers, the URLs and node pids are written to
# target/cluster/urls.env (CLUSTER_URL, REDIS_URL, NODE_A_URL, NODE_A_PID, NODE_B_URL, …, and
# NODE_URLS / NODE_PIDS with all of them, space-separated); logs are in target/cluster/.
#
# REDIS picks how Redis runs:
#   single    (default) one redis-server.
#   sentinel  Redis with two replicas and three sentinels (master name "mymaster"); the nodes
#             find the master through the sentinels. REDIS_PIDS lists master and replicas: kill
#             the master (the first) and watch the chat go on once a replica is promoted (a few
#             seconds). SENTINEL=1 means the same.
#   cluster   a Redis Cluster of three masters with a replica each (`redis-cli --cluster
#             create`); the nodes are given every server as a seed. REDIS_PIDS lists all six:
#             kill -9 one that `redis-cli -p PORT cluster nodes` calls master, and its replica
#             takes over its slots within a few seconds (cluster-node-timeout 2000).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH:/usr/sbin"
log() { printf '\033[1m[cluster]\033[0m %s\n' "$*"; }
source scripts/lib.sh

if [[ "${1:-}" != "--no-build" ]]; then
  scripts/setup.sh
  cargo leptos build
fi

dir="$PWD/target/cluster"
rm -rf "$dir"
mkdir -p "$dir/redis" "$dir/nginx"
# free_port only finds a port free right now; nothing holds it until its server starts, so the
# same port can come back twice (seen: nginx given node-a's port). Hand each out once.
# next_port sets $port (not a $(...) subshell, which would forget what was taken).
taken=" "
next_port() {
  while port=$(free_port) && [[ "$taken" == *" $port "* ]]; do :; done
  taken+="$port "
}
lb_port=${CLUSTER_PORT:-$(free_port)}
taken+="$lb_port "
next_port
redis_port=$port
count=${NODES:-2}
if ! [[ "$count" =~ ^[0-9]+$ ]] || ((count < 1 || count > 26)); then
  echo "NODES must be 1 to 26" >&2
  exit 2
fi
names=()
for letter in {a..z}; do
  ((${#names[@]} < count)) && names+=("$letter")
done
redis_url="redis://127.0.0.1:$redis_port/"
mode=${REDIS:-single}
[[ "${SENTINEL:-}" == 1 ]] && mode=sentinel
case "$mode" in
  single | sentinel | cluster) ;;
  *) echo "REDIS must be single, sentinel or cluster" >&2; exit 2 ;;
esac

pids=()
cleanup() {
  trap - EXIT INT TERM
  kill "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 0' INT TERM

# In a Redis Cluster, each server also listens on a bus port (its port + 10000 unless set, out
# of range for ports above 55535): cluster_args sets a free one each time.
cluster_args=()
cluster_bus() {
  cluster_args=()
  [[ "$mode" == cluster ]] || return 0
  local client=$port
  next_port
  cluster_args=(--cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 2000
    --cluster-port "$port")
  port=$client
}
port=$redis_port
cluster_bus
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly yes \
  --dir "$dir/redis" "${cluster_args[@]}" >"$dir/redis.log" 2>&1 &
redis_pids=$!
# What stops the cluster when it dies: not a Redis server under Sentinel or in a Redis Cluster
# (killing one is the demo).
watched=()
redis_args=(--redis-url "$redis_url")
if [[ "$mode" == cluster ]]; then
  seeds="127.0.0.1:$redis_port"
  for r in 2 3 4 5 6; do
    next_port
    cluster_bus
    mkdir -p "$dir/redis-$r"
    redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly yes \
      --dir "$dir/redis-$r" "${cluster_args[@]}" >"$dir/redis-$r.log" 2>&1 &
    redis_pids+=" $!"
    seeds+=",127.0.0.1:$port"
  done
  for seed in ${seeds//,/ }; do
    for _ in $(seq 1 100); do
      redis-cli -p "${seed##*:}" ping >/dev/null 2>&1 && break
      sleep 0.1
    done
  done
  redis-cli --cluster create ${seeds//,/ } --cluster-replicas 1 --cluster-yes >"$dir/create.log" 2>&1
  for _ in $(seq 1 100); do
    redis-cli -p "$redis_port" cluster info 2>/dev/null | grep -q cluster_state:ok && break
    sleep 0.1
  done
  redis_args=(--redis-cluster "$seeds")
elif [[ "$mode" == sentinel ]]; then
  for r in 1 2; do
    next_port
    mkdir -p "$dir/replica-$r"
    redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly yes \
      --dir "$dir/replica-$r" --replicaof 127.0.0.1 "$redis_port" >"$dir/replica-$r.log" 2>&1 &
    redis_pids+=" $!"
  done
  sentinels=""
  for s in 1 2 3; do
    next_port
    mkdir -p "$dir/sentinel-$s"
    printf 'port %s\nbind 127.0.0.1\ndir %s\nsentinel monitor mymaster 127.0.0.1 %s 2\nsentinel down-after-milliseconds mymaster 2000\nsentinel failover-timeout mymaster 10000\n' \
      "$port" "$dir/sentinel-$s" "$redis_port" >"$dir/sentinel-$s/sentinel.conf"
    redis-server "$dir/sentinel-$s/sentinel.conf" --sentinel >"$dir/sentinel-$s.log" 2>&1 &
    pids+=($!)
    watched+=($!)
    sentinels+="${sentinels:+,}127.0.0.1:$port"
  done
  redis_args=(--redis-sentinels "$sentinels" --redis-sentinel-master mymaster)
else
  watched+=("$redis_pids")
fi
pids+=($redis_pids)

bin=${CHORUS_BIN:-target/debug/chorus}
servers="" env_lines="" urls="" node_pids=""
for node in "${names[@]}"; do
  next_port
  LEPTOS_SITE_ROOT=target/site CHORUS_CONFIG=/dev/null "$bin" \
    --listen "127.0.0.1:$port" "${redis_args[@]}" --node-id "node-$node" \
    >"$dir/node-$node.log" 2>&1 &
  pids+=($!)
  watched+=($!)
  upper=${node^^}
  env_lines+="NODE_${upper}_URL=http://127.0.0.1:$port"$'\n'"NODE_${upper}_PID=$!"$'\n'
  urls+="${urls:+ }http://127.0.0.1:$port"
  node_pids+="${node_pids:+ }$!"
  servers+="        server 127.0.0.1:$port max_fails=1 fail_timeout=2s;"$'\n'
done
for url in $urls; do
  wait_ok "$url/readyz"
done

conf=$(<deploy/nginx.conf.template)
conf=${conf//@PREFIX@/$dir/nginx}
conf=${conf//@LISTEN@/127.0.0.1:$lb_port}
conf=${conf//@SERVERS@/$servers}
conf=${conf//@USER@/$(id -un)}
printf '%s\n' "$conf" >"$dir/nginx/nginx.conf"
nginx -p "$dir/nginx" -c "$dir/nginx/nginx.conf" -g 'daemon off;' >"$dir/nginx.log" 2>&1 &
pids+=($!)
watched+=($!)
wait_ok "http://127.0.0.1:$lb_port/readyz"

cat >"$dir/urls.env" <<ENV
CLUSTER_URL=http://127.0.0.1:$lb_port
REDIS_URL=$redis_url
REDIS_PIDS="$redis_pids"
${env_lines}NODE_URLS="$urls"
NODE_PIDS="$node_pids"
ENV
log "ready: http://127.0.0.1:$lb_port  (nginx → $urls; redis :$redis_port)"
[[ "$mode" == cluster ]] && log "redis cluster $seeds (pids $redis_pids): kill -9 a master to see a failover"
[[ "$mode" == sentinel ]] && log "sentinels $sentinels watch redis pids $redis_pids (master first): kill -9 the master to see a failover"
log "logs in target/cluster/; Ctrl-C stops everything"

# Stop everything as soon as any one of them dies.
wait -n "${watched[@]}"
log "a cluster process exited; stopping the rest"
exit 1
