"""The memory monitor's pure parts: reading usage, thresholds, who dies, the loop's rules."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from rayops.core_worker.kill_notices import KillNotices
from rayops.core_worker.threads import IO_THREAD_NAME
from rayops.protocol import raylet_messages as rm
from rayops.protocol.task_messages import TaskSpec
from rayops.raylet.memory_monitor import (
    GIB,
    Candidate,
    KillReport,
    MemoryConfig,
    MemoryConfigError,
    MemoryGuard,
    MemorySnapshot,
    ProcessUsage,
    choose_victim,
    parse_cgroup,
    parse_meminfo,
    top_consumers,
)

MEMINFO = """MemTotal:       24000000 kB
MemFree:         1000000 kB
MemAvailable:    6000000 kB
Buffers:          100000 kB
"""


def test_meminfo_used_is_total_minus_available() -> None:
    snap = parse_meminfo(MEMINFO)
    assert snap.total == 24000000 * 1024
    assert snap.used == (24000000 - 6000000) * 1024
    assert snap.fraction == pytest.approx(0.75)


@pytest.mark.parametrize(
    ("limit", "current", "stat", "expected"),
    [
        ("max\n", "100\n", "", None),  # not limited: the machine's numbers count
        ("1000\n", "900\n", "anon 500\ninactive_file 300\n", MemorySnapshot(600, 1000)),
        ("1000\n", "900\n", "anon 900\n", MemorySnapshot(900, 1000)),
        ("1000\n", "100\n", "inactive_file 300\n", MemorySnapshot(0, 1000)),
    ],
)
def test_cgroup_usage_leaves_out_droppable_cache(
    limit: str, current: str, stat: str, expected: MemorySnapshot | None
) -> None:
    assert parse_cgroup(limit, current, stat) == expected


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, MemoryConfig(0.95, 250, -1)),
        ({"RAY_memory_usage_threshold": "0.8"}, MemoryConfig(0.8, 250, -1)),
        (
            {"RAY_memory_usage_threshold": "0.8", "RAYOPS_MEMORY_USAGE_THRESHOLD": "0.7"},
            MemoryConfig(0.7, 250, -1),
        ),
        ({"RAY_memory_monitor_refresh_ms": "0"}, MemoryConfig(0.95, 0, -1)),
        ({"RAY_min_memory_free_bytes": "1000"}, MemoryConfig(0.95, 250, 1000)),
        ({"RAYOPS_MEMORY_MONITOR_REFRESH_MS": " "}, MemoryConfig(0.95, 250, -1)),
    ],
)
def test_config_from_env(env: dict[str, str], expected: MemoryConfig) -> None:
    assert MemoryConfig.from_env(env) == expected


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"RAY_memory_usage_threshold": "1.5"}, "RAY_memory_usage_threshold"),
        ({"RAY_memory_usage_threshold": "0"}, "RAY_memory_usage_threshold"),
        ({"RAYOPS_MEMORY_USAGE_THRESHOLD": "high"}, "RAYOPS_MEMORY_USAGE_THRESHOLD"),
        ({"RAY_memory_monitor_refresh_ms": "-5"}, "RAY_memory_monitor_refresh_ms"),
        ({"RAY_memory_monitor_refresh_ms": "0.5"}, "RAY_memory_monitor_refresh_ms"),
        ({"RAY_min_memory_free_bytes": "-2"}, "RAY_min_memory_free_bytes"),
    ],
)
def test_bad_config_names_the_variable(env: dict[str, str], names: str) -> None:
    with pytest.raises(MemoryConfigError, match=names):
        MemoryConfig.from_env(env)


def test_kill_threshold_takes_the_larger_of_fraction_and_free_floor() -> None:
    assert MemoryConfig(0.9, 250, -1).kill_threshold(1000) == 900
    assert MemoryConfig(0.9, 250, 50).kill_threshold(1000) == 950
    assert MemoryConfig(0.9, 250, 500).kill_threshold(1000) == 900


def _c(wid: str, owner: str, started: float, actor: bool = False, lease: int = 0) -> Candidate:
    return Candidate(wid.encode(), 100 + len(wid), owner, started, lease, actor)


# (candidates, expected victim worker id, retriable)
VICTIMS = [
    ([], None, False),
    # one owner, several workers: the newest dies, and may be retried (another stays)
    ([_c("a", "o1", 1), _c("b", "o1", 3), _c("c", "o1", 2)], "b", True),
    # the last worker of its owner: killed without retry
    ([_c("a", "o1", 1)], "a", False),
    # the biggest group loses one, even when another owner started later
    ([_c("a", "o1", 1), _c("b", "o1", 2), _c("c", "o2", 9)], "b", True),
    # equal groups: the one that started work last
    ([_c("a", "o1", 1), _c("b", "o2", 5)], "b", False),
    # task workers before actors, whatever the sizes and times
    ([_c("x", "gcs", 9, actor=True), _c("y", "gcs", 8, actor=True), _c("a", "o1", 1)], "a", False),
    # only actors: the newest actor of the biggest group
    ([_c("x", "gcs", 1, actor=True), _c("y", "gcs", 2, actor=True)], "y", True),
    # same start time: the later lease
    ([_c("a", "o1", 1, lease=1), _c("b", "o1", 1, lease=2)], "b", True),
]


@pytest.mark.parametrize(("cands", "victim", "retriable"), VICTIMS)
def test_choose_victim(cands: list[Candidate], victim: str | None, retriable: bool) -> None:
    got = choose_victim(cands)
    if victim is None:
        assert got is None
        return
    assert got is not None
    assert got.candidate.worker_id == victim.encode()
    assert got.retriable is retriable


def test_top_consumers_lists_the_biggest_first() -> None:
    procs = [ProcessUsage(i, i * GIB // 10, f"proc{i}") for i in range(1, 15)]
    text = top_consumers(procs, n=3).splitlines()
    assert text[0] == "PID\tMEM(GB)\tCOMMAND"
    assert [line.split("\t")[0] for line in text[1:]] == ["14", "13", "12"]
    assert text[1].split("\t")[1] == "1.40"


class _Node:
    """Callbacks the guard drives, recording what it did."""

    def __init__(self, used: int, cands: list[Candidate]) -> None:
        self.used = used
        self.cands = cands
        self.told: list[KillReport] = []
        self.killed: list[bytes] = []
        self.alive: set[bytes] = {c.worker_id for c in cands}

    async def tell(self, report: KillReport) -> None:
        self.told.append(report)

    def kill(self, report: KillReport) -> None:
        self.killed.append(report.victim.candidate.worker_id)

    def guard(self) -> MemoryGuard:
        return MemoryGuard(
            MemoryConfig(0.9, 10, -1),
            lambda: [c for c in self.cands if c.worker_id in self.alive],
            self.tell,
            self.kill,
            lambda wid: wid in self.alive,
            read=lambda: MemorySnapshot(self.used, 1000),
        )


def test_guard_kills_one_at_a_time_and_only_above_the_threshold() -> None:
    node = _Node(899, [_c("a", "o1", 1), _c("b", "o1", 2)])
    guard = node.guard()

    async def scenario() -> None:
        assert await guard.check() is None  # below 900: nothing
        node.used = 950
        report = await guard.check()
        assert report is not None and node.killed == [b"b"]
        assert node.told and node.told[0].victim.retriable
        assert await guard.check() is None  # b still alive: wait for it
        assert node.killed == [b"b"]
        node.alive.discard(b"b")
        await guard.check()  # b gone, still above: the next one
        assert node.killed == [b"b", b"a"]

    asyncio.run(scenario())
    assert guard.kills == {"task": 2, "actor": 0}


def test_guard_kills_even_when_the_owner_does_not_answer() -> None:
    node = _Node(950, [_c("a", "o1", 1)])

    async def broken(report: KillReport) -> None:
        raise ConnectionError("owner gone")

    guard = node.guard()
    guard._tell_owner = broken

    async def scenario() -> None:
        await guard.check()

    asyncio.run(scenario())
    assert node.killed == [b"a"]


def _notice(retriable: bool) -> rm.WorkerKillNotice:
    return rm.WorkerKillNotice(
        worker_id=b"w1",
        node_id="n" * 56,
        node_ip="10.0.0.5",
        pid=4242,
        worker_rss=3 * GIB,
        used=23 * GIB,
        total=24 * GIB,
        threshold=0.95,
        top_consumers="PID\tMEM(GB)\tCOMMAND\n4242\t3.00\tpython worker",
        retriable=retriable,
    )


def _spec() -> TaskSpec:
    return TaskSpec(b"t" * 24, 1, "hog", b"f", (), (), 1, (b"r",), ("127.0.0.1", 1), {})


def _on_io_thread(fn: Any) -> Any:
    """Run ``fn`` on a thread named as the core worker's IO thread (its methods assert it)."""
    out: list[Any] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            out.append(fn())
        except BaseException as err:  # re-raised on the test's thread
            errors.append(err)

    t = threading.Thread(target=run, name=IO_THREAD_NAME)
    t.start()
    t.join()
    if errors:
        raise errors[0]
    return out[0]


@pytest.mark.parametrize("retriable", [True, False])
def test_owner_turns_a_notice_into_out_of_memory_error(retriable: bool) -> None:
    _on_io_thread(lambda: _check_notice(retriable))


def _check_notice(retriable: bool) -> None:
    notices = KillNotices()
    assert notices.error_for(b"w1", _spec()) is None
    assert notices.on_notice(None, _notice(retriable)) is True
    got = notices.error_for(b"w1", _spec())
    assert got is not None
    error, retry = got
    assert retry is retriable
    text = str(error)
    assert "name=hog" in text and "10.0.0.5" in text and "pid=4242" in text
    assert "exceeds the memory usage threshold of 0.95" in text
    assert "4242\t3.00\tpython worker" in text
    assert ("last worker" in text) is (not retriable)
    # a second task in flight on the same worker reads the same notice
    assert notices.error_for(b"w1", _spec()) is not None
    assert notices.error_for(b"w2", _spec()) is None


def test_guard_gives_back_pooled_pages_before_killing() -> None:
    node = _Node(950, [_c("a", "o1", 1)])
    released: list[int] = []

    def release(pool: list[int]) -> int:
        freed = sum(pool)
        pool.clear()
        released.append(freed)
        node.used -= freed
        return freed

    pool = [60]
    guard = node.guard()
    guard._release = lambda: release(pool)

    async def scenario() -> None:
        assert await guard.check() is None  # 950 - 60 = 890: below 900, nobody killed
        assert released == [60] and node.killed == []
        node.used = 950  # above again, nothing left to give back: now it kills
        assert await guard.check() is not None
        assert node.killed == [b"a"] and released == [60, 0]

    asyncio.run(scenario())
