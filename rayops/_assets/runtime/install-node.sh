#!/bin/sh
# Install (or update) the rayops runtime on this node, from a wheelhouse only.
#
#   install-node.sh INSTALL_DIR PYTHON [KEY]
#
# Unpacks INSTALL_DIR/wheelhouse.tar into INSTALL_DIR/wheelhouse/, creates
# INSTALL_DIR/venv with PYTHON if it is missing, then installs what
# wheelhouse/requirements.txt lists (every version pinned, resolved by the launcher),
# with no package index at all: air-gapped hosts work, and nothing on the host decides
# versions. The rayops wheel is always reinstalled, so a rebuilt wheel with an unchanged
# version still replaces the old code. On success, KEY (the launcher's digest of what was
# installed) goes to INSTALL_DIR/state/install.key. Idempotent.
#
# The installer is uv, taken from the wheelhouse itself (rayops depends on uv, so its wheel,
# built for this host's machine, is always there): its binary is unpacked from the wheel and
# installs the pinned wheels in parallel, without compiling bytecode (Python compiles a
# module the first time it is imported, as with uv's default). The venv gets pip from the
# wheelhouse too, for setup commands that run `pip install`. When the uv binary does not run
# here (another libc, say) the install falls back to `python -m venv` + pip, and says so.
# Lines starting with "rayops-note: " are shown by the launcher in its progress output.
set -eu
INSTALL_DIR=$1
PYTHON=$2
KEY=${3:-}
VENV="$INSTALL_DIR/venv"
WHEELS="$INSTALL_DIR/wheelhouse"
# Ignore every pip/uv config file of the host: no index, no extra find-links, no constraints.
PIP_CONFIG_FILE=/dev/null
PIP_NO_INDEX=1
PIP_DISABLE_PIP_VERSION_CHECK=1
UV_NO_CONFIG=1
UV_NO_CACHE=1
UV_OFFLINE=1
UV_PYTHON_DOWNLOADS=never
export PIP_CONFIG_FILE PIP_NO_INDEX PIP_DISABLE_PIP_VERSION_CHECK
export UV_NO_CONFIG UV_NO_CACHE UV_OFFLINE UV_PYTHON_DOWNLOADS
unset UV_INDEX_URL UV_EXTRA_INDEX_URL UV_FIND_LINKS UV_CONSTRAINT UV_OVERRIDE UV_INDEX \
    UV_DEFAULT_INDEX UV_PYTHON UV_SYSTEM_PYTHON UV_COMPILE_BYTECODE VIRTUAL_ENV 2>/dev/null || true

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
T0=$(now)

mkdir -p "$INSTALL_DIR/state" "$INSTALL_DIR/tools"
rm -rf "$WHEELS" && mkdir -p "$WHEELS"
tar -xf "$INSTALL_DIR/wheelhouse.tar" -C "$WHEELS"

# uv's binary, unpacked from the wheelhouse's uv wheel (checked by running it).
# RAYOPS_NODE_INSTALLER=pip (the benchmark's comparison) installs with pip instead.
UV=""
UV_WHY="the wheelhouse has no uv wheel"
case "${RAYOPS_NODE_INSTALLER:-uv}" in
    uv) ;;
    pip) UV_WHY="RAYOPS_NODE_INSTALLER=pip" ;;
    *) echo "rayops: RAYOPS_NODE_INSTALLER must be uv or pip, not '$RAYOPS_NODE_INSTALLER'" >&2
       exit 2 ;;
esac
for whl in "$WHEELS"/uv-*.whl; do
    [ -f "$whl" ] || break
    [ "${RAYOPS_NODE_INSTALLER:-uv}" = uv ] || break
    if UV_WHY=$("$PYTHON" - "$whl" "$INSTALL_DIR/tools/uv" 2>&1 <<'PY'
import os, shutil, sys, zipfile
whl, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(whl) as z:
    names = [n for n in z.namelist() if n.endswith(".data/scripts/uv")]
    if not names:
        sys.exit("no uv binary in " + os.path.basename(whl))
    tmp = dest + ".tmp"
    with z.open(names[0]) as src, open(tmp, "wb") as out:
        shutil.copyfileobj(src, out)
os.chmod(tmp, 0o755)
os.replace(tmp, dest)
PY
    ) && UV_WHY=$("$INSTALL_DIR/tools/uv" --version 2>&1); then
        UV="$INSTALL_DIR/tools/uv"
    fi
done

if [ ! -x "$VENV/bin/python" ]; then
    if [ -n "$UV" ]; then
        set -- --without-pip  # pip comes from the wheelhouse below
    else
        set --
    fi
    if ! "$PYTHON" -m venv "$@" "$VENV" 2>"$INSTALL_DIR/venv-error.log"; then
        cat "$INSTALL_DIR/venv-error.log" >&2
        echo "rayops: '$PYTHON -m venv' failed on $(hostname): install the venv module" \
             "(Debian/Ubuntu: apt-get install -y python3-venv, e.g. in initialization_commands)" >&2
        rm -rf "$VENV"
        exit 3
    fi
fi
T_VENV=$(since "$T0")
T1=$(now)
if [ -n "$UV" ]; then
    "$UV" pip install --quiet --python "$VENV/bin/python" --no-index --find-links "$WHEELS" \
        --reinstall-package rayops -r "$WHEELS/requirements.txt"
    if [ ! -x "$VENV/bin/pip" ]; then  # a wheelhouse made without pip's wheel
        "$VENV/bin/python" -m ensurepip --default-pip >/dev/null
    fi
    HOW="uv $("$UV" --version | cut -d' ' -f2)"
else
    echo "rayops-note: installing with pip (slower): uv from the wheelhouse does not run" \
         "on $(hostname): $(printf '%s' "$UV_WHY" | tail -n 1)"
    "$VENV/bin/python" -m pip install --quiet --no-index --find-links "$WHEELS" \
        -r "$WHEELS/requirements.txt"
    set -- "$WHEELS"/rayops-*.whl
    "$VENV/bin/python" -m pip install --quiet --no-index --no-deps --force-reinstall "$1"
    HOW="pip"
fi
T_INSTALL=$(since "$T1")
T2=$(now)
"$VENV/bin/rayops" --help >/dev/null
(cd / && "$VENV/bin/python" -c 'import rayops, rayops.version as v; print("rayops", v.__version__, "installed in", rayops.__file__)')
echo "rayops-note: unpack + venv $T_VENV s, install ($HOW) $T_INSTALL s, check $(since "$T2") s"
if [ -n "$KEY" ]; then
    printf '%s\n' "$KEY" > "$INSTALL_DIR/state/install.key"
fi
