#!/usr/bin/env bash
# Starts the real node `lifeboat-node` beside the fake one: containerd, kubelet and kube-proxy in a network
# and a mount namespace of ours (see node-lib.sh for the layout and why), then CoreDNS as a Deployment.
# Called by cluster-up.sh once the control plane is up, after node-down.sh cleaned what a killed run left.
# Needs the certificates cluster-up.sh made (kubelet, kube-proxy) and root.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/node-lib.sh"
source "$REPO_ROOT/hack/versions.env"

dir="$LIFEBOAT_CLUSTER_DIR"
pki="$dir/pki"
[ "$(id -u)" = 0 ] || { log "the real node needs root"; exit 1; }
for tool in runc:runc /usr/lib/cni/bridge:containernetworking-plugins umoci:umoci iptables:iptables socat:socat; do
  command -v "${tool%%:*}" >/dev/null 2>&1 || [ -x "${tool%%:*}" ] ||
    { log "${tool%%:*} missing: run hack/install-tools.sh (Debian package ${tool#*:})"; exit 1; }
done
dpkg -s busybox-static >/dev/null 2>&1 || { log "busybox-static missing: run hack/install-tools.sh"; exit 1; }

start() { # start NAME COMMAND... : detached, own session, log, pid and command line in $dir
  local name=$1; shift
  setsid "$@" >"$dir/$name.log" 2>&1 </dev/null 7>&- &  # not inheriting the cluster lock
  echo $! >"$dir/$name.pid"
  printf '%s\0' "$@" >"$dir/$name.cmd"  # for node-restart.sh
}

mkdir -p "$NODE_DIR"
# Which of the fixed host paths existed before (node-down.sh reports any that appeared), and the host's kernel
# settings before the node starts (node-down.sh and tests/real_node_e2e.rs compare against them).
for p in $NODE_HOST_PATHS; do [ -e "$p" ] && echo "$p"; done >"$NODE_DIR/host-paths.before" || true
host_sysctls >"$NODE_DIR/host-sysctls.before"

# --- 1. guard routes, before anything of the node exists ---------------------------------------------------
for r in $GUARD_ROUTES; do
  existing=$(ip route show exact "$r")
  if [ -n "$existing" ] && ! grep -q '^blackhole' <<<"$existing"; then
    log "the host already routes $r ($existing): refusing to start the real node"; exit 1
  fi
  ip route replace blackhole "$r"
done

# --- 2. network namespace and veth --------------------------------------------------------------------------
# The namespaces are bound to files in $NODE_NS, a private mount (a mount namespace can only be bound on one).
mkdir -p "$NODE_NS"
mount --bind "$NODE_NS" "$NODE_NS"
mount --make-private "$NODE_NS"
touch "$NODE_NETNS" "$NODE_MNTNS"
unshare --net="$NODE_NETNS" true
ip link add lbn-host type veth peer name lbn-node
ip link set lbn-node netns "$NODE_NETNS"
ip addr add "$NODE_HOST_IP/30" dev lbn-host
ip link set lbn-host up
in_netns ip link set lo up
in_netns ip addr add "$NODE_IP/30" dev lbn-node
in_netns ip link set lbn-node up
# Pods reach the host side of the veth (the apiserver relay) through the node: forwarding inside the netns
# only (a per-namespace setting; the host's is untouched). No default route in there.
in_netns sysctl -q -w net.ipv4.ip_forward=1
# The apiserver (host) reaches Pods (webhooks, port-forward, service proxy) through the node.
ip route replace "$POD_CIDR" via "$NODE_IP" dev lbn-host
# Service addresses dialled from the node itself (hostNetwork Pods, a test's nsenter) need a route before
# kube-proxy's OUTPUT rules can rewrite them to a Pod's address, as any node's default route gives them.
# What no rule rewrites (a Service without endpoints) goes to the host side, where the guard drops it.
in_netns ip route replace "$SERVICE_CIDR" via "$NODE_HOST_IP" dev lbn-node

# --- 3. the apiserver relay: 198.18.1.2:6443 (host side of the veth) -> 127.0.0.1:$APISERVER_PORT ----------
start apiserver-relay socat "TCP-LISTEN:$APISERVER_RELAY_PORT,bind=$NODE_HOST_IP,reuseaddr,fork" \
  "TCP:127.0.0.1:$APISERVER_PORT"
wait_for 10 "the apiserver relay" bash -c "exec 3<>/dev/tcp/$NODE_HOST_IP/$APISERVER_RELAY_PORT"

# --- 4. cgroups: our cgroupRoot in every hierarchy; cpuset needs its cpus and mems before tasks join ----------
for d in $(node_cgroup_dirs); do
  mkdir -p "$d"
  if [ -f "$d/cpuset.cpus" ]; then
    cat "$(dirname "$d")/cpuset.cpus" >"$d/cpuset.cpus"
    cat "$(dirname "$d")/cpuset.mems" >"$d/cpuset.mems"
  fi
done

# --- 5. mount namespace -------------------------------------------------------------------------------------
host="$NODE_DIR/host"
mkdir -p "$host/run" "$host/var-lib/kubelet" "$host/var-log" "$NODE_DIR/sysctl"
unshare --mount="$NODE_MNTNS" --propagation private true
nsenter --mount="$NODE_MNTNS" -- mount --bind "$host/run" /run
nsenter --mount="$NODE_MNTNS" -- mount --bind "$host/var-lib" /var/lib
nsenter --mount="$NODE_MNTNS" -- mount --bind "$host/var-log" /var/log
for kv in $KUBELET_SYSCTLS; do
  key=${kv%%=*} want=${kv#*=}
  [ "$(cat "/proc/sys/$key")" = "$want" ] && continue
  f="$NODE_DIR/sysctl/${key//\//.}"
  echo "$want" >"$f"
  # Read-only: a write in there must fail rather than look successful.
  nsenter --mount="$NODE_MNTNS" -- mount --bind -o ro "$f" "/proc/sys/$key"
done

# --- 6. configuration ---------------------------------------------------------------------------------------
etc="$NODE_DIR/etc"
mkdir -p "$etc/cni" "$NODE_DIR/containerd" "$NODE_DIR/kubelet"
# Pods' resolv.conf is derived from this (dnsPolicy Default) and CoreDNS forwards nowhere: no host resolver.
echo "# lifeboat-node: no resolver outside the cluster" >"$etc/resolv.conf"
cat >"$etc/cni/10-lifeboat.conflist" <<JSON
{
  "cniVersion": "1.0.0",
  "name": "lifeboat",
  "plugins": [
    {
      "type": "bridge", "bridge": "lbn-br0", "isGateway": true, "ipMasq": false, "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$POD_CIDR"}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": "$NODE_DIR/cni-ipam"
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
JSON
c="$NODE_DIR/containerd"
cat >"$etc/containerd.toml" <<TOML
version = 3
root = "$c/root"
state = "$c/state"
disabled_plugins = ["io.containerd.nri.v1.nri", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "$c/containerd.sock"
[ttrpc]
  address = "$c/containerd.sock.ttrpc"
[debug]
  level = "info"

[plugins.'io.containerd.internal.v1.opt']
  path = "$c/opt"
[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "$PAUSE_IMAGE"
[plugins.'io.containerd.cri.v1.runtime']
  netns_mounts_under_state_dir = true
  enable_selinux = false
  # This machine's capability bounding set lacks CAP_SYS_RESOURCE: a negative oom_score_adj is refused.
  restrict_oom_score_adj = true
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = "$(command -v runc)"
        Root = "$c/runc"
        SystemdCgroup = false
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["/usr/lib/cni"]
    conf_dir = "$etc/cni"
[plugins.'io.containerd.grpc.v1.cri']
  disable_tcp_service = true
TOML

kubeconfig_node() { # kubeconfig_node FILE CERT: through the relay, as the node's components see the apiserver
  cat >"$1" <<KC
apiVersion: v1
kind: Config
clusters:
- name: lifeboat-local
  cluster:
    server: https://$NODE_HOST_IP:$APISERVER_RELAY_PORT
    certificate-authority: $pki/ca.crt
users:
- name: $2
  user:
    client-certificate: $pki/$2.crt
    client-key: $pki/$2.key
contexts:
- name: lifeboat-local
  context: {cluster: lifeboat-local, user: $2}
current-context: lifeboat-local
KC
}
kubeconfig_node "$etc/kubelet.kubeconfig" kubelet
kubeconfig_node "$etc/kube-proxy.kubeconfig" kube-proxy

cat >"$etc/kubelet.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
failCgroupV1: false
cgroupDriver: cgroupfs
cgroupRoot: /$NODE_CGROUP
containerRuntimeEndpoint: unix://$c/containerd.sock
imageServiceEndpoint: unix://$c/containerd.sock
address: $NODE_IP
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
# The apiserver authenticates with its kubelet client certificate (signed by the cluster CA); every request
# is authorized by the apiserver (SubjectAccessReview). No anonymous access.
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: false}
  x509: {clientCAFile: $pki/ca.crt}
authorization:
  mode: Webhook
# Never write host kernel settings: the mount namespace shows the values the kubelet checks.
protectKernelDefaults: true
oomScoreAdj: 0
clusterDNS: [$CLUSTER_DNS]
clusterDomain: cluster.local
resolvConf: $etc/resolv.conf
registerNode: true
makeIPTablesUtilChains: false
failSwapOn: false
serializeImagePulls: false
# Images are imported, never pulled: never garbage-collect them; CI disks may be nearly full.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}
nodeStatusUpdateFrequency: 10s
syncFrequency: 10s
fileCheckFrequency: 5s
maxPods: 60
YAML

cat >"$etc/kube-proxy.yaml" <<YAML
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $etc/kube-proxy.kubeconfig}
hostnameOverride: $NODE_NAME
mode: iptables
clusterCIDR: $POD_CIDR
bindAddress: $NODE_IP
healthzBindAddress: 127.0.0.1:10256
metricsBindAddress: 127.0.0.1:10249
nodePortAddresses: ["$NODE_IP/32"]
oomScoreAdj: 0
# No br_netfilter on the host (and no module loading): masquerading every Service connection makes replies
# come back through the node, also between Pods on the same bridge.
iptables: {masqueradeAll: true, localhostNodePorts: false}
# 0 everywhere: kube-proxy leaves the (global) conntrack sysctls alone.
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s, udpTimeout: 0s, udpStreamTimeout: 0s}
YAML

# --- 7. containerd, images ----------------------------------------------------------------------------------
export PATH="$LIFEBOAT_BIN:/usr/sbin:/usr/bin:/sbin:/bin"
start containerd nsenter --mount="$NODE_MNTNS" --net="$NODE_NETNS" -- containerd --config "$etc/containerd.toml"
wait_for 30 containerd test -S "$c/containerd.sock"
: >"$NODE_DIR/images-import.log"
"$REPO_ROOT/hack/node-images.sh"
for tar in "$NODE_IMAGES_DIR"/*.tar "$LIFEBOAT_CACHE"/images/*.tar; do
  [ -f "$tar" ] || continue
  # (ctr warns on every call that cgroup v1 support is deprecated: its output goes to a log.)
  in_node ctr -a "$c/containerd.sock" -n k8s.io images import "$tar" >>"$NODE_DIR/images-import.log" 2>&1 ||
    { tail -20 "$NODE_DIR/images-import.log" >&2; log "importing $tar failed"; exit 1; }
done

# --- 8. kubelet, kube-proxy -----------------------------------------------------------------------------------
kubelet_started=$(date +%s.%N)
start kubelet nsenter --mount="$NODE_MNTNS" --net="$NODE_NETNS" -- kubelet \
  --config "$etc/kubelet.yaml" --kubeconfig "$etc/kubelet.kubeconfig" \
  --root-dir "$NODE_DIR/kubelet" --cert-dir "$NODE_DIR/kubelet/pki" \
  --hostname-override "$NODE_NAME" --node-ip "$NODE_IP" --v=1
start kube-proxy nsenter --mount="$NODE_MNTNS" --net="$NODE_NETNS" -- kube-proxy --config "$etc/kube-proxy.yaml"
wait_for 120 "node $NODE_NAME to be Ready" kubectl wait --for=condition=Ready "node/$NODE_NAME" --timeout=1s
ready=$(awk -v a="$kubelet_started" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')
echo "$ready" >"$NODE_DIR/node-ready-seconds"
log "node $NODE_NAME Ready ${ready}s after the kubelet started"

# --- 9. the `kubernetes` Service's endpoint (the apiserver runs --endpoint-reconciler-type none: its own
# address is 127.0.0.1, which Pods cannot reach), then CoreDNS -------------------------------------------------
kubectl apply -f - >/dev/null <<YAML
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: kubernetes
  namespace: default
  labels: {kubernetes.io/service-name: kubernetes, endpointslice.kubernetes.io/managed-by: lifeboat.dev.cluster-up}
addressType: IPv4
endpoints: [{addresses: [$NODE_HOST_IP], conditions: {ready: true}}]
ports: [{name: https, port: $APISERVER_RELAY_PORT, protocol: TCP}]
YAML
# --- CoreDNS -----------------------------------------------------------------------------------------------
sed -e "s|@COREDNS_IMAGE@|lifeboat.local/coredns:$COREDNS_VERSION|" -e "s|@CLUSTER_DNS@|$CLUSTER_DNS|" \
  "$REPO_ROOT/hack/node/coredns.yaml" | kubectl apply -f - >/dev/null
wait_for 120 "CoreDNS to be available" kubectl -n kube-system rollout status deployment/coredns --timeout=1s
log "real node up in ${SECONDS}s: $NODE_NAME (InternalIP $NODE_IP), CoreDNS at $CLUSTER_DNS"
