"""Typed identifiers: jobs, nodes, workers, tasks and objects.

Task ids are a per-process random prefix plus a counter: unique across the
cluster without coordination, and far cheaper than a getrandom() call per task
(which costs tens of microseconds on some VMs). An object id is its creating
task's id plus a 4-byte index, so the task that produces an object can always be
read off its id.
"""

from __future__ import annotations

import itertools
import os

TASK_ID_LEN = 16
OBJECT_ID_LEN = TASK_ID_LEN + 4
# Objects made by put() use indexes from here up, returns from 1 up.
PUT_INDEX_BASE = 1 << 31
# The index of an actor's handle token: an object that never has a value, owned by the
# actor's creator; its reference count is the count of the actor's handles.
ACTOR_HANDLE_INDEX = (1 << 32) - 1

_prefix = os.urandom(8)
_counter = itertools.count(1)


def _new_prefix() -> None:
    """A forked child must not repeat its parent's ids (a hook, not a getpid() per id)."""
    global _prefix, _counter
    _prefix, _counter = os.urandom(8), itertools.count(1)


os.register_at_fork(after_in_child=_new_prefix)


def random_id(n: int = 16) -> bytes:
    return os.urandom(n)


def new_task_id() -> bytes:
    return _prefix + next(_counter).to_bytes(8, "little")


def new_actor_id() -> bytes:
    return os.urandom(TASK_ID_LEN)


def object_id_for(task_id: bytes, index: int) -> bytes:
    return task_id + index.to_bytes(4, "little")


def task_id_of(object_id: bytes) -> bytes:
    return object_id[:TASK_ID_LEN]


def index_of(object_id: bytes) -> int:
    return int.from_bytes(object_id[TASK_ID_LEN:], "little")


def job_id_hex(job_int: int) -> str:
    """Ray shows job ids as 4 little-endian bytes in hex ("01000000")."""
    return job_int.to_bytes(4, "little").hex()
