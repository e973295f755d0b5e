"""The owner's lineage machine, without processes: events in, instructions out.

Each row is one story: the tasks that finished (with their store returns), then the
objects lost with a node, and the instructions expected: which tasks are rerun (with what
retries), which objects fail with which Ray error, what is unpinned; eviction past the cap.
"""

from __future__ import annotations

from typing import Any

import pytest

from rayops import exceptions as rex
from rayops import ids
from rayops.core_worker import lineage as ln
from rayops.protocol.task_messages import TaskSpec

OWNER = ("127.0.0.1", 1000)
_ids = iter(range(1, 1_000_000))


def _spec(*, args: tuple[Any, ...] = (), actor: bool = False, name: str = "f") -> TaskSpec:
    tid = next(_ids).to_bytes(16, "big")
    return TaskSpec(
        task_id=tid,
        job_id=1,
        name=name,
        function_id=b"fn",
        args=args,
        kwarg_names=(),
        num_returns=1,
        return_ids=(ids.object_id_for(tid, 1),),
        owner=OWNER,
        resources={"CPU": 1.0},
        actor_id=b"A" * 16 if actor else b"",
    )


def _ret(spec: TaskSpec) -> bytes:
    return spec.return_ids[0]


def _done(m: ln.Lineage, spec: TaskSpec, deps: list[bytes], retries: int, size: int = 100) -> Any:
    return m.task_done(spec, deps, retries, False, [_ret(spec)], size)


def _kinds(ins: list[ln.Instruction]) -> list[str]:
    return [type(i).__name__ for i in ins]


# ------------------------------------------------------------------ task_done
@pytest.mark.parametrize(
    "actor, attempt, retries, deps, keeps, tombstone",
    [
        # normal task with retries left: kept, with its argument pins
        (False, 0, 3, [b"d" * 20], True, ""),
        (False, 0, -1, [b"d" * 20], True, ""),  # unlimited retries
        (False, 0, 3, [], False, ""),  # nothing to pin, still kept
        # not rebuildable: a tombstone that says why; the task's end releases the pins
        (True, 0, 3, [b"d" * 20], False, ln.ACTOR_TASK),
        (False, 0, 0, [b"d" * 20], False, ln.RETRIES_DISABLED),  # max_retries=0
        (False, 2, 0, [b"d" * 20], False, ln.MAX_ATTEMPTS),  # retries used up
    ],
)
def test_task_done(
    actor: bool, attempt: int, retries: int, deps: list[bytes], keeps: bool, tombstone: str
) -> None:
    m = ln.Lineage()
    spec = _spec(actor=actor)._replace(attempt=attempt)
    keep, ins = _done(m, spec, deps, retries)
    assert keep is keeps
    assert ins == []
    entry = m.entry(spec.task_id)
    assert entry is not None and entry.reason == tombstone
    assert m.stats.entries == (0 if tombstone else 1)


# ------------------------------------------------------------------ lost
def test_lost_result_is_rerun_with_one_retry_fewer() -> None:
    m = ln.Lineage()
    spec = _spec()
    _done(m, spec, [b"d" * 20], 2)
    ins = m.lost([_ret(spec)])
    assert _kinds(ins) == ["MarkPending", "Resubmit"]
    assert ins[0] == ln.MarkPending([_ret(spec)])
    rerun = ins[1]
    assert isinstance(rerun, ln.Resubmit)
    assert rerun.spec.attempt == 1 and rerun.retries_left == 1 and rerun.deps == [b"d" * 20]
    assert m.stats.resubmitted == 1
    # lost again while the rerun is under way: nothing more
    assert m.lost([_ret(spec)]) == []
    # the rerun finished: kept again (pins kept), with the retries it has left
    keep, _ = _done(m, rerun.spec, rerun.deps, 1)
    assert keep
    assert m.lost([_ret(spec)])[1].retries_left == 0  # type: ignore[union-attr]


def test_unlimited_retries_stay_unlimited() -> None:
    m = ln.Lineage()
    spec = _spec()
    _done(m, spec, [], -1)
    rerun = m.lost([_ret(spec)])[1]
    assert isinstance(rerun, ln.Resubmit) and rerun.retries_left == -1


def test_chain_lost_together_pending_before_any_rerun() -> None:
    """a <- b: both lost with one node; both rerun, and every MarkPending comes first, so
    b's rerun waits for a instead of reading a's lost copy."""
    m = ln.Lineage()
    a = _spec(name="a")
    b = _spec(args=(("r", _ret(a), OWNER),), name="b")
    _done(m, a, [], 3)
    _done(m, b, [_ret(a)], 3)
    ins = m.lost([_ret(b), _ret(a)])
    assert _kinds(ins) == ["MarkPending", "MarkPending", "Resubmit", "Resubmit"]
    assert [i.spec.name for i in ins if isinstance(i, ln.Resubmit)] == ["b", "a"]


@pytest.mark.parametrize(
    "setup, error, text",
    [
        # ray.put() objects have no lineage
        ("put", rex.ObjectReconstructionFailedError, "ray.put()"),
        ("actor", rex.ObjectReconstructionFailedError, "actor method call"),
        ("no_retries", rex.ObjectReconstructionFailedError, "max_retries=0"),
        ("used_up", rex.ObjectReconstructionFailedMaxAttemptsExceededError, "all of its retries"),
        ("unknown", rex.ObjectReconstructionFailedError, "no record"),
        ("evicted", rex.ObjectReconstructionFailedLineageEvictedError, "evicted"),
    ],
)
def test_lost_and_not_rebuildable(setup: str, error: type, text: str) -> None:
    m = ln.Lineage(max_bytes=150)
    spec = _spec(actor=setup == "actor")
    oid = _ret(spec)
    if setup == "put":
        oid = ids.object_id_for(spec.task_id, ids.PUT_INDEX_BASE + 1)
    elif setup == "actor":
        _done(m, spec, [], 3)
    elif setup == "no_retries":
        _done(m, spec, [], 0)
    elif setup == "used_up":
        _done(m, spec, [], 1)
        m.lost([oid])  # the one retry is spent on a first rebuild ...
        _done(m, spec._replace(attempt=1), [], 0)  # ... which finished
    elif setup == "evicted":
        _done(m, spec, [], 3)
        _done(m, _spec(), [], 3)  # 200 bytes > 150: the oldest goes
    ins = m.lost([oid], "127.0.0.1:1000")
    assert _kinds(ins) == ["Fail"]
    fail = ins[0]
    assert isinstance(fail, ln.Fail) and fail.oid == oid
    assert type(fail.error) is error
    assert isinstance(fail.error, rex.ObjectLostError)
    assert text in str(fail.error) and "127.0.0.1:1000" in str(fail.error)
    assert m.stats.failed == 1


def test_lost_with_no_retries_left_becomes_a_tombstone_and_unpins() -> None:
    m = ln.Lineage()
    spec = _spec()
    _done(m, spec, [b"d" * 20], 1)
    entry = m.entry(spec.task_id)
    assert entry is not None
    entry.retries_left = 0  # (as after a rerun that used the last retry and was kept)
    ins = m.lost([_ret(spec)])
    assert _kinds(ins) == ["Unpin", "Fail"]
    assert ins[0] == ln.Unpin([b"d" * 20])
    assert m.entry(spec.task_id).reason == ln.MAX_ATTEMPTS  # type: ignore[union-attr]


# ------------------------------------------------------------------ freed
def test_freed_drops_lineage_and_unpins_once_every_store_return_is_gone() -> None:
    m = ln.Lineage()
    spec = _spec()._replace(num_returns=2)
    r1, r2 = ids.object_id_for(spec.task_id, 1), ids.object_id_for(spec.task_id, 2)
    keep, _ = m.task_done(spec, [b"d" * 20], 3, False, [r1, r2], 100)
    assert keep
    assert m.freed([r1]) == []
    assert m.freed([r2]) == [ln.Unpin([b"d" * 20])]
    assert m.entry(spec.task_id) is None and m.stats.entries == 0 and m.stats.bytes == 0
    assert m.freed([r2, b"x" * 20]) == []  # unknown or already gone: nothing


def test_freed_while_rerunning_does_not_unpin() -> None:
    """The rerun's task record holds the pins; its end releases them."""
    m = ln.Lineage()
    spec = _spec()
    _done(m, spec, [b"d" * 20], 3)
    m.lost([_ret(spec)])
    assert m.freed([_ret(spec)]) == []


# ------------------------------------------------------------------ eviction
def test_eviction_oldest_first_with_a_counter() -> None:
    m = ln.Lineage(max_bytes=250)
    specs = [_spec(name=f"t{i}") for i in range(4)]
    outs = [_done(m, s, [b"d%d" % i * 10], 3, size=100)[1] for i, s in enumerate(specs)]
    assert outs[0] == [] and outs[1] == []
    assert outs[2] == [ln.Unpin([b"d0" * 10]), ln.Evicted("t0", 1)]
    assert outs[3] == [ln.Unpin([b"d1" * 10]), ln.Evicted("t1", 2)]
    assert m.stats.evicted == 2 and m.stats.bytes == 200 and m.stats.entries == 2
    assert m.entry(specs[0].task_id).reason == ln.EVICTED  # type: ignore[union-attr]
    # an evicted task's store returns still drop its tombstone when freed
    assert m.freed([_ret(specs[0])]) == []
    assert m.entry(specs[0].task_id) is None


def test_eviction_skips_reruns_under_way() -> None:
    m = ln.Lineage(max_bytes=150)
    first, second = _spec(), _spec()
    _done(m, first, [], 3)
    m.lost([_ret(first)])  # rerunning: its spec is in use
    _, out = _done(m, second, [], 3)
    assert _kinds(out) == ["Evicted"] and out[0].task_name == "f"  # type: ignore[union-attr]
    assert m.entry(first.task_id).reason == ""  # type: ignore[union-attr]
    assert m.entry(second.task_id).reason == ln.EVICTED  # type: ignore[union-attr]


def test_spec_size_counts_inline_arguments() -> None:
    small = _spec()
    wire = (b"", b"p" * 5000, [b"b" * 3000])
    big = _spec(args=(("v", wire),))
    assert ln.spec_size(big) - ln.spec_size(small) >= 8000


@pytest.mark.parametrize(
    "env, expected",
    [
        ({}, ln.DEFAULT_MAX_LINEAGE_BYTES),
        ({"RAYOPS_MAX_LINEAGE_BYTES": "1000"}, 1000),
        ({"RAYOPS_MAX_LINEAGE_BYTES": " 0 "}, 0),
    ],
)
def test_settings_from_env(env: dict[str, str], expected: int) -> None:
    from rayops.core_worker.recovery import LineageSettings

    assert LineageSettings.from_env(env).max_bytes == expected


@pytest.mark.parametrize("raw", ["-1", "1GB", "1.5"])
def test_settings_refuse_bad_values(raw: str) -> None:
    from rayops.core_worker.recovery import LineageSettings

    with pytest.raises(ValueError, match=r"RAYOPS_MAX_LINEAGE_BYTES.*got"):
        LineageSettings.from_env({"RAYOPS_MAX_LINEAGE_BYTES": raw})
