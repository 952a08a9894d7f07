#!/usr/bin/env bash
# Starts the local cluster: etcd, kube-apiserver (RBAC, 127.0.0.1 only), kube-controller-manager,
# kube-scheduler and the real node `lifeboat-node` (kubelet, containerd, kube-proxy, CoreDNS:
# hack/node-up.sh; LIFEBOAT_REAL_NODE=0 leaves it out, for API-only work). Idempotent: when the
# cluster is already up it returns at once; otherwise it starts from an empty etcd. Prints the kubeconfig path.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

# Two cluster-up at once make one cluster: the second waits here, then finds it up.
mkdir -p "$LIFEBOAT_CACHE"
exec 7>"$LIFEBOAT_CACHE/cluster.lock"
flock 7
export LIFEBOAT_CLUSTER_LOCKED=1

"$REPO_ROOT/hack/build-control-plane.sh" all

dir="$LIFEBOAT_CLUSTER_DIR"
pki="$dir/pki"
mkdir -p "$dir" "$pki"

# started_with NAME WORD: the running component's command line has WORD (a cluster started by an older
# cluster-up.sh lacks newer flags: it is restarted rather than reused).
started_with() {
  local cmdline
  cmdline=$(tr '\0' ' ' <"/proc/$(cat "$dir/$1.pid" 2>/dev/null)/cmdline" 2>/dev/null) || return 1
  [[ $cmdline == *"$2"* ]]
}
cluster_is_up() {
  pid_alive etcd && pid_alive kube-apiserver && pid_alive kube-controller-manager && pid_alive kube-scheduler &&
    started_with kube-apiserver PodNodeSelector &&
    kubectl get --raw /readyz >/dev/null 2>&1 &&
    { ! real_node_wanted || { pid_alive containerd && pid_alive kubelet && pid_alive kube-proxy && pid_alive apiserver-relay &&
      [ -s "$dir/kubelet.cmd" ]; }; }
}
if cluster_is_up; then
  echo "$KUBECONFIG"
  exit 0
fi
"$REPO_ROOT/hack/cluster-down.sh"

# --- certificates (kept across runs; only etcd's data starts empty) ---------------------------------------
sign() { # sign NAME SUBJECT [SAN]
  local name=$1 subject=$2 san=${3:-}
  [ -f "$pki/$name.crt" ] && return
  openssl genrsa -out "$pki/$name.key" 2048 2>/dev/null
  openssl req -new -key "$pki/$name.key" -subj "$subject" -out "$pki/$name.csr" 2>/dev/null
  local ext="$pki/$name.ext"
  {
    echo "basicConstraints=CA:FALSE"
    echo "keyUsage=critical,digitalSignature,keyEncipherment"
    if [ -n "$san" ]; then echo "extendedKeyUsage=serverAuth,clientAuth"; echo "subjectAltName=$san";
    else echo "extendedKeyUsage=clientAuth"; fi
  } >"$ext"
  openssl x509 -req -in "$pki/$name.csr" -CA "$pki/ca.crt" -CAkey "$pki/ca.key" -CAcreateserial \
    -days 3650 -sha256 -extfile "$ext" -out "$pki/$name.crt" 2>/dev/null
}
if [ ! -f "$pki/ca.crt" ]; then
  openssl genrsa -out "$pki/ca.key" 2048 2>/dev/null
  openssl req -x509 -new -key "$pki/ca.key" -subj "/CN=lifeboat-local-ca" -days 3650 -sha256 \
    -out "$pki/ca.crt" 2>/dev/null
  openssl genrsa -out "$pki/sa.key" 2048 2>/dev/null
  openssl rsa -in "$pki/sa.key" -pubout -out "$pki/sa.pub" 2>/dev/null
fi
# The real node's components reach the apiserver at 198.18.1.2 (the relay on the host side of its veth): a
# certificate from before the real node lacks that address and is made again.
if [ -f "$pki/apiserver.crt" ] && ! openssl x509 -in "$pki/apiserver.crt" -noout -ext subjectAltName | grep -q 'IP Address:198.18.1.2'; then
  rm -f "$pki/apiserver.crt"
fi
sign apiserver "/CN=kube-apiserver" \
  "IP:127.0.0.1,IP:198.18.1.2,IP:10.96.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
sign admin "/O=system:masters/CN=lifeboat-admin"
sign controller-manager "/CN=system:kube-controller-manager"
sign scheduler "/CN=system:kube-scheduler"
# The real node: the kubelet (Node authorizer: system:node:<name> in system:nodes), kube-proxy (bound to
# system:node-proxier by default), and the apiserver's client certificate for the kubelet's API (logs, exec).
sign kubelet "/O=system:nodes/CN=system:node:lifeboat-node"
sign kube-proxy "/CN=system:kube-proxy"
sign apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client"

kubeconfig_for() { # kubeconfig_for NAME USER -> $dir/NAME.kubeconfig
  cat >"$dir/$1.kubeconfig" <<KC
apiVersion: v1
kind: Config
clusters:
- name: lifeboat-local
  cluster:
    server: https://127.0.0.1:$APISERVER_PORT
    certificate-authority: $pki/ca.crt
users:
- name: $2
  user:
    client-certificate: $pki/$2.crt
    client-key: $pki/$2.key
contexts:
- name: lifeboat-local
  context: {cluster: lifeboat-local, user: $2, namespace: default}
current-context: lifeboat-local
KC
}
kubeconfig_for admin admin
cp "$dir/admin.kubeconfig" "$KUBECONFIG"
kubeconfig_for controller-manager controller-manager
kubeconfig_for scheduler scheduler

start() { # start NAME COMMAND... : detached, own session, log and pid in $dir
  local name=$1; shift
  # 7>&-: the daemons must not inherit the cluster lock.
  setsid "$@" >"$dir/$name.log" 2>&1 </dev/null 7>&- &
  echo $! >"$dir/$name.pid"
}

# --- etcd ---------------------------------------------------------------------------------------------------
rm -rf "$dir/etcd"
start etcd etcd --name lifeboat --data-dir "$dir/etcd" \
  --listen-client-urls "http://127.0.0.1:$ETCD_CLIENT_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_CLIENT_PORT" \
  --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
  --initial-cluster "lifeboat=http://127.0.0.1:$ETCD_PEER_PORT" --log-level warn \
  --quota-backend-bytes 2147483648
wait_for 30 etcd curl -fs "http://127.0.0.1:$ETCD_CLIENT_PORT/health"

# --- kube-apiserver -----------------------------------------------------------------------------------------
# PodNodeSelector and PodTolerationRestriction let a namespace put all its Pods on the real node by
# annotation (docs run literally, without placement lines); without the annotations they change nothing.
start kube-apiserver kube-apiserver \
  --etcd-servers "http://127.0.0.1:$ETCD_CLIENT_PORT" \
  --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$APISERVER_PORT" \
  --cert-dir "$dir/apiserver-certs" \
  --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
  --client-ca-file "$pki/ca.crt" \
  --authorization-mode Node,RBAC \
  --enable-admission-plugins PodNodeSelector,PodTolerationRestriction \
  --kubelet-client-certificate "$pki/apiserver-kubelet-client.crt" --kubelet-client-key "$pki/apiserver-kubelet-client.key" \
  --kubelet-preferred-address-types InternalIP \
  --service-account-issuer https://kubernetes.default.svc.cluster.local \
  --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
  --service-cluster-ip-range 10.96.0.0/16 \
  --endpoint-reconciler-type none \
  --allow-privileged=true \
  --profiling=false
wait_for 60 kube-apiserver kubectl get --raw /readyz

# --- kube-controller-manager and kube-scheduler ------------------------------------------------------------
mkdir -p "$dir/flexvolume"
start kube-controller-manager kube-controller-manager \
  --kubeconfig "$dir/controller-manager.kubeconfig" \
  --authentication-kubeconfig "$dir/controller-manager.kubeconfig" \
  --authorization-kubeconfig "$dir/controller-manager.kubeconfig" \
  --bind-address 127.0.0.1 --secure-port 16257 \
  --leader-elect=false \
  --use-service-account-credentials \
  --service-account-private-key-file "$pki/sa.key" --root-ca-file "$pki/ca.crt" \
  --cluster-signing-cert-file "$pki/ca.crt" --cluster-signing-key-file "$pki/ca.key" \
  --flex-volume-plugin-dir "$dir/flexvolume" \
  --profiling=false
start kube-scheduler kube-scheduler \
  --kubeconfig "$dir/scheduler.kubeconfig" \
  --authentication-kubeconfig "$dir/scheduler.kubeconfig" \
  --authorization-kubeconfig "$dir/scheduler.kubeconfig" \
  --bind-address 127.0.0.1 --secure-port 16259 \
  --leader-elect=false --profiling=false
wait_for 60 "the default ServiceAccount" kubectl -n default get serviceaccount default

# --- the real node (kubelet, containerd, kube-proxy, CoreDNS) ---------------------------------------------
# A failed start leaves nothing behind (its logs stay in $dir): the guard routes go with the rest.
if real_node_wanted && ! "$REPO_ROOT/hack/node-up.sh"; then
  log "the real node did not start (logs: $dir/{containerd,kubelet,kube-proxy}.log); stopping the cluster"
  "$REPO_ROOT/hack/cluster-down.sh" >&2 || true
  exit 1
fi

log "cluster is up (kubeconfig: $KUBECONFIG)"
echo "$KUBECONFIG"
