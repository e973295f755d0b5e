"""The wheelhouse: rayops and every runtime dependency as wheels, made on the launching machine.

Hosts install with ``pip --no-index --find-links`` from a copy of this directory, so they never
need a package index (air-gapped clusters, and the test hosts, have none). Where the wheels
come from:

* rayops: the running rayops, repacked from its installed distribution (``source: project``
  with a regular install); built from the source tree when rayops runs from one (a checkout or
  an editable install) or when ``rayops.install.path`` names one; or a given ``.whl``.
* its dependencies (``Requires-Dist`` followed recursively, markers evaluated for the hosts'
  Python, no extras of rayops) and ``rayops.install.extra_packages``: the distributions
  installed here, repacked (``repack.py``), so the nodes run exactly the versions the launcher
  runs. Hosts with another Python get the pure-Python ones repacked too and the others
  downloaded for their Python at the same versions (``pip download``); a requirement nothing
  installed here satisfies is downloaded the same way.

A wheelhouse is built once per (source digest, host Python version and machine) and cached
under ``<cache>/wheelhouse/<digest>/``. The digest covers rayops's own files and the name and
version of every distribution it installs, so an upgrade of a dependency here makes a new one.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
import tempfile
import tomllib
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from packaging.utils import canonicalize_name

from rayops.launcher import repack
from rayops.launcher.desired import digest, tree_digest
from rayops.launcher.errors import LauncherError
from rayops.launcher.spec import ClusterSpec

REQUIREMENTS_FILE = "requirements.txt"  # inside a wheelhouse: what hosts install
ARCHIVE = "wheelhouse.tar"  # the wheels and requirements.txt in one file, as shipped
# The ``launcher`` extra, installed on a head that runs the SSH pool's autoscaler.
LAUNCHER_PACKAGES = ("ansible-core", "fabric", "paramiko", "packaging")
_PROJECT_FILES = ("pyproject.toml", "README.md", "LICENSE", "setup.cfg", "MANIFEST.in")


@dataclass(frozen=True)
class RuntimeSource:
    """What gets installed on the hosts."""

    kind: str  # "project" (a source tree), "wheel" (a .whl file), "installed" (repack this one)
    path: Path  # the source tree, the .whl file, or the installed package directory
    requires: tuple[str, ...]  # rayops's Requires-Dist (its extras are left out when resolved)
    extra: tuple[str, ...]  # rayops.install.extra_packages

    def digest(self) -> str:
        if self.kind == "wheel":
            own = tree_digest(self.path)
        elif self.kind == "installed":
            dist = metadata.distribution("rayops")
            own = digest([dist.version, dist.read_text("RECORD") or ""])
        else:
            own = digest(
                [tree_digest(self.path / "rayops")]
                + [tree_digest(self.path / f) for f in _PROJECT_FILES if (self.path / f).exists()]
            )
        resolved = repack.resolve_installed(
            [*self.requires, *self.extra], repack.marker_environment()
        )
        return digest([self.kind, own, resolved.pins(), list(resolved.unsatisfied),
                       list(self.extra)])  # fmt: skip


def runtime_source(spec: ClusterSpec) -> RuntimeSource:
    """Where the hosts' rayops comes from, per the spec's ``rayops.install``."""
    inst = spec.rayops.install
    extra = tuple(inst.extra_packages)
    from rayops.providers.local import autoscaling_enabled

    if autoscaling_enabled(spec) and spec.provider.type == "local":
        # The head provisions pool hosts itself: it needs the launcher's own packages.
        extra += tuple(p for p in LAUNCHER_PACKAGES if p not in extra)
    if inst.source == "wheel":
        assert inst.path is not None  # checked when the spec was loaded
        whl = spec.local_path(inst.path)
        return RuntimeSource("wheel", whl, _wheel_requires(whl), extra)
    if inst.path:
        root = spec.local_path(inst.path)
        if not (root / "pyproject.toml").is_file():
            raise LauncherError(
                f"rayops.install.path: {root} is not a rayops source tree (no pyproject.toml); "
                "name one, or use source: wheel with a .whl file"
            )
        return RuntimeSource("project", root, _project_requires(root), extra)
    return running_source(extra)


def running_source(extra: tuple[str, ...] = ()) -> RuntimeSource:
    """The rayops this launcher runs: its source tree if it runs from one, else its install."""
    import rayops

    pkg = Path(rayops.__file__).resolve().parent
    if _is_source_tree(pkg.parent):
        return RuntimeSource("project", pkg.parent, _project_requires(pkg.parent), extra)
    try:
        dist = metadata.distribution("rayops")
    except metadata.PackageNotFoundError:
        dist = None
    located = Path(str(dist.locate_file("rayops/__init__.py"))).resolve() if dist else None
    if dist is None or located != pkg / "__init__.py":
        raise LauncherError(
            f"the rayops package at {pkg} has no installed distribution (no rayops .dist-info "
            "beside it): install rayops with pip, or set rayops.install.source: wheel with "
            "path: a rayops .whl file"
        )
    return RuntimeSource("installed", pkg, tuple(dist.requires or ()), extra)


def _is_source_tree(root: Path) -> bool:
    try:
        project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    except (OSError, tomllib.TOMLDecodeError, KeyError):
        return False
    return bool(project.get("name") == "rayops")


def _project_requires(root: Path) -> tuple[str, ...]:
    try:
        project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
        return tuple(project.get("dependencies", ()))
    except (OSError, tomllib.TOMLDecodeError, KeyError) as err:
        raise LauncherError(f"{root}/pyproject.toml: cannot read [project]: {err}") from err


def _wheel_requires(whl: Path) -> tuple[str, ...]:
    """The wheel's ``Requires-Dist`` lines (those of its extras are dropped when resolving)."""
    import email.parser

    try:
        with zipfile.ZipFile(whl) as zf:
            name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
            text = zf.read(name).decode()
    except (OSError, zipfile.BadZipFile, StopIteration) as err:
        raise LauncherError(f"rayops.install.path: {whl} is not a readable wheel: {err}") from err
    return tuple(email.parser.Parser().parsestr(text).get_all("Requires-Dist") or [])


# Bumped when what a wheelhouse holds changes for the same source digest (2: pip's wheel, for
# the nodes' venvs made without ensurepip), so an old cached one is never reused.
WHEELHOUSE_FORMAT = "2"


def wheelhouse_key(source_digest: str, python_tag: str) -> str:
    return digest([source_digest, python_tag, WHEELHOUSE_FORMAT])


def controller_tag() -> str:
    return f"{sys.version_info.major}.{sys.version_info.minor}-{platform.machine()}"


def build_wheelhouse(
    source: RuntimeSource, source_digest: str, python_tag: str, cache_dir: Path
) -> Path:
    """The wheelhouse for hosts of ``python_tag`` (``3.11-x86_64``), built if not cached."""
    final = cache_dir / "wheelhouse" / wheelhouse_key(source_digest, python_tag)
    if (final / ARCHIVE).is_file():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".build-", dir=final.parent))
    try:
        out = work / "wheels"
        out.mkdir()
        rayops_wheel = _rayops_wheel(source, work, out)
        pins = _dependency_wheels(source, python_tag, work, out)
        pins += _pip_wheel(pins, python_tag, out)
        version = rayops_wheel.name.split("-")[1]
        lines = [f"rayops=={version}", *pins]
        (out / REQUIREMENTS_FILE).write_text("\n".join(lines) + "\n")
        _write_tar(out, work / "wheelhouse.tar")
        os.replace(work / "wheelhouse.tar", out / ARCHIVE)
        try:
            out.rename(final)
        except OSError:
            if not (final / ARCHIVE).is_file():  # not a concurrent build: a real error
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return final


def _write_tar(src: Path, dest: Path) -> None:
    """One uncompressed archive of the wheels (already compressed): a single file to copy,
    byte-identical for the same wheels, so an unchanged wheelhouse is never sent twice."""
    import tarfile

    with tarfile.open(dest, "w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(src.iterdir()):
            info = tar.gettarinfo(str(path), arcname=path.name)
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            with open(path, "rb") as f:
                tar.addfile(info, f)


def _pip(args: list[str], what: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "pip", *args], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-20:])
        raise LauncherError(
            f"building the wheelhouse failed while {what} "
            f"(pip exit code {proc.returncode}):\n{tail}"
        )


def _rayops_wheel(source: RuntimeSource, work: Path, out: Path) -> Path:
    if source.kind == "wheel":
        target = out / source.path.name
        shutil.copy2(source.path, target)
        return target
    if source.kind == "installed":
        return repack.repack(metadata.distribution("rayops"), out)
    # Build from a copy so the source tree gets no build/ or egg-info litter.
    staging = work / "src"
    staging.mkdir()
    for name in _PROJECT_FILES:
        if (source.path / name).exists():
            shutil.copy2(source.path / name, staging / name)
    shutil.copytree(
        source.path / "rayops",
        staging / "rayops",
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info"),
    )
    args = ["wheel", "--no-deps", "-q", "-w", str(out), str(staging)]
    try:
        _pip([*args[:2], "--no-build-isolation", *args[2:]], "building the rayops wheel")
    except LauncherError:
        _pip(args, "building the rayops wheel")  # setuptools missing here: isolated build
    wheels = sorted(out.glob("rayops-*.whl"))
    if not wheels:
        raise LauncherError(f"pip built no rayops wheel from {source.path}")
    return wheels[0]


def _dependency_wheels(source: RuntimeSource, python_tag: str, work: Path, out: Path) -> list[str]:
    """Put every dependency's wheel into ``out``; return the requirement lines for the hosts."""
    same = python_tag == controller_tag()
    version, _, machine = python_tag.partition("-")
    resolved = repack.resolve_installed(
        [*source.requires, *source.extra], repack.marker_environment(version, machine)
    )
    fetch: list[str] = list(resolved.unsatisfied)
    cannot: dict[str, str] = {}
    todo = []
    for name, dist in sorted(resolved.installed.items()):
        why = repack.repackable(dist)
        if why is None and (same or repack.fits(dist, version, machine)):
            todo.append(dist)
        else:
            fetch.append(f"{dist.metadata['Name']}=={dist.version}")
            cannot[name] = why or f"built for Python {controller_tag()} only"
    # Repacking is mostly deflate and sha256, which release the GIL: a few threads use every
    # core (the biggest first, so one large wheel does not finish last alone).
    todo.sort(key=_installed_size, reverse=True)
    with ThreadPoolExecutor(min(4, os.cpu_count() or 1), thread_name_prefix="rayops-repack") as ex:
        list(ex.map(lambda d: repack.repack(d, out), todo))
    if fetch:
        _fetch_wheels(fetch, resolved, python_tag, work, out, cannot)
    return [*resolved.pins(), *resolved.unsatisfied]


def _installed_size(dist: metadata.Distribution) -> int:
    total = 0
    for f in dist.files or []:
        try:
            total += Path(str(dist.locate_file(f))).stat().st_size
        except OSError:
            pass
    return total


def _pip_wheel(pins: list[str], python_tag: str, out: Path) -> list[str]:
    """pip's own wheel (this machine's pip, repacked), for the nodes' venvs: install-node.sh
    makes them without ensurepip (seconds of unpacking and compiling) and installs pip from
    here, so setup commands can still ``pip install`` into the venv. Empty when pip is already
    pinned or is not a repackable install here (install-node.sh then runs ensurepip)."""
    if any(_name(p) == "pip" for p in pins):
        return []
    try:
        dist = metadata.distribution("pip")
    except metadata.PackageNotFoundError:
        return []
    version, _, machine = python_tag.partition("-")
    if repack.repackable(dist) is not None or not repack.fits(dist, version, machine):
        return []
    repack.repack(dist, out)
    return [f"pip=={dist.version}"]


def _fetch_wheels(
    reqs: list[str],
    resolved: repack.Resolved,
    python_tag: str,
    work: Path,
    out: Path,
    cannot: dict[str, str],
) -> None:
    """``pip download`` (or ``pip wheel`` for this machine's Python) what could not be repacked,
    the installed versions as constraints."""
    constraints = work / "constraints.txt"
    constraints.write_text("".join(f"{p}\n" for p in resolved.pins()))
    version, _, machine = python_tag.partition("-")
    if python_tag == controller_tag():
        args = ["wheel", "-q", "-w", str(out), "-c", str(constraints), *reqs]
    else:
        abi = "cp" + version.replace(".", "")
        args = ["download", "-q", "-d", str(out), "--only-binary=:all:", "-c", str(constraints),
                "--python-version", version, "--implementation", "cp",
                "--abi", abi, "--abi", "abi3", "--abi", "none"]  # fmt: skip
        for plat in (f"manylinux2014_{machine}", f"manylinux_2_17_{machine}",
                     f"manylinux_2_28_{machine}", f"linux_{machine}"):  # fmt: skip
            args += ["--platform", plat]
        args += reqs
    why = [f"  {r}: {resolved.reasons.get(r) or cannot.get(_name(r), '')}" for r in reqs]
    try:
        _pip(args, f"fetching wheels for Python {python_tag}")
    except LauncherError as err:
        raise LauncherError(
            f"the hosts with Python {python_tag} need wheels this machine (Python "
            f"{controller_tag()}) cannot take from its own install:\n"
            + "\n".join(why)
            + f"\nand fetching them from a package index failed: {err}\n"
            f"Give those hosts Python {controller_tag().split('-')[0]} (rayops.python names "
            f"the interpreter used on the hosts), run `rayops up` from a machine with Python "
            f"{version}, or make a package index reachable from this machine"
            + (" (and install what is listed above here)" if resolved.unsatisfied else "")
        ) from None


def _name(req: str) -> str:
    return canonicalize_name(req.split("==", 1)[0])


def wheel_names(wheelhouse: Path) -> list[str]:
    return sorted(p.name for p in wheelhouse.glob("*.whl"))


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/rayops`` or ``~/.cache/rayops`` (read once, at the CLI edge)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(base) / "rayops"
