"""The GCS placement-group table: records, names, and each group's lifecycle, free of I/O.

The manager (``pg_manager``) feeds commands in (``PgTable.handle``) and carries out the
actions they return: find a placement, send the two phases of the reservation to the raylets,
release bundles, tell waiters. Every state change goes through ``TRANSITIONS``, the one table
of legal edges (a command that is not legal in a group's state changes nothing)::

    PENDING      -Prepared->       PREPARED      every raylet involved reserved its bundles
    RESCHEDULING -Prepared->       PREPARED      (the same, for the bundles a dead node lost)
    PREPARED     -Committed->      CREATED       every raylet turned its reservation into
                                                 the group's resources
    PREPARED     -Aborted->        PENDING       a prepare or commit failed (a raylet refused
                                                 or died): every prepared bundle is released
                                                 and the group waits for another attempt
                                                 (RESCHEDULING if it had been created)
    CREATED      -NodeLost->       RESCHEDULING  a node holding some of its bundles died
    PENDING/PREPARED/CREATED/RESCHEDULING -Removed-> REMOVED   remove_placement_group, or
                                                 the end of its job (unless detached)

``Placed`` (the placement policy found nodes for the unplaced bundles) and ``NotPlaced`` (it
did not: why, and whether no current node could ever hold a bundle) do not change the state:
they start an attempt, or record why none started (``scheduling_state``, Ray's names).
Attempts are numbered; what a raylet answers about an older attempt is ignored.

Followers see the table through its change events (``rayops.gcs.pg_events``: ``PgAdded``,
``PgStateChanged`` on every state edge, ``PgForgotten``), each stamped with the table's next
version and handed, per command, to a *sink*: in the GCS, the event spine's
"placement_groups" channel. ``StateChanged`` actions stay what the manager acts on.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from rayops.gcs.pg_events import PgAdded, PgEvent, PgForgotten, PgSnapshot, PgStateChanged, PgView


class PgState(enum.StrEnum):
    PENDING = "PENDING"
    PREPARED = "PREPARED"
    CREATED = "CREATED"
    RESCHEDULING = "RESCHEDULING"
    REMOVED = "REMOVED"


@dataclass
class PgRecord:
    pg_id: bytes
    name: str
    namespace: str
    strategy: str
    bundles: list[dict[str, float]]
    creator_job_id: int
    is_detached: bool
    bundle_label_selectors: list[dict[str, str]] = field(default_factory=list)
    state: PgState = PgState.PENDING
    # bundle index -> node id, for committed bundles (and, during an attempt, prepared ones)
    bundle_nodes: dict[int, str] = field(default_factory=dict)
    attempt: int = 0  # the current reservation attempt; 0 before the first
    attempt_nodes: dict[int, str] = field(default_factory=dict)  # what the attempt reserves
    scheduling_state: str = "QUEUED"  # Ray's stats.scheduling_state
    scheduling_attempts: int = 0
    created_at: float = 0.0
    created_after_s: float = 0.0  # creation latency, once CREATED
    warned: bool = False
    version: int = 1

    @property
    def bundle_count(self) -> int:
        return len(self.bundles)

    def unplaced(self) -> list[int]:
        """Bundle indexes that no committed reservation holds."""
        return [i for i in range(len(self.bundles)) if i not in self.bundle_nodes]


# ---------------------------------------------------------------- commands in
@dataclass(frozen=True)
class Create:
    record: PgRecord


@dataclass(frozen=True)
class Placed:
    """The policy found ``nodes`` (bundle index -> node id) for the unplaced bundles."""

    pg_id: bytes
    nodes: Mapping[int, str]


@dataclass(frozen=True)
class NotPlaced:
    pg_id: bytes
    infeasible: bool  # some bundle fits no current node even when idle
    reason: str


@dataclass(frozen=True)
class Prepared:
    """Every raylet of ``attempt`` reserved its bundles."""

    pg_id: bytes
    attempt: int


@dataclass(frozen=True)
class Committed:
    pg_id: bytes
    attempt: int
    now: float


@dataclass(frozen=True)
class Aborted:
    """A prepare or a commit of ``attempt`` failed (refused, or the raylet is gone)."""

    pg_id: bytes
    attempt: int
    reason: str


@dataclass(frozen=True)
class NodeLost:
    node_id: str


@dataclass(frozen=True)
class Removed:
    pg_id: bytes


@dataclass(frozen=True)
class JobEnded:
    job_id: int


Command = (
    Create | Placed | NotPlaced | Prepared | Committed | Aborted | NodeLost | Removed | JobEnded
)


# ---------------------------------------------------------------- actions out
@dataclass(frozen=True)
class Schedule:
    """Run the placement policy for the group's unplaced bundles (now, or after ``delay_s``)."""

    pg_id: bytes
    delay_s: float = 0.0


@dataclass(frozen=True)
class SendPrepare:
    """Phase one: ask each raylet to reserve ``nodes``' bundles (index -> node id)."""

    pg_id: bytes
    attempt: int
    nodes: Mapping[int, str]


@dataclass(frozen=True)
class SendCommit:
    pg_id: bytes
    attempt: int
    nodes: Mapping[int, str]


@dataclass(frozen=True)
class ReleaseBundles:
    """Tell each raylet to drop the group's bundles ``nodes`` (prepared or committed), killing
    what runs in them."""

    pg_id: bytes
    nodes: Mapping[int, str]


@dataclass(frozen=True)
class Warn:
    pg_id: bytes
    message: str


@dataclass(frozen=True)
class StateChanged:
    """Waiters (``pg.ready()``, ``wait``) and subscribers look again."""

    pg_id: bytes
    state: PgState


Action = Schedule | SendPrepare | SendCommit | ReleaseBundles | Warn | StateChanged

# The legal edges: (state, command type) -> the states it may lead to (the handler picks one
# by the record: an aborted attempt of a group that had been created goes back to
# RESCHEDULING). A command with no entry for the group's state changes nothing.
TRANSITIONS: dict[tuple[PgState, type], frozenset[PgState]] = {
    (PgState.PENDING, Prepared): frozenset({PgState.PREPARED}),
    (PgState.RESCHEDULING, Prepared): frozenset({PgState.PREPARED}),
    (PgState.PREPARED, Committed): frozenset({PgState.CREATED}),
    (PgState.PENDING, Aborted): frozenset({PgState.PENDING}),
    (PgState.RESCHEDULING, Aborted): frozenset({PgState.RESCHEDULING}),
    (PgState.PREPARED, Aborted): frozenset({PgState.PENDING, PgState.RESCHEDULING}),
    (PgState.CREATED, NodeLost): frozenset({PgState.RESCHEDULING}),
    (PgState.PENDING, Removed): frozenset({PgState.REMOVED}),
    (PgState.PREPARED, Removed): frozenset({PgState.REMOVED}),
    (PgState.CREATED, Removed): frozenset({PgState.REMOVED}),
    (PgState.RESCHEDULING, Removed): frozenset({PgState.REMOVED}),
}

_REMOVED = PgState.REMOVED
_NO_NODES: Mapping[int, str] = MappingProxyType({})  # shared by events of groups with none

MAX_REMOVED_KEPT = 1000  # removed groups kept for placement_group_table, oldest forgotten first
RETRY_DELAY_S = 0.1  # after an aborted attempt: the node view catches up meanwhile
MAX_RETRY_DELAY_S = 2.0


class PgNameTaken(Exception):
    """Another live placement group already has this name in this namespace."""


class PgTable:
    """Every placement group the GCS knows (removed ones too, for ``placement_group_table``)."""

    def __init__(
        self,
        max_removed_kept: int = MAX_REMOVED_KEPT,
        *,
        sink: Callable[[Sequence[PgEvent]], None] | None = None,
    ) -> None:
        self._groups: dict[bytes, PgRecord] = {}
        self._names: dict[tuple[str, str], bytes] = {}
        self._removed: dict[bytes, None] = {}  # removed groups, oldest first
        self._waiting: dict[bytes, None] = {}  # groups to place, no attempt under way, in order
        self._max_removed = max_removed_kept
        self._sink = sink
        self.version = 0  # of the last change event
        self._events: list[PgEvent] = []  # of the command being handled

    def get(self, pg_id: bytes) -> PgRecord | None:
        return self._groups.get(pg_id)

    def restore(self, records: Iterable[PgRecord]) -> None:
        """Load the groups a restarted GCS read back from its store. An attempt that was
        under way is forgotten (its prepared bundles are the raylets' to release): the group
        waits to be placed again, keeping the bundles it had committed."""
        for rec in records:
            rec.attempt_nodes = {}
            if rec.state is PgState.PREPARED:
                rec.state = PgState.RESCHEDULING if rec.bundle_nodes else PgState.PENDING
            self._groups[rec.pg_id] = rec
            if rec.state is PgState.REMOVED:
                self._removed[rec.pg_id] = None
            elif rec.name:
                self._names[(rec.namespace, rec.name)] = rec.pg_id
            self._sync_waiting(rec)

    def by_name(self, name: str, namespace: str) -> PgRecord | None:
        pg_id = self._names.get((namespace, name))
        rec = self._groups.get(pg_id) if pg_id is not None else None
        return rec if rec is not None and rec.state != PgState.REMOVED else None

    def all(self) -> list[PgRecord]:
        return list(self._groups.values())

    def waiting(self) -> list[PgRecord]:
        """Groups with bundles to place and no attempt under way, oldest first."""
        return [self._groups[pg_id] for pg_id in self._waiting]

    def live(self) -> int:
        """How many groups are not removed."""
        return len(self._groups) - len(self._removed)

    def snapshot(self) -> PgSnapshot:
        """Every group as of the current version (what a new follower starts from)."""
        return PgSnapshot(self.version, tuple(view_of(rec) for rec in self._groups.values()))

    # ------------------------------------------------------------------ commands
    def handle(self, cmd: Command) -> list[Action]:
        """Apply one command; returns what the shell must do, in order. Its change events go
        to the sink, in one call, once the command is done."""
        actions = self._apply(cmd)
        if self._events:
            events, self._events = self._events, []
            if self._sink is not None:
                self._sink(events)
        return actions

    def _apply(self, cmd: Command) -> list[Action]:
        """`handle` without publishing: commands that a command causes (a job's end removes
        its groups, a lost node aborts attempts) go through here, so the events of the whole
        cascade reach the sink together."""
        actions = self._handle(cmd)
        pg_id = cmd.record.pg_id if isinstance(cmd, Create) else getattr(cmd, "pg_id", b"")
        rec = self._groups.get(pg_id)
        if rec is not None:
            self._sync_waiting(rec)
        return actions

    def _stamp(self) -> int:
        self.version += 1
        return self.version

    def _sync_waiting(self, rec: PgRecord) -> None:
        if rec.state in (PgState.PENDING, PgState.RESCHEDULING) and not rec.attempt_nodes:
            self._waiting.setdefault(rec.pg_id, None)
        else:
            self._waiting.pop(rec.pg_id, None)

    def _handle(self, cmd: Command) -> list[Action]:
        if isinstance(cmd, Create):
            return self._create(cmd.record)
        if isinstance(cmd, NodeLost):
            return self._node_lost(cmd.node_id)
        if isinstance(cmd, JobEnded):
            ended: list[Action] = []
            for group in list(self._groups.values()):
                if group.creator_job_id == cmd.job_id and not group.is_detached:
                    ended += self._apply(Removed(group.pg_id))
            return ended
        rec = self._groups.get(cmd.pg_id)
        if rec is None:
            return []
        if isinstance(cmd, Placed):
            return self._placed(rec, cmd)
        if isinstance(cmd, NotPlaced):
            return self._not_placed(rec, cmd)
        if isinstance(cmd, Prepared | Committed | Aborted) and cmd.attempt != rec.attempt:
            return []  # an answer about an attempt that is over
        if (rec.state, type(cmd)) not in TRANSITIONS:
            return []
        if isinstance(cmd, Prepared):
            self._move(rec, cmd, PgState.PREPARED)
            return [SendCommit(rec.pg_id, rec.attempt, dict(rec.attempt_nodes))]
        if isinstance(cmd, Committed):
            rec.bundle_nodes.update(rec.attempt_nodes)
            rec.attempt_nodes = {}
            rec.scheduling_state = "FINISHED"
            if not rec.created_after_s:
                rec.created_after_s = max(0.0, cmd.now - rec.created_at)
            self._move(rec, cmd, PgState.CREATED)
            return [StateChanged(rec.pg_id, rec.state)]
        if isinstance(cmd, Aborted):
            release = dict(rec.attempt_nodes)
            rec.attempt_nodes = {}
            rec.scheduling_state = "FAILED_TO_COMMIT_RESOURCES"
            had_bundles = bool(rec.bundle_nodes) or rec.state == PgState.RESCHEDULING
            self._move(rec, cmd, PgState.RESCHEDULING if had_bundles else PgState.PENDING)
            delay = min(MAX_RETRY_DELAY_S, RETRY_DELAY_S * 2 ** min(rec.scheduling_attempts, 5))
            return [ReleaseBundles(rec.pg_id, release), Schedule(rec.pg_id, delay)]
        if isinstance(cmd, Removed):
            release = {**rec.bundle_nodes, **rec.attempt_nodes}
            rec.attempt_nodes = {}
            rec.scheduling_state = "REMOVED"
            self._move(rec, cmd, PgState.REMOVED)
            self._forget_old_removed(rec)
            out: list[Action] = [StateChanged(rec.pg_id, rec.state)]
            if release:
                out.insert(0, ReleaseBundles(rec.pg_id, release))
            return out
        raise AssertionError(f"unhandled command {cmd!r}")  # pragma: no cover

    def _create(self, rec: PgRecord) -> list[Action]:
        if rec.pg_id in self._groups:
            return []
        if rec.name:
            if self.by_name(rec.name, rec.namespace) is not None:
                raise PgNameTaken(
                    f"a placement group named {rec.name!r} already exists in namespace "
                    f"{rec.namespace!r}"
                )
            self._names[(rec.namespace, rec.name)] = rec.pg_id
        self._groups[rec.pg_id] = rec
        self._events.append(PgAdded(self._stamp(), view_of(rec)))
        return [Schedule(rec.pg_id)]

    def _placed(self, rec: PgRecord, cmd: Placed) -> list[Action]:
        if rec.state not in (PgState.PENDING, PgState.RESCHEDULING) or rec.attempt_nodes:
            return []
        rec.attempt += 1
        rec.scheduling_attempts += 1
        rec.attempt_nodes = dict(cmd.nodes)
        rec.scheduling_state = "SCHEDULING_STARTED"
        return [SendPrepare(rec.pg_id, rec.attempt, dict(cmd.nodes))]

    def _not_placed(self, rec: PgRecord, cmd: NotPlaced) -> list[Action]:
        if rec.state not in (PgState.PENDING, PgState.RESCHEDULING) or rec.attempt_nodes:
            return []
        rec.scheduling_state = "INFEASIBLE" if cmd.infeasible else "NO_RESOURCES"
        if cmd.infeasible and not rec.warned:
            rec.warned = True
            return [Warn(rec.pg_id, cmd.reason)]
        return []

    def _node_lost(self, node_id: str) -> list[Action]:
        out: list[Action] = []
        for rec in self._groups.values():
            if rec.state == PgState.REMOVED:
                continue
            if node_id in rec.attempt_nodes.values():
                # The attempt cannot finish: release what the other nodes reserved.
                out += self._apply(Aborted(rec.pg_id, rec.attempt, f"node {node_id} died"))
            lost = [i for i, n in rec.bundle_nodes.items() if n == node_id]
            if not lost:
                self._sync_waiting(rec)
                continue
            for i in lost:
                del rec.bundle_nodes[i]
            if rec.state == PgState.CREATED:
                self._move(rec, NodeLost(node_id), PgState.RESCHEDULING)
                rec.scheduling_state = "QUEUED"
                out += [StateChanged(rec.pg_id, rec.state), Schedule(rec.pg_id)]
            self._sync_waiting(rec)
        return out

    def _forget_old_removed(self, rec: PgRecord) -> None:
        if rec.name and self._names.get((rec.namespace, rec.name)) == rec.pg_id:
            del self._names[(rec.namespace, rec.name)]
        self._removed[rec.pg_id] = None
        while len(self._removed) > self._max_removed:
            oldest = next(iter(self._removed))
            del self._removed[oldest]
            self._groups.pop(oldest, None)
            self._waiting.pop(oldest, None)
            self._events.append(PgForgotten(self._stamp(), oldest))

    def _move(self, rec: PgRecord, cmd: Command, state: PgState) -> None:
        allowed = TRANSITIONS.get((rec.state, type(cmd)), frozenset())
        assert state in allowed, f"{rec.state} -{type(cmd).__name__}-> {state} is not an edge"
        changed = rec.state is not state
        rec.state = state
        rec.version += 1
        if changed:
            nodes = dict(rec.bundle_nodes) if rec.bundle_nodes and state != _REMOVED else _NO_NODES
            self._events.append(PgStateChanged(self._stamp(), rec.pg_id, state, nodes))


def view_of(rec: PgRecord) -> PgView:
    """An immutable copy of what followers see of ``rec`` (a record's bundles and selectors
    are never changed after creation, so they are shared, not copied)."""
    removed = rec.state == PgState.REMOVED
    return PgView(
        rec.pg_id,
        rec.name,
        rec.namespace,
        rec.strategy,
        tuple(rec.bundles),
        tuple(rec.bundle_label_selectors),
        rec.creator_job_id,
        rec.is_detached,
        rec.state,
        {} if removed else dict(rec.bundle_nodes),
    )
