"""What travels from an owner to a leased worker for one task.

Argument entries:
- ``("v", (metadata, pickled, buffers))``: the value inline;
- ``("s", object_id, node_id)``: sealed in the shared-memory store of ``node_id``;
- ``("r", object_id, owner_address)``: ask the owner (a ref owned by someone else).
"""

from __future__ import annotations

import copyreg
from typing import Any, NamedTuple

Address = tuple[str, int]
STREAMING = -1  # num_returns of a streaming generator task
# num_returns="dynamic", at submission only: the owner records it and sends the task as
# STREAMING (the worker runs both alike); the owner then stores the items in one return.
DYNAMIC = -2

# Values up to this size travel inline in messages; larger ones go to the store.
INLINE_MAX_BYTES = 100 * 1024


class TaskSpec(NamedTuple):
    task_id: bytes
    job_id: int
    name: str
    function_id: bytes
    args: tuple[Any, ...]
    kwarg_names: tuple[str, ...]
    num_returns: int
    return_ids: tuple[bytes, ...]
    owner: Address
    resources: dict[str, float]
    attempt: int = 0
    parent_task_id: bytes = b""
    # actor method calls: the actor, and the method's concurrency group
    actor_id: bytes = b""
    concurrency_group: str = ""
    # normal tasks: "DEFAULT"/None, "SPREAD", or a strategy object (node affinity)
    strategy: Any = None
    # normal tasks: the worker exits after running this function this many times (0: never)
    max_calls: int = 0
    # normal tasks: the resolved runtime_env's wire form (rayops/envs/spec.py; "" for none)
    runtime_env: str = ""


class TaskReply(NamedTuple):
    """What a worker sends back.

    ``status``: "ok", "error" (the function raised; ``returns`` hold the error),
    or "cancelled". ``returns`` has one entry per return id:
    ``(entry, contained)`` where ``contained`` lists ``(object_id, owner)`` of refs
    inside the value. ``borrowed`` lists object ids owned by the task's owner that
    the worker still holds after the task (the owner adds the worker as borrower).
    """

    status: str
    returns: list[tuple[tuple[Any, ...], list[tuple[bytes, Address]]]]
    borrowed: list[bytes]
    worker_address: Address
    exec_seconds: float
    num_items: int = 0
    # the worker exits after this reply (max_calls reached): push nothing more to it
    worker_exiting: bool = False


# Every task crosses the wire as a TaskSpec and comes back as a TaskReply. Pickle names a
# class by its module and qualified name, and each load decodes those names into fresh
# strings. A few hundred of those strings stay alive inside CPython (tracemalloc: ~490 live
# "TaskReply" strings after 20,000 replies, none reachable from the gc graph), scattered
# across the allocator's 1 MiB arenas, so after 100,000 tasks ~40 mostly empty arenas could
# not be returned (driver RSS stayed ~55 MB above its start). A copyreg extension code sends
# a one-byte number instead of the names: no strings, and 40 bytes less per message. Codes
# 240-255 are copyreg's range for private use; both ends import this module before they
# exchange tasks.
#
# Each is pickled as a plain tuple of its fields passed to a rebuild function (``spec_from``,
# ``reply_from``, two-byte codes 340 and 341; the classes keep 240 and 241 reserved): a
# namedtuple otherwise goes through ``object.__reduce_ex__`` and its Python
# ``__getnewargs__`` on the way out and its Python ``__new__`` on the way in. Measured per
# message: a TaskReply pickles in ~3.2 us instead of ~6.6, a TaskSpec unpickles in ~2.2
# instead of ~2.8 (the 1:1 sync actor call pays each once per call).
_EXTENSION_CODES = {"TaskSpec": 240, "TaskReply": 241, "spec_from": 340, "reply_from": 341}
_new_tuple = tuple.__new__
_SPEC_FIELDS = len(TaskSpec._fields)
_REPLY_FIELDS = len(TaskReply._fields)


def spec_from(values: tuple[Any, ...]) -> TaskSpec:
    """A TaskSpec from its pickled fields (a peer with fewer fields: the defaults; more:
    TypeError, as the constructor says)."""
    if len(values) == _SPEC_FIELDS:
        return _new_tuple(TaskSpec, values)  # type: ignore[no-any-return]
    return TaskSpec(*values)


def reply_from(values: tuple[Any, ...]) -> TaskReply:
    """A TaskReply from its pickled fields (as ``spec_from``)."""
    if len(values) == _REPLY_FIELDS:
        return _new_tuple(TaskReply, values)  # type: ignore[no-any-return]
    return TaskReply(*values)


def _reduce_spec(spec: TaskSpec) -> tuple[Any, ...]:
    return (spec_from, (tuple(spec),))


def _reduce_reply(reply: TaskReply) -> tuple[Any, ...]:
    return (reply_from, (tuple(reply),))


for _name, _code in _EXTENSION_CODES.items():
    if copyreg._extension_registry.get((__name__, _name)) != _code:  # type: ignore[attr-defined]
        copyreg.add_extension(__name__, _name, _code)
copyreg.pickle(TaskSpec, _reduce_spec)
copyreg.pickle(TaskReply, _reduce_reply)
