#!/usr/bin/env bash
# Set up a fresh machine for rayops: a virtualenv at .venv with rayops (editable)
# and its test tools. Idempotent; safe to run again. Needs only PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip >/dev/null
.venv/bin/python -m pip install --quiet -e '.[test]'
# Byte-compile once: with PYTHONDONTWRITEBYTECODE set, every worker start would
# otherwise recompile the package from source.
.venv/bin/python -m compileall -q rayops >/dev/null
