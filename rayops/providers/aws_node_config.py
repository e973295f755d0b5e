"""What an EC2 node type's ``node_config`` may say, and the RunInstances call it becomes.

Ray passes an aws ``node_config`` to boto3's ``create_instances`` as it is. rayops accepts the
subset below, checks each key's shape before anything reaches EC2 (so a typo is a spec error
with its key path, not a launch failure an hour later), and refuses every other key naming it.
Pure: no boto3, no I/O, nothing of ours imported (the cluster spec checks node_configs with it,
and the provider builds its calls with it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from difflib import get_close_matches
from typing import Any

__all__ = [
    "EC2_NODE_CONFIG_KEYS",
    "RESERVED_TAG_PREFIX",
    "node_config_problems",
    "run_instances_args",
    "subnets_of",
]

# The keys rayops implements, with the shape each must have (what a spec error says).
EC2_NODE_CONFIG_KEYS: dict[str, str] = {
    "InstanceType": "an EC2 instance type such as 'm5.large' (required)",
    "ImageId": "an AMI id such as 'ami-0123456789abcdef0' (required)",
    "SubnetIds": "a list of subnet ids, tried in turn when one has no capacity",
    "SubnetId": "one subnet id (or use SubnetIds)",
    "SecurityGroupIds": "a list of security group ids",
    "KeyName": "the name of an EC2 key pair",
    "IamInstanceProfile": "a mapping with Arn or Name of an instance profile",
    "InstanceMarketOptions": "a mapping {MarketType: spot, SpotOptions: {...}}",
    "BlockDeviceMappings": "a list of EC2 block device mappings",
    "TagSpecifications": "a list of {ResourceType, Tags: [{Key, Value}]} (extra tags)",
    "UserData": "a string (cloud-init user data)",
    "EbsOptimized": "true or false",
    "Placement": "a mapping of EC2 placement settings (AvailabilityZone, GroupName, ...)",
    "MetadataOptions": "a mapping of EC2 instance metadata options (HttpTokens, ...)",
}
_REQUIRED = ("InstanceType", "ImageId")
_STRINGS = ("InstanceType", "ImageId", "SubnetId", "KeyName", "UserData")
_STRING_LISTS = ("SubnetIds", "SecurityGroupIds")
_MAPPINGS = ("IamInstanceProfile", "InstanceMarketOptions", "Placement", "MetadataOptions")
_LISTS = ("BlockDeviceMappings", "TagSpecifications")
_SPOT_OPTION_KEYS = {
    "MaxPrice",
    "SpotInstanceType",
    "BlockDurationMinutes",
    "ValidUntil",
    "InstanceInterruptionBehavior",
}
# Tags under this prefix are the cluster's record (rayops.providers.base); a node_config may
# not set them, or a user tag could make an instance look like another request's.
RESERVED_TAG_PREFIX = "rayops-"

Problem = tuple[tuple[str | int, ...], str]


def node_config_problems(config: Mapping[str, Any]) -> list[Problem]:
    """Every problem with one node type's ``node_config``: (key path below it, message)."""
    problems: list[Problem] = []
    for key in config:
        if key not in EC2_NODE_CONFIG_KEYS:
            close = get_close_matches(str(key), list(EC2_NODE_CONFIG_KEYS), n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            problems.append(
                (
                    (key,),
                    f"unknown EC2 node_config key {key!r}{hint} (rayops implements: "
                    f"{', '.join(sorted(EC2_NODE_CONFIG_KEYS))})",
                )
            )
    for key in _REQUIRED:
        if key not in config:
            problems.append(((key,), f"required key missing: expected {EC2_NODE_CONFIG_KEYS[key]}"))
    for key, value in config.items():
        problem = _shape_problem(str(key), value)
        if problem is not None:
            problems.append(((key,), problem))
    if "SubnetId" in config and "SubnetIds" in config:
        problems.append((("SubnetId",), "set SubnetId or SubnetIds, not both"))
    problems.extend(_market_problems(config.get("InstanceMarketOptions")))
    problems.extend(_tag_problems(config.get("TagSpecifications")))
    return problems


def _shape_problem(key: str, value: Any) -> str | None:
    expected = EC2_NODE_CONFIG_KEYS.get(key)
    if expected is None:
        return None
    ok = True
    if key in _STRINGS:
        ok = isinstance(value, str) and bool(value)
    elif key in _STRING_LISTS:
        ok = (
            isinstance(value, list) and bool(value) and all(isinstance(v, str) and v for v in value)
        )
    elif key in _MAPPINGS:
        ok = isinstance(value, dict)
    elif key in _LISTS:
        ok = isinstance(value, list) and all(isinstance(v, dict) for v in value)
    elif key == "EbsOptimized":
        ok = isinstance(value, bool)
    if ok and key == "IamInstanceProfile":
        ok = bool(value) and set(value) <= {"Arn", "Name"}
    return None if ok else f"expected {expected}, found {value!r}"


def _market_problems(options: Any) -> list[Problem]:
    if not isinstance(options, dict):
        return []
    problems: list[Problem] = []
    base = ("InstanceMarketOptions",)
    for key in options:
        if key not in ("MarketType", "SpotOptions"):
            problems.append(
                ((*base, key), f"unknown key {key!r} (expected MarketType, SpotOptions)")
            )
    if options.get("MarketType") != "spot":
        problems.append(
            ((*base, "MarketType"), f"expected 'spot', found {options.get('MarketType')!r}")
        )
    spot = options.get("SpotOptions", {})
    if not isinstance(spot, dict):
        problems.append(((*base, "SpotOptions"), f"expected a mapping, found {spot!r}"))
    else:
        for key in spot:
            if key not in _SPOT_OPTION_KEYS:
                problems.append(
                    (
                        (*base, "SpotOptions", key),
                        f"unknown key {key!r} (expected one of {sorted(_SPOT_OPTION_KEYS)})",
                    )
                )
    return problems


def _tag_problems(specs: Any) -> list[Problem]:
    if not isinstance(specs, list):
        return []
    problems: list[Problem] = []
    for i, spec in enumerate(specs):
        if not isinstance(spec, dict):
            continue
        if spec.get("ResourceType") not in ("instance", "volume"):
            problems.append(
                (
                    ("TagSpecifications", i, "ResourceType"),
                    f"expected 'instance' or 'volume', found {spec.get('ResourceType')!r}",
                )
            )
        tags = spec.get("Tags", [])
        if not isinstance(tags, list):
            problems.append((("TagSpecifications", i, "Tags"), f"expected a list, found {tags!r}"))
            continue
        for j, tag in enumerate(tags):
            key = tag.get("Key") if isinstance(tag, dict) else None
            if not isinstance(key, str) or "Value" not in tag:
                problems.append(
                    (("TagSpecifications", i, "Tags", j), f"expected {{Key, Value}}, found {tag!r}")
                )
            elif key.startswith(RESERVED_TAG_PREFIX):
                problems.append(
                    (
                        ("TagSpecifications", i, "Tags", j),
                        f"tag keys starting with {RESERVED_TAG_PREFIX!r} are the cluster's "
                        f"record and set by rayops, found {key!r}",
                    )
                )
    return problems


def subnets_of(config: Mapping[str, Any]) -> list[str]:
    """The subnets a node type launches in, in the order they are tried ([] = EC2 picks)."""
    if "SubnetIds" in config:
        return list(config["SubnetIds"])
    if "SubnetId" in config:
        return [config["SubnetId"]]
    return []


def run_instances_args(
    config: Mapping[str, Any],
    *,
    count: int,
    tags: Mapping[str, str],
    client_token: str,
    subnet: str | None,
    availability_zone: str | None,
) -> dict[str, Any]:
    """The keyword arguments of one EC2 RunInstances call for ``count`` instances.

    All or nothing (MinCount == MaxCount), so a request is either launched whole or not at all
    and a retry never has to work out which part is missing. ``tags`` (the cluster's record)
    go on the instance and its volumes, after the node_config's own tags.
    """
    args: dict[str, Any] = {
        k: v for k, v in config.items() if k not in ("SubnetIds", "SubnetId", "TagSpecifications")
    }
    args.update(MinCount=count, MaxCount=count, ClientToken=client_token)
    if subnet is not None:
        args["SubnetId"] = subnet
    if availability_zone is not None:
        args["Placement"] = {**config.get("Placement", {}), "AvailabilityZone": availability_zone}
    args["TagSpecifications"] = _merged_tag_specs(config.get("TagSpecifications", []), tags)
    return args


def _merged_tag_specs(
    specs: Sequence[Mapping[str, Any]], tags: Mapping[str, str]
) -> list[dict[str, Any]]:
    ours = [{"Key": k, "Value": v} for k, v in tags.items()]
    merged: dict[str, list[dict[str, Any]]] = {"instance": [], "volume": []}
    for spec in specs:
        merged.setdefault(spec["ResourceType"], []).extend(dict(t) for t in spec.get("Tags", []))
    out = []
    for resource, extra in merged.items():
        keep = [t for t in extra if t["Key"] not in tags]
        out.append({"ResourceType": resource, "Tags": keep + ours})
    return out
