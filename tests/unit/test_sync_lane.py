"""The actor side of sync lanes (``core_worker/sync_lane``) over real socket pairs: whole
and split frames, lanes read before the queue, and every way a lane is closed."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import pytest

from rayops.core_worker.sync_lane import LaneSet
from rayops.protocol import worker_messages as wm
from rayops.protocol.task_messages import TaskSpec
from rayops.rpc import framed


def _spec(i: int) -> TaskSpec:
    return TaskSpec(
        task_id=i.to_bytes(4, "little") * 6,
        job_id=1,
        name="f",
        function_id=b"",
        args=(),
        kwarg_names=(),
        num_returns=1,
        return_ids=(b"r" * 28,),
        owner=("127.0.0.1", 1),
        resources={},
        actor_id=b"a" * 16,
    )


def _frame(*msgs: tuple[Any, ...]) -> bytes:
    parts = framed._encode(list(msgs))
    return b"".join(bytes(p) for p in parts)


def _call(req_id: int, i: int) -> tuple[Any, ...]:
    return framed.request_tuple(req_id, wm.ActorCall(_spec(i)))


class _Harness:
    def __init__(self, max_frame: int = 1 << 20) -> None:
        self.ran: list[tuple[object, int, int]] = []
        self.closed: list[object] = []
        self.lanes = LaneSet(self._run, self.closed.append, max_frame)
        self.pairs: list[tuple[socket.socket, socket.socket]] = []

    def _run(self, conn: Any, req_id: int, msg: wm.ActorCall) -> None:
        self.ran.append((conn, req_id, int.from_bytes(msg.spec.task_id[:4], "little")))

    def lane(self, name: str) -> socket.socket:
        ours, theirs = socket.socketpair()
        ours.setblocking(False)
        self.pairs.append((ours, theirs))
        self.lanes.add(name, ours.detach())  # type: ignore[arg-type]
        return theirs

    def close(self) -> None:
        self.lanes.close()
        for _, theirs in self.pairs:
            theirs.close()


@pytest.fixture
def h() -> Any:
    harness = _Harness()
    yield harness
    harness.close()


def test_whole_frames_run_in_order_on_each_lane(h: _Harness) -> None:
    a, b = h.lane("A"), h.lane("B")
    a.sendall(_frame(_call(1, 10)) + _frame(_call(2, 11), _call(3, 12)))
    b.sendall(_frame(_call(1, 20)))
    h.lanes.drain()
    assert [r for r in h.ran if r[0] == "A"] == [("A", 1, 10), ("A", 2, 11), ("A", 3, 12)]
    assert [r for r in h.ran if r[0] == "B"] == [("B", 1, 20)]
    assert h.closed == []


def test_a_frame_read_in_part_is_completed_before_drain_returns(h: _Harness) -> None:
    a = h.lane("A")
    data = _frame(_call(7, 1))
    a.sendall(data[:5])
    later = threading.Timer(0.05, lambda: a.sendall(data[5:]))
    later.start()
    h.lanes.drain()  # must not return with half a frame: the queue would overtake it
    later.join()
    assert h.ran == [("A", 7, 1)]


def test_wait_runs_lane_calls_until_the_queue_has_an_item(h: _Harness) -> None:
    a = h.lane("A")
    queued: list[int] = []

    def feeder() -> None:
        a.sendall(_frame(_call(1, 1)))
        time.sleep(0.05)
        a.sendall(_frame(_call(2, 2)))
        time.sleep(0.05)
        queued.append(1)
        h.lanes.wake()

    t = threading.Thread(target=feeder)
    t.start()
    h.lanes.wait(lambda: bool(queued))
    t.join()
    assert [r[2] for r in h.ran] == [1, 2]


def test_a_call_on_a_lane_runs_before_a_queue_item_sent_after_it(h: _Harness) -> None:
    a = h.lane("A")
    a.sendall(_frame(_call(1, 1)))  # written whole before the queue item exists
    h.lanes.wait(lambda: True)  # the queue is ready at once: the lane still goes first
    assert [r[2] for r in h.ran] == [1]


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(lambda: b"", id="peer-closed"),
        pytest.param(lambda: _frame(framed.notify_tuple(wm.ExitActor("t"))), id="not-a-request"),
        pytest.param(lambda: _frame(framed.request_tuple(1, wm.ExitActor("t"))), id="not-a-call"),
        pytest.param(lambda: (1 << 30).to_bytes(4, "little"), id="frame-over-the-limit"),
        pytest.param(lambda: (8).to_bytes(4, "little") + b"\x00" * 8, id="undecodable"),
    ],
)
def test_a_lane_is_closed_on_anything_but_calls(h: _Harness, payload: Any) -> None:
    a = h.lane("A")
    data = payload()
    if data:
        a.sendall(data)
    else:
        a.shutdown(socket.SHUT_WR)
    h.lanes.drain()
    assert h.closed == ["A"]
    assert len(h.lanes) == 0
    assert h.ran == []


def test_wake_before_wait_is_not_lost(h: _Harness) -> None:
    h.lane("A")
    ready: list[int] = []
    ready.append(1)
    h.lanes.wake()
    h.lanes.wait(lambda: bool(ready))  # returns at once
