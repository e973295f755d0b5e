"""Turning pydantic's validation errors into cluster-spec messages a person can act on.

Each message names what was expected (from the field's type and description) and what was
found (the value and its YAML kind); an unknown key also gets the closest valid key and the
list of keys allowed at that place. Only this module knows pydantic's error vocabulary.
"""

from __future__ import annotations

import types
import typing
from difflib import get_close_matches
from typing import Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo

from rayops.launcher.errors import SpecIssue
from rayops.launcher.yaml_source import KeyPath, format_path, line_for

_EXPECTED_BY_TYPE = {
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "string_type": "a string",
    "list_type": "a list",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "none_required": "nothing (null)",
}


def yaml_kind(value: Any) -> str:
    """How a value reads in YAML terms: 'a string', 'a list', ..."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _found(value: Any) -> str:
    if isinstance(value, dict):
        return f"a mapping with keys {sorted(map(str, value))}" if value else "an empty mapping"
    if isinstance(value, list):
        return f"a list of {len(value)} item(s)"
    return f"{value!r} ({yaml_kind(value)})"


def issue_from_pydantic(err: Any, lines: dict[KeyPath, int], root: type[BaseModel]) -> SpecIssue:
    """One pydantic error dict -> one located, readable SpecIssue."""
    loc: KeyPath = tuple(p for p in err["loc"] if p != "[key]")
    kind: str = err["type"]
    value = err.get("input")
    ctx = err.get("ctx") or {}
    line = line_for(lines, loc)
    path = format_path(loc)
    field = _field_at(root, loc)
    described = f" ({field.description})" if field is not None and field.description else ""

    if kind == "extra_forbidden":
        return SpecIssue(line, path, _unknown_key(root, loc))
    if kind == "missing":
        what = field.description if field is not None and field.description else "a value"
        return SpecIssue(line, path, f"required key missing: expected {what}")
    if kind == "literal_error":
        return SpecIssue(
            line, path, f"expected one of {ctx.get('expected')}, found {_found(value)}"
        )
    if kind in ("greater_than_equal", "greater_than", "less_than_equal", "less_than"):
        bound = next(iter(ctx.values()), "?")
        op = {
            "greater_than_equal": ">=",
            "greater_than": ">",
            "less_than_equal": "<=",
            "less_than": "<",
        }[kind]
        return SpecIssue(
            line, path, f"expected a value {op} {bound}{described}, found {_found(value)}"
        )
    if kind == "string_too_short":
        return SpecIssue(
            line, path, f"expected a non-empty string{described}, found {_found(value)}"
        )
    if kind == "value_error":
        msg = str(err.get("msg", "")).removeprefix("Value error, ")
        return SpecIssue(line, path, msg)
    expected = _EXPECTED_BY_TYPE.get(kind)
    if expected is not None:
        return SpecIssue(line, path, f"expected {expected}{described}, found {_found(value)}")
    return SpecIssue(line, path, f"{err.get('msg')}{described}, found {_found(value)}")


def _unknown_key(root: type[BaseModel], loc: KeyPath) -> str:
    key = str(loc[-1])
    model = _model_at(root, loc[:-1])
    if model is None:
        return "unknown key"
    valid = sorted(_public_fields(model))
    close = get_close_matches(key, valid, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown key {key!r}{hint} (valid keys here: {', '.join(valid)})"


def _public_fields(model: type[BaseModel]) -> dict[str, FieldInfo]:
    return {name: f for name, f in model.model_fields.items() if not name.startswith("_")}


def _strip(annotation: Any) -> Any:
    """Remove Optional/Annotated wrappers: ``Annotated[int, ...] | None`` -> ``int``."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(args) != 1:
                return annotation
            annotation = args[0]
        else:
            return annotation


def _step(annotation: Any, part: str | int) -> tuple[Any, FieldInfo | None]:
    """Descend one key path element into ``annotation``."""
    annotation = _strip(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        field = _public_fields(annotation).get(str(part))
        return (field.annotation, field) if field is not None else (None, None)
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is list and args:
        return args[0], None
    if origin is dict and len(args) == 2:
        return args[1], None
    return None, None


def _walk(root: type[BaseModel], path: KeyPath) -> tuple[Any, FieldInfo | None]:
    annotation: Any = root
    field: FieldInfo | None = None
    for part in path:
        annotation, field = _step(annotation, part)
        if annotation is None:
            return None, None
    return annotation, field


def _model_at(root: type[BaseModel], path: KeyPath) -> type[BaseModel] | None:
    annotation, _ = _walk(root, path)
    annotation = _strip(annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _field_at(root: type[BaseModel], path: KeyPath) -> FieldInfo | None:
    if not path:
        return None
    return _walk(root, path)[1]
