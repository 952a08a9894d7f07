#!/usr/bin/env bash
# Stops the real node and removes everything it put on the host, also after a killed run: the processes of
# the node (kubelet, kube-proxy, containerd, shims, Pods, the apiserver relay), its cgroups, its mount and
# network namespaces (with them the veth and every mount made inside) and, last, the guard routes.
# Safe to run when nothing is up. Then checks that nothing is left and that the host's kernel settings are
# the ones recorded before the node started.
#   node-down.sh stop    steps 1-4: everything but the guard routes (cluster-down.sh, before the apiserver,
#                        which may still dial pod addresses, stops)
#   node-down.sh finish  steps 5-6: the guard routes and the checks (after the whole cluster stopped)
#   node-down.sh         both
set -uo pipefail
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/node-lib.sh"

# ns_inode FILE: the namespace inode bound at FILE (empty when nothing is bound there).
ns_inode() { [ -e "$1" ] && stat -L -c %i "$1" 2>/dev/null | grep -v '^0$' || true; }
is_mounted() { grep -q " $1 " /proc/self/mountinfo; }

# pids_of_node: every process of ours: in our mount or network namespace, or in our cgroups. (One `find`
# over /proc: a loop forking per process takes seconds.)
pids_of_node() {
  local f
  for f in "$NODE_MNTNS" "$NODE_NETNS"; do
    is_mounted "$f" || continue
    local kind; kind=$(basename "$f")
    find /proc -mindepth 3 -maxdepth 3 -path "/proc/[0-9]*/ns/$kind" -lname "$kind:\[$(stat -L -c %i "$f")\]" \
      2>/dev/null | cut -d/ -f3 | grep -vx "$$"
  done
  for d in $(node_cgroup_dirs); do
    [ -d "$d" ] && find "$d" -name cgroup.procs -exec cat {} + 2>/dev/null
  done
}

stop_pidfile() { # stop_pidfile NAME: TERM, then KILL after 5 s
  local f="$LIFEBOAT_CLUSTER_DIR/$1.pid"
  [ -f "$f" ] || return 0
  local pid; pid=$(cat "$f")
  if alive "$pid"; then
    kill -TERM "$pid" 2>/dev/null
    for _ in $(seq 1 50); do alive "$pid" || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null
    log "stopped $1"
  fi
  rm -f "$f"
}

what=${1:-all}
if [ "$what" = stop ] || [ "$what" = all ]; then
# 1. The kubelet first (it would restart containers), kube-proxy, then containerd.
for c in kubelet kube-proxy containerd; do stop_pidfile "$c"; done
# 2. Whatever is left in our namespaces and cgroups (shims, containers, a run killed before writing pid files).
for round in 1 2 3 4 5 6 7 8 9 10; do
  pids=$(pids_of_node | sort -u)
  [ -z "$pids" ] && break
  [ "$round" = 1 ] && log "killing $(echo $pids | wc -w) leftover process(es) of the node"
  # shellcheck disable=SC2086
  kill -KILL $pids 2>/dev/null
  sleep 0.3
done
stop_pidfile apiserver-relay

# 3. The namespaces: unbinding them frees every mount made inside and, with the netns, the veth pair.
for f in "$NODE_MNTNS" "$NODE_NETNS"; do
  is_mounted "$f" && { umount "$f" || umount -l "$f"; }
done
is_mounted "$NODE_NS" && { umount "$NODE_NS" || umount -l "$NODE_NS"; }
ip link show lbn-host >/dev/null 2>&1 && ip link del lbn-host
# Anything else mounted under our directory on the host (nothing should be: every mount of the node is made
# inside its mount namespace), deepest first.
awk -v d="$NODE_DIR/" 'index($5, d) == 1 {print $5}' /proc/self/mountinfo | sort -r | while read -r m; do
  log "unmounting leftover $m"; umount -l "$m"
done

# 4. Cgroups, deepest first (rmdir only succeeds on empty ones; retried while killed tasks exit).
for d in $(node_cgroup_dirs); do
  [ -d "$d" ] || continue
  for _ in 1 2 3 4 5 6 7 8 9 10; do
    find "$d" -depth -type d -exec rmdir {} + 2>/dev/null
    [ -d "$d" ] || break
    sleep 0.3
  done
  [ -d "$d" ] && log "WARNING: cgroup $d could not be removed"
done


# 5. This run's state: the next run starts clean (no IP reservations or containers of Pods that no longer
# exist). Only when nothing is mounted below it any more: rm must never cross into a mount.
if [ -d "$NODE_DIR" ]; then
  if grep -q " $NODE_DIR/" /proc/self/mountinfo; then
    log "WARNING: mounts left under $NODE_DIR: keeping its state"
  else
    find "$NODE_DIR" -mindepth 1 -maxdepth 1 ! -name '*.before' -exec rm -rf {} +
  fi
fi
fi
[ "$what" = stop ] && exit 0

# 6. The guard routes, last: nothing of the node runs any more.
for r in $GUARD_ROUTES; do
  ip route show type blackhole "$r" 2>/dev/null | grep -q . && ip route del blackhole "$r"
done

# 7. Checks: nothing left behind, the host's kernel settings unchanged.
left=0
grep -E " ($NODE_DIR|/run/containerd|/var/lib/kubelet|/var/log/pods|/var/log/containers)[/ ]" /proc/self/mountinfo && left=1
for p in $NODE_HOST_PATHS; do
  if [ -e "$p" ] && [ -f "$NODE_DIR/host-paths.before" ] && ! grep -qx "$p" "$NODE_DIR/host-paths.before"; then
    log "WARNING: $p appeared on the host while the node ran"; left=1
  fi
done
ip link show lbn-host >/dev/null 2>&1 && { log "WARNING: veth lbn-host left"; left=1; }
for d in $(node_cgroup_dirs); do [ -d "$d" ] && { log "WARNING: cgroup $d left"; left=1; }; done
if [ -f "$NODE_DIR/host-sysctls.before" ] && [ "$(host_sysctls)" != "$(cat "$NODE_DIR/host-sysctls.before")" ]; then
  log "WARNING: host kernel settings differ from before the node started:"; diff "$NODE_DIR/host-sysctls.before" <(host_sysctls) >&2
  left=1
fi
# Reported once: the next run records its own "before".
rm -f "$NODE_DIR/host-paths.before" "$NODE_DIR/host-sysctls.before"
[ "$left" = 0 ] || exit 1
exit 0
