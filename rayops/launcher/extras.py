"""The launcher's optional dependencies (the ``launcher`` extra): checked before any work.

``pip install rayops`` gives the runtime; the commands that reach hosts (``down``, ``exec``,
``submit``, ``attach``, ``rsync-up``, ``rsync-down``, ``status CONFIG``) also need fabric and
paramiko, and ``up`` needs ansible-core and packaging besides. Without them each such command
stops at once with one message naming what is missing and the command that installs it.
"""

from __future__ import annotations

import importlib.util
import sys

from rayops.launcher.errors import LauncherError

INSTALL_HINT = "pip install 'rayops[launcher]'"

# importable module -> the distribution that provides it
_SSH = {"fabric": "fabric", "paramiko": "paramiko"}
_UP = {**_SSH, "ansible": "ansible-core", "packaging": "packaging"}
_NEEDS: dict[str, dict[str, str]] = {"up": _UP, "get-head-ip": {}, "get-worker-ips": {}}


def missing_launcher_extras(command: str) -> list[str]:
    """Distributions of the ``launcher`` extra that ``rayops COMMAND`` needs and cannot import."""
    wanted = _NEEDS.get(command, _SSH)
    return [dist for module, dist in wanted.items() if importlib.util.find_spec(module) is None]


def require_launcher_extras(command: str) -> None:
    """Raise a LauncherError saying how to install the launcher extra if a part is missing."""
    missing = missing_launcher_extras(command)
    if missing:
        raise LauncherError(
            f"`rayops {command}` needs the launcher's packages, and {', '.join(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not installed for {sys.executable}; "
            f"install them with: {INSTALL_HINT}"
        )
