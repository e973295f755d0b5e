"""The runtime_envs of a node's workers: set up once per env, before its first worker starts.

The raylet, not the node agent, sets envs up in phase 1 (no package installs): a
``working_dir`` or ``py_modules`` package is a download from the GCS and an unzip, which the
raylet does off its event loop (``envs/node_cache.py``), and the raylet's worker pool must have
the unpacked paths before it forks a worker. Going through the agent would add a process hop
to every first lease of an env and make leases depend on the agent, which starts a second
after the raylet and restarts on its own. Phase 2 (pip/uv builds: long subprocesses) moves
the building into the agent behind the same ``prepare(wire)`` call.

``NodeEnvs`` keeps which envs are ready (by hash), runs one setup per env however many lease
requests wait for it, and forgets a failed setup once it has been reported to the waiting
requests, so a later request tries again (nothing failed is cached).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from typing import Any

from rayops.envs import packaging
from rayops.envs.node_cache import PackageCache, PreparedEnv, SetupFailed
from rayops.envs.spec import env_hash

logger = logging.getLogger(__name__)


class NodeEnvs:
    def __init__(self, session_dir: str, node_id: str, gcs: Callable[[], Any]) -> None:
        root = os.path.join(session_dir, "runtime_resources", node_id[:12], "packages")
        self._gcs = gcs
        self.cache = PackageCache(root, self._fetch)
        self._hashes: dict[str, str] = {}
        self.ready: dict[str, PreparedEnv] = {}
        self._setups: dict[str, asyncio.Task[None]] = {}

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
        try:
            self.ready[h] = await self.cache.prepare(wire)
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
