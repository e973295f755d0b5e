"""The agent's prometheus_client collector: the latest snapshots as metric families.

`merge_families` joins families of the same name (the head's agent has a
``ray_scheduler_placement_time_s`` from its raylet, WorkloadType="Task", and one from the
GCS, WorkloadType="Actor"): the exposition format allows one family per name.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from prometheus_client.core import Metric
from prometheus_client.registry import Collector

__all__ = ["SnapshotCollector", "merge_families"]


def merge_families(families: Iterable[Metric]) -> list[Metric]:
    """One family per name, samples of later duplicates appended, order of first sight."""
    by_name: dict[str, Metric] = {}
    for fam in families:
        seen = by_name.get(fam.name)
        if seen is None:
            by_name[fam.name] = fam
        else:
            seen.samples.extend(fam.samples)
    return list(by_name.values())


class SnapshotCollector(Collector):
    """Calls ``build()`` at scrape time; ``build`` only reads cached snapshots (no I/O)."""

    def __init__(self, build: Callable[[], list[Metric]]) -> None:
        self._build = build

    def collect(self) -> Iterator[Metric]:
        yield from merge_families(self._build())
