#!/usr/bin/env bash
# Builds and fetches what the monitoring kit's tests need (tests/monitoring_kit.rs), from the Go module proxy,
# cached outside the repository by version:
#   $cache/bin/promtool                                   Prometheus' rule checker and rule unit-test runner
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

build_promtool() {
  if [ -x "$bin/promtool" ] && [ "$(cat "$bin/.promtool.version" 2>/dev/null)" = "$PROMETHEUS_VERSION" ]; then
    return
  fi
  local work="$cache/src/prometheus-$PROMETHEUS_VERSION"
  mkdir -p "$work"
  (
    cd "$work"
    [ -f go.mod ] || go mod init lifeboat.dev/prometheus >/dev/null 2>&1
    log "building promtool $PROMETHEUS_VERSION (about 5 minutes cold on 2 cores)"
    GOFLAGS=-mod=mod go get "github.com/prometheus/prometheus@$PROMETHEUS_VERSION" >/dev/null
    GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$bin/promtool.tmp" \
      github.com/prometheus/prometheus/cmd/promtool
    mv "$bin/promtool.tmp" "$bin/promtool"
    echo "$PROMETHEUS_VERSION" >"$bin/.promtool.version"
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

build_promtool
fetch_operator_crds
log "promtool and the Prometheus Operator CRDs are in $cache"
