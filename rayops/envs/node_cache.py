"""A node's runtime_env packages: downloaded and unpacked once, shared by every worker.

``PackageCache.ensure(uri)`` returns the local directory of a package, downloading it from the
GCS's package store (``fetch``, an async read of the KV's package namespace) and unpacking it
under ``root`` (the node's ``<session>/runtime_resources/working_dir_files``) the first time;
concurrent callers for one URI wait on the same download. A package is unpacked into a
temporary directory and renamed into place only when complete, so a failed or interrupted
unpack never leaves a directory that a later call would take as ready. The blocking work
(writing, unzipping) runs in a thread, off the caller's event loop.

``prepare(spec)`` turns a resolved spec (see ``spec.py``) into what a worker starts with:
env vars, the working directory (its cwd, first on ``sys.path``), the py_modules paths and,
for a ``pip`` or ``uv`` env, the virtualenv whose python runs the worker (``venv_cache.py``),
within the spec's ``setup_timeout_seconds``.
"""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import tempfile
import time
import zipfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from rayops.envs import packaging
from rayops.envs.eviction import CacheEntry
from rayops.envs.spec import from_wire, installer_of, package_uris, setup_timeout_s
from rayops.envs.venv_cache import SetupFailed, VenvCache, disk_use, venv_python

__all__ = ["PackageCache", "PreparedEnv", "SetupFailed"]


@dataclass(frozen=True)
class PreparedEnv:
    """What a worker of one env starts with."""

    wire: str
    env_vars: dict[str, str]
    working_dir: str | None
    sys_paths: tuple[str, ...]  # py_modules' directories (the working dir goes first)
    venv: str | None = None  # a pip/uv env's virtualenv: its python runs the worker

    @property
    def python(self) -> str | None:
        return venv_python(self.venv) if self.venv else None

    @property
    def paths(self) -> set[str]:
        """The node's cached directories this env's workers use."""
        found = {self.venv, self.working_dir, *self.sys_paths}
        return {p for p in found if p}


class PackageCache:
    def __init__(
        self,
        root: str,
        fetch: Callable[[bytes], Awaitable[bytes | None]],
        venvs: VenvCache | None = None,
    ) -> None:
        self.root = root
        self._fetch = fetch
        self.venvs = venvs
        self._inflight: dict[str, asyncio.Task[str]] = {}
        self._sizes: dict[str, int] = {}  # unpacked directory -> bytes on disk
        self._last_used: dict[str, float] = {}
        self.downloads = 0  # packages downloaded by this cache (a test reads it)

    def local_path(self, uri: str) -> str:
        name = uri[len("gcs://") :].removesuffix(".zip")
        return os.path.join(self.root, name)

    async def ensure(self, uri: str) -> str:
        path = self.local_path(uri)
        self._last_used[path] = time.monotonic()
        if os.path.isdir(path):
            return path
        task = self._inflight.get(uri)
        if task is None:
            task = asyncio.ensure_future(self._download(uri, path))
            self._inflight[uri] = task
            task.add_done_callback(lambda _t: self._inflight.pop(uri, None))
        # shield: one waiter timing out must not cancel the download the others wait on
        return await asyncio.shield(task)

    async def _download(self, uri: str, path: str) -> str:
        ns_meta = await self._fetch(packaging.meta_key(uri))
        if ns_meta is None:
            raise SetupFailed(
                f"package {uri} is not in the GCS's package store (was the GCS restarted "
                "without its data, or the package deleted?); submit the task again from the "
                "driver so it uploads the package."
            )
        size, chunks, strip_top = packaging.read_meta(ns_meta)
        parts = []
        for i in range(chunks):
            part = await self._fetch(packaging.chunk_key(uri, i))
            if part is None:
                raise SetupFailed(f"package {uri}: chunk {i} of {chunks} is missing")
            parts.append(part)
        data = b"".join(parts)
        if len(data) != size:
            raise SetupFailed(f"package {uri}: got {len(data)} bytes, expected {size}")
        await asyncio.to_thread(_unpack, data, path, strip_top)
        self._sizes[path] = await asyncio.to_thread(disk_use, path)
        self.downloads += 1
        return path

    def entries(self, in_use: set[str]) -> list[CacheEntry]:
        """The unpacked packages, as eviction sees them."""
        return [
            CacheEntry(path, size, self._last_used.get(path, 0.0), path in in_use)
            for path, size in self._sizes.items()
            if os.path.isdir(path)
        ]

    def delete(self, path: str) -> None:
        """Delete an unpacked package (renamed away first, so no worker starts in a
        half-deleted directory; a later ``ensure`` downloads it again). Blocking."""
        doomed = tempfile.mkdtemp(prefix=".deleting-", dir=self.root)
        os.rename(path, os.path.join(doomed, os.path.basename(path)))
        shutil.rmtree(doomed, ignore_errors=True)
        self._sizes.pop(path, None)
        self._last_used.pop(path, None)

    async def prepare(self, wire: str) -> PreparedEnv:
        """The env of ``wire`` ready on this node; raises SetupFailed with the reason."""
        try:
            spec = from_wire(wire)
        except (ValueError, TypeError) as err:
            raise SetupFailed(f"bad runtime_env: {err}") from err
        timeout = setup_timeout_s(spec)
        try:
            return await asyncio.wait_for(self._prepare(wire, spec, timeout), timeout)
        except TimeoutError as err:
            raise SetupFailed(
                f"runtime_env setup took longer than setup_timeout_seconds={timeout:g}; raise "
                "it in runtime_env['config'] or make the packages smaller."
            ) from err
        except SetupFailed:
            raise
        except (OSError, zipfile.BadZipFile, ValueError) as err:
            raise SetupFailed(f"runtime_env setup failed: {err!r}") from err

    async def _prepare(self, wire: str, spec: dict[str, Any], timeout: float | None) -> PreparedEnv:
        venv = None
        installer = installer_of(spec)
        if installer is not None:
            if self.venvs is None:
                raise SetupFailed("this node builds no pip/uv runtime_envs")
            venv = await self.venvs.ensure(*installer, timeout)
        working_dir = None
        if spec.get("working_dir"):
            working_dir = await self.ensure(spec["working_dir"])
        modules = [await self.ensure(uri) for uri in spec.get("py_modules") or []]
        assert len(package_uris(spec)) == len(modules) + (working_dir is not None)
        env_vars = dict(spec.get("env_vars") or {})
        return PreparedEnv(wire, env_vars, working_dir, tuple(modules), venv)


def _unpack(data: bytes, path: str, strip_top: bool) -> None:
    parent = os.path.dirname(path)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".unpacking-", dir=parent)
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            for info in zf.infolist():
                target = os.path.realpath(os.path.join(tmp, info.filename))
                if not target.startswith(os.path.realpath(tmp) + os.sep):
                    raise SetupFailed(f"package entry {info.filename!r} points outside it")
            zf.extractall(tmp)
            for info in zf.infolist():  # zipfile drops the exec bit; keep it
                mode = (info.external_attr >> 16) & 0o777
                if mode and not info.is_dir():
                    os.chmod(os.path.join(tmp, info.filename), mode)
        source = tmp
        if strip_top:
            entries = os.listdir(tmp)
            if len(entries) == 1 and os.path.isdir(os.path.join(tmp, entries[0])):
                source = os.path.join(tmp, entries[0])
        try:
            os.rename(source, path)
        except OSError:
            if not os.path.isdir(path):  # else another process unpacked it first
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
