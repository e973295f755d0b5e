"""Behaviour of rayops.exceptions that user code and workers rely on."""

from __future__ import annotations

import copy
import errno
import json
import pickle
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import cloudpickle
import pytest

import rayops.exceptions as exc_mod
from rayops.exceptions import (
    ActorDiedError,
    ActorUnavailableError,
    GetTimeoutError,
    ObjectLostError,
    ObjectReconstructionFailedError,
    ObjectReconstructionFailedLineageEvictedError,
    ObjectReconstructionFailedMaxAttemptsExceededError,
    ObjectStoreFullError,
    OwnerDiedError,
    RayActorError,
    RayError,
    RayTaskError,
    ReferenceCountingAssertionError,
    TaskCancelledError,
    UnserializableException,
    WorkerCrashedError,
    make_task_error_picklable,
)

DUMPERS: list[Callable[[object], bytes]] = [pickle.dumps, cloudpickle.dumps]


def _raise_value_error() -> None:
    raise ValueError("bad input", 42)


def _task_error(
    fn: Callable[[], object], name: str = "my_task", actor_repr: str | None = None
) -> RayTaskError:
    """What a worker would produce for `fn` raising, as the plain error it ships."""
    try:
        fn()
    except BaseException as err:
        return RayTaskError.from_exception(err, name, 4321, "10.1.2.3", actor_repr)
    raise AssertionError("fn did not raise")


class NeedsArgs(Exception):
    """An exception whose __init__ needs more than it hands to Exception.__init__."""

    def __init__(self, code: int, detail: str) -> None:
        super().__init__(f"code {code}: {detail}")
        self.code = code
        self.detail = detail
        self._private = "kept"


class Unpicklable(Exception):
    def __init__(self) -> None:
        super().__init__("holds a lock")
        import threading

        self.lock = threading.Lock()


# --- hierarchy and exports -------------------------------------------------------------------


def test_all_lists_exactly_the_public_names() -> None:
    public = {
        name
        for name, value in vars(exc_mod).items()
        if not name.startswith("_") and getattr(value, "__module__", None) == exc_mod.__name__
    }
    assert set(exc_mod.__all__) == public
    for name in exc_mod.__all__:
        assert getattr(exc_mod, name) is not None


@pytest.mark.parametrize(
    ("child", "parents"),
    [
        (OwnerDiedError, (ObjectLostError, RayError, Exception)),
        (GetTimeoutError, (RayError, TimeoutError)),
        (ActorDiedError, (RayActorError, RayError)),
        (ActorUnavailableError, (RayActorError,)),
        (ReferenceCountingAssertionError, (ObjectLostError, AssertionError)),
        (
            ObjectReconstructionFailedMaxAttemptsExceededError,
            (ObjectReconstructionFailedError, ObjectLostError),
        ),
        (
            ObjectReconstructionFailedLineageEvictedError,
            (ObjectReconstructionFailedError, ObjectLostError),
        ),
        (exc_mod.RayChannelTimeoutError, (exc_mod.RaySystemError, TimeoutError)),
        (exc_mod.RayOpsConfigError, (RayError, ValueError)),
    ],
)
def test_hierarchy(child: type, parents: tuple[type, ...]) -> None:
    for parent in parents:
        assert issubclass(child, parent), (child, parent)


def test_every_exported_error_is_a_ray_error() -> None:
    for name in exc_mod.__all__:
        value = getattr(exc_mod, name)
        if isinstance(value, type):
            assert issubclass(value, RayError), name


def test_docstring_tree_names_every_error_class() -> None:
    doc = exc_mod.__doc__ or ""
    for name in exc_mod.__all__:
        if isinstance(getattr(exc_mod, name), type):
            assert f" {name}" in doc, name


def test_get_timeout_error_is_caught_as_builtin_timeout() -> None:
    with pytest.raises(TimeoutError):
        raise GetTimeoutError("Get timed out: some object(s) not ready.")


# --- RayTaskError ----------------------------------------------------------------------------


def test_dual_instance_is_both_types_and_caught_by_except_value_error() -> None:
    dual = _task_error(_raise_value_error).as_instanceof_cause()
    assert isinstance(dual, RayTaskError)
    assert isinstance(dual, ValueError)
    assert type(dual).__name__ == "RayTaskError(ValueError)"
    assert isinstance(dual.cause, ValueError)
    assert dual.args == ("bad input", 42)
    with pytest.raises(ValueError) as info:
        raise dual
    assert info.value is dual


def test_dual_class_is_reused_for_the_same_cause_class() -> None:
    first = _task_error(_raise_value_error).as_instanceof_cause()
    second = _task_error(_raise_value_error).as_instanceof_cause()
    assert type(first) is type(second)
    assert first.as_instanceof_cause() is first


def test_str_shows_where_the_task_ran_and_the_remote_traceback() -> None:
    text = str(_task_error(_raise_value_error, actor_repr="Counter(3)").as_instanceof_cause())
    first_line, *rest = text.splitlines()
    assert first_line == "ray::my_task() (pid=4321, ip=10.1.2.3, actor_repr=Counter(3))"
    assert "Traceback (most recent call last)" not in text
    assert "in _raise_value_error" in text
    assert 'raise ValueError("bad input", 42)' in text
    assert rest[-1] == "ValueError: ('bad input', 42)"


_FAKE_EXECUTOR = """
def execute(fn, wrap):
    try:
        return fn()
    except Exception as err:
        return wrap(err, "t", 1, "ip")
"""


def _run_in_fake_executor(fn: Callable[[], object]) -> RayTaskError:
    """Run `fn` from a frame whose code claims to live in rayops, like the worker's executor."""
    namespace: dict[str, Any] = {}
    exec(compile(_FAKE_EXECUTOR, exc_mod.__file__, "exec"), namespace)
    result = namespace["execute"](fn, RayTaskError.from_exception)
    assert isinstance(result, RayTaskError)
    return result


def test_from_exception_drops_leading_rayops_frames() -> None:
    err = _run_in_fake_executor(_raise_value_error)
    assert "in execute" not in err.traceback_str
    assert "in _raise_value_error" in err.traceback_str
    assert "ray::t() (pid=1, ip=ip)" in str(err)


def test_from_exception_keeps_rayops_frames_after_user_frames() -> None:
    # Only *leading* rayops frames are the executor; later ones are rayops code the user called.
    namespace: dict[str, Any] = {}
    exec(compile("def fail():\n    raise KeyError('k')\n", exc_mod.__file__, "exec"), namespace)
    err = _task_error(namespace["fail"])
    assert "in _task_error" in err.traceback_str
    assert "in fail" in err.traceback_str


def test_from_exception_keeps_frames_when_all_are_rayops() -> None:
    namespace: dict[str, Any] = {}
    code = compile("def fail():\n    raise KeyError('k')\n", exc_mod.__file__, "exec")
    exec(code, namespace)
    try:
        namespace["fail"]()
    except KeyError as caught:
        tb = caught.__traceback__
        assert tb is not None
        caught.__traceback__ = tb.tb_next  # only the rayops frame remains
        err = RayTaskError.from_exception(caught, "t", 1, "ip")
    assert "in fail" in err.traceback_str


def test_cause_with_required_init_args_still_becomes_dual() -> None:
    def raise_needs_args() -> None:
        raise NeedsArgs(7, "disk on fire")

    dual = _task_error(raise_needs_args).as_instanceof_cause()
    assert isinstance(dual, NeedsArgs)
    assert type(dual).__name__ == "RayTaskError(NeedsArgs)"
    # Attributes set by the cause's own __init__ are reachable on the dual instance.
    assert dual.code == 7
    assert dual.detail == "disk on fire"
    assert dual._private == "kept"
    with pytest.raises(AttributeError):
        getattr(dual, "no_such_attribute")  # noqa: B009
    assert dual.args == ("code 7: disk on fire",)


def test_oserror_cause_keeps_errno_and_filename() -> None:
    def open_missing() -> None:
        with open("/nonexistent/rayops-test-file"):
            pass

    for dumps in DUMPERS:
        dual = pickle.loads(dumps(_task_error(open_missing).as_instanceof_cause()))
        assert isinstance(dual, FileNotFoundError)
        assert dual.errno == errno.ENOENT
        assert dual.filename == "/nonexistent/rayops-test-file"


def test_exception_group_cause_becomes_dual() -> None:
    def raise_group() -> None:
        raise ExceptionGroup("several", [ValueError("a"), KeyError("b")])

    dual = _task_error(raise_group).as_instanceof_cause()
    assert isinstance(dual, ExceptionGroup)
    with pytest.raises(ExceptionGroup):
        raise dual


def test_unsubclassable_cause_falls_back_to_plain_task_error() -> None:
    class Final(Exception):
        def __init_subclass__(cls, **kwargs: Any) -> None:
            raise TypeError("Final may not be subclassed")

    def raise_final() -> None:
        raise Final("no subclasses")

    err = _task_error(raise_final)
    result = err.as_instanceof_cause()
    assert result is err
    assert type(result) is RayTaskError
    assert isinstance(result.cause, Final)


def test_cause_whose_new_needs_other_args_falls_back() -> None:
    class PickyNew(Exception):
        def __new__(cls, *args: Any, token: str) -> PickyNew:
            return super().__new__(cls, *args)

        def __init__(self, *args: Any, token: str) -> None:
            super().__init__(*args)

    def raise_picky() -> None:
        raise PickyNew("x", token="t")

    err = _task_error(raise_picky)
    assert err.as_instanceof_cause() is err


@pytest.mark.parametrize(
    "cause",
    [
        KeyboardInterrupt(),
        SystemExit(3),
        OwnerDiedError("ab" * 14),
        GetTimeoutError("inner get timed out"),
        Exception("plain"),
    ],
)
def test_causes_that_are_not_wrapped(cause: BaseException) -> None:
    # Non-Exception BaseExceptions would cancel or exit the caller; rayops errors keep their
    # own except clauses from matching (as in Ray); plain Exception needs no dual class.
    err = RayTaskError("t", "Traceback (most recent call last):\nX\n", cause, pid=1, ip="ip")
    assert err.as_instanceof_cause() is err


def test_no_cause() -> None:
    err = RayTaskError("t", "some text", None, pid=1, ip="ip")
    assert err.as_instanceof_cause() is err
    assert err.args == ()
    assert str(err) == "ray::t() (pid=1, ip=ip)\nsome text"


def test_nested_task_error_keeps_both_tracebacks_and_the_user_class() -> None:
    inner = _task_error(_raise_value_error, name="inner").as_instanceof_cause()

    def reraise_inner() -> None:
        raise inner

    outer = _task_error(reraise_inner, name="outer").as_instanceof_cause()
    assert isinstance(outer, ValueError)
    assert type(outer).__name__ == "RayTaskError(ValueError)"
    assert outer.cause is inner
    text = str(outer)
    assert text.startswith("ray::outer() (pid=4321, ip=10.1.2.3)")
    assert "in reraise_inner" in text
    assert "ray::inner() (pid=4321, ip=10.1.2.3)" in text
    assert "in _raise_value_error" in text
    for dumps in DUMPERS:
        restored = pickle.loads(dumps(outer))
        assert isinstance(restored, ValueError)
        assert isinstance(restored, RayTaskError)
        assert isinstance(restored.cause, RayTaskError)
        assert isinstance(restored.cause, ValueError)
        assert str(restored) == text


@pytest.mark.parametrize("dumps", DUMPERS)
def test_plain_and_dual_pickle_round_trip_in_process(dumps: Callable[[object], bytes]) -> None:
    plain = _task_error(_raise_value_error)
    for err in (plain, plain.as_instanceof_cause()):
        restored = pickle.loads(dumps(err))
        assert type(restored) is type(err)
        assert str(restored) == str(err)
        assert restored.args == err.args
        assert (restored.function_name, restored.pid, restored.ip) == ("my_task", 4321, "10.1.2.3")
        assert isinstance(restored.cause, ValueError)
        assert restored.cause.args == ("bad input", 42)


_CHILD_SCRIPT = """
import json, pickle, sys
import rayops.exceptions as ex
err = pickle.loads(sys.stdin.buffer.read())
result = {
    "type": type(err).__name__,
    "is_task_error": isinstance(err, ex.RayTaskError),
    "mro": [k.__name__ for k in type(err).__mro__],
    "str": str(err),
    "args": list(err.args),
    "cause_type": type(err.cause).__name__,
    "code": getattr(err, "code", None),
}
try:
    raise err
except ValueError:
    result["caught_as"] = "ValueError"
except ex.RayTaskError:
    result["caught_as"] = "RayTaskError"
print(json.dumps(result))
"""


def _load_in_child(payload: bytes) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD_SCRIPT],
        input=payload,
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


@pytest.mark.parametrize("dumps", DUMPERS)
def test_dual_survives_unpickling_in_another_process(dumps: Callable[[object], bytes]) -> None:
    dual = _task_error(_raise_value_error).as_instanceof_cause()
    result = _load_in_child(dumps(dual))
    assert result["type"] == "RayTaskError(ValueError)"
    assert result["is_task_error"]
    assert "ValueError" in result["mro"]
    assert result["caught_as"] == "ValueError"
    assert result["str"] == str(dual)
    assert result["args"] == ["bad input", 42]


def test_locally_defined_cause_class_crosses_processes_with_cloudpickle() -> None:
    # The child cannot import this class, so cloudpickle ships it by value.
    class LocalError(ValueError):
        def __init__(self, code: int) -> None:
            super().__init__(f"local code {code}")
            self.code = code

    def raise_local() -> None:
        raise LocalError(5)

    dual = _task_error(raise_local).as_instanceof_cause()
    result = _load_in_child(cloudpickle.dumps(dual))
    assert result["type"] == "RayTaskError(LocalError)"
    assert result["cause_type"] == "LocalError"
    assert result["code"] == 5
    assert result["caught_as"] == "ValueError"


# --- unpicklable causes ----------------------------------------------------------------------


def test_cause_that_fails_to_unpickle_is_replaced_but_keeps_its_class() -> None:
    def raise_needs_args() -> None:
        raise NeedsArgs(7, "disk on fire")

    err = _task_error(raise_needs_args)
    with pytest.raises(TypeError):
        pickle.loads(pickle.dumps(err))
    for dumps in DUMPERS:
        fixed = make_task_error_picklable(err, dumps=dumps, loads=pickle.loads)
        assert isinstance(fixed.cause, UnserializableException)
        assert fixed.cause.original_repr == "NeedsArgs('code 7: disk on fire')"
        assert "NeedsArgs" in (fixed.cause.original_type_name or "")
        assert "disk on fire" in fixed.cause.original_stack_trace
        restored = pickle.loads(dumps(fixed)).as_instanceof_cause()
        assert isinstance(restored, NeedsArgs)
        assert isinstance(restored, RayTaskError)
        assert restored.args == ("code 7: disk on fire",)
        assert str(restored) == str(err)


def test_cause_that_fails_to_pickle_falls_back_to_plain_task_error() -> None:
    class LocalUnpicklable(Unpicklable):
        pass

    def raise_unpicklable() -> None:
        raise LocalUnpicklable()

    err = _task_error(raise_unpicklable)
    # Plain pickle can neither pickle the lock nor find the local class by name.
    fixed = make_task_error_picklable(err, dumps=pickle.dumps, loads=pickle.loads)
    assert type(fixed) is RayTaskError
    assert isinstance(fixed.cause, UnserializableException)
    assert "LocalUnpicklable" in str(fixed.cause)
    assert "holds a lock" in str(fixed.cause)
    restored = pickle.loads(pickle.dumps(fixed))
    assert str(restored) == str(err)
    assert restored.args == ("holds a lock",)


def test_nested_task_error_with_unpicklable_cause_keeps_both_layers() -> None:
    def raise_needs_args() -> None:
        raise NeedsArgs(7, "disk on fire")

    inner = _task_error(raise_needs_args, name="inner").as_instanceof_cause()

    def reraise_inner() -> None:
        raise inner

    outer = _task_error(reraise_inner, name="outer")
    fixed = make_task_error_picklable(outer, dumps=pickle.dumps, loads=pickle.loads)
    restored = pickle.loads(pickle.dumps(fixed)).as_instanceof_cause()
    assert isinstance(restored, NeedsArgs)
    assert isinstance(restored, RayTaskError)
    assert isinstance(restored.cause, NeedsArgs)
    assert isinstance(restored.cause, RayTaskError)
    assert isinstance(restored.cause.cause, UnserializableException)
    assert str(restored) == str(outer)
    assert str(restored.cause) == str(inner)


def test_cause_with_broken_repr_and_unpicklable_args() -> None:
    class Broken(Exception):
        def __repr__(self) -> str:
            raise RuntimeError("repr is broken")

    def raise_broken() -> None:
        import threading

        raise Broken(threading.Lock())

    err = _task_error(raise_broken)
    fixed = make_task_error_picklable(err, dumps=pickle.dumps, loads=pickle.loads)
    restored = pickle.loads(pickle.dumps(fixed))
    assert type(restored) is RayTaskError
    assert isinstance(restored.cause, UnserializableException)
    assert "repr() raised RuntimeError" in restored.args[0]
    assert str(restored) == str(err)


def test_make_task_error_picklable_returns_picklable_errors_unchanged() -> None:
    err = _task_error(_raise_value_error)
    assert make_task_error_picklable(err) is err


def test_make_task_error_picklable_default_serializer_handles_unpicklable_state() -> None:
    def raise_unpicklable() -> None:
        raise Unpicklable()

    fixed = make_task_error_picklable(_task_error(raise_unpicklable))
    restored = pickle.loads(cloudpickle.dumps(fixed)).as_instanceof_cause()
    assert isinstance(restored, Unpicklable)
    assert isinstance(restored, RayTaskError)
    assert isinstance(restored.cause, UnserializableException)


# --- the other errors ------------------------------------------------------------------------


def _every_error_instance() -> list[RayError]:
    task_error = _task_error(_raise_value_error)
    return [
        RayError("base"),
        exc_mod.CrossLanguageError("JAVA", "java.lang.RuntimeException: boom"),
        TaskCancelledError(),
        TaskCancelledError(task_id=b"\x01\x02"),
        task_error,
        task_error.as_instanceof_cause(),
        RayActorError(),
        ActorDiedError(cause=task_error, actor_id="a1"),
        ActorDiedError(actor_id="a1", error_msg="It was killed by ray.kill().", preempted=True),
        ActorUnavailableError("connection refused", actor_id="a1"),
        exc_mod.ActorUnschedulableError("node n1 is dead"),
        exc_mod.AsyncioActorExit(),
        exc_mod.LocalRayletDiedError(),
        WorkerCrashedError(),
        exc_mod.RaySystemError("grpc down", "tb text"),
        exc_mod.RayChannelError("closed"),
        exc_mod.RayChannelTimeoutError("slow"),
        ObjectStoreFullError("need 10 MiB, 1 MiB free"),
        ObjectStoreFullError(),
        exc_mod.OutOfDiskError(),
        exc_mod.OutOfMemoryError(),
        exc_mod.NodeDiedError(),
        ObjectLostError("ab12", owner_address="10.0.0.1:5000", call_site="f.py:3 in g"),
        exc_mod.ObjectFetchTimedOutError("ab12"),
        exc_mod.ObjectFreedError("ab12"),
        ReferenceCountingAssertionError("ab12"),
        OwnerDiedError("ab12", owner_address="10.0.0.1:5000"),
        ObjectReconstructionFailedError("ab12"),
        ObjectReconstructionFailedMaxAttemptsExceededError("ab12"),
        ObjectReconstructionFailedLineageEvictedError("ab12"),
        exc_mod.ObjectRefStreamEndOfStreamError(),
        GetTimeoutError("Get timed out after 1.0 s."),
        exc_mod.PendingCallsLimitExceeded("too many calls"),
        exc_mod.PlacementGroupSchedulingError("removed"),
        exc_mod.RuntimeEnvSetupError("pip install foo failed"),
        exc_mod.TaskPlacementGroupRemoved(),
        exc_mod.ActorPlacementGroupRemoved(),
        exc_mod.TaskUnschedulableError("node n1 is dead"),
        exc_mod.RpcError("deadline exceeded", rpc_code=4),
        UnserializableException("stack", "X()", "mod.X"),
        exc_mod.RayOpsConfigError("cluster.yaml line 3: provider.type: expected str, found 3"),
        exc_mod.AuthenticationError("token rejected"),
    ]


def test_every_exported_error_class_is_covered() -> None:
    covered = {type(err) for err in _every_error_instance()}
    for name in exc_mod.__all__:
        value = getattr(exc_mod, name)
        if isinstance(value, type):
            assert value in covered, name


def test_copy_and_deepcopy_keep_the_dual_class() -> None:
    dual = _task_error(_raise_value_error).as_instanceof_cause()
    for clone in (copy.copy(dual), copy.deepcopy(dual)):
        assert type(clone) is type(dual)
        assert str(clone) == str(dual)


@pytest.mark.parametrize("dumps", DUMPERS)
def test_every_error_round_trips(dumps: Callable[[object], bytes]) -> None:
    for err in _every_error_instance():
        restored = pickle.loads(dumps(err))
        assert type(restored) is type(err)
        assert str(restored) == str(err)
        assert restored.args == err.args
        assert set(vars(restored)) == set(vars(err))


def test_task_cancelled_error() -> None:
    assert TaskCancelledError().task_id is None
    err = TaskCancelledError(task_id=b"\xab\xcd")
    assert err.task_id == b"\xab\xcd"
    assert "abcd" in str(err)
    assert "cancel" in str(err)
    assert "submit the task again" in str(err)


def test_object_lost_error_messages_name_the_object_and_next_step() -> None:
    lost = ObjectLostError("ab12", owner_address="10.0.0.1:5000", call_site="f.py:3 in g")
    assert (lost.object_ref_hex, lost.owner_address) == ("ab12", "10.0.0.1:5000")
    text = str(lost)
    assert "ab12" in text and "10.0.0.1:5000" in text and "f.py:3 in g" in text
    assert "max_retries" in text
    owner = str(OwnerDiedError("ab12"))
    assert "ab12" in owner and "owner" in owner
    assert "max_retries" in str(ObjectReconstructionFailedMaxAttemptsExceededError("ab12"))
    assert "lineage" in str(ObjectReconstructionFailedLineageEvictedError("ab12"))


def test_object_store_full_error() -> None:
    assert str(ObjectStoreFullError("need 10 MiB, 1 MiB free")) == "need 10 MiB, 1 MiB free"
    assert "object-store-memory" in str(ObjectStoreFullError())


def test_actor_died_error() -> None:
    task_error = _task_error(_raise_value_error, name="Actor.__init__")
    init_failed = ActorDiedError(cause=task_error, actor_id="a1")
    assert init_failed.actor_init_failed
    assert init_failed.cause is task_error
    assert "constructor" in str(init_failed) and "bad input" in str(init_failed)

    killed = ActorDiedError(actor_id=b"\x0a\x0b", error_msg="It was killed by ray.kill().")
    assert not killed.actor_init_failed
    assert killed.actor_id == b"\x0a\x0b"
    assert "0a0b" in str(killed)
    assert "It was killed by ray.kill()." in str(killed)
    assert "max_restarts" in str(killed)
    assert isinstance(killed, RayActorError)


def test_worker_crashed_error_says_what_to_do() -> None:
    assert "max_retries" in str(WorkerCrashedError())


def test_importing_the_module_loads_no_third_party_packages() -> None:
    # Loaded from its file, not through `rayops/__init__`, so only this module is measured.
    script = (
        "import importlib.util, sys\n"
        "before = set(sys.modules)\n"
        "spec = importlib.util.spec_from_file_location('rayops_exceptions', sys.argv[1])\n"
        "module = importlib.util.module_from_spec(spec)\n"
        "spec.loader.exec_module(module)\n"
        "print('\\n'.join(sorted(set(sys.modules) - before)))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, exc_mod.__file__],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    loaded = set(proc.stdout.split())
    for heavy in ("cloudpickle", "grpc", "numpy", "google.protobuf", "psutil"):
        assert heavy not in loaded, heavy
