# Shared settings of the local cluster scripts. Sourced, not run.
LIFEBOAT_CACHE="${LIFEBOAT_CACHE:-$HOME/.cache/lifeboat}"
LIFEBOAT_CLUSTER_DIR="${LIFEBOAT_CLUSTER_DIR:-$LIFEBOAT_CACHE/cluster}"
LIFEBOAT_BIN="$LIFEBOAT_CACHE/bin"
export PATH="$LIFEBOAT_BIN:$PATH"
export KUBECONFIG="$LIFEBOAT_CLUSTER_DIR/kubeconfig"
APISERVER_PORT="${LIFEBOAT_APISERVER_PORT:-16443}"
ETCD_CLIENT_PORT="${LIFEBOAT_ETCD_PORT:-12379}"
ETCD_PEER_PORT=$((ETCD_CLIENT_PORT + 1))
REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

log() { printf '[%s] %s\n' "$(basename "$0" .sh)" "$*" >&2; }

# pid_alive NAME: the component started by cluster-up.sh is still running.
pid_alive() {
  local pidfile="$LIFEBOAT_CLUSTER_DIR/$1.pid"
  [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null
}

# alive PID: the process runs (a zombie not yet reaped by whoever inherited it counts as gone: `kill -0`
# succeeds on zombies, which made every stop wait its full timeout).
alive() { [ -r "/proc/$1/stat" ] && ! grep -q ') Z ' "/proc/$1/stat" 2>/dev/null; }

# wait_for SECONDS DESCRIPTION COMMAND...: polls COMMAND every 0.2 s.
wait_for() {
  local seconds=$1 what=$2; shift 2
  local deadline=$((SECONDS + seconds))
  until "$@" >/dev/null 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      log "timed out after ${seconds}s waiting for $what"
      return 1
    fi
    sleep 0.2
  done
}

# real_node_wanted: cluster-up.sh starts the real node `lifeboat-node` too (hack/node-up.sh). It needs root;
# LIFEBOAT_REAL_NODE=0 leaves it out.
real_node_wanted() { [ "${LIFEBOAT_REAL_NODE:-1}" != 0 ] && [ "$(id -u)" = 0 ]; }
