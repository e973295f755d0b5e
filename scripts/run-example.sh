#!/usr/bin/env bash
# Main job: set up, then run the sample program on the embedded one-machine cluster.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/python examples/quickstart.py "$@"
