"""The runtime_envs of a node's workers: set up once per env, before its first worker starts.

The raylet, not the node agent, sets envs up: a ``working_dir`` or ``py_modules`` package is
a download from the GCS and an unzip, done off the event loop (``envs/node_cache.py``); a
``pip``/``uv`` env is a virtualenv built by installer subprocesses (uv, else pip) that the
raylet's loop only awaits (``envs/venv_cache.py``). The raylet's worker pool needs the paths
(and the venv's python) before it starts a worker, and going through the agent would add a
process hop to every first lease of an env and make leases depend on a process that starts
a second after the raylet and restarts on its own; see docs/architecture.md.

``NodeEnvs`` keeps which envs are ready (by hash), runs one setup per env however many lease
requests wait for it, and forgets a failed setup once it has been reported to the waiting
requests, so a later request tries again (nothing failed is cached). After each pip/uv build
it deletes built envs nothing on the node uses (``in_use``: hashes of leased or starting
workers and waiting requests) while the node's envs are over the cache size, and tells the
raylet (``on_evicted``) so it stops their idle workers.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable
from typing import Any

from rayops.envs import packaging
from rayops.envs.eviction import plan_evictions
from rayops.envs.install_settings import InstallSettings
from rayops.envs.node_cache import PackageCache, PreparedEnv, SetupFailed
from rayops.envs.spec import env_hash
from rayops.envs.venv_cache import VenvCache

logger = logging.getLogger(__name__)

# Housekeeping retries an eviction that left the cache over its size at most this often (each
# pass measures the installers' caches on disk).
EVICT_RETRY_S = 2.0


class NodeEnvs:
    def __init__(
        self,
        session_dir: str,
        node_id: str,
        gcs: Callable[[], Any],
        install: InstallSettings | None = None,
        *,
        in_use: Callable[[], set[str]] = set,
        on_evicted: Callable[[str], None] = lambda _h: None,
    ) -> None:
        node_root = os.path.join(session_dir, "runtime_resources", node_id[:12])
        self._gcs = gcs
        self._in_use = in_use
        self._on_evicted = on_evicted
        self.venvs = VenvCache(os.path.join(node_root, "venvs"), install or InstallSettings())
        self.cache = PackageCache(os.path.join(node_root, "packages"), self._fetch, self.venvs)
        self._hashes: dict[str, str] = {}
        self.ready: dict[str, PreparedEnv] = {}
        self._setups: dict[str, asyncio.Task[None]] = {}
        self._evicting: asyncio.Future[tuple[set[str], bool]] | None = None
        self._over = False  # the last eviction left the cache over its size
        self._retry: asyncio.Task[None] | None = None
        self._last_evict = 0.0

    def hash_of(self, wire: str) -> str:
        h = self._hashes.get(wire)
        if h is None:
            if len(self._hashes) > 4096:
                self._hashes.clear()
            h = self._hashes[wire] = env_hash(wire)
        return h

    def is_ready(self, h: str) -> bool:
        return not h or h in self.ready

    def ensure(self, wire: str, h: str, done: Callable[[str, str | None], None]) -> None:
        """Start setting up ``wire`` unless it is ready or under way; ``done(h, error)`` is
        called when a setup ends (``error`` None on success)."""
        if self.is_ready(h) or h in self._setups:
            return
        self._setups[h] = asyncio.ensure_future(self._setup(wire, h, done))

    async def _setup(self, wire: str, h: str, done: Callable[[str, str | None], None]) -> None:
        error: str | None = None
        prepared: PreparedEnv | None = None
        try:
            while self._evicting is not None:  # never assemble an env while files go
                await asyncio.shield(self._evicting)
            self.ready[h] = prepared = await self.cache.prepare(wire)
            logger.info("runtime_env %s ready", h)
        except SetupFailed as err:
            error = str(err)
            logger.warning("runtime_env %s setup failed: %s", h, error)
        except Exception as err:  # a bug or an unexpected I/O error: still fail the leases
            error = f"runtime_env setup failed: {err!r}"
            logger.exception("runtime_env %s setup failed", h)
        finally:
            self._setups.pop(h, None)
        done(h, error)
        if prepared is not None:  # after the waiting leases are served, not before
            await self._evict(keep=prepared)

    def housekeep(self) -> None:
        """Called periodically by the raylet: when the last eviction left the cache over its
        size (what it held was in use then), try again once no setup is under way."""
        now = time.monotonic()
        if (
            self._over
            and not self._setups
            and self._evicting is None
            and now - self._last_evict >= EVICT_RETRY_S
        ):
            self._over = False
            self._retry = asyncio.ensure_future(self._evict(None))

    async def _evict(self, keep: PreparedEnv | None) -> None:
        # Only with no setup under way (one may be assembling parts not yet ready: it evicts
        # when it ends), and one eviction at a time; setups wait for it to end.
        if self._setups or self._evicting is not None:
            self._over = True  # so housekeeping tries once they are done
            return
        hashes = self._in_use()
        used = set(keep.paths) if keep is not None else set()
        for h, env in self.ready.items():
            if h in hashes:
                used |= env.paths
        self._last_evict = time.monotonic()
        self._evicting = asyncio.ensure_future(asyncio.to_thread(self._evict_blocking, used))
        try:
            deleted, self._over = await asyncio.shield(self._evicting)
        finally:
            self._evicting = None
        for h, env in list(self.ready.items()):
            if env.paths & deleted:
                del self.ready[h]
                self._on_evicted(h)

    def _evict_blocking(self, used: set[str]) -> tuple[set[str], bool]:
        """Measure, plan and delete (in a thread): (what was deleted, still over the size)."""
        limit = self.venvs.settings.cache_bytes
        try:
            venv_entries = self.venvs.entries(used)
            entries = self.cache.entries(used) + venv_entries
            doomed = plan_evictions(entries, limit)
            venv_paths = {e.path for e in venv_entries}
            for path in doomed:
                (self.venvs if path in venv_paths else self.cache).delete(path)
        except OSError:
            logger.exception("runtime_env cache eviction failed")
            return set(), True
        left = sum(e.size for e in entries if e.path not in doomed)
        return set(doomed), left > limit

    async def _fetch(self, key: bytes) -> bytes | None:
        gcs = self._gcs()
        if gcs is None:
            raise SetupFailed("the raylet is not connected to the GCS yet")
        value: bytes | None = await gcs.kv_get(key, namespace=packaging.PACKAGE_NAMESPACE)
        return value

    def close(self) -> None:
        for task in self._setups.values():
            task.cancel()
        self._setups.clear()
        if self._retry is not None:
            self._retry.cancel()
        self.venvs.close()
