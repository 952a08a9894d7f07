# Shared settings of the real node's scripts (node-up.sh, node-down.sh, node-images.sh). Sourced after lib.sh.
#
# Layout (nothing of the node touches the host's network or kernel settings):
# - host namespace: `blackhole` guard routes for 198.18.0.0/15 (pods and the node) and 10.96.0.0/16
#   (Services), so a packet to those ranges can never leave the machine; more specific routes over the veth
#   lbn-host (198.18.1.2/30) carry 198.18.1.0/30 and the pod subnet 198.18.0.0/24 into the node's netns.
# - $NODE_DIR/ns/net: the node's network namespace (a file of ours, not /run/netns: `ip netns add` would leave
#   a shared mount on /run/netns behind). No default route inside. containerd, kubelet, kube-proxy and every
#   Pod live there or below it.
# - $NODE_DIR/ns/mnt: a private mount namespace for containerd, kubelet and kube-proxy, in which /run, /var/lib
#   and /var/log are directories of $NODE_DIR/host (so /run/containerd, /var/lib/kubelet, /var/log/pods... never
#   appear on the host) and the /proc/sys files the kubelet insists on (vm.overcommit_memory=1, kernel.panic=10,
#   kernel.panic_on_oops=1, ...) read as it expects, so `protectKernelDefaults: true` passes without the host's
#   settings changing. Everything mounted inside disappears with the namespace.
# - cgroup /lifeboat-node in every hierarchy: the kubelet's cgroupRoot.
NODE_NAME=lifeboat-node
NODE_DIR="$LIFEBOAT_CLUSTER_DIR/real-node"
NODE_NS="$NODE_DIR/ns"
NODE_NETNS="$NODE_NS/net"
NODE_MNTNS="$NODE_NS/mnt"
NODE_CGROUP=lifeboat-node
NODE_IP=198.18.1.1          # lbn-node, inside the netns: the node's InternalIP
NODE_HOST_IP=198.18.1.2     # lbn-host, host side: the apiserver relay listens here
POD_CIDR=198.18.0.0/24
SERVICE_CIDR=10.96.0.0/16
GUARD_ROUTES="198.18.0.0/15 $SERVICE_CIDR"
CLUSTER_DNS=10.96.0.10
APISERVER_RELAY_PORT=6443
NODE_IMAGES_DIR="$LIFEBOAT_CACHE/node-images"
# The host kernel settings the kubelet checks (protectKernelDefaults) and the values it wants.
KUBELET_SYSCTLS="vm/overcommit_memory=1 vm/panic_on_oom=0 kernel/panic=10 kernel/panic_on_oops=1 kernel/keys/root_maxkeys=1000000 kernel/keys/root_maxbytes=25000000"
# Host paths the node's components use even when told otherwise: they must never appear on the host.
NODE_HOST_PATHS="/run/containerd /var/lib/kubelet /var/log/containers /var/log/pods /var/lib/cni /opt/containerd /run/xtables.lock /var/run/nri /etc/cni"

# in_node COMMAND...: runs COMMAND in the node's network and mount namespaces.
in_node() { nsenter --mount="$NODE_MNTNS" --net="$NODE_NETNS" -- "$@"; }
# in_netns COMMAND...: runs COMMAND in the node's network namespace only.
in_netns() { nsenter --net="$NODE_NETNS" -- "$@"; }

# host_sysctls: the host's values of the settings the kubelet checks, one key=value a line.
host_sysctls() { for kv in $KUBELET_SYSCTLS; do echo "${kv%%=*}=$(cat "/proc/sys/${kv%%=*}")"; done; }

# node_cgroup_dirs: our cgroup in every mounted hierarchy (v1 controllers and the unified one).
node_cgroup_dirs() {
  awk '$3 == "cgroup" || $3 == "cgroup2" {print $2}' /proc/self/mounts | while read -r mnt; do
    echo "$mnt/$NODE_CGROUP"
  done
}
