"""Parameter names of a function as the Ray names file spells them: in order, `*args` and
`**kwargs` marked, `self`/`cls` left out. Shared by collect_ray_names.py (which writes them,
under Ray's Python) and compat_table.py (which compares rayops's against them)."""

from __future__ import annotations

import inspect
from typing import Any


def parameter_names(fn: Any) -> tuple[str, ...] | None:
    """The names; None when Python cannot tell (some compiled methods)."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    names = []
    for p in signature.parameters.values():
        if p.kind is p.VAR_POSITIONAL:
            names.append("*" + p.name)
        elif p.kind is p.VAR_KEYWORD:
            names.append("**" + p.name)
        elif p.name not in ("self", "cls"):
            names.append(p.name)
    return tuple(names)
