"""Packages of a runtime_env: a ``working_dir`` or ``py_modules`` entry zipped on the driver.

A directory is zipped deterministically (entries sorted, fixed timestamps and modes), so the
same content gives the same bytes and the same URI, ``gcs://_ray_pkg_<hash>.zip`` as in Ray;
the hash covers the bytes and how the package unpacks. ``excludes`` (gitignore-style
patterns, relative to the directory) and every ``.gitignore`` file inside it are honoured.
A package is uploaded once to the GCS's package store (the internal KV, namespace
``PACKAGE_NAMESPACE``): ``CHUNK_BYTES`` chunks first, then its metadata, so a reader never
sees a partly uploaded package as complete. A package over ``MAX_PACKAGE_BYTES`` (Ray's 500
MiB) raises before anything is uploaded, naming the biggest files.

What a node does with a package is ``node_cache.py``'s. No process-global state: callers keep
their own cache of uploaded paths.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import stat
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from rayops.envs.spec import PKG_URI_PREFIX

PACKAGE_NAMESPACE = "runtime_env_packages"
CHUNK_BYTES = 4 * 1024 * 1024
MAX_PACKAGE_BYTES = 500 * 1024 * 1024  # Ray's limit on an uploaded package
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


class PackageTooLarge(ValueError):
    """A working_dir or py_modules entry is over the size limit."""


@dataclass(frozen=True)
class Package:
    """A package ready to upload: its URI, bytes, and how it unpacks (``strip_top``: use the
    archive's single top-level directory, as Ray does with a user's .zip working_dir)."""

    uri: str
    data: bytes
    strip_top: bool


# --------------------------------------------------------------------- gitignore patterns
@dataclass(frozen=True)
class _Rule:
    regex: re.Pattern[str]
    negate: bool
    dir_only: bool


def _glob_to_regex(pattern: str) -> str:
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("/**", i) and i + 3 == len(pattern):
            out.append("/.*")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[":
            end = pattern.find("]", i + 1)
            if end == -1:
                out.append(re.escape(c))
                i += 1
            else:
                body = pattern[i + 1 : end].replace("\\", "\\\\")
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append(f"[{body}]")
                i = end + 1
        elif c == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
        else:
            out.append(re.escape(c))
            i += 1
    return "".join(out)


def parse_rules(lines: Iterable[str]) -> list[_Rule]:
    """gitignore-style lines to rules (comments and blank lines skipped)."""
    rules = []
    for raw in lines:
        line = raw.rstrip("\n").rstrip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        if negate:
            line = line[1:]
        dir_only = line.endswith("/")
        line = line.rstrip("/")
        if not line:
            continue
        anchored = "/" in line
        line = line.lstrip("/")
        body = _glob_to_regex(line)
        # Unanchored: matches a name at any depth. Anchored: from the rules' directory.
        regex = f"^{body}$" if anchored else f"^(?:.*/)?{body}$"
        rules.append(_Rule(re.compile(regex), negate, dir_only))
    return rules


def _ignored(rel: str, is_dir: bool, scopes: list[tuple[str, list[_Rule]]]) -> bool:
    """Whether ``rel`` (relative to the package root) is excluded; the last matching rule
    wins, scopes in order from the root inward, as in git."""
    verdict = False
    for base, rules in scopes:
        if base and not rel.startswith(base + "/"):
            continue
        sub = rel[len(base) + 1 :] if base else rel
        for rule in rules:
            if rule.dir_only and not is_dir:
                continue
            if rule.regex.match(sub):
                verdict = not rule.negate
    return verdict


def package_files(root: str, excludes: list[str]) -> list[tuple[str, str]]:
    """``(relative path, absolute path)`` of the files a directory's package holds, sorted:
    ``excludes`` and ``.gitignore`` files honoured; an excluded directory is not entered."""
    scopes: list[tuple[str, list[_Rule]]] = [("", parse_rules(excludes))]
    files = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        rel_dir = "" if rel_dir == "." else rel_dir.replace(os.sep, "/")
        gitignore = os.path.join(dirpath, ".gitignore")
        if os.path.isfile(gitignore):
            with open(gitignore, encoding="utf-8", errors="replace") as f:
                scopes = [*scopes, (rel_dir, parse_rules(f))]
        kept = []
        for name in sorted(dirnames):
            rel = f"{rel_dir}/{name}" if rel_dir else name
            if not _ignored(rel, True, scopes):
                kept.append(name)
        dirnames[:] = kept
        for name in sorted(filenames):
            rel = f"{rel_dir}/{name}" if rel_dir else name
            path = os.path.join(dirpath, name)
            if os.path.islink(path) and not os.path.exists(path):
                continue
            if not _ignored(rel, False, scopes):
                files.append((rel, path))
    files.sort()
    return files


# --------------------------------------------------------------------------- zip and hash
def zip_directory(
    root: str, excludes: list[str], *, prefix: str = "", max_bytes: int = MAX_PACKAGE_BYTES
) -> bytes:
    """The directory's deterministic zip (entries under ``prefix``); raises PackageTooLarge
    naming the biggest files when their total passes ``max_bytes``."""
    files = package_files(root, excludes)
    sizes = [(os.path.getsize(path), rel) for rel, path in files]
    total = sum(size for size, _ in sizes)
    if total > max_bytes:
        biggest = sorted(sizes, reverse=True)[:5]
        names = ", ".join(f"{rel} ({size / 2**20:.1f} MiB)" for size, rel in biggest)
        raise PackageTooLarge(
            f"runtime_env package {root!r} holds {total / 2**20:.1f} MiB, over the "
            f"{max_bytes / 2**20:.0f} MiB limit. Biggest files: {names}. Leave them out with "
            "runtime_env['excludes'] or a .gitignore file."
        )
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as zf:
        for rel, path in files:
            info = zipfile.ZipInfo(prefix + rel, date_time=_ZIP_TIME)
            mode = os.stat(path).st_mode
            perm = 0o755 if mode & stat.S_IXUSR else 0o644
            info.external_attr = (stat.S_IFREG | perm) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            with open(path, "rb") as f:
                zf.writestr(info, f.read(), compresslevel=6)
    return buf.getvalue()


def package_uri(data: bytes, strip_top: bool) -> str:
    digest = hashlib.blake2b(b"\1" if strip_top else b"\0", digest_size=8)
    digest.update(data)
    return f"{PKG_URI_PREFIX}{digest.hexdigest()}.zip"


def make_package(
    path: str, *, excludes: list[str], as_module: bool, max_bytes: int = MAX_PACKAGE_BYTES
) -> Package:
    """The package of a local ``working_dir`` (``as_module`` False) or ``py_modules`` entry.

    A directory is zipped: a working_dir's content at the archive's root, a module's under
    its own name (so the unpacked directory goes on ``sys.path``). A .zip or .whl file is
    taken as it is; a working_dir .zip with a single top-level directory unpacks to it.
    """
    if os.path.isdir(path):
        prefix = os.path.basename(path.rstrip("/")) + "/" if as_module else ""
        data = zip_directory(path, excludes, prefix=prefix, max_bytes=max_bytes)
        strip_top = False
    else:
        size = os.path.getsize(path)
        if size > max_bytes:
            raise PackageTooLarge(
                f"runtime_env package {path!r} is {size / 2**20:.1f} MiB, over the "
                f"{max_bytes / 2**20:.0f} MiB limit."
            )
        with open(path, "rb") as f:
            data = f.read()
        strip_top = not as_module
    return Package(package_uri(data, strip_top), data, strip_top)


# ------------------------------------------------------------------------ package store
def meta_key(uri: str) -> bytes:
    return f"{uri}:meta".encode()


def chunk_key(uri: str, index: int) -> bytes:
    return f"{uri}:{index}".encode()


def upload(
    package: Package,
    exists: Callable[[bytes], bool],
    put: Callable[[bytes, bytes], object],
) -> bool:
    """Store ``package`` unless it is there already (``exists``/``put`` act on the GCS KV's
    package namespace); returns whether it was uploaded now."""
    if exists(meta_key(package.uri)):
        return False
    data = package.data
    chunks = max(1, -(-len(data) // CHUNK_BYTES))
    for i in range(chunks):
        put(chunk_key(package.uri, i), data[i * CHUNK_BYTES : (i + 1) * CHUNK_BYTES])
    meta = {"size": len(data), "chunks": chunks, "strip_top": package.strip_top}
    put(meta_key(package.uri), json.dumps(meta).encode())
    return True


def read_meta(raw: bytes) -> tuple[int, int, bool]:
    """(size, chunks, strip_top) from a package's stored metadata."""
    meta = json.loads(raw)
    return int(meta["size"]), int(meta["chunks"]), bool(meta["strip_top"])
