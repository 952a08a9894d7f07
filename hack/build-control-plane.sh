#!/usr/bin/env bash
# Builds the local cluster's real components from the Go module proxy and caches them outside the repository:
# etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl and helm.
# Idempotent: a component whose binary is already cached is not rebuilt.
set -euo pipefail
source "$(dirname "$0")/versions.env"

cache="${LIFEBOAT_CACHE:-$HOME/.cache/lifeboat}"
bin="$cache/bin"
mkdir -p "$bin"
log() { printf '[build-control-plane] %s\n' "$*" >&2; }

# One build at a time: test processes and `just` recipes may all call this at once.
exec 9>"$cache/build.lock"
flock 9

have_all() { for b in "$@"; do [ -x "$bin/$b" ] || return 1; done; }

build_kubernetes() {
  local work="$cache/src/kubernetes-$KUBERNETES_VERSION"
  if have_all kube-apiserver kube-controller-manager kube-scheduler kubectl; then return; fi
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
  all) build_etcd; build_kubernetes; build_helm ;;
  *) echo "usage: $0 [all|kubernetes|etcd|helm]" >&2; exit 2 ;;
esac
log "binaries in $bin"
