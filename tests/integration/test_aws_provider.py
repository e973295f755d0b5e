"""The aws node provider against a real moto server on 127.0.0.1 (boto3 over HTTP, no mocks).

moto runs with its AMI and instance-type validation on, so a bad ImageId or InstanceType is
refused as EC2 refuses it. Each test uses its own cluster name: the tags are the record, and
one cluster's provider must never see or touch another's instances.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from typing import Any

import pytest

from rayops.exceptions import RayOpsConfigError
from rayops.launcher.spec import ClusterSpec
from rayops.providers import make_provider
from rayops.providers.aws import AwsNodeProvider
from rayops.providers.base import TAG_CLUSTER, TAG_NODE_TYPE, TAG_REQUEST, TAG_ROLE
from rayops.testing.moto_ec2 import MotoEc2, credentials_env

REGION = "us-west-2"


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoEc2]:
    home = str(tmp_path_factory.mktemp("aws-home"))
    with pytest.MonkeyPatch.context() as mp:
        for key, value in credentials_env(home).items():
            mp.setenv(key, value)
        with MotoEc2() as server:
            yield server


@pytest.fixture(scope="module")
def ec2(moto: MotoEc2) -> Any:
    """A plain boto3 client: the test's own look at EC2, beside the provider's."""
    return moto.client(REGION)


@pytest.fixture(scope="module")
def ami(ec2: Any) -> str:
    # One of the public AMIs moto ships, found the way a user would (listing all is slow).
    images = ec2.describe_images(
        Owners=["099720109477"], Filters=[{"Name": "name", "Values": ["ubuntu/images/*"]}]
    )["Images"]
    return str(images[0]["ImageId"])


@pytest.fixture(scope="module")
def subnet(ec2: Any) -> str:
    return str(ec2.describe_subnets()["Subnets"][0]["SubnetId"])


@pytest.fixture
def configs(ami: str, subnet: str) -> dict[str, dict[str, Any]]:
    return {
        "cpu": {"InstanceType": "m5.large", "ImageId": ami, "SubnetIds": [subnet]},
        "spot": {
            "InstanceType": "m5.xlarge",
            "ImageId": ami,
            "InstanceMarketOptions": {"MarketType": "spot"},
            "TagSpecifications": [
                {"ResourceType": "instance", "Tags": [{"Key": "team", "Value": "research"}]}
            ],
        },
        "bad_ami": {"InstanceType": "m5.large", "ImageId": "ami-12345678"},
        "bad_type": {"InstanceType": "m5.enormous", "ImageId": ami},
    }


_SESSION: list[Any] = []


def shared_session() -> Any:
    """One boto3 session for every provider object of this module: making a client on a new
    session loads EC2's API model (~0.5 s each)."""
    if not _SESSION:
        import boto3

        _SESSION.append(boto3.session.Session())
    return _SESSION[0]


def provider(moto: MotoEc2, cluster: str, configs: dict[str, Any], **kw: Any) -> AwsNodeProvider:
    """A new provider object: what a restarted autoscaler makes."""
    return AwsNodeProvider(
        cluster, REGION, configs, endpoint_url=moto.endpoint_url, session=shared_session(), **kw
    )


def tagged(ec2: Any, key: str, value: str) -> list[dict[str, Any]]:
    pages = ec2.get_paginator("describe_instances").paginate(
        Filters=[{"Name": f"tag:{key}", "Values": [value]}]
    )
    return [i for page in pages for r in page["Reservations"] for i in r["Instances"]]


def test_launch_tags_and_a_new_provider_rebuilds_everything_from_ec2(
    moto: MotoEc2, ec2: Any, configs: dict[str, Any], subnet: str
) -> None:
    p = provider(moto, "c-launch", configs)
    p.launch("cpu", 2, "req-1")
    assert p.poll_errors() == []
    view = p.non_terminated()
    assert len(view) == 2
    for inst in view.values():
        assert inst.node_type == "cpu" and inst.request_id == "req-1" and inst.running
        assert inst.internal_ip and inst.external_ip
        assert inst.tags[TAG_CLUSTER] == "c-launch" and inst.tags[TAG_ROLE] == "worker"
        assert inst.tags[TAG_NODE_TYPE] == "cpu" and inst.tags[TAG_REQUEST] == "req-1"
        assert inst.tags["Name"] == "rayops-c-launch-cpu"
    raw = tagged(ec2, TAG_CLUSTER, "c-launch")
    assert {i["SubnetId"] for i in raw} == {subnet}
    assert {i["InstanceType"] for i in raw} == {"m5.large"}

    # A provider object that never launched anything (a restarted autoscaler) sees the same.
    again = provider(moto, "c-launch", configs)
    assert again.non_terminated() == view
    # Another cluster's provider sees none of it.
    assert provider(moto, "c-other", configs).non_terminated() == {}


def test_launch_is_idempotent_by_request_id_across_provider_objects(
    moto: MotoEc2, ec2: Any, configs: dict[str, Any]
) -> None:
    p = provider(moto, "c-idem", configs)
    p.launch("cpu", 3, "req-a")
    p.launch("cpu", 3, "req-a")
    provider(moto, "c-idem", configs).launch("cpu", 3, "req-a")  # after a "restart"
    assert len(tagged(ec2, TAG_REQUEST, "req-a")) == 3
    # A request whose machines were terminated since was still fulfilled: not redone.
    p.terminate(list(p.non_terminated()), "term-a")
    provider(moto, "c-idem", configs).launch("cpu", 3, "req-a")
    assert len(tagged(ec2, TAG_REQUEST, "req-a")) == 3
    assert provider(moto, "c-idem", configs).non_terminated() == {}
    # A new request id is a new launch.
    p.launch("cpu", 1, "req-b")
    assert len(p.non_terminated()) == 1


def test_terminate_is_idempotent_and_touches_only_this_cluster(
    moto: MotoEc2, ec2: Any, configs: dict[str, Any]
) -> None:
    mine = provider(moto, "c-term", configs)
    theirs = provider(moto, "c-term-neighbour", configs)
    mine.launch("cpu", 2, "req-1")
    theirs.launch("cpu", 1, "req-1")
    keep, drop = sorted(mine.non_terminated())
    (foreign,) = theirs.non_terminated()
    unknown = "i-0123456789abcdef0"
    mine.terminate([drop, unknown, foreign], "term-1")
    mine.terminate([drop, unknown, foreign], "term-1")  # again: a no-op
    assert mine.poll_errors() == []
    assert set(mine.non_terminated()) == {keep}
    assert set(provider(moto, "c-term", configs).non_terminated()) == {keep}
    state = {i["InstanceId"]: i["State"]["Name"] for i in tagged(ec2, TAG_REQUEST, "req-1")}
    assert state[drop] in ("shutting-down", "terminated")
    assert state[foreign] == "running", "a neighbour cluster's instance was terminated"


def test_spot_and_user_tags_from_node_config(
    moto: MotoEc2, ec2: Any, configs: dict[str, Any]
) -> None:
    p = provider(moto, "c-spot", configs)
    p.launch("spot", 1, "req-spot")
    assert p.poll_errors() == []
    (raw,) = tagged(ec2, TAG_CLUSTER, "c-spot")
    assert raw["InstanceLifecycle"] == "spot" and raw["InstanceType"] == "m5.xlarge"
    tags = {t["Key"]: t["Value"] for t in raw["Tags"]}
    assert tags["team"] == "research" and tags[TAG_NODE_TYPE] == "spot"


def test_set_tags_merge_and_survive_a_new_provider(moto: MotoEc2, configs: dict[str, Any]) -> None:
    p = provider(moto, "c-tags", configs)
    p.launch("cpu", 1, "req-1")
    (node_id,) = p.non_terminated()
    p.set_tags(node_id, {"rayops-node-status": "up-to-date"})
    p.set_tags("i-0123456789abcdef0", {"x": "y"})  # unknown: a no-op
    (inst,) = provider(moto, "c-tags", configs).non_terminated().values()
    assert inst.tags["rayops-node-status"] == "up-to-date" and inst.request_id == "req-1"


@pytest.mark.parametrize(
    ("node_type", "code"),
    [("bad_ami", "InvalidAMIID.NotFound"), ("bad_type", "InvalidInstanceType")],
)
def test_refused_launches_come_back_from_poll_errors(
    moto: MotoEc2, configs: dict[str, Any], node_type: str, code: str
) -> None:
    p = provider(moto, f"c-err-{node_type}".replace("_", "-"), configs)
    p.launch(node_type, 2, "req-bad")  # no exception: failures are values
    (err,) = p.poll_errors()
    assert err.kind == "launch" and err.request_id == "req-bad"
    assert err.node_type == node_type and err.count == 2
    assert code in err.cause and configs[node_type]["ImageId"] in err.cause
    assert p.poll_errors() == []  # each error is reported once
    assert p.non_terminated() == {}
    # A failed request is not remembered as done: retrying it tries EC2 again.
    p.launch(node_type, 2, "req-bad")
    assert [e.request_id for e in p.poll_errors()] == ["req-bad"]


def test_a_missing_subnet_falls_back_to_the_next(
    moto: MotoEc2, ec2: Any, configs: dict[str, Any], subnet: str
) -> None:
    configs["cpu"]["SubnetIds"] = ["subnet-0000000000000dead", subnet]
    p = provider(moto, "c-subnets", configs)
    for i in range(3):  # requests start at different subnets; every one ends in the real one
        p.launch("cpu", 1, f"req-{i}")
    assert p.poll_errors() == []
    assert {i["SubnetId"] for i in tagged(ec2, TAG_CLUSTER, "c-subnets")} == {subnet}
    configs["cpu"]["SubnetIds"] = ["subnet-0000000000000dead"]
    p = provider(moto, "c-subnets", configs)
    p.launch("cpu", 1, "req-nowhere")
    (err,) = p.poll_errors()
    assert "InvalidSubnetID.NotFound" in err.cause and "subnet-0000000000000dead" in err.cause


def test_an_unreachable_endpoint_is_an_error_value_not_a_crash(configs: dict[str, Any]) -> None:
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    p = AwsNodeProvider(
        "c-dead", REGION, configs, endpoint_url=dead, max_attempts=1, session=shared_session()
    )
    p.launch("cpu", 1, "req-1")
    p.terminate(["i-0123456789abcdef0"], "term-1")
    launch_err, terminate_err = p.poll_errors()
    assert launch_err.kind == "launch" and "EC2 not reachable" in launch_err.cause
    assert terminate_err.kind == "terminate"
    assert terminate_err.node_ids == ("i-0123456789abcdef0",)
    with pytest.raises(ConnectionError, match="cannot list the EC2 instances of cluster 'c-dead'"):
        p.non_terminated()


def test_bad_node_config_and_unknown_type_raise_at_once(
    moto: MotoEc2, configs: dict[str, Any]
) -> None:
    with pytest.raises(RayOpsConfigError, match=r"node_config\.NetworkInterfaces: unknown"):
        provider(moto, "c-x", {"cpu": {**configs["cpu"], "NetworkInterfaces": []}})
    p = provider(moto, "c-x", configs)
    with pytest.raises(ValueError, match="unknown node type 'gpu'"):
        p.launch("gpu", 1, "req-1")


def test_make_provider_builds_it_from_a_spec(
    moto: MotoEc2, configs: dict[str, Any], ami: str
) -> None:
    spec = ClusterSpec.model_validate(
        {
            "cluster_name": "c-spec",
            "provider": {
                "type": "aws",
                "region": REGION,
                "availability_zone": "us-west-2b",
                "endpoint_url": moto.endpoint_url,
            },
            "auth": {"ssh_user": "ubuntu"},
            "available_node_types": {
                "head": {"node_config": configs["cpu"]},
                "zoned": {"node_config": {"InstanceType": "m5.large", "ImageId": ami}},
            },
            "head_node_type": "head",
        }
    )
    p = make_provider(spec, session=shared_session())
    p.launch("zoned", 1, "req-1")
    assert p.poll_errors() == []
    (inst,) = p.non_terminated().values()
    assert inst.node_type == "zoned"
    raw = moto.client(REGION).describe_instances(InstanceIds=[inst.node_id])
    placement = raw["Reservations"][0]["Instances"][0]["Placement"]
    assert placement["AvailabilityZone"] == "us-west-2b"


def test_credentials_stay_fake(moto: MotoEc2) -> None:
    # The module fixture's environment: boto3 never looks for real credentials or IMDS.
    assert os.environ["AWS_ACCESS_KEY_ID"] == "testing"
    assert os.environ["AWS_EC2_METADATA_DISABLED"] == "true"
    assert moto.endpoint_url.startswith("http://127.0.0.1:")


# ---- A restarted autoscaler: A's reconciler with this provider, killed and rebuilt ----------


def carry_out(p: AwsNodeProvider, actions: list[Any]) -> list[Any]:
    """The shell's part for these tests: provider calls; provisioning is not under test here
    (the Provision actions are returned)."""
    from rayops.autoscaler.instances import LaunchNodes, Provision, TerminateNodes

    provisions = []
    for action in actions:
        if isinstance(action, LaunchNodes):
            p.launch(action.node_type, action.count, action.request_id)
        elif isinstance(action, TerminateNodes):
            p.terminate(action.ids, action.request_id)
        elif isinstance(action, Provision):
            provisions.append(action)
    assert p.poll_errors() == []
    return provisions


def test_a_restarted_autoscaler_resumes_from_its_table_and_ec2_without_launching_twice(
    moto: MotoEc2, ec2: Any, configs: dict[str, Any]
) -> None:
    from rayops.autoscaler.instances import (
        LaunchNodes,
        LaunchRequested,
        Resume,
        TerminateNodes,
        TerminateRequested,
        from_json,
        observe,
        reconcile,
        reconcile_all,
        to_json,
    )

    cluster, now = "c-restart", 1000.0
    # 1. The autoscaler decides 2 cpu nodes, stores its table, calls launch, and dies before
    #    it ever lists EC2 (the records have no machine yet).
    p = provider(moto, cluster, configs)
    table, actions = reconcile({}, LaunchRequested("cpu", 2, "req-r1", now))
    stored = to_json(table)
    carry_out(p, actions)
    assert len(tagged(ec2, TAG_REQUEST, "req-r1")) == 2
    del p, table

    # 2. A new autoscaler: the JSON table and EC2's tags are all it has. Resume repeats the
    #    launch (same request id) and the provider answers it from EC2: nothing new.
    p = provider(moto, cluster, configs)
    table = from_json(stored)
    table, actions = reconcile(table, Resume(now + 5))
    assert [a for a in actions if isinstance(a, LaunchNodes)] == [LaunchNodes("cpu", 2, "req-r1")]
    carry_out(p, actions)
    assert len(tagged(ec2, TAG_REQUEST, "req-r1")) == 2, "the restarted autoscaler launched twice"

    # 3. Listing EC2 binds both machines to their records (by request id and type): both go
    #    to provisioning with their addresses, none is "adopted" as unknown.
    cloud = p.non_terminated()
    table, actions = reconcile_all(table, observe(table, cloud, now + 6))
    provisions = carry_out(p, actions)
    assert {r.cloud_id for r in table.values()} == set(cloud)
    assert {r.state for r in table.values()} == {"provisioning"}
    assert not [iid for iid in table if iid.startswith("adopted/")]
    assert {a.ip for a in provisions} == {c.internal_ip for c in cloud.values()}

    # 4. Terminate one; the autoscaler dies again before the call is made. The next one
    #    repeats the terminate from its table, and the machine goes exactly once.
    victim = sorted(table)[0]
    table, actions = reconcile(table, TerminateRequested(victim, "idle", now + 10))
    stored = to_json(table)
    del p, table
    p = provider(moto, cluster, configs)
    table = from_json(stored)
    table, actions = reconcile(table, Resume(now + 11))
    assert any(isinstance(a, TerminateNodes) for a in actions)
    assert not any(isinstance(a, LaunchNodes) for a in actions)
    carry_out(p, actions)
    table, actions = reconcile_all(table, observe(table, p.non_terminated(), now + 12))
    carry_out(p, actions)
    assert table[victim].state == "terminated"
    (survivor,) = (r for r in table.values() if r.state != "terminated")
    assert set(p.non_terminated()) == {survivor.cloud_id}
    assert len(tagged(ec2, TAG_REQUEST, "req-r1")) == 2  # still the first two machines


def test_throttling_is_retried_by_botocore_then_reported_as_a_value(
    moto: MotoEc2, configs: dict[str, Any]
) -> None:
    """A loopback HTTP server that answers every EC2 call as a throttled one (moto has no
    throttling of its own): botocore retries it, then the launch fails as a value."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    calls: list[str] = []
    body = (
        b'<?xml version="1.0" encoding="UTF-8"?><Response><Errors><Error>'
        b"<Code>RequestLimitExceeded</Code><Message>Request limit exceeded.</Message>"
        b"</Error></Errors><RequestID>r-1</RequestID></Response>"
    )

    class Throttled(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            calls.append(self.rfile.read(int(self.headers["Content-Length"])).decode())
            self.send_response(503)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Throttled)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        p = AwsNodeProvider(
            "c-throttled",
            REGION,
            configs,
            endpoint_url=f"http://127.0.0.1:{server.server_address[1]}",
            max_attempts=2,
            session=shared_session(),
        )
        p.launch("cpu", 1, "req-1")
        (err,) = p.poll_errors()
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    assert len(calls) == 2, "botocore did not retry the throttled call"
    assert "RequestLimitExceeded" in err.cause and "throttled by EC2" in err.cause


def test_availability_zone_keeps_only_the_subnets_in_those_zones(
    moto: MotoEc2, ec2: Any, configs: dict[str, Any]
) -> None:
    by_zone = {s["AvailabilityZone"]: s["SubnetId"] for s in ec2.describe_subnets()["Subnets"]}
    configs["cpu"]["SubnetIds"] = [by_zone["us-west-2a"], by_zone["us-west-2b"]]
    p = provider(moto, "c-zones", configs, availability_zones=["us-west-2b"])
    for i in range(3):  # whichever subnet a request starts at, only the 2b one is used
        p.launch("cpu", 1, f"req-{i}")
    assert p.poll_errors() == []
    assert {i["SubnetId"] for i in tagged(ec2, TAG_CLUSTER, "c-zones")} == {by_zone["us-west-2b"]}
    p = provider(moto, "c-zones", configs, availability_zones=["us-west-2c"])
    p.launch("cpu", 1, "req-nowhere")
    (err,) = p.poll_errors()
    assert "none of node_config.SubnetIds is in provider.availability_zone us-west-2c" in err.cause
