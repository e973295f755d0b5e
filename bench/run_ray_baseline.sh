#!/usr/bin/env bash
# Runs bench/microbenchmark.py against real Ray, from a virtualenv kept OUTSIDE the repo.
# Ray is never a dependency of rayops: this script is the only place that installs it.
#
#   bash bench/run_ray_baseline.sh [microbenchmark args...]     e.g. --json /tmp/ray.json
#
# RAYVENV picks the virtualenv (default /work/rayvenv); RAY_VERSION the Ray release (2.60.0).
set -euo pipefail

RAYVENV="${RAYVENV:-/work/rayvenv}"
RAY_VERSION="${RAY_VERSION:-2.60.0}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

if [[ ! -x "$RAYVENV/bin/python" ]]; then
    python3 -m venv "$RAYVENV"
fi
if ! "$RAYVENV/bin/python" -c "import ray, numpy, psutil; assert ray.__version__ == '$RAY_VERSION'" \
        2>/dev/null; then
    "$RAYVENV/bin/pip" install --quiet "ray==$RAY_VERSION" numpy psutil
fi

# Bind every Ray daemon to 127.0.0.1 instead of the machine's interface address (Ray's own
# switch, the one it uses on macOS), and make sure Ray never tries to report usage statistics.
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0
export RAY_USAGE_STATS_ENABLED=0

# Run from outside the repo so nothing of rayops is importable by accident.
cd /tmp
exec "$RAYVENV/bin/python" "$here/microbenchmark.py" --runtime ray "$@"
