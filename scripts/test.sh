#!/usr/bin/env bash
# The whole test suite: set-up, lint (ruff), types (mypy), generated-stub
# freshness, then unit and integration tests. Extra arguments go to pytest
# (e.g. `scripts/test.sh -m "not slow"` to skip the slow tier).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
bash scripts/bootstrap-hosts.sh
bash scripts/bootstrap-monitoring.sh
bash scripts/bootstrap-browser.sh
echo "== ruff"
.venv/bin/ruff check rayops tests bench scripts examples
echo "== mypy"
.venv/bin/mypy
echo "== generated stubs"
.venv/bin/python scripts/gen_protos.py --check
echo "== import contracts" && .venv/bin/lint-imports --no-cache --no-logo
echo "== pytest"
# Core-worker methods assert the thread they run on (rayops/core_worker/threads.py).
export RAYOPS_DEBUG_THREADS=1
exec .venv/bin/pytest -p no:cacheprovider "$@"
