#!/usr/bin/env bash
# Debian's chromium package for the dashboard page's browser test
# (tests/integration/test_dashboard_page.py drives it headless over the Chrome
# DevTools Protocol). Idempotent: does nothing when chromium is present. Without
# root it only says the browser test will skip.
set -euo pipefail

if command -v chromium >/dev/null; then
    echo "bootstrap-browser: chromium present"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "bootstrap-browser: chromium missing and not root; the browser test will skip" >&2
    exit 0
fi
echo "bootstrap-browser: installing chromium"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
