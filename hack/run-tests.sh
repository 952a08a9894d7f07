#!/usr/bin/env bash
# Runs every test binary of the workspace against the running local cluster (`just test` starts it).
#
# Most binaries only create objects in namespaces of their own, and wait: for Pods, Jobs, the operator.
# They share one operator (LIFEBOAT_SHARED_OPERATOR, installed by the first binary that needs it) and run
# LIFEBOAT_TEST_JOBS at a time (default 3 on 2 cores). A binary whose file has the line
#   // lifeboat-test: alone (why)
# restarts, crashes or replaces the operator, restarts the node's daemons or measures the node, so it
# runs by itself afterwards, with an operator of its own, exactly as `cargo test` would run it.
# Each binary's output is printed whole when it ends; the summary lists the failures and every time.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$REPO_ROOT"

jobs=${LIFEBOAT_TEST_JOBS:-3}
shared_namespace=lifeboat-e2e-shared
out=$(mktemp -d "${TMPDIR:-/tmp}/lifeboat-tests.XXXXXX")

# Build once; cargo prints its diagnostics, the JSON lines name each test executable.
cargo test --workspace --no-run --message-format=json-render-diagnostics >"$out/artifacts.json"
jq -r 'select(.reason == "compiler-artifact" and .executable != null and .profile.test)
       | [.target.kind[0], .target.name, .target.src_path, .manifest_path, .executable] | @tsv' \
  "$out/artifacts.json" >"$out/binaries.tsv"

# The longest first, so the last to start is a short one: by the times the previous run recorded, and
# without a record (a fresh machine), the cluster suites (*_e2e, *_doc) before the rest.
times_file="$LIFEBOAT_CACHE/test-times.tsv"
expected_seconds() {
  local recorded
  recorded=$(awk -F'\t' -v label="$1" '$1 == label {print $2}' "$times_file" 2>/dev/null | tail -1)
  if [ -n "$recorded" ]; then echo "$recorded"
  elif [[ $1 == *_e2e || $1 == *_doc ]]; then echo 60
  else echo 0; fi
}
together=() alone=()
while IFS=$'\t' read -r expected kind name src manifest executable; do
  entry="$kind $name"$'\t'"$(dirname "$manifest")"$'\t'"$executable"
  if grep -q '^// lifeboat-test: alone' "$src"; then alone+=("$entry"); else together+=("$entry"); fi
done < <(while IFS=$'\t' read -r kind name rest; do
           printf '%s\t%s\t%s\t%s\n' "$(expected_seconds "$kind $name")" "$kind" "$name" "$rest"
         done <"$out/binaries.tsv" | sort -t$'\t' -k1,1 -n -r -s)

# run_binary ENTRY: runs one test binary in its package's directory (as cargo test does), then prints
# its output under a lock, so that binaries ending together do not interleave.
run_binary() {
  local label dir executable
  IFS=$'\t' read -r label dir executable <<<"$1"
  local log="$out/${label// /-}.log" t0=$SECONDS rc=0
  (cd "$dir" && "$executable") >"$log" 2>&1 || rc=$?
  local took=$((SECONDS - t0))
  echo "$rc $took $label" >>"$out/results"
  {
    flock 9
    printf '\n===== %s (%s): exit %s after %s s =====\n' "$label" "$dir" "$rc" "$took"
    cat "$log"
  } 9>"$out/print.lock"
}

uninstall_shared_operator() {
  [ -n "${LIFEBOAT_KEEP_NAMESPACES:-}" ] && return
  helm uninstall lifeboat --namespace "$shared_namespace" --wait >/dev/null 2>&1 || true
  # Its Pod may outlive the Deployment for a moment; the binaries after it include some that need no
  # operator at all.
  kubectl wait --for=delete pods --namespace "$shared_namespace" --timeout=60s \
    -l app.kubernetes.io/name=lifeboat,app.kubernetes.io/component=operator >/dev/null 2>&1 || true
  kubectl delete namespace "$shared_namespace" --wait=false >/dev/null 2>&1 || true
}

phase_start=$SECONDS
log "${#together[@]} test binaries, $jobs at a time, sharing the operator in $shared_namespace"
export LIFEBOAT_SHARED_OPERATOR=$shared_namespace
for entry in "${together[@]}"; do
  while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n || true; done
  run_binary "$entry" &
done
wait
unset LIFEBOAT_SHARED_OPERATOR
uninstall_shared_operator
together_took=$((SECONDS - phase_start))

phase_start=$SECONDS
log "${#alone[@]} test binaries one at a time, each with an operator of its own"
for entry in "${alone[@]}"; do
  run_binary "$entry"
done
alone_took=$((SECONDS - phase_start))

# Doc tests are not in the JSON (rustdoc builds them); there are few, so cargo runs them as usual.
doc_rc=0
cargo test --workspace --doc -q >"$out/doc.log" 2>&1 || doc_rc=$?
echo "$doc_rc 0 doc-tests" >>"$out/results"
[ "$doc_rc" = 0 ] || cat "$out/doc.log"

printf '\n===== summary: side by side %s s, alone %s s =====\n' "$together_took" "$alone_took"
sort -k2 -n -r "$out/results" | awk '{printf "%-6s %5s s  %s %s\n", ($1 == 0 ? "ok" : "FAILED"), $2, $3, $4}'
mkdir -p "$LIFEBOAT_CACHE"
awk '$4 != "" {printf "%s %s\t%s\n", $3, $4, $2}' "$out/results" >"$times_file"
failed=$(awk '$1 != 0 {print $3, $4}' "$out/results")
if [ -n "$failed" ]; then
  printf '\nfailed:\n%s\n(logs in %s)\n' "$failed" "$out" >&2
  exit 1
fi
rm -rf "$out"
