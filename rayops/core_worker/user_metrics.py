"""The process's user metrics (``rayops.util.metrics``): definitions and current values.

Ray's metrics API is process-global: a ``Counter`` may be created at import time, before
``init()``, inside a task or an actor, or unpickled in a worker from a task's closure. So one
store per process (``STORE``, like ``state.py`` holds the process's core worker) keeps every
series; the core worker's metrics reporter reads what changed and sends it to the node's agent.

Thread-safe (user threads record, the IO loop reads). No I/O here. Validation of names, tags
and values happens in ``rayops.util.metrics`` before anything reaches the store.
"""

from __future__ import annotations

import bisect
import threading

from rayops.protocol.metrics import MetricInfo, MetricSample

Tags = tuple[tuple[str, str], ...]
SeriesKey = tuple[str, Tags]


class _Histogram:
    __slots__ = ("buckets", "count", "sum")

    def __init__(self, n_buckets: int) -> None:
        self.buckets = [0] * n_buckets
        self.count = 0
        self.sum = 0.0


class UserMetricStore:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._infos: dict[str, MetricInfo] = {}
        self._values: dict[SeriesKey, float] = {}  # counters and gauges
        self._hists: dict[SeriesKey, _Histogram] = {}
        self._dirty: set[SeriesKey] = set()

    def define(self, info: MetricInfo) -> None:
        """Register a metric; defining the same metric again (e.g. in each actor) is fine.

        Raises ValueError if ``info.name`` is already a different kind of metric, or has other
        tag keys or boundaries, in this process.
        """
        with self._lock:
            old = self._infos.get(info.name)
            if old is not None and (
                old.kind != info.kind
                or old.tag_keys != info.tag_keys
                or old.boundaries != info.boundaries
            ):
                raise ValueError(
                    f"metric {info.name!r} is already defined in this process as a {old.kind} "
                    f"with tag_keys={old.tag_keys}"
                    + (f" and boundaries={list(old.boundaries)}" if old.boundaries else "")
                    + f"; it cannot also be a {info.kind} with tag_keys={info.tag_keys}"
                    + (f" and boundaries={list(info.boundaries)}" if info.boundaries else "")
                    + ". Use another name."
                )
            self._infos[info.name] = info

    def inc(self, name: str, tags: Tags, value: float) -> None:
        key = (name, tags)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + value
            self._dirty.add(key)

    def set(self, name: str, tags: Tags, value: float) -> None:
        key = (name, tags)
        with self._lock:
            self._values[key] = value
            self._dirty.add(key)

    def observe(self, name: str, tags: Tags, value: float) -> None:
        key = (name, tags)
        with self._lock:
            bounds = self._infos[name].boundaries
            h = self._hists.get(key)
            if h is None:
                h = self._hists[key] = _Histogram(len(bounds) + 1)
            # Prometheus buckets are upper-inclusive (le): a value equal to a bound goes in it.
            h.buckets[bisect.bisect_left(bounds, value)] += 1
            h.count += 1
            h.sum += value
            self._dirty.add(key)

    def has_changes(self) -> bool:
        return bool(self._dirty)

    def is_empty(self) -> bool:
        return not self._values and not self._hists

    def snapshot(self, full: bool) -> tuple[list[MetricInfo], list[MetricSample]]:
        """The series changed since the last snapshot (every series if ``full``), with the
        definitions of their metrics; clears the change set."""
        with self._lock:
            keys = list(self._values) + list(self._hists) if full else list(self._dirty)
            self._dirty.clear()
            samples: list[MetricSample] = []
            names: set[str] = set()
            for key in keys:
                name, tags = key
                names.add(name)
                h = self._hists.get(key)
                if h is not None:
                    samples.append(MetricSample(name, tags, h.sum, h.count, tuple(h.buckets)))
                else:
                    samples.append(MetricSample(name, tags, self._values[key]))
            infos = [self._infos[n] for n in sorted(names)]
        return infos, samples

    def value(self, name: str, tags: Tags) -> float | None:
        """A counter's or gauge's current value in this process (for tests and debugging)."""
        with self._lock:
            return self._values.get((name, tags))


STORE = UserMetricStore()

__all__ = ["STORE", "UserMetricStore"]
