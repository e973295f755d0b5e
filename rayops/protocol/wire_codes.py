"""The one table of copyreg extension codes for everything that crosses the framed transport.

Pickle names a class by its module and qualified name; a copyreg extension code sends one
byte instead (pickle's EXT1 opcode for codes below 256): no strings to encode on one side
and to decode, intern and keep on the other, ~40 bytes less per message. Both ends call
``register()`` (``rayops.rpc.framed`` does, on import) before they exchange messages.

Codes 240-255 are copyreg's private-use range and 192-239 its third-party range; rayops
processes only ever unpickle each other's frames, so the two ranges give 64 one-byte codes.
They are all taken; later classes get two-byte codes (EXT2, 256-65535), handed out in ranges
(300-319: the state API; 350-359: the memory monitor).
A code is never reused or renumbered (a message class that is retired keeps its code
reserved here). Registering a code that another module already took for another name
raises ``ValueError`` at import, so a clash is loud.

This module must not import anything of rayops outside ``rayops.protocol``.
"""

from __future__ import annotations

import copyreg
import dataclasses
from collections.abc import Callable
from operator import attrgetter
from typing import Any

from rayops.protocol import metrics as mx
from rayops.protocol import node_messages as nm
from rayops.protocol import node_snapshot as ns
from rayops.protocol import raylet_messages as rm
from rayops.protocol import state_messages as sm
from rayops.protocol import transfer_messages as xm
from rayops.protocol import worker_messages as wm
from rayops.protocol.framed_message import Message, Refusal, RefusalCode, install_fast_paths

# Named rather than imported: defined in rayops.protocol.task_messages, which registers
# them itself too (add_extension accepts the same registration twice).
TASK_SPEC = ("rayops.protocol.task_messages", "TaskSpec")
TASK_REPLY = ("rayops.protocol.task_messages", "TaskReply")
# TaskSpec and TaskReply travel as their fields passed to these (see task_messages).
SPEC_FROM = ("rayops.protocol.task_messages", "spec_from")
REPLY_FROM = ("rayops.protocol.task_messages", "reply_from")
NAMED_CODES: dict[tuple[str, str], int] = {
    TASK_SPEC: 240,
    TASK_REPLY: 241,
    SPEC_FROM: 340,
    REPLY_FROM: 341,
}

# The hot path first (one-byte codes either way; grouped only for reading).
MESSAGE_CODES: dict[type[Message], int] = {
    wm.PushTask: 242,
    wm.ActorCall: 243,
    wm.CancelTask: 244,
    wm.GetObject: 245,
    wm.ObjectEntry: 246,
    wm.AddBorrower: 247,
    wm.BorrowerAdded: 248,
    wm.RemoveBorrower: 249,
    wm.GeneratorItem: 250,
    rm.ReturnLease: 251,
    rm.RequestLease: 252,
    rm.LeaseGranted: 253,
    rm.LeaseSpilled: 254,
    rm.StoreReserve: 255,
    rm.StoreReserved: 192,
    rm.StoreSeal: 193,
    rm.StoreEnsureLocal: 194,
    rm.StoreLocal: 195,
    rm.StoreDelete: 196,
    rm.StoreStats: 197,
    rm.StoreStatsReply: 198,
    rm.WorkerBlocked: 199,
    rm.WorkerUnblocked: 200,
    rm.ResizeLease: 201,
    rm.RegisterWorker: 202,
    rm.RegisterDriver: 203,
    rm.NodeDescription: 204,
    rm.PublishLogs: 205,
    rm.Logs: 206,
    rm.ShowWarning: 207,
    rm.NodesDead: 208,
    rm.ClusterInfo: 209,
    rm.ClusterInfoReply: 210,
    rm.NodeInfo: 211,
    rm.NodeInfoReply: 212,
    rm.Ping: 213,
    rm.Pong: 214,
    wm.CreateActor: 215,
    wm.ActorCreated: 216,
    wm.ActorCreationFailed: 217,
    wm.ExitActor: 218,
    wm.ActorExiting: 219,
    nm.ObjectSize: 220,
    nm.ObjectSizeReply: 221,
    nm.ReadChunk: 222,
    nm.Chunk: 223,
    nm.MetricsSnapshot: 224,
    nm.ReportMetrics: 225,
    Refusal: 226,
    wm.Hello: 235,
    wm.CancelOwnedTask: 236,
    wm.CancelAccepted: 237,
    rm.PrepareRuntimeEnv: 239,
    # Two-byte codes (pickle's EXT2) in assigned ranges, the one-byte ones being all taken:
    # 300-319 the state API, 340-349 actor calls, 350-359 the memory monitor, 380-399 actor
    # sync lanes.
    sm.ReportTaskEvents: 300,
    sm.ListWorkers: 301,
    sm.WorkersReply: 302,
    sm.ListStoreObjects: 303,
    sm.StoreObjectsReply: 304,
    sm.ListReferences: 305,
    sm.ReferencesReply: 306,
    rm.WorkerKillNotice: 350,
    wm.OpenSyncLane: 380,
    # 320-339: bulk object transfer between raylets.
    xm.OpenPull: 320,
    xm.PullOffer: 321,
    xm.PullDone: 322,
}
# Not messages, but inside them (replies, reports).
OTHER_CODES: dict[type, int] = {
    RefusalCode: 227,
    mx.MetricsReport: 228,
    mx.TaskStateCount: 229,
    mx.MetricInfo: 230,
    mx.MetricSample: 231,
    ns.RayletSnapshot: 232,
    ns.ProcessRef: 233,
    ns.Histogram: 234,
    sm.TaskDescriptor: 310,
    sm.TaskError: 311,
    sm.WorkerState: 312,
    sm.StoreObject: 313,
    sm.ObjectReference: 314,
}


# What the framed transport sends for a request or notification: (code, field values).
CLASS_BY_CODE: dict[int, type[Message]] = {code: cls for cls, code in MESSAGE_CODES.items()}


def _field_values(cls: type[Message]) -> Callable[[Message], tuple[Any, ...]]:
    names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    if len(names) >= 2:
        return attrgetter(*names)  # type: ignore[return-value]
    if len(names) == 1:
        one = attrgetter(names[0])
        return lambda msg: (one(msg),)
    return lambda msg: ()


ENCODERS: dict[type[Message], tuple[int, Callable[[Message], tuple[Any, ...]]]] = {
    cls: (code, _field_values(cls)) for cls, code in MESSAGE_CODES.items()
}


def message_classes() -> list[type[Message]]:
    """Every framed message class (requests, notifications and replies)."""
    return list(MESSAGE_CODES)


def _add(module: str, name: str, code: int) -> None:
    if copyreg._extension_registry.get((module, name)) != code:  # type: ignore[attr-defined]
        copyreg.add_extension(module, name, code)


def register() -> None:
    """Register every code (idempotent) and give each message class its fast ``__reduce__``."""
    for (module, name), code in NAMED_CODES.items():
        _add(module, name, code)
    for cls, code in MESSAGE_CODES.items():
        _add(cls.__module__, cls.__qualname__, code)
        install_fast_paths(cls)
    for other, code in OTHER_CODES.items():
        _add(other.__module__, other.__qualname__, code)
        if dataclasses.is_dataclass(other):
            install_fast_paths(other)


register()

__all__ = [
    "CLASS_BY_CODE",
    "ENCODERS",
    "MESSAGE_CODES",
    "NAMED_CODES",
    "OTHER_CODES",
    "message_classes",
    "register",
]
