"""The provider section per type (aws, external) and aws node_configs: accepted keys load,
every other key is refused naming it, with the file and line (no network, no boto3 call)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from rayops.launcher.cluster import open_cluster
from rayops.launcher.errors import ClusterSpecError, LauncherError
from rayops.launcher.spec import load_spec
from rayops.providers.aws_node_config import node_config_problems, run_instances_args

REPO = Path(__file__).resolve().parents[2]

AWS = """
cluster_name: t
provider:
  type: aws
  region: us-west-2
auth:
  ssh_user: ubuntu
  host_key_policy: accept-new
available_node_types:
  head.default:
    node_config: {InstanceType: m5.large, ImageId: ami-0123456789abcdef0}
  cpu:
    resources: {CPU: 8}
    node_config:
      InstanceType: m5.2xlarge
      ImageId: ami-0123456789abcdef0
      InstanceMarketOptions: {MarketType: spot}
head_node_type: head.default
"""


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A home with the key file the examples point at."""
    h = tmp_path / "home"
    (h / ".ssh").mkdir(parents=True)
    key = h / ".ssh" / "id_ed25519"
    key.write_text("not really a key\n")
    key.chmod(0o600)
    monkeypatch.setenv("HOME", str(h))
    return h


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "cluster.yaml"
    p.write_text(textwrap.dedent(text).lstrip("\n"))
    return p


def errors_of(path: Path) -> str:
    with pytest.raises(ClusterSpecError) as info:
        load_spec(path)
    return str(info.value)


def test_the_aws_and_external_examples_load(home: Path) -> None:
    aws, _ = load_spec(REPO / "cluster-aws.yaml.example")
    assert aws.provider.type == "aws" and aws.provider.region == "us-west-2"
    assert aws.available_node_types["cpu.spot"].node_config["InstanceMarketOptions"] == {
        "MarketType": "spot"
    }
    ext, _ = load_spec(REPO / "cluster-external.yaml.example")
    assert ext.provider.module == "my_company.rayops_provider:RackProvider"
    assert ext.provider.config == {"rack": "b12"}


def test_a_minimal_aws_spec_loads(tmp_path: Path) -> None:
    spec, _ = load_spec(write(tmp_path, AWS))
    assert spec.provider.head_ip == ""  # the head's address is not in an aws spec
    assert spec.available_node_types["cpu"].node_config["InstanceType"] == "m5.2xlarge"


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("  region: us-west-2\n", "", "'region' is required for provider type 'aws'"),
        (
            "  region: us-west-2\n",
            "  region: us-west-2\n  head_ip: 10.0.0.1\n",
            "'head_ip': not a key of provider type 'aws'",
        ),
        (
            "  region: us-west-2\n",
            "  region: us-west-2\n  module: a.b:C\n",
            "'module': not a key of provider type 'aws'",
        ),
        (
            "  region: us-west-2\n",
            "  region: us-west-2\n  security_group: {GroupName: x}\n",
            "'security_group' is not supported: rayops does not create security groups",
        ),
        (
            "  region: us-west-2\n",
            "  region: us-west-2\n  cache_stopped_nodes: true\n",
            "'cache_stopped_nodes': rayops terminates idle EC2 instances",
        ),
        (
            "  region: us-west-2\n",
            "  region: us-west-2\n  regoin: x\n",
            "provider.regoin: unknown key 'regoin'; did you mean 'region'?",
        ),
    ],
)
def test_aws_provider_keys_are_checked(tmp_path: Path, old: str, new: str, expected: str) -> None:
    p = write(tmp_path, AWS.replace(old, new))
    msg = errors_of(p)
    assert f"{p}:" in msg and expected in msg, msg


def test_local_refuses_keys_of_other_types(tmp_path: Path) -> None:
    text = """
    provider:
      type: local
      head_ip: 10.0.0.1
      region: us-west-2
    auth: {ssh_user: u, host_key_policy: accept-new}
    """
    msg = errors_of(write(tmp_path, text))
    assert "provider: 'region': not a key of provider type 'local'" in msg


def test_external_needs_a_module(tmp_path: Path) -> None:
    text = """
    provider: {type: external}
    auth: {ssh_user: u, host_key_policy: accept-new}
    available_node_types: {w: {node_config: {anything: 1}}}
    head_node_type: w
    """
    msg = errors_of(write(tmp_path, text))
    assert "'module' is required for provider type 'external'" in msg


def test_aws_node_config_keys_are_checked_with_their_line(tmp_path: Path) -> None:
    text = AWS.replace("      InstanceType: m5.2xlarge\n", "      InstanceTyp: m5.2xlarge\n")
    text = text.replace("{MarketType: spot}", "{MarketType: reserved}")
    p = write(tmp_path, text)
    msg = errors_of(p)
    assert (
        f"{p}:14: available_node_types.cpu.node_config.InstanceTyp: unknown EC2 node_config "
        "key 'InstanceTyp'; did you mean 'InstanceType'?" in msg
    ), msg
    assert "available_node_types.cpu.node_config.InstanceType: required key missing" in msg
    assert (
        "available_node_types.cpu.node_config.InstanceMarketOptions.MarketType: expected "
        "'spot', found 'reserved'" in msg
    )


def test_aws_needs_node_types(tmp_path: Path) -> None:
    text = AWS.split("available_node_types:")[0]
    msg = errors_of(write(tmp_path, text))
    assert "available_node_types: required for provider type 'aws'" in msg


def test_node_config_table() -> None:
    ok = {"InstanceType": "m5.large", "ImageId": "ami-1"}
    cases = [
        ({**ok, "SubnetIds": "subnet-1"}, ("SubnetIds",), "expected a list of subnet ids"),
        ({**ok, "SubnetId": "s-1", "SubnetIds": ["s-2"]}, ("SubnetId",), "not both"),
        ({**ok, "IamInstanceProfile": {"Role": "x"}}, ("IamInstanceProfile",), "Arn or Name"),
        ({**ok, "EbsOptimized": "yes"}, ("EbsOptimized",), "true or false"),
        (
            {**ok, "InstanceMarketOptions": {"MarketType": "spot", "SpotOptions": {"Bid": 1}}},
            ("InstanceMarketOptions", "SpotOptions", "Bid"),
            "unknown key 'Bid'",
        ),
        (
            {
                **ok,
                "TagSpecifications": [
                    {
                        "ResourceType": "instance",
                        "Tags": [{"Key": "rayops-node-type", "Value": "x"}],
                    }
                ],
            },
            ("TagSpecifications", 0, "Tags", 0),
            "the cluster's record",
        ),
        ({**ok, "NetworkInterfaces": []}, ("NetworkInterfaces",), "unknown EC2 node_config key"),
    ]
    for config, path, text in cases:
        problems = node_config_problems(config)
        assert any(p == path and text in m for p, m in problems), (config, problems)
    assert node_config_problems(ok) == []


def test_run_instances_args_merge_tags_and_place() -> None:
    config = {
        "InstanceType": "m5.large",
        "ImageId": "ami-1",
        "SubnetIds": ["s-1", "s-2"],
        "Placement": {"GroupName": "g"},
        "TagSpecifications": [
            {"ResourceType": "instance", "Tags": [{"Key": "team", "Value": "a"}]}
        ],
    }
    args = run_instances_args(
        config,
        count=3,
        tags={"rayops-launch-request": "r1"},
        client_token="tok",
        subnet="s-2",
        availability_zone="us-west-2b",
    )
    assert args["MinCount"] == args["MaxCount"] == 3 and args["ClientToken"] == "tok"
    assert args["SubnetId"] == "s-2" and "SubnetIds" not in args
    assert args["Placement"] == {"GroupName": "g", "AvailabilityZone": "us-west-2b"}
    instance_tags = next(
        s["Tags"] for s in args["TagSpecifications"] if s["ResourceType"] == "instance"
    )
    assert instance_tags == [
        {"Key": "team", "Value": "a"},
        {"Key": "rayops-launch-request", "Value": "r1"},
    ]


def test_rayops_up_says_an_ec2_head_is_not_supported_yet(tmp_path: Path) -> None:
    p = write(tmp_path, AWS)
    with pytest.raises(LauncherError, match="not supported yet: launching the head"):
        open_cluster(str(p), tmp_path / "cache")
