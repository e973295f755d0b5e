"""The launcher's own assets: ``playbooks/`` (Ansible) and ``runtime/`` (node-side scripts and
templates), shipped inside the wheel as package data of ``rayops._assets``.

``launcher_assets()`` gives a real directory holding both, as Ansible needs filesystem paths:
the installed package directory itself (a regular or editable install), or for an import from
an archive (a zipped wheel on ``sys.path``) a temporary copy that lives as long as the block.
"""

from __future__ import annotations

import importlib.resources
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.resources.abc import Traversable
from pathlib import Path

from rayops.launcher.errors import LauncherError

ASSETS_PACKAGE = "rayops._assets"
_REQUIRED = ("playbooks/site.yml", "runtime/install-node.sh")


@contextmanager
def launcher_assets() -> Iterator[Path]:
    """A directory with ``playbooks/`` and ``runtime/``, valid until the block ends."""
    root = importlib.resources.files(ASSETS_PACKAGE)
    if isinstance(root, Path):
        _check(root, root)
        yield root
        return
    with tempfile.TemporaryDirectory(prefix="rayops-assets-") as tmp:
        dest = Path(tmp)
        for name in ("playbooks", "runtime"):
            _copy_tree(root / name, dest / name)
        _check(dest, root)
        yield dest


def _check(path: Path, origin: Traversable) -> None:
    missing = [rel for rel in _REQUIRED if not (path / rel).is_file()]
    if missing:
        raise LauncherError(
            f"this rayops install is incomplete: {', '.join(missing)} missing from the "
            f"package data at {origin}; reinstall it with pip install --force-reinstall "
            "'rayops[launcher]'"
        )


def _copy_tree(src: Traversable, dest: Path) -> None:
    if not src.is_dir():
        return
    dest.mkdir(parents=True, exist_ok=True)
    for item in src.iterdir():
        if item.name == "__pycache__":
            continue
        if item.is_dir():
            _copy_tree(item, dest / item.name)
        else:
            with item.open("rb") as fsrc, open(dest / item.name, "wb") as fdst:
                shutil.copyfileobj(fsrc, fdst)
