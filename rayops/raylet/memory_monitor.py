"""The raylet's memory monitor: kill one worker before the kernel kills something at random.

Every ``refresh_ms`` (Ray's ``RAY_memory_monitor_refresh_ms``, default 250; 0 turns it off)
the raylet reads the node's memory use (its cgroup's when the cgroup is limited below the
machine, else ``/proc/meminfo``: total minus available). Above the kill threshold
(``max(total * threshold, total - min_free_bytes)``: Ray's ``RAY_memory_usage_threshold``,
default 0.95, and ``RAY_min_memory_free_bytes``, off by default) it picks one leased worker
(``choose_victim``), tells the lease's owner why (``WorkerKillNotice``, so the owner raises
``OutOfMemoryError`` instead of a bare crash), SIGKILLs it, and waits for it to be gone
before choosing another: one kill at a time, as Ray does.

Who dies (Ray's "group by owner" policy): leased workers are grouped by the lease's owner.
Task workers go before actor workers (a task can be retried; an actor restart loses its
state); among groups, the largest first (the owner with the most work running here loses
the least by one kill), then the group whose newest worker started last; in the group, the
worker that started last (the least work lost). The victim's task is retried (within its
``max_retries``) only when its owner keeps another worker running here: the last worker of
an owner is never retried, so a task that alone does not fit in memory fails with
``OutOfMemoryError`` instead of being killed and retried forever.

Everything but ``MemoryGuard`` (the loop) is pure: parsing, thresholds, the choice, the text.
The variables are read under both names (``RAYOPS_MEMORY_USAGE_THRESHOLD`` first, then
Ray's ``RAY_memory_usage_threshold``); a bad value stops the raylet at start, naming it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass

logger = logging.getLogger(__name__)

GIB = 1024**3

# (rayops name, Ray's name) of each setting.
_THRESHOLD_VARS = ("RAYOPS_MEMORY_USAGE_THRESHOLD", "RAY_memory_usage_threshold")
_REFRESH_VARS = ("RAYOPS_MEMORY_MONITOR_REFRESH_MS", "RAY_memory_monitor_refresh_ms")
_MIN_FREE_VARS = ("RAYOPS_MIN_MEMORY_FREE_BYTES", "RAY_min_memory_free_bytes")

# How long a killed worker may take to go before the monitor chooses another anyway.
KILL_GRACE_S = 10.0
# How long the owner has to take note of a kill notice before the worker is killed anyway.
NOTICE_TIMEOUT_S = 1.0


class MemoryConfigError(ValueError):
    """A memory-monitor variable has a value out of range (the message names it)."""


@dataclass(frozen=True)
class MemoryConfig:
    threshold: float = 0.95
    refresh_ms: int = 250
    min_free_bytes: int = -1  # -1: only the fraction counts

    @property
    def enabled(self) -> bool:
        return self.refresh_ms > 0

    def kill_threshold(self, total: int) -> int:
        """Bytes in use at or above which the monitor kills."""
        by_fraction = int(total * self.threshold)
        if self.min_free_bytes < 0:
            return by_fraction
        return max(by_fraction, total - self.min_free_bytes)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> MemoryConfig:
        """Read the variables (unset or empty: Ray's defaults); raise naming a bad one."""
        env = os.environ if env is None else env
        threshold = _or(_read(env, _THRESHOLD_VARS, float), 0.95)
        if not 0.0 < threshold <= 1.0:
            raise MemoryConfigError(
                f"{_name(env, _THRESHOLD_VARS)}: expected a fraction in (0, 1], found {threshold}"
            )
        refresh = int(_or(_read(env, _REFRESH_VARS, int), 250))
        if refresh < 0:
            raise MemoryConfigError(
                f"{_name(env, _REFRESH_VARS)}: expected milliseconds >= 0 (0 turns the memory "
                f"monitor off), found {refresh}"
            )
        min_free = int(_or(_read(env, _MIN_FREE_VARS, int), -1))
        if min_free < -1:
            raise MemoryConfigError(
                f"{_name(env, _MIN_FREE_VARS)}: expected bytes >= 0 (or -1: off), found {min_free}"
            )
        return cls(threshold, refresh, min_free)


def _or(value: float, default: float) -> float:
    return default if value != value else value  # NaN: unset


def _name(env: Mapping[str, str], names: tuple[str, str]) -> str:
    return next((n for n in names if env.get(n, "").strip()), names[0])


def _read(env: Mapping[str, str], names: tuple[str, str], kind: type[float] | type[int]) -> float:
    """The variable's value (the rayops name first), or NaN when neither is set."""
    name = _name(env, names)
    raw = env.get(name, "").strip()
    if not raw:
        return float("nan")
    try:
        return kind(raw)
    except ValueError:
        what = "a number" if kind is float else "an integer"
        raise MemoryConfigError(f"{name}: expected {what}, found {raw!r}") from None


# ------------------------------------------------------------------------ reading usage
@dataclass(frozen=True)
class MemorySnapshot:
    used: int
    total: int

    @property
    def fraction(self) -> float:
        return self.used / self.total if self.total else 0.0


def parse_meminfo(text: str) -> MemorySnapshot:
    """``/proc/meminfo``: used = MemTotal - MemAvailable (what the kernel could not free)."""
    fields: dict[str, int] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            fields[key] = int(parts[0]) * 1024
    total = fields.get("MemTotal", 0)
    available = fields.get("MemAvailable", fields.get("MemFree", 0))
    return MemorySnapshot(max(0, total - available), total)


def parse_cgroup(limit_text: str, current_text: str, stat_text: str) -> MemorySnapshot | None:
    """A cgroup v2's ``memory.max``, ``memory.current`` and ``memory.stat``; None unlimited.

    Page cache the kernel can drop (``inactive_file``) does not count as used, as in Ray.
    """
    limit = limit_text.strip()
    if not limit.isdigit():
        return None  # "max": not limited
    current = int(current_text.strip() or 0)
    inactive = 0
    for line in stat_text.splitlines():
        key, _, value = line.partition(" ")
        if key == "inactive_file" and value.strip().isdigit():
            inactive = int(value)
    return MemorySnapshot(max(0, current - inactive), int(limit))


def read_snapshot(cgroup_dir: str = "/sys/fs/cgroup") -> MemorySnapshot:
    """The node's memory: its cgroup's when that is limited below the machine's."""
    with open("/proc/meminfo") as f:
        machine = parse_meminfo(f.read())
    try:
        with open(os.path.join(cgroup_dir, "memory.max")) as f:
            limit = f.read()
        with open(os.path.join(cgroup_dir, "memory.current")) as f:
            current = f.read()
        with open(os.path.join(cgroup_dir, "memory.stat")) as f:
            stat = f.read()
    except OSError:
        return machine
    group = parse_cgroup(limit, current, stat)
    if group is None or group.total >= machine.total:
        return machine
    return group


# ------------------------------------------------------------------------ the choice
@dataclass(frozen=True)
class Candidate:
    """A leased worker the monitor may kill."""

    worker_id: bytes
    pid: int
    owner: Hashable  # the lease's owner (its connection): workers of one owner form a group
    started: float  # when the lease was granted (monotonic)
    lease_id: int
    is_actor: bool = False


@dataclass(frozen=True)
class Victim:
    candidate: Candidate
    retriable: bool  # its owner keeps another worker here: the task may be retried


def choose_victim(candidates: Iterable[Candidate]) -> Victim | None:
    """The worker to kill (see the module docstring), or None when there is none."""
    groups: dict[tuple[bool, Hashable], list[Candidate]] = {}
    for c in candidates:
        groups.setdefault((c.is_actor, c.owner), []).append(c)
    if not groups:
        return None

    def rank(item: tuple[tuple[bool, Hashable], list[Candidate]]) -> tuple[bool, int, float]:
        (is_actor, _owner), members = item
        # Tasks before actors; bigger groups first; the group that started work last first.
        return (is_actor, -len(members), -max(m.started for m in members))

    _key, members = min(groups.items(), key=rank)
    newest = max(members, key=lambda m: (m.started, m.lease_id))
    return Victim(newest, retriable=len(members) > 1)


@dataclass(frozen=True)
class ProcessUsage:
    pid: int
    rss: int
    command: str


def top_consumers(procs: Sequence[ProcessUsage], n: int = 10) -> str:
    """A table of the ``n`` processes using the most memory (what the error shows)."""
    rows = sorted(procs, key=lambda p: p.rss, reverse=True)[:n]
    lines = ["PID\tMEM(GB)\tCOMMAND"]
    lines += [f"{p.pid}\t{p.rss / GIB:.2f}\t{p.command[:80]}" for p in rows]
    return "\n".join(lines)


def process_usage() -> list[ProcessUsage]:
    """Every process's resident memory (psutil; slow-ish: run it off the event loop)."""
    import psutil

    out = []
    for p in psutil.process_iter(["pid", "memory_info", "cmdline", "name"]):
        info = p.info
        mem = info.get("memory_info")
        if mem is None:
            continue
        cmd = " ".join(info.get("cmdline") or []) or (info.get("name") or "?")
        out.append(ProcessUsage(info["pid"], mem.rss, cmd))
    return out


# ------------------------------------------------------------------------ the loop
@dataclass(frozen=True)
class KillReport:
    """What the owner is told, and what the log and the worker's death cause say."""

    victim: Victim
    snapshot: MemorySnapshot
    worker_rss: int
    top: str


class MemoryGuard:
    """The monitor's loop on the raylet's event loop (the raylet supplies its leases)."""

    def __init__(
        self,
        config: MemoryConfig,
        candidates: Callable[[], list[Candidate]],
        tell_owner: Callable[[KillReport], Awaitable[None]],
        kill: Callable[[KillReport], None],
        alive: Callable[[bytes], bool],
        read: Callable[[], MemorySnapshot] = read_snapshot,
        release: Callable[[], int] | None = None,
    ) -> None:
        """`release` gives back memory nothing uses (the object store's pool of freed
        objects' pages) and returns the bytes freed; it is tried before any kill."""
        self.config = config
        self._release = release
        self._candidates = candidates
        self._tell_owner = tell_owner
        self._kill = kill
        self._alive = alive
        self._read = read
        self._killing: bytes | None = None
        self._kill_deadline = 0.0
        self._warned_nothing = False
        self.kills: dict[str, int] = {"task": 0, "actor": 0}  # by kind, for the metric

    async def run(self, stopping: asyncio.Event) -> None:
        period = self.config.refresh_ms / 1000
        while not stopping.is_set():
            await asyncio.sleep(period)
            try:
                await self.check()
            except Exception:  # never let the monitor die with the node still running
                logger.exception("memory monitor check failed")

    async def check(self) -> KillReport | None:
        if self._killing is not None:
            if self._alive(self._killing) and time.monotonic() < self._kill_deadline:
                return None  # one kill at a time: wait for the last one to be gone
            self._killing = None
        snap = self._read()
        if snap.used < self.config.kill_threshold(snap.total):
            self._warned_nothing = False
            return None
        freed = self._release() if self._release is not None else 0
        if freed > 0:
            logger.info(
                "memory use %.2f GB of %.2f GB is above the threshold: gave back %.2f GB of "
                "freed objects' pages kept for reuse",
                snap.used / GIB,
                snap.total / GIB,
                freed / GIB,
            )
            snap = self._read()
            if snap.used < self.config.kill_threshold(snap.total):
                return None
        victim = choose_victim(self._candidates())
        if victim is None:
            if not self._warned_nothing:
                logger.warning(
                    "memory use %.2f GB of %.2f GB is above the threshold %s, but no leased "
                    "worker runs here to kill",
                    snap.used / GIB,
                    snap.total / GIB,
                    self.config.threshold,
                )
                self._warned_nothing = True
            return None
        procs = await asyncio.get_running_loop().run_in_executor(None, process_usage)
        rss = next((p.rss for p in procs if p.pid == victim.candidate.pid), 0)
        report = KillReport(victim, snap, rss, top_consumers(procs))
        try:
            await asyncio.wait_for(self._tell_owner(report), NOTICE_TIMEOUT_S)
        except Exception as err:  # the owner is gone or slow: kill anyway
            logger.info("kill notice to the owner of worker pid %d: %r", victim.candidate.pid, err)
        self._killing = victim.candidate.worker_id
        self._kill_deadline = time.monotonic() + KILL_GRACE_S
        self.kills["actor" if victim.candidate.is_actor else "task"] += 1
        self._kill(report)
        return report
