"""Every channel of the event spine converts to its stream message and back unchanged
(gcs/codec.py `CHANNEL_CODECS`), and the GCS registers exactly the channels that have one."""

from __future__ import annotations

from typing import Any

import pytest

from rayops.gcs.actor_events import ActorChange, ActorChanged, ActorSnapshot
from rayops.gcs.codec import CHANNEL_CODECS, batch_from_proto, batch_to_proto
from rayops.gcs.job_events import JobAdded, JobFinished, JobSnapshot
from rayops.gcs.kv_events import KeyPut, KeysDeleted, KvEntry, KvSnapshot
from rayops.gcs.node_events import NodeAdded, NodeDead, NodeSnapshot
from rayops.gcs.pg_events import PgAdded, PgForgotten, PgSnapshot, PgStateChanged, PgView
from rayops.gcs.pubsub import Batch
from rayops.gcs.server import GcsState
from rayops.gcs.types import JobInfo, NodeInfo

JOB = JobInfo(7, 42, "127.0.0.1", "ns", "python x.py", 1_000, 0, False)
NODE = NodeInfo(node_id="aa", node_ip="127.0.0.1", raylet_port=7000, resources_total={"CPU": 1})
VIEW = PgView(
    b"p" * 18,
    "g",
    "ns",
    "SPREAD",
    ({"CPU": 1.0}, {"GPU": 0.5}),
    ({"zone": "a"}, {}),
    3,
    True,
    "CREATED",
    {0: "aa", 1: "bb"},
)

ALIVE = ActorChanged(
    3,
    ActorChange.CREATED,
    b"a" * 16,
    "ALIVE",
    "127.0.0.1",
    7001,
    "aa",
    b"w",
    42,
    0,
    2,
    name="counter",
    namespace="ns",
    class_name="Counter",
    job_id=7,
)
DEAD = ActorChanged(
    4,
    ActorChange.WORKER_DIED_FINAL,
    b"a" * 16,
    "DEAD",
    num_restarts=2,
    max_restarts=2,
    death_cause="the actor's worker process died",
    death_error=b"\x80err",
    job_id=7,
)

CASES: dict[str, tuple[Any, tuple[Any, ...]]] = {
    "actors": (ActorSnapshot(3, (ALIVE,)), (ALIVE, DEAD)),
    "nodes": (NodeSnapshot(2, (NODE,)), (NodeAdded(3, NODE), NodeDead(4, "aa", "gone", 9))),
    "jobs": (JobSnapshot(5, (JOB,)), (JobAdded(6, JOB), JobFinished(7, 7, 2_000))),
    "kv": (
        KvSnapshot(1, (KvEntry("fn", b"k\x00\xff", 3_000_000), KvEntry("", b"x", 0))),
        (KeyPut(2, "fn", b"k", 12, True), KeysDeleted(3, "fn", b"", True, 4)),
    ),
    "placement_groups": (
        PgSnapshot(4, (VIEW,)),
        (
            PgAdded(5, VIEW),
            PgStateChanged(6, b"p" * 18, "RESCHEDULING", {1: "bb"}),
            PgForgotten(7, b"q" * 18),
        ),
    ),
}


@pytest.mark.parametrize("channel", sorted(CASES))
def test_snapshots_and_events_survive_the_stream_message(channel: str) -> None:
    snapshot, events = CASES[channel]
    snap_batch = Batch(channel, "e", snapshot.version, snapshot)
    assert batch_from_proto(batch_to_proto(snap_batch)) == snap_batch
    event_batch = Batch(channel, "e", events[-1].version, None, events)
    assert batch_from_proto(batch_to_proto(event_batch)) == event_batch


def test_the_gcs_publishes_exactly_the_channels_with_a_codec() -> None:
    assert set(GcsState().publisher.channels()) == set(CHANNEL_CODECS) == set(CASES)


def test_a_batch_of_an_unknown_channel_is_refused() -> None:
    msg = batch_to_proto(Batch("jobs", "e", 1, None, (JobFinished(1, 7, 2),)))
    msg.channel = "nope"
    with pytest.raises(ValueError, match="nope"):
        batch_from_proto(msg)
