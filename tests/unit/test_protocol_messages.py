"""The framed message classes: each registered once with its own one-byte extension code,
frozen, slotted, named by a unique METHOD, and round-tripping through pickle with no class
or module name on the wire."""

from __future__ import annotations

import copyreg
import dataclasses
import pickle
import typing
from typing import Any

import pytest

from rayops.protocol import state_messages as sm
from rayops.protocol import wire_codes
from rayops.protocol.framed_message import Message, Refusal, RefusalCode
from rayops.protocol.metrics import MetricsReport
from rayops.protocol.task_messages import TaskSpec

CLASSES = wire_codes.message_classes()

# A value for each field type used by the messages (annotations are strings: the modules
# use `from __future__ import annotations`).
_SAMPLES: dict[str, Any] = {
    "bytes": b"\x01" * 28,
    "int": 7,
    "float": 0.95,
    "str": "node-a",
    "bool": True,
    "Any": ("v", (b"", b"\x80", [])),
    "Address": ("127.0.0.1", 4242),
    "dict[str, float]": {"CPU": 1.0},
    "dict[str, int]": {"n1": 1_700_000_000_000},
    "dict[str, Any]": {"GPU": [0]},
    "tuple[str, ...]": ("n1", "n2"),
    "list[bytes]": [b"a", b"b"],
    "list[str]": ["n1"],
    "list[Any]": [(1, "127.0.0.1", "f", False, "out")],
    "list[dict[str, Any]]": [{"NodeID": "n1"}],
    "bytes | None": b"fn",
    "int | None": 12,
    "RefusalCode": RefusalCode.UNSCHEDULABLE,
    "list[tuple[bytes, Address]]": [(b"o" * 28, ("127.0.0.1", 1))],
    "MetricsReport": MetricsReport(b"w", 1, 2, "worker", 1, True, (), (), ()),
    "list[int]": [1, 2],
    "tuple[TaskDescriptor, ...]": (sm.TaskDescriptor("f", "f", "NORMAL_TASK", 1),),
    "tuple[TaskError, ...]": (sm.TaskError(0, "TASK_EXECUTION_EXCEPTION", "boom"),),
    "tuple[WorkerState, ...]": (sm.WorkerState(b"w", "WORKER", 1, "127.0.0.1", 2, True),),
    "tuple[StoreObject, ...]": (sm.StoreObject(b"o" * 28, 10, True, True, False),),
    "tuple[ObjectReference, ...]": (
        sm.ObjectReference(b"o" * 28, "LOCAL_REFERENCE", 10, True, 1, 0, 0, 0),
    ),
    "TaskSpec": TaskSpec(
        b"t" * 24, 1, "f", b"f" * 28, (), (), 1, (b"r" * 28,), ("127.0.0.1", 1), {"CPU": 1.0}
    ),
}


def _sample(cls: type[Message]) -> Message:
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.type == "NodeDescription":
            values[f.name] = _sample(typing.cast(Any, _by_name("NodeDescription")))
        else:
            assert f.type in _SAMPLES, f"{cls.__name__}.{f.name}: add a sample for {f.type!r}"
            values[f.name] = _SAMPLES[f.type]  # type: ignore[index]
    return cls(**values)


def _by_name(name: str) -> type[Message]:
    return next(c for c in CLASSES if c.__name__ == name)


def test_every_class_has_one_unique_code_and_method() -> None:
    codes = list(wire_codes.MESSAGE_CODES.values())
    codes += list(wire_codes.NAMED_CODES.values()) + list(wire_codes.OTHER_CODES.values())
    assert len(codes) == len(set(codes)), "an extension code is used twice"
    # One byte (EXT1, 192-255) or, once those ran out, two bytes (EXT2) in assigned ranges.
    two_byte = (range(300, 360), range(380, 400))
    assert all(192 <= c <= 255 or any(c in r for r in two_byte) for c in codes), (
        "a code outside its ranges"
    )
    methods = [c.METHOD for c in CLASSES]
    assert len(methods) == len(set(methods)), "a METHOD names two message classes"
    assert all(methods), "a message class has no METHOD"
    for cls, code in wire_codes.MESSAGE_CODES.items():
        key = (cls.__module__, cls.__qualname__)
        assert copyreg._extension_registry[key] == code  # type: ignore[attr-defined]


def test_every_message_module_class_is_registered() -> None:
    from rayops.protocol import node_messages, raylet_messages, state_messages, worker_messages

    for module in (node_messages, raylet_messages, state_messages, worker_messages):
        for name in module.__all__:
            cls = getattr(module, name)
            if isinstance(cls, type) and issubclass(cls, Message):
                assert cls in wire_codes.MESSAGE_CODES, f"{name} has no extension code"
            elif isinstance(cls, type):
                assert cls in wire_codes.OTHER_CODES, f"{name} has no extension code"


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_round_trip_frozen_slotted_and_nameless(cls: type[Message]) -> None:
    msg = _sample(cls)
    data = pickle.dumps(msg, protocol=5)
    assert pickle.loads(data) == msg
    assert cls.__name__.encode() not in data and b"rayops" not in data
    assert not hasattr(msg, "__dict__")  # slotted
    field_names = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
    if field_names:
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(msg, field_names[0], None)


def test_refusal_round_trip() -> None:
    r = Refusal(RefusalCode.UNKNOWN_METHOD, "no handler")
    back = pickle.loads(pickle.dumps(r, protocol=5))
    assert back == r and back.code is RefusalCode.UNKNOWN_METHOD


def test_an_older_senders_shorter_message_gets_the_defaults() -> None:
    """Additive versioning: a field appended with a default is filled in for old senders."""
    from rayops.protocol.raylet_messages import RequestLease

    old = RequestLease.__reduce__(RequestLease({"CPU": 1.0}))
    cls, values = old[0], old[1][:1]  # a sender that only knew `shape`
    assert cls(*values) == RequestLease({"CPU": 1.0}, None, False, ())
