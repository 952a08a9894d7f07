#!/usr/bin/env bash
# The demo: Lifeboat protecting a real PostgreSQL on the local cluster. Starts the cluster, installs the
# CRDs and the operator's RBAC, runs `lifeboat operator`, starts a PostgreSQL with a small hotel database,
# applies a BackupPolicy that backs it up every minute into a restic repository, waits for the first
# backup and shows what a user sees. Everything lives under $DEMO_DIR; `hack/demo-run.sh stop` ends it.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
DEMO_DIR="${DEMO_DIR:-/tmp/lifeboat-demo}"
PG_BIN=/usr/lib/postgresql/15/bin
PG_PORT=25432
PASSWORD=demo-password

stop_demo() {
  [ -f "$DEMO_DIR/operator.pid" ] && kill "$(cat "$DEMO_DIR/operator.pid")" 2>/dev/null || true
  [ -d "$DEMO_DIR/pg" ] && runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$DEMO_DIR/pg" -m fast stop >/dev/null 2>&1 || true
  kubectl delete namespace demo --ignore-not-found --wait=false >/dev/null 2>&1 || true
  rm -rf "$DEMO_DIR"
}
if [ "${1:-}" = "stop" ]; then stop_demo; exit 0; fi
stop_demo
mkdir -p "$DEMO_DIR"
chmod 755 "$DEMO_DIR"
# initdb runs as postgres (it refuses root) and creates its data directory here.
chown postgres "$DEMO_DIR"

log "starting the local cluster"
"$REPO_ROOT/hack/cluster-up.sh" >/dev/null
kubectl apply --server-side --force-conflicts -k "$REPO_ROOT/crds" >/dev/null
kubectl wait --for=condition=Established --timeout=60s crd -l app.kubernetes.io/part-of=lifeboat >/dev/null
for manifest in namespace serviceaccount rbac; do kubectl apply -f "$REPO_ROOT/deploy/$manifest.yaml" >/dev/null; done

log "starting PostgreSQL 15 on 127.0.0.1:$PG_PORT with a hotel database"
echo "$PASSWORD" >"$DEMO_DIR/pgpass" && chown postgres "$DEMO_DIR/pgpass"
runuser -u postgres -- "$PG_BIN/initdb" -D "$DEMO_DIR/pg" -U postgres --pwfile="$DEMO_DIR/pgpass" \
  --auth-host=scram-sha-256 --auth-local=trust >/dev/null
runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$DEMO_DIR/pg" -l "$DEMO_DIR/postgres.log" -w \
  -o "-p $PG_PORT -c listen_addresses=127.0.0.1 -k $DEMO_DIR" start >/dev/null
psql_demo() { PGPASSWORD=$PASSWORD "$PG_BIN/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -X -q "$@"; }
psql_demo -c "create database hotel"
psql_demo -d hotel -c "create table reservations(id serial primary key, guest text, nights int);
  insert into reservations(guest, nights) select 'guest ' || g, 1 + g % 7 from generate_series(1, 10000) g;"

log "building and starting the operator (its Jobs run on the local node)"
(cd "$REPO_ROOT" && cargo build -q --bin lifeboat)
target_dir=$(cd "$REPO_ROOT" && cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
LIFEBOAT_AGENT_COMMAND="$target_dir/debug/lifeboat" LIFEBOAT_HTTP_ADDRESS=127.0.0.1:18080 RUST_LOG=info \
  setsid "$target_dir/debug/lifeboat" operator >"$DEMO_DIR/operator.log" 2>&1 </dev/null &
echo $! >"$DEMO_DIR/operator.pid"

log "applying a BackupPolicy (every minute, keep 3, RPO 1h)"
kubectl create namespace demo >/dev/null
kubectl -n demo create secret generic hotel-db --from-literal=password="$PASSWORD" >/dev/null
kubectl -n demo create secret generic restic --from-literal=password=demo-restic-password >/dev/null
kubectl -n demo apply -f - >/dev/null <<YAML
apiVersion: lifeboat.dev/v1alpha1
kind: BackupPolicy
metadata:
  name: hotel-db
spec:
  schedule: "* * * * *"
  source:
    postgres: {host: 127.0.0.1, port: $PG_PORT, database: hotel, user: postgres, passwordSecretRef: {name: hotel-db, key: password}}
  repository:
    restic: {repository: $DEMO_DIR/repo, initialize: true, passwordSecretRef: {name: restic, key: password}}
  retention: {keepLast: 3}
  rpo: 1h
  sizeAnomaly: {minRatio: 0.7, maxRatio: 1.5}
YAML

log "waiting for the first scheduled backup (up to 2 minutes)"
for _ in $(seq 1 240); do
  if [ -n "$(kubectl -n demo get bp hotel-db -o jsonpath='{.status.lastSuccessfulBackup.snapshotId}' 2>/dev/null)" ]; then break; fi
  sleep 0.5
done
echo
kubectl -n demo get backuppolicies,backups
echo
kubectl -n demo get bp hotel-db -o jsonpath='{.status.lastSuccessfulBackup}' && echo
echo
RESTIC_PASSWORD=demo-restic-password "$LIFEBOAT_BIN/restic" -r "$DEMO_DIR/repo" snapshots
echo
curl -s http://127.0.0.1:18080/metrics | grep -E '^lifeboat_backup_(last|stale)' || true
echo
echo "Lifeboat keeps backing up every minute. Try: KUBECONFIG=$KUBECONFIG kubectl -n demo get bp -w"
echo "Stop the demo with: hack/demo-run.sh stop && just cluster-down"
