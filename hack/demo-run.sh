#!/usr/bin/env bash
# The demo: Lifeboat as a user installs it, protecting a PostgreSQL and switching a web app, on the local
# cluster's real node. Builds the images, starts the cluster, installs Lifeboat with Helm (the operator and
# every Job in the lifeboat image), runs PostgreSQL as a Pod, applies a BackupPolicy (every minute) and shows
# the first backups, runs a RestoreDrill once and shows its measured RTO, then a Cutover of the demo web app
# from blue to green, showing the responses move. Nothing runs an example's command on the host.
# `hack/demo-run.sh stop` removes the demo (then `just cluster-down`).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
NS=demo
DEMO_DIR="$LIFEBOAT_CLUSTER_DIR/demo"
PASSWORD=demo-password

stop_demo() {
  kubectl delete namespace "$NS" --ignore-not-found --wait=true --timeout=60s >/dev/null 2>&1 || true
  kubectl delete pv "$NS-backups" --ignore-not-found >/dev/null 2>&1 || true
  helm uninstall lifeboat -n lifeboat-system >/dev/null 2>&1 || true
  rm -rf "$DEMO_DIR"
}
if [ "${1:-}" = "stop" ]; then stop_demo; exit 0; fi

wait_until() { # wait_until SECONDS DESCRIPTION COMMAND...
  local seconds=$1 what=$2; shift 2
  log "waiting for $what (up to ${seconds}s)"
  wait_for "$seconds" "$what" "$@"
}
# has KIND NAME JSONPATH: the field is set (not empty).
has() { [ -n "$(kubectl -n "$NS" get "$1" "$2" -o jsonpath="$3" 2>/dev/null)" ]; }

log "building the images (cached: seconds when nothing changed)"
"$REPO_ROOT/hack/images.sh" >/dev/null
log "starting the local cluster with its real node"
"$REPO_ROOT/hack/cluster-up.sh" >/dev/null
stop_demo

log "installing Lifeboat with Helm (ghcr.io/lifeboat-dev/lifeboat:0.1.0, imported into the node)"
cat >"$LIFEBOAT_CLUSTER_DIR/demo-values.yaml" <<YAML
image: {pullPolicy: Never}
YAML
# deploy/'s RBAC applied into lifeboat-system by hand (`kubectl apply -k deploy`) would stop Helm, which
# refuses to adopt objects it did not make: they go first (the chart brings its own).
if ! helm status lifeboat -n lifeboat-system >/dev/null 2>&1; then
  kubectl delete -f "$REPO_ROOT/deploy/rbac.yaml" -f "$REPO_ROOT/deploy/serviceaccount.yaml" \
    --ignore-not-found >/dev/null 2>&1 || true
fi
helm upgrade --install lifeboat "$REPO_ROOT/charts/lifeboat" -n lifeboat-system --create-namespace \
  -f "$LIFEBOAT_CLUSTER_DIR/demo-values.yaml" --wait --timeout 180s >/dev/null
kubectl -n lifeboat-system get pods -o wide

log "namespace $NS (Pod Security: restricted), PostgreSQL 15 as a Pod, a volume for the restic repository"
kubectl create namespace "$NS" >/dev/null
kubectl label namespace "$NS" pod-security.kubernetes.io/enforce=restricted >/dev/null
kubectl -n "$NS" create secret generic hotel-db --from-literal=password="$PASSWORD" >/dev/null
kubectl -n "$NS" create secret generic restic --from-literal=password=demo-restic-password >/dev/null
mkdir -p "$DEMO_DIR/repository" && chmod 0777 "$DEMO_DIR/repository"
kubectl apply -f - >/dev/null <<YAML
apiVersion: v1
kind: PersistentVolume
metadata: {name: $NS-backups}
spec:
  capacity: {storage: 1Gi}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  storageClassName: ""
  hostPath: {path: $DEMO_DIR/repository, type: Directory}
  claimRef: {namespace: $NS, name: backups}
YAML
kubectl -n "$NS" apply -f - >/dev/null <<YAML
apiVersion: v1
kind: PersistentVolumeClaim
metadata: {name: backups}
spec:
  accessModes: [ReadWriteOnce]
  storageClassName: ""
  volumeName: $NS-backups
  resources: {requests: {storage: 1Gi}}
---
apiVersion: v1
kind: Pod
metadata: {name: hotel-db, labels: {app: hotel-db}}
spec:
  terminationGracePeriodSeconds: 2
  securityContext: {runAsUser: 999, runAsGroup: 999, fsGroup: 999}
  containers:
  - name: postgres
    image: lifeboat.local/postgres:15
    imagePullPolicy: Never
    env: [{name: POSTGRES_PASSWORD, valueFrom: {secretKeyRef: {name: hotel-db, key: password}}}]
    ports: [{containerPort: 5432}]
    readinessProbe: {tcpSocket: {port: 5432}, periodSeconds: 1}
    securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}, runAsNonRoot: true, seccompProfile: {type: RuntimeDefault}}
    volumeMounts: [{name: data, mountPath: /var/lib/postgresql/data}]
  volumes: [{name: data, emptyDir: {}}]
---
apiVersion: v1
kind: Service
metadata: {name: hotel-db}
spec:
  selector: {app: hotel-db}
  ports: [{port: 5432}]
YAML
kubectl -n "$NS" wait --for=condition=Ready pod/hotel-db --timeout=90s >/dev/null
kubectl -n "$NS" exec hotel-db -- psql -X -q -h /tmp -U postgres -c "create database hotel" >/dev/null
kubectl -n "$NS" exec hotel-db -- psql -X -q -h /tmp -U postgres -d hotel -c \
  "create table reservations(id serial primary key, guest text, nights int);
   insert into reservations(guest, nights) select 'guest ' || g, 1 + g % 7 from generate_series(1, 10000) g;"

log "a BackupPolicy: every minute into restic on the volume, keep 3, RPO 1h"
kubectl -n "$NS" apply -f - >/dev/null <<YAML
apiVersion: lifeboat.dev/v1alpha1
kind: BackupPolicy
metadata: {name: hotel-db}
spec:
  schedule: "* * * * *"
  source:
    postgres: {host: hotel-db, database: hotel, user: postgres, passwordSecretRef: {name: hotel-db, key: password}}
  repository:
    restic: {repository: /repository/hotel, persistentVolumeClaim: backups, initialize: true,
             passwordSecretRef: {name: restic, key: password}}
  retention: {keepLast: 3}
  rpo: 1h
  sizeAnomaly: {minRatio: 0.7, maxRatio: 1.5}
  jobTemplate:
    imagePullPolicy: Never
YAML
wait_until 150 "the first scheduled backup" has bp hotel-db '{.status.lastSuccessfulBackup.snapshotId}'
echo
kubectl -n "$NS" get backuppolicies,backups
kubectl -n "$NS" get bp hotel-db -o jsonpath='{.status.lastSuccessfulBackup}' && echo
echo

log "a RestoreDrill: the newest snapshot into a scratch PostgreSQL, verified, RTO measured"
kubectl -n "$NS" apply -f - >/dev/null <<YAML
apiVersion: lifeboat.dev/v1alpha1
kind: RestoreDrill
metadata: {name: hotel-db-drill}
spec:
  schedule: "* * * * *"
  policyRef: {name: hotel-db}
  target:
    scratch:
      engine: postgres
      image: lifeboat.local/postgres:15
  verify:
    tables: [{name: reservations, minRows: 10000}]
  rto: 10m
  rpo: 1h
  jobTemplate:
    imagePullPolicy: Never
YAML
wait_until 240 "the first drill's verdict" has drill hotel-db-drill '{.status.lastDrill.passed}'
kubectl -n "$NS" patch drill hotel-db-drill --type merge -p '{"spec":{"suspend":true}}' >/dev/null
kubectl -n "$NS" get drill hotel-db-drill
kubectl -n "$NS" get drill hotel-db-drill -o jsonpath='measured RTO {.status.lastDrill.measuredRTO}, RPO {.status.lastDrill.measuredRPO}, passed {.status.lastDrill.passed}: {.status.lastDrill.message}{"\n"}'
echo

log "the web app in blue and green behind Service web, then a Cutover blue -> green"
for color in blue green; do
  kubectl -n "$NS" apply -f - >/dev/null <<YAML
apiVersion: apps/v1
kind: Deployment
metadata: {name: web-$color}
spec:
  replicas: 1
  selector: {matchLabels: {app: web, track: $color}}
  template:
    metadata: {labels: {app: web, track: $color}}
    spec:
      terminationGracePeriodSeconds: 2
      containers:
      - name: web
        image: lifeboat.local/webapp:1
        imagePullPolicy: Never
        env: [{name: VERSION, value: $color}]
        ports: [{containerPort: 8080}]
        readinessProbe: {httpGet: {path: /ready, port: 8080}, periodSeconds: 1}
        securityContext: {allowPrivilegeEscalation: false, capabilities: {drop: [ALL]}, runAsNonRoot: true, seccompProfile: {type: RuntimeDefault}}
YAML
done
kubectl -n "$NS" apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web, track: blue}
  ports: [{port: 80, targetPort: 8080}]
YAML
kubectl -n "$NS" rollout status deploy/web-blue deploy/web-green --timeout=90s >/dev/null
# The apiserver's Service proxy, as a user's browser would see the Service.
answer() { kubectl get --raw "/api/v1/namespaces/$NS/services/web:80/proxy/version" 2>/dev/null || echo "(no answer)"; }
wait_until 30 "Service web to answer" kubectl get --raw "/api/v1/namespaces/$NS/services/web:80/proxy/version"
echo "before the Cutover, web answers: $(answer)"
# The preflight reaches green directly, through a Service of its own.
kubectl -n "$NS" apply -f - >/dev/null <<YAML
apiVersion: v1
kind: Service
metadata: {name: web-green-probe}
spec:
  selector: {app: web, track: green}
  ports: [{port: 80, targetPort: 8080}]
YAML
kubectl -n "$NS" apply -f - >/dev/null <<YAML
apiVersion: lifeboat.dev/v1alpha1
kind: Cutover
metadata: {name: web-green}
spec:
  trafficSwitch:
    service: {name: web}
  from: {selector: {app: web, track: blue}, deployment: web-blue}
  to: {selector: {app: web, track: green}, deployment: web-green}
  preflight:
    - name: green-health
      http: {url: "http://web-green-probe.$NS.svc/health", retries: 3}
  backup: {policyRef: {name: hotel-db}}
  verify:
    - name: version
      http: {url: "http://web.$NS.svc/version", expectBodyContains: green}
  stabilization:
    duration: 20s
    interval: 2s
    failureThreshold: 2
    http: [{name: health, url: "http://web.$NS.svc/health"}]
  rollback: {automatic: true}
YAML
for _ in $(seq 1 120); do
  phase=$(kubectl -n "$NS" get cutover web-green -o jsonpath='{.status.phase}')
  echo "  cutover: ${phase:-Pending} (step $(kubectl -n "$NS" get cutover web-green -o jsonpath='{.status.step}')), web answers: $(answer)"
  case "$phase" in Succeeded|Failed|RolledBack) break ;; esac
  sleep 2
done
echo
kubectl -n "$NS" get cutover web-green -o jsonpath='{range .status.steps[*]}{.name}{"\t"}{.phase}{"\t"}{.message}{"\n"}{end}'
echo
kubectl get lifeboat -A
echo
echo "Lifeboat keeps backing up every minute: KUBECONFIG=$KUBECONFIG kubectl -n $NS get bp,bk -w"
echo "Stop the demo with: hack/demo-run.sh stop && just cluster-down"
