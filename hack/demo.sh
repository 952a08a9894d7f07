#!/usr/bin/env bash
# The demo on a fresh machine: installs what is missing, then `just demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
hack/install-tools.sh
exec just demo
