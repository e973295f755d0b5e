"""The instance table's stored form: JSON the head-side shell keeps in the GCS KV.

``to_json`` after every change, ``from_json`` when the autoscaler starts (then feed
``instances.Resume``): that is what makes a restarted autoscaler resume its records instead
of launching again. A damaged table is refused with the record and key named.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict
from typing import cast

from rayops.autoscaler.instances import STATES, Failure, Instance, State

__all__ = ["from_json", "to_json"]

_FORMAT = 1


def to_json(instances: Mapping[str, Instance]) -> str:
    """The table as JSON (what the shell stores in the GCS KV)."""
    rows = [asdict(inst) for _, inst in sorted(instances.items())]
    return json.dumps({"format": _FORMAT, "instances": rows}, sort_keys=True)


def from_json(text: str | bytes) -> dict[str, Instance]:
    """The table ``to_json`` wrote; ValueError naming the record and key when it is not."""
    try:
        doc = json.loads(text)
    except ValueError as err:
        raise ValueError(f"instance table: not JSON ({err})") from err
    if not isinstance(doc, dict) or doc.get("format") != _FORMAT:
        raise ValueError(
            f"instance table: expected an object with format {_FORMAT}, found {str(doc)[:80]!r}"
        )
    rows = doc.get("instances")
    if not isinstance(rows, list):
        raise ValueError("instance table: 'instances' must be a list")
    table: dict[str, Instance] = {}
    for n, row in enumerate(rows):
        inst = _instance_from(row, f"instance table: instances[{n}]")
        table[inst.instance_id] = inst
    return table


_FIELDS = {
    "instance_id": str,
    "node_type": str,
    "state": str,
    "request_id": str,
    "since": float,
    "cloud_id": str,
    "ip": str,
    "node_id": str,
    "attempt": int,
    "due_at": float,
    "causes": list,
    "reason": str,
    "end_state": str,
}


def _instance_from(row: object, where: str) -> Instance:
    if not isinstance(row, dict):
        raise ValueError(f"{where}: expected an object, found {type(row).__name__}")
    unknown = set(row) - set(_FIELDS)
    missing = set(_FIELDS) - set(row)
    if unknown or missing:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)}, missing keys {sorted(missing)}")
    for key, kind in _FIELDS.items():
        ok = isinstance(row[key], (int, float) if kind is float else kind)
        if not ok or (kind is not float and isinstance(row[key], bool)):
            raise ValueError(f"{where}.{key}: expected {kind.__name__}, found {row[key]!r}")
    for key in ("state", "end_state"):
        if row[key] not in STATES:
            raise ValueError(f"{where}.{key}: expected one of {STATES}, found {row[key]!r}")
    causes = []
    for k, c in enumerate(row["causes"]):
        if not (isinstance(c, dict) and set(c) == {"at", "cause", "attempt"}):
            raise ValueError(f"{where}.causes[{k}]: expected {{at, cause, attempt}}, found {c!r}")
        causes.append(Failure(float(c["at"]), str(c["cause"]), int(c["attempt"])))
    return Instance(
        **{k: row[k] for k in _FIELDS if k not in ("causes", "state", "end_state")},
        state=cast(State, row["state"]),
        end_state=cast(State, row["end_state"]),
        causes=tuple(causes),
    )
