#!/usr/bin/env bash
# Debian's prometheus package for the monitoring tests (tests/monitoring/): it
# provides /usr/bin/prometheus and /usr/bin/promtool. Tests start their own
# Prometheus on a free loopback port, so apt must not leave the packaged service
# running: a temporary policy-rc.d denies service starts during the install, and a
# service that was started anyway is stopped. Idempotent: does nothing when both
# binaries are present. Without root it only says the live tests will skip.
set -euo pipefail

if command -v prometheus >/dev/null && command -v promtool >/dev/null; then
    echo "bootstrap-monitoring: prometheus and promtool present"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "bootstrap-monitoring: prometheus missing and not root; monitoring tests will skip" >&2
    exit 0
fi
echo "bootstrap-monitoring: installing prometheus"
export DEBIAN_FRONTEND=noninteractive
policy=/usr/sbin/policy-rc.d
made_policy=0
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod 755 "$policy"
    made_policy=1
fi
cleanup() { if [ "$made_policy" -eq 1 ]; then rm -f "$policy"; fi; }
trap cleanup EXIT
apt-get update -qq
apt-get install -y -qq --no-install-recommends prometheus >/dev/null
# Stop a service an init system started regardless (systemd ignores policy-rc.d).
if command -v systemctl >/dev/null && systemctl is-active --quiet prometheus 2>/dev/null; then
    systemctl disable --now prometheus >/dev/null 2>&1 || true
fi
if command -v service >/dev/null && service prometheus status >/dev/null 2>&1; then
    service prometheus stop >/dev/null 2>&1 || true
fi
