"""User metrics and task counts reach the node agent's /metrics on a real embedded cluster.

A Counter incremented in tasks, a Gauge set in an actor and a Histogram observed in the
driver are reported by each process's core worker to the node's agent, which serves them
(with the cluster token) as Ray names them; ``ray_tasks`` counts the finished tasks by name.
"""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

import rayops
from rayops.core_worker import state
from rayops.protocol.raylet_messages import NodeInfo
from rayops.util.metrics import Counter, Gauge, Histogram

DEADLINE_S = 30.0  # reports go out every second; the slack is for a loaded CI machine

done = Counter("itest_work_done", "Work items done.", tag_keys=("kind",))


@rayops.remote
def work(i: int) -> int:
    done.inc(tags={"kind": "square"})
    return i * i


@rayops.remote
def boom() -> None:
    raise ValueError("boom")


@rayops.remote
class Holder:
    def __init__(self) -> None:
        self.level = Gauge("itest_holder_level", "Level held.", tag_keys=("holder",))
        self.level.set_default_tags({"holder": "h1"})

    def set_level(self, v: float) -> float:
        self.level.set(v)
        return v


def _scrape() -> dict[str, list[tuple[dict[str, str], float]]]:
    cw = state.require()
    info = cw.call_raylet(NodeInfo()).node
    url = f"http://{info.node_ip}:{info.metrics_export_port}/metrics"
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {cw.token.decode()}"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        text = resp.read().decode()
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, []).append((s.labels, s.value))
    return out


def _wait_for(what: str, check: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    deadline = time.monotonic() + DEADLINE_S
    last: dict[str, Any] = {}
    while time.monotonic() < deadline:
        try:
            last = _scrape()
        except OSError:
            last = {}  # the agent may still be starting
        if check(last):
            return last
        time.sleep(0.2)
    names = sorted(k for k in last if k.startswith("ray_itest") or k == "ray_tasks")
    raise AssertionError(f"{what} not on the agent's /metrics within {DEADLINE_S} s; saw {names}")


def _total(samples: dict[str, Any], name: str, **labels: str) -> float:
    return sum(
        v
        for lab, v in samples.get(name, [])
        if all(lab.get(k) == want for k, want in labels.items())
    )


def test_user_metrics_and_task_counts_reach_the_agent(ray: Any) -> None:
    assert rayops.get([work.remote(i) for i in range(5)]) == [i * i for i in range(5)]
    h = Holder.remote()
    assert rayops.get(h.set_level.remote(42.0)) == 42.0
    lat = Histogram("itest_driver_latency", "Driver-side latency.", boundaries=[0.1, 1.0])
    lat.observe(0.5)
    lat.observe(3.0)
    with pytest.raises(ValueError, match="boom"):
        rayops.get(boom.remote())

    def ready(s: dict[str, Any]) -> bool:
        return (
            _total(s, "ray_itest_work_done_total", kind="square") == 5
            and _total(s, "ray_itest_holder_level", holder="h1") == 42.0
            and _total(s, "ray_itest_driver_latency_count") == 2
            and _total(s, "ray_tasks", State="FINISHED", Name="work") == 5
            and _total(s, "ray_tasks", State="FINISHED", Name="Holder.set_level") == 1
            and _total(s, "ray_tasks", State="FAILED", Name="boom") == 1
        )

    samples = _wait_for("the counter, gauge, histogram and FINISHED/FAILED task counts", ready)
    session = state.require().session_dir.rstrip("/").rsplit("/", 1)[-1]
    for labels, _ in samples["ray_itest_work_done_total"]:
        assert labels["SessionName"] == session
        assert labels["NodeAddress"]
    assert _total(samples, "ray_itest_driver_latency_bucket", le="1.0") == 1
    assert _total(samples, "ray_itest_driver_latency_bucket", le="+Inf") == 2
    # Nothing is left running once every result is back: owner and executor sides cancel out.
    samples = _wait_for(
        "no task left submitted or running",
        lambda s: (
            _total(s, "ray_tasks", State="SUBMITTED_TO_WORKER", Name="work") == 0
            and _total(s, "ray_tasks", State="RUNNING", Name="work") == 0
        ),
    )
