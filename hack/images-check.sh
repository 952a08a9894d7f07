#!/usr/bin/env bash
# Checks the built archives the way a consumer sees them: `umoci unpack` of each $LIFEBOAT_CACHE/images/
# NAME.oci.tar (its index must name the image for containerd), the config (user, entrypoint, env), and,
# with the database images running on loopback from their unpacked root filesystems, the lifeboat
# image's own clients (pg_dump 17, mariadb-dump 11.8) dumping them as uid 65532, and `lifeboat agent
# backup` of each into a restic repository inside the image's /tmp.
#
#   hack/images-check.sh        (after hack/images.sh)
set -euo pipefail
source "$(dirname "$0")/lib.sh"
OUT_DIR="$LIFEBOAT_CACHE/images"
work=$(mktemp -d "${TMPDIR:-/tmp}/images-check.XXXXXX")
pids=()
cleanup() {
  local pid child
  for pid in "${pids[@]}"; do
    for child in $(cat "/proc/$pid/task/$pid/children" 2>/dev/null); do kill -TERM "$child" 2>/dev/null || true; done
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$work"
}
trap cleanup EXIT

# unpack NAME: the archive's layout and rootfs under $work/NAME; prints the config's user.
unpack() {
  local name=$1 tag ref
  mkdir -p "$work/$name/layout"
  tar -xf "$OUT_DIR/$name.oci.tar" -C "$work/$name/layout"
  ref=$(jq -r '.manifests[0].annotations["io.containerd.image.name"]' "$work/$name/layout/index.json")
  tag=$(jq -r '.manifests[0].annotations["org.opencontainers.image.ref.name"]' "$work/$name/layout/index.json")
  umoci --log=error unpack --image "$work/$name/layout:$tag" "$work/$name/bundle" >/dev/null
  log "$name: $ref unpacks; user $(jq -r .process.user.uid "$work/$name/bundle/config.json"), args $(jq -c .process.args "$work/$name/bundle/config.json")"
}

# run NAME UID ENV... -- CMD...: CMD in the unpacked rootfs. run_exec replaces the calling (sub)shell, so
# `run_exec … &` gives unshare's PID to the clean-up.
run() { (run_exec "$@"); }
run_exec() {
  local rootfs="$work/$1/bundle/rootfs" uid=$2 envs=()
  shift 2
  while [ "$1" != -- ]; do envs+=("$1"); shift; done
  shift
  mkdir -p "$rootfs/proc" "$rootfs/dev"
  exec unshare --mount --pid --fork --mount-proc="$rootfs/proc" bash -c '
    r=$1 u=$2 n=$3; shift 3; envs=("${@:1:n}"); shift "$n"
    mount --rbind /dev "$r/dev" && exec env -i "${envs[@]}" "$(command -v chroot)" --userspec="$u:$u" "$r" "$@"
  ' _ "$rootfs" "$uid" "${#envs[@]}" "${envs[@]}" "$@"
}

for name in lifeboat postgres mariadb webapp; do
  [ -f "$OUT_DIR/$name.oci.tar" ] && unpack "$name"
done

lb=(PATH=/usr/local/bin:/usr/bin:/bin HOME=/home/lifeboat)
if [ -d "$work/postgres" ] && [ -d "$work/lifeboat" ]; then
  run_exec postgres 999 PATH=/usr/local/bin:/usr/bin:/bin POSTGRES_PASSWORD=pw POSTGRES_DB=shop PGPORT=15434 \
    PGDATA=/tmp/pgdata -- /usr/local/bin/entrypoint.sh -c listen_addresses=127.0.0.1 >"$work/postgres.log" 2>&1 &
  pids+=($!)
  wait_for 60 "postgres image on 127.0.0.1:15434" pg_isready -q -h 127.0.0.1 -p 15434
  PGPASSWORD=pw psql -X -q -h 127.0.0.1 -p 15434 -U postgres -d shop -c "create table t (id int); insert into t values (42)"
  run lifeboat 65532 "${lb[@]}" PGPASSWORD=pw -- pg_dump -h 127.0.0.1 -p 15434 -U postgres -d shop -Fc -f /tmp/shop.dump
  run lifeboat 65532 "${lb[@]}" -- pg_restore -l /tmp/shop.dump >"$work/shop.list"
  grep -q 'TABLE DATA public t' "$work/shop.list"
  log "lifeboat image's pg_dump $(run lifeboat 65532 "${lb[@]}" -- pg_dump --version | awk '{print $3}') dumped the postgres:15 image's server"
  # The agent itself, as a backup Job would run it: pg_dump piped into restic, a repository in /tmp.
  repo=(RESTIC_REPOSITORY=/tmp/repo RESTIC_PASSWORD=check)
  run lifeboat 65532 "${lb[@]}" "${repo[@]}" -- restic init >/dev/null
  run lifeboat 65532 "${lb[@]}" "${repo[@]}" LIFEBOAT_DB_PASSWORD=pw -- lifeboat agent backup --source postgres \
    --host 127.0.0.1 --port 15434 --database shop --user postgres --result-path /tmp/pg-result.json >"$work/agent-pg.log" 2>&1 ||
    { cat "$work/agent-pg.log" >&2; exit 1; }
  log "lifeboat agent backup (postgres) in the lifeboat image: $(head -c 300 "$work/lifeboat/bundle/rootfs/tmp/pg-result.json")"
fi
if [ -d "$work/mariadb" ] && [ -d "$work/lifeboat" ]; then
  run_exec mariadb 999 PATH=/usr/local/bin:/usr/sbin:/usr/bin:/bin MARIADB_ROOT_PASSWORD=rootpw MARIADB_DATABASE=shop \
    MARIADB_USER=app MARIADB_PASSWORD=apppw MARIADB_PORT=13308 MARIADB_DATADIR=/tmp/data \
    -- /usr/local/bin/entrypoint.sh --bind-address=127.0.0.1 >"$work/mariadb.log" 2>&1 &
  pids+=($!)
  # The same flags as the agent's (src/agent/mysql.rs), with the lifeboat image's MariaDB 11.8 client.
  flags=(--no-defaults --host=127.0.0.1 --port=13308 --user=app --protocol=TCP --default-character-set=utf8mb4)
  wait_for 60 "mariadb image on 127.0.0.1:13308" run lifeboat 65532 "${lb[@]}" MYSQL_PWD=apppw -- mariadb "${flags[@]}" -e 'select 1' shop
  run lifeboat 65532 "${lb[@]}" MYSQL_PWD=apppw -- mariadb "${flags[@]}" --batch -e "create table t (id int); insert into t values (42)" shop
  run lifeboat 65532 "${lb[@]}" MYSQL_PWD=apppw -- mariadb-dump "${flags[@]}" --single-transaction --routines \
    --triggers --hex-blob --no-tablespaces shop >"$work/shop.sql"
  grep -q 'INSERT INTO `t` VALUES' "$work/shop.sql" && grep -q '(42)' "$work/shop.sql"
  log "lifeboat image's mariadb-dump (11.8) dumped the mariadb:10.11 image's server"
  repo=(RESTIC_REPOSITORY=/tmp/repo-my RESTIC_PASSWORD=check)
  run lifeboat 65532 "${lb[@]}" "${repo[@]}" -- restic init >/dev/null
  run lifeboat 65532 "${lb[@]}" "${repo[@]}" LIFEBOAT_DB_PASSWORD=apppw -- lifeboat agent backup --source mysql \
    --host 127.0.0.1 --port 13308 --database shop --user app --result-path /tmp/my-result.json >"$work/agent-my.log" 2>&1 ||
    { cat "$work/agent-my.log" >&2; exit 1; }
  log "lifeboat agent backup (mysql) in the lifeboat image: $(head -c 300 "$work/lifeboat/bundle/rootfs/tmp/my-result.json")"
fi
log "all archives unpack; the clients work against the test servers"
