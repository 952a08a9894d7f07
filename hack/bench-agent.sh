#!/usr/bin/env bash
# Benchmark of the agent's data path against the plain tools it drives, on one PostgreSQL database of
# realistic entropy (random text, not pgbench's 50:1-compressible rows):
#   backup:  pg_dump > /dev/null  |  pg_dump | restic backup --stdin  |  lifeboat agent backup
#   restore: restic dump > /dev/null  |  restic dump | pg_restore  |  lifeboat agent restore
# and prints MB/s of each and the ratio agent / plain pipeline (target: within 5 %).
#
# Usage: hack/bench-agent.sh [SIZE_MB]   (default 300; env BENCH_RUNS=N keeps the best of N runs)
# Needs hack/install-data-tools.sh; builds the agent with --release.
set -euo pipefail

size_mb="${1:-${BENCH_SIZE_MB:-300}}"
runs="${BENCH_RUNS:-1}"
root="$(cd "$(dirname "$0")/.." && pwd)"
pg_bin="${LIFEBOAT_PG_BIN_DIR:-/usr/lib/postgresql/15/bin}"
restic="${LIFEBOAT_RESTIC:-$HOME/.cache/lifeboat/bin/restic}"
log() { printf '[bench-agent] %s\n' "$*" >&2; }

[ -x "$restic" ] || restic="$(command -v restic)"
[ -x "$pg_bin/postgres" ] || { log "PostgreSQL 15 not found: run hack/install-data-tools.sh"; exit 1; }

if [ -z "${LIFEBOAT_AGENT:-}" ]; then
  log "building the agent (release)"
  (cd "$root" && cargo build --release --quiet --bin lifeboat)
  agent="$root/target/release/lifeboat"
else
  agent="$LIFEBOAT_AGENT"
fi

work="$(mktemp -d /tmp/lifeboat-bench-XXXXXX)"
pg_pid=""
cleanup() {
  if [ -n "$pg_pid" ]; then
    as_pg "$pg_bin/pg_ctl" -D "$work/data" -m immediate -w stop >/dev/null 2>&1 || true
    wait "$pg_pid" 2>/dev/null || true
  fi
  rm -rf "$work" || true
}
# PostgreSQL refuses to run as root: as root, the server runs as the package's `postgres` user.
as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
trap cleanup EXIT
[ "$(id -u)" -eq 0 ] && chown postgres: "$work"
export PGPASSWORD="bench-secret"
printf '%s' "$PGPASSWORD" >"$work/pw"
[ "$(id -u)" -eq 0 ] && chown postgres: "$work/pw"
as_pg "$pg_bin/initdb" -D "$work/data" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
  --pwfile="$work/pw" -E UTF8 --no-sync >/dev/null
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
as_pg "$pg_bin/postgres" -D "$work/data" -p "$port" -k "$work" -c listen_addresses=127.0.0.1 \
  -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_wal_size=4GB >"$work/pg.log" 2>&1 &
pg_pid=$!
conn=(-h 127.0.0.1 -p "$port" -U postgres)
for _ in $(seq 100); do "$pg_bin/pg_isready" "${conn[@]}" -q && break; sleep 0.1; done

log "creating ~${size_mb} MB of random text"
"$pg_bin/psql" "${conn[@]}" -q -c "CREATE DATABASE bench" -c "CREATE DATABASE bench_pipeline" -c "CREATE DATABASE bench_agent"
# Each row: ~1 KB of letters and spaces from md5 (4 bits of entropy per character, like prose
# after compression), so neither zstd nor gzip can make it vanish.
"$pg_bin/psql" "${conn[@]}" -q -d bench -c "CREATE TABLE docs (id int PRIMARY KEY, body text)" -c "
  INSERT INTO docs
  SELECT i, translate((SELECT string_agg(md5(random()::text || i::text || j::text), '')
                       FROM generate_series(1, 31) j), '0123456789abcdef', 'etaoin shrdlucmw')
  FROM generate_series(1, ${size_mb} * 1000) i"
dump_bytes="$("$pg_bin/pg_dump" "${conn[@]}" -d bench -Fc -Z0 | wc -c)"
log "dump (custom, -Z0): $dump_bytes bytes"

export RESTIC_PASSWORD="bench-restic-secret"
now() { date +%s.%N; }
# awk rather than bc: it is on every machine.
calc() { awk "BEGIN { print $* }"; }
best=()
declare -A seconds

# Runs "$2…" BENCH_RUNS times (after $prepare, untimed) and records the best time under name $1.
timed() {
  local name="$1"; shift
  local best_time=""
  for _ in $(seq "$runs"); do
    prepare
    local start end
    start="$(now)"
    "$@"
    end="$(now)"
    local t
    t="$(calc "$end - $start")"
    if [ -z "$best_time" ] || [ "$(calc "$t < $best_time")" -eq 1 ]; then best_time="$t"; fi
  done
  seconds[$name]="$best_time"
  best+=("$name")
  log "$(printf '%-34s %8.2f s  %8.1f MB/s' "$name" "$best_time" "$(calc "$dump_bytes / 1000000 / $best_time")")"
}

fresh_repo() {
  rm -rf "$work/repo-$1" "$work/cache-$1"
  RESTIC_REPOSITORY="$work/repo-$1" RESTIC_CACHE_DIR="$work/cache-$1" "$restic" init -q
}

# Every restic run derives the repository key (scrypt) first. The agent runs no more restic processes
# in sequence than the plain pipeline: a backup is one `restic backup --stdin-from-command` (the agent's
# own wrapper measures the dump), a restore lists snapshots while `restic dump` starts.
fresh_repo open
prepare() { :; }
timed "restic cat config (fixed cost)" env RESTIC_REPOSITORY="$work/repo-open" RESTIC_CACHE_DIR="$work/cache-open" \
  bash -c "'$restic' cat config > /dev/null"

# --- backup -------------------------------------------------------------------------------------
prepare() { :; }
timed "pg_dump -Fc -Z0 > /dev/null" bash -c "'$pg_bin/pg_dump' -h 127.0.0.1 -p $port -U postgres -d bench -Fc -Z0 > /dev/null"

prepare() { fresh_repo gzip; }
timed "pg_dump -Fc (gzip) | restic" bash -c "set -o pipefail; '$pg_bin/pg_dump' -h 127.0.0.1 -p $port -U postgres -d bench -Fc \
  | RESTIC_REPOSITORY='$work/repo-gzip' RESTIC_CACHE_DIR='$work/cache-gzip' '$restic' backup -q --stdin --stdin-filename bench.pgdump"

prepare() { fresh_repo pipeline; }
timed "pg_dump -Fc -Z0 | restic (pipeline)" bash -c "set -o pipefail; '$pg_bin/pg_dump' -h 127.0.0.1 -p $port -U postgres -d bench -Fc -Z0 \
  | RESTIC_REPOSITORY='$work/repo-pipeline' RESTIC_CACHE_DIR='$work/cache-pipeline' '$restic' backup -q --stdin --stdin-filename bench.pgdump"

# What restic itself costs when it runs the dump (the agent's backup runs it this way, through its
# wrapper): the floor the agent can reach.
prepare() { fresh_repo command; }
timed "restic --stdin-from-command pg_dump" env RESTIC_REPOSITORY="$work/repo-command" RESTIC_CACHE_DIR="$work/cache-command" \
  "$restic" backup -q --stdin-from-command --stdin-filename bench.pgdump -- \
  "$pg_bin/pg_dump" -h 127.0.0.1 -p "$port" -U postgres -d bench -Fc -Z0

prepare() { fresh_repo agent; }
timed "lifeboat agent backup" env RESTIC_REPOSITORY="$work/repo-agent" RESTIC_CACHE_DIR="$work/cache-agent" \
  LIFEBOAT_RESTIC="$restic" LIFEBOAT_DB_PASSWORD="$PGPASSWORD" LIFEBOAT_RESULT_PATH="$work/result-backup.json" \
  "$agent" agent backup --source postgres --host 127.0.0.1 --port "$port" --user postgres --database bench \
  --bin-dir "$pg_bin" --tag policy=bench

# --- restore ------------------------------------------------------------------------------------
prepare() { :; }
timed "restic dump > /dev/null" env RESTIC_REPOSITORY="$work/repo-agent" RESTIC_CACHE_DIR="$work/cache-agent" \
  bash -c "'$restic' dump -q latest /bench.pgdump > /dev/null"

# Both restores load into an empty database created (and the previous step's writes checkpointed)
# outside the timing: CREATE DATABASE forces a checkpoint whose cost depends on what ran before.
fresh_database() {
  "$pg_bin/psql" "${conn[@]}" -q -c "DROP DATABASE IF EXISTS $1 WITH (FORCE)" -c "CREATE DATABASE $1" -c "CHECKPOINT"
}
prepare() { fresh_database bench_pipeline; }
timed "restic dump | pg_restore (pipeline)" env RESTIC_REPOSITORY="$work/repo-agent" RESTIC_CACHE_DIR="$work/cache-agent" \
  bash -c "set -o pipefail; '$restic' dump -q latest /bench.pgdump \
  | '$pg_bin/pg_restore' -h 127.0.0.1 -p $port -U postgres -d bench_pipeline --exit-on-error --single-transaction"

prepare() { fresh_database bench_agent; }
timed "lifeboat agent restore" env RESTIC_REPOSITORY="$work/repo-agent" RESTIC_CACHE_DIR="$work/cache-agent" \
  LIFEBOAT_RESTIC="$restic" LIFEBOAT_DB_PASSWORD="$PGPASSWORD" LIFEBOAT_RESULT_PATH="$work/result-restore.json" \
  "$agent" agent restore --target postgres --host 127.0.0.1 --port "$port" --user postgres --database bench_agent \
  --bin-dir "$pg_bin" --tag policy=bench

rows="$("$pg_bin/psql" "${conn[@]}" -d bench_agent -A -t -c "select count(*) from docs")"
[ "$rows" -eq "$((size_mb * 1000))" ] || { log "agent restore has $rows rows, expected $((size_mb * 1000))"; exit 1; }

repo_size() { du -sb "$work/repo-$1" | cut -f1; }
ratio() { calc "${seconds[$1]} / ${seconds[$2]}"; }
echo
printf 'dump: %s MB (custom format, uncompressed); repository: gzip %s MB, -Z0 %s MB\n' \
  "$((dump_bytes / 1000000))" "$(($(repo_size gzip) / 1000000))" "$(($(repo_size pipeline) / 1000000))"
printf '%-36s %9s %10s\n' "step" "seconds" "MB/s"
for name in "${best[@]}"; do
  printf '%-36s %9.2f %10.1f\n' "$name" "${seconds[$name]}" "$(calc "$dump_bytes / 1000000 / ${seconds[$name]}")"
done
echo
printf 'backup:  agent / pipeline time = %.3f (speed %.1f %% of the pipeline)\n' \
  "$(ratio "lifeboat agent backup" "pg_dump -Fc -Z0 | restic (pipeline)")" \
  "$(calc "100 * ${seconds[pg_dump -Fc -Z0 | restic (pipeline)]} / ${seconds[lifeboat agent backup]}")"
printf 'restore: agent / pipeline time = %.3f (speed %.1f %% of the pipeline)\n' \
  "$(ratio "lifeboat agent restore" "restic dump | pg_restore (pipeline)")" \
  "$(calc "100 * ${seconds[restic dump | pg_restore (pipeline)]} / ${seconds[lifeboat agent restore]}")"
