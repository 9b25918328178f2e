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
# SENTINEL=1: Redis with two replicas and three sentinels (master name "mymaster"); the nodes
# find the master through the sentinels. REDIS_PIDS lists master and replicas: kill the master
# (the first) and watch the chat go on once a replica is promoted (a few seconds).
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

pids=()
cleanup() {
  trap - EXIT INT TERM
  kill "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 0' INT TERM

redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly yes \
  --dir "$dir/redis" >"$dir/redis.log" 2>&1 &
redis_pids=$!
# What stops the cluster when it dies: not a Redis server under Sentinel (killing it is the demo).
watched=()
redis_args=(--redis-url "$redis_url")
if [[ "${SENTINEL:-}" == 1 ]]; then
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
[[ "${SENTINEL:-}" == 1 ]] && log "sentinels $sentinels watch redis pids $redis_pids (master first): kill -9 the master to see a failover"
log "logs in target/cluster/; Ctrl-C stops everything"

# Stop everything as soon as any one of them dies.
wait -n "${watched[@]}"
log "a cluster process exited; stopping the rest"
exit 1
