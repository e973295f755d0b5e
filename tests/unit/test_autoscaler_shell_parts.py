"""The autoscaler shell's pure parts: demand and node views from GCS rows, idle time, the
status record, and the scaling rules read from a cluster spec."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from rayops.autoscaler.gcs_view import (
    ClusterRead,
    GroupRow,
    IdleTracker,
    NodeRow,
    build_demand,
    node_views,
)
from rayops.autoscaler.types import BundleDemand, ResourceDemand, ResourceRequest
from rayops.cli.autoscaler_cmds import render_status
from rayops.launcher.spec import load_spec
from rayops.protocol.autoscaler_messages import (
    AutoscalerStatus,
    FailureRecord,
    PendingLaunch,
    ResourceRequestRecord,
    check_bundles,
)
from rayops.providers.local import autoscaling_enabled, static_worker_count


def row(
    nid: str,
    ip: str,
    total: dict[str, float],
    avail: dict[str, float] | None = None,
    pending: tuple = (),
    used: int = 0,
    head: bool = False,
) -> NodeRow:
    return NodeRow(nid, ip, head, total, avail if avail is not None else total, {}, used, pending)


def test_demand_sums_queued_shapes_over_nodes_and_drops_node_markers() -> None:
    read = ClusterRead(
        nodes=(
            row("a", "10.0.0.1", {"CPU": 2}, pending=(({"CPU": 1, "pool": 1}, 2, True),)),
            row(
                "b",
                "10.0.0.2",
                {"CPU": 2},
                pending=(({"pool": 1, "CPU": 1}, 3, True), ({"node:10.0.0.2": 0.001}, 1, False)),
            ),
        ),
        groups=(
            GroupRow("PENDING", "STRICT_SPREAD", ({"CPU": 1},) * 3, ()),
            GroupRow("CREATED", "PACK", ({"CPU": 1},), ("a",)),
        ),
        request=ResourceRequestRecord(({"CPU": 1.0}, {"GPU": 1.0}), 1.0),
    )
    d = build_demand(read)
    assert d.tasks == (ResourceDemand({"CPU": 1.0, "pool": 1.0}, 5),)
    assert d.groups == (BundleDemand(({"CPU": 1.0},) * 3, "STRICT_SPREAD"),)
    assert d.requests == (ResourceRequest(({"CPU": 1.0}, {"GPU": 1.0})),)


def test_node_views_mark_bundles_objects_head_and_instances() -> None:
    read = ClusterRead(
        nodes=(
            row("h", "10.0.0.1", {"CPU": 1}, head=True),
            row("a", "10.0.0.2", {"CPU": 2, "CPU_group_0_x": 1}, {"CPU": 1}),
            row("b", "10.0.0.3", {"CPU": 2}, used=100),
        ),
        groups=(GroupRow("CREATED", "PACK", ({"CPU": 1},), ("a",)),),
        request=None,
    )
    views = node_views(read, {"b": 7.0}, {"10.0.0.2": "i-1"}, {"10.0.0.2": "w"}, "head")
    h, a, b = views
    assert (h.is_head, h.instance_id, h.node_type) == (True, None, "head")
    assert (a.instance_id, a.node_type, a.holds_bundles, a.total) == ("i-1", "w", True, {"CPU": 2})
    assert (b.instance_id, b.holds_objects, b.idle_s, b.holds_bundles) == (None, True, 7.0, False)


def test_idle_time_counts_from_the_last_busy_report() -> None:
    t = IdleTracker()
    busy = row("a", "ip", {"CPU": 2}, {"CPU": 1})
    free = row("a", "ip", {"CPU": 2})
    assert t.update([busy], 100.0) == {"a": 0.0}
    assert t.update([free], 103.0) == {"a": 3.0}
    assert t.update([free], 110.0) == {"a": 10.0}
    assert t.update([row("a", "ip", {"CPU": 2}, used=5)], 111.0) == {"a": 0.0}  # objects
    assert t.update([free], 112.0) == {"a": 1.0}
    assert t.update([], 113.0) == {}


def test_status_record_round_trips_and_renders_causes_and_retry_times() -> None:
    st = AutoscalerStatus(
        time=1000.0,
        provider="local",
        running=1,
        pending=(PendingLaunch("i-2", "w", "launching", "10.0.0.5", 990.0),),
        failures=(FailureRecord("i-3", "w", "10.0.0.6", "10.0.0.6: unreachable", 995.0, 1030.0),),
        pending_demand=(({"pool": 1.0}, 2),),
        infeasible=({"GPU": 8.0},),
        started_nodes=3,
        stopped_nodes=1,
        failed_create_nodes=1,
        launch_requests={"w": 4},
    )
    assert AutoscalerStatus.from_json(st.to_json()) == st
    text = render_status(st, now=1000.0)
    assert "i-2  w at 10.0.0.5: launching for 10 s" in text
    assert "10.0.0.6: unreachable [retry in 30 s]" in text
    assert "{GPU: 8}" in text and "Launched 3, stopped 1, failed to create 1" in text


def test_request_bundles_are_checked() -> None:
    assert check_bundles([{"CPU": 1, "GPU": 0}]) == ({"CPU": 1.0},)
    with pytest.raises(ValueError, match=r"bundles\[0\]\['CPU'\]: expected an amount >= 0"):
        check_bundles([{"CPU": -1}])
    with pytest.raises(ValueError, match="expected a list of dicts"):
        check_bundles({"CPU": 1})


def _spec(tmp_path: Path, body: str) -> Path:
    key = tmp_path / "key"
    key.write_text("k")
    key.chmod(0o600)
    p = tmp_path / "cluster.yaml"
    p.write_text(
        textwrap.dedent(f"""
        cluster_name: t
        provider: {{type: local, head_ip: 10.0.0.1, worker_ips: [10.0.0.2, 10.0.0.3, 10.0.0.4]}}
        auth: {{ssh_user: root, ssh_private_key: {key}, host_key_policy: accept-new,
               known_hosts_file: {tmp_path}/kh}}
        """)
        + textwrap.dedent(body)
    )
    return p


def test_static_workers_are_min_workers_only_when_autoscaling(tmp_path: Path) -> None:
    spec, _ = load_spec(_spec(tmp_path, ""))
    assert not autoscaling_enabled(spec) and static_worker_count(spec) == 3
    spec, notes = load_spec(
        _spec(
            tmp_path,
            """
            head_node_type: head
            idle_timeout_minutes: 0.5
            upscaling_speed: 2
            available_node_types:
              head: {resources: {CPU: 1}}
              pool: {resources: {CPU: 1, pool: 1}, min_workers: 1, max_workers: 3}
            """,
        )
    )
    assert autoscaling_enabled(spec) and static_worker_count(spec) == 1
    assert not any("upscaling_speed" in n for n in notes)  # acted on now
    from rayops.autoscaler.config import config_from_spec

    cfg = config_from_spec(spec)
    assert (cfg.head_node_type, cfg.idle_timeout_s, cfg.upscaling_speed) == ("head", 30.0, 2.0)
    assert cfg.node_types["pool"].resources == {"CPU": 1, "pool": 1}
    assert cfg.max_workers == 3


def test_agent_exports_the_status_under_rays_autoscaler_names() -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    from rayops.agent.autoscaler_metrics import autoscaler_families
    from rayops.agent.families import SnapshotCollector

    st = AutoscalerStatus(
        time=1.0,
        provider="local",
        running=2,
        pending=(PendingLaunch("i-1", "w", "provisioning", "10.0.0.5", 0.5),),
        pending_demand=(({"CPU": 1.0, "pool": 1.0}, 3),),
        started_nodes=4,
        stopped_nodes=2,
        failed_create_nodes=1,
    )
    reg = CollectorRegistry()
    reg.register(SnapshotCollector(lambda: autoscaler_families(st, ("s", "10.0.0.1"))))
    text = generate_latest(reg).decode()
    base = 'NodeAddress="10.0.0.1",SessionName="s"'
    for line in (
        f"autoscaler_pending_nodes{{{base}}} 1.0",
        f"autoscaler_running_workers{{{base}}} 2.0",
        f"autoscaler_started_nodes_total{{{base}}} 4.0",
        f"autoscaler_stopped_nodes_total{{{base}}} 2.0",
        f"autoscaler_failed_create_nodes_total{{{base}}} 1.0",
        f'autoscaler_pending_demand{{{base},shape="{{CPU: 1, pool: 1}}"}} 3.0',
    ):
        assert line in text, text


def test_head_spec_points_at_the_heads_copies_and_refuses_default_keys(tmp_path: Path) -> None:
    import yaml

    from rayops.launcher.autoscaling import HeadBundle, head_spec
    from rayops.launcher.cluster import Cluster, Events
    from rayops.launcher.errors import LauncherError
    from rayops.launcher.ssh import SshConfig

    (tmp_path / "app").mkdir()
    path = _spec(
        tmp_path,
        f"""
        file_mounts: {{"~/app": {tmp_path}/app}}
        rayops: {{install: {{source: wheel, path: {tmp_path}/x.whl, extra_packages: [numpy]}}}}
        available_node_types:
          head: {{resources: {{CPU: 1}}}}
          pool: {{resources: {{pool: 1}}, max_workers: 2}}
        head_node_type: head
        """,
    )
    (tmp_path / "x.whl").write_text("")
    spec, _ = load_spec(path)
    cluster = Cluster(spec, SshConfig("root"), None, tmp_path, Events())  # type: ignore[arg-type]
    data = head_spec(cluster, HeadBundle("/h/rayops/t/autoscaler"))
    assert data["auth"]["ssh_private_key"] == "/h/rayops/t/autoscaler/ssh_key"
    assert data["auth"]["known_hosts_file"] == "/h/rayops/t/autoscaler/known_hosts"
    assert data["rayops"]["install"] == {"source": "project", "extra_packages": ["numpy"]}
    assert data["file_mounts"] == {"~/app": "/h/rayops/t/autoscaler/mounts/0/"}
    assert yaml.safe_load(yaml.safe_dump(data))["provider"]["worker_ips"][0] == "10.0.0.2"
    no_key = yaml.safe_load(path.read_text())
    del no_key["auth"]["ssh_private_key"]
    path.write_text(yaml.safe_dump(no_key))
    spec, _ = load_spec(path)
    cluster = Cluster(spec, SshConfig("root"), None, tmp_path, Events())  # type: ignore[arg-type]
    with pytest.raises(LauncherError, match=r"autoscaling needs auth\.ssh_private_key"):
        head_spec(cluster, HeadBundle("/h/rayops/t/autoscaler"))


def test_daemon_reads_new_scaling_rules_when_up_rewrites_its_spec(tmp_path: Path) -> None:
    import os
    from types import SimpleNamespace

    from rayops.autoscaler.__main__ import SpecReload
    from rayops.autoscaler.config import config_from_spec

    types = """
        head_node_type: head
        available_node_types:
          head: {resources: {CPU: 1}}
          pool: {resources: {pool: 1}, max_workers: MAX}
        """
    path = _spec(tmp_path, types.replace("MAX", "2"))
    spec, _ = load_spec(path)
    monitor = SimpleNamespace(config=config_from_spec(spec), policy=None)
    reload = SpecReload(str(path), spec)
    reload.check(monitor)
    assert monitor.policy is None  # unchanged file: nothing read
    path.write_text(path.read_text().replace("max_workers: 2", "max_workers: 3"))
    os.utime(path, (reload.mtime + 5, reload.mtime + 5))
    reload.check(monitor)
    assert monitor.config.node_types["pool"].max_workers == 3 and monitor.policy is not None
