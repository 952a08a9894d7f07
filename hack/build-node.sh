#!/usr/bin/env bash
# Builds the real node's components that do not come from k8s.io/kubernetes (kubelet and kube-proxy are built
# by build-control-plane.sh with the control plane): containerd (+ shim, ctr), CoreDNS with only the plugins a
# cluster-local DNS needs, and the pause program for the sandbox image. Cached in ~/.cache/lifeboat/bin with a
# version stamp per binary: rebuilt only when hack/versions.env changes.
set -euo pipefail
source "$(dirname "$0")/versions.env"
hack="$(cd "$(dirname "$0")" && pwd)"

cache="${LIFEBOAT_CACHE:-$HOME/.cache/lifeboat}"
bin="$cache/bin"
mkdir -p "$bin"
log() { printf '[build-node] %s\n' "$*" >&2; }

exec 8>"$cache/build-node.lock"
flock 8

stamped() { [ -x "$bin/$1" ] && [ "$(cat "$bin/.$1.version" 2>/dev/null)" = "$2" ]; }
stamp() { echo "$2" >"$bin/.$1.version"; }

build_containerd() {
  stamped containerd "$CONTAINERD_VERSION" && stamped containerd-shim-runc-v2 "$CONTAINERD_VERSION" &&
    stamped ctr "$CONTAINERD_VERSION" && return
  local work="$cache/src/containerd-$CONTAINERD_VERSION"
  mkdir -p "$work"
  (
    cd "$work"
    [ -f go.mod ] || go mod init lifeboat.dev/containerd >/dev/null 2>&1
    GOFLAGS=-mod=mod go get "github.com/containerd/containerd/v2@$CONTAINERD_VERSION" >/dev/null 2>&1
    local pkg=github.com/containerd/containerd/v2
    local vflags="-X $pkg/version.Version=$CONTAINERD_VERSION -X $pkg/version.Package=github.com/containerd/containerd/v2"
    for cmd in containerd containerd-shim-runc-v2 ctr; do
      stamped "$cmd" "$CONTAINERD_VERSION" && continue
      log "building $cmd $CONTAINERD_VERSION"
      local t0=$SECONDS
      # no btrfs: its snapshotter needs cgo and we use overlayfs.
      GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -tags no_btrfs -ldflags "-s -w $vflags" \
        -o "$bin/$cmd.tmp" "$pkg/cmd/$cmd"
      mv "$bin/$cmd.tmp" "$bin/$cmd"
      stamp "$cmd" "$CONTAINERD_VERSION"
      log "built $cmd in $((SECONDS - t0)) s"
    done
  )
}

build_coredns() {
  # CoreDNS's own main compiles in every plugin (cloud DNS SDKs included); ours keeps the ones a
  # cluster-local DNS uses. No `forward`: nothing may be asked outside the machine.
  local main
  main=$(cat <<'GO'
package main

import (
	"log"

	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/reload"
)

func main() {
	// The order of CoreDNS's plugin.cfg, restricted to the plugins imported above.
	if err := dnsserver.SetDirectives([]string{"reload", "ready", "health", "errors", "log", "loadbalance", "cache", "kubernetes"}); err != nil {
		log.Fatal(err)
	}
	coremain.Run()
}
GO
)
  # The stamp covers our main.go too: changing the plugin list rebuilds.
  local want="$COREDNS_VERSION+$(printf '%s' "$main" | sha256sum | cut -c1-12)"
  stamped coredns "$want" && return
  local work="$cache/src/coredns-$COREDNS_VERSION"
  mkdir -p "$work"
  printf '%s\n' "$main" >"$work/main.go"
  (
    cd "$work"
    [ -f go.mod ] || go mod init lifeboat.dev/coredns >/dev/null 2>&1
    GOFLAGS=-mod=mod go get "github.com/coredns/coredns@$COREDNS_VERSION" >/dev/null 2>&1
    GOFLAGS=-mod=mod go mod tidy >/dev/null 2>&1 || true
    log "building coredns $COREDNS_VERSION"
    local t0=$SECONDS
    GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$bin/coredns.tmp" .
    mv "$bin/coredns.tmp" "$bin/coredns"
    stamp coredns "$want"
    log "built coredns in $((SECONDS - t0)) s"
  )
}

build_pause() {
  local sum; sum=$(sha256sum "$hack/pause/main.go" | cut -c1-16)
  stamped pause "$sum" && return
  local work="$cache/src/pause"
  mkdir -p "$work"
  cp "$hack/pause/main.go" "$work/main.go"
  (
    cd "$work"
    [ -f go.mod ] || go mod init lifeboat.dev/pause >/dev/null 2>&1
    CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$bin/pause.tmp" .
    mv "$bin/pause.tmp" "$bin/pause"
    stamp pause "$sum"
  )
}

build_pause
build_containerd
build_coredns
log "node binaries in $bin"
