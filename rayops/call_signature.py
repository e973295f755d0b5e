"""Checking, at ``.remote()``, that a call's arguments bind the signature of the function,
actor constructor or actor method it calls (Ray refuses a call that does not with TypeError
there, rather than failing later in the worker).

A signature travels with actor handles (pickled into the GCS), so it is kept as a small
picklable tuple of parameters (name, kind, has a default), without annotations or default
values, which may not be picklable. No I/O here.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

__all__ = ["Checker", "Params", "check", "checker", "params_of"]

# (name, inspect.Parameter kind as an int, has a default)
Params = tuple[tuple[str, int, bool], ...]

_KINDS = {
    int(kind): kind
    for kind in (
        inspect.Parameter.POSITIONAL_ONLY,
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        inspect.Parameter.VAR_POSITIONAL,
        inspect.Parameter.KEYWORD_ONLY,
        inspect.Parameter.VAR_KEYWORD,
    )
}
# A stand-in default: only whether a parameter has one matters for binding.
_HAS_DEFAULT = None
_SIMPLE = int(inspect.Parameter.POSITIONAL_OR_KEYWORD)
_POSITIONAL_ONLY = int(inspect.Parameter.POSITIONAL_ONLY)


def params_of(fn: Callable[..., Any] | None, *, bound: bool) -> Params | None:
    """The parameters of ``fn`` (its first dropped when ``bound``, i.e. ``self``), or None when
    its signature cannot be read (a builtin), in which case calls are not checked."""
    if fn is None or fn is object.__init__:
        return () if fn is object.__init__ else None
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    params = list(sig.parameters.values())
    if (
        bound
        and params
        and params[0].kind
        in (
            inspect.Parameter.POSITIONAL_ONLY,
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
        )
    ):
        params = params[1:]
    return tuple((p.name, int(p.kind), p.default is not inspect.Parameter.empty) for p in params)


class Checker:
    """Checks calls against one signature; the common case (positional arguments only, to a
    function of plain parameters) is a length comparison."""

    __slots__ = ("_required", "_signature", "_simple", "_total")

    def __init__(self, params: Params) -> None:
        self._signature = inspect.Signature(
            [
                inspect.Parameter(
                    name,
                    _KINDS[kind],
                    default=_HAS_DEFAULT if has_default else inspect.Parameter.empty,
                )
                for name, kind, has_default in params
            ]
        )
        self._simple = all(kind in (_SIMPLE, _POSITIONAL_ONLY) for _, kind, _ in params)
        self._required = sum(1 for _, _, has_default in params if not has_default)
        self._total = len(params)

    def check(self, args: tuple[Any, ...], kwargs: dict[str, Any], what: str) -> None:
        """Raise TypeError, naming ``what``, if ``args``/``kwargs`` do not bind."""
        if self._simple and not kwargs and self._required <= len(args) <= self._total:
            return
        try:
            self._signature.bind(*args, **kwargs)
        except TypeError as err:
            raise TypeError(f"{what}(): {err}") from None


@functools.lru_cache(maxsize=1024)
def checker(params: Params) -> Checker:
    """The (shared) Checker of ``params``."""
    return Checker(params)


def check(params: Params, args: tuple[Any, ...], kwargs: dict[str, Any], what: str) -> None:
    """Raise TypeError, naming ``what``, if ``args``/``kwargs`` do not bind ``params``."""
    checker(params).check(args, kwargs, what)
