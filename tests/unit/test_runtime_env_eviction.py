"""A node's runtime_env cache: which entries go past its size (rayops.envs.eviction), as a table."""

from __future__ import annotations

import pytest

from rayops.envs.eviction import CacheEntry, plan_evictions


def E(path: str, size: int, last_used: float, in_use: bool = False) -> CacheEntry:
    return CacheEntry(path, size, last_used, in_use)


CASES = {
    "under the size: nothing goes": ([E("a", 10, 1), E("b", 10, 2)], 20, []),
    "over: the least recently used goes first, only as many as needed": (
        [E("new", 10, 3), E("old", 10, 1), E("mid", 10, 2)],
        15,
        ["old", "mid"],
    ),
    "an entry in use stays, however old": (
        [E("old", 50, 1, in_use=True), E("mid", 10, 2), E("new", 10, 3)],
        55,
        ["mid", "new"],
    ),
    "only used entries left: over the size, and nothing goes": (
        [E("a", 50, 1, in_use=True), E("b", 50, 2, in_use=True)],
        10,
        [],
    ),
    "size 0 keeps only what is used; the uv cache is one more entry": (
        [E("venv", 10, 1), E(".uv-cache", 30, 4), E("pkg", 5, 2, in_use=True)],
        0,
        ["venv", ".uv-cache"],
    ),
    "ties broken by path": ([E("b", 1, 1), E("a", 1, 1)], 1, ["a"]),
}


@pytest.mark.parametrize("name", list(CASES))
def test_plan_evictions(name: str) -> None:
    entries, limit, expected = CASES[name]
    assert plan_evictions(entries, limit) == expected
