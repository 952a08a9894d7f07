#!/bin/sh
# MariaDB 10.11 for tests: initializes the data directory on first start (mariadb-install-db; it may be an
# empty volume), sets up accounts from the environment, then runs mariadbd in the foreground as the
# image's user (999). Environment:
#   MARIADB_ROOT_PASSWORD  root's password, for root@localhost and root@'%' (required on first start,
#                          unless MARIADB_ALLOW_EMPTY_ROOT_PASSWORD=1)
#   MARIADB_DATABASE       a database to create
#   MARIADB_USER, MARIADB_PASSWORD  an account with all privileges on MARIADB_DATABASE
#   MARIADB_DATADIR        default /var/lib/mysql/data (a subdirectory of the volume)
#   MARIADB_PORT           default 3306
# Extra arguments go to mariadbd (e.g. --bind-address=127.0.0.1). The socket is in /tmp, so the root
# filesystem can be read-only when /tmp is a writable volume.
set -eu
datadir=${MARIADB_DATADIR:-/var/lib/mysql/data}
socket=/tmp/mysqld.sock

# SQL string literal contents: backslashes and single quotes escaped.
sql_string() { printf '%s' "$1" | sed -e 's/\\/\\\\/g' -e "s/'/\\\\'/g"; }
sql_ident() { printf '%s' "$1" | sed -e 's/`/``/g'; }

if [ ! -d "$datadir/mysql" ]; then
  if [ -z "${MARIADB_ROOT_PASSWORD:-}" ] && [ "${MARIADB_ALLOW_EMPTY_ROOT_PASSWORD:-}" != 1 ]; then
    echo "entrypoint: MARIADB_ROOT_PASSWORD is required to initialize $datadir" >&2
    exit 1
  fi
  echo "entrypoint: initializing $datadir" >&2
  mkdir -p "$datadir"
  mariadb-install-db --no-defaults --datadir="$datadir" --auth-root-authentication-method=normal \
    --skip-test-db --skip-name-resolve --cross-bootstrap >/dev/null
  {
    # install-db also makes root@127.0.0.1, root@::1, root@<hostname> without a password, and anonymous
    # accounts: a TCP login from 127.0.0.1 would meet those before root@'%'.
    echo "DELETE FROM mysql.global_priv WHERE User = '' OR (User = 'root' AND Host <> 'localhost');"
    echo "FLUSH PRIVILEGES;"
    if [ -n "${MARIADB_ROOT_PASSWORD:-}" ]; then
      pw=$(sql_string "$MARIADB_ROOT_PASSWORD")
      echo "ALTER USER 'root'@'localhost' IDENTIFIED BY '$pw';"
      echo "CREATE USER 'root'@'%' IDENTIFIED BY '$pw';"
      echo "GRANT ALL ON *.* TO 'root'@'%' WITH GRANT OPTION;"
    fi
    if [ -n "${MARIADB_DATABASE:-}" ]; then
      echo "CREATE DATABASE IF NOT EXISTS \`$(sql_ident "$MARIADB_DATABASE")\`;"
    fi
    if [ -n "${MARIADB_USER:-}" ]; then
      echo "CREATE USER '$(sql_string "$MARIADB_USER")'@'%' IDENTIFIED BY '$(sql_string "${MARIADB_PASSWORD:-}")';"
      if [ -n "${MARIADB_DATABASE:-}" ]; then
        echo "GRANT ALL ON \`$(sql_ident "$MARIADB_DATABASE")\`.* TO '$(sql_string "$MARIADB_USER")'@'%';"
      fi
    fi
  } | mariadbd --no-defaults --bootstrap --datadir="$datadir" --skip-networking --socket="$socket" \
    --log-warnings=0 >/dev/null
  unset MARIADB_ROOT_PASSWORD MARIADB_PASSWORD
fi

exec mariadbd --no-defaults --datadir="$datadir" --socket="$socket" --port="${MARIADB_PORT:-3306}" \
  --bind-address=0.0.0.0 --skip-name-resolve --character-set-server=utf8mb4 "$@"
