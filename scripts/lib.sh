# Shell helpers shared by scripts/test.sh and scripts/cluster.sh (sourced, not run).

# Prints a free TCP port on loopback.
free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_ok URL [SECONDS]: waits (default 30 s) until URL answers 200; fails otherwise.
wait_ok() {
  python3 - "$1" "${2:-30}" <<'PY'
import sys, time, urllib.request
deadline = time.time() + float(sys.argv[2])
while True:
    try:
        if urllib.request.urlopen(sys.argv[1], timeout=2).status == 200:
            break
    except OSError:
        pass
    if time.time() > deadline:
        sys.exit(f"{sys.argv[1]} did not answer 200 in time")
    time.sleep(0.2)
PY
}
