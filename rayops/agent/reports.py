"""The agent's side of core-worker metric reports: merge them per worker, export them.

Every driver and worker on the node sends ``MetricsReport``s (``rayops/protocol/metrics.py``)
to the agent's framed server (``h_report_metrics``). ``ReportCollector`` keeps the latest
report of each worker and is a prometheus_client custom collector: each scrape turns the
merged state into metric families.

- ``ray_tasks`` (gauge; labels State, Name, IsRetry, Source): the sum over the node's
  processes of their task counts (the owner and executor sides, as Ray's ``Source`` label).
- user metrics (``rayops.util.metrics``) as ``ray_<name>`` with their tag keys as labels:
  counters as Prometheus counters (``ray_<name>_total``; summed over processes, and also as
  a gauge ``ray_<name>`` like Ray unless ``export_counter_as_gauge=False``), gauges (the
  value most recently reported by any process), histograms (buckets, sum and count summed
  over processes).
- every series also carries ``SessionName`` and ``NodeAddress``.

A worker that died (``forget_worker``): its task counts and gauges disappear; its counter
totals and histogram observations are kept, so exported counters never go down.

Runs on the agent's event loop (handler) and in the HTTP handler's thread (collect): one lock.
No I/O here.
"""

from __future__ import annotations

import logging
import math
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from rayops.protocol.metrics import (
    COUNTER,
    GAUGE,
    HISTOGRAM,
    METRIC_KINDS,
    MetricInfo,
    MetricSample,
    MetricsReport,
)

logger = logging.getLogger(__name__)

TASKS_METRIC = "ray_tasks"
TASKS_HELP = "Current number of tasks currently in a particular state."
STANDARD_LABELS = ("SessionName", "NodeAddress")

Tags = tuple[tuple[str, str], ...]
SeriesKey = tuple[str, Tags]


@dataclass
class _Worker:
    pid: int
    component: str
    job_id: int
    seq: int = 0
    task_counts: dict[tuple[str, str, bool, str], int] = field(default_factory=dict)
    samples: dict[SeriesKey, MetricSample] = field(default_factory=dict)
    # gauges: arrival order of the report that last set each series (the latest one wins)
    gauge_order: dict[SeriesKey, int] = field(default_factory=dict)


@dataclass
class _Sum:
    """A series summed over processes: counter total, or histogram sum/count/buckets."""

    value: float = 0.0
    count: int = 0
    buckets: list[int] = field(default_factory=list)


class ReportCollector:
    """Merges core workers' metric reports; a prometheus_client custom collector."""

    def __init__(
        self, session_name: str, node_address: str, *, export_counter_as_gauge: bool = True
    ) -> None:
        self._session = session_name
        self._node = node_address
        self._counter_as_gauge = export_counter_as_gauge
        self._lock = threading.Lock()
        self._workers: dict[bytes, _Worker] = {}
        self._infos: dict[str, MetricInfo] = {}
        # what dead workers contributed to counters and histograms (kept: monotonic)
        self._retired: dict[SeriesKey, _Sum] = {}
        self._order = 0

    # ------------------------------------------------------------------ input
    def h_report_metrics(self, conn: Any, report: MetricsReport) -> None:
        """Takes the report of a ``ReportMetrics`` notification (``conn``: where it came)."""
        if not isinstance(report, MetricsReport):
            logger.warning("ignoring a metrics report of type %s", type(report).__name__)
            return
        if conn is not None:
            # Lets the agent forget every worker that reported on a connection when it closes.
            conn.context.setdefault("metric_workers", set()).add(report.worker_id)
        with self._lock:
            self._merge(report)

    def _merge(self, report: MetricsReport) -> None:
        w = self._workers.get(report.worker_id)
        if w is None:
            w = self._workers[report.worker_id] = _Worker(
                report.pid, report.component, report.job_id
            )
        elif report.seq <= w.seq:
            return  # an older report arriving late
        w.job_id, w.seq = report.job_id, report.seq
        w.task_counts = {
            (c.name, c.state, c.is_retry, c.source): c.count for c in report.task_counts
        }
        for new in report.metrics:
            self._define(new)
        # Series are only ever added in a process, so a full report updates like any other.
        for s in report.samples:
            info = self._infos.get(s.name)
            if info is None or not self._fits(info, s):
                continue
            key = (s.name, s.tags)
            if info.kind == COUNTER:
                prev = w.samples.get(key)
                if prev is not None and prev.value > s.value:
                    continue  # counters never go down within one process
            elif info.kind == GAUGE:
                self._order += 1
                w.gauge_order[key] = self._order
            w.samples[key] = s

    def _define(self, info: MetricInfo) -> None:
        if info.kind not in METRIC_KINDS:
            return
        old = self._infos.get(info.name)
        if old is not None and (old.kind != info.kind or old.tag_keys != info.tag_keys):
            logger.warning(
                "metric %r reported as a %s with tags %s, but it is a %s with tags %s; "
                "ignoring the new definition",
                info.name,
                info.kind,
                info.tag_keys,
                old.kind,
                old.tag_keys,
            )
            return
        self._infos[info.name] = info

    @staticmethod
    def _fits(info: MetricInfo, s: MetricSample) -> bool:
        if tuple(k for k, _ in s.tags) != info.tag_keys:
            return False
        return info.kind != HISTOGRAM or len(s.bucket_counts) == len(info.boundaries) + 1

    def forget_worker(self, worker_id: bytes) -> None:
        """A worker died or disconnected: drop its gauges and task counts, keep its counter
        totals and histogram observations."""
        with self._lock:
            w = self._workers.pop(worker_id, None)
            if w is None:
                return
            for key, s in w.samples.items():
                info = self._infos[s.name]
                if info.kind == GAUGE:
                    continue
                r = self._retired.get(key)
                if r is None:
                    r = self._retired[key] = _Sum(
                        buckets=[0] * len(s.bucket_counts) if info.kind == HISTOGRAM else []
                    )
                r.value += s.value
                if info.kind == HISTOGRAM:
                    r.count += s.count
                    r.buckets = [a + b for a, b in zip(r.buckets, s.bucket_counts, strict=True)]

    def forget_connection(self, conn: Any) -> None:
        """Forget every worker that reported over ``conn`` (for the server's on_close)."""
        for worker_id in conn.context.get("metric_workers", ()):
            self.forget_worker(worker_id)

    def worker_ids(self) -> list[bytes]:
        with self._lock:
            return list(self._workers)

    # ----------------------------------------------------------------- output
    def collect(self) -> Iterator[Metric]:
        with self._lock:
            tasks = self._task_totals()
            families = self._user_families()
        std = [self._session, self._node]
        fam = GaugeMetricFamily(
            TASKS_METRIC,
            TASKS_HELP,
            labels=["State", "Name", "IsRetry", "Source", *STANDARD_LABELS],
        )
        for (name, state, retry, source), n in sorted(tasks.items()):
            fam.add_metric([state, name, "1" if retry else "0", source, *std], n)
        yield fam
        yield from families

    def describe(self) -> Iterator[Metric]:
        """Nothing up front: the families depend on what workers report."""
        return iter(())

    def _task_totals(self) -> dict[tuple[str, str, bool, str], int]:
        totals: dict[tuple[str, str, bool, str], int] = {}
        for w in self._workers.values():
            for key, n in w.task_counts.items():
                totals[key] = totals.get(key, 0) + n
        return totals

    def _user_families(self) -> list[Metric]:
        # metric name -> tags -> merged values
        merged: dict[str, dict[Tags, _Sum]] = {}
        for key, r in self._retired.items():
            merged.setdefault(key[0], {})[key[1]] = _Sum(r.value, r.count, list(r.buckets))
        latest: dict[SeriesKey, int] = {}
        for w in self._workers.values():
            for key, s in w.samples.items():
                name, tags = key
                info = self._infos[name]
                if info.kind == GAUGE:
                    order = w.gauge_order[key]
                    if order > latest.get(key, -1):
                        latest[key] = order
                        merged.setdefault(name, {})[tags] = _Sum(s.value)
                    continue
                m = merged.setdefault(name, {}).get(tags)
                if m is None:
                    m = merged[name][tags] = _Sum(
                        buckets=[0] * len(s.bucket_counts) if info.kind == HISTOGRAM else []
                    )
                m.value += s.value
                if info.kind == HISTOGRAM:
                    m.count += s.count
                    m.buckets = [a + b for a, b in zip(m.buckets, s.bucket_counts, strict=True)]
        out: list[Metric] = []
        std = [self._session, self._node]
        for name in sorted(merged):
            info = self._infos[name]
            labels = [*info.tag_keys, *STANDARD_LABELS]
            prom = "ray_" + name
            series = sorted(merged[name].items())
            if info.kind == COUNTER:
                c = CounterMetricFamily(prom, info.description, labels=labels)
                for tags, m in series:
                    c.add_metric([v for _, v in tags] + std, m.value)
                out.append(c)
                if self._counter_as_gauge:
                    g = GaugeMetricFamily(prom, info.description, labels=labels)
                    for tags, m in series:
                        g.add_metric([v for _, v in tags] + std, m.value)
                    out.append(g)
            elif info.kind == GAUGE:
                g = GaugeMetricFamily(prom, info.description, labels=labels)
                for tags, m in series:
                    g.add_metric([v for _, v in tags] + std, m.value)
                out.append(g)
            else:
                h = HistogramMetricFamily(prom, info.description, labels=labels)
                for tags, m in series:
                    h.add_metric(
                        [v for _, v in tags] + std,
                        _cumulative(info.boundaries, m.buckets),
                        m.value,
                    )
                out.append(h)
        return out


def _cumulative(boundaries: tuple[float, ...], buckets: list[int]) -> list[tuple[str, float]]:
    out: list[tuple[str, float]] = []
    total = 0
    for bound, n in zip((*boundaries, math.inf), buckets, strict=True):
        total += n
        out.append(("+Inf" if bound == math.inf else _le(bound), float(total)))
    return out


def _le(bound: float) -> str:
    return repr(float(bound))
