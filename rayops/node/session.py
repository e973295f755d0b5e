"""Session directories: where one node's files live.

Layout (``temp_dir`` defaults to /tmp/rayops-sessions; ``--temp-dir`` keeps a node's
files apart so several nodes can share a machine)::

    <temp_dir>/session_<date>_<pid>/
        cluster_token       the cluster token, mode 0600 (the head makes it)
        node.json           addresses and pids of this node's daemons
        logs/               gcs.log, raylet.log, worker-<id>.log
        spill/              spilled objects
    <temp_dir>/session_latest -> session_<...>

Shared memory for the object store lives at /dev/shm/rayops-<session>-<node>. A clean
shutdown removes it and spill/; what a killed session leaves there is removed by the next
``init()`` / ``rayops start`` under the same temp dir (``reclaim.py``). Logs are kept.
"""

from __future__ import annotations

import datetime
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from typing import Any

# A hyphenated name: a script run from /tmp can never import it as a package.
DEFAULT_TEMP_DIR = "/tmp/rayops-sessions"
SHM_ROOT = "/dev/shm"
NODE_FILE = "node.json"
TOKEN_FILE = "cluster_token"
_SHM_PREFIX = "rayops-"


@dataclass
class NodeRecord:
    """What node.json holds: enough for ``rayops stop/status`` and ``init("auto")``."""

    session_dir: str
    temp_dir: str
    node_id: str
    node_ip: str
    gcs_address: str
    raylet_port: int
    shm_dir: str
    is_head: bool
    dashboard_url: str = ""  # HOST:PORT of the head's API server; "" without one
    pids: dict[str, int] = field(default_factory=dict)
    started_by_pid: int = 0
    detached: bool = False

    def save(self) -> None:
        path = os.path.join(self.session_dir, NODE_FILE)
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(asdict(self), f, indent=2)
        os.replace(tmp, path)

    @staticmethod
    def load(session_dir: str) -> NodeRecord:
        path = os.path.join(session_dir, NODE_FILE)
        with open(path) as f:
            data: dict[str, Any] = json.load(f)
        return NodeRecord(**data)


def worker_log_name(worker_id: bytes) -> str:
    """The file in ``logs/`` that a worker's fds 1 and 2 go to (its id's first 12 hex digits)."""
    return f"worker-{worker_id.hex()[:12]}.log"


def new_session_dir(temp_dir: str) -> str:
    os.makedirs(temp_dir, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y-%m-%d_%H-%M-%S_%f")
    path = os.path.join(temp_dir, f"session_{stamp}_{os.getpid()}")
    os.makedirs(os.path.join(path, "logs"))
    os.makedirs(os.path.join(path, "spill"))
    return path


def link_latest(temp_dir: str, session_dir: str) -> None:
    """Point session_latest at ``session_dir`` atomically."""
    link = os.path.join(temp_dir, "session_latest")
    fd, tmp = tempfile.mkstemp(prefix=".session_latest.", dir=temp_dir)
    os.close(fd)
    os.unlink(tmp)
    os.symlink(os.path.basename(session_dir), tmp)
    os.replace(tmp, link)


def latest_session(temp_dir: str) -> str | None:
    link = os.path.join(temp_dir, "session_latest")
    if not os.path.exists(link):
        return None
    return os.path.realpath(link)


def shm_dir_for(session_dir: str, node_id: str) -> str:
    """The node's shared-memory directory: ``/dev/shm/rayops-<session>-<node id[:8]>``."""
    return os.path.join(SHM_ROOT, f"{_SHM_PREFIX}{os.path.basename(session_dir)}-{node_id[:8]}")


def session_of_shm_dir(name: str) -> str | None:
    """The session name in a shared-memory directory name, None if it is not one of ours.

    ``rayops-session_2026-01-01_00-00-00_123456_42-abcd1234`` -> ``session_2026-..._42``
    (``shm_dir_for`` makes these names: the session basename, a dash, 8 hex digits).
    """
    if not name.startswith(_SHM_PREFIX + "session_"):
        return None
    session, dash, node = name[len(_SHM_PREFIX) :].rpartition("-")
    if not dash or not session.startswith("session_") or len(node) != 8:
        return None
    try:
        int(node, 16)
    except ValueError:
        return None
    return session
