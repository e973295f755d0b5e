"""Spilling and restoring objects off the raylet's event loop.

Owns the threads that copy object files between shared memory and the spill directories, and
the waiting that goes with it: a `reserve` that finds the store full waits (asynchronously) for
the least recently used objects to be copied to disk, then evicts them; a read of a spilled
object waits for it to be copied back into shared memory (after making room the same way).
Every decision and every book stays in StoreManager (background_io=True), called only on the
event loop; the threads only run the file copies it plans. The queue is bounded: at most
MAX_JOBS_IN_FLIGHT copies are submitted at once, the rest wait their turn on the loop.

Spilling also runs ahead of need: once the store is `spilling_threshold` full (Ray's
object_spilling_threshold, 0.8), least recently used objects are copied to disk in the
background, so the next `put` that needs room only evicts (a rename) instead of waiting for a
disk write.

Spill copies overwrite pooled spill files of freed objects when there are some (see
StoreManager), and after IDLE_TRIM_S without puts or spills the pools are trimmed.

The settings (SpillSettings) are read once at the edge from Ray's variables:
RAY_object_spilling_config, RAY_object_spilling_directory, RAY_local_fs_capacity_threshold and
RAY_object_spilling_threshold.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from rayops.objectstore import (
    RESTORE_LOCAL,
    RESTORE_STAY,
    RESTORE_UNKNOWN,
    RESTORE_WAIT,
    RestoreJob,
    SpillJob,
    StoreManager,
)

logger = logging.getLogger(__name__)

IO_THREADS = 2  # one copy saturates a disk; two overlap a spill with a restore
MAX_JOBS_IN_FLIGHT = 4  # the bounded queue of copies handed to the threads
# Once the store has seen no reserve and no spill for this long, the pooled spill files are
# unlinked and the pooled shared memory shrinks to a quarter of the capacity: the pools speed
# up the next burst of puts and spills, they are not what an idle node should hold.
IDLE_TRIM_S = 10.0


class SpillConfigError(ValueError):
    """A spilling setting is malformed; the message names the variable or key."""


@dataclass(frozen=True)
class SpillSettings:
    """Where and when to spill. `directories` empty: the session's spill directory."""

    directories: tuple[str, ...] = ()
    fs_capacity_threshold: float = 0.95
    spilling_threshold: float = 0.8

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> SpillSettings:
        """Read Ray's variables (unset: Ray's defaults); raise naming a bad one."""
        env = os.environ if env is None else env
        dirs: tuple[str, ...] = ()
        if env.get("RAY_object_spilling_directory"):
            dirs = (env["RAY_object_spilling_directory"],)
        elif env.get("RAY_object_spilling_config"):
            dirs = parse_spilling_config(
                env["RAY_object_spilling_config"], "RAY_object_spilling_config"
            )
        return cls(
            directories=dirs,
            fs_capacity_threshold=_fraction(env, "RAY_local_fs_capacity_threshold", 0.95),
            spilling_threshold=_fraction(env, "RAY_object_spilling_threshold", 0.8),
        )


# Ray's _system_config keys that rayops honours: all of them are spilling settings.
SYSTEM_CONFIG_KEYS = (
    "object_spilling_config",
    "object_spilling_directory",
    "local_fs_capacity_threshold",
    "object_spilling_threshold",
)


def system_config_env(system_config: object, where: str) -> dict[str, str]:
    """Ray's ``_system_config`` dict as the RAY_<key> variables the raylet reads (Ray's own
    override form); raises naming a key rayops does not implement, or a bad value."""
    if not isinstance(system_config, dict):
        raise TypeError(f"{where}: expected a dict, found {type(system_config).__name__}")
    env: dict[str, str] = {}
    for key, value in system_config.items():
        if key not in SYSTEM_CONFIG_KEYS:
            raise NotImplementedError(
                f"{where}: key {key!r} is not supported by rayops; the supported keys are "
                f"{', '.join(SYSTEM_CONFIG_KEYS)}"
            )
        if key == "object_spilling_config" and isinstance(value, dict):
            value = json.dumps(value)
        if not isinstance(value, str | int | float) or isinstance(value, bool):
            raise TypeError(f"{where}[{key!r}]: expected a string or number, found {value!r}")
        env[f"RAY_{key}"] = str(value)
    SpillSettings.from_env(env)  # raise now, naming the key, rather than in the raylet
    return env


def parse_spilling_config(text: str | Mapping[str, Any], where: str) -> tuple[str, ...]:
    """The directories of Ray's object_spilling_config, given as JSON text or a dict:
    ``{"type": "filesystem", "params": {"directory_path": "/a" or ["/a", "/b"]}}``."""
    if isinstance(text, str):
        try:
            config = json.loads(text)
        except json.JSONDecodeError as err:
            raise SpillConfigError(f"{where}: expected JSON, found {text!r} ({err})") from err
    else:
        config = text
    if not isinstance(config, dict):
        raise SpillConfigError(f"{where}: expected a JSON object, found {config!r}")
    unknown = sorted(set(config) - {"type", "params"})
    if unknown:
        raise SpillConfigError(f"{where}: unknown keys {unknown}; expected 'type' and 'params'")
    kind = config.get("type")
    if kind != "filesystem":
        raise NotImplementedError(
            f"{where}: spilling type {kind!r} is not supported by rayops; only 'filesystem' "
            "(local directories) is implemented"
        )
    params = config.get("params")
    if not isinstance(params, dict) or "directory_path" not in params:
        raise SpillConfigError(f"{where}: 'params' must be an object with 'directory_path'")
    if "buffer_size" in params:
        raise NotImplementedError(
            f"{where}: params.buffer_size is not supported: rayops copies spill files with "
            "sendfile (no user-space buffer); remove it"
        )
    others = sorted(set(params) - {"directory_path"})
    if others:
        raise SpillConfigError(f"{where}: unknown params {others}; expected 'directory_path'")
    path = params["directory_path"]
    paths = [path] if isinstance(path, str) else path
    if not isinstance(paths, list) or not paths or not all(isinstance(p, str) and p for p in paths):
        raise SpillConfigError(
            f"{where}: params.directory_path must be a directory or a non-empty list of them, "
            f"found {path!r}"
        )
    return tuple(paths)


def _fraction(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name, "")
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError as err:
        raise SpillConfigError(f"{name}: expected a fraction in (0, 1], found {raw!r}") from err
    if not 0.0 < value <= 1.0:
        raise SpillConfigError(f"{name}: expected a fraction in (0, 1], found {raw!r}")
    return value


def node_spill_dirs(settings: SpillSettings, default_dir: str, node_id: str) -> tuple[str, ...]:
    """The node's own spill directories: one per configured directory (Ray's
    ``ray_spilled_objects_<node id>`` layout, so nodes sharing a disk never collide)."""
    if not settings.directories:
        return (default_dir,)
    return tuple(os.path.join(d, f"rayops_spilled_objects_{node_id}") for d in settings.directories)


class SpillService:
    """The raylet's asynchronous face of the store for anything that may move bytes."""

    def __init__(
        self,
        store: StoreManager,
        settings: SpillSettings,
        on_change: Callable[[], None] = lambda: None,
    ) -> None:
        self._store = store
        self._headroom = 1.0 - settings.spilling_threshold
        self._on_change = on_change
        self._pool = ThreadPoolExecutor(IO_THREADS, thread_name_prefix="rayops-spill")
        self._slots = asyncio.Semaphore(MAX_JOBS_IN_FLIGHT)
        self._changed = asyncio.Event()
        self._restores: dict[bytes, asyncio.Future[bool]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._closed = False
        self._idle_trim: asyncio.TimerHandle | None = None
        self._spill_failures = 0
        self.spilled_bytes = 0
        self.spill_seconds = 0.0
        self.restored_bytes = 0
        self.restore_seconds = 0.0

    # ---- what the raylet calls ---------------------------------------------------------

    async def reserve(self, object_id: bytes, size: int) -> str:
        """StoreManager.reserve, waiting for spills instead of copying on the loop."""
        failures = self._spill_failures
        self._active()
        while True:
            where = self._store.try_reserve(object_id, size)
            if where is not None:
                self.kick()
                return where
            changed = self._changed
            self._submit_spills(self._store.plan_spills(size))
            if self._store.spills_in_flight == 0 or self._spill_failures > failures:
                # The disk refused a copy: reserve's own answer (on disk, or the error).
                return self._store.reserve(object_id, size)
            await changed.wait()

    async def ensure_local(self, object_id: bytes) -> bool:
        """Restore a spilled object into shared memory; False if the node does not know it."""
        pending = self._restores.get(object_id)
        if pending is not None:
            return await asyncio.shield(pending)
        fut: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._restores[object_id] = fut
        try:
            fut.set_result(await self._restore(object_id))
        except BaseException as err:
            fut.set_exception(err)
            fut.exception()  # retrieved: concurrent waiters re-raise it
            raise
        finally:
            del self._restores[object_id]
        return fut.result()

    def kick(self) -> None:
        """Start background spilling if the store is past the spilling threshold."""
        if not self._closed:
            self._submit_spills(self._store.plan_background_spills(self._headroom))

    def close(self) -> None:
        self._closed = True
        if self._idle_trim is not None:
            self._idle_trim.cancel()
        for task in self._tasks:
            task.cancel()
        self._pool.shutdown(wait=True, cancel_futures=True)

    # ---- inside --------------------------------------------------------------------------

    async def _restore(self, object_id: bytes) -> bool:
        failures = self._spill_failures
        while True:
            plan = self._store.plan_restore(object_id)
            if plan == RESTORE_UNKNOWN:
                return False
            if plan in (RESTORE_LOCAL, RESTORE_STAY):
                return True
            if plan == RESTORE_WAIT:
                if self._spill_failures > failures:
                    return True  # the disk refused a copy: readers map the spill file
                changed = self._changed
                size = next(e[1] for e in self._store.entries() if e[0] == object_id)
                self._submit_spills(self._store.plan_spills(size))
                if self._store.spills_in_flight == 0:
                    return True  # the disk refused every copy: readers map the spill file
                await changed.wait()
                continue
            assert isinstance(plan, RestoreJob)
            t0 = time.perf_counter()
            error = await self._run(self._store.restore_copy, plan)
            if self._store.restore_done(plan, error):
                self.restored_bytes += plan.size
                self.restore_seconds += time.perf_counter() - t0
            self._notify()
            return True

    def _submit_spills(self, jobs: list[SpillJob]) -> None:
        for job in jobs:
            task = asyncio.ensure_future(self._spill(job))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _spill(self, job: SpillJob) -> None:
        t0 = time.perf_counter()
        error = await self._run(self._spill_copy, job)
        self._store.spill_done(job, error)
        self._active()
        if error is not None:
            self._spill_failures += 1
        else:
            self.spilled_bytes += job.size
            self.spill_seconds += time.perf_counter() - t0
        self._notify()

    def _spill_copy(self, job: SpillJob) -> None:
        self._store.check_spill_room(job)
        self._store.spill_copy(job)

    async def _run(self, fn: Callable[[Any], None], job: Any) -> BaseException | None:
        async with self._slots:
            try:
                await asyncio.get_running_loop().run_in_executor(self._pool, fn, job)
            except Exception as err:  # reported to the store, which keeps the books
                return err
        return None

    def _active(self) -> None:
        """(Re)arm the idle trim of the store's pools."""
        if self._idle_trim is not None:
            self._idle_trim.cancel()
        if not self._closed:
            self._idle_trim = asyncio.get_running_loop().call_later(IDLE_TRIM_S, self._trim_idle)

    def _trim_idle(self) -> None:
        self._idle_trim = None
        self._store.trim_spill_pool()
        self._store.trim_pool(self._store.stats().capacity // 4)

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()
        self._on_change()


__all__ = [
    "SYSTEM_CONFIG_KEYS",
    "SpillConfigError",
    "SpillService",
    "SpillSettings",
    "node_spill_dirs",
    "parse_spilling_config",
    "system_config_env",
]
