#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs what is missing, then `just test`.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
# A clean clone builds once: incremental state only costs time and disk there.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
hack/install-tools.sh
exec just test
