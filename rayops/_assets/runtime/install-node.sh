#!/bin/sh
# Install (or update) the rayops runtime on this node, from a wheelhouse only.
#
#   install-node.sh INSTALL_DIR PYTHON [KEY]
#
# Unpacks INSTALL_DIR/wheelhouse.tar into INSTALL_DIR/wheelhouse/, creates
# INSTALL_DIR/venv with PYTHON if it is missing, then installs what
# wheelhouse/requirements.txt lists, with no package index at all:
# air-gapped hosts work, and nothing on the host decides versions. The rayops
# wheel is always reinstalled, so a rebuilt wheel with an unchanged version
# still replaces the old code. On success, KEY (the launcher's digest of what was
# installed) goes to INSTALL_DIR/state/install.key. Idempotent.
set -eu
INSTALL_DIR=$1
PYTHON=$2
KEY=${3:-}
VENV="$INSTALL_DIR/venv"
WHEELS="$INSTALL_DIR/wheelhouse"
# Ignore every pip config file of the host: no index, no extra find-links, no constraints.
PIP_CONFIG_FILE=/dev/null
PIP_NO_INDEX=1
PIP_DISABLE_PIP_VERSION_CHECK=1
export PIP_CONFIG_FILE PIP_NO_INDEX PIP_DISABLE_PIP_VERSION_CHECK

mkdir -p "$INSTALL_DIR/state"
rm -rf "$WHEELS" && mkdir -p "$WHEELS"
tar -xf "$INSTALL_DIR/wheelhouse.tar" -C "$WHEELS"

if [ ! -x "$VENV/bin/python" ]; then
    if ! "$PYTHON" -m venv "$VENV" 2>"$INSTALL_DIR/venv-error.log"; then
        cat "$INSTALL_DIR/venv-error.log" >&2
        echo "rayops: '$PYTHON -m venv' failed on $(hostname): install the venv module" \
             "(Debian/Ubuntu: apt-get install -y python3-venv, e.g. in initialization_commands)" >&2
        rm -rf "$VENV"
        exit 3
    fi
fi
"$VENV/bin/python" -m pip install --quiet --no-index --find-links "$WHEELS" \
    -r "$WHEELS/requirements.txt"
set -- "$WHEELS"/rayops-*.whl
"$VENV/bin/python" -m pip install --quiet --no-index --no-deps --force-reinstall "$1"
"$VENV/bin/rayops" --help >/dev/null
"$VENV/bin/python" -c 'import rayops, rayops.version as v; print("rayops", v.__version__, "installed in", rayops.__file__)'
if [ -n "$KEY" ]; then
    printf '%s\n' "$KEY" > "$INSTALL_DIR/state/install.key"
fi
