"""Typed identifiers: jobs, nodes, workers, tasks and objects.

Ids are random bytes (collision-free without coordination) shown as hex, like
Ray's. An object id is its creating task's id plus a 4-byte index, so the task
that produces an object can always be read off its id.
"""

from __future__ import annotations

import os

TASK_ID_LEN = 16
OBJECT_ID_LEN = TASK_ID_LEN + 4
# Objects made by put() use indexes from here up, returns from 1 up.
PUT_INDEX_BASE = 1 << 31


def random_id(n: int = 16) -> bytes:
    return os.urandom(n)


def new_task_id() -> bytes:
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
