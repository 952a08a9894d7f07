#!/usr/bin/env bash
# Builds and fetches what the monitoring kit's tests need (tests/monitoring_kit.rs), from the Go module proxy,
# cached outside the repository by version:
#   $cache/bin/promtool                                   Prometheus' rule checker and rule unit-test runner
#   $cache/bin/prometheus                                 the server tests/prometheus_e2e.rs scrapes the operator with
#   $cache/crds/prometheus-operator-<version>/*.yaml      the ServiceMonitor, PodMonitor and PrometheusRule CRDs
# Idempotent: nothing is rebuilt or fetched while the cached version matches hack/versions.env.
set -euo pipefail
source "$(dirname "$0")/versions.env"

cache="${LIFEBOAT_CACHE:-$HOME/.cache/lifeboat}"
bin="$cache/bin"
mkdir -p "$bin"
log() { printf '[build-monitoring] %s\n' "$*" >&2; }

# The same lock as hack/build-control-plane.sh: one Go build at a time on a 2-core machine.
exec 9>"$cache/build.lock"
flock 9

# build_prometheus CMD: promtool or prometheus, from the same module (they share the Go build cache).
build_prometheus() {
  local cmd=$1
  if [ -x "$bin/$cmd" ] && [ "$(cat "$bin/.$cmd.version" 2>/dev/null)" = "$PROMETHEUS_VERSION" ]; then
    return
  fi
  local work="$cache/src/prometheus-$PROMETHEUS_VERSION"
  mkdir -p "$work"
  (
    cd "$work"
    [ -f go.mod ] || go mod init lifeboat.dev/prometheus >/dev/null 2>&1
    log "building $cmd $PROMETHEUS_VERSION (promtool: about 5 minutes cold on 2 cores; prometheus after it: ~3)"
    GOFLAGS=-mod=mod go get "github.com/prometheus/prometheus@$PROMETHEUS_VERSION" >/dev/null
    GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$bin/$cmd.tmp" \
      "github.com/prometheus/prometheus/cmd/$cmd"
    mv "$bin/$cmd.tmp" "$bin/$cmd"
    echo "$PROMETHEUS_VERSION" >"$bin/.$cmd.version"
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

build_prometheus promtool
build_prometheus prometheus
fetch_operator_crds
log "promtool, prometheus and the Prometheus Operator CRDs are in $cache"
