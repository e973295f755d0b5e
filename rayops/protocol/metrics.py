"""Metric reports from core workers (drivers and workers) to their node's agent.

A core worker sends ``NOTIFY "report_metrics" (MetricsReport,)`` over the framed transport
to the agent of its node about once a second, only when something changed. The agent merges
the reports of all core workers on the node and exports them to Prometheus
(``rayops/agent/reports.py``).

Values are *absolute*, never deltas: a lost or repeated report does no harm, and the agent
only keeps the latest value per series and worker. ``task_counts`` is always complete for the
reporting worker. ``samples`` holds only the user-metric series that changed since the
previous report, unless ``full`` is set (the first report on a new connection, so an agent
that restarted learns everything again).

This module imports nothing of rayops: it is the contract between the two sides.
"""

from __future__ import annotations

from dataclasses import dataclass

COUNTER = "counter"
GAUGE = "gauge"
HISTOGRAM = "histogram"
METRIC_KINDS = (COUNTER, GAUGE, HISTOGRAM)

# The task states of Ray's ``ray_tasks`` metric (rpc::TaskStatus names) that rayops reports.
PENDING_ARGS_AVAIL = "PENDING_ARGS_AVAIL"
PENDING_NODE_ASSIGNMENT = "PENDING_NODE_ASSIGNMENT"
SUBMITTED_TO_WORKER = "SUBMITTED_TO_WORKER"
RUNNING = "RUNNING"
RUNNING_IN_RAY_GET = "RUNNING_IN_RAY_GET"
RUNNING_IN_RAY_WAIT = "RUNNING_IN_RAY_WAIT"
FINISHED = "FINISHED"
FAILED = "FAILED"

# Which side counted a task state (Ray's ``Source`` label of ``ray_tasks``): the owner counts
# PENDING_*, SUBMITTED_TO_WORKER, FINISHED and FAILED; the executing worker counts RUNNING*
# and reports minus its running tasks under SUBMITTED_TO_WORKER, so that summing both sides
# counts every task once.
SOURCE_OWNER = "owner"
SOURCE_EXECUTOR = "executor"


@dataclass(frozen=True, slots=True)
class TaskStateCount:
    """How many of one process's tasks named ``name`` are in ``state``."""

    name: str
    state: str
    is_retry: bool
    source: str
    count: int


@dataclass(frozen=True, slots=True)
class MetricInfo:
    """A user metric's definition (``rayops.util.metrics``); the same name means the same
    metric in every process of the cluster."""

    name: str
    kind: str  # COUNTER, GAUGE or HISTOGRAM
    description: str
    tag_keys: tuple[str, ...]
    boundaries: tuple[float, ...] = ()  # histograms: upper bounds of the finite buckets


@dataclass(frozen=True, slots=True)
class MetricSample:
    """The current value of one series (a metric and one set of tag values) in one process.

    Counters: ``value`` is the total since the process started (monotonic). Gauges: the last
    value set. Histograms: ``value`` is the sum of observations, ``count`` their number and
    ``bucket_counts`` the (non-cumulative) count per bucket, one more than there are
    boundaries (the last bucket is ``+Inf``).
    """

    name: str
    tags: tuple[tuple[str, str], ...]  # (key, value) in the metric's tag_keys order
    value: float
    count: int = 0
    bucket_counts: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class MetricsReport:
    """One core worker's metrics at one moment."""

    worker_id: bytes
    pid: int
    job_id: int
    component: str  # "driver" or "worker"
    seq: int  # increases by one per report sent by this process
    full: bool  # True: ``samples`` holds every series of this process
    task_counts: tuple[TaskStateCount, ...]
    metrics: tuple[MetricInfo, ...]  # definitions of the metrics named in ``samples``
    samples: tuple[MetricSample, ...]
