"""Tiny pure-Python wheels written on the spot, for a local wheelhouse that pip and uv install
from with no index (tests and benchmarks of pip/uv runtime_envs never reach the network)."""

from __future__ import annotations

import base64
import hashlib
import os
import zipfile


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"sha256={digest}"


def write_wheel(
    wheelhouse: str,
    name: str,
    version: str,
    files: dict[str, str] | None = None,
    requires: tuple[str, ...] = (),
) -> str:
    """Write ``<name>-<version>-py3-none-any.whl`` into ``wheelhouse`` and return its path.

    ``files`` maps paths inside the wheel to their text; by default a package ``name`` whose
    ``__init__`` sets ``__version__``. ``requires``: its ``Requires-Dist`` lines.
    """
    os.makedirs(wheelhouse, exist_ok=True)
    dist = name.replace("-", "_")
    files = dict(files or {f"{dist}/__init__.py": f"__version__ = {version!r}\n"})
    info = f"{dist}-{version}.dist-info"
    files[f"{info}/METADATA"] = (
        f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
        + "".join(f"Requires-Dist: {r}\n" for r in requires)
    )
    files[f"{info}/WHEEL"] = (
        "Wheel-Version: 1.0\nGenerator: rayops.testing\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    )
    record = [
        f"{path},{_record_hash(text.encode())},{len(text.encode())}" for path, text in files.items()
    ]
    record.append(f"{info}/RECORD,,")
    files[f"{info}/RECORD"] = "\n".join(record) + "\n"
    path = os.path.join(wheelhouse, f"{dist}-{version}-py3-none-any.whl")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for member, text in files.items():
            zf.writestr(member, text)
    return path
