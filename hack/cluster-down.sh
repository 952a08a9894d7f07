#!/usr/bin/env bash
# Stops the local cluster started by cluster-up.sh: the real node first (hack/node-down.sh: its processes,
# namespaces and cgroups), then the scheduler,
# controller-manager, apiserver and etcd; the real node's guard routes go last, when nothing can dial a Pod
# address any more. Exits non-zero when something of the real node was left behind.
set -uo pipefail
source "$(dirname "$0")/lib.sh"

# Not while a cluster-up runs (cluster-up.sh holds the lock and calls us itself).
if [ -z "${LIFEBOAT_CLUSTER_LOCKED:-}" ]; then
  mkdir -p "$LIFEBOAT_CACHE"
  exec 7>"$LIFEBOAT_CACHE/cluster.lock"
  flock 7
fi

stop() {
  local name=$1 pidfile="$LIFEBOAT_CLUSTER_DIR/$1.pid"
  [ -f "$pidfile" ] || return 0
  local pid; pid=$(cat "$pidfile")
  if alive "$pid"; then
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 1 100); do alive "$pid" || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null
    log "stopped $name"
  fi
  rm -f "$pidfile"
}

# Also when the real node is not wanted now: a previous run may have started it.
[ "$(id -u)" = 0 ] && "$REPO_ROOT/hack/node-down.sh" stop
# localnode: the process-running node of earlier versions, stopped if a cluster they started still runs.
for component in localnode kube-scheduler kube-controller-manager kube-apiserver etcd; do
  stop "$component"
done
if [ "$(id -u)" = 0 ]; then
  "$REPO_ROOT/hack/node-down.sh" finish || exit 1
fi
exit 0
