#!/usr/bin/env bash
# Builds and fetches the tools the tests check Lifeboat's ecosystem files with, from the Go module proxy,
# cached outside the repository by version:
#   $cache/bin/promtool                                   Prometheus' rule checker and rule unit-test runner
#   $cache/bin/prometheus                                 the server tests/prometheus_e2e.rs scrapes the operator with
#   $cache/crds/prometheus-operator-<version>/*.yaml      the ServiceMonitor, PodMonitor and PrometheusRule CRDs
#   $cache/bin/lifeboat-kstatus                           hack/kstatus: what kstatus (Flux's health checks) says
#   $cache/bin/krew, $cache/bin/validate-krew-manifest    kubectl's plugin manager and krew-index's validator
#   $cache/bin/lifeboat-argocd-lua                        hack/argocd-lua: Argo CD's health/action scripts in gopher-lua
# Idempotent: nothing is rebuilt or fetched while the cached version matches hack/versions.env.
set -euo pipefail
source "$(dirname "$0")/versions.env"

cache="${LIFEBOAT_CACHE:-$HOME/.cache/lifeboat}"
bin="$cache/bin"
mkdir -p "$bin"
log() { printf '[build-test-tools] %s\n' "$*" >&2; }

# The same lock as hack/build-control-plane.sh: one Go build at a time on a 2-core machine.
exec 9>"$cache/build.lock"
flock 9

# build_prometheus CMD: promtool or prometheus, from the same module (they share the Go build cache).
build_prometheus() {
  local cmd=$1
  # The tests scrape static targets only: remove_all_sd leaves out the cloud service-discovery plugins
  # (AWS, Azure, GCE, Kubernetes, ...) and their SDKs, most of a cold build's time on 2 cores.
  local tags=remove_all_sd stamp="$PROMETHEUS_VERSION remove_all_sd"
  if [ -x "$bin/$cmd" ] && [ "$(cat "$bin/.$cmd.version" 2>/dev/null)" = "$stamp" ]; then
    return
  fi
  local work="$cache/src/prometheus-$PROMETHEUS_VERSION"
  mkdir -p "$work"
  (
    cd "$work"
    [ -f go.mod ] || go mod init lifeboat.dev/prometheus >/dev/null 2>&1
    log "building $cmd $PROMETHEUS_VERSION without service discovery (-tags $tags)"
    local t0=$SECONDS
    GOFLAGS=-mod=mod go get "github.com/prometheus/prometheus@$PROMETHEUS_VERSION" >/dev/null
    GOFLAGS=-mod=mod CGO_ENABLED=0 go build -tags "$tags" -trimpath -ldflags "-s -w" -o "$bin/$cmd.tmp" \
      "github.com/prometheus/prometheus/cmd/$cmd"
    mv "$bin/$cmd.tmp" "$bin/$cmd"
    echo "$stamp" >"$bin/.$cmd.version"
    log "built $cmd in $((SECONDS - t0)) s"
  )
}

fetch_operator_crds() {
  local out="$cache/crds/prometheus-operator-$PROMETHEUS_OPERATOR_VERSION"
  [ -f "$out/monitoring.coreos.com_prometheusrules.yaml" ] && return
  log "fetching the Prometheus Operator's CRDs $PROMETHEUS_OPERATOR_VERSION"
  local dir
  dir=$(cd "$cache" && GOFLAGS=-mod=mod go mod download -json \
    "github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION" | jq -r .Dir)
  mkdir -p "$out.tmp"
  for kind in servicemonitors podmonitors prometheusrules; do
    cp "$dir/example/prometheus-operator-crd/monitoring.coreos.com_$kind.yaml" "$out.tmp/"
  done
  rm -rf "$out" && mv "$out.tmp" "$out"
}

# lifeboat-kstatus from hack/kstatus (its go.mod pins sigs.k8s.io/cli-utils); rebuilt when its sources change.
build_kstatus() {
  local src="$(dirname "$0")/kstatus" stamp
  stamp=$(cat "$src/main.go" "$src/go.mod" "$src/go.sum" | sha256sum | cut -c1-16)
  if [ -x "$bin/lifeboat-kstatus" ] && [ "$(cat "$bin/.lifeboat-kstatus.version" 2>/dev/null)" = "$stamp" ]; then
    return
  fi
  log "building lifeboat-kstatus (sigs.k8s.io/cli-utils kstatus)"
  (cd "$src" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$bin/lifeboat-kstatus.tmp" .)
  mv "$bin/lifeboat-kstatus.tmp" "$bin/lifeboat-kstatus"
  echo "$stamp" >"$bin/.lifeboat-kstatus.version"
}

# build_krew CMD: krew or validate-krew-manifest, from sigs.k8s.io/krew.
build_krew() {
  local cmd=$1
  if [ -x "$bin/$cmd" ] && [ "$(cat "$bin/.$cmd.version" 2>/dev/null)" = "$KREW_VERSION" ]; then
    return
  fi
  local work="$cache/src/krew-$KREW_VERSION"
  mkdir -p "$work"
  (
    cd "$work"
    [ -f go.mod ] || go mod init lifeboat.dev/krew >/dev/null 2>&1
    log "building $cmd $KREW_VERSION (about a minute cold)"
    GOFLAGS=-mod=mod go get "sigs.k8s.io/krew@$KREW_VERSION" >/dev/null
    GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$bin/$cmd.tmp" "sigs.k8s.io/krew/cmd/$cmd"
    mv "$bin/$cmd.tmp" "$bin/$cmd"
    echo "$KREW_VERSION" >"$bin/.$cmd.version"
  )
}

# lifeboat-argocd-lua from hack/argocd-lua (gopher-lua, Argo CD's Lua engine); rebuilt when its sources change.
build_argocd_lua() {
  local src="$(dirname "$0")/argocd-lua" stamp
  stamp=$(cat "$src/main.go" "$src/go.mod" "$src/go.sum" | sha256sum | cut -c1-16)
  if [ -x "$bin/lifeboat-argocd-lua" ] && [ "$(cat "$bin/.lifeboat-argocd-lua.version" 2>/dev/null)" = "$stamp" ]; then
    return
  fi
  log "building lifeboat-argocd-lua (github.com/yuin/gopher-lua)"
  (cd "$src" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$bin/lifeboat-argocd-lua.tmp" .)
  mv "$bin/lifeboat-argocd-lua.tmp" "$bin/lifeboat-argocd-lua"
  echo "$stamp" >"$bin/.lifeboat-argocd-lua.version"
}

build_prometheus promtool
build_prometheus prometheus
fetch_operator_crds
build_kstatus
build_argocd_lua
build_krew krew
build_krew validate-krew-manifest
log "promtool, prometheus, lifeboat-kstatus, krew and the Prometheus Operator CRDs are in $cache"
