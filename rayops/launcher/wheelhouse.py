"""The wheelhouse: rayops and every dependency as wheels, built on the launching machine.

Hosts install with ``pip --no-index --find-links`` from a copy of this directory, so they never
need a package index (air-gapped clusters, and the test hosts, have none). A wheelhouse is
built once per (runtime source digest, host Python version and machine) and cached under
``<cache>/wheelhouse/<digest>/``; an unchanged source is never rebuilt.

Also owns finding the launcher's own assets (``playbooks/``, ``runtime/``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from rayops.launcher.desired import digest, tree_digest
from rayops.launcher.errors import LauncherError
from rayops.launcher.spec import ClusterSpec

REQUIREMENTS_FILE = "requirements.txt"  # inside a wheelhouse: what hosts install
ARCHIVE = "wheelhouse.tar"  # the wheels and requirements.txt in one file, as shipped
_PROJECT_FILES = ("pyproject.toml", "README.md", "LICENSE", "setup.cfg", "MANIFEST.in")


def asset_root() -> Path:
    """The directory holding ``playbooks/`` and ``runtime/`` for this rayops."""
    import rayops

    pkg = Path(rayops.__file__).resolve().parent
    for root in (pkg / "_assets", pkg.parent):
        if (root / "playbooks" / "site.yml").is_file() and (root / "runtime").is_dir():
            return root
    raise LauncherError(
        f"the launcher's playbooks/ and runtime/ directories were not found next to {pkg}; "
        "run rayops from a source checkout (or an install that ships them)"
    )


@dataclass(frozen=True)
class RuntimeSource:
    """What gets installed on the hosts."""

    kind: str  # "project" or "wheel"
    path: Path  # a source tree with pyproject.toml, or a .whl file
    requirements: Path  # pinned node requirements (runtime/requirements-node.txt)
    extra: tuple[str, ...]

    def digest(self) -> str:
        if self.kind == "wheel":
            tree = tree_digest(self.path)
        else:
            tree = digest(
                [tree_digest(self.path / "rayops")]
                + [tree_digest(self.path / f) for f in _PROJECT_FILES if (self.path / f).exists()]
            )
        return digest([self.kind, tree, self.requirements.read_text(), list(self.extra)])


def runtime_source(spec: ClusterSpec) -> RuntimeSource:
    inst = spec.rayops.install
    requirements = asset_root() / "runtime" / "requirements-node.txt"
    if inst.source == "wheel":
        assert inst.path is not None  # checked when the spec was loaded
        return RuntimeSource(
            "wheel", spec.local_path(inst.path), requirements, tuple(inst.extra_packages)
        )
    if inst.path:
        root = spec.local_path(inst.path)
    else:
        root = asset_root()
        if not (root / "pyproject.toml").is_file():
            raise LauncherError(
                f"rayops.install.source is 'project' but {root} is not a source tree; "
                "set rayops.install.path to one, or use source: wheel with a .whl file"
            )
    return RuntimeSource("project", root, requirements, tuple(inst.extra_packages))


def wheelhouse_key(source_digest: str, python_tag: str) -> str:
    return digest([source_digest, python_tag])


def controller_tag() -> str:
    import platform

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
        _dependency_wheels(source, python_tag, out)
        version = rayops_wheel.name.split("-")[1]
        lines = [f"rayops=={version}", *_requirement_lines(source.requirements), *source.extra]
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


def _requirement_lines(path: Path) -> list[str]:
    out = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            out.append(line)
    return out


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


def _dependency_wheels(source: RuntimeSource, python_tag: str, out: Path) -> None:
    reqs = ["-r", str(source.requirements), *source.extra]
    if python_tag == controller_tag():
        _pip(["wheel", "-q", "-w", str(out), *reqs], "collecting dependency wheels")
        return
    version, _, machine = python_tag.partition("-")
    abi = "cp" + version.replace(".", "")
    platforms = [f"manylinux2014_{machine}", f"manylinux_2_17_{machine}",
                 f"manylinux_2_28_{machine}", f"linux_{machine}"]  # fmt: skip
    args = ["download", "-q", "-d", str(out), "--only-binary=:all:", "--python-version", version,
            "--implementation", "cp", "--abi", abi, "--abi", "abi3", "--abi", "none"]  # fmt: skip
    for p in platforms:
        args += ["--platform", p]
    _pip([*args, *reqs], f"downloading dependency wheels for Python {python_tag}")


def wheel_names(wheelhouse: Path) -> list[str]:
    return sorted(p.name for p in wheelhouse.glob("*.whl"))


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/rayops`` or ``~/.cache/rayops`` (read once, at the CLI edge)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(base) / "rayops"

