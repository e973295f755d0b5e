"""Which of a node's runtime_env files to delete when they take more than the node's cache size.

A node keeps, under ``<session>/runtime_resources/<node>/``, the unpacked ``working_dir`` and
``py_modules`` packages, the pip/uv virtualenvs, and the installers' own download caches (uv's
and pip's). Together they may take ``RAYOPS_RUNTIME_ENV_CACHE_MB``; past it, entries nothing
uses are deleted, least recently used first, until the total fits (or only used entries are
left). ``plan_evictions`` decides; ``rayops.raylet.runtime_envs`` measures and deletes.
No I/O here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["CacheEntry", "plan_evictions"]


@dataclass(frozen=True, slots=True)
class CacheEntry:
    """One deletable unit: a package directory, a virtualenv, or an installer cache."""

    path: str
    size: int  # bytes on disk
    last_used: float  # the caller's clock; only the order matters
    in_use: bool  # a leased or starting worker, a waiting request or a setup uses it


def plan_evictions(entries: Iterable[CacheEntry], limit: int) -> list[str]:
    """The paths to delete, in order, so the total gets to ``limit`` bytes or below: unused
    entries, least recently used first; ties broken by path, so the plan is deterministic."""
    entries = list(entries)
    total = sum(e.size for e in entries)
    doomed: list[str] = []
    for entry in sorted(entries, key=lambda e: (e.last_used, e.path)):
        if total <= limit:
            break
        if entry.in_use:
            continue
        doomed.append(entry.path)
        total -= entry.size
    return doomed
