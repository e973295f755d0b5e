"""Ray 2.60's API semantics on a real embedded cluster: async actor constructors, refs made
from ids, JobConfig, current_actor, the built-in actor methods, signature checks at
``.remote()``, the job's namespace inside workers, and the dropped-handle one-liner."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from typing import Any

import pytest

import rayops
from rayops import exceptions as rex
from rayops.job_config import JobConfig
from rayops.testing.waiting import process_alive, wait_for


@rayops.remote
def task_namespace() -> str:
    return rayops.get_runtime_context().namespace


@rayops.remote
class Named:
    def ping(self) -> str:
        return "pong"


@rayops.remote
def call_named(name: str) -> str:
    return rayops.get(rayops.get_actor(name).ping.remote())


# Runs first, before the module's shared cluster exists: it starts its own.
def test_job_config_sets_the_namespace(temp_dir: str) -> None:
    with pytest.raises(NotImplementedError, match=r"job_config.*metadata"):
        rayops.init(job_config=JobConfig(metadata={"team": "a"}), _temp_dir=temp_dir)
    with pytest.raises(TypeError, match=r"job_config"):
        rayops.init(job_config={"ray_namespace": "x"}, _temp_dir=temp_dir)
    assert not rayops.is_initialized()
    rayops.init(num_cpus=1, job_config=JobConfig(ray_namespace="jc-ns"), _temp_dir=temp_dir)
    try:
        assert rayops.get_runtime_context().namespace == "jc-ns"
        assert rayops.get(task_namespace.remote()) == "jc-ns"
        a = Named.options(name="jc-actor").remote()
        assert rayops.get(a.ping.remote()) == "pong"
        everywhere = rayops.util.list_named_actors(all_namespaces=True)
        assert {"name": "jc-actor", "namespace": "jc-ns"} in everywhere
    finally:
        rayops.shutdown()


def test_get_actor_inside_a_task_or_actor_sees_the_jobs_namespace(ray: Any) -> None:
    ns = rayops.get_runtime_context().namespace
    assert ns  # anonymous, but set, and the same in the job's workers
    assert rayops.get(task_namespace.remote()) == ns
    foo = Named.options(name="foo").remote()
    assert rayops.get(foo.ping.remote()) == "pong"
    assert rayops.get(call_named.remote("foo")) == "pong"

    @rayops.remote
    class Caller:
        def call(self, name: str) -> str:
            return rayops.get(rayops.get_actor(name).ping.remote())

        def namespace(self) -> str:
            return rayops.get_runtime_context().namespace

    caller = Caller.remote()
    assert rayops.get(caller.call.remote("foo")) == "pong"
    assert rayops.get(caller.namespace.remote()) == ns


def test_async_init_is_awaited_on_the_actors_loop(ray: Any) -> None:
    @rayops.remote
    class AsyncInit:
        async def __init__(self, value: int) -> None:
            await asyncio.sleep(0.05)
            self.value = value
            self.init_thread = threading.get_ident()

        async def get(self) -> tuple[int, bool]:
            return self.value, threading.get_ident() == self.init_thread

    a = AsyncInit.remote(7)
    assert rayops.get(a.get.remote(), timeout=30) == (7, True)

    named = Named.options(name="seen-by-async-init").remote()

    @rayops.remote
    class AsyncInitOnly:
        async def __init__(self) -> None:
            self.loop = asyncio.get_running_loop()
            # The constructor runs in the job's context: its namespace is visible.
            self.named = rayops.get_actor("seen-by-async-init")

        def same_loop(self) -> bool:
            return asyncio.get_running_loop() is self.loop

    assert rayops.get(AsyncInitOnly.remote().same_loop.remote(), timeout=30) is True
    del named

    @rayops.remote
    class AsyncInitFails:
        async def __init__(self) -> None:
            raise RuntimeError("no init for you")

        async def get(self) -> int:
            return 1

    with pytest.raises(rex.RayActorError, match="no init for you"):
        rayops.get(AsyncInitFails.remote().get.remote(), timeout=30)


def test_object_ref_from_id_bytes_and_random(ray: Any) -> None:
    ref = rayops.put("value")
    again = rayops.ObjectRef(ref.binary())
    assert again == ref
    del ref
    assert rayops.get(again) == "value"  # the rebuilt ref keeps the object alive
    r1, r2 = rayops.ObjectRef.from_random(), rayops.ObjectRef.from_random()
    assert r1 != r2 and len(r1.binary()) == len(again.binary())
    assert rayops.ObjectID is rayops.ObjectRef
    with pytest.raises(ValueError, match="bytes long"):
        rayops.ObjectRef(b"abc")
    with pytest.raises(TypeError, match="expects bytes"):
        rayops.ObjectRef("00" * 20)  # type: ignore[arg-type]


@rayops.remote
class Holder:
    LIMIT = 3

    def __init__(self, value: int) -> None:
        self.value = value

    def add(self, x: int, y: int = 0) -> int:
        return self.value + x + y

    def me(self) -> Any:
        return rayops.get_runtime_context().current_actor

    @staticmethod
    def twice(x: int) -> int:
        return 2 * x

    def pid(self) -> int:
        return os.getpid()


def test_current_actor_and_the_builtin_actor_methods(ray: Any) -> None:
    h = Holder.remote(10)
    assert rayops.get(h.__ray_ready__.remote()) is True
    me = rayops.get(h.me.remote())
    assert me == h and rayops.get(me.add.remote(1)) == 11
    assert rayops.get(h.__ray_call__.remote(lambda self, x: self.value * x, 3)) == 30
    with pytest.raises(RuntimeError, match="current_actor"):
        rayops.get_runtime_context().current_actor  # noqa: B018
    pid = rayops.get(h.pid.remote())
    rayops.get(h.__ray_terminate__.remote())
    wait_for("the actor to exit after __ray_terminate__", lambda: not process_alive(pid), 15)
    with pytest.raises(rex.RayActorError):
        rayops.get(h.add.remote(1), timeout=30)


def test_class_attributes_read_through_the_actor_class() -> None:
    assert Holder.LIMIT == 3
    assert Holder.twice(4) == 8
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        Holder.nope  # noqa: B018


@rayops.remote
def pair(a: int, b: int = 1) -> tuple[int, int]:
    return a, b


def test_remote_function_private_remote_takes_options(ray: Any) -> None:
    first, second = pair._remote(args=(1,), kwargs={"b": 2}, num_returns=2)
    assert rayops.get([first, second]) == [1, 2]
    assert rayops.get(pair._remote(args=[5])) == (5, 1)
    h = Holder._remote(args=(1,), kwargs={}, name="holder-private")
    assert rayops.get(rayops.get_actor("holder-private").add.remote(1)) == 2
    rayops.kill(h)


def test_arguments_that_do_not_bind_are_refused_at_remote(ray: Any) -> None:
    with pytest.raises(TypeError, match=r"pair\(\).*missing a required argument: 'a'"):
        pair.remote()
    with pytest.raises(TypeError, match=r"pair\(\).*too many positional"):
        pair.remote(1, 2, 3)
    with pytest.raises(TypeError, match=r"pair\(\).*unexpected keyword argument 'c'"):
        pair.options(name="x").remote(1, c=3)
    with pytest.raises(TypeError, match=r"Holder.__init__\(\).*missing"):
        Holder.remote()
    with pytest.raises(TypeError, match=r"Holder.__init__\(\).*too many"):
        Holder.options(name="never").remote(1, 2)
    assert "never" not in rayops.util.list_named_actors()
    h = Holder.remote(1)
    with pytest.raises(TypeError, match=r"add\(\).*missing a required argument: 'x'"):
        h.add.remote()
    with pytest.raises(TypeError, match=r"add\(\).*multiple values for argument 'x'"):
        h.add.remote(1, x=2)
    with pytest.raises(TypeError, match=r"twice\(\).*too many"):
        h.twice.remote(1, 2)
    assert rayops.get(h.twice.remote(3)) == 6
    assert rayops.get(h.add.remote(1, y=2)) == 4


def test_a_dropped_handle_keeps_the_actor_until_its_calls_finish(ray: Any) -> None:
    @rayops.remote
    class Slow:
        def work(self, seconds: float) -> int:
            time.sleep(seconds)
            return os.getpid()

    pid = rayops.get(Slow.remote().work.remote(0.5), timeout=30)
    wait_for("the actor to exit once its last call finished", lambda: not process_alive(pid), 15)
    refs = [Slow.remote().work.remote(0.2) for _ in range(3)]
    pids = rayops.get(refs, timeout=30)
    wait_for("the dropped actors to exit", lambda: not any(map(process_alive, pids)), 15)
