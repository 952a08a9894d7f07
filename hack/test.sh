#!/usr/bin/env bash
# The whole test suite on a fresh machine: installs what is missing, then `just test`.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
hack/install-tools.sh
exec just test
