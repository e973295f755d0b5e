"""Actors on a real embedded cluster: ordering, concurrency, names, lifetimes, restarts."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

import rayops
from rayops import exceptions as rex
from rayops.node.processes import free_port
from rayops.testing.waiting import process_alive, wait_for
from rayops.util import ActorPool
from rayops.util.queue import Empty, Full, Queue


@rayops.remote
class Counter:
    def __init__(self, start: int = 0) -> None:
        self.value = start

    def inc(self, by: int = 1) -> int:
        self.value += by
        return self.value

    def get(self) -> int:
        return self.value

    def pid(self) -> int:
        return os.getpid()


def test_counter_example_output(tmp_path: Any) -> None:
    here = os.path.dirname(__file__)
    script = os.path.join(here, "..", "..", "examples", "counter_actor.py")
    env = {**os.environ, "RAYOPS_TEMP_DIR": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, script], capture_output=True, text=True, timeout=60, env=env
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [f"None got {i}" for i in range(1, 6)]


def test_basics_state_and_options(ray: Any) -> None:
    c = Counter.remote(10)
    assert rayops.get(c.inc.remote()) == 11
    assert rayops.get(c.inc.remote(by=5)) == 16
    assert rayops.get([c.inc.remote() for _ in range(10)])[-1] == 26
    with pytest.raises(TypeError):
        Counter(1)
    with pytest.raises(AttributeError):
        c.nope  # noqa: B018
    with pytest.raises(ValueError, match="max_restart"):
        Counter.options(max_restart=1)

    @rayops.remote
    class Multi:
        @rayops.method(num_returns=2)
        def pair(self) -> tuple[int, int]:
            return 1, 2

    m = Multi.remote()
    assert rayops.get(m.pair.remote()) == [1, 2]


def test_per_caller_order_with_shuffled_argument_readiness(ray: Any) -> None:
    @rayops.remote
    def slow_value(x: int, delay: float) -> int:
        time.sleep(delay)
        return x

    @rayops.remote
    class Recorder:
        def __init__(self) -> None:
            self.seen: list[int] = []

        def record(self, x: int) -> None:
            self.seen.append(x)

        def seen_list(self) -> list[int]:
            return self.seen

    r = Recorder.remote()
    # Earlier calls get arguments that become ready later.
    delays = [0.6, 0.0, 0.4, 0.0, 0.2, 0.0]
    for i, d in enumerate(delays):
        r.record.remote(slow_value.remote(i, d))
    assert rayops.get(r.seen_list.remote()) == list(range(len(delays)))

    # Calls the caller's thread writes itself (plain arguments, the actor connected) mixed
    # with calls that wait for an argument: none may overtake one submitted before it.
    r2 = Recorder.remote()
    rayops.get(r2.record.remote(-1))  # connected: the direct lane is open
    for i in range(40):
        r2.record.remote(slow_value.remote(i, 0.3) if i % 9 == 4 else i)
    assert rayops.get(r2.seen_list.remote()) == [-1, *range(40)]


def test_a_process_that_does_not_host_the_actor_refuses_its_calls(ray: Any) -> None:
    """A call reaching a process that is not the actor's (a new worker on the port of the
    actor's dead one) is refused with NOT_HOSTED, so the caller asks the GCS again instead of
    failing the call (actor_queue.NotHosted); nothing runs there."""
    from rayops.core_worker import state
    from rayops.protocol import worker_messages as wm
    from rayops.protocol.framed_message import RefusalCode
    from rayops.rpc import framed

    @rayops.remote
    def where() -> tuple[str, int]:
        from rayops.core_worker import state as worker_state

        host, port = worker_state.require().address
        return host, port

    @rayops.remote
    class Counter:
        def add(self) -> int:
            return 1

    plain = tuple(rayops.get(where.remote()))
    c = Counter.remote()
    assert rayops.get(c.add.remote()) == 1
    cw = state.require()
    spec, _ = cw.build_spec(
        name="add",
        function_id=b"",
        args=(),
        kwargs={},
        num_returns=1,
        resources={},
        actor_id=c._actor_id,
    )

    async def send() -> Any:
        conn = await cw.peer(plain)  # type: ignore[arg-type]
        return await conn.request(wm.ActorCall(spec))

    with pytest.raises(framed.Refused) as info:
        cw.run(send(), timeout=20)
    assert info.value.code is RefusalCode.NOT_HOSTED
    assert rayops.get(c.add.remote()) == 1


def test_each_threads_calls_run_in_its_order(ray: Any) -> None:
    """Several user threads submitting to one actor at once (the direct lane is shared):
    every thread's calls run in the order that thread made them."""

    @rayops.remote
    class Recorder:
        def __init__(self) -> None:
            self.seen: list[tuple[int, int]] = []

        def record(self, who: int, i: int) -> None:
            self.seen.append((who, i))

        def seen_list(self) -> list[tuple[int, int]]:
            return self.seen

    r = Recorder.remote()
    rayops.get(r.record.remote(-1, -1))
    per_thread = 150

    def caller(who: int) -> None:
        refs = []
        for i in range(per_thread):
            refs.append(r.record.remote(who, i))
            if i % 10 == 0:
                rayops.get(refs[-1])  # mix synchronous calls in
        rayops.get(refs)

    threads = [threading.Thread(target=caller, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    seen = rayops.get(r.seen_list.remote())
    assert len(seen) == 1 + 4 * per_thread
    for k in range(4):
        assert [i for who, i in seen if who == k] == list(range(per_thread)), k


def test_hand_offs_right_after_a_direct_call_find_it(ray: Any) -> None:
    """A call written through the direct lane is taken on the caller's IO thread late (when
    its reply arrives); a cancel or a dropped ref handed over right after it must still find
    it (threads.new_io_loop makes the IO thread catch up first)."""

    @rayops.remote(max_concurrency=2)
    class Sleeper:
        def __init__(self) -> None:
            self.calls = 0

        def nap(self, s: float) -> int:
            self.calls += 1
            deadline = time.monotonic() + s
            while time.monotonic() < deadline:
                if rayops.get_runtime_context().is_canceled():
                    return -1
                time.sleep(0.01)
            return self.calls

        def count(self) -> int:
            return self.calls

    a = Sleeper.remote()
    assert rayops.get(a.nap.remote(0)) == 1  # connected: the lane is open
    for i in range(50):  # each result dropped at once, its reply arriving later
        a.nap.remote(0)
        if i % 10 == 0:
            rayops.get(a.nap.remote(0))
    assert rayops.get(a.count.remote()) == 1 + 50 + 5
    ref = a.nap.remote(30)  # direct: nothing pending
    rayops.cancel(ref)
    start = time.monotonic()
    with pytest.raises(rex.TaskCancelledError):
        rayops.get(ref, timeout=20)
    assert time.monotonic() - start < 5
    assert rayops.get(a.nap.remote(0)) >= 57


def test_max_concurrency_really_overlaps(ray: Any) -> None:
    @rayops.remote(max_concurrency=4)
    class Barrier:
        def __init__(self) -> None:
            self.barrier = threading.Barrier(4, timeout=20)

        def wait(self) -> int:
            return self.barrier.wait()

    b = Barrier.remote()
    # Only returns if 4 calls are inside wait() at the same time.
    assert sorted(rayops.get([b.wait.remote() for _ in range(4)], timeout=30)) == [0, 1, 2, 3]


def test_async_actor_with_100_concurrent_awaits(ray: Any) -> None:
    @rayops.remote
    class AsyncActor:
        def __init__(self) -> None:
            self.event = asyncio.Event()
            self.waiting = 0

        async def wait(self) -> int:
            self.waiting += 1
            if self.waiting == 100:
                self.event.set()
            await asyncio.wait_for(self.event.wait(), 20)
            return 1

    a = AsyncActor.remote()
    assert sum(rayops.get([a.wait.remote() for _ in range(100)], timeout=60)) == 100


def test_concurrency_groups(ray: Any) -> None:
    @rayops.remote(concurrency_groups={"io": 2})
    class Grouped:
        def __init__(self) -> None:
            self.io_barrier = threading.Barrier(2, timeout=20)

        @rayops.method(concurrency_group="io")
        def io(self) -> int:
            return self.io_barrier.wait()

        def compute(self) -> str:
            return "ok"

    g = Grouped.remote()
    assert sorted(rayops.get([g.io.remote(), g.io.remote()], timeout=30)) == [0, 1]
    assert rayops.get(g.compute.remote()) == "ok"


def test_handles_passed_to_tasks_and_actors(ray: Any) -> None:
    c = Counter.remote()

    @rayops.remote
    def bump(counter: Any) -> int:
        return rayops.get(counter.inc.remote())

    @rayops.remote
    class Caller:
        def call(self, counter: Any) -> int:
            return rayops.get(counter.inc.remote(100))

    assert rayops.get(bump.remote(c)) == 1
    assert rayops.get(Caller.remote().call.remote(c)) == 101
    assert rayops.get(c.get.remote()) == 101


def test_named_actors_and_namespaces(ray: Any) -> None:
    a = Counter.options(name="counter-a").remote()
    assert rayops.get(a.inc.remote()) == 1
    same = rayops.get_actor("counter-a")
    assert rayops.get(same.inc.remote()) == 2
    again = Counter.options(name="counter-a", get_if_exists=True).remote()
    assert rayops.get(again.inc.remote()) == 3
    with pytest.raises(ValueError, match="already exists"):
        Counter.options(name="counter-a").remote()
    with pytest.raises(ValueError, match="counter-zzz"):
        rayops.get_actor("counter-zzz")
    other = Counter.options(name="counter-a", namespace="other").remote()
    assert rayops.get(other.inc.remote()) == 1
    assert "counter-a" in rayops.util.list_named_actors()
    everywhere = rayops.util.list_named_actors(all_namespaces=True)
    assert {"name": "counter-a", "namespace": "other"} in everywhere


def test_handle_out_of_scope_kills_actor_process(ray: Any) -> None:
    c = Counter.remote()
    pid = rayops.get(c.pid.remote())
    assert process_alive(pid)
    del c
    wait_for(
        "the actor process to exit after its handle was dropped", lambda: not process_alive(pid), 15
    )


def test_kill_and_dead_actor_errors(ray: Any) -> None:
    c = Counter.remote()
    pid = rayops.get(c.pid.remote())
    rayops.kill(c)
    with pytest.raises(rex.ActorDiedError) as info:
        rayops.get(c.inc.remote(), timeout=30)
    assert isinstance(info.value, rex.RayActorError)
    assert "killed" in str(info.value)
    wait_for("the killed actor's process to exit", lambda: not process_alive(pid), 10)


def test_constructor_failure_is_reported(ray: Any) -> None:
    @rayops.remote
    class Broken:
        def __init__(self) -> None:
            raise ValueError("bad constructor argument")

        def f(self) -> int:
            return 1

    b = Broken.remote()
    with pytest.raises(rex.ActorDiedError, match="bad constructor argument"):
        rayops.get(b.f.remote(), timeout=30)


def test_restart_after_sigkill(ray: Any) -> None:
    c = Counter.options(max_restarts=1, max_task_retries=1).remote()
    assert rayops.get(c.inc.remote()) == 1
    pid = rayops.get(c.pid.remote())
    os.kill(pid, signal.SIGKILL)
    # The call waits for the restart; the constructor ran again, so state is fresh.
    assert rayops.get(c.inc.remote(), timeout=60) == 1
    new_pid = rayops.get(c.pid.remote())
    assert new_pid != pid

    @rayops.remote
    def reconstructed(counter: Any) -> None:
        return None

    # Restarts are used up: the next crash is final.
    os.kill(new_pid, signal.SIGKILL)
    with pytest.raises(rex.ActorDiedError):
        rayops.get(c.inc.remote(), timeout=60)


def test_retried_calls_keep_submission_order_across_a_restart(ray: Any) -> None:
    """Calls cut off by the actor's death are re-sent in the order they were submitted.

    Each call records its argument; after the SIGKILL the restarted actor must see the
    retried calls in submission order (they once came back reversed: silent corruption
    of any state that depends on call order)."""

    @rayops.remote(max_restarts=2, max_task_retries=2)
    class Log:
        def __init__(self) -> None:
            self.seen: list[int] = []

        def pid(self) -> int:
            return os.getpid()

        def add(self, i: int) -> int:
            time.sleep(0.05)
            self.seen.append(i)
            return i

        def log(self) -> list[int]:
            return list(self.seen)

    log = Log.remote()
    pid = rayops.get(log.pid.remote(), timeout=30)
    refs = [log.add.remote(i) for i in range(20)]
    # Kill once a few calls have run, so that calls are in flight and queued.
    deadline = time.monotonic() + 30
    while not rayops.wait([refs[2]], timeout=0)[0]:
        assert time.monotonic() < deadline, "the first calls never finished"
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    assert rayops.get(refs, timeout=60) == list(range(20))
    # The restarted actor's log: the calls it ran, in the order it ran them.
    after = rayops.get(log.log.remote(), timeout=30)
    assert len(after) >= 5, f"the kill came too late to test anything: {after}"
    assert after == list(range(20 - len(after), 20)), f"order after the restart: {after}"


def test_actor_call_retried_after_an_application_error(ray: Any) -> None:
    """retry_exceptions on an actor method: the call runs again on the same actor, counted
    against max_task_retries; an exception not listed is not retried."""

    @rayops.remote
    class Flaky:
        def __init__(self) -> None:
            self.calls = 0

        @rayops.method(retry_exceptions=[ValueError], max_task_retries=2)
        def twice_then_ok(self) -> int:
            self.calls += 1
            if self.calls < 3:
                raise ValueError(f"attempt {self.calls}")
            return self.calls

        @rayops.method(retry_exceptions=[ValueError], max_task_retries=5)
        def wrong_kind(self) -> None:
            raise KeyError("not retried")

        def count(self) -> int:
            return self.calls

    f = Flaky.remote()
    assert rayops.get(f.twice_then_ok.remote(), timeout=30) == 3
    with pytest.raises(rex.RayTaskError, match="not retried"):
        rayops.get(f.wrong_kind.remote(), timeout=30)
    assert rayops.get(f.count.remote(), timeout=30) == 3
    # Retries used up: the error comes back.
    g = Flaky.remote()
    with pytest.raises(rex.RayTaskError, match="attempt 2"):
        rayops.get(g.twice_then_ok.options(max_task_retries=1).remote(), timeout=30)


def test_was_current_actor_reconstructed(ray: Any) -> None:
    @rayops.remote(max_restarts=1)
    class Phoenix:
        def info(self) -> tuple[int, bool]:
            return os.getpid(), rayops.get_runtime_context().was_current_actor_reconstructed

    p = Phoenix.remote()
    pid, again = rayops.get(p.info.remote())
    assert again is False
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 60
    while True:
        try:
            pid2, again = rayops.get(p.info.remote(), timeout=30)
            break
        except rex.ActorDiedError:
            assert time.monotonic() < deadline
    assert pid2 != pid and again is True


def test_exit_actor_and_terminate(ray: Any) -> None:
    @rayops.remote
    class Quitter:
        def quit(self) -> None:
            rayops.actor.exit_actor()

        def ping(self) -> str:
            return "pong"

    q = Quitter.options(max_restarts=2).remote()
    assert rayops.get(q.ping.remote()) == "pong"
    rayops.get(q.quit.remote(), timeout=30)
    with pytest.raises(rex.ActorDiedError, match="intentionally"):
        rayops.get(q.ping.remote(), timeout=30)

    t = Quitter.remote()
    assert rayops.get(t.ping.remote()) == "pong"
    t.__ray_terminate__.remote()
    with pytest.raises(rex.ActorDiedError):
        rayops.get(t.ping.remote(), timeout=30)


def test_max_pending_calls(ray: Any) -> None:
    @rayops.remote(max_pending_calls=2)
    class Slow:
        def nap(self) -> None:
            time.sleep(0.5)

    s = Slow.remote()
    refs = [s.nap.remote(), s.nap.remote()]
    with pytest.raises(rex.PendingCallsLimitExceeded):
        s.nap.remote()
    rayops.get(refs)


def test_actor_pool(ray: Any) -> None:
    @rayops.remote
    class Doubler:
        def double(self, x: int) -> int:
            return 2 * x

    pool = ActorPool([Doubler.remote() for _ in range(2)])
    assert list(pool.map(lambda a, v: a.double.remote(v), range(6))) == [0, 2, 4, 6, 8, 10]
    assert sorted(pool.map_unordered(lambda a, v: a.double.remote(v), range(4))) == [0, 2, 4, 6]
    pool.submit(lambda a, v: a.double.remote(v), 5)
    pool.submit(lambda a, v: a.double.remote(v), 6)
    pool.submit(lambda a, v: a.double.remote(v), 7)  # queued until an actor frees up
    assert pool.has_next()
    assert [pool.get_next(), pool.get_next(), pool.get_next()] == [10, 12, 14]
    assert not pool.has_next()
    idle = pool.pop_idle()
    assert idle is not None and pool.has_free()
    pool.push(idle)
    with pytest.raises(ValueError):
        pool.push(idle)


def test_queue(ray: Any) -> None:
    q = Queue(maxsize=2)
    assert q.empty() and q.size() == 0
    q.put(1)
    q.put_nowait(2)
    assert q.full()
    with pytest.raises(Full):
        q.put_nowait(3)
    with pytest.raises(Full):
        q.put(3, timeout=0.2)
    assert q.get() == 1 and q.get_nowait() == 2
    with pytest.raises(Empty):
        q.get_nowait()
    with pytest.raises(Empty):
        q.get(timeout=0.2)

    @rayops.remote
    def producer(queue: Queue) -> None:
        for i in range(5):
            queue.put(i)

    producer.remote(q)
    assert [q.get(timeout=30) for _ in range(5)] == [0, 1, 2, 3, 4]

    async def use_async() -> Any:
        await q.put_async("a")
        return await q.get_async()

    assert asyncio.run(use_async()) == "a"
    q.shutdown()


def test_detached_named_actor_outlives_its_driver(temp_dir: str) -> None:
    """A second driver finds a detached actor after the first one exited."""
    with _head_node(os.path.join(temp_dir, "detached")) as tmp:
        first = textwrap.dedent(
            """
            import rayops
            rayops.init("auto", _temp_dir=TMP, namespace="keep")
            @rayops.remote
            class Store:
                def __init__(self): self.items = []
                def add(self, x): self.items.append(x); return len(self.items)
                def all(self): return self.items
            s = Store.options(name="store", lifetime="detached").remote()
            print(rayops.get(s.add.remote("from-first")))
            """
        ).replace("TMP", repr(tmp))
        second = textwrap.dedent(
            """
            import rayops
            rayops.init("auto", _temp_dir=TMP, namespace="keep")
            s = rayops.get_actor("store")
            print(rayops.get(s.add.remote("from-second")), rayops.get(s.all.remote()))
            rayops.kill(s)
            """
        ).replace("TMP", repr(tmp))
        out1 = subprocess.run(
            [sys.executable, "-c", first], capture_output=True, text=True, timeout=60
        )
        assert out1.returncode == 0, out1.stderr
        assert out1.stdout.strip() == "1"
        out2 = subprocess.run(
            [sys.executable, "-c", second], capture_output=True, text=True, timeout=60
        )
        assert out2.returncode == 0, out2.stderr
        assert out2.stdout.strip() == "2 ['from-first', 'from-second']"


def test_non_detached_actor_dies_with_owner(temp_dir: str) -> None:
    with _head_node(os.path.join(temp_dir, "owned")) as tmp:
        script = textwrap.dedent(
            """
            import os, rayops
            rayops.init("auto", _temp_dir=TMP)
            @rayops.remote
            class A:
                def pid(self): return os.getpid()
            a = A.options(name="owned").remote()
            print(rayops.get(a.pid.remote()), flush=True)
            os._exit(0)  # the owner vanishes without cleaning up
            """
        ).replace("TMP", repr(tmp))
        out = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
        )
        assert out.returncode == 0, out.stderr
        pid = int(out.stdout.strip())
        wait_for("the actor to die with its owner", lambda: not process_alive(pid), 15)


@contextlib.contextmanager
def _head_node(tmp: str) -> Iterator[str]:
    """A detached head node (``rayops start --head``) in its own temp dir, stopped after."""
    cli = [sys.executable, "-m", "rayops.cli.main"]
    r = subprocess.run(
        [*cli, "start", "--head", "--port", str(free_port("127.0.0.1")), "--num-cpus", "2",
         "--temp-dir", tmp, "--node-ip-address", "127.0.0.1"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    try:
        yield tmp
    finally:
        subprocess.run([*cli, "stop", "--temp-dir", tmp], capture_output=True, timeout=60)
