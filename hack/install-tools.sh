#!/usr/bin/env bash
# Installs everything the demo and the tests need on a fresh Debian machine with Rust and Go, and nothing
# twice: Debian packages, `just`, and the local cluster's components built from the Go module proxy.
#
# hack/install-tools.sh [all|base|go]: base is the Debian packages, just and the data tools (restic, the
# database servers); go the Go builds of the cluster and the test tools. hack/test.sh runs the Go builds
# beside the Rust builds: each leaves a core idle while it downloads or links.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
export PATH="$HOME/.cargo/bin:$PATH"
part=${1:-all}
case "$part" in all | base | go) ;; *) log "usage: $0 [all|base|go]"; exit 2 ;; esac

if [ "$part" != go ]; then
  need_apt=()
  # umoci and jq: hack/oci-pack.sh and hack/images.sh (the OCI image archives).
  for tool in curl:curl openssl:openssl flock:util-linux setsid:util-linux umoci:umoci jq:jq; do
    command -v "${tool%%:*}" >/dev/null 2>&1 || need_apt+=("${tool#*:}")
  done
  # The real node (hack/node-up.sh): runc, the CNI plugins, umoci to pack images, iptables for kube-proxy, socat
  # for the apiserver relay, busybox-static for the test image.
  for tool in runc:runc /usr/lib/cni/bridge:containernetworking-plugins umoci:umoci iptables:iptables socat:socat; do
    command -v "${tool%%:*}" >/dev/null 2>&1 || [ -x "${tool%%:*}" ] || need_apt+=("${tool#*:}")
  done
  dpkg -s busybox-static >/dev/null 2>&1 || need_apt+=(busybox-static)  # not Debian's dynamic `busybox`
  if [ ${#need_apt[@]} -gt 0 ]; then
    log "installing ${need_apt[*]} from Debian"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  fi

  if ! command -v just >/dev/null 2>&1; then
    log "installing just from crates.io"
    cargo install --locked --quiet just
  fi

  # Databases and restic for the agent's tests and the demo.
  if [ -x "$REPO_ROOT/hack/install-data-tools.sh" ]; then
    "$REPO_ROOT/hack/install-data-tools.sh"
  fi
fi

if [ "$part" != base ]; then
  "$REPO_ROOT/hack/build-control-plane.sh" all
  "$REPO_ROOT/hack/build-test-tools.sh"
fi
