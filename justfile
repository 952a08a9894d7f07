# Lifeboat's recipes. `just --list` shows them. The local cluster's binaries live in ~/.cache/lifeboat/bin.

set shell := ["bash", "-euo", "pipefail", "-c"]

export PATH := env_var('HOME') + "/.cache/lifeboat/bin:" + env_var('HOME') + "/.cargo/bin:" + env_var('PATH')
export KUBECONFIG := env_var_or_default('LIFEBOAT_CLUSTER_DIR', env_var('HOME') + "/.cache/lifeboat/cluster") + "/kubeconfig"

default:
    @just --list

# Install missing tools and build the local cluster's components (idempotent).
setup:
    hack/install-tools.sh

# Start the local cluster (etcd, kube-apiserver, controller-manager, scheduler and, as root,
# the real node lifeboat-node: kubelet, containerd, kube-proxy, CoreDNS; LIFEBOAT_REAL_NODE=0 leaves it out).
cluster-up:
    hack/cluster-up.sh >/dev/null
    @echo "export KUBECONFIG=$KUBECONFIG PATH=$HOME/.cache/lifeboat/bin:\$PATH"

# Stop the local cluster.
cluster-down:
    hack/cluster-down.sh

# Regenerate the CRDs (crds/ and the Helm chart's copy) and docs/api-reference.md from the Rust types.
crds:
    cargo run -q -- crds --out-dir crds --api-reference docs/api-reference.md
    cp crds/backuppolicies.yaml crds/backups.yaml crds/restores.yaml crds/restoredrills.yaml crds/cutovers.yaml charts/lifeboat/crds/

# Formatting and lints.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# The whole test suite against a local cluster started (and stopped) for the run (LIFEBOAT_TEST_JOBS: how
# many test binaries run side by side, default 3).
test:
    #!/usr/bin/env bash
    set -euo pipefail
    # The images first: the real node imports them as it starts.
    started=$SECONDS
    hack/images.sh
    echo "[test] images: $((SECONDS - started)) s" >&2
    started=$SECONDS
    if ! hack/cluster-up.sh >/dev/null 2>/tmp/lifeboat-cluster-up.err; then cat /tmp/lifeboat-cluster-up.err >&2; exit 1; fi
    echo "[test] cluster-up: $((SECONDS - started)) s" >&2
    trap 'hack/cluster-down.sh' EXIT
    # Binaries that share one operator run side by side, the rest one at a time: see the script.
    hack/run-tests.sh

# The tests against an already running cluster (`just cluster-up` first); extra args go to cargo test.
test-fast *args:
    cargo test --workspace {{args}}

# The demo: Lifeboat installed with Helm on the real node, backing up a PostgreSQL Pod, one drill, one Cutover.
demo:
    hack/demo-run.sh

# Operator scale: 500 BackupPolicies in 50 namespaces (idle RSS/CPU, reconcile-all time, slot delay p50/p99).
bench-operator:
    hack/cluster-up.sh >/dev/null
    cargo bench --bench operator_scale

# PostgreSQL 15, MariaDB 10.11 (Debian) and restic 0.19.1 (built from the Go module proxy) for the agent.
data-tools:
    bash hack/install-data-tools.sh

# The agent's tests against real servers (no cluster needed).
test-agent: data-tools
    cargo test --test agent_postgres --test agent_mysql --test agent_files --test agent_failures

# The agent against plain pg_dump | restic pipelines on a database of SIZE MB of random text.
bench-agent size="300":
    bash hack/bench-agent.sh {{size}}

# OCI image archives (lifeboat, webapp, postgres, mariadb) in ~/.cache/lifeboat/images, from
# Debian packages and the release binaries, without Docker or a registry; unchanged inputs are not rebuilt.
images *names:
    hack/images.sh {{names}}

# Builds each image twice from scratch and fails unless the manifest digests agree.
images-reproducible *names:
    hack/images.sh --check-reproducible {{names}}

# Unpacks every built archive with umoci and runs the database images against the lifeboat image's clients.
images-check:
    hack/images-check.sh
