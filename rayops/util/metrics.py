"""Ray's ``ray.util.metrics``: application metrics (Counter, Gauge, Histogram).

Metrics work in drivers, tasks and actors. Each process keeps its series in memory
(``rayops.core_worker.user_metrics``); its core worker sends what changed to the node's agent
about once a second, and the agent exports every series on ``/metrics`` as ``ray_<name>``
with the metric's tags as labels (plus ``SessionName`` and ``NodeAddress``). A Counter is
exported as a Prometheus counter ``ray_<name>_total`` and, as Ray does for compatibility,
also as a gauge ``ray_<name>``.

Validation follows Ray's: an empty name is a ValueError; a name Prometheus would reject
warns (UserWarning) and the metric records nothing; tag keys must be a tuple of strings; tag
values must be strings; every tag key needs a value (given or default) and unknown tag keys
are refused; ``Counter.inc`` takes only positive values; histogram boundaries must be given,
positive (and, here, strictly increasing).

A metric object pickles as its definition, so one created in the driver can be used inside
a task: it records in the process that runs the task.
"""

from __future__ import annotations

import logging
import re
import warnings
from collections.abc import Sequence
from typing import Any

from rayops.core_worker.user_metrics import STORE, Tags
from rayops.protocol.metrics import COUNTER, GAUGE, HISTOGRAM, MetricInfo

logger = logging.getLogger(__name__)

__all__ = ["Counter", "Gauge", "Histogram", "Metric"]

# The metric name rule of the Prometheus text format (what prometheus_client accepts).
_VALID_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")


def _name_is_invalid(name: str) -> bool:
    if not isinstance(name, str):
        raise TypeError(f"Metric name must be a str, got {type(name).__name__}.")
    if len(name) == 0:
        raise ValueError("Empty name is not allowed. Please provide a metric name.")
    if not _VALID_NAME.match(name):
        warnings.warn(
            f"Invalid metric name: {name}. Metric will be discarded and data will not be "
            "collected or published. Metric names can only contain letters, numbers, _, "
            "and :, and cannot start with a number.",
            UserWarning,
            stacklevel=3,
        )
        return True
    return False


def _check_value(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"value must be int or float, got {type(value)}.")
    return float(value)


class Metric:
    """The parent class of the custom metrics; they share these methods."""

    _kind = ""

    def __init__(
        self,
        name: str,
        description: str = "",
        tag_keys: tuple[str, ...] | None = None,
    ) -> None:
        self._discarded = _name_is_invalid(name)
        self._name = name
        self._description = description
        self._default_tags: dict[str, str] = {}
        self._tag_keys: tuple[str, ...] = tag_keys or ()
        if not isinstance(self._tag_keys, tuple):
            raise TypeError(f"tag_keys should be a tuple type, got: {type(self._tag_keys)}")
        for key in self._tag_keys:
            if not isinstance(key, str):
                raise TypeError(f"Tag keys must be str, got {type(key)}.")

    def _define(self, boundaries: tuple[float, ...] = ()) -> None:
        if not self._discarded:
            STORE.define(
                MetricInfo(self._name, self._kind, self._description, self._tag_keys, boundaries)
            )

    def set_default_tags(self, default_tags: dict[str, str]) -> Metric:
        """Set the tags used when a record call does not give them; returns the metric."""
        for key, val in default_tags.items():
            if key not in self._tag_keys:
                raise ValueError(f"Unrecognized tag key {key}.")
            if not isinstance(val, str):
                raise TypeError(f"Tag values must be str, got {type(val)}.")
        self._default_tags = dict(default_tags)
        return self

    def _tags(self, tags: dict[str, str] | None) -> Tags:
        """The full tag set of one record: given tags over default tags, in tag_keys order."""
        if tags:
            for val in tags.values():
                if not isinstance(val, str):
                    raise TypeError(f"Tag values must be str, got {type(val)}.")
            unknown = [k for k in tags if k not in self._tag_keys]
            if unknown:
                raise ValueError(f"Unrecognized tag keys: {unknown}.")
        out = []
        for key in self._tag_keys:
            if tags and key in tags:
                out.append((key, tags[key]))
            elif key in self._default_tags:
                out.append((key, self._default_tags[key]))
            else:
                raise ValueError(f"Missing value for tag key {key}.")
        return tuple(out)

    def record(self, value: int | float, tags: dict[str, str] | None = None) -> None:
        """Deprecated in Ray in favour of inc/set/observe; kept for old code."""
        logger.warning(
            "%s.record() is deprecated in favor of %s() and will be removed in a future release.",
            type(self).__name__,
            {COUNTER: "inc", GAUGE: "set", HISTOGRAM: "observe"}.get(self._kind, "record"),
        )
        self._record(_check_value(value), tags)

    def _record(self, value: float, tags: dict[str, str] | None) -> None:
        raise NotImplementedError

    @property
    def info(self) -> dict[str, Any]:
        """The metric's name, description, tag keys and default tags."""
        return {
            "name": self._name,
            "description": self._description,
            "tag_keys": self._tag_keys,
            "default_tags": self._default_tags,
        }

    def __reduce__(self) -> Any:
        return (_rebuild, (type(self), self._init_args(), self._default_tags))

    def _init_args(self) -> tuple[Any, ...]:
        return (self._name, self._description, self._tag_keys)


def _rebuild(cls: type[Metric], args: tuple[Any, ...], default_tags: dict[str, str]) -> Metric:
    metric = cls(*args)
    if default_tags:
        metric.set_default_tags(default_tags)
    return metric


class Counter(Metric):
    """A cumulative metric that only goes up (a Prometheus counter)."""

    _kind = COUNTER

    def __init__(
        self, name: str, description: str = "", tag_keys: tuple[str, ...] | None = None
    ) -> None:
        super().__init__(name, description, tag_keys)
        self._define()

    def inc(self, value: int | float = 1.0, tags: dict[str, str] | None = None) -> None:
        """Increment the counter by ``value`` (default 1); ``tags`` override default tags."""
        v = _check_value(value)
        if v <= 0:
            raise ValueError(f"value must be >0, got {value}")
        self._record(v, tags)

    def _record(self, value: float, tags: dict[str, str] | None) -> None:
        key = self._tags(tags)
        if not self._discarded:
            STORE.inc(self._name, key, value)


class Gauge(Metric):
    """The last value set, which may go up and down (a Prometheus gauge)."""

    _kind = GAUGE

    def __init__(
        self, name: str, description: str = "", tag_keys: tuple[str, ...] | None = None
    ) -> None:
        super().__init__(name, description, tag_keys)
        self._define()

    def set(self, value: int | float, tags: dict[str, str] | None = None) -> None:
        """Set the gauge to ``value``; ``tags`` override default tags."""
        self._record(_check_value(value), tags)

    def _record(self, value: float, tags: dict[str, str] | None) -> None:
        key = self._tags(tags)
        if not self._discarded:
            STORE.set(self._name, key, value)


class Histogram(Metric):
    """Observations counted in buckets (a Prometheus histogram); ``boundaries`` are the
    buckets' upper bounds."""

    _kind = HISTOGRAM

    def __init__(
        self,
        name: str,
        description: str = "",
        boundaries: Sequence[float] | None = None,
        tag_keys: tuple[str, ...] | None = None,
    ) -> None:
        super().__init__(name, description, tag_keys)
        if boundaries is None or len(boundaries) == 0:
            raise ValueError(
                "boundaries argument should be provided when using the Histogram class. "
                'e.g., Histogram("name", boundaries=[1.0, 2.0])'
            )
        for i, boundary in enumerate(boundaries):
            if isinstance(boundary, bool) or not isinstance(boundary, (int, float)):
                raise TypeError(
                    f"Invalid `boundaries` argument at index {i}, {list(boundaries)}: "
                    f"expected numbers, got {type(boundary).__name__}."
                )
            if boundary <= 0:
                raise ValueError(
                    f"Invalid `boundaries` argument at index {i}, {list(boundaries)}. "
                    "Use positive values for the arguments."
                )
            if i and boundary <= boundaries[i - 1]:
                raise ValueError(
                    f"Invalid `boundaries` argument at index {i}, {list(boundaries)}. "
                    "Boundaries must be strictly increasing."
                )
        self.boundaries = list(boundaries)
        self._define(tuple(float(b) for b in boundaries))

    def observe(self, value: int | float, tags: dict[str, str] | None = None) -> None:
        """Count ``value`` in its bucket; ``tags`` override default tags."""
        self._record(_check_value(value), tags)

    def _record(self, value: float, tags: dict[str, str] | None) -> None:
        key = self._tags(tags)
        if not self._discarded:
            STORE.observe(self._name, key, value)

    @property
    def info(self) -> dict[str, Any]:
        """The metric's name, description, tag keys, default tags and boundaries."""
        info = super().info
        info["boundaries"] = self.boundaries
        return info

    def _init_args(self) -> tuple[Any, ...]:
        return (self._name, self._description, self.boundaries, self._tag_keys)
