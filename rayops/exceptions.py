"""The exception types rayops raises to user code, with Ray's names and meanings.

This module owns every error a program written against Ray's API can catch from rayops
(`from rayops.exceptions import RayTaskError` works where `ray.exceptions` did), plus a few of
rayops' own. It must stay cheap to import: it is loaded by `import rayops`, so it uses the
standard library only, does no I/O at import time, and imports `traceback` and `pickle` (together
~20 ms) only inside the functions that need them.

Hierarchy:

* RayError
  + CrossLanguageError
  + TaskCancelledError
  + RayTaskError                 - a task raised; `.as_instanceof_cause()` is also the cause's type
  + RayActorError
  | + ActorDiedError
  | + ActorUnavailableError
  + ActorUnschedulableError
  + AsyncioActorExit
  + LocalRayletDiedError
  + WorkerCrashedError
  + RaySystemError
  | + RayChannelError
  |   + RayChannelTimeoutError     (also TimeoutError)
  + ObjectStoreFullError
  + OutOfDiskError
  + OutOfMemoryError
  + NodeDiedError
  + ObjectLostError
  | + ObjectFetchTimedOutError
  | + ObjectFreedError
  | + ReferenceCountingAssertionError (also AssertionError)
  | + OwnerDiedError
  | + ObjectReconstructionFailedError
  |   + ObjectReconstructionFailedMaxAttemptsExceededError
  |   + ObjectReconstructionFailedLineageEvictedError
  + ObjectRefStreamEndOfStreamError
  + GetTimeoutError              (also TimeoutError)
  + PendingCallsLimitExceeded
  + PlacementGroupSchedulingError
  + RuntimeEnvSetupError
  + TaskPlacementGroupRemoved
  + ActorPlacementGroupRemoved
  + TaskUnschedulableError
  + RpcError
  + UnserializableException
  + RayOpsConfigError            (also ValueError; rayops only)
  + AuthenticationError          (rayops only)

Every error keeps its data as attributes and pickles by restoring those attributes without
calling `__init__` again (see `RayError.__reduce__`), so errors cross process boundaries intact.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from types import TracebackType
from typing import Any

__all__ = [
    "ActorDiedError",
    "ActorPlacementGroupRemoved",
    "ActorUnavailableError",
    "ActorUnschedulableError",
    "AsyncioActorExit",
    "AuthenticationError",
    "CrossLanguageError",
    "GetTimeoutError",
    "LocalRayletDiedError",
    "NodeDiedError",
    "ObjectFetchTimedOutError",
    "ObjectFreedError",
    "ObjectLostError",
    "ObjectReconstructionFailedError",
    "ObjectReconstructionFailedLineageEvictedError",
    "ObjectReconstructionFailedMaxAttemptsExceededError",
    "ObjectRefStreamEndOfStreamError",
    "ObjectStoreFullError",
    "OutOfDiskError",
    "OutOfMemoryError",
    "OwnerDiedError",
    "PendingCallsLimitExceeded",
    "PlacementGroupSchedulingError",
    "RayActorError",
    "RayChannelError",
    "RayChannelTimeoutError",
    "RayError",
    "RayOpsConfigError",
    "RaySystemError",
    "RayTaskError",
    "ReferenceCountingAssertionError",
    "RpcError",
    "RuntimeEnvSetupError",
    "TaskCancelledError",
    "TaskPlacementGroupRemoved",
    "TaskUnschedulableError",
    "UnserializableException",
    "WorkerCrashedError",
    "make_task_error_picklable",
]


def _id_text(value: object) -> str:
    """Render an id given as an id object, bytes or str the way logs and the CLI show it."""
    hex_method = getattr(value, "hex", None)
    if callable(hex_method):
        return str(hex_method())
    return str(value)


def _restore_error(cls: type[BaseException], args: tuple[Any, ...], state: dict[str, Any]) -> Any:
    """Rebuild a pickled error from its class, args and attributes without calling `__init__`.

    `__init__` signatures differ per class and format `args` into a message, so replaying it
    with the stored `args` would be wrong; restoring the attributes is exact.
    """
    err = cls.__new__(cls)
    err.args = args
    err.__dict__.update(state)
    return err


class RayError(Exception):
    """Base of every rayops error; `except RayError` catches all of them."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (_restore_error, (type(self), self.args, dict(self.__dict__)))


class CrossLanguageError(RayError):
    """A task written in another language raised; the text is that language's own report."""

    def __init__(self, language: str, formatted_exception: str) -> None:
        self.language = language
        self.formatted_exception = formatted_exception
        super().__init__(f"An exception was raised by {language} code:\n{formatted_exception}")


class TaskCancelledError(RayError):
    """The task was cancelled with `ray.cancel()` (or a task it depends on was)."""

    def __init__(self, task_id: object = None, error_message: str | None = None) -> None:
        self.task_id = task_id
        self.error_message = error_message
        if error_message:
            message = error_message
        elif task_id is None:
            message = (
                "This task or one of its dependencies was cancelled by ray.cancel(). "
                "Its result will never be available; submit the task again if you need it."
            )
        else:
            message = (
                f"Task {_id_text(task_id)} was cancelled by ray.cancel(). Its result will never "
                "be available; submit the task again if you need it."
            )
        super().__init__(message)


class RayTaskError(RayError):
    """A remote task or actor method raised an exception while it ran.

    `cause` is the original exception and `traceback_str` the traceback formatted in the worker.
    `ray.get()` raises `as_instanceof_cause()`, which is also an instance of the cause's class,
    so `except ValueError` around `ray.get()` catches a task's ValueError.
    """

    def __init__(
        self,
        function_name: str,
        traceback_str: str,
        cause: BaseException | None,
        proctitle: str | None = None,
        pid: int | None = None,
        ip: str | None = None,
        actor_repr: str | None = None,
        actor_id: object = None,
    ) -> None:
        self.function_name = function_name
        self.traceback_str = traceback_str
        self.cause = cause
        self.proctitle = proctitle if proctitle is not None else f"ray::{function_name}"
        self.pid = os.getpid() if pid is None else pid
        self.ip = ip
        self.actor_repr = actor_repr
        self.actor_id = actor_id
        # The cause's args, so code that reads `err.args[0]` after `except ValueError as err`
        # sees what the task passed to ValueError.
        super().__init__(*(cause.args if cause is not None else ()))

    @classmethod
    def from_exception(
        cls,
        exc: BaseException,
        function_name: str,
        pid: int,
        ip: str,
        actor_repr: str | None = None,
        *,
        actor_id: object = None,
        proctitle: str | None = None,
    ) -> RayTaskError:
        """Wrap `exc`, caught in a worker, with its traceback formatted as text.

        Leading frames inside the rayops package (the worker's own execution machinery) are
        dropped so the traceback starts at the user's function; if every frame is rayops' (the
        failure was in rayops itself, e.g. argument decoding), all frames are kept.
        """
        import traceback

        tb_text = "".join(
            traceback.format_exception(type(exc), exc, _skip_rayops_frames(exc.__traceback__))
        )
        return cls(
            function_name,
            tb_text,
            exc,
            proctitle=proctitle,
            pid=pid,
            ip=ip,
            actor_repr=actor_repr,
            actor_id=actor_id,
        )

    def as_instanceof_cause(self) -> RayTaskError:
        """Return this error as an instance of both RayTaskError and the cause's class.

        Returns `self` when no such class is needed or possible: no cause, a cause whose class
        RayTaskError already is (Exception), a rayops error (wrapping those would change which
        `except` clauses fire, as in Ray), a BaseException that is not an Exception (turning a
        task's CancelledError or SystemExit into one in the caller would cancel or exit the
        caller), or a class that cannot be subclassed.
        A nested task error (a task re-raised a RayTaskError from a sub-task) takes the
        innermost user exception's class and keeps the sub-task error as `cause`, so both
        tracebacks survive.
        """
        if isinstance(self, _DualRayTaskError):
            return self
        base = _user_cause_class(self.cause)
        if base is None:
            return self
        dual_cls = _dual_class(base)
        if dual_cls is None:
            return self
        return _build_dual(dual_cls, self.args, self._fields()) or self

    def _fields(self) -> dict[str, Any]:
        return {
            "function_name": self.function_name,
            "traceback_str": self.traceback_str,
            "cause": self.cause,
            "proctitle": self.proctitle,
            "pid": self.pid,
            "ip": self.ip,
            "actor_repr": self.actor_repr,
            "actor_id": self.actor_id,
        }

    def __str__(self) -> str:
        details = f"pid={self.pid}, ip={self.ip if self.ip is not None else 'unknown'}"
        if self.actor_repr:
            details += f", actor_repr={self.actor_repr}"
        lines = self.traceback_str.rstrip("\n").split("\n")
        # The header line is replaced by where the task ran; the rest is the remote traceback.
        if lines and lines[0].startswith("Traceback (most recent call last)"):
            lines = lines[1:]
        return "\n".join([f"{self.proctitle}() ({details})", *lines])


class _DualRayTaskError(RayTaskError):
    """Marker base of the generated `RayTaskError(<cause class>)` classes."""

    _rayops_cause_class: type[BaseException]

    def __getattr__(self, name: str) -> Any:
        # Attributes set by the cause's __init__ (which is never run on this object) are read
        # from the cause. Dunder lookups are not forwarded: pickle and copy probe those (e.g.
        # __setstate__) and must see this object's own protocol, not the cause's.
        if (name.startswith("__") and name.endswith("__")) or name == "cause":
            raise AttributeError(name)
        cause = self.__dict__.get("cause")
        if cause is None:
            raise AttributeError(name)
        return getattr(cause, name)

    def __reduce__(self) -> tuple[Any, ...]:
        # The generated class cannot be found by name in another process, so the instance is
        # rebuilt from the user's class, which pickles by reference (or by value, cloudpickle).
        extra = {k: v for k, v in self.__dict__.items() if k not in self._fields()}
        return (
            _rebuild_dual_task_error,
            (self._rayops_cause_class, self.args, self._fields(), extra),
        )


# One generated class per cause class, so all errors of one kind share a type. Written with
# setdefault (atomic under the GIL) so two threads racing to create one agree on the winner.
_dual_classes: dict[type[BaseException], type[RayTaskError] | None] = {}


def _user_cause_class(cause: BaseException | None) -> type[BaseException] | None:
    """The user exception class a RayTaskError should also be, or None for a plain one."""
    if isinstance(cause, _DualRayTaskError):
        return cause._rayops_cause_class
    if cause is None or isinstance(cause, RayError):
        return None
    cls = type(cause)
    if not issubclass(cls, Exception) or issubclass(RayTaskError, cls):
        return None
    return cls


def _dual_class(base: type[BaseException]) -> type[RayTaskError] | None:
    """The cached `RayTaskError(<base>)` class, or None if `base` cannot be subclassed."""
    if base in _dual_classes:
        return _dual_classes[base]
    name = f"RayTaskError({base.__name__})"
    namespace = {
        "__module__": __name__,
        "__qualname__": name,
        "__doc__": f"A RayTaskError whose cause is a {base.__qualname__}.",
        "_rayops_cause_class": base,
        # RayTaskError's rendering, even if the cause class overrides __str__.
        "__str__": RayTaskError.__str__,
    }
    dual: type[RayTaskError] | None
    try:
        dual = type(name, (_DualRayTaskError, base), namespace)
    except Exception:
        # TypeError for final classes and C layouts that clash with RayTaskError's;
        # anything from a hostile __init_subclass__.
        dual = None
    return _dual_classes.setdefault(base, dual)


def _build_dual(
    dual_cls: type[RayTaskError], args: tuple[Any, ...], fields: dict[str, Any]
) -> RayTaskError | None:
    """Instantiate `dual_cls` without running the cause class's `__init__`.

    That `__init__` may require arguments we do not have. Some classes do need their `__new__`
    (OSError, ExceptionGroup), so it is called with the cause's args first, then with none.
    Returns None if neither works.
    """
    err: RayTaskError | None = None
    for new_args in (args, ()):
        try:
            err = dual_cls.__new__(dual_cls, *new_args)
            break
        except Exception:
            continue
    if err is None:
        return None
    _init_builtin_base(err, args)
    cause = fields.get("cause")
    if isinstance(err, OSError) and isinstance(cause, OSError):
        # OSError keeps file names out of args, so its __init__ above could not restore them.
        err.filename, err.filename2 = cause.filename, cause.filename2
    err.args = args
    err.__dict__.update(fields)
    return err


_HEAPTYPE_FLAG = 1 << 9  # Py_TPFLAGS_HEAPTYPE: set on classes defined in Python code


def _init_builtin_base(err: BaseException, args: tuple[Any, ...]) -> None:
    """Run the nearest built-in exception `__init__` so C-level fields (OSError.errno) are set.

    Built-in initializers only store their arguments, unlike user ones, which may require
    arguments we do not have or have side effects.
    """
    for klass in type(err).__mro__:
        if not klass.__flags__ & _HEAPTYPE_FLAG and issubclass(klass, BaseException):
            try:
                klass.__init__(err, *args)
            except Exception:
                pass
            return


def _rebuild_dual_task_error(
    base: type[BaseException],
    args: tuple[Any, ...],
    fields: dict[str, Any],
    extra: dict[str, Any],
) -> RayTaskError:
    """Unpickle a `RayTaskError(<base>)`; falls back to a plain RayTaskError if it must."""
    dual_cls = _dual_class(base)
    err = _build_dual(dual_cls, args, fields) if dual_cls is not None else None
    if err is None:
        err = _restore_error(RayTaskError, args, fields)
    err.__dict__.update(extra)
    return err


def _rayops_package_dir() -> str:
    return os.path.dirname(os.path.abspath(__file__)) + os.sep


def _skip_rayops_frames(tb: TracebackType | None) -> TracebackType | None:
    """`tb` without its leading frames from rayops' own files, or all of it if none remain."""
    package_dir = _rayops_package_dir()
    current = tb
    while current is not None and _frame_file(current).startswith(package_dir):
        current = current.tb_next
    return current if current is not None else tb


def _frame_file(tb: TracebackType) -> str:
    return os.path.abspath(tb.tb_frame.f_code.co_filename)


class UnserializableException(RayError):
    """Stands in for a task's exception that could not be pickled or unpickled.

    It keeps what can be kept: the original class name, repr and formatted traceback.
    """

    def __init__(
        self,
        original_stack_trace: str,
        original_repr: str | None = None,
        original_type_name: str | None = None,
    ) -> None:
        self.original_stack_trace = original_stack_trace
        self.original_repr = original_repr
        self.original_type_name = original_type_name
        what = original_type_name or "exception"
        super().__init__(
            f"The task raised a {what} that could not be serialized, so only its text is "
            f"available. To get the exception object itself, make it picklable (keep its data "
            f"in attributes and let __init__ accept its own args, or define __reduce__). "
            f"Original exception: {original_repr}\n{original_stack_trace}"
        )

    @classmethod
    def from_exception(cls, exc: BaseException) -> UnserializableException:
        """Capture the text of `exc` so it can travel where `exc` itself cannot."""
        import traceback

        stack = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        return cls(stack, _safe_repr(exc), f"{type(exc).__module__}.{type(exc).__qualname__}")


def _safe_repr(value: object) -> str:
    # A broken __repr__ in user code must not turn error reporting into a second error.
    try:
        return repr(value)
    except Exception as repr_err:
        return f"<{type(value).__qualname__} object; repr() raised {type(repr_err).__name__}>"


def _round_trips(
    value: object, dumps: Callable[[object], bytes], loads: Callable[[bytes], Any]
) -> bool:
    try:
        loads(dumps(value))
    except Exception:
        return False
    return True


def _default_serializer() -> tuple[Callable[[object], bytes], Callable[[bytes], Any]]:
    # Imported here, not at module import: both cost start-up time for every `import rayops`.
    import pickle

    try:
        import cloudpickle
    except ImportError:
        return pickle.dumps, pickle.loads
    return cloudpickle.dumps, pickle.loads


def make_task_error_picklable(
    err: RayTaskError,
    *,
    dumps: Callable[[object], bytes] | None = None,
    loads: Callable[[bytes], Any] | None = None,
) -> RayTaskError:
    """Return `err`, or a copy whose cause is an UnserializableException if `err` can't pickle.

    Round-trips rather than only dumping, because the classic failure is on load: an exception
    whose `__init__` needs more arguments than it passed to `Exception.__init__`. When the
    cause's class itself still pickles, the copy keeps being an instance of it (after
    `as_instanceof_cause()`), so the caller's `except` clauses still match.
    """
    if dumps is None or loads is None:
        default_dumps, default_loads = _default_serializer()
        dumps = dumps or default_dumps
        loads = loads or default_loads
    if _round_trips(err, dumps, loads):
        return err
    cause = err.cause
    replacement: BaseException | None = None
    if isinstance(cause, RayTaskError):
        # A sub-task's error: fix it the same way, so its traceback and class survive.
        replacement = make_task_error_picklable(cause, dumps=dumps, loads=loads)
    elif cause is not None:
        replacement = UnserializableException.from_exception(cause)
    args: tuple[Any, ...] = err.args
    if not _round_trips(args, dumps, loads):
        args = (_safe_repr(cause),) if cause is not None else ()
    fields = err._fields()
    fields["cause"] = replacement
    if not _round_trips(fields, dumps, loads):
        # actor_id or another field is the problem; keep only what is surely plain data.
        fields = {**fields, "actor_id": _id_text(err.actor_id) if err.actor_id else None}
    base = _user_cause_class(cause) if cause is not None else None
    if base is not None and _round_trips(base, dumps, loads):
        dual_cls = _dual_class(base)
        dual = _build_dual(dual_cls, args, fields) if dual_cls is not None else None
        if dual is not None and _round_trips(dual, dumps, loads):
            return dual
    plain = _restore_error(RayTaskError, args, fields)
    assert isinstance(plain, RayTaskError)
    return plain


class RayActorError(RayError):
    """The actor could not run this method call: it died, or could not be reached.

    `actor_id` names the actor; `error_msg` says why; `preempted` is True when its node was
    drained or preempted rather than failing.
    """

    _default_message = (
        "The actor died unexpectedly before finishing this task. Check the actor's worker log "
        "for the reason; to have rayops restart it, create it with max_restarts > 0, and to "
        "retry its method calls, set max_task_retries."
    )

    def __init__(
        self,
        cause: BaseException | None = None,
        actor_id: object = None,
        error_msg: str | None = None,
        preempted: bool = False,
    ) -> None:
        self.cause = cause
        self.actor_id = actor_id
        self.error_msg = error_msg
        self.preempted = preempted
        self.actor_init_failed = isinstance(cause, RayTaskError)
        super().__init__(self._message())

    def _message(self) -> str:
        if self.actor_init_failed:
            return (
                "The actor died because its constructor (__init__) raised. Fix the error below; "
                f"method calls on this actor will keep failing.\n{self.cause}"
            )
        parts = []
        if self.actor_id is not None:
            parts.append(f"Actor {_id_text(self.actor_id)} is gone.")
        if self.error_msg:
            parts.append(self.error_msg)
        if self.preempted:
            parts.append("Its node was preempted or drained, not crashed.")
        parts.append(self._default_message)
        return " ".join(parts)


class ActorDiedError(RayActorError):
    """The actor is dead: its process exited, it was killed, or its constructor raised."""


class ActorUnavailableError(RayActorError):
    """The actor is unreachable for now (restarting, or a network problem).

    The method call may or may not have run. Retry it if it is safe to run twice.
    """

    def __init__(self, error_message: str, actor_id: object = None) -> None:
        self.error_message = error_message
        super().__init__(
            actor_id=actor_id,
            error_msg=(
                f"The actor is temporarily unavailable: {error_message}. The call may or may "
                "not have run; retry it if running it twice is safe."
            ),
        )

    def _message(self) -> str:
        prefix = f"Actor {_id_text(self.actor_id)}: " if self.actor_id is not None else ""
        return prefix + (self.error_msg or "")


class _MessageError(RayError):
    """A rayops error carrying one message, with a default that says what to do."""

    _default_message = ""

    def __init__(self, message: str | None = None) -> None:
        self.message = message if message else self._default_message
        super().__init__(self.message)


class ActorUnschedulableError(_MessageError):
    """The actor can never be scheduled, e.g. its node affinity target is dead."""

    def __init__(self, error_message: str) -> None:
        super().__init__(
            f"The actor cannot be scheduled: {error_message.rstrip('.')}. Check that the "
            "resources, node affinity or placement group it asks for exist in the cluster."
        )


class AsyncioActorExit(RayError):
    """Raised inside an async actor to make it exit (see `exit_actor()`); not an error to catch."""


class LocalRayletDiedError(_MessageError):
    """The raylet on the task's node died, taking the task with it."""

    _default_message = (
        "The raylet on this task's node died. Check that node's raylet log in the session "
        "logs directory for why; tasks with max_retries > 0 are retried on other nodes."
    )


class WorkerCrashedError(_MessageError):
    """The worker process died while it ran the task (crash, kill, or out of memory)."""

    _default_message = (
        "The worker process died unexpectedly while running this task (for example a "
        "segfault, os._exit(), being killed, or running out of memory). Check the worker's "
        "log in the session logs directory; set max_retries to have rayops retry the task."
    )


class RaySystemError(RayError):
    """rayops itself failed; the task or call is not at fault."""

    def __init__(self, client_exc: object, traceback_str: str | None = None) -> None:
        self.client_exc = client_exc
        self.traceback_str = traceback_str
        message = f"System error: {client_exc}"
        if traceback_str:
            message += f"\ntraceback: {traceback_str}"
        super().__init__(message)


class RayChannelError(RaySystemError):
    """A compiled-graph channel was closed or failed."""


class RayChannelTimeoutError(RayChannelError, TimeoutError):
    """Reading from or writing to a compiled-graph channel timed out."""


class ObjectStoreFullError(_MessageError):
    """The node's shared-memory object store has no room for the object."""

    _default_message = (
        "The object store is full and nothing more can be evicted or spilled. Release "
        "ObjectRefs you no longer need (del them), get fewer objects at once, or start the "
        "node with a larger --object-store-memory."
    )


class OutOfDiskError(_MessageError):
    """The node's local disk is (nearly) full, so objects cannot be spilled."""

    _default_message = (
        "The local disk is over its usage threshold, so objects can no longer be spilled. "
        "Free disk space on the node or point object spilling at a larger disk."
    )


class OutOfMemoryError(_MessageError):
    """The node ran low on memory and rayops killed the worker to protect the node."""

    _default_message = (
        "The node ran out of memory and the task's worker was killed to keep the node alive. "
        "Request more memory for the task (memory=...), run fewer tasks at once, or add "
        "memory to the node; set max_retries to retry the task."
    )


class NodeDiedError(_MessageError):
    """The node the task or actor ran on died."""

    _default_message = (
        "The node running this task died. Check the node's logs and the head's GCS log for "
        "why; tasks with max_retries > 0 and actors with max_restarts > 0 are rerun elsewhere."
    )


class ObjectLostError(RayError):
    """Every copy of the object is gone and it could not be (or was not) rebuilt.

    `object_ref_hex` names the object, `owner_address` the worker that owns it and
    `call_site` where it was created, when known.
    """

    def __init__(self, object_ref_hex: str, owner_address: str = "", call_site: str = "") -> None:
        self.object_ref_hex = object_ref_hex
        self.owner_address = owner_address
        self.call_site = call_site.replace("\n", "\n  ") if call_site else ""
        super().__init__(self._message())

    def _reason(self) -> str:
        return (
            "All copies of it were lost, most likely because the node holding them died. "
            "Check the cluster's logs for a node failure; objects made by tasks are rebuilt "
            "when the task can be retried (max_retries > 0), but ray.put() objects cannot be."
        )

    def _message(self) -> str:
        origin = f"\nIt was created at:\n  {self.call_site}" if self.call_site else ""
        owner = f" (owner: {self.owner_address})" if self.owner_address else ""
        return f"Failed to retrieve object {self.object_ref_hex}{owner}. {self._reason()}{origin}"


class ObjectFetchTimedOutError(ObjectLostError):
    """No node could supply the object in time; no location for it was found."""

    def _reason(self) -> str:
        return (
            "Fetching it timed out because no node reported a copy. This points to a rayops "
            "bug or a network partition; check the raylet logs of the nodes involved."
        )


class ObjectFreedError(ObjectLostError):
    """The object was freed explicitly (internal `free`) while it was still referenced."""

    def _reason(self) -> str:
        return (
            "It was freed explicitly with the internal free() call. Only free objects after "
            "the last use of their ObjectRefs."
        )


class ReferenceCountingAssertionError(ObjectLostError, AssertionError):
    """The object was deleted while still in use: a reference-counting bug in rayops."""

    def _reason(self) -> str:
        return (
            "It was deleted while a reference to it still existed. This is a rayops "
            "reference-counting bug; please report it with the logs of the owner worker."
        )


class OwnerDiedError(ObjectLostError):
    """The worker that owns the object (the one that called .remote() or put()) died."""

    def _reason(self) -> str:
        return (
            "Its owner, the worker that created the ObjectRef with .remote() or ray.put(), has "
            "exited, and objects cannot outlive their owner. Check that worker's log for why "
            "it died; keep the owner (e.g. the driver or a long-lived actor) alive while the "
            "object is in use."
        )


class ObjectReconstructionFailedError(ObjectLostError):
    """The object was lost and rebuilding it by rerunning its task was not possible.

    `reason` says why (Ray's OBJECT_UNRECONSTRUCTABLE_* cases), when known.
    """

    def __init__(
        self, object_ref_hex: str, owner_address: str = "", call_site: str = "", reason: str = ""
    ) -> None:
        self.reason = reason
        super().__init__(object_ref_hex, owner_address, call_site)

    def _reason(self) -> str:
        if self.reason:
            return f"It was lost and cannot be rebuilt: {self.reason}"
        return (
            "It was lost and cannot be rebuilt: it came from ray.put(), from an actor, or its "
            "ObjectRef was created by another worker. Keep such objects on nodes that stay up, "
            "or recompute them yourself."
        )


class ObjectReconstructionFailedMaxAttemptsExceededError(ObjectReconstructionFailedError):
    """The object was lost and its task already used up its retries."""

    def _reason(self) -> str:
        return (
            "It was lost and cannot be rebuilt because its task has used all of its retries. "
            "Raise max_retries in @ray.remote(max_retries=...) to allow more."
        )


class ObjectReconstructionFailedLineageEvictedError(ObjectReconstructionFailedError):
    """The object was lost and the record of how to rebuild it was evicted to save memory."""

    def _reason(self) -> str:
        return (
            "It was lost and cannot be rebuilt because the record of the task that made it "
            "(its lineage) was evicted to save memory on the owner. Keep fewer ObjectRefs "
            "alive at once, or allow more lineage memory in the cluster config."
        )


class ObjectRefStreamEndOfStreamError(RayError):
    """A streaming generator has no more items; ends iteration over an ObjectRefGenerator."""


class GetTimeoutError(RayError, TimeoutError):
    """`ray.get()` or `ray.wait()` hit its timeout before the objects were ready.

    The objects may still become ready; call `ray.get()` again, or with a larger timeout.
    """


class PendingCallsLimitExceeded(RayError):
    """Too many calls are queued on the actor (its max_pending_calls); back off and retry."""


class PlacementGroupSchedulingError(RayError):
    """The placement group could not be scheduled (e.g. it was removed while pending)."""


class RuntimeEnvSetupError(RayError):
    """Setting up the task's or actor's runtime_env failed (e.g. pip install failed)."""

    def __init__(self, error_message: str | None = None) -> None:
        self.error_message = error_message
        message = "Failed to set up the runtime environment."
        if error_message:
            message += f"\n{error_message}"
        message += "\nFix the runtime_env named above (packages, working_dir, env_vars) and retry."
        super().__init__(message)


class TaskPlacementGroupRemoved(_MessageError):
    """The task's placement group was removed, so the task can never run."""

    _default_message = (
        "The placement group this task was scheduled into has been removed, so it will never "
        "run. Create a new placement group and submit the task again."
    )


class ActorPlacementGroupRemoved(_MessageError):
    """The actor's placement group was removed, so the actor can never be scheduled."""

    _default_message = (
        "The placement group this actor was scheduled into has been removed, so it will never "
        "start. Create a new placement group and create the actor again."
    )


class TaskUnschedulableError(_MessageError):
    """The task can never be scheduled, e.g. its node affinity target is dead."""

    def __init__(self, error_message: str) -> None:
        super().__init__(
            f"The task cannot be scheduled: {error_message.rstrip('.')}. Check that the "
            "resources, node affinity or placement group it asks for exist in the cluster."
        )


class RpcError(RayError):
    """A call to a rayops daemon failed; `rpc_code` is the gRPC status code when known."""

    def __init__(self, message: str, rpc_code: int | None = None) -> None:
        self.message = message
        self.rpc_code = rpc_code
        super().__init__(message)


class RayOpsConfigError(RayError, ValueError):
    """Configuration (cluster YAML, settings, arguments) is invalid; the message says where."""


class AuthenticationError(RayError):
    """The cluster rejected this client's credentials; check the cluster token you pass."""
