#!/usr/bin/env bash
# Stops the local cluster started by cluster-up.sh: the local node first (it kills its Pods' processes),
# then the scheduler, controller-manager, apiserver and etcd.
set -uo pipefail
source "$(dirname "$0")/lib.sh"

stop() {
  local name=$1 pidfile="$LIFEBOAT_CLUSTER_DIR/$1.pid"
  [ -f "$pidfile" ] || return 0
  local pid; pid=$(cat "$pidfile")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null
    log "stopped $name"
  fi
  rm -f "$pidfile"
}

for component in localnode kube-scheduler kube-controller-manager kube-apiserver etcd; do
  stop "$component"
done
