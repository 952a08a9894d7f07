#!/usr/bin/env bash
# Installs what `lifeboat agent` drives and its tests start: PostgreSQL 15 and MariaDB 10.11 (server and
# clients) from Debian, and restic built from the Go module proxy (>= 0.17 for --stdin-from-command and
# the exit codes the agent reads; 0.19 because earlier ones could hang a `--stdin-from-command` backup
# whose upload failed, restic#5683; Debian 12 ships 0.14). restic is cached in $LIFEBOAT_CACHE/bin.
# Idempotent: installed packages and a cached restic of the pinned version are left alone.
# Prints the restic path on stdout's last line, for `export LIFEBOAT_RESTIC=$(…)`.
set -euo pipefail

RESTIC_VERSION="${RESTIC_VERSION:-v0.19.1}"
cache="${LIFEBOAT_CACHE:-$HOME/.cache/lifeboat}"
bin="$cache/bin"
mkdir -p "$bin"
log() { printf '[install-data-tools] %s\n' "$*" >&2; }

install_debian_packages() {
  local wanted=(postgresql-15 postgresql-client-15 mariadb-server mariadb-client)
  local missing=()
  for pkg in "${wanted[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
  done
  if [ "${#missing[@]}" -eq 0 ]; then
    return
  fi
  if [ "$(id -u)" -ne 0 ]; then
    log "missing Debian packages ${missing[*]} and not root: install them with apt-get"
    exit 1
  fi
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  # The packages try to start system services; in a container there is no init to start them, which is
  # fine: tests start their own servers in temporary directories.
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
}

restic_is_current() {
  [ -x "$bin/restic" ] && "$bin/restic" version 2>/dev/null | grep -q "restic ${RESTIC_VERSION#v} "
}

build_restic() {
  restic_is_current && return
  command -v go >/dev/null || { log "go is needed to build restic $RESTIC_VERSION"; exit 1; }
  # `go install pkg@version` asks the proxy for the module's version list, which it refuses here; a
  # wrapper module that requires the exact version needs only that version's files.
  local work="$cache/src/restic-$RESTIC_VERSION"
  mkdir -p "$work"
  (
    cd "$work"
    [ -f go.mod ] || go mod init lifeboat.dev/restic >/dev/null 2>&1
    log "building restic $RESTIC_VERSION (cold: about two minutes)"
    GOFLAGS=-mod=mod go get "github.com/restic/restic@$RESTIC_VERSION" >/dev/null 2>&1
    GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$bin/restic.tmp" github.com/restic/restic/cmd/restic
    mv "$bin/restic.tmp" "$bin/restic"
  )
}

install_debian_packages
build_restic
log "restic: $("$bin/restic" version)"
log "postgres: $(/usr/lib/postgresql/15/bin/postgres --version)"
log "mariadb: $(mariadbd --version 2>/dev/null || /usr/sbin/mariadbd --version)"
echo "$bin/restic"
