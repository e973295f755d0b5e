"""The placement-group table's change events: the event spine's "placement_groups" channel.

`rayops.gcs.pg_table.PgTable` emits them as its groups are created, change state (every edge
of its `TRANSITIONS`) and are forgotten, each stamped with the table's next version, and
hands them to a *sink* (in the GCS, the publisher). Its commands stay in `pg_table` with
the actions they return (placement, the two phases, releases): those are the manager's
business, these are what anyone else may follow (the dashboard, a test, the autoscaler).

Plain frozen dataclasses with no I/O; their protobuf form (`PlacementGroupEvent` in
`protocol/gcs_pubsub.proto`) is converted in `rayops.gcs.codec` only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "LOG_MAX_EVENTS",
    "PgAdded",
    "PgEvent",
    "PgForgotten",
    "PgSnapshot",
    "PgStateChanged",
    "PgView",
]

# The "placement_groups" channel keeps this many events for followers that come back (not the
# publisher's 10,000): groups churn fast (thousands a second under the create/removal bench),
# kept events cost the GCS's garbage collector, and a follower further behind gets a snapshot
# (at most the live groups and the 1,000 newest removed ones).
LOG_MAX_EVENTS = 1_000


@dataclass(frozen=True, slots=True)
class PgView:
    """What a follower holds of one group (an immutable copy of the table's record)."""

    pg_id: bytes
    name: str
    namespace: str
    strategy: str
    bundles: tuple[Mapping[str, float], ...]
    bundle_label_selectors: tuple[Mapping[str, str], ...]
    creator_job_id: int
    is_detached: bool
    state: str
    # bundle index -> node id, for committed bundles
    bundle_nodes: Mapping[int, str]


@dataclass(frozen=True, slots=True)
class PgAdded:
    """A group was created (PENDING): what it asks for."""

    version: int
    group: PgView


@dataclass(frozen=True, slots=True)
class PgStateChanged:
    """A group moved along an edge of `pg_table.TRANSITIONS` to `state`; `bundle_nodes` is
    where its committed bundles are now (empty until CREATED, what survived after a node
    loss, empty once REMOVED)."""

    version: int
    pg_id: bytes
    state: str
    bundle_nodes: Mapping[int, str]


@dataclass(frozen=True, slots=True)
class PgForgotten:
    """A REMOVED group was forgotten (the table keeps only the newest removed groups)."""

    version: int
    pg_id: bytes


PgEvent = PgAdded | PgStateChanged | PgForgotten


@dataclass(frozen=True, slots=True)
class PgSnapshot:
    """Every group the table holds, in creation order, as of `version`."""

    version: int
    groups: tuple[PgView, ...]
