#!/usr/bin/env bash
# node-restart.sh kubelet|containerd: restarts one of the real node's daemons the way a node upgrade or a
# crash does: SIGTERM (SIGKILL after 10 s), then the same command line node-up.sh started it with. Running
# containers survive both (their runc shims are not children of containerd). For the fault e2e tests.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/node-lib.sh"
name=${1:-}
case "$name" in
  kubelet | containerd) ;;
  *) echo "usage: $0 kubelet|containerd" >&2; exit 2 ;;
esac
dir="$LIFEBOAT_CLUSTER_DIR"
[ -s "$dir/$name.cmd" ] && [ -s "$dir/$name.pid" ] || { log "$name was not started by node-up.sh"; exit 1; }
pid=$(cat "$dir/$name.pid")
if kill -0 "$pid" 2>/dev/null; then
  kill -TERM "$pid"
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
  while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
fi
mapfile -d '' command <"$dir/$name.cmd"
export PATH="$LIFEBOAT_BIN:/usr/sbin:/usr/bin:/sbin:/bin"
setsid "${command[@]}" >>"$dir/$name.log" 2>&1 </dev/null 7>&- &
echo $! >"$dir/$name.pid"
echo "$name restarted (was pid $pid, now $!)"
