#!/usr/bin/env bash
# node-restart.sh kubelet|containerd: restarts one of the real node's daemons the way a node upgrade or a
# crash does: SIGTERM (SIGKILL after 10 s), then the same command line node-up.sh started it with, and waits
# until it serves again (containerd's socket, the kubelet's /healthz). Running containers survive both (their
# runc shims are not children of containerd). For the fault e2e tests.
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
# A stale pid file could name a reused pid: only signal the daemon itself (`alive` treats zombies as gone).
cmdline=$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)
if alive "$pid" && [[ $cmdline == *"$name"* ]]; then
  kill -TERM "$pid"
  for _ in $(seq 1 100); do alive "$pid" || break; sleep 0.1; done
  if alive "$pid"; then
    kill -KILL "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do alive "$pid" || break; sleep 0.1; done
  fi
  alive "$pid" && { log "$name (pid $pid) did not stop"; exit 1; }
fi
mapfile -d '' command <"$dir/$name.cmd"
export PATH="$LIFEBOAT_BIN:/usr/sbin:/usr/bin:/sbin:/bin"
setsid "${command[@]}" >>"$dir/$name.log" 2>&1 </dev/null 7>&- &
new=$!
echo "$new" >"$dir/$name.pid"
case "$name" in
  containerd) wait_for 30 "containerd's socket" test -S "$NODE_DIR/containerd/containerd.sock" ;;
  kubelet) wait_for 60 "the kubelet's /healthz" in_node curl -fs http://127.0.0.1:10248/healthz ;;
esac
echo "$name restarted (was pid $pid, now $new)"
