#!/usr/bin/env bash
# Debian packages the host-tier tests (tests/hosts/) need: a real sshd per test
# host, nftables for partitions, iproute2 for network namespaces, python3-venv
# (hosts build their virtualenv with Debian's python3); and redis-server (the GCS's
# external store is tested against a real one on loopback). Idempotent: installs
# only what is missing, and runs `apt-get update` at most once. Apt must not start
# sshd or redis as a service (tests run their own, on ports they pick); on machines
# without a policy-rc.d that denies it, a service may start on :22 or :6379, which
# the tests never assume free.
set -euo pipefail

need=()
have() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
for pkg in openssh-server openssh-client nftables iproute2 python3-venv redis-server; do
    have "$pkg" || need+=("$pkg")
done
if [ ${#need[@]} -eq 0 ]; then
    echo "bootstrap-hosts: all packages present"
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    echo "bootstrap-hosts: missing ${need[*]} and not root; host-tier tests will skip" >&2
    exit 0
fi
echo "bootstrap-hosts: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
