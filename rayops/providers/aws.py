"""EC2 as a node provider (``provider: {type: aws}``), through boto3.

The instances' tags are the cluster's record: every instance this provider launches carries
the cluster name, its node type, its role and the launch request that made it
(``rayops.providers.base.TAG_*``), so a new ``AwsNodeProvider`` (a restarted autoscaler)
rebuilds everything from EC2 alone. How the interface's guarantees are kept:

* Idempotent launch: a request id maps to one all-or-nothing RunInstances call. Before
  calling, the provider looks for instances already tagged with the request id (in any state,
  so a fulfilled request whose machines were since terminated is not redone); every call of
  a request carries one ``ClientToken`` derived from the request id, so EC2 itself returns
  the first reservation when a retry races its own eventually consistent DescribeInstances.
  A retry that tries a subnet the request did not end up in gets ``IdempotentParameterMismatch``
  (the token was used with another subnet) and moves on to the next subnet, where the
  parameters match and EC2 answers with the original instances: never a second launch.
* Failures are values: a refused RunInstances/TerminateInstances (bad AMI, no capacity in any
  subnet, throttled past botocore's retries, an unreachable endpoint) becomes a
  ``ProviderError`` from ``poll_errors``. ``non_terminated`` is the exception: when EC2 cannot
  be listed it raises ``ConnectionError`` rather than answer "no machines", which a caller
  would read as every machine gone.
* Eventual consistency: for ``consistency_window_s`` after a launch or terminate, the
  provider's own view corrects DescribeInstances (``merge_view``, pure): instances it launched
  are listed even before EC2 lists them, instances it terminated are not listed while EC2 still
  shows them running.
* Only this cluster's instances are touched: ``terminate``/``set_tags`` of an id without this
  cluster's tag is a no-op, like an unknown id.

boto3 is an optional dependency (``pip install 'rayops[aws]'``), imported when a provider is
made. Providers never start rayops on a machine: ``running`` means EC2 says so.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rayops.exceptions import RayOpsConfigError
from rayops.providers.aws_node_config import (
    node_config_problems,
    run_instances_args,
    subnets_of,
)
from rayops.providers.base import (
    TAG_CLUSTER,
    TAG_NODE_TYPE,
    TAG_REQUEST,
    TAG_ROLE,
    CloudInstance,
    NodeProvider,
    ProviderError,
)

if TYPE_CHECKING:
    from rayops.launcher.spec import ClusterSpec

__all__ = ["AwsNodeProvider", "RecentLaunch", "merge_view"]

log = logging.getLogger(__name__)

# States of an instance that still exists (or will): what non_terminated lists.
_LIVE_STATES = ("pending", "running", "stopping", "stopped")
# Every state: a request whose instances are shutting down or gone was still fulfilled.
_ALL_STATES = (*_LIVE_STATES, "shutting-down", "terminated")
# Errors that concern one subnet or zone: the next one in the list is tried.
_TRY_NEXT_PLACEMENT = {
    "InsufficientInstanceCapacity",
    "InsufficientCapacity",
    "InsufficientHostCapacity",
    "InsufficientFreeAddressesInSubnet",
    "Unsupported",
    "InvalidSubnetID.NotFound",
    # This request's token was used in another subnet: it launched there (see the docstring).
    "IdempotentParameterMismatch",
}
_THROTTLED = {"RequestLimitExceeded", "Throttling", "ThrottlingException"}
_NOT_FOUND = {"InvalidInstanceID.NotFound", "InvalidInstanceID.Malformed"}


def _boto3() -> Any:
    try:
        import boto3  # deferred: a cluster that never uses EC2 never needs boto3
    except ImportError as err:
        raise RayOpsConfigError(
            "provider type 'aws' needs boto3, which is not installed here: "
            "pip install 'rayops[aws]'"
        ) from err
    return boto3


@dataclass(frozen=True)
class RecentLaunch:
    """What this provider did itself, to correct an EC2 listing that lags behind it."""

    instance: CloudInstance | None  # launched: as RunInstances returned it
    at: float


def merge_view(
    listed: Mapping[str, tuple[CloudInstance, str]],
    launched: Mapping[str, RecentLaunch],
    terminated: Mapping[str, float],
    now: float,
    window_s: float,
) -> dict[str, CloudInstance]:
    """EC2's listing (instance and state, every state) corrected by this provider's own recent
    launches and terminations: the machines that are not terminated.

    Pure. Within ``window_s`` of doing it: an instance this provider launched that EC2 does not
    list at all yet is listed (as launched); one it terminated that EC2 still lists as live is
    not. Past the window, and for anything EC2 lists in any state, EC2 is believed.
    """
    view = {
        node_id: inst
        for node_id, (inst, state) in listed.items()
        if state in _LIVE_STATES
        and not (node_id in terminated and now - terminated[node_id] < window_s)
    }
    for node_id, recent in launched.items():
        if (
            node_id not in listed
            and recent.instance is not None
            and now - recent.at < window_s
            and node_id not in terminated
        ):
            view[node_id] = recent.instance
    return view


class AwsNodeProvider(NodeProvider):
    """EC2 instances of one cluster. See the module docstring for the guarantees.

    ``node_configs``: each node type's node_config (checked: ``RayOpsConfigError`` naming the
    key). ``availability_zones``: tried in turn for node types that name no subnet; for those
    that do, only their subnets in these zones are used.
    ``max_attempts``: tries per EC2 call, the first included (botocore's ``standard`` retry
    mode backs off exponentially on throttling and transient errors).
    ``consistency_window_s``: how long the provider's own launches and terminations correct
    EC2's listing. ``session``: a boto3 Session to share (default: a new one).
    """

    def __init__(
        self,
        cluster_name: str,
        region: str,
        node_configs: Mapping[str, Mapping[str, Any]],
        *,
        availability_zones: Sequence[str] = (),
        endpoint_url: str | None = None,
        max_attempts: int = 5,
        consistency_window_s: float = 120.0,
        clock: Callable[[], float] = time.time,
        session: Any = None,
    ) -> None:
        problems = [
            f"available_node_types.{name}.node_config.{'.'.join(map(str, path))}: {message}"
            for name, config in node_configs.items()
            for path, message in node_config_problems(config)
        ]
        if problems:
            raise RayOpsConfigError("invalid aws node_config: " + "; ".join(problems))
        boto3 = _boto3()
        from botocore.config import Config

        self._cluster = cluster_name
        self._configs = {name: dict(cfg) for name, cfg in node_configs.items()}
        self._zones = list(availability_zones)
        self._clock = clock
        self._window_s = consistency_window_s
        # A boto3 Session may be shared (making a client on a new one loads EC2's API model,
        # ~0.5 s); its credentials come from boto3's usual chain.
        self._ec2 = (session or boto3.session.Session()).client(
            "ec2",
            region_name=region,
            endpoint_url=endpoint_url,
            config=Config(
                retries={"total_max_attempts": max_attempts, "mode": "standard"},
                connect_timeout=10,
                read_timeout=60,
            ),
        )
        self._lock = threading.Lock()
        self._errors: list[ProviderError] = []
        self._requests: dict[str, list[str]] = {}  # request id -> instance ids (this process)
        self._launched: dict[str, RecentLaunch] = {}
        self._terminated: dict[str, float] = {}
        self._subnet_zones: dict[str, str] = {}  # subnet id -> its availability zone

    @classmethod
    def from_spec(cls, spec: ClusterSpec, **options: Any) -> AwsNodeProvider:
        """The provider a cluster spec describes; ``options`` are this class's keywords
        (``endpoint_url``, ``max_attempts``, ``consistency_window_s``, ``clock``, ``session``)."""
        p = spec.provider
        zones = [z.strip() for z in (p.availability_zone or "").split(",") if z.strip()]
        kwargs: dict[str, Any] = {"availability_zones": zones, "endpoint_url": p.endpoint_url}
        kwargs.update(options)
        return cls(
            spec.cluster_name,
            p.region or "",
            {name: t.node_config for name, t in spec.available_node_types.items()},
            **kwargs,
        )

    # ---- the interface -------------------------------------------------------------------
    def launch(self, node_type: str, count: int, request_id: str) -> None:
        if node_type not in self._configs:
            raise ValueError(
                f"unknown node type {node_type!r}: expected one of {sorted(self._configs)}"
            )
        if count < 0:
            raise ValueError(f"count must be >= 0, found {count}")
        if not request_id:
            raise ValueError("request_id must be a non-empty string")
        with self._lock:
            if count == 0 or request_id in self._requests:
                return
            from botocore.exceptions import BotoCoreError, ClientError

            try:
                existing = self._instances_of_request(request_id)
                if existing:
                    self._requests[request_id] = existing
                    return
                ids = self._run_instances(node_type, count, request_id)
            except _LaunchFailed as err:
                self._fail_launch(node_type, count, request_id, str(err))
            except ClientError as err:
                self._fail_launch(node_type, count, request_id, _explain(err))
            except BotoCoreError as err:
                self._fail_launch(node_type, count, request_id, f"EC2 not reachable: {err}")
            else:
                self._requests[request_id] = ids

    def terminate(self, node_ids: Sequence[str], request_id: str) -> None:
        wanted = list(dict.fromkeys(node_ids))
        if not wanted:
            return
        from botocore.exceptions import BotoCoreError, ClientError

        with self._lock:
            try:
                ours = [
                    i.node_id
                    for i, _ in self._describe(
                        [{"Name": "instance-id", "Values": wanted}], states=_LIVE_STATES
                    )
                ]
                # Launched moments ago and not listed yet: still ours to terminate.
                ours += [i for i in wanted if i in self._launched and i not in ours]
                if ours:
                    self._terminate_listed(ours)
            except ClientError as err:
                self._fail_terminate(wanted, request_id, _explain(err))
            except BotoCoreError as err:
                self._fail_terminate(wanted, request_id, f"EC2 not reachable: {err}")

    def non_terminated(self) -> dict[str, CloudInstance]:
        from botocore.exceptions import BotoCoreError, ClientError

        with self._lock:
            try:
                listed = {i.node_id: (i, state) for i, state in self._describe([])}
            except (ClientError, BotoCoreError) as err:
                cause = _explain(err) if isinstance(err, ClientError) else str(err)
                raise ConnectionError(
                    f"cannot list the EC2 instances of cluster {self._cluster!r}: {cause}"
                ) from err
            now = self._clock()
            self._forget_before(now - self._window_s)
            return merge_view(listed, self._launched, self._terminated, now, self._window_s)

    def poll_errors(self) -> list[ProviderError]:
        with self._lock:
            errors, self._errors = self._errors, []
            return errors

    def set_tags(self, node_id: str, tags: Mapping[str, str]) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        with self._lock:
            try:
                self._set_tags(node_id, tags)
            except (ClientError, BotoCoreError) as err:
                cause = _explain(err) if isinstance(err, ClientError) else str(err)
                raise ConnectionError(f"cannot tag EC2 instance {node_id}: {cause}") from err

    def _set_tags(self, node_id: str, tags: Mapping[str, str]) -> None:
        from botocore.exceptions import ClientError

        known = node_id in self._launched or bool(
            self._describe([{"Name": "instance-id", "Values": [node_id]}], states=_LIVE_STATES)
        )
        if not known or not tags:
            return
        pairs = [{"Key": k, "Value": v} for k, v in tags.items()]
        # A just-launched instance may not be taggable yet (eventual consistency).
        for attempt in range(6):
            try:
                self._ec2.create_tags(Resources=[node_id], Tags=pairs)
                return
            except ClientError as err:
                if _code(err) not in _NOT_FOUND or attempt == 5:
                    raise
                time.sleep(0.2 * 2**attempt)

    # ---- EC2 calls -----------------------------------------------------------------------
    def _describe(
        self, filters: list[dict[str, Any]], states: Sequence[str] = _ALL_STATES
    ) -> list[tuple[CloudInstance, str]]:
        """This cluster's instances (only: the cluster tag is always a filter) and states."""
        all_filters = [
            {"Name": f"tag:{TAG_CLUSTER}", "Values": [self._cluster]},
            {"Name": "instance-state-name", "Values": list(states)},
            *filters,
        ]
        out: list[tuple[CloudInstance, str]] = []
        for page in self._ec2.get_paginator("describe_instances").paginate(Filters=all_filters):
            for reservation in page.get("Reservations", []):
                out.extend(
                    (_cloud_instance(raw), raw.get("State", {}).get("Name", ""))
                    for raw in reservation.get("Instances", [])
                )
        return out

    def _instances_of_request(self, request_id: str) -> list[str]:
        found = self._describe([{"Name": f"tag:{TAG_REQUEST}", "Values": [request_id]}])
        return sorted(i.node_id for i, _ in found)

    def _run_instances(self, node_type: str, count: int, request_id: str) -> list[str]:
        from botocore.exceptions import ClientError

        config = self._configs[node_type]
        tags = {
            "Name": f"rayops-{self._cluster}-{node_type}",
            TAG_CLUSTER: self._cluster,
            TAG_ROLE: "worker",
            TAG_NODE_TYPE: node_type,
            TAG_REQUEST: request_id,
        }
        if any(
            t.get("Key") == "Name"
            for s in config.get("TagSpecifications", [])
            for t in s.get("Tags", [])
        ):
            del tags["Name"]
        placements = _placements(self._subnets_in_zones(config), self._zones, request_id)
        tried: list[str] = []
        for subnet, zone in placements:
            token = _client_token(self._cluster, request_id)
            args = run_instances_args(
                config,
                count=count,
                tags=tags,
                client_token=token,
                subnet=subnet,
                availability_zone=zone,
            )
            try:
                reply = self._ec2.run_instances(**args)
            except ClientError as err:
                where = f" in {subnet or zone}" if subnet or zone else ""
                tried.append(f"{_explain(err)}{where}")
                if _code(err) not in _TRY_NEXT_PLACEMENT or len(tried) == len(placements):
                    raise _LaunchFailed("; then ".join(tried)) from err
                log.warning(
                    "launch %s: %s in %s; trying the next", request_id, _code(err), subnet or zone
                )
                continue
            now = self._clock()
            instances = [_cloud_instance(raw) for raw in reply.get("Instances", [])]
            for inst in instances:
                self._launched[inst.node_id] = RecentLaunch(inst, now)
            log.info(
                "launch %s: %d x %s (%s) -> %s",
                request_id,
                count,
                node_type,
                config["InstanceType"],
                ", ".join(i.node_id for i in instances),
            )
            return [i.node_id for i in instances]
        raise AssertionError("unreachable: placements is never empty")

    def _subnets_in_zones(self, config: Mapping[str, Any]) -> list[str]:
        """The node type's subnets, only those in ``availability_zone`` when it is set (as
        Ray does); _LaunchFailed when that leaves none."""
        subnets = subnets_of(config)
        if not subnets or not self._zones:
            return subnets
        missing = [s for s in subnets if s not in self._subnet_zones]
        if missing:
            reply = self._ec2.describe_subnets(Filters=[{"Name": "subnet-id", "Values": missing}])
            for sub in reply.get("Subnets", []):
                self._subnet_zones[sub["SubnetId"]] = sub["AvailabilityZone"]
        kept = [s for s in subnets if self._subnet_zones.get(s) in self._zones]
        if not kept:
            found = {s: self._subnet_zones.get(s, "not found") for s in subnets}
            raise _LaunchFailed(
                f"none of node_config.SubnetIds is in provider.availability_zone "
                f"{','.join(self._zones)}: {found}"
            )
        return kept

    def _terminate_listed(self, node_ids: list[str]) -> None:
        from botocore.exceptions import ClientError

        remaining = list(node_ids)
        while remaining:
            try:
                self._ec2.terminate_instances(InstanceIds=remaining)
                break
            except ClientError as err:
                # One id EC2 does not know (any more, or not yet): drop it, keep the others.
                gone = [i for i in remaining if i in str(err)]
                if _code(err) not in _NOT_FOUND or not gone:
                    raise
                remaining = [i for i in remaining if i not in gone]
        now = self._clock()
        for node_id in node_ids:
            self._terminated[node_id] = now
        log.info("terminated %s", ", ".join(node_ids))

    # ---- bookkeeping ---------------------------------------------------------------------
    def _fail_launch(self, node_type: str, count: int, request_id: str, cause: str) -> None:
        config = self._configs[node_type]
        cause = (
            f"EC2 RunInstances of {count} x {node_type} ({config['InstanceType']}, "
            f"{config['ImageId']}) failed: {cause}"
        )
        log.warning("launch %s: %s", request_id, cause)
        self._errors.append(
            ProviderError(
                kind="launch",
                request_id=request_id,
                cause=cause,
                timestamp=time.time(),
                node_type=node_type,
                count=count,
            )
        )

    def _fail_terminate(self, node_ids: list[str], request_id: str, cause: str) -> None:
        cause = f"EC2 TerminateInstances of {', '.join(node_ids)} failed: {cause}"
        log.warning("terminate %s: %s", request_id, cause)
        self._errors.append(
            ProviderError(
                kind="terminate",
                request_id=request_id,
                cause=cause,
                timestamp=time.time(),
                node_ids=tuple(node_ids),
            )
        )

    def _forget_before(self, cutoff: float) -> None:
        self._launched = {k: v for k, v in self._launched.items() if v.at >= cutoff}
        self._terminated = {k: t for k, t in self._terminated.items() if t >= cutoff}


class _LaunchFailed(Exception):
    """RunInstances refused in every subnet/zone tried: the causes, in the order tried."""


def _placements(
    subnets: list[str], zones: list[str], request_id: str
) -> list[tuple[str | None, str | None]]:
    """(subnet, zone) pairs to try, starting at one picked by the request id: retries of a
    request start where it did, and different requests spread over the subnets."""
    options: list[tuple[str | None, str | None]]
    if subnets:
        options = [(s, None) for s in subnets]
    elif zones:
        options = [(None, z) for z in zones]
    else:
        return [(None, None)]
    start = int(hashlib.sha256(request_id.encode()).hexdigest(), 16) % len(options)
    return options[start:] + options[:start]


def _client_token(cluster: str, request_id: str) -> str:
    # EC2 keeps a ClientToken's result for days; at most 64 ASCII characters.
    digest = hashlib.sha256(f"{cluster}\0{request_id}".encode()).hexdigest()
    return f"rayops-{digest[:48]}"


def _cloud_instance(raw: Mapping[str, Any]) -> CloudInstance:
    tags = {t["Key"]: t["Value"] for t in raw.get("Tags", [])}
    return CloudInstance(
        node_id=raw["InstanceId"],
        node_type=tags.get(TAG_NODE_TYPE, ""),
        request_id=tags.get(TAG_REQUEST, ""),
        internal_ip=raw.get("PrivateIpAddress", "") or "",
        external_ip=raw.get("PublicIpAddress", "") or "",
        tags=tags,
        running=raw.get("State", {}).get("Name") == "running",
    )


def _code(err: Any) -> str:
    return str(getattr(err, "response", {}).get("Error", {}).get("Code", ""))


def _explain(err: Any) -> str:
    """One line from a botocore ClientError: code, message, and what to do for the common ones."""
    error = getattr(err, "response", {}).get("Error", {})
    code = error.get("Code", "error")
    text = f"{code}: {error.get('Message', str(err))}"
    if code in _THROTTLED:
        text += " (throttled by EC2 after botocore's retries; the autoscaler retries later)"
    elif code.startswith("InvalidAMIID"):
        text += " (check node_config.ImageId: AMIs are per region)"
    elif code in _TRY_NEXT_PLACEMENT:
        text += " (no capacity: add subnets in other zones to node_config.SubnetIds)"
    return text
