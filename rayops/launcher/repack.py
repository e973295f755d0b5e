"""Installed distributions back into wheels: how hosts get rayops without a package index.

``resolve_installed`` walks ``Requires-Dist`` from a list of requirements through the
distributions installed here (markers evaluated for the hosts' Python, requested extras
followed, the ``launcher``/``test`` extras of rayops never) and says which installed
distribution satisfies each, and which requirement nothing installed satisfies.

``repack`` writes one installed distribution as a wheel: the files its ``RECORD`` lists (byte
code and the installer's own files left out), scripts given back their ``#!python`` line,
console-script wrappers left to the installer (they come from ``entry_points.txt``), a fresh
``RECORD`` with sha256 hashes, the tags of its ``WHEEL`` file in the name, fixed timestamps
(the same install repacks to the same bytes). ``pip install --no-index --find-links``
installs it like the wheel it came from.
"""

from __future__ import annotations

import base64
import email.parser
import hashlib
import json
import os
import re
import sys
import sysconfig
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path, PurePosixPath

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from rayops.launcher.errors import LauncherError

# Files of an installed .dist-info that belong to the install, not to the wheel.
_INSTALLER_FILES = {"RECORD", "INSTALLER", "REQUESTED", "direct_url.json", "RECORD.jws",
                    "RECORD.p7s"}  # fmt: skip
_EPOCH = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class Resolved:
    """What the installed distributions give for a set of requirements."""

    installed: Mapping[str, metadata.Distribution]  # canonical name -> distribution
    unsatisfied: tuple[str, ...] = ()  # requirements nothing installed here satisfies
    reasons: Mapping[str, str] = field(default_factory=dict)  # requirement -> why

    def pins(self) -> list[str]:
        return [f"{d.metadata['Name']}=={d.version}" for _, d in sorted(self.installed.items())]


def marker_environment(
    python_version: str | None = None, machine: str | None = None
) -> dict[str, str]:
    """This machine's marker environment, for hosts running ``python_version`` (``3.12``)
    on ``machine`` (``aarch64``) when given."""
    env = {k: str(v) for k, v in default_environment().items()}
    if python_version and python_version != env["python_version"]:
        env["python_version"] = python_version
        env["python_full_version"] = f"{python_version}.0"
        env["implementation_version"] = f"{python_version}.0"
    if machine:
        env["platform_machine"] = machine
    return env


def resolve_installed(requirements: Iterable[str], env: Mapping[str, str]) -> Resolved:
    """The closure of ``requirements`` over the installed distributions (breadth first)."""
    installed: dict[str, metadata.Distribution] = {}
    unsatisfied: list[str] = []
    reasons: dict[str, str] = {}
    queue = [(Requirement(r), frozenset[str]()) for r in requirements]
    seen: set[tuple[str, frozenset[str]]] = set()
    while queue:
        req, parent_extras = queue.pop(0)
        if req.marker is not None and not any(
            req.marker.evaluate({**env, "extra": e}) for e in ("", *sorted(parent_extras))
        ):
            continue
        name = canonicalize_name(req.name)
        try:
            dist = installed.get(name) or metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            unsatisfied.append(str(req))
            reasons[str(req)] = "not installed"
            continue
        if not req.specifier.contains(dist.version, prereleases=True):
            unsatisfied.append(str(req))
            reasons[str(req)] = f"{dist.version} is installed"
            continue
        installed[name] = dist
        key = (name, frozenset(req.extras))
        if key in seen:
            continue
        seen.add(key)
        for dep in dist.requires or []:
            queue.append((Requirement(dep), frozenset(req.extras)))
    return Resolved(installed, tuple(dict.fromkeys(unsatisfied)), reasons)


def wheel_tags(dist: metadata.Distribution) -> list[str]:
    """The ``Tag:`` lines of the distribution's WHEEL file (``[]`` if it has none)."""
    text = dist.read_text("WHEEL")
    if not text:
        return []
    return list(email.parser.Parser().parsestr(text).get_all("Tag") or [])


def is_pure(dist: metadata.Distribution) -> bool:
    """Installable on any Python 3 and machine (``py3-none-any`` and the like)."""
    tags = wheel_tags(dist)
    return bool(tags) and all(t.endswith("-none-any") for t in tags)


def fits(dist: metadata.Distribution, python_version: str, machine: str) -> bool:
    """Whether the installed wheel also installs on CPython ``python_version`` on ``machine``:
    pure, or built for the stable ABI (``cp310-abi3-manylinux..._x86_64``) of an older or the
    same Python on that machine."""
    if is_pure(dist):
        return True
    major, _, minor = python_version.partition(".")
    for tag in wheel_tags(dist):
        py, abi, plat = tag.split("-")
        m = re.fullmatch(r"cp(\d)(\d+)", py)
        if (abi == "abi3" and m is not None and plat.endswith("_" + machine)
                and (m.group(1), int(m.group(2))) <= (major, int(minor or 0))):  # fmt: skip
            return True
    return False


def repackable(dist: metadata.Distribution) -> str | None:
    """None if ``repack`` can rebuild the distribution's wheel, else why not."""
    if not dist.read_text("RECORD") or not dist.files:
        return "installed without a RECORD (not by pip, e.g. by the system's package manager)"
    if not wheel_tags(dist):
        return "installed without a WHEEL file (an egg or a legacy install)"
    direct = dist.read_text("direct_url.json")
    if direct and json.loads(direct).get("dir_info", {}).get("editable"):
        return "an editable install"
    return None


def wheel_name(dist: metadata.Distribution) -> str:
    """``name-version-py-abi-plat.whl`` (components of several tags joined with ``.``)."""
    name = re.sub(r"[-_.]+", "_", str(dist.metadata["Name"])).lower()
    version = str(dist.version).replace("-", "_")
    parts: list[dict[str, None]] = [{}, {}, {}]
    for tag in wheel_tags(dist):
        for i, piece in enumerate(tag.split("-")):
            parts[i][piece] = None
    tag = "-".join(".".join(sorted(p)) for p in parts)
    return f"{name}-{version}-{tag}.whl"


def repack(dist: metadata.Distribution, out_dir: Path) -> Path:
    """Write ``dist`` as a wheel into ``out_dir``; return its path."""
    why = repackable(dist)
    if why is not None:
        raise LauncherError(f"{dist.metadata['Name']} {dist.version} cannot be repacked: {why}")
    entries = _entries(dist)
    dist_info = _dist_info_dir(dist)
    data_dir = dist_info[: -len(".dist-info")] + ".data"
    target = out_dir / wheel_name(dist)
    tmp = target.with_name(f".{target.name}.tmp")
    record: list[str] = []
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        # .dist-info last (the wheel spec's recommendation), RECORD the very last entry.
        ordered = sorted(entries, key=lambda e: (e[0].startswith(dist_info + "/"), e[0]))
        for arcname, path in ordered:
            if arcname.startswith(data_dir + "/scripts/"):
                content = _unbind_script(path.read_bytes())
            else:
                content = path.read_bytes()
            info = zipfile.ZipInfo(arcname, date_time=_EPOCH)
            info.external_attr = ((path.stat().st_mode & 0o777) | 0o100000) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, content)
            record.append(f"{arcname},sha256={_b64_sha256(content)},{len(content)}")
        record_name = f"{dist_info}/RECORD"
        record.append(f"{record_name},,")
        info = zipfile.ZipInfo(record_name, date_time=_EPOCH)
        info.external_attr = 0o100644 << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        zf.writestr(info, "\n".join(record) + "\n")
    os.replace(tmp, target)
    return target


def _b64_sha256(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def _dist_info_dir(dist: metadata.Distribution) -> str:
    for f in dist.files or []:
        if f.name == "METADATA" and f.parent.name.endswith(".dist-info"):
            return str(PurePosixPath(f.parent))
    raise LauncherError(f"{dist.metadata['Name']}: no .dist-info/METADATA in its RECORD")


def _entries(dist: metadata.Distribution) -> list[tuple[str, Path]]:
    """(name in the wheel, file here) for every file of the distribution's wheel."""
    name = dist.metadata["Name"]
    dist_info = _dist_info_dir(dist)
    data_dir = dist_info[: -len(".dist-info")] + ".data"
    site = Path(str(dist.locate_file(""))).resolve()
    scripts = {str(s) for s in _entry_point_scripts(dist)}
    roots = _install_roots()
    out: list[tuple[str, Path]] = []
    for f in dist.files or []:
        rel = str(PurePosixPath(f))
        if f.suffix in (".pyc", ".pyo") or "__pycache__" in f.parts:
            continue
        if rel.startswith(dist_info + "/") and f.name in _INSTALLER_FILES:
            continue
        path = Path(os.path.normpath(site / rel))
        if not path.is_file():
            raise LauncherError(
                f"{name} {dist.version} cannot be repacked: its RECORD lists {rel}, which is "
                f"missing from {site}; reinstall it (pip install --force-reinstall {name})"
            )
        if not rel.startswith("../"):
            out.append((rel, path))
            continue
        arc = _data_name(path, roots, scripts)
        if arc is None:
            continue  # a console-script wrapper: the installer writes its own
        if arc == "":
            raise LauncherError(
                f"{name} {dist.version} cannot be repacked: {path} is outside every install "
                "directory of this environment"
            )
        out.append((f"{data_dir}/{arc}", path))
    return out


def _install_roots() -> list[tuple[str, Path]]:
    paths = sysconfig.get_paths()
    roots = [(k, Path(paths[k]).resolve()) for k in ("scripts", "include") if k in paths]
    return [*roots, ("data", Path(paths.get("data", sys.prefix)).resolve())]


def _data_name(path: Path, roots: list[tuple[str, Path]], scripts: set[str]) -> str | None:
    """``scripts/x``, ``headers/x`` or ``data/share/x`` for a file installed outside
    site-packages; None for a generated console script; "" when it fits nowhere."""
    for kind, root in roots:
        if path.is_relative_to(root):
            rel = path.relative_to(root).as_posix()
            if kind == "scripts":
                return None if path.name in scripts else f"scripts/{rel}"
            if kind == "include":
                return f"headers/{path.name}"
            return f"data/{rel}"
    return ""


def _entry_point_scripts(dist: metadata.Distribution) -> list[str]:
    return [ep.name for ep in dist.entry_points if ep.group in ("console_scripts", "gui_scripts")]


def _unbind_script(content: bytes) -> bytes:
    """Give an installed script back its ``#!python`` line (the installer rewrites it)."""
    first, nl, rest = content.partition(b"\n")
    if first.startswith(b"#!") and b"python" in first:
        return b"#!python" + nl + rest
    return content
