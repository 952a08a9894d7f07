#!/usr/bin/env bash
# Builds the local cluster's real components from the Go module proxy and caches them outside the repository:
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl and helm; kubelet and kube-proxy for the
# real node (they share the wrapper module and Go build cache with the control plane); then hack/build-node.sh
# builds containerd, CoreDNS and the pause program.
# Idempotent: a component whose binary is already cached is not rebuilt (kubelet and kube-proxy carry a version
# stamp, so a new KUBERNETES_VERSION rebuilds them).
set -euo pipefail
source "$(dirname "$0")/versions.env"

cache="${LIFEBOAT_CACHE:-$HOME/.cache/lifeboat}"
bin="$cache/bin"
mkdir -p "$bin"
log() { printf '[build-control-plane] %s\n' "$*" >&2; }

# One build at a time: test processes and `just` recipes may all call this at once.
exec 9>"$cache/build.lock"
flock 9

# The real node's components are skipped with LIFEBOAT_REAL_NODE=0 (cluster-up.sh then leaves the node out).
want_node() { [ "${LIFEBOAT_REAL_NODE:-1}" != 0 ]; }
have_all() { for b in "$@"; do [ -x "$bin/$b" ] || return 1; done; }
# stamped NAME VERSION: $bin/NAME exists and was built from VERSION (see stamp).
stamped() { [ -x "$bin/$1" ] && [ "$(cat "$bin/.$1.version" 2>/dev/null)" = "$2" ]; }
stamp() { echo "$2" >"$bin/.$1.version"; }

build_kubernetes() {
  local work="$cache/src/kubernetes-$KUBERNETES_VERSION"
  if have_all kube-apiserver kube-controller-manager kube-scheduler kubectl &&
    { ! want_node || { stamped kubelet "$KUBERNETES_VERSION" && stamped kube-proxy "$KUBERNETES_VERSION"; }; }; then
    return
  fi
  mkdir -p "$work"
  # k8s.io/kubernetes replaces its staging modules with ./staging paths, which `go install` refuses.
  # A wrapper module requires it and points every staging module at its published v0.X.Y instead.
  local staging_version="v0.${KUBERNETES_VERSION#v1.}"
  curl -fsSL --retry 3 "${GOPROXY_URL:-https://proxy.golang.org}/k8s.io/kubernetes/@v/$KUBERNETES_VERSION.mod" -o "$work/upstream.mod"
  {
    echo "module lifeboat.dev/localcluster"
    echo
    grep -E '^go ' "$work/upstream.mod"
    echo
    echo "require k8s.io/kubernetes $KUBERNETES_VERSION"
    echo
    echo "replace ("
    grep -E '^\s+k8s.io/[a-z0-9-]+ => ./staging/' "$work/upstream.mod" \
      | awk -v v="$staging_version" '{print "\t" $1 " => " $1 " " v}'
    echo ")"
  } >"$work/go.mod"
  cat >"$work/tools.go" <<'GO'
//go:build tools

package tools

import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubelet"
	_ "k8s.io/kubernetes/cmd/kube-proxy"
	_ "k8s.io/kubectl/pkg/cmd"
)
GO
  cat >"$work/main.go" <<'GO'
package main

func main() {}
GO
  (
    cd "$work"
    log "resolving k8s.io/kubernetes $KUBERNETES_VERSION modules"
    GOFLAGS=-mod=mod go mod tidy -e >/dev/null 2>&1 || true
    GOFLAGS=-mod=mod go get "k8s.io/kubernetes@$KUBERNETES_VERSION" >/dev/null
    for cmd in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
      [ -x "$bin/$cmd" ] && continue
      log "building $cmd (cold: a few minutes)"
      GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$bin/$cmd.tmp" "k8s.io/kubernetes/cmd/$cmd"
      mv "$bin/$cmd.tmp" "$bin/$cmd"
    done
    # The real node's kubelet and kube-proxy. Without the -X flags they report v0.0.0-master+$Format:%H$,
    # and the Node object's kubeletVersion is what tests and users check.
    local minor=${KUBERNETES_VERSION#v1.}; minor=${minor%%.*}
    local vflags="-X k8s.io/component-base/version.gitVersion=$KUBERNETES_VERSION"
    vflags+=" -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor"
    vflags+=" -X k8s.io/component-base/version.gitTreeState=clean"
    for cmd in kubelet kube-proxy; do
      want_node || continue
      stamped "$cmd" "$KUBERNETES_VERSION" && continue
      log "building $cmd (about 90 s with the control plane's build cache warm)"
      local t0=$SECONDS
      GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -ldflags "-s -w $vflags" -o "$bin/$cmd.tmp" "k8s.io/kubernetes/cmd/$cmd"
      mv "$bin/$cmd.tmp" "$bin/$cmd"
      stamp "$cmd" "$KUBERNETES_VERSION"
      log "built $cmd in $((SECONDS - t0)) s"
    done
  )
}

build_etcd() {
  have_all etcd && return
  local work="$cache/src/etcd-$ETCD_VERSION"
  mkdir -p "$work"
  (
    cd "$work"
    [ -f go.mod ] || go mod init lifeboat.dev/etcd >/dev/null 2>&1
    log "building etcd $ETCD_VERSION"
    GOFLAGS=-mod=mod go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" >/dev/null
    GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$bin/etcd.tmp" go.etcd.io/etcd/server/v3
    mv "$bin/etcd.tmp" "$bin/etcd"
  )
}

build_helm() {
  have_all helm && return
  local work="$cache/src/helm-$HELM_VERSION"
  mkdir -p "$work"
  (
    cd "$work"
    [ -f go.mod ] || go mod init lifeboat.dev/helm >/dev/null 2>&1
    log "building helm $HELM_VERSION"
    GOFLAGS=-mod=mod go get "helm.sh/helm/v3@$HELM_VERSION" >/dev/null
    GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$bin/helm.tmp" helm.sh/helm/v3/cmd/helm
    mv "$bin/helm.tmp" "$bin/helm"
  )
}

case "${1:-all}" in
  kubernetes) build_kubernetes ;;
  etcd) build_etcd ;;
  helm) build_helm ;;
  node) build_kubernetes; "$(dirname "$0")/build-node.sh" ;;
  all) build_etcd; build_kubernetes; build_helm; if want_node; then "$(dirname "$0")/build-node.sh"; fi ;;
  *) echo "usage: $0 [all|kubernetes|etcd|helm|node]" >&2; exit 2 ;;
esac
log "binaries in $bin"
