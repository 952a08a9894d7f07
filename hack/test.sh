#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs what is missing, then `just test`.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
# A clean clone builds once: incremental state only costs time and disk there.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
started=$SECONDS
hack/install-tools.sh base
echo "[test] Debian packages, just, data tools: $((SECONDS - started)) s" >&2

# The Go builds (control plane, node, test tools) run beside the Rust ones (the release binaries the images
# pack, then the test binaries): on 2 cores each alone leaves a core idle while it downloads or links.
# Cold, this saves minutes; warm, every step finds its output cached.
started=$SECONDS
hack/install-tools.sh go &
go_builds=$!
hack/images.sh
cargo test --workspace --no-run --quiet
if ! wait "$go_builds"; then
  echo "[test] the Go builds failed (hack/install-tools.sh go)" >&2
  exit 1
fi
echo "[test] Go builds beside images and test build: $((SECONDS - started)) s" >&2
exec just test
