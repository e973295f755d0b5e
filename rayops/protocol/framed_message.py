"""The base of every message sent over the framed transport, and typed refusals.

Owns: what a framed message is (a frozen, slotted dataclass with a ``METHOD`` name), how it
pickles (``(class, field values)``, the class sent as a one-byte copyreg extension code from
``wire_codes.py``, never as a module and class name), and ``Refusal``: why a peer declined
a request, as a code a caller can branch on and a message a person can read.

Versioning is additive. A message's fields are sent by position, in declaration order, so:

* a new field is only ever appended, and always has a default (an older sender's shorter
  tuple then fills it in);
* a field is never removed, renamed, reordered or given a new meaning; a method whose
  meaning changes gets a new message class (and a new code) instead;
* a receiver that has no handler for a message answers with a ``Refusal`` whose code is
  ``RefusalCode.UNKNOWN_METHOD`` (a notification without a handler is logged and dropped).

Every node of a cluster runs the same rayops version (the GCS refuses a node with another
one), so a receiver is never older than its sender inside one cluster; the rules above keep
mixed versions possible for rolling upgrades later.

This module must not import anything of rayops outside ``rayops.protocol``.
"""

from __future__ import annotations

import enum
from dataclasses import MISSING, dataclass, fields
from operator import attrgetter
from typing import Any, ClassVar


class Message:
    """A framed request or notification (and, for requests, the reply classes too).

    Subclasses are ``@dataclass(frozen=True, slots=True)`` and name their method in
    ``METHOD``. ``wire_codes.register`` gives each class its extension code and fast paths
    (``install_fast_paths``); until then ``__reduce__`` below does the same, more slowly.
    """

    __slots__ = ()
    METHOD: ClassVar[str] = ""

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), tuple(getattr(self, f.name) for f in fields(self)))  # type: ignore[arg-type]


def install_fast_paths(cls: type) -> None:
    """Make a frozen slotted dataclass cheap to build and to pickle (the hot path).

    ``__reduce__`` reads every field with one C call. ``__init__`` stores each field
    through its slot descriptor instead of the frozen ``object.__setattr__`` round trip the
    dataclass generates (measured: about 4x faster to build, which every message pays twice:
    by its sender, and by the receiver's unpickling). Instances stay frozen: assigning to a
    field still raises ``FrozenInstanceError``. Classes with ``__post_init__`` or a
    ``default_factory`` keep the generated ``__init__``.
    """
    flds = fields(cls)
    names = tuple(f.name for f in flds)
    if not names:
        empty: tuple[Any, ...] = ()

        def reduce0(self: Any) -> tuple[Any, ...]:
            return (cls, empty)

        cls.__reduce__ = reduce0  # type: ignore[method-assign]
    elif len(names) == 1:
        get1 = attrgetter(names[0])

        def reduce1(self: Any) -> tuple[Any, ...]:
            return (cls, (get1(self),))

        cls.__reduce__ = reduce1  # type: ignore[method-assign]
    else:
        getn = attrgetter(*names)

        def reducen(self: Any) -> tuple[Any, ...]:
            return (cls, getn(self))

        cls.__reduce__ = reducen  # type: ignore[method-assign]
    if not names or hasattr(cls, "__post_init__"):
        return
    if any(f.default_factory is not MISSING or not f.init for f in flds):
        return
    namespace: dict[str, Any] = {}
    params, body = [], []
    for i, f in enumerate(flds):
        namespace[f"_set{i}"] = cls.__dict__[f.name].__set__
        if f.default is MISSING:
            params.append(f.name)
        else:
            namespace[f"_default{i}"] = f.default
            params.append(f"{f.name}=_default{i}")
        body.append(f"    _set{i}(self, {f.name})")
    source = f"def __init__(self, {', '.join(params)}):\n" + "\n".join(body) + "\n"
    exec(source, namespace)  # the dataclass module builds its __init__ the same way
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    cls.__init__ = init  # type: ignore[misc]


class RefusalCode(enum.IntEnum):
    """Why a request was declined. Codes are never renumbered; new ones are appended."""

    # No handler for this message class on the peer (a newer sender, or a wrong peer).
    UNKNOWN_METHOD = 1
    # The request is malformed (a field of the wrong type or value).
    BAD_REQUEST = 2
    # The scheduling policy can never place this lease (e.g. hard affinity to a dead node).
    UNSCHEDULABLE = 3
    # The peer does not host what the request is for (e.g. an actor call to a plain worker).
    NOT_HOSTED = 4
    # The peer refused for a reason of its own; ``message`` says which.
    REFUSED = 5
    # The lease's runtime_env could not be set up on the node; ``message`` says why.
    RUNTIME_ENV_SETUP_FAILED = 6


@dataclass(frozen=True, slots=True)
class Refusal(Message):
    """A peer declined a request: ``code`` to branch on, ``message`` to show a person."""

    METHOD: ClassVar[str] = "refusal"
    code: RefusalCode
    message: str


__all__ = ["Message", "Refusal", "RefusalCode", "install_fast_paths"]
