"""The autoscaler's monitor over a real cluster (GCS + raylet) with the fake provider:
pending demand the head cannot hold makes a launch within 5 s; a restarted monitor resumes
from the instance table in the GCS KV instead of launching again; request_resources() is a
floor the monitor scales to."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator, Mapping, Sequence

import pytest

import rayops
from rayops.autoscaler.monitor import Monitor
from rayops.autoscaler.sdk import request_resources
from rayops.autoscaler.types import AutoscalerConfig, NodeTypeConfig
from rayops.gcs.client import GcsClient
from rayops.protocol.autoscaler_messages import AUTOSCALER_NAMESPACE, STATUS_KEY, AutoscalerStatus
from rayops.testing.cluster import Cluster
from rayops.testing.fake_provider import FakeProvider

CONFIG = AutoscalerConfig(
    node_types={
        "head": NodeTypeConfig("head", {"CPU": 1}),
        "pool": NodeTypeConfig("pool", {"CPU": 1, "pool": 1}, max_workers=3),
    },
    head_node_type="head",
    max_workers=3,
    idle_timeout_s=60.0,
)


@pytest.fixture
def cluster(temp_dir: str) -> Iterator[Cluster]:
    c = Cluster(os.path.join(temp_dir, "autoscaler"), head_cpus=1)
    c.connect()
    yield c
    rayops.shutdown()
    c.shutdown()


class Running:
    """A monitor looping in a thread (as its daemon does), stopped on exit."""

    def __init__(self, monitor: Monitor, interval_s: float = 0.2) -> None:
        self.monitor = monitor
        self.stop = threading.Event()
        self.thread = threading.Thread(target=monitor.run, args=(self.stop, interval_s))

    def __enter__(self) -> Monitor:
        self.thread.start()
        return self.monitor

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(10)


def wait(check: object, what: str, timeout: float) -> float:
    start = time.monotonic()
    while not check():  # type: ignore[operator]
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)
    return time.monotonic() - start


@rayops.remote(resources={"pool": 1})
def needs_pool() -> int:
    return 1


def test_pending_shape_launches_within_5s_and_a_restart_resumes(cluster: Cluster) -> None:
    provider = FakeProvider({"head": {}, "pool": {}}, clock=time.time)
    ref = needs_pool.remote()  # no node has "pool": the raylet reports it as pending demand
    with GcsClient(cluster.address, cluster.token, timeout=5) as gcs:
        with Running(Monitor(gcs, provider, CONFIG, provider_name="fake")):
            took = wait(lambda: provider.launch_calls, "a launch", timeout=5.0)
            first = {c.request_id for c in provider.launch_calls}
            assert [c.node_type for c in provider.launch_calls][:1] == ["pool"]
            time.sleep(1.0)  # more rounds: the pending launch covers the demand
        print(f"pending demand -> launch in {took:.2f} s")
        assert {c.request_id for c in provider.launch_calls} == first
        assert sum(c.count for c in provider.launch_calls if c.request_id in first) == 1
        raw = gcs.kv_get(STATUS_KEY, namespace=AUTOSCALER_NAMESPACE)
        assert raw is not None
        st = AutoscalerStatus.from_json(raw)
        assert st.provider == "fake" and st.launch_requests == {"pool": 1}
        assert [p.node_type for p in st.pending] == ["pool"]
        # A new monitor (the daemon restarted): it reads the instance table from the KV.
        restarted = Monitor(gcs, provider, CONFIG, provider_name="fake")
        assert [i.node_type for i in restarted.table.values()] == ["pool"]
        with Running(restarted):
            time.sleep(1.5)
        assert {c.request_id for c in provider.launch_calls} == first, "launched twice"
    rayops.cancel(ref, force=True)


def test_request_resources_is_a_floor_the_monitor_scales_to(cluster: Cluster) -> None:
    provider = FakeProvider({"head": {}, "pool": {}}, clock=time.time)
    request_resources(bundles=[{"pool": 1}, {"pool": 1}])
    with GcsClient(cluster.address, cluster.token, timeout=5) as gcs:
        with Running(Monitor(gcs, provider, CONFIG, provider_name="fake")):
            wait(lambda: sum(c.count for c in provider.launch_calls) >= 2, "2 launches", 5.0)
            time.sleep(0.6)
        launched = {c.request_id: c.count for c in provider.launch_calls}
        assert sum(launched.values()) == 2
    with pytest.raises(ValueError, match="expected an amount >= 0"):
        request_resources(bundles=[{"pool": -1}])
    request_resources()  # withdraws the request


class FailingFirst:
    """A provisioner (the launcher over SSH, in the daemon) whose first machine fails."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def provision(self, addresses: Sequence[str], node_type: str) -> Mapping[str, str | None]:
        self.calls += addresses
        if len(self.calls) == 1:
            return {a: "step install: pip exited with code 1" for a in addresses}
        return {a: None for a in addresses}


def test_failed_provisioning_is_reported_and_retried_on_a_new_machine(cluster: Cluster) -> None:
    provider = FakeProvider({"head": {}, "pool": {}}, clock=time.time)
    provisioner = FailingFirst()
    config = AutoscalerConfig(
        node_types=CONFIG.node_types, head_node_type="head", max_workers=3, retry_backoff_s=0.2
    )
    ref = needs_pool.remote()
    with GcsClient(cluster.address, cluster.token, timeout=5) as gcs:
        monitor = Monitor(gcs, provider, config, provider_name="fake", provisioner=provisioner)
        with Running(monitor):
            wait(lambda: len(provisioner.calls) >= 2, "a second machine provisioned", 10.0)
            first = provisioner.calls[0]
            wait(
                lambda: all(m.internal_ip != first for m in provider.non_terminated().values()),
                "the failed try's machine terminated",
                10.0,
            )
        assert provisioner.calls[1] != first  # a new machine, not the same one
        raw = gcs.kv_get(STATUS_KEY, namespace=AUTOSCALER_NAMESPACE)
        assert raw is not None
        st = AutoscalerStatus.from_json(raw)
        (failure,) = st.failures
        assert "pip exited with code 1" in failure.cause and st.failed_create_nodes == 1
    rayops.cancel(ref, force=True)
