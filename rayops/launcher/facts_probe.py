"""The facts probe: a standalone script the launcher pipes into ``python3 -`` on every host.

It must run on the host's own interpreter with nothing but the standard library (rayops may not
be installed yet) and only reads: paths, the installed version, the markers of applied steps,
whether this cluster's daemons are running, and the head's cluster record. It prints one JSON
object. Never imported by rayops itself; ``facts.py`` sends its source text.

Arguments: INSTALL_DIR TEMP_DIR ADDRESS (paths may start with ``~``).
"""

import glob
import hashlib
import json
import os
import platform
import pwd
import shutil
import socket
import sys


def _read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def _alive(pid, session_dir):
    raw = None
    try:
        with open(f"/proc/{int(pid)}/cmdline", "rb") as f:
            raw = f.read()
    except (OSError, ValueError):
        return False
    cmd = raw.replace(b"\0", b" ").decode("utf-8", "replace")
    return "rayops" in cmd and os.path.basename(session_dir) in cmd


def _daemons(temp_dir):
    link = os.path.join(temp_dir, "session_latest")
    if not os.path.exists(link):
        return {}, None, None, None
    session = os.path.realpath(link)
    text = _read(os.path.join(session, "node.json"))
    try:
        rec = json.loads(text) if text else {}
    except ValueError:
        rec = {}
    alive = {}
    for name, pid in (rec.get("pids") or {}).items():
        if _alive(pid, session):
            alive[name] = pid
    token = _read(os.path.join(session, "cluster_token"))
    token_sha = hashlib.sha256(token.strip().encode()).hexdigest()[:16] if token else None
    return alive, session, rec.get("gcs_address"), token_sha


def _installed_version(venv):
    metas = glob.glob(os.path.join(venv, "lib", "python*", "site-packages", "rayops-*.dist-info"))
    for meta in metas:
        text = _read(os.path.join(meta, "METADATA")) or ""
        for line in text.splitlines():
            if line.startswith("Version:"):
                return line.split(":", 1)[1].strip()
    return None


def _applied(state_dir):
    out = {}
    for path in glob.glob(os.path.join(state_dir, "*.key")):
        text = _read(path)
        if text is not None:
            out[os.path.basename(path)[: -len(".key")]] = text.strip()
    return out


def _node_ip(address):
    try:
        return socket.gethostbyname(address)
    except OSError:
        return None


def main(argv):
    install_dir = os.path.expanduser(argv[1])
    temp_dir = os.path.expanduser(argv[2])
    address = argv[3]
    venv = os.path.join(install_dir, "venv")
    daemons, session, gcs_address, token_sha = _daemons(temp_dir)
    record_text = _read(os.path.join(install_dir, "cluster.json"))
    try:
        record = json.loads(record_text) if record_text else None
    except ValueError:
        record = None
    facts = {
        "hostname": socket.gethostname(),
        "user": pwd.getpwuid(os.getuid()).pw_name,
        "home": os.path.expanduser("~"),
        "python": sys.executable,
        "python_version": ".".join(str(v) for v in sys.version_info[:3]),
        "machine": platform.machine(),
        "systemd": os.path.isdir("/run/systemd/system"),
        "rsync": shutil.which("rsync") is not None,
        "install_dir": install_dir,
        "temp_dir": temp_dir,
        "venv_ok": os.access(os.path.join(venv, "bin", "python"), os.X_OK),
        "rayops_version": _installed_version(venv),
        "applied": _applied(os.path.join(install_dir, "state")),
        "daemons": daemons,
        "session_dir": session,
        "gcs_address": gcs_address,
        "token_sha": token_sha,
        "record": record,
        "node_ip": _node_ip(address),
    }
    sys.stdout.write(json.dumps(facts) + "\n")


if __name__ == "__main__":
    main(sys.argv)
