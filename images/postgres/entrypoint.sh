#!/bin/sh
# PostgreSQL 15 for tests: initializes $PGDATA on first start (it may be an empty volume), then runs the
# server in the foreground as the image's user (999). Environment:
#   POSTGRES_PASSWORD  the superuser's password (required on first start)
#   POSTGRES_USER      the superuser (default postgres)
#   POSTGRES_DB        a database to create on first start (default: none besides postgres)
#   PGDATA             default /var/lib/postgresql/data/pgdata (a subdirectory, so the volume's own
#                      owner and mode do not matter as long as the user can write to it)
#   PGPORT             default 5432
# Extra arguments go to postgres (e.g. -c listen_addresses=127.0.0.1). Sockets go to /tmp, so the root
# filesystem can be read-only when /tmp is a writable volume.
set -eu
bin=/usr/lib/postgresql/15/bin
: "${PGDATA:=/var/lib/postgresql/data/pgdata}"
export PGDATA
user=${POSTGRES_USER:-postgres}

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  if [ -z "${POSTGRES_PASSWORD:-}" ]; then
    echo "entrypoint: POSTGRES_PASSWORD is required to initialize $PGDATA" >&2
    exit 1
  fi
  echo "entrypoint: initializing $PGDATA" >&2
  printf '%s\n' "$POSTGRES_PASSWORD" | "$bin/initdb" -D "$PGDATA" -U "$user" --pwfile=/dev/stdin \
    --auth-local=trust --auth-host=scram-sha-256 --encoding=UTF8 --locale=C >/dev/null
  # Every network client with a password.
  printf 'host all all 0.0.0.0/0 scram-sha-256\nhost all all ::/0 scram-sha-256\n' >>"$PGDATA/pg_hba.conf"
  if [ -n "${POSTGRES_DB:-}" ] && [ "$POSTGRES_DB" != postgres ]; then
    case $POSTGRES_DB$user in *'"'*) echo "entrypoint: no double quotes in POSTGRES_DB/POSTGRES_USER" >&2; exit 1 ;; esac
    printf 'CREATE DATABASE "%s" OWNER "%s";\n' "$POSTGRES_DB" "$user" |
      "$bin/postgres" --single -D "$PGDATA" -j -c unix_socket_directories=/tmp postgres >/dev/null
  fi
  unset POSTGRES_PASSWORD
fi

exec "$bin/postgres" -D "$PGDATA" -c listen_addresses='*' -c unix_socket_directories=/tmp -c jit=off "$@"
